//! A per-backend circuit breaker.
//!
//! After [`FAILURE_THRESHOLD`] consecutive "unavailable" failures a backend is
//! taken out of routing for a cooldown (1 s, doubling up to 30 s). When the
//! cooldown ends one operation is let through as a probe: success closes the
//! breaker, failure re-opens it for longer. All state is in atomics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Consecutive unavailable errors that open the breaker.
pub const FAILURE_THRESHOLD: u32 = 5;
const BASE_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// The health of one backend, as routing sees it.
///
/// In circuit-breaker terms, [`Healthy`](Health::Healthy) and
/// [`Degraded`](Health::Degraded) are a *closed* breaker and
/// [`TakenOut`](Health::TakenOut) an *open* one; the variants are named for
/// what they mean to routing, since "open" reads as "healthy" to anyone who
/// does not know the electrical metaphor. The HTTP API spells them
/// `"healthy"`, `"degraded"`, `"taken_out"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Serving, no recent failure.
    Healthy,
    /// Failing recently (an unavailable error since the last success, or a
    /// cooldown just over with the probe not yet answered), still routed.
    Degraded,
    /// Taken out of routing by the circuit breaker after
    /// [`FAILURE_THRESHOLD`] consecutive unavailable errors, until its
    /// cooldown ends and one probe operation succeeds. When every candidate
    /// is taken out, operations still try them.
    TakenOut,
}

pub(crate) struct Breaker {
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the breaker is open (0: closed).
    open_until_ms: AtomicU64,
    /// Consecutive times the breaker opened (each failed probe doubles the cooldown).
    trips: AtomicU32,
    /// Whether the operation in flight is the probe after a cooldown.
    probing: AtomicBool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            probing: AtomicBool::new(false),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether an operation may be sent. While open, returns false; once the
    /// cooldown is over exactly one caller wins the probe.
    pub(crate) fn allow(&self) -> bool {
        let until = self.open_until_ms.load(SeqCst);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        // Claim the probe: push the deadline forward so others keep waiting
        // while it runs.
        let next = now + self.cooldown().as_millis() as u64;
        let won = self
            .open_until_ms
            .compare_exchange(until, next, SeqCst, SeqCst)
            .is_ok();
        if won {
            self.probing.store(true, SeqCst);
        }
        won
    }

    fn cooldown(&self) -> Duration {
        let trips = self.trips.load(SeqCst).min(6);
        (BASE_COOLDOWN * 2u32.pow(trips.saturating_sub(1))).min(MAX_COOLDOWN)
    }

    pub(crate) fn on_success(&self) {
        if self.failures.load(SeqCst) != 0 {
            self.failures.store(0, SeqCst);
        }
        self.probing.store(false, SeqCst);
        if self.open_until_ms.load(SeqCst) != 0 {
            self.open_until_ms.store(0, SeqCst);
            self.trips.store(0, SeqCst);
            tracing::info!("backend recovered; circuit closed");
        }
    }

    /// Records an unavailable error; returns true when this opened the breaker.
    pub(crate) fn on_unavailable(&self) -> bool {
        let failures = self.failures.fetch_add(1, SeqCst) + 1;
        let failed_probe = self.probing.swap(false, SeqCst);
        let closed = self.open_until_ms.load(SeqCst) == 0;
        // Open on reaching the threshold, and re-open for longer when a probe
        // fails. Failures of operations forced through an open breaker (every
        // candidate open) do not lengthen the cooldown.
        if (closed && failures >= FAILURE_THRESHOLD) || failed_probe {
            self.trips.fetch_add(1, SeqCst);
            let until = self.now_ms() + self.cooldown().as_millis() as u64;
            self.open_until_ms.store(until.max(1), SeqCst);
            return closed;
        }
        false
    }

    pub(crate) fn health(&self) -> Health {
        let until = self.open_until_ms.load(SeqCst);
        if until != 0 && self.now_ms() < until {
            Health::TakenOut
        } else if self.failures.load(SeqCst) > 0 {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = Breaker::default();
        for _ in 0..FAILURE_THRESHOLD - 1 {
            b.on_unavailable();
            assert!(b.allow());
        }
        assert!(b.on_unavailable());
        assert!(!b.allow());
        assert_eq!(b.health(), Health::TakenOut);
        // Pretend the cooldown passed.
        b.open_until_ms.store(1, SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.allow(), "first caller after the cooldown probes");
        assert!(!b.allow(), "only one probe at a time");
        // A failed probe re-opens for longer.
        b.on_unavailable();
        assert_eq!(b.health(), Health::TakenOut);
        assert_eq!(b.cooldown(), Duration::from_secs(2));
        b.on_success();
        assert!(b.allow());
        assert_eq!(b.health(), Health::Healthy);
    }
}
