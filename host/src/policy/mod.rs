//! Routing policies: which backends serve an operation, in which order, and
//! what happens when one fails.
//!
//! Every policy reduces to one of three executors:
//! - `failover`: try candidates in order, moving on when one is unavailable
//!   (AlwaysUse, FirstAvailable, and the default policy; RoundRobin reads);
//! - `prefer_cache`: a cache in front of a source of truth;
//! - `replicas`: write to all concurrently (Redundant; RoundRobin writes),
//!   read from the first that answers.
//!
//! Policies decide where an operation goes. What the manager knows about
//! copies that are behind (stale keys, write ordering per key, repairs)
//! lives in `crate::consistency`; every executor asks it before reading
//! a copy and tells it how each write went. The contract each policy keeps
//! is written on [`StoragePolicy`].

mod failover;
mod prefer_cache;
mod replicas;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consistency::Consistency;
use crate::error::{BackendFailure, KeyRef, ManagerError};
use crate::metrics::ManagerMetrics;
use crate::slot::{Op, Slot};
use crate::storage::StorageError;

/// How a [`StorageManager`](crate::StorageManager) routes operations.
///
/// Without a policy, the manager uses every backend in `priority` order
/// (lower first) as [`FirstAvailable`](Self::FirstAvailable) does.
///
/// # Consistency contract
///
/// For every policy, with all clients going through one manager: **per key,
/// operations are linearizable** (a get returns the value of the latest
/// write that finished before it started, or of a write running at the same
/// time; once a get has returned a value, no later get returns an older
/// one). This holds through the faults a backend can have (down, frozen,
/// killed and restarted, slow, hot-swapped) because the manager never
/// reads a copy it knows to be behind:
///
/// - when a backend of the policy misses a write (down, circuit open,
///   disabled, failed, timed out, or the caller dropped the operation
///   half-way), the key is marked stale on it, reads skip it for that key,
///   and a background repair copies the current value over, then clears
///   the mark ([`StorageManager::repair_now`](crate::StorageManager::repair_now)
///   runs one pass on demand);
/// - writes to one key are applied to its copies in one order; a read of a
///   key waits for a write to it that is in flight;
/// - a get whose every copy is stale fails as *unavailable* (retry shortly)
///   rather than answer with an old value.
///
/// A write that returned an error may or may not have taken effect (as with
/// any storage). It is never half-visible: reads see either the old or the
/// new value on every copy, and repair makes every copy agree.
///
/// Not covered: `list` (it reads one backend and may miss keys another has),
/// writes made to a backend directly or by another manager, and the stale
/// marks themselves, which live in memory: after a restart of the process,
/// copies that were behind are trusted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoragePolicy {
    /// Every operation goes to this backend.
    AlwaysUse(String),
    /// Reads and writes go to the first enabled, healthy backend of the list;
    /// an unavailable one fails over to the next. A missing key is an
    /// answer, not a failure. The other backends of the list are replicas:
    /// a write is acknowledged by the first that takes it and copied to the
    /// others in the background, so a read that fails over finds it (until
    /// the copy is made, a read that fails over to a backend still behind
    /// fails as unavailable instead of returning an old value).
    FirstAvailable(Vec<String>),
    /// Reads try the cache first and fill it on a miss; writes go to the
    /// primary (the source of truth), then update the cache before they are
    /// acknowledged. Cache failures never fail an operation: a write the
    /// cache missed marks the key stale in it, reads of that key go to the
    /// primary until the cache is repaired, and a fill that a write
    /// overtook is dropped, so the cache never serves an old value.
    PreferCache {
        /// The cache backend.
        cache: String,
        /// The source of truth.
        primary: String,
    },
    /// Writes go to every backend concurrently and succeed only if all do
    /// (otherwise [`PartialWrite`](ManagerError::PartialWrite) says who has
    /// the write; it is then repaired onto the others). Reads take the
    /// first backend, in order, that has the key and is not behind on it.
    Redundant(Vec<String>),
    /// Backends holding the same data (replicas): writes go to every replica
    /// concurrently and succeed when at least one takes them (the others
    /// are repaired); reads rotate over the replicas that are not behind on
    /// the key, failing over when one is unavailable.
    RoundRobin(Vec<String>),
}

