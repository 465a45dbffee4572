//! Repair: copying the current value of a key onto the backends that are
//! behind on it (see `crate::consistency`), in a background task, and flushing a
//! cache that lost per-key tracking.
//!
//! The worker is spawned on the caller's tokio runtime the first time a key
//! is marked stale, and holds only a weak reference to the manager: it ends
//! soon after the manager is dropped. A pass repairs keys whose stale
//! backends can be reached (enabled, circuit not open); a pass that repairs
//! nothing backs off (50 ms, doubling to 2 s), so a backend that stays down
//! costs little.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::{Inner, StorageManager};
use crate::health::Health;
use crate::policy::Backends;
use crate::policy::StoragePolicy;

/// Keys one repair pass looks at.
const PASS_KEYS: usize = 1024;
/// Keys repaired at the same time.
const REPAIR_CONCURRENCY: usize = 32;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What [`StorageManager::repair_now`] did, and what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Copies repaired (one key on one backend).
    pub repaired: usize,
    /// Copies that could not be repaired now (the backend or the one holding
    /// the value failed; retried later).
    pub failed: usize,
    /// (key, backend) pairs still behind.
    pub pending: usize,
    /// Backends read for no key until flushed or re-added.
    pub untrusted: usize,
}

impl StorageManager {
    /// Repairs, now, the keys that backends missed writes to (the background
    /// worker does the same on its own), until nothing more can be repaired.
    /// Useful before a planned shutdown, and in tests.
    pub async fn repair_now(&self) -> RepairReport {
        let mut report = RepairReport::default();
        loop {
            let pass = self.repair_pass().await;
            report.repaired += pass.repaired;
            report.failed += pass.failed;
            if pass.repaired == 0 {
                break;
            }
        }
        let (pending, untrusted) = self.inner.cons.backlog();
        report.pending = pending;
        report.untrusted = untrusted;
        report
    }

    /// Starts the repair worker if it does not run (on the current tokio
    /// runtime; without one, repairs wait for [`repair_now`](Self::repair_now)).
    pub(super) fn ensure_repair_worker(&self) {
        let mut worker = self
            .inner
            .repair_worker
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if worker.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if !self.inner.cons.worker.swap(true, SeqCst) {
                tracing::warn!(
                    "no tokio runtime: backends that missed writes are repaired only by StorageManager::repair_now"
                );
            }
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let wake = Arc::clone(&self.inner.cons.wake);
        *worker = Some(runtime.spawn(run_worker(weak, wake)));
    }

    /// One pass over up to [`PASS_KEYS`] stale keys, and the untrusted backends.
    async fn repair_pass(&self) -> RepairReport {
        let inner = &*self.inner;
        let cons = &inner.cons;
        let t = self.op_timeout();
        let backends = inner.backends.load();
        let reachable = |name: &str| {
            backends
                .by_name
                .get(name)
                .is_none_or(|s| s.is_enabled() && s.health() != Health::TakenOut)
        };
        let (keys, untrusted) = cons.pending(PASS_KEYS, |e| e.stale.iter().any(|b| reachable(b)));
        // Keys are independent (each repair holds its own key's stripe), so
        // a pass repairs several at once: a slow backend (a network round
        // trip per copy) must not fall behind a fast one taking writes.
        let per_key: Vec<RepairReport> = futures_util::stream::iter(keys)
            .map(|key| self.repair_key(key, &backends, t))
            .buffer_unordered(REPAIR_CONCURRENCY)
            .collect()
            .await;
        let mut report = RepairReport::default();
        for r in per_key {
            report.repaired += r.repaired;
            report.failed += r.failed;
        }
        let policy = inner.policy.load();
        for name in untrusted {
            let is_cache = matches!(policy.as_deref(), Some(StoragePolicy::PreferCache { cache, .. }) if *cache == name);
            if let (true, Some(slot)) = (is_cache, backends.by_name.get(&name))
                && reachable(&name)
            {
                match self.flush(slot, t).await {
                    Ok(n) => {
                        report.repaired += n;
                        tracing::info!(backend = %name, keys = n, "cache flushed; it is trusted again");
                    }
                    Err(e) => {
                        tracing::debug!(backend = %name, error = %e, "cache flush failed; retried later");
                        report.failed += 1;
                    }
                }
            }
        }
        report
    }

    /// Copies `key`'s current value from its truth onto the backends
    /// behind on it.
    async fn repair_key(&self, key: String, backends: &Backends, t: Duration) -> RepairReport {
        let cons = &self.inner.cons;
        let mut report = RepairReport::default();
        // Under the key's stripe: no write to it runs meanwhile, so the
        // value copied is the current one.
        let _stripe = cons.lock(&key).await;
        let Some(entry) = cons.entry(&key) else {
            return report;
        };
        let Some(truth) = entry.truth.as_deref().and_then(|n| backends.by_name.get(n)) else {
            return report;
        };
        if !truth.is_enabled() || !truth.breaker.allow() {
            return report;
        }
        let value = match truth.get(&key, t).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(backend = %truth.name(), error = %e, "repair: cannot read the current value");
                cons.metrics.repair_failures.inc();
                report.failed += 1;
                return report;
            }
        };
        for name in &entry.stale {
            let Some(slot) = backends.by_name.get(name) else {
                cons.clear_stale(name, &key); // removed meanwhile
                continue;
            };
            if !slot.is_enabled() || !slot.breaker.allow() {
                continue;
            }
            let r = match &value {
                Some(v) => slot.put(&key, v.clone(), t).await,
                None => slot.delete(&key, t).await,
            };
            match r {
                Ok(()) => {
                    cons.clear_stale(name, &key);
                    cons.metrics.repairs.inc();
                    report.repaired += 1;
                }
                Err(e) => {
                    tracing::debug!(backend = %name, error = %e, "repair failed; retried later");
                    cons.metrics.repair_failures.inc();
                    report.failed += 1;
                }
            }
        }
        report
    }

    /// Deletes every key of an untrusted cache, then trusts it again.
    async fn flush(
        &self,
        slot: &super::Slot,
        t: Duration,
    ) -> Result<usize, crate::storage::StorageError> {
        let cons = &self.inner.cons;
        loop {
            let token = cons.flush_token();
            let mut deleted = 0;
            let mut after: Option<String> = None;
            loop {
                let page = slot.list_page("", after.as_deref(), 1000, t).await?;
                for key in &page.keys {
                    slot.delete(key, t).await?;
                    deleted += 1;
                }
                match page.next_after() {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
            if cons.trust_again(slot.name(), token) {
                return Ok(deleted);
            }
        }
    }
}

async fn run_worker(manager: Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let Some(inner) = manager.upgrade() else {
            return;
        };
        let manager_now = StorageManager { inner };
        let pass = manager_now.repair_pass().await;
        let (pending, untrusted) = manager_now.inner.cons.backlog();
        drop(manager_now);
        if pending == 0 && untrusted == 0 {
            backoff = MIN_BACKOFF;
            // Idle: wait for new work, waking now and then to notice that
            // the manager is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
        } else if pass.repaired > 0 {
            backoff = MIN_BACKOFF;
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
