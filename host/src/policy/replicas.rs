//! Backends holding the same data: writes go to all of them at once; reads
//! take the first, in order, that has the key and is not behind on it
//! (Redundant; RoundRobin reads rotate through `failover` instead).

use futures_util::future::join_all;

use super::{Ctx, Group, Out, Req, all_failed, behind, outcome_unknown};
use crate::consistency::WriteOutcome;
use crate::error::{BackendFailure, KeyRef, ManagerError};
use crate::storage::StorageError;

/// How many replicas must take a write for it to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acks {
    /// Every enabled replica (Redundant); otherwise `PartialWrite`.
    All,
    /// At least one (RoundRobin); the others are repaired.
    One,
}

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    group: &Group<'_>,
    req: Req<'_>,
    acks: Acks,
) -> Result<Out, ManagerError> {
    match req {
        Req::Put(..) | Req::Delete(_) => fan_out(ctx, group, req, acks).await,
        Req::Get(key) => {
            if group.len() > 1 {
                ctx.cons.settle(key).await;
            }
            let mut failures = Vec::new();
            let mut answered = false;
            for slot in group.targets() {
                if ctx.cons.is_stale(slot.name(), key) {
                    ctx.cons.metrics.stale_reads_avoided.inc();
                    failures.push(behind(slot));
                    continue;
                }
                match slot.get(key, ctx.timeout).await {
                    Ok(Some(v)) => return Ok(Out::Value(Some(v))),
                    Ok(None) => answered = true,
                    Err(error) => failures.push(BackendFailure {
                        backend: slot.name().to_string(),
                        error,
                    }),
                }
            }
            // A miss from a backend that answered is an answer; only when no
            // backend could answer is the read a failure.
            if answered {
                Ok(Out::Value(None))
            } else {
                Err(all_failed("get", key, failures))
            }
        }
        Req::List(prefix) | Req::ListPage(prefix, ..) => {
            let mut failures = Vec::new();
            for slot in group.targets() {
                let answer = match req {
                    Req::ListPage(_, after, limit) => slot
                        .list_page(prefix, after, limit, ctx.timeout)
                        .await
                        .map(Out::Page),
                    _ => slot.list(prefix, ctx.timeout).await.map(Out::Keys),
                };
                match answer {
                    Ok(out) => return Ok(out),
                    Err(error) => failures.push(BackendFailure {
                        backend: slot.name().to_string(),
                        error,
                    }),
                }
            }
            Err(ManagerError::AllBackendsFailed {
                op: "list",
                key: KeyRef::new(prefix),
                failures,
            })
        }
    }
}

/// Sends a put or delete to every enabled replica concurrently: the latency
/// is the slowest replica's, not the sum. A replica whose breaker is open is
/// not waited for (unless all are open): it misses the write, is marked
/// behind on the key, and is repaired later.
async fn fan_out(
    ctx: &Ctx<'_>,
    group: &Group<'_>,
    mut req: Req<'_>,
    acks: Acks,
) -> Result<Out, ManagerError> {
    let key = req.key();
    let members = group.members();
    let ticket = ctx.cons.begin_write(key, &members).await;
    let slots = group.targets();
    // `allow` claims a probe when a cooldown is over, so ask each breaker once.
    let allowed: Vec<bool> = slots.iter().map(|s| s.breaker.allow()).collect();
    let all_open = !allowed.contains(&true);
    let n = slots.len();
    let mut failures = Vec::new();
    let mut futures = Vec::with_capacity(n);
    for (i, slot) in slots.iter().enumerate() {
        if !all_open && !allowed[i] {
            failures.push(BackendFailure {
                backend: slot.name().to_string(),
                error: StorageError::Unavailable(
                    "circuit open: the backend failed repeatedly and is probed again later".into(),
                ),
            });
            continue;
        }
        let op = req.op(i + 1 == n);
        futures.push(async move { (slot.name(), slot.run(op, ctx.timeout).await) });
    }
    let results = join_all(futures).await;
    let mut acked: Vec<&str> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (name, r) in results {
        match r {
            Ok(_) => acked.push(name),
            Err(error) => {
                if outcome_unknown(&error) {
                    unknown.push(name);
                }
                failures.push(BackendFailure {
                    backend: name.to_string(),
                    error,
                });
            }
        }
    }
    ticket.finish(WriteOutcome {
        acked: &acked,
        failed: &unknown,
    });
    if failures.is_empty() || (acks == Acks::One && !acked.is_empty()) {
        if !failures.is_empty() {
            tracing::debug!(
                op = req.name(),
                ?acked,
                failed = failures.len(),
                "write reached some replicas; the others will be repaired"
            );
        }
        return Ok(Out::Done);
    }
    if acked.is_empty() {
        return Err(all_failed(req.name(), key, failures));
    }
    tracing::warn!(
        op = req.name(),
        ?acked,
        failed = failures.len(),
        "redundant write reached only some backends; it will be repaired onto the others"
    );
    Err(ManagerError::PartialWrite {
        op: req.name(),
        key: KeyRef::new(key),
        succeeded: acked.iter().map(|s| s.to_string()).collect(),
        failures,
    })
}
