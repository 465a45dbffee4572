//! Routing policies: which backends serve an operation, in which order, and
//! what happens when one fails.
//!
//! Every policy reduces to one of three executors:
//! - `failover`: try candidates in order, moving on when one is unavailable
//!   (AlwaysUse, FirstAvailable, RoundRobin, and the default policy);
//! - `prefer_cache`: a cache in front of a source of truth;
//! - `redundant`: write to all concurrently, read from the first that answers.

mod failover;
mod prefer_cache;
mod redundant;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ManagerError;
use crate::manager::slot::{Op, Slot};
use crate::metrics::ManagerMetrics;

/// How a [`StorageManager`](crate::StorageManager) routes operations.
///
/// Without a policy, the manager uses every enabled backend in `priority`
/// order (lower first) with FirstAvailable semantics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoragePolicy {
    /// Every operation goes to this backend.
    AlwaysUse(String),
    /// The first enabled, healthy backend of the list serves; an unavailable
    /// one fails over to the next. A missing key is an answer, not a failure.
    FirstAvailable(Vec<String>),
    /// Reads try the cache first and fill it on a miss; writes go to the
    /// primary (the source of truth), then the cache. Cache failures never
    /// fail an operation.
    PreferCache {
        /// The cache backend.
        cache: String,
        /// The source of truth.
        primary: String,
    },
    /// Writes go to every backend concurrently and succeed only if all do;
    /// reads take the first backend that has the key.
    Redundant(Vec<String>),
    /// Operations rotate over backends holding the same data (replicas); an
    /// unavailable one is skipped.
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

    /// The enabled backends among `names`, in that order; unknown names are errors.
    fn enabled(&self, names: &[String]) -> Result<Vec<&Slot>, ManagerError> {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let s = self.slot(n)?;
            if s.is_enabled() {
                out.push(s.as_ref());
            }
        }
        if out.is_empty() {
            return Err(ManagerError::NoBackends);
        }
        Ok(out)
    }
}

/// Everything an executor needs besides the request.
pub(crate) struct Ctx<'a> {
    pub(crate) backends: &'a Backends,
    pub(crate) metrics: &'a ManagerMetrics,
    pub(crate) timeout: Duration,
    pub(crate) round_robin: &'a AtomicUsize,
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

pub(crate) use crate::manager::slot::Out;

/// Routes `req` according to `policy`.
pub(crate) async fn route(
    ctx: &Ctx<'_>,
    policy: Option<&StoragePolicy>,
    req: Req<'_>,
) -> Result<Out, ManagerError> {
    match policy {
        None => {
            let slots: Vec<&Slot> = ctx
                .backends
                .by_priority
                .iter()
                .filter(|s| s.is_enabled())
                .map(|s| s.as_ref())
                .collect();
            if slots.is_empty() {
                return Err(ManagerError::NoBackends);
            }
            failover::run(ctx, &slots, req).await
        }
        Some(StoragePolicy::AlwaysUse(name)) => {
            let slot = ctx.backends.slot(name)?;
            if !slot.is_enabled() {
                return Err(ManagerError::BackendDisabled(name.clone()));
            }
            failover::run(ctx, &[slot.as_ref()], req).await
        }
        Some(StoragePolicy::FirstAvailable(names)) => {
            let slots = ctx.backends.enabled(names)?;
            failover::run(ctx, &slots, req).await
        }
        Some(StoragePolicy::RoundRobin(names)) => {
            let mut slots = ctx.backends.enabled(names)?;
            let start = ctx.round_robin.fetch_add(1, Relaxed) % slots.len();
            slots.rotate_left(start);
            failover::run(ctx, &slots, req).await
        }
        Some(StoragePolicy::PreferCache { cache, primary }) => {
            let cache = ctx.backends.slot(cache)?;
            let primary = ctx.backends.slot(primary)?;
            if !primary.is_enabled() {
                return Err(ManagerError::BackendDisabled(primary.name().to_string()));
            }
            let cache = cache.is_enabled().then_some(cache.as_ref());
            prefer_cache::run(ctx, cache, primary, req).await
        }
        Some(StoragePolicy::Redundant(names)) => {
            let slots = ctx.backends.enabled(names)?;
            redundant::run(ctx, &slots, req).await
        }
    }
}
