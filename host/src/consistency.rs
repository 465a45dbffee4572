//! What the manager knows about copies of a key that may be behind.
//!
//! Policies that keep a key on several backends (replicas, or a cache in
//! front of a primary) must never serve a value older than one they
//! acknowledged. Backends have no versions, so the manager keeps the facts
//! it needs in memory:
//!
//! - **Stripes.** Every key hashes to one of [`LOCK_STRIPES`] stripes. A
//!   write to a key holds its stripe's lock from the first backend write to
//!   the last, so the copies of one key change in one order everywhere (two
//!   concurrent puts can never leave `a` with one value and `b` with the
//!   other). A read of a key whose stripe has a write in flight waits for
//!   that write to finish before it reads, so no read sees a half-applied
//!   write after another read saw it whole. Each stripe also counts the
//!   writes that finished, which is what lets a cache fill notice that a
//!   write overtook it.
//! - **Stale keys.** When a backend of a policy missed a write to a key (it
//!   was down, its breaker was open, it was disabled, the write to it failed
//!   or timed out, or the caller dropped the operation half-way), the key is
//!   recorded as stale on that backend, with the backend that holds the
//!   value to copy (its *truth*). Reads skip a backend where the key is
//!   stale; the repair worker (`repair.rs`) copies the truth over and clears
//!   the mark.
//! - **Untrusted backends.** The stale marks are bounded
//!   ([`MAX_STALE_KEYS`]). When a mark cannot be recorded, the whole backend
//!   is marked untrusted instead: it is read for no key until the repair
//!   worker has flushed it (the cache of a PreferCache policy) or it is
//!   removed and added again (a replica).
//!
//! The fast paths cost two atomic loads: a read checks that its stripe has no
//! write in flight and that nothing at all is stale.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, MutexGuard, Notify};

use crate::metrics::Counter;

/// Lock stripes per manager: keys hash onto them. Two keys on one stripe
/// only wait for each other's writes, they never see each other's data.
pub const LOCK_STRIPES: usize = 1024;

/// The most (key, backend) pairs the manager remembers as stale before it
/// gives up on per-key tracking for a backend and stops trusting it whole.
pub const MAX_STALE_KEYS: usize = 1_000_000;

#[derive(Default)]
struct Stripe {
    lock: AsyncMutex<()>,
    /// Writes announced on this stripe and not yet finished.
    in_flight: AtomicU32,
    /// Writes finished on this stripe (a fill compares it before and after).
    version: AtomicU64,
}

/// The backends on which one key is stale, and where its value is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StaleKey {
    /// Backends whose copy of the key may be older than an acknowledged write.
    pub(crate) stale: Vec<String>,
    /// The backend whose copy is the one to repair from; `None` when no copy
    /// is known good (reads of the key fail until a write succeeds).
    pub(crate) truth: Option<String>,
}

/// Counters of the consistency machinery, shown in the metrics.
#[derive(Default)]
pub(crate) struct ConsistencyMetrics {
    /// Reads that skipped a backend because the key was stale there.
    pub(crate) stale_reads_avoided: Counter,
    /// Keys marked stale on a backend (a missed write or invalidation).
    pub(crate) writes_missed: Counter,
    /// Copies repaired (one key on one backend).
    pub(crate) repairs: Counter,
    /// Repair attempts that failed (retried later).
    pub(crate) repair_failures: Counter,
    /// Cache fills dropped because a write overtook them.
    pub(crate) fills_dropped: Counter,
}

/// The consistency state of one manager (see the module docs).
pub(crate) struct Consistency {
    stripes: Box<[Stripe]>,
    /// Seeds the stripe hash, per manager, so that nobody can pick keys that
    /// all land on one stripe of every host.
    seed: usize,
    stale: Mutex<State>,
    /// Keys in `stale` plus untrusted backends: zero on the fast path.
    dirty: AtomicUsize,
    pub(crate) metrics: ConsistencyMetrics,
    /// Wakes the repair worker.
    pub(crate) wake: Arc<Notify>,
    /// Whether the "no runtime for the repair worker" warning was logged.
    pub(crate) worker: AtomicBool,
    /// Bumped whenever a backend loses per-key tracking (a flush started
    /// before must start over).
    distrusts: AtomicU64,
    /// The bound on (key, backend) pairs tracked ([`MAX_STALE_KEYS`] by default).
    pub(crate) limit: AtomicUsize,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, StaleKey>,
    /// (key, backend) pairs in `keys`.
    pairs: usize,
    untrusted: HashSet<String>,
}

