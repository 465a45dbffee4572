//! The on-disk layout and the redb calls: opening, reading, applying a batch.
//!
//! Layout: `dir/local.redb`, one redb file holding one table `kv` of
//! `&str -> &[u8]`. Keys are stored as they are (no mapping to file names), so
//! any UTF-8 string is a key and none can escape the directory. redb orders
//! `&str` keys by their bytes, which is the order `list` promises.

use std::fs;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition, TableError};
use storage_plugin_api::{Error, KeyPage, ShownKey};

use super::error;

/// The name of the store file inside the configured directory.
pub const STORE_FILE_NAME: &str = "local.redb";

/// redb's page cache for one store. redb's default is 1 GiB per database;
/// a host may run several local backends beside other plugins, so each gets
/// a smaller share. Pages beyond it are read from the OS page cache.
pub const CACHE_SIZE: usize = 64 * 1024 * 1024;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// One queued write.
#[derive(Debug)]
pub(crate) enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Op {
    /// Bytes this write holds in memory while queued (bounds a batch).
    pub(crate) fn size(&self) -> usize {
        match self {
            Op::Put(k, v) => k.len() + v.len(),
            Op::Delete(k) => k.len(),
        }
    }
}

/// Makes sure `dir` is a directory, creating it (and its parents) if missing,
/// and returns its canonical path (which identifies it in the claim registry).
pub(crate) fn prepare_dir(dir: &Path) -> Result<PathBuf, Error> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid_config(format!(
                "local: '{}' is a file, not a directory; `path` names the directory the store lives in \
                 (it holds the file {STORE_FILE_NAME})",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| error::io("create the directory", dir, &e))?;
        }
        Err(e) => return Err(error::io("access the directory", dir, &e)),
    }
    fs::canonicalize(dir).map_err(|e| error::io("resolve the directory", dir, &e))
}

/// Opens (or creates) the store file `file`.
///
/// An existing file that is not an intact store is an error, never replaced.
/// After a crash, redb repairs the file on open (its allocator state, not the
/// data: a commit is atomic), which is what makes an acknowledged write
/// survive `kill -9`.
///
/// With `verify`, redb checks the checksum of every page of the committed
/// trees on every open, not only after a crash. Without it, redb trusts a
/// cleanly closed file, and damage done to it since (bit rot, a bad copy) is
/// returned as data or panics at the first read that meets it. Verifying
/// reads the whole file: about 0.2 s for a 170 MB store here (page cache
/// warm), against under 1 ms without.
pub(crate) fn open(file: &Path, verify: bool) -> Result<Database, Error> {
    if file.is_dir() {
        return Err(Error::invalid_config(format!(
            "local: '{}' is a directory, but the store keeps its data in a file of that name; move it away",
            file.display()
        )));
    }
    let db = Database::builder()
        .set_cache_size(CACHE_SIZE)
        .set_check_integrity_on_open(verify)
        .create(file)
        .map_err(|e| error::open(file, e))?;
    ensure_table(&db, file)?;
    Ok(db)
}

// Reads then never meet a missing table. Only a new file pays this commit;
// it also proves at open time (not at the first put) that the file is writable.
fn ensure_table(db: &Database, file: &Path) -> Result<(), Error> {
    let read = db
        .begin_read()
        .map_err(|e| error::op(file, "open the store", e))?;
    match read.open_table(TABLE) {
        Ok(_) => return Ok(()),
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(error::op(file, "open the store", e)),
    }
    drop(read);
    let what = "initialise the store";
    let mut txn = db.begin_write().map_err(|e| error::op(file, what, e))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| Error::other(format!("local: {what} in '{}': {e}", file.display())))?;
    txn.open_table(TABLE)
        .map_err(|e| error::op(file, what, e))?;
    txn.commit().map_err(|e| error::op(file, what, e))
}

