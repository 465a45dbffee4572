//! The durable store: `path: Some(dir)` keeps data in `dir/local.redb`.
//!
//! - Crash safety: every put/delete is acknowledged only after the redb
//!   transaction holding it committed with `Durability::Immediate` (fsync'd),
//!   so an acknowledged write survives `kill -9` and power loss as far as the
//!   disk honours fsync. A crash mid-commit leaves the previous commit intact.
//! - Group commit ([`commit`]): one writer thread turns concurrent writes into
//!   one transaction and one fsync per batch.
//! - Reads run inline on the caller's thread, see [`DurableBackend::get`].
//! - One backend per directory: a second open of a directory already in use
//!   (in this process or another) is refused with
//!   [`ErrorKind::Unavailable`](storage_plugin_api::ErrorKind::Unavailable)
//!   naming the file. Sharing one handle was the alternative; refusing was
//!   chosen because sharing cannot work across copies of the plugin library
//!   (each has its own statics) nor across processes, and because the hot
//!   swap relies on it: the new instance's first open fails fast while the old
//!   one holds the file, the host shuts the old one down, and the retry opens.
//! - Limits ([`MAX_KEY_LEN`], [`MAX_VALUE_LEN`]) are checked before any I/O.
//! - [`shutdown`](DurableBackend::shutdown) commits what is queued, closes
//!   the file and releases its lock; afterwards every operation answers
//!   `Unavailable`.

mod claim;
mod commit;
mod error;
mod limits;
mod store;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use futures_channel::oneshot;
use redb::Database;
use storage_plugin_api::{Error, ErrorKind, KeyPage};

use claim::DirClaim;
use commit::Msg;
use store::Op;

pub use limits::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use store::{CACHE_SIZE, STORE_FILE_NAME};

/// How to open a [`DurableBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableOptions {
    /// Check every page's checksum when opening (default `true`), so damage
    /// done to a cleanly closed file is reported at open rather than served
    /// as data. Costs a read of the whole file per open (a hot swap re-opens).
    pub verify_on_open: bool,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            verify_on_open: true,
        }
    }
}

/// A durable key-value store in a directory, backed by one redb file.
///
/// Open it with [`DurableBackend::open`]; close it with
/// [`shutdown`](Self::shutdown) (dropping it closes it too, waiting for the
/// writes queued before).
pub struct DurableBackend {
    shared: Arc<Shared>,
    /// The writer thread's queue; `None` once shut down.
    tx: RwLock<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What the backend's handle, the writer thread and list threads share.
pub(crate) struct Shared {
    /// The directory as configured (for messages).
    dir: PathBuf,
    /// The store file inside it (for messages).
    file: PathBuf,
    /// The open database; `None` before open and after close. Readers hold
    /// the read lock for one short read transaction; the writer thread holds
    /// it for one commit; only closing takes the write lock.
    db: RwLock<Option<Database>>,
    /// Why writes are refused, after the writer thread caught a panic.
    write_failure: Mutex<Option<String>>,
    /// Why the database is closed while the backend is not shut down: the
    /// writer could not reopen it after an I/O error and keeps retrying.
    reopen_failure: Mutex<Option<String>>,
    /// Transactions committed by the writer thread.
    commits: AtomicU64,
    /// Writes (puts and deletes) those transactions held.
    committed_writes: AtomicU64,
}

/// How well group commit is sharing commits, from [`DurableBackend::commit_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Durable (fsync'd) transactions committed since the store was opened.
    pub commits: u64,
    /// Puts and deletes those transactions held; `writes / commits` is the
    /// average batch size.
    pub writes: u64,
}

