//! The gate every operation on a backend passes, which lets a hot swap hold
//! new operations and wait for the ones in flight.
//!
//! The protocol is Dekker-style with sequentially consistent atomics: an
//! operation announces itself (`inflight += 1`) and then checks `paused`; the
//! swapper sets `paused` and then waits for `inflight == 0`. Either the
//! operation sees the pause and backs off, or the swapper sees the operation
//! and waits for it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::{Padded, STRIPES, stripe};

#[derive(Default)]
pub(crate) struct Gate {
    /// Operations in flight, striped so that threads do not contend on one
    /// cache line; an operation leaves through the stripe it entered by.
    inflight: [Padded<AtomicUsize>; STRIPES],
    paused: AtomicBool,
    resumed: Notify,
}

pub(crate) struct Pass<'a>(&'a AtomicUsize);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Gate {
    fn inflight(&self) -> usize {
        self.inflight
            .iter()
            .fold(0usize, |n, c| n.wrapping_add(c.0.load(SeqCst)))
    }

    /// Waits until operations are allowed, then counts this one in flight.
    pub(crate) async fn enter(&self) -> Pass<'_> {
        let counter = &self.inflight[stripe()].0;
        loop {
            counter.fetch_add(1, SeqCst);
            if !self.paused.load(SeqCst) {
                return Pass(counter);
            }
            counter.fetch_sub(1, SeqCst);
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if self.paused.load(SeqCst) {
                resumed.await;
            }
        }
    }

    /// Holds new operations and waits for those in flight to finish.
    pub(crate) async fn pause_and_drain(&self) {
        self.paused.store(true, SeqCst);
        while self.inflight() != 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Lets held operations go.
    pub(crate) fn resume(&self) {
        self.paused.store(false, SeqCst);
        self.resumed.notify_waiters();
    }
}
