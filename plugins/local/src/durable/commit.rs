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
//! copy of tokio is not the host's (DESIGN.md section 3), and a commit blocks
//! on fsync for milliseconds, which must not happen on a host worker thread.
//! The answers travel through `futures-channel` oneshots, which any executor
//! can poll.
//!
//! Ordering: the channel is FIFO and a batch applies its writes in queue
//! order, so of two writes to one key the one queued later wins, and a write
//! queued after another was acknowledged is never overtaken by it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};

use futures_channel::oneshot;
use storage_plugin_api::{Error, ErrorKind, panic_message};

use super::Shared;
use super::store::{self, Op};

/// At most this many writes share one transaction.
pub(crate) const MAX_BATCH_OPS: usize = 4096;

/// A batch stops taking writes once it holds this many bytes of keys and
/// values (it always takes at least one write, however large).
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

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
    let mut batch: Vec<(Op, Ack)> = Vec::new();
    loop {
        // Block for the first write: an idle store costs nothing.
        let Ok(first) = rx.recv() else { return None };
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
            commit(shared, &mut batch);
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

/// Commits `batch` in one transaction and answers each of its writers.
fn commit(shared: &Shared, batch: &mut Vec<(Op, Ack)>) {
    let n = batch.len();
    let result = match shared.write_failure() {
        Some(e) => Err(e),
        None => {
            let applied = catch_unwind(AssertUnwindSafe(|| {
                shared.with_db(|db| store::apply(db, &shared.file, batch.iter().map(|(op, _)| op)))
            }));
            match applied {
                Ok(r) => r,
                Err(payload) => {
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
                }
            }
        }
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
