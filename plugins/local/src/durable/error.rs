//! Turning file-system and redb errors into [`Error`]s that say which
//! directory or file is involved and what the user can do about it.
//!
//! The host shows these messages to people (in `add_backend` errors, the
//! `storage-host` report, logs), so each one names the path and a way out.

use std::io;
use std::path::Path;

use storage_plugin_api::Error;

/// An I/O error while preparing the directory or opening the store file.
/// `action` completes "cannot ...", e.g. "create the directory".
pub(crate) fn io(action: &str, path: &Path, e: &io::Error) -> Error {
    let path = path.display();
    match e.kind() {
        io::ErrorKind::PermissionDenied => Error::permission_denied(format!(
            "local: cannot {action} '{path}': permission denied; the durable store needs a directory this process can write to"
        )),
        io::ErrorKind::ReadOnlyFilesystem => Error::permission_denied(format!(
            "local: cannot {action} '{path}': it is on a read-only file system; the durable store needs a writable directory"
        )),
        io::ErrorKind::NotADirectory => Error::invalid_config(format!(
            "local: cannot {action} '{path}': a component of the path is a file, not a directory"
        )),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::unavailable(format!(
            "local: cannot {action} '{path}': no space left on the device"
        )),
        _ => Error::other(format!("local: cannot {action} '{path}': {e}")),
    }
}

/// The store file exists but is not a readable store. Never "fixed" by
/// starting an empty store over it: that would silently lose data.
pub(crate) fn corrupt(file: &Path, detail: &dyn std::fmt::Display) -> Error {
    Error::other(format!(
        "local: the store file '{}' is corrupt or is not a store ({detail}); it was left untouched: \
         restore it from a backup, or move it away to start an empty store",
        file.display()
    ))
}

/// The store is open elsewhere: in another process, or in this one through
/// another copy of the plugin (a hot-swapped library has its own statics).
pub(crate) fn already_open(file: &Path) -> Error {
    Error::unavailable(format!(
        "local: the store file '{}' is already open (by another backend in this process, another copy of \
         this plugin, or another process); a directory serves one backend at a time: shut the other one down \
         or give this backend its own directory",
        file.display()
    ))
}

/// An error from [`redb::Database`]'s open.
pub(crate) fn open(file: &Path, e: redb::DatabaseError) -> Error {
    use redb::{DatabaseError as D, StorageError as S};
    match e {
        D::DatabaseAlreadyOpen | D::LockProtocolMismatch => already_open(file),
        D::UpgradeRequired(v) => Error::invalid_config(format!(
            "local: the store file '{}' uses the old redb file format {v}; upgrade it with redb's tools \
             (it was left untouched)",
            file.display()
        )),
        D::RepairAborted => corrupt(file, &"its recovery after a crash was aborted"),
        D::Storage(S::Corrupted(m)) => corrupt(file, &m),
        // redb reports "this is not a redb file" as InvalidData.
        D::Storage(S::Io(e)) if e.kind() == io::ErrorKind::InvalidData => corrupt(file, &e),
        D::Storage(S::Io(e)) => io("open the store file", file, &e),
        e => Error::other(format!(
            "local: cannot open the store file '{}': {e}",
            file.display()
        )),
    }
}

/// An error from an operation on an open store. `what` describes the
/// operation ("read key \"a\"", "commit 12 writes").
pub(crate) fn op(file: &Path, what: &str, e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    let file = file.display();
    match e {
        redb::Error::Corrupted(m) => Error::other(format!(
            "local: cannot {what} in '{file}': the store file is corrupt ({m}); restore it from a backup"
        )),
        redb::Error::Io(ref io)
            if matches!(
                io.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) =>
        {
            Error::unavailable(format!(
                "local: cannot {what} in '{file}': no space left on the device"
            ))
        }
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
            Error::unavailable(format!("local: cannot {what} in '{file}': {e}"))
        }
        redb::Error::ValueTooLarge(_) => {
            Error::invalid_input(format!("local: cannot {what} in '{file}': {e}"))
        }
        e => Error::other(format!("local: cannot {what} in '{file}': {e}")),
    }
}

/// Whether `e` means the file or the disk under it failed, after which redb
/// refuses every write on that handle (`PreviousIo`) until it is reopened.
pub(crate) fn is_io(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_plugin_api::ErrorKind;

    #[test]
    fn read_only_file_system_is_named() {
        let e = io(
            "create the store file",
            Path::new("/ro/store"),
            &io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("'/ro/store'"), "{e}");
        assert!(e.message().contains("read-only file system"), "{e}");
    }

    #[test]
    fn permission_denied_is_named() {
        let e = io(
            "create the directory",
            Path::new("/srv/data"),
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(
            e.message()
                .contains("cannot create the directory '/srv/data': permission denied"),
            "{e}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn erofs_from_the_kernel_maps_to_read_only() {
        // EROFS is 30 on Linux; this is what open(2) answers on a read-only mount.
        let e = io(
            "create the store file",
            Path::new("/mnt/x"),
            &io::Error::from_raw_os_error(30),
        );
        assert!(e.message().contains("read-only file system"), "{e}");
    }

    #[test]
    fn lock_conflicts_are_retryable_and_name_the_file() {
        let e = open(
            Path::new("/d/local.redb"),
            redb::DatabaseError::DatabaseAlreadyOpen,
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(
            e.message().contains("'/d/local.redb' is already open"),
            "{e}"
        );
    }

    #[test]
    fn not_a_database_is_reported_as_corrupt() {
        let inner = io::Error::new(io::ErrorKind::InvalidData, "not a redb file");
        let e = open(
            Path::new("/d/local.redb"),
            redb::DatabaseError::Storage(redb::StorageError::Io(inner)),
        );
        assert!(e.message().contains("corrupt"), "{e}");
        assert!(e.message().contains("left untouched"), "{e}");
    }
}