/// The backends of a manager, as routing sees them.
#[derive(Default)]
pub(crate) struct Backends {
    pub(crate) by_name: HashMap<String, Arc<Slot>>,
    /// Sorted by (priority, name): the default policy's order.
    pub(crate) by_priority: Vec<Arc<Slot>>,
}

impl Backends {
    pub(crate) fn new(by_name: HashMap<String, Arc<Slot>>) -> Self {
        let mut by_priority: Vec<Arc<Slot>> = by_name.values().cloned().collect();
        by_priority
            .sort_by(|a, b| (a.config.priority, a.name()).cmp(&(b.config.priority, b.name())));
        Backends {
            by_name,
            by_priority,
        }
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, ManagerError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ManagerError::BackendNotFound(name.to_string()))
    }

    /// The backends of a policy, in its order, as a [`Group`]. Unknown
    /// names are errors, and so is having no enabled backend.
    fn group<'s>(
        &'s self,
        slots: impl IntoIterator<Item = Result<&'s Slot, ManagerError>>,
    ) -> Result<Group<'s>, ManagerError> {
        let mut slots = slots.into_iter().collect::<Result<Vec<&Slot>, _>>()?;
        if !slots.iter().all(|s| s.is_enabled()) {
            // Stable: the enabled ones first, each part in the policy's order.
            slots.sort_by_key(|s| !s.is_enabled());
        }
        let enabled = slots.iter().take_while(|s| s.is_enabled()).count();
        if enabled == 0 {
            return Err(ManagerError::NoBackends);
        }
        Ok(Group { slots, enabled })
    }

    fn named<'s>(
        &'s self,
        names: &'s [String],
    ) -> impl Iterator<Item = Result<&'s Slot, ManagerError>> {
        names.iter().map(|n| self.slot(n).map(|s| s.as_ref()))
    }
}

/// The backends one operation may involve: every member of the policy (each
/// holds a copy of every key), the enabled ones first.
pub(crate) struct Group<'s> {
    slots: Vec<&'s Slot>,
    enabled: usize,
}

impl<'s> Group<'s> {
    /// The enabled members, in the policy's order: where operations go.
    pub(crate) fn targets(&self) -> &[&'s Slot] {
        &self.slots[..self.enabled]
    }

    /// How many backends hold copies of the keys (enabled or not).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The names of every member; disabled ones miss every write, and so
    /// are marked behind by it.
    pub(crate) fn members(&self) -> Vec<&'s str> {
        self.slots.iter().map(|s| s.name()).collect()
    }
}

/// Everything an executor needs besides the request.
pub(crate) struct Ctx<'a> {
    pub(crate) backends: &'a Backends,
    pub(crate) metrics: &'a ManagerMetrics,
    pub(crate) timeout: Duration,
    pub(crate) round_robin: &'a AtomicUsize,
    pub(crate) cons: &'a Consistency,
}

/// The failure a get reports for a backend it skipped because the key may
/// be behind there.
pub(crate) fn behind(slot: &Slot) -> BackendFailure {
    BackendFailure {
        backend: slot.name().to_string(),
        error: StorageError::Unavailable(
            "this backend missed a recent write to the key and is being repaired; retry shortly"
                .into(),
        ),
    }
}

/// One error for an operation that failed on every backend in `failures`.
pub(crate) fn all_failed(
    op: &'static str,
    key: &str,
    mut failures: Vec<BackendFailure>,
) -> ManagerError {
    if failures.len() == 1 {
        let f = failures.pop().expect("one failure");
        ManagerError::StorageOperation {
            backend: f.backend,
            op,
            key: KeyRef::new(key),
            source: f.error,
        }
    } else {
        ManagerError::AllBackendsFailed {
            op,
            key: KeyRef::new(key),
            failures,
        }
    }
}