impl Shared {
    /// Runs `f` on the open database, or answers that the store is closed.
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T, Error>) -> Result<T, Error> {
        // A panic under the read lock does not poison it, and closing (the
        // only writer) cannot be interrupted half-way: the value inside is
        // always consistent.
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(self.closed()),
        }
    }

    fn closed(&self) -> Error {
        let reopening = self
            .reopen_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(why) = reopening.as_ref() {
            return Error::unavailable(format!(
                "local: the store file '{}' is closed after an I/O error and could not be reopened yet ({why}); \
                 the store retries every second",
                self.file.display()
            ));
        }
        Error::unavailable(format!(
            "local: the durable store in '{}' is shut down",
            self.dir.display()
        ))
    }

    pub(crate) fn write_failure(&self) -> Option<Error> {
        let why = self.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        why.as_ref().map(|why| {
            Error::unavailable(format!(
                "local: writes to '{}' are refused since its writer panicked ({why}); re-open the backend",
                self.file.display()
            ))
        })
    }

    pub(crate) fn count_commit(&self, writes: usize) {
        self.commits.fetch_add(1, Relaxed);
        self.committed_writes.fetch_add(writes as u64, Relaxed);
    }

    pub(crate) fn fail_writes(&self, why: &str) {
        *self.write_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
    }

    /// Opens the store in the writer thread. The claim is held as long as
    /// the database is open.
    fn open(&self, options: DurableOptions) -> Result<DirClaim, Error> {
        let canonical = store::prepare_dir(&self.dir)?;
        let claim = DirClaim::acquire(canonical, &self.dir)?;
        let db = store::open(&self.file, options.verify_on_open)?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
        Ok(claim)
    }

    /// Closes the database and opens the file again, which runs redb's
    /// recovery: the way back to writing after an I/O error (redb refuses
    /// every write on a handle that saw one). Reads wait for the reopen
    /// rather than fail. On an error the database stays closed, reads answer
    /// why, and the writer thread retries.
    pub(crate) fn reopen(&self) -> Result<(), Error> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Dropping the failed handle releases redb's lock on the file. It
        // cannot write its clean-shutdown marker after the error, so the
        // open below goes through crash recovery: the last commit is intact.
        drop(db.take());
        // No integrity pass: the file was in use until now; recovery checks
        // what a failed commit could have touched.
        let reopened = store::open(&self.file, false);
        let mut why = self
            .reopen_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match reopened {
            Ok(new) => {
                *db = Some(new);
                *why = None;
                Ok(())
            }
            Err(e) => {
                *why = Some(e.message().to_owned());
                Err(e)
            }
        }
    }

    /// Closes the database: flushes and releases the file lock.
    fn close(&self) -> Result<(), Error> {
        // Taking the write lock waits for reads in flight (each a single short
        // read transaction); later reads find `None` and answer "shut down".
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        match db {
            Some(db) => db.close().map_err(|e| {
                Error::other(format!(
                    "local: closing the store file '{}' failed: {e}",
                    self.file.display()
                ))
            }),
            None => Ok(()),
        }
    }
}

/// The writer thread: opens the store, reports how that went, serves writes
/// until stopped, closes the store, then answers the stop.
fn writer_thread(
    shared: Arc<Shared>,
    options: DurableOptions,
    rx: mpsc::Receiver<Msg>,
    opened: oneshot::Sender<Result<(), Error>>,
) {
    // redb may panic on a damaged file it was told to trust (an open
    // without verification): report that as a damaged file, not a crash.
    let open = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.open(options)));
    let claim = match open {
        Ok(Ok(claim)) => claim,
        Ok(Err(e)) => {
            let _ = opened.send(Err(e));
            return;
        }
        Err(payload) => {
            let why = storage_plugin_api::panic_message(&*payload);
            let _ = opened.send(Err(Error::new(
                ErrorKind::Panicked,
                format!(
                    "local: opening the store file '{}' panicked inside redb ({why}); the file is probably corrupt: \
                     open it with verify_on_open (the default) for a precise report",
                    shared.file.display()
                ),
            )));
            return;
        }
    };
    let _ = opened.send(Ok(()));
    let stop = commit::serve(&shared, &rx);
    let closed = shared.close();
    // Release the directory before answering, so whoever waits for the
    // shutdown can open it again at once.
    drop(claim);
    match stop {
        Some(ack) => {
            let _ = ack.send(closed);
        }
        None => {
            if let Err(e) = closed {
                tracing::warn!(error = %e, "closing the local store failed");
            }
        }
    }
    tracing::info!(dir = %shared.dir.display(), "durable local store closed");
}

