//! Metrics: lock-free counters on the hot path, a snapshot type for readers,
//! and a Prometheus text rendering.

mod histogram;
mod prometheus;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub(crate) use histogram::Histogram;
pub use histogram::{BUCKET_BOUNDS_US, LatencySnapshot};
pub use prometheus::escape_label_value;

/// Stripes per counter: threads bump different cache lines, so a counter
/// shared by every operation does not serialize the cores on one line.
pub(crate) const STRIPES: usize = 8;

/// One cache line.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// The stripe of the current thread (threads are spread round-robin).
pub(crate) fn stripe() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// A lock-free counter striped over cache lines.
#[derive(Default)]
pub(crate) struct Counter([Padded<AtomicU64>; STRIPES]);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0[stripe()].0.fetch_add(1, Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Relaxed)).sum()
    }
    pub(crate) fn reset(&self) {
        for c in &self.0 {
            c.0.store(0, Relaxed);
        }
    }
}

/// Manager-wide counters (user-visible operations).
#[derive(Default)]
pub(crate) struct ManagerMetrics {
    pub(crate) operations: Counter,
    pub(crate) errors: Counter,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
}

/// Per-backend counters (every attempt on that backend).
#[derive(Default)]
pub(crate) struct BackendMetrics {
    pub(crate) operations: Counter,
    pub(crate) errors: Counter,
    pub(crate) latency: Histogram,
}

impl BackendMetrics {
    pub(crate) fn record(&self, elapsed: Duration, ok: bool) {
        self.operations.inc();
        if !ok {
            self.errors.inc();
        }
        self.latency.record(elapsed);
    }

    pub(crate) fn reset(&self) {
        self.operations.reset();
        self.errors.reset();
        self.latency.reset();
    }
}

/// A snapshot of a manager's metrics, from
/// [`StorageManager::metrics`](crate::StorageManager::metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageMetrics {
    /// Operations callers made (get, put, delete, list), whatever the policy fanned out.
    pub operations: u64,
    /// Operations that returned an error to the caller.
    pub errors: u64,
    /// PreferCache gets answered by the cache.
    pub cache_hits: u64,
    /// PreferCache gets the cache could not answer (miss or cache error).
    pub cache_misses: u64,
    /// Attempts made on each backend.
    pub backend_operations: HashMap<String, u64>,
    /// Failed attempts on each backend.
    pub backend_errors: HashMap<String, u64>,
    /// Latency of the attempts on each backend.
    pub backend_latency: HashMap<String, LatencySnapshot>,
    /// What the manager did to keep copies of a key consistent.
    pub consistency: ConsistencyMetrics,
}

/// Counters of the consistency machinery: copies that fell behind, reads
/// that avoided them, repairs (see [`StoragePolicy`](crate::StoragePolicy)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyMetrics {
    /// Reads that skipped a backend because the key was behind there (each
    /// one a stale value not served).
    pub stale_reads_avoided: u64,
    /// Times a key was marked behind on a backend: a write or invalidation
    /// it missed (under FirstAvailable, also each background copy due).
    pub stale_marks: u64,
    /// Copies repaired (one key on one backend), and caches flushed keys.
    pub repairs: u64,
    /// Repair attempts that failed (retried later).
    pub repair_failures: u64,
    /// PreferCache fills dropped because a write to the key overtook them.
    pub fills_dropped: u64,
    /// (key, backend) pairs behind right now, awaiting repair.
    pub repair_backlog: u64,
    /// Backends read for no key right now (too many keys behind to track).
    pub untrusted_backends: u64,
}

impl StorageMetrics {
    /// The share of operations that succeeded, 0.0..=1.0 (1.0 before any operation).
    pub fn success_rate(&self) -> f64 {
        if self.operations == 0 {
            1.0
        } else {
            (self.operations - self.errors.min(self.operations)) as f64 / self.operations as f64
        }
    }

    /// The share of PreferCache gets answered by the cache, 0.0..=1.0 (0.0 before any).
    pub fn cache_hit_rate(&self) -> f64 {
        let total = self.cache_hits + self.cache_misses;
        if total == 0 {
            0.0
        } else {
            self.cache_hits as f64 / total as f64
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        prometheus::render(self)
    }
}
