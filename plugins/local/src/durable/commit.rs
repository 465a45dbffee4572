//! Group commit: one writer thread, many waiting writers, one fsync per batch.
//!
//! Every put/delete is queued on a channel with a oneshot for its answer. The
//! writer thread blocks until something is queued, then takes everything else
//! already waiting (up to [`MAX_BATCH_OPS`] / [`MAX_BATCH_BYTES`]), applies it
//! in one redb write transaction and commits it durably. Only then does it
//! answer every writer of the batch. While a commit's fsync runs, new writes
//! pile up in the channel and form the next batch, so the batch size adapts to
//! the load without any timer: a lone writer pays one commit and no waiting,
//! 64 concurrent writers share a commit.
//!
//! Why a dedicated OS thread and not a task: the plugin may be a cdylib whose
//! copy of tokio is not the host's (a plugin never depends on the host's
//! runtime), and a commit blocks
//! on fsync for milliseconds, which must not happen on a host worker thread.
//! The answers travel through `futures-channel` oneshots, which any executor
//! can poll.
//!
//! Ordering: the channel is FIFO and a batch applies its writes in queue
//! order, so of two writes to one key the one queued later wins, and a write
//! queued after another was acknowledged is never overtaken by it.
//!
//! A full disk (or any I/O error) fails the batch it hits, and redb refuses
//! every later write on that handle while reads of what was committed keep
//! working. The writer remembers the failure and, at the next batch, checks
//! that the file system has room for it again; if not, the batch is refused
//! at once with "the disk is still full", without touching the file (the
//! same for a file that cannot be opened for writing: a file system remounted
//! read-only). Once there is room, it reopens the store (redb's recovery keeps the last
//! commit) and goes on writing: the store recovers by itself when space
//! returns, no restart needed. Should the reopen fail, the store stays
//! closed, reads say why, and the writer retries every [`REOPEN_RETRY`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use futures_channel::oneshot;
use storage_plugin_api::{Error, ErrorKind, panic_message};

use super::Shared;
use super::store::{self, Op};

/// At most this many writes share one transaction.
pub(crate) const MAX_BATCH_OPS: usize = 4096;

/// A batch stops taking writes once it holds this many bytes of keys and
/// values (it always takes at least one write, however large).
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// After a failed reopen, how often the writer tries again while idle.
pub(crate) const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// After an I/O error, a batch triggers a reopen only if the file system has
/// this much room beyond twice the batch's bytes (redb writes copy-on-write:
/// new pages before old ones are freed, plus b-tree pages).
const REOPEN_HEADROOM: u64 = 1024 * 1024;

/// Where a writer waits for the outcome of its write (or the shutdown for its close).
pub(crate) type Ack = oneshot::Sender<Result<(), Error>>;

/// What the writer thread receives.
pub(crate) enum Msg {
    /// A write and the writer waiting for it.
    Write(Op, Ack),
    /// Commit what was queued before, close the store, answer on the ack.
    Stop(Ack),
}

/// The writer thread's loop, run after the store was opened. Returns the ack
/// of the [`Msg::Stop`] that ended it, or `None` when every sender was dropped.
pub(crate) fn serve(shared: &Arc<Shared>, rx: &Receiver<Msg>) -> Option<Ack> {
    let mut writer = Writer {
        shared,
        io_failure: None,
        closed: false,
    };
    let mut batch: Vec<(Op, Ack)> = Vec::new();
    loop {
        // Block for the first write: an idle store costs nothing. A store
        // left closed by a failed reopen wakes up to retry, so that reads
        // come back even when no write arrives.
        let first = if writer.closed {
            match rx.recv_timeout(REOPEN_RETRY) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = writer.recover(0);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        } else {
            let Ok(first) = rx.recv() else { return None };
            first
        };
        let mut bytes = 0;
        let mut stop = None;
        take(first, &mut batch, &mut bytes, &mut stop);
        // Then everything already waiting, without waiting for more.
        while stop.is_none() && batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut batch, &mut bytes, &mut stop),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if !batch.is_empty() {
            writer.commit(&mut batch, bytes);
        }
        if stop.is_some() {
            // Writes queued after the stop are dropped with the receiver: their
            // writers see the store as shut down.
            return stop;
        }
    }
}

fn take(msg: Msg, batch: &mut Vec<(Op, Ack)>, bytes: &mut usize, stop: &mut Option<Ack>) {
    match msg {
        Msg::Write(op, ack) => {
            *bytes += op.size();
            batch.push((op, ack));
        }
        Msg::Stop(ack) => *stop = Some(ack),
    }
}

