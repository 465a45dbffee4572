//! A fixed-bucket latency histogram of atomic counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{Padded, STRIPES, stripe};

/// Upper bounds of the buckets, in microseconds (the last bucket is +Inf).
pub const BUCKET_BOUNDS_US: [u64; 20] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
    250_000, 1_000_000, 5_000_000, 30_000_000,
];

#[derive(Default)]
struct Stripe {
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
}

/// Records durations without locks, striped like [`Counter`](super::Counter).
#[derive(Default)]
pub(crate) struct Histogram {
    stripes: [Padded<Stripe>; STRIPES],
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        let s = &self.stripes[stripe()].0;
        s.buckets[i].fetch_add(1, Relaxed);
        s.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let mut counts = vec![0; BUCKET_BOUNDS_US.len() + 1];
        let mut sum = 0;
        for s in &self.stripes {
            for (c, b) in counts.iter_mut().zip(&s.0.buckets) {
                *c += b.load(Relaxed);
            }
            sum += s.0.sum_ns.load(Relaxed);
        }
        LatencySnapshot {
            counts,
            sum: Duration::from_nanos(sum),
        }
    }

    pub(crate) fn reset(&self) {
        for s in &self.stripes {
            for b in &s.0.buckets {
                b.store(0, Relaxed);
            }
            s.0.sum_ns.store(0, Relaxed);
        }
    }
}

/// A copy of a latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Observations per bucket (not cumulative); bucket `i` holds durations up
    /// to [`BUCKET_BOUNDS_US`]`[i]` microseconds, the last one everything above.
    pub counts: Vec<u64>,
    /// The sum of all observations.
    pub sum: Duration,
}

impl LatencySnapshot {
    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The mean, or zero without observations.
    pub fn mean(&self) -> Duration {
        match self.count() {
            0 => Duration::ZERO,
            n => self.sum / n as u32,
        }
    }

    /// An upper bound of the `q` quantile (0.0..=1.0): the bound of the bucket
    /// it falls in. `None` without observations or when it is above the last bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return BUCKET_BOUNDS_US.get(i).map(|us| Duration::from_micros(*us));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(3));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(20));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(5)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(25)));
        assert!(s.mean() > Duration::from_millis(2));
        h.reset();
        assert_eq!(h.snapshot().count(), 0);
    }
}
