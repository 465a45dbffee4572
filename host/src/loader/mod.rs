//! Loading plugins from dynamic libraries.
//!
//! A library is accepted only when abi_stable's load-time checks pass: the
//! abi_stable version, the `storage-plugin-api` version, and the layout of
//! every type that crosses the boundary. These checks catch mistakes (a plugin
//! built against another interface); they are not a security boundary.
//!
//! Every load follows one path ([`load_plugin`], and [`load_plugin_bytes`]
//! for a caller that already read the file):
//!
//! 1. [`read_stable`]: the file is read only once its size and modification
//!    time stayed the same over a settle interval, and again after the read
//!    (a file still being written is refused as [`LoadFailure::NotStable`]).
//! 2. The bytes are written to a fresh file in the process's private
//!    directory ([`remove_private_dir`] has the rules), which no other user
//!    can write.
//! 3. That copy is read back and parsed: it must be a shared library for this
//!    platform whose headers, segments and sections lie inside the file (the
//!    dynamic linker would otherwise map pages past its end, and the first
//!    access to one kills the process with SIGBUS).
//! 4. The copy is mapped, checked by abi_stable, and unlinked: the mapping
//!    stays valid, no copy outlives its load.
//!
//! Libraries are never unloaded: a reload maps a fresh copy and the previous
//! mapping stays in memory (see ARCHITECTURE.md, "Known limits").

mod library;
mod private;
mod report;
mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use library::{is_library_file, load_module};
pub use private::{PRIVATE_DIR_PREFIX, private_dir_path, remove_private_dir};
pub use report::{LoadReport, Rejection};

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

/// Why a plugin file was not loaded.
#[derive(Debug, thiserror::Error)]
#[error("plugin file '{}': {reason}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: LoadFailure,
}

/// The reasons a plugin file can be rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The file cannot be read or copied.
    #[error("cannot read it: {0}")]
    Io(String),
    /// The dynamic linker refused the file.
    #[error("not a loadable library ({0})")]
    NotALibrary(String),
    /// A library, but it exports no abi_stable root module.
    #[error("not a storage plugin: it exports no abi_stable root module")]
    NoRootModule,
    /// Built with an abi_stable whose ABI differs from the host's.
    #[error("built with an incompatible abi_stable ({0})")]
    IncompatibleAbiStable(String),
    /// Built against a `storage-plugin-api` version the host cannot use.
    #[error(
        "built against an incompatible plugin-api: the host needs {expected}, the plugin has {found}"
    )]
    IncompatibleApiVersion {
        /// What the host was built with.
        expected: String,
        /// What the plugin was built with.
        found: String,
    },
    /// The interface types differ between host and plugin.
    #[error("built against an incompatible plugin-api: {summary}")]
    LayoutMismatch {
        /// The first mismatch, in one line.
        summary: String,
        /// abi_stable's full report (long).
        report: String,
    },
    /// The library's root-module initializer failed or panicked.
    #[error("its initializer failed: {0}")]
    InitFailed(String),
    /// The file or its directory is not safe to load from.
    #[error("refused: {0}")]
    Untrusted(String),
    /// The file changed while it was being checked: it is still being
    /// written. The watcher retries it once it stops changing.
    #[error(
        "not yet stable: its size or modification time changed within {0:?} (still being written?); it is loaded once it stops changing"
    )]
    NotStable(Duration),
    /// A loadable plugin, but another file of the directory provides a
    /// plugin of the same name (the file whose name sorts first does).
    #[error(
        "not used: plugin '{plugin}' is provided by {}, whose name sorts first; remove or rename one of the two files",
        by.display()
    )]
    Shadowed {
        /// The plugin name both files provide.
        plugin: String,
        /// The file that provides it.
        by: PathBuf,
    },
}

/// What identifies a version of a file on disk.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// Reads `path` once it is stable: its size, modification time and inode
/// are the same before and after `settle`, and after the read. A file
/// replaced meanwhile (renamed over) is given up to two more settle
/// intervals; one that keeps changing is refused as
/// [`LoadFailure::NotStable`].
pub fn read_stable(path: &Path, settle: Duration) -> Result<Vec<u8>, LoadError> {
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
        if Stamp::of(&opened) != Stamp::of(&before) {
            before = opened;
            continue;
        }
        let mut bytes = Vec::with_capacity(opened.len() as usize);
        file.by_ref()
            .take(MAX_LIBRARY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let after = file.metadata().map_err(io)?;
        if Stamp::of(&after) == Stamp::of(&opened) && bytes.len() as u64 == after.len() {
            return Ok(bytes);
        }
        before = after;
    }
    Err(err(LoadFailure::NotStable(settle)))
}

/// Loads the plugin in the library at `path`: waits until the file is stable
/// (up to 60 settle intervals of [`DEFAULT_SETTLE`]), then
/// [`load_plugin_bytes`].
pub fn load_plugin(path: &Path) -> Result<AbiPlugin, LoadError> {
    let mut attempt = 0;
    let bytes = loop {
        match read_stable(path, DEFAULT_SETTLE) {
            Err(LoadError {
                reason: LoadFailure::NotStable(_),
                ..
            }) if attempt + 1 < SETTLE_ATTEMPTS => attempt += 1,
            other => break other?,
        }
    };
    load_plugin_bytes(path, &bytes)
}

/// Loads the plugin whose library `path` holds `bytes` (read by
/// [`read_stable`]): copies them into the private directory, checks the copy
/// (a shared library for this platform, nothing pointing past its end),
/// maps it, and unlinks it.
pub fn load_plugin_bytes(path: &Path, bytes: &[u8]) -> Result<AbiPlugin, LoadError> {
    let err = |reason| LoadError {
        path: path.to_path_buf(),
        reason,
    };
    let copy = private::write_copy(path, bytes).map_err(|e| {
        err(LoadFailure::Io(format!(
            "cannot make its private copy for loading: {e}"
        )))
    })?;
    let loaded = std::fs::read(&copy)
        .map_err(|e| LoadFailure::Io(format!("cannot read its private copy back: {e}")))
        .and_then(|on_disk| validate::check_library(&on_disk).map_err(LoadFailure::NotALibrary))
        .and_then(|()| load_module(&copy));
    // Mapped or refused, the copy is no longer needed.
    private::remove_copy(&copy);
    let module = loaded.map_err(|reason| match reason {
        // The linker names the private copy; users know the original.
        LoadFailure::NotALibrary(m) => err(LoadFailure::NotALibrary(
            m.replace(&*copy.to_string_lossy(), &path.to_string_lossy()),
        )),
        other => err(other),
    })?;
    Ok(AbiPlugin::new(
        module,
        PluginSource::Library {
            path: path.to_path_buf(),
            loaded_from: copy,
        },
    ))
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