/// Reads `key` in a fresh read transaction (a consistent snapshot of the last commit).
pub(crate) fn get(db: &Database, file: &Path, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let what = || format!("read key {}", ShownKey::new(key));
    let txn = db.begin_read().map_err(|e| error::op(file, &what(), e))?;
    let table = txn
        .open_table(TABLE)
        .map_err(|e| error::op(file, &what(), e))?;
    let value = table.get(key).map_err(|e| error::op(file, &what(), e))?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// The keys starting with `prefix`, in byte order.
pub(crate) fn list(db: &Database, file: &Path, prefix: &str) -> Result<Vec<String>, Error> {
    let what = || format!("list keys starting with {}", ShownKey::new(prefix));
    let txn = db.begin_read().map_err(|e| error::op(file, &what(), e))?;
    let table = txn
        .open_table(TABLE)
        .map_err(|e| error::op(file, &what(), e))?;
    let mut keys = Vec::new();
    // Every key with the prefix sorts at or after the prefix itself, and they
    // are contiguous: scan from there and stop at the first key without it.
    for entry in table
        .range(prefix..)
        .map_err(|e| error::op(file, &what(), e))?
    {
        let (key, _) = entry.map_err(|e| error::op(file, &what(), e))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}

/// Up to `limit` keys starting with `prefix` after `after`, in byte order,
/// reading at most `limit + 1` keys.
pub(crate) fn list_page(
    db: &Database,
    file: &Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<KeyPage, Error> {
    use std::ops::Bound;
    let what = || format!("list keys starting with {}", ShownKey::new(prefix));
    let txn = db.begin_read().map_err(|e| error::op(file, &what(), e))?;
    let table = txn
        .open_table(TABLE)
        .map_err(|e| error::op(file, &what(), e))?;
    // Start at the prefix, or just past the cursor when that is later.
    let from = match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut keys = Vec::new();
    for entry in table
        .range::<&str>((from, Bound::Unbounded))
        .map_err(|e| error::op(file, &what(), e))?
    {
        let (key, _) = entry.map_err(|e| error::op(file, &what(), e))?;
        let key = key.value();
        if !key.starts_with(prefix) || keys.len() > limit {
            break;
        }
        keys.push(key.to_owned());
    }
    Ok(KeyPage::from_overfetch(keys, limit))
}

/// Why a batch did not commit.
pub(crate) struct Failed {
    /// What every writer of the batch is told.
    pub(crate) error: Error,
    /// The file or the disk under it failed (a full disk, an I/O error):
    /// redb refuses every later write on this handle, so the store must be
    /// reopened before it can write again (see [`super::commit`]).
    pub(crate) io: bool,
}

fn failed(file: &Path, what: &str, e: impl Into<redb::Error>) -> Failed {
    let e = e.into();
    Failed {
        io: error::is_io(&e),
        error: error::op(file, what, e),
    }
}

/// Applies `ops` in order in one write transaction and commits it durably
/// (redb's `Immediate` durability: the commit is fsync'd before it returns).
pub(crate) fn apply<'a>(
    db: &Database,
    file: &Path,
    ops: impl ExactSizeIterator<Item = &'a Op>,
) -> Result<(), Failed> {
    let n = ops.len();
    let what = format!("commit {n} write{}", if n == 1 { "" } else { "s" });
    let mut txn = db.begin_write().map_err(|e| failed(file, &what, e))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| failed(file, &what, e))?;
    {
        let mut table = txn.open_table(TABLE).map_err(|e| failed(file, &what, e))?;
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    table
                        .insert(k.as_str(), v.as_slice())
                        .map_err(|e| failed(file, &what, e))?;
                }
                Op::Delete(k) => {
                    table
                        .remove(k.as_str())
                        .map_err(|e| failed(file, &what, e))?;
                }
            }
        }
    }
    // On an error above, dropping `txn` aborts it: nothing of the batch is applied.
    txn.commit().map_err(|e| failed(file, &what, e))
}

/// Bytes available to this process on the file system holding `dir`, when
/// the platform can tell.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stats = rustix::fs::statvfs(dir).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}
