//! Loading plugins from dynamic libraries.
//!
//! A library is accepted only when abi_stable's load-time checks pass: the
//! abi_stable version, the `storage-plugin-api` version, and the layout of
//! every type that crosses the boundary. These checks catch mistakes (a plugin
//! built against another interface); they are not a security boundary.
//!
//! Every load follows one path ([`load_plugin`] = [`stage`] then
//! [`load_staged`]):
//!
//! 1. [`stage`]: the file is copied only once its size, modification time
//!    and inode stayed the same over a settle interval, and again after the
//!    copy (a file still being written is refused as
//!    [`LoadFailure::NotStable`]). The copy is a fresh file in the process's
//!    private directory ([`remove_private_dir`] has the rules), which no
//!    other user can write; its SHA-256 digest is computed on the way.
//! 2. [`load_staged`]: bytes already mapped once (same digest) reuse that
//!    mapping. Otherwise the copy is parsed: it must be a shared library for
//!    this platform whose headers, segments and sections lie inside the file
//!    (the dynamic linker would otherwise map pages past its end, and the
//!    first access to one kills the process with SIGBUS).
//! 3. The copy is mapped, checked by abi_stable, and unlinked: the mapping
//!    stays valid, no copy outlives its load.
//!
//! Libraries are never unloaded: a reload of new bytes maps a fresh copy and
//! the previous mapping stays in memory (see ARCHITECTURE.md, "Known limits").

mod library;
mod private;
mod report;
mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use library::is_library_file;
use library::load_module;
pub use private::{PRIVATE_DIR_PREFIX, private_dir_path, remove_private_dir};
pub use report::{LoadReport, Rejection, ReportLine};

use storage_plugin_api::ffi::PluginModRef;

use crate::plugin::{AbiPlugin, PluginInfo, PluginSource, StoragePlugin};

/// How long a file must keep its size and modification time before it is
/// read, by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(100);

/// How many settle intervals [`load_plugin`] waits for a file that keeps
/// changing before it gives up.
const SETTLE_ATTEMPTS: u32 = 20;

/// The largest library file the host reads (a plugin is a few MiB to a few
/// tens of MiB).
pub const MAX_LIBRARY_BYTES: u64 = 1 << 30;

pub use crate::load_error::{LoadError, LoadFailure};

/// What identifies a version of a file on disk without reading it: size,
/// modification and change times, inode. Taking it (a `stat`) opens
/// nothing, so it makes no file event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }

    /// The stamp of the file at `path` now (following symlinks).
    pub fn of_path(path: &Path) -> std::io::Result<FileStamp> {
        std::fs::metadata(path).map(|m| FileStamp::of(&m))
    }
}

/// The SHA-256 digest of a library file's bytes.
pub type Digest = [u8; 32];

/// A stable private copy of a plugin file, made by [`stage`], ready to be
/// checked and mapped by [`load_staged`]. Dropping it removes the copy.
#[derive(Debug)]
pub struct Staged {
    original: PathBuf,
    copy: PathBuf,
    digest: Digest,
    len: u64,
    stamp: FileStamp,
}

impl Staged {
    /// The file the copy was made from.
    pub fn original(&self) -> &Path {
        &self.original
    }

    /// The digest of the bytes copied.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The stamp of the file the bytes were copied from (unchanged during
    /// the copy).
    pub fn stamp(&self) -> &FileStamp {
        &self.stamp
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        private::remove_copy(&self.copy);
    }
}

/// Copies `path` into the private directory once it is stable: its size,
/// modification time and inode are the same before and after `settle`, and
/// after the copy. A file replaced meanwhile (renamed over) is given up to
/// two more settle intervals; one that keeps changing is refused as
/// [`LoadFailure::NotStable`]. The file is streamed (never held in memory
/// whole) and hashed on the way.
pub fn stage(path: &Path, settle: Duration) -> Result<Staged, LoadError> {
    use sha2::Digest as _;
    let err = |reason| LoadError {
        path: path.to_path_buf(),
        reason,
    };
    let io = |e: std::io::Error| err(LoadFailure::Io(e.to_string()));
    let mut before = std::fs::metadata(path).map_err(io)?;
    for _ in 0..3 {
        if !before.is_file() {
            return Err(err(LoadFailure::Io("it is not a regular file".into())));
        }
        if before.len() > MAX_LIBRARY_BYTES {
            return Err(err(LoadFailure::Io(format!(
                "it has {} bytes, more than the {MAX_LIBRARY_BYTES} a plugin library may have",
                before.len()
            ))));
        }
        std::thread::sleep(settle);
        let mut file = std::fs::File::open(path).map_err(io)?;
        let opened = file.metadata().map_err(io)?;
        if FileStamp::of(&opened) != FileStamp::of(&before) {
            before = opened;
            continue;
        }
        let (mut out, copy) = private::create_copy(path).map_err(|e| {
            err(LoadFailure::Io(format!(
                "cannot make its private copy for loading: {e}"
            )))
        })?;
        let mut staged = Staged {
            original: path.to_path_buf(),
            copy,
            digest: [0; 32],
            len: 0,
            stamp: FileStamp::of(&opened),
        };
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut out, &buf[..n]).map_err(io)?;
            staged.len += n as u64;
            if staged.len > MAX_LIBRARY_BYTES {
                return Err(err(LoadFailure::Io("it grew past 1 GiB while read".into())));
            }
        }
        let after = file.metadata().map_err(io)?;
        if FileStamp::of(&after) == FileStamp::of(&opened) && staged.len == after.len() {
            staged.digest = hasher.finalize().into();
            return Ok(staged);
        }
        before = after;
    }
    Err(err(LoadFailure::NotStable(settle)))
}