impl State {
    fn dirty(&self) -> usize {
        self.keys.len() + self.untrusted.len()
    }
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency {
            stripes: (0..LOCK_STRIPES).map(|_| Stripe::default()).collect(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0u8) as usize,
            stale: Mutex::default(),
            dirty: AtomicUsize::new(0),
            metrics: ConsistencyMetrics::default(),
            wake: Arc::new(Notify::new()),
            worker: AtomicBool::new(false),
            distrusts: AtomicU64::new(0),
            limit: AtomicUsize::new(MAX_STALE_KEYS),
        }
    }
}

/// A write in progress on one key: holds the key's stripe. Created by
/// [`Consistency::begin_write`]; call [`finish`](WriteTicket::finish) with
/// the outcome. Dropped without `finish` (the caller gave up on the
/// operation half-way), every backend of the policy is marked stale for
/// the key: nobody knows which of them got the write.
pub(crate) struct WriteTicket<'a> {
    cons: &'a Consistency,
    stripe: &'a Stripe,
    key: &'a str,
    members: &'a [&'a str],
    finished: bool,
    _guard: MutexGuard<'a, ()>,
}

/// How a write to a key went, per backend of the policy.
pub(crate) struct WriteOutcome<'a> {
    /// Backends that acknowledged the write: they hold the new value.
    pub(crate) acked: &'a [&'a str],
    /// Backends the write was sent to and which failed: their copy is unknown.
    pub(crate) failed: &'a [&'a str],
}

impl<'a> WriteTicket<'a> {
    /// Records the outcome: backends that acknowledged hold the truth; every
    /// other member of the policy missed the write (or may have) and is
    /// stale until repaired. When no backend acknowledged, the first member
    /// whose copy was good before stays the truth (the failed write may or
    /// may not have reached it: either value is a correct answer, as long as
    /// every copy converges on it before being read).
    pub(crate) fn finish(mut self, outcome: WriteOutcome<'_>) {
        self.finished = true;
        let sent = !outcome.acked.is_empty() || !outcome.failed.is_empty();
        if !sent {
            return; // nothing reached any backend: nothing changed
        }
        self.cons.update(self.key, |entry| {
            let old_stale = entry.as_ref().map(|e| e.stale.clone()).unwrap_or_default();
            let truth = match outcome.acked.first() {
                Some(t) => Some(t.to_string()),
                None => self
                    .members
                    .iter()
                    .find(|m| !old_stale.iter().any(|s| s == *m))
                    .map(|m| m.to_string())
                    .or_else(|| entry.as_ref().and_then(|e| e.truth.clone())),
            };
            let mut stale: Vec<String> = old_stale;
            for m in self.members {
                let is_truth = truth.as_deref() == Some(*m);
                let acked = outcome.acked.contains(m);
                if acked || is_truth {
                    stale.retain(|s| s != m);
                } else if !stale.iter().any(|s| s == m) {
                    stale.push(m.to_string());
                }
            }
            *entry = (!stale.is_empty()).then_some(StaleKey { stale, truth });
        });
    }
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let members = self.members;
            self.cons.update(self.key, |entry| {
                let mut e = entry.take().unwrap_or_default();
                let truth = e
                    .truth
                    .clone()
                    .or_else(|| members.first().map(|m| m.to_string()));
                for m in members {
                    if Some(*m) != truth.as_deref() && !e.stale.iter().any(|s| s == m) {
                        e.stale.push(m.to_string());
                    }
                }
                e.truth = truth;
                *entry = (!e.stale.is_empty()).then_some(e);
            });
        }
        self.stripe.version.fetch_add(1, SeqCst);
        self.stripe.in_flight.fetch_sub(1, SeqCst);
    }
}

