//! Where the host agrees to load code from.
//!
//! A plugin is code that runs inside the host with all its rights, so a
//! plugins directory that other users can write is a way in. These checks
//! refuse the obvious mistakes; they are not a sandbox.

use std::path::{Path, PathBuf};

#[cfg(unix)]
fn writable_by_others(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        Some("world-writable")
    } else if mode & 0o020 != 0 {
        Some("group-writable")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn writable_by_others(_meta: &std::fs::Metadata) -> Option<&'static str> {
    None
}

/// Checks that `dir` is a directory only its owner can write.
pub fn check_dir(dir: &Path) -> Result<PathBuf, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if let Some(how) = writable_by_others(&meta) {
        return Err(format!(
            "the plugins directory {} is {how}: other users could plant code in the host; run `chmod go-w {}`",
            dir.display(),
            dir.display()
        ));
    }
    std::fs::canonicalize(dir).map_err(|e| format!("cannot resolve {}: {e}", dir.display()))
}

/// Checks that `file` (inside the canonical directory `dir`) resolves inside
/// `dir` and is writable only by its owner.
pub fn check_file(dir: &Path, file: &Path) -> Result<(), String> {
    let real = std::fs::canonicalize(file).map_err(|e| format!("cannot resolve it: {e}"))?;
    if real.parent() != Some(dir) {
        return Err(format!(
            "it resolves to {}, outside the plugins directory {}; copy the library in instead of linking it",
            real.display(),
            dir.display()
        ));
    }
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read it: {e}"))?;
    if let Some(how) = writable_by_others(&meta) {
        return Err(format!(
            "the file is {how}: other users could replace its code; run `chmod go-w` on it"
        ));
    }
    Ok(())
}