/// Libraries mapped by this process, by the digest of their bytes: the same
/// bytes again (a rollback to a previous build, a swap back and forth) reuse
/// the mapping instead of mapping one more copy (libraries are never
/// unmapped).
static MAPPED: std::sync::Mutex<Vec<(Digest, PluginModRef)>> = std::sync::Mutex::new(Vec::new());

/// Checks and maps a staged copy: a library whose bytes are already mapped
/// reuses that mapping; otherwise the copy must be a shared library for this
/// platform with nothing pointing past its end, and is then mapped. The copy
/// is removed either way (a mapping outlives its file).
pub fn load_staged(staged: Staged) -> Result<AbiPlugin, LoadError> {
    let err = |reason| LoadError {
        path: staged.original.clone(),
        reason,
    };
    let source = PluginSource::Library {
        path: staged.original.clone(),
        loaded_from: staged.copy.clone(),
    };
    let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, module)) = mapped.iter().find(|(d, _)| *d == staged.digest) {
        tracing::debug!(file = %staged.original.display(), "same bytes as a library already mapped: reusing it");
        return Ok(AbiPlugin::new(*module, source));
    }
    let checked = std::fs::File::open(&staged.copy)
        .map_err(|e| LoadFailure::Io(format!("cannot read its private copy back: {e}")))
        .and_then(|file| {
            let cache = object::ReadCache::new(file);
            validate::check_library(&cache, staged.len).map_err(LoadFailure::NotALibrary)
        });
    let loaded = checked.and_then(|()| load_module(&staged.copy));
    let module = loaded.map_err(|reason| match reason {
        // The linker names the private copy; users know the original.
        LoadFailure::NotALibrary(m) => err(LoadFailure::NotALibrary(m.replace(
            &*staged.copy.to_string_lossy(),
            &staged.original.to_string_lossy(),
        ))),
        other => err(other),
    })?;
    mapped.push((staged.digest, module));
    drop(mapped);
    Ok(AbiPlugin::new(module, source))
}

/// Loads the plugin in the library at `path`: waits until the file is stable
/// (up to 60 settle intervals of [`DEFAULT_SETTLE`]), copies it ([`stage`]),
/// then checks and maps the copy ([`load_staged`]).
pub fn load_plugin(path: &Path) -> Result<AbiPlugin, LoadError> {
    let mut attempt = 0;
    let staged = loop {
        match stage(path, DEFAULT_SETTLE) {
            Err(LoadError {
                reason: LoadFailure::NotStable(_),
                ..
            }) if attempt + 1 < SETTLE_ATTEMPTS => attempt += 1,
            other => break other?,
        }
    };
    load_staged(staged)
}

/// Loads every library file (`.so`, `.dylib`, `.dll`) in `dir`, in file
/// name order. One bad file never stops the others: the report says what
/// happened to each.
///
/// The rule for plugin names: when several files provide a plugin of the
/// same name, the one whose file name sorts first provides it; the others
/// are reported as rejected with [`LoadFailure::Shadowed`].
pub fn load_dir(dir: &Path) -> Result<(Vec<AbiPlugin>, LoadReport), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
        path: dir.to_path_buf(),
        reason: LoadFailure::Io(format!("cannot read the plugins directory: {e}")),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_library_file(p))
        .collect();
    files.sort();
    let mut plugins = Vec::new();
    let mut report = LoadReport::default();
    for file in files {
        match load_plugin(&file) {
            Ok(p) => {
                let provider = report
                    .loaded
                    .iter()
                    .find(|(_, info)| info.name == p.name())
                    .map(|(path, _)| path.clone());
                if let Some(by) = provider {
                    report.rejected.push(Rejection {
                        error: LoadError {
                            path: file.clone(),
                            reason: LoadFailure::Shadowed {
                                plugin: p.name().to_string(),
                                by,
                            },
                        },
                        path: file,
                    });
                    continue;
                }
                report.loaded.push((file, PluginInfo::of(&p)));
                plugins.push(p);
            }
            Err(e) => report.rejected.push(Rejection {
                path: file,
                error: e,
            }),
        }
    }
    Ok((plugins, report))
}