/// Whether a failed write may still have been applied: only an error that
/// says the backend refused it (bad input, permissions, unsupported,
/// configuration, a missing table) means it was not.
pub(crate) fn outcome_unknown(e: &StorageError) -> bool {
    !matches!(
        e,
        StorageError::InvalidInput(_)
            | StorageError::PermissionDenied(_)
            | StorageError::Unsupported(_)
            | StorageError::InvalidConfig(_)
            | StorageError::NotFound(_)
    )
}

/// A user's request, before it is split over backends.
pub(crate) enum Req<'a> {
    Get(&'a str),
    Put(&'a str, Vec<u8>),
    Delete(&'a str),
    List(&'a str),
    ListPage(&'a str, Option<&'a str>, usize),
}

impl<'a> Req<'a> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Req::Get(_) => "get",
            Req::Put(..) => "put",
            Req::Delete(_) => "delete",
            Req::List(_) | Req::ListPage(..) => "list",
        }
    }

    pub(crate) fn key(&self) -> &'a str {
        match self {
            Req::Get(k) | Req::Put(k, _) | Req::Delete(k) | Req::List(k) | Req::ListPage(k, ..) => {
                k
            }
        }
    }

    /// The operation for one backend. The value of a put is moved out on the
    /// last attempt and cloned before that.
    pub(crate) fn op(&mut self, last: bool) -> Op<'a> {
        match self {
            Req::Get(k) => Op::Get(k),
            Req::Put(k, v) => Op::Put(k, if last { std::mem::take(v) } else { v.clone() }),
            Req::Delete(k) => Op::Delete(k),
            Req::List(k) => Op::List(k),
            Req::ListPage(k, after, limit) => Op::ListPage(k, *after, *limit),
        }
    }
}

pub(crate) use crate::slot::Out;

/// Routes `req` according to `policy`.
pub(crate) async fn route(
    ctx: &Ctx<'_>,
    policy: Option<&StoragePolicy>,
    req: Req<'_>,
) -> Result<Out, ManagerError> {
    let b = ctx.backends;
    match policy {
        None => {
            failover::run(
                ctx,
                &b.group(b.by_priority.iter().map(|s| Ok(s.as_ref())))?,
                req,
            )
            .await
        }
        Some(StoragePolicy::AlwaysUse(name)) => {
            let slot = b.slot(name)?;
            if !slot.is_enabled() {
                return Err(ManagerError::BackendDisabled(name.clone()));
            }
            failover::run(ctx, &b.group([Ok(slot.as_ref())])?, req).await
        }
        Some(StoragePolicy::FirstAvailable(names)) => {
            failover::run(ctx, &b.group(b.named(names))?, req).await
        }
        Some(StoragePolicy::RoundRobin(names)) => {
            let mut group = b.group(b.named(names))?;
            if matches!(req, Req::Get(_)) {
                let start = ctx.round_robin.fetch_add(1, Relaxed) % group.enabled;
                group.slots[..group.enabled].rotate_left(start);
                failover::run(ctx, &group, req).await
            } else {
                replicas::run(ctx, &group, req, replicas::Acks::One).await
            }
        }
        Some(StoragePolicy::PreferCache { cache, primary }) => {
            let cache = b.slot(cache)?;
            let primary = b.slot(primary)?;
            if !primary.is_enabled() {
                return Err(ManagerError::BackendDisabled(primary.name().to_string()));
            }
            prefer_cache::run(ctx, cache, primary, req).await
        }
        Some(StoragePolicy::Redundant(names)) => {
            replicas::run(ctx, &b.group(b.named(names))?, req, replicas::Acks::All).await
        }
    }
}
