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
        let i = bucket_of(d);
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

/// The bucket of `d`: the first whose bound is at least `d`.
///
/// Microseconds are rounded *up* (1 001 ns counts as 2 µs), so an operation
/// never lands in a bucket whose bound is below its duration: a bucket's
/// bound, and every quantile read from it, is an upper bound of what was
/// measured. (Truncating, as `as_micros()` does, put 1.9 µs in the 1 µs bucket.)
fn bucket_of(d: Duration) -> usize {
    // Whole seconds and the sub-second part apart: no 128-bit arithmetic on
    // the hot path, and saturation instead of a wrap for absurd durations.
    let us = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000)));
    BUCKET_BOUNDS_US.partition_point(|&b| b < us)
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

    /// The bucket (by its bound; `None`: +Inf) a duration of `ns` lands in.
    fn bound_of(ns: u64) -> Option<u64> {
        BUCKET_BOUNDS_US
            .get(bucket_of(Duration::from_nanos(ns)))
            .copied()
    }

    #[test]
    fn durations_round_up_at_the_bucket_edges() {
        // Below and on a bound: that bucket (bounds are inclusive, as `le`).
        assert_eq!(bound_of(0), Some(1));
        assert_eq!(bound_of(1), Some(1));
        assert_eq!(bound_of(999), Some(1));
        assert_eq!(bound_of(1_000), Some(1));
        // One nanosecond over a bound: the next bucket, never the one below.
        assert_eq!(bound_of(1_001), Some(2));
        assert_eq!(bound_of(1_999), Some(2));
        assert_eq!(bound_of(2_000), Some(2));
        assert_eq!(bound_of(2_001), Some(5));
        assert_eq!(bound_of(999_999), Some(1_000));
        assert_eq!(bound_of(999_999_999), Some(1_000_000));
        assert_eq!(bound_of(1_000_000_000), Some(1_000_000));
        // Whole seconds plus a sub-microsecond rest.
        assert_eq!(bound_of(1_000_000_001), Some(5_000_000));
        assert_eq!(bound_of(30_000_000_000), Some(30_000_000));
        assert_eq!(bound_of(30_000_000_001), None);
        // Saturates instead of wrapping.
        assert_eq!(bucket_of(Duration::MAX), BUCKET_BOUNDS_US.len());
    }

    #[test]
    fn no_duration_is_recorded_faster_than_it_was() {
        // Every nanosecond count around every bound, and a sweep below 3 µs.
        let mut cases: Vec<u64> = (0..3_000).collect();
        for b in BUCKET_BOUNDS_US {
            let ns = b * 1_000;
            cases.extend([ns - 1, ns, ns + 1]);
        }
        for ns in cases {
            let h = Histogram::default();
            let d = Duration::from_nanos(ns);
            h.record(d);
            let s = h.snapshot();
            if let Some(bound) = s.quantile(1.0) {
                assert!(bound >= d, "{ns} ns recorded in the bucket of {bound:?}");
            }
            // The bucket below (if any) would have been too fast.
            let i = bucket_of(d);
            if i > 0 {
                assert!(
                    Duration::from_micros(BUCKET_BOUNDS_US[i - 1]) < d,
                    "{ns} ns recorded one bucket too high"
                );
            }
        }
    }
}
