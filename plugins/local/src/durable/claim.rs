//! One backend per directory within this copy of the plugin.
//!
//! redb already refuses a second open of a locked file (an open-file-description
//! lock, which also works between two opens in one process). This registry adds
//! a check that needs no file locks at all (file systems where locking is not
//! supported, such as some network mounts) and gives a precise message when
//! the other backend lives in this very process.
//!
//! It is per copy of the library: a hot swap loads the plugin again under
//! another path, with its own statics, so between copies the file lock is
//! what refuses (see [`error::already_open`](super::error::already_open)).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use storage_plugin_api::Error;

static CLAIMED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn claimed() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // Every critical section is a single set operation: a poisoned lock still
    // holds a consistent set.
    CLAIMED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A directory in use by one durable backend of this process; released on drop.
#[derive(Debug)]
pub(crate) struct DirClaim(PathBuf);

impl DirClaim {
    /// Claims `canonical` (a canonicalized directory, so two spellings or a
    /// symlink of one directory are the same claim). `shown` is the path as
    /// the user wrote it, for the message.
    pub(crate) fn acquire(canonical: PathBuf, shown: &Path) -> Result<Self, Error> {
        if !claimed().insert(canonical.clone()) {
            return Err(Error::unavailable(format!(
                "local: the directory '{}' is already used by another durable backend in this process; \
                 a directory serves one backend at a time: shut the other one down (remove_backend) \
                 or give this backend its own directory",
                shown.display()
            )));
        }
        Ok(DirClaim(canonical))
    }
}

impl Drop for DirClaim {
    fn drop(&mut self) {
        claimed().remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_claimed_once_until_released() {
        let p = PathBuf::from("/claim-test/unique-dir");
        let first = DirClaim::acquire(p.clone(), &p).unwrap();
        let e = DirClaim::acquire(p.clone(), Path::new("elsewhere")).unwrap_err();
        assert!(e.message().contains("'elsewhere' is already used"), "{e}");
        drop(first);
        DirClaim::acquire(p.clone(), &p).unwrap();
    }
}