impl DurableBackend {
    /// Opens the store in `dir`, creating the directory and the store file if
    /// they do not exist.
    ///
    /// Errors name the path: `dir` is a file, is not writable, is on a
    /// read-only file system; the store file is corrupt (it is never replaced);
    /// the directory is in use by another backend (refused, see the module
    /// documentation). The blocking work (directory checks, redb's open and
    /// crash recovery) runs on the store's own writer thread, not the caller's.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(dir, DurableOptions::default()).await
    }

    /// [`open`](Self::open) with explicit options.
    pub async fn open_with(dir: impl AsRef<Path>, options: DurableOptions) -> Result<Self, Error> {
        let dir = dir.as_ref().to_path_buf();
        let shared = Arc::new(Shared {
            file: dir.join(STORE_FILE_NAME),
            dir,
            db: RwLock::new(None),
            write_failure: Mutex::new(None),
            reopen_failure: Mutex::new(None),
            commits: AtomicU64::new(0),
            committed_writes: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("local-store-writer".into())
            .spawn(move || writer_thread(thread_shared, options, rx, opened_tx))
            .map_err(|e| {
                Error::unavailable(format!(
                    "local: cannot start the writer thread for '{}': {e}",
                    shared.dir.display()
                ))
            })?;
        // If this future is dropped here, `tx` goes with it: the writer sees
        // its queue closed, closes the store and exits.
        match opened.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(oneshot::Canceled) => {
                return Err(Error::new(
                    ErrorKind::Panicked,
                    format!("local: opening '{}' panicked", shared.file.display()),
                ));
            }
        }
        tracing::info!(dir = %shared.dir.display(), "durable local store opened");
        Ok(DurableBackend {
            shared,
            tx: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The directory the store lives in, as configured.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Counts of commits and of the writes they held since the store was opened.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.shared.commits.load(Relaxed),
            writes: self.shared.committed_writes.load(Relaxed),
        }
    }

    /// Reads `key`; `Ok(None)` when it does not exist.
    ///
    /// Runs inline on the calling thread, deliberately: a redb read
    /// transaction is a snapshot of the last commit taken without locks or
    /// I/O, and a lookup is a few page reads, almost always from redb's cache
    /// or the OS page cache (microseconds). Handing it to another thread would
    /// cost more than the read itself (a thread hop and a wake-up per get).
    /// Reads never wait for the writer: a commit in progress does not block them.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        limits::check_key(key)?;
        self.shared
            .with_db(|db| store::get(db, &self.shared.file, key))
    }

    /// Writes `value` under `key`; returns once the write is committed and fsync'd.
    ///
    /// If the returned future is dropped after the write was queued, the
    /// write still happens.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        limits::check_key(key)?;
        limits::check_value(key, value.len())?;
        self.write(Op::Put(key.to_owned(), value)).await
    }

    /// Removes `key` (a missing key is fine); returns once that is durable.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        limits::check_key(key)?;
        self.write(Op::Delete(key.to_owned())).await
    }

    async fn write(&self, op: Op) -> Result<(), Error> {
        let (ack, done) = oneshot::channel();
        {
            let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
            let Some(tx) = tx.as_ref() else {
                return Err(self.shared.closed());
            };
            if tx.send(Msg::Write(op, ack)).is_err() {
                return Err(self.shared.closed());
            }
        }
        // Canceled: the writer dropped the write unanswered, which it only
        // does to writes queued after a shutdown began.
        done.await.unwrap_or_else(|_| Err(self.shared.closed()))
    }

    /// The keys starting with `prefix`, in ascending byte order.
    ///
    /// Unlike `get`, a list scans as many keys as match, which can be the
    /// whole store: it runs on a short-lived thread of its own so a large
    /// scan never stalls the caller's executor.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let owned = prefix.to_owned();
        self.scan(move |db, file| store::list(db, file, &owned))
            .await
    }

    /// Up to `limit` keys starting with `prefix` that sort after `after`, in
    /// ascending byte order, and whether more follow. Reads at most
    /// `limit + 1` keys, however large the store; like [`list`](Self::list)
    /// it runs off the caller's thread.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, Error> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.scan(move |db, file| store::list_page(db, file, &prefix, after.as_deref(), limit))
            .await
    }

    /// Runs a read-only scan on a short-lived thread of its own.
    async fn scan<T: Send + 'static>(
        &self,
        scan: impl FnOnce(&Database, &Path) -> Result<T, Error> + Clone + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::clone(&self.shared);
        let on_thread = scan.clone();
        let spawned = std::thread::Builder::new()
            .name("local-store-list".into())
            .spawn(move || {
                let _ = tx.send(shared.with_db(|db| on_thread(db, &shared.file)));
            });
        match spawned {
            Ok(_) => rx.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!(
                        "local: listing keys in '{}' panicked",
                        self.shared.file.display()
                    ),
                ))
            }),
            // No thread to be had (resource limits): scanning here beats failing.
            Err(_) => self.shared.with_db(|db| scan(db, &self.shared.file)),
        }
    }

    /// Commits every write queued so far, closes the store file and releases
    /// its lock, so another instance can open the directory as soon as this
    /// returns. Later operations answer `Unavailable`. Calling it again is a no-op.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let tx = self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
        let Some(tx) = tx else { return Ok(()) };
        let (ack, done) = oneshot::channel();
        let _ = tx.send(Msg::Stop(ack));
        drop(tx);
        let result = match done.await {
            Ok(result) => result,
            // The writer is gone without closing (it cannot be, short of a
            // panic outside its guards): close here so the lock is released.
            Err(_) => self.shared.close(),
        };
        // The thread has closed the store and only has to return: no need to
        // wait for it.
        drop(self.writer.lock().unwrap_or_else(|e| e.into_inner()).take());
        result
    }
}

impl Drop for DurableBackend {
    fn drop(&mut self) {
        // Dropped without shutdown (a manager dropped as a whole): stop the
        // writer after what is queued and wait for it, so the file is closed
        // and its lock released when the drop returns, and a new instance in
        // this process can open the directory right away.
        if let Some(tx) = self.tx.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let (ack, _) = oneshot::channel();
            let _ = tx.send(Msg::Stop(ack));
        }
        if let Some(writer) = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = writer.join();
        }
    }
}
