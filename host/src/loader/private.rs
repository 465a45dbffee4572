//! The private directory plugin copies are mapped from.
//!
//! One fresh directory per process, created atomically under a random name
//! with mode 0700 (`tempfile`), and checked after creation: a directory, not
//! a symlink, owned by the host's effective user, closed to group and others.
//! Nothing is ever written to a name another user could have prepared: a
//! pre-planted directory or symlink in `$TMPDIR` is simply not used.
//!
//! Each copy is created with `O_CREAT | O_EXCL | O_NOFOLLOW` (so never
//! through a symlink, never over an existing file), checked (owner, mode,
//! one link), and unlinked as soon as the library is mapped: the mapping
//! stays valid, and no copy outlives its load. The directory itself is
//! removed when the process exits (an `atexit` hook: a normal exit, a return
//! from `main` after SIGTERM, or `std::process::exit`), or earlier by
//! [`remove_private_dir`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory, once created (and until removed).
static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The prefix of the directory's name in the system temp directory.
pub const PRIVATE_DIR_PREFIX: &str = "storage-host-plugins-";

fn lock() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    DIR.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's private directory, created on first use (and again if
/// something removed it).
fn private_dir() -> io::Result<PathBuf> {
    let mut dir = lock();
    if let Some(d) = dir.as_ref()
        && check_dir(d).is_ok()
    {
        return Ok(d.clone());
    }
    let created = create_dir()?;
    register_exit_hook();
    *dir = Some(created.clone());
    Ok(created)
}

fn create_dir() -> io::Result<PathBuf> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(PRIVATE_DIR_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let path = builder.tempdir()?.keep();
    if let Err(e) = check_dir(&path) {
        let _ = std::fs::remove_dir(&path);
        return Err(e);
    }
    tracing::debug!(dir = %path.display(), "private plugin directory created");
    Ok(path)
}

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what)
}

/// A directory (not a symlink), owned by us, closed to group and others.
fn check_dir(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(refuse(format!(
            "the private plugin directory {} is not a directory",
            path.display()
        )));
    }
    check_owner_and_mode(path, &meta)
}

#[cfg(unix)]
fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(refuse(format!(
            "{} is owned by uid {}, not by the host's user (uid {me})",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "{} has mode {:o}: group or others have access",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_and_mode(_path: &Path, _meta: &std::fs::Metadata) -> io::Result<()> {
    Ok(())
}

/// Creates a new, empty file in the private directory (never through a
/// symlink, never over an existing file), checks it, and returns it open for
/// writing with its path. The name keeps the original's stem and extension,
/// for the linker's messages.
pub(crate) fn create_copy(original: &Path) -> io::Result<(std::fs::File, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = private_dir()?;
    let stem = original
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let ext = original
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let copy = dir.join(format!("{stem}-{n}.{ext}"));
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(&copy)?;
    let checked = (|| {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(refuse(format!("{} is not a regular file", copy.display())));
        }
        check_owner_and_mode(&copy, &meta)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if meta.nlink() != 1 {
                return Err(refuse(format!(
                    "{} has {} links",
                    copy.display(),
                    meta.nlink()
                )));
            }
        }
        Ok(())
    })();
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&copy);
        return Err(e);
    }
    Ok((file, copy))
}

/// Removes a copy (once it is mapped, or after it was refused).
pub(crate) fn remove_copy(copy: &Path) {
    if let Err(e) = std::fs::remove_file(copy)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(file = %copy.display(), error = %e, "cannot remove a private plugin copy");
    }
}

/// Removes the process's private plugin directory and whatever is in it.
///
/// Runs by itself when the process exits; a server may call it after its
/// shutdown too. Libraries already mapped stay mapped. A later load creates
/// a fresh directory.
pub fn remove_private_dir() {
    remove_locked(&mut lock());
}

fn remove_locked(dir: &mut Option<PathBuf>) {
    if let Some(d) = dir.take() {
        // Only our own directory: refuse to follow anything swapped in.
        if check_dir(&d).is_ok() {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// The private directory, if this process has created one (for tests and
/// diagnostics).
pub fn private_dir_path() -> Option<PathBuf> {
    lock().clone()
}

#[cfg(unix)]
fn register_exit_hook() {
    use std::sync::Once;
    static HOOK: Once = Once::new();
    extern "C" fn at_exit() {
        // Another thread may hold the lock while the process exits: never
        // wait for it at exit (the copies in it are unlinked already).
        if let Ok(mut dir) = DIR.try_lock() {
            remove_locked(&mut dir);
        }
    }
    HOOK.call_once(|| {
        // SAFETY: `at_exit` is a plain `extern "C"` function with no
        // arguments that never unwinds (it only removes files and ignores
        // every error); atexit only stores the pointer.
        let rc = unsafe { libc::atexit(at_exit) };
        if rc != 0 {
            tracing::warn!("cannot register the private plugin directory's removal at exit");
        }
    });
}

#[cfg(not(unix))]
fn register_exit_hook() {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copies_are_new_private_files_in_a_private_directory() {
        let original = Path::new("/plugins/libx.so");
        let (_a, first) = create_copy(original).unwrap();
        let (_b, second) = create_copy(original).unwrap();
        assert_ne!(first, second, "every copy is a new file");
        assert_eq!(first.parent(), second.parent(), "one directory per process");
        let dir = first.parent().unwrap();
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(PRIVATE_DIR_PREFIX)
        );
        let meta = std::fs::symlink_metadata(dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        for copy in [&first, &second] {
            let meta = std::fs::symlink_metadata(copy).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.mode() & 0o777, 0o600);
            assert!(copy.extension().is_some_and(|e| e == "so"));
            remove_copy(copy);
            assert!(!copy.exists());
        }
        // A name that exists (or a symlink planted at it) is never opened.
        let planted = dir.join("planted.so");
        std::os::unix::fs::symlink("/etc/hostname", &planted).unwrap();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        assert!(options.open(&planted).is_err());
        std::fs::remove_file(&planted).unwrap();
    }
}