/// The writer thread's state between batches.
struct Writer<'a> {
    shared: &'a Arc<Shared>,
    /// The I/O error that stopped writes on the current handle, until a
    /// reopen succeeds.
    io_failure: Option<String>,
    /// A reopen failed: the database is closed until one succeeds.
    closed: bool,
}

impl Writer<'_> {
    /// Commits `batch` (holding `bytes` of keys and values) in one
    /// transaction and answers each of its writers.
    fn commit(&mut self, batch: &mut Vec<(Op, Ack)>, bytes: usize) {
        let shared = self.shared;
        let n = batch.len();
        let result = match shared.write_failure() {
            Some(e) => Err(e),
            None => self.recover(bytes).and_then(|()| self.apply(batch)),
        };
        match &result {
            Ok(()) => {
                shared.count_commit(n);
                tracing::trace!(file = %shared.file.display(), writes = n, "group commit");
            }
            Err(e) => {
                tracing::warn!(file = %shared.file.display(), writes = n, error = %e, "group commit failed")
            }
        }
        // Inputs were validated before they were queued, so what remains to fail
        // (I/O, a full disk) fails the whole transaction: every writer of the
        // batch gets the same answer.
        for (_, ack) in batch.drain(..) {
            // A writer that stopped waiting (its future was dropped) is fine: its
            // write is committed all the same.
            let _ = ack.send(result.clone());
        }
    }

    fn apply(&mut self, batch: &[(Op, Ack)]) -> Result<(), Error> {
        let shared = self.shared;
        let n = batch.len();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            shared.with_db(|db| {
                store::apply(db, &shared.file, batch.iter().map(|(op, _)| op)).map_err(|f| {
                    if f.io {
                        self.io_failure = Some(f.error.message().to_owned());
                    }
                    f.error
                })
            })
        }));
        applied.unwrap_or_else(|payload| {
            // A panic inside redb mid-transaction: the transaction was
            // dropped (not committed), but we cannot vouch for the
            // writer's state any more. Refuse further writes; reads of
            // committed data still work, and re-opening the backend
            // (a new instance) runs redb's recovery.
            let why = panic_message(&*payload);
            shared.fail_writes(&why);
            tracing::error!(file = %shared.file.display(), panic = %why, "local store writer panicked; writes are refused from now on");
            Err(Error::new(
                ErrorKind::Panicked,
                format!(
                    "local: committing {n} writes to '{}' panicked: {why}",
                    shared.file.display()
                ),
            ))
        })
    }

    /// After an I/O error, gets the store ready to write `bytes` again:
    /// refuses at once while the disk has no room for them, otherwise
    /// reopens the store. A no-op when no error happened.
    fn recover(&mut self, bytes: usize) -> Result<(), Error> {
        let Some(cause) = &self.io_failure else {
            return Ok(());
        };
        let shared = self.shared;
        let needed = 2 * bytes as u64 + REOPEN_HEADROOM;
        if let Some(free) = store::free_space(&shared.dir)
            && free < needed
        {
            return Err(Error::unavailable(format!(
                "local: cannot write to '{}': the disk is still full ({free} bytes free); writes resume by \
                 themselves once space is freed (writing stopped after: {cause})",
                shared.file.display()
            )));
        }
        // Nor while the file cannot be written (a file system remounted
        // read-only, permissions taken away): reopening would fail, and the
        // handle kept until then still serves reads.
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(&shared.file) {
            let e = super::error::io("write to the store file", &shared.file, &e);
            return Err(Error::new(
                e.kind(),
                format!("{} (writing stopped after: {cause})", e.message()),
            ));
        }
        let reopened =
            catch_unwind(AssertUnwindSafe(|| shared.reopen())).unwrap_or_else(|payload| {
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!(
                        "local: reopening '{}' panicked: {}",
                        shared.file.display(),
                        panic_message(&*payload)
                    ),
                ))
            });
        match reopened {
            Ok(()) => {
                tracing::info!(file = %shared.file.display(), after = %cause, "local store reopened after an I/O error; writes resume");
                self.io_failure = None;
                self.closed = false;
                Ok(())
            }
            Err(e) => {
                if !self.closed {
                    tracing::warn!(file = %shared.file.display(), error = %e, "reopening the local store failed; retrying");
                }
                self.closed = true;
                Err(e)
            }
        }
    }
}