impl Consistency {
    fn stripe(&self, key: &str) -> &Stripe {
        // FxHash: a few ns for a short key (SipHash cost as much as the
        // rest of a cache hit's bookkeeping); collisions only share a lock.
        let mut h = rustc_hash::FxHasher::with_seed(self.seed);
        h.write(key.as_bytes());
        &self.stripes[(h.finish() as usize) % self.stripes.len()]
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a write to `key` over the policy's `members`: waits for writes
    /// in flight on the key's stripe, then holds it.
    pub(crate) async fn begin_write<'a>(
        &'a self,
        key: &'a str,
        members: &'a [&'a str],
    ) -> WriteTicket<'a> {
        let stripe = self.stripe(key);
        stripe.in_flight.fetch_add(1, SeqCst);
        // If this future is dropped while waiting, undo the announcement.
        struct Announce<'s>(&'s Stripe, bool);
        impl Drop for Announce<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.in_flight.fetch_sub(1, SeqCst);
                }
            }
        }
        let mut announce = Announce(stripe, true);
        let guard = stripe.lock.lock().await;
        announce.1 = false;
        WriteTicket {
            cons: self,
            stripe,
            key,
            members,
            finished: false,
            _guard: guard,
        }
    }

    /// Waits until no write is in flight on `key`'s stripe (at once when none
    /// is). A read calls this before reading a key several backends hold.
    /// Returns the number of writes finished on the stripe, for
    /// [`fill_guard`](Self::fill_guard).
    pub(crate) async fn settle(&self, key: &str) -> u64 {
        let stripe = self.stripe(key);
        if stripe.in_flight.load(SeqCst) != 0 {
            drop(stripe.lock.lock().await);
        }
        stripe.version.load(SeqCst)
    }

    /// For a cache fill: holds `key`'s stripe if no write finished or is in
    /// flight on it since `version` was read; `None` means a write overtook
    /// the fill, whose value may be old and must not be written.
    pub(crate) async fn fill_guard(&self, key: &str, version: u64) -> Option<MutexGuard<'_, ()>> {
        let stripe = self.stripe(key);
        if stripe.in_flight.load(SeqCst) != 0 {
            return None;
        }
        let guard = stripe.lock.lock().await;
        (stripe.version.load(SeqCst) == version).then_some(guard)
    }

    /// Whether any key is stale anywhere (or any backend untrusted).
    pub(crate) fn any_stale(&self) -> bool {
        self.dirty.load(SeqCst) != 0
    }

    /// Whether `backend` may hold a copy of `key` older than an acknowledged write.
    pub(crate) fn is_stale(&self, backend: &str, key: &str) -> bool {
        if self.dirty.load(SeqCst) == 0 {
            return false;
        }
        let state = self.state();
        state.untrusted.contains(backend)
            || state
                .keys
                .get(key)
                .is_some_and(|e| e.stale.iter().any(|s| s == backend))
    }

    /// Marks `key` stale on `backend`, to be repaired from `truth`.
    pub(crate) fn mark_stale(&self, backend: &str, key: &str, truth: &str) {
        self.update(key, |entry| {
            let e = entry.get_or_insert_with(StaleKey::default);
            if !e.stale.iter().any(|s| s == backend) {
                e.stale.push(backend.to_string());
            }
            e.truth = Some(truth.to_string());
        });
    }

    /// Clears the stale mark of `key` on `backend` (it now holds the truth).
    pub(crate) fn clear_stale(&self, backend: &str, key: &str) {
        if self.dirty.load(SeqCst) == 0 {
            return;
        }
        self.update(key, |entry| {
            if let Some(e) = entry {
                e.stale.retain(|s| s != backend);
                if e.stale.is_empty() {
                    *entry = None;
                }
            }
        });
    }

    /// Applies `f` to the stale entry of `key`, keeping counts, bounds and
    /// the repair worker up to date.
    fn update(&self, key: &str, f: impl FnOnce(&mut Option<StaleKey>)) {
        let mut state = self.state();
        let mut entry = state.keys.remove(key);
        let before: Vec<String> = entry.as_ref().map(|e| e.stale.clone()).unwrap_or_default();
        f(&mut entry);
        let after = entry.as_ref().map(|e| e.stale.len()).unwrap_or(0);
        state.pairs = state.pairs + after - before.len();
        let mut woke = false;
        if let Some(mut e) = entry {
            for b in &e.stale {
                if !before.contains(b) {
                    self.metrics.writes_missed.inc();
                    woke = true;
                }
            }
            // Over the bound: stop tracking the newly stale backends per key.
            let limit = self.limit.load(SeqCst);
            if state.pairs > limit {
                let newly: Vec<String> = e
                    .stale
                    .iter()
                    .filter(|b| !before.contains(b))
                    .cloned()
                    .collect();
                for b in newly {
                    tracing::error!(backend = %b, limit, "too many keys await repair; the backend is no longer read until it is flushed (a cache) or removed and added again (a replica)");
                    state.untrusted.insert(b.clone());
                    self.distrusts.fetch_add(1, SeqCst);
                    e.stale.retain(|s| *s != b);
                    state.pairs -= 1;
                }
            }
            if !e.stale.is_empty() {
                state.keys.insert(key.to_string(), e);
            }
        }
        self.dirty.store(state.dirty(), SeqCst);
        drop(state);
        if woke {
            self.wake.notify_one();
        }
    }

    /// Marks `backend` untrusted for every key.
    #[cfg(test)]
    pub(crate) fn distrust(&self, backend: &str) {
        let mut state = self.state();
        state.untrusted.insert(backend.to_string());
        self.distrusts.fetch_add(1, SeqCst);
        self.dirty.store(state.dirty(), SeqCst);
        drop(state);
        self.wake.notify_one();
    }

    /// A token to pass to [`trust_again`](Self::trust_again) after flushing
    /// an untrusted backend.
    pub(crate) fn flush_token(&self) -> u64 {
        self.distrusts.load(SeqCst)
    }

    /// Trusts `backend` again after every key in it was deleted, unless it
    /// lost tracking again since `token` was taken (then flush again).
    /// Stale marks recorded meanwhile stay, and are repaired as usual.
    pub(crate) fn trust_again(&self, backend: &str, token: u64) -> bool {
        let mut state = self.state();
        if self.distrusts.load(SeqCst) != token {
            return false;
        }
        state.untrusted.remove(backend);
        self.dirty.store(state.dirty(), SeqCst);
        true
    }

    /// Forgets everything about `backend` (it was removed).
    pub(crate) fn forget_backend(&self, backend: &str) {
        let mut state = self.state();
        state.untrusted.remove(backend);
        let mut removed = 0;
        state.keys.retain(|_, e| {
            let n = e.stale.len();
            e.stale.retain(|s| s != backend);
            removed += n - e.stale.len();
            !e.stale.is_empty()
        });
        state.pairs -= removed;
        self.dirty.store(state.dirty(), SeqCst);
    }

    /// Up to `max` stale keys for which `ready` says a repair may work now,
    /// and the untrusted backends.
    pub(crate) fn pending(
        &self,
        max: usize,
        ready: impl Fn(&StaleKey) -> bool,
    ) -> (Vec<String>, Vec<String>) {
        let state = self.state();
        let keys = state
            .keys
            .iter()
            .filter(|(_, e)| ready(e))
            .take(max)
            .map(|(k, _)| k.clone())
            .collect();
        let untrusted = state.untrusted.iter().cloned().collect();
        (keys, untrusted)
    }

    /// The stale entry of `key`, if any.
    pub(crate) fn entry(&self, key: &str) -> Option<StaleKey> {
        if self.dirty.load(SeqCst) == 0 {
            return None;
        }
        self.state().keys.get(key).cloned()
    }

    /// (key, backend) pairs awaiting repair, and untrusted backends.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let state = self.state();
        (state.pairs, state.untrusted.len())
    }

    /// Holds `key`'s stripe (the repair worker copies under it).
    pub(crate) async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripe(key).lock.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stale_of(c: &Consistency, key: &str) -> Option<StaleKey> {
        c.entry(key)
    }

    #[tokio::test]
    async fn an_acked_write_makes_the_others_stale_and_clears_the_acker() {
        let c = Consistency::default();
        let members = ["a", "b", "c"];
        c.begin_write("k", &members).await.finish(WriteOutcome {
            acked: &["a", "c"],
            failed: &["b"],
        });
        assert_eq!(
            stale_of(&c, "k"),
            Some(StaleKey {
                stale: vec!["b".into()],
                truth: Some("a".into())
            })
        );
        assert!(c.is_stale("b", "k") && !c.is_stale("a", "k") && !c.is_stale("b", "other"));
        // b takes the next write: nothing is stale any more.
        c.begin_write("k", &members).await.finish(WriteOutcome {
            acked: &["a", "b", "c"],
            failed: &[],
        });
        assert_eq!(stale_of(&c, "k"), None);
        assert_eq!(c.backlog(), (0, 0));
    }

    #[tokio::test]
    async fn a_write_nobody_acked_keeps_one_good_copy_as_the_truth() {
        let c = Consistency::default();
        let members = ["a", "b"];
        // a was already stale; the failed write may have reached b or not.
        c.mark_stale("a", "k", "b");
        c.begin_write("k", &members).await.finish(WriteOutcome {
            acked: &[],
            failed: &["a", "b"],
        });
        let e = stale_of(&c, "k").unwrap();
        assert_eq!(e.truth.as_deref(), Some("b"));
        assert_eq!(e.stale, vec!["a".to_string()]);
        // A write sent nowhere changes nothing.
        c.begin_write("k", &members).await.finish(WriteOutcome {
            acked: &[],
            failed: &[],
        });
        assert_eq!(stale_of(&c, "k"), Some(e));
    }

    #[tokio::test]
    async fn a_dropped_write_marks_every_member_but_the_truth() {
        let c = Consistency::default();
        let members = ["a", "b", "c"];
        drop(c.begin_write("k", &members).await);
        let e = stale_of(&c, "k").unwrap();
        assert_eq!(e.truth.as_deref(), Some("a"));
        assert_eq!(e.stale, vec!["b".to_string(), "c".to_string()]);
        // The stripe is free again, and counted one finished write.
        assert!(c.fill_guard("k", 1).await.is_some());
    }

    #[tokio::test]
    async fn a_fill_overtaken_by_a_write_is_refused() {
        let c = Consistency::default();
        let v = c.settle("k").await;
        let members = ["cache"];
        c.begin_write("k", &members).await.finish(WriteOutcome {
            acked: &["cache"],
            failed: &[],
        });
        assert!(c.fill_guard("k", v).await.is_none());
        assert!(c.fill_guard("k", c.settle("k").await).await.is_some());
    }

    #[tokio::test]
    async fn past_the_bound_a_backend_is_untrusted_whole() {
        let c = Consistency::default();
        c.limit.store(2, SeqCst);
        c.mark_stale("b", "k1", "a");
        c.mark_stale("b", "k2", "a");
        assert_eq!(c.backlog(), (2, 0));
        let token = c.flush_token();
        c.mark_stale("b", "k3", "a");
        assert_eq!(c.backlog(), (2, 1), "k3 is not tracked: b is untrusted");
        assert!(c.is_stale("b", "never-written"));
        assert!(
            !c.trust_again("b", token),
            "distrusted after the token: flush again"
        );
        assert!(c.trust_again("b", c.flush_token()));
        assert!(!c.is_stale("b", "never-written"));
        assert!(
            c.is_stale("b", "k1"),
            "marks recorded before stay until repaired"
        );
    }

    #[tokio::test]
    async fn forgetting_a_backend_drops_its_marks() {
        let c = Consistency::default();
        c.mark_stale("b", "k1", "a");
        c.mark_stale("b", "k2", "a");
        c.mark_stale("c", "k2", "a");
        c.distrust("b");
        assert!(c.is_stale("b", "anything"));
        c.forget_backend("b");
        assert!(!c.is_stale("b", "k1"));
        assert!(c.is_stale("c", "k2"));
        assert_eq!(c.backlog(), (1, 0));
    }
}
