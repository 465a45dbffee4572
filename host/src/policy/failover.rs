//! Try backends in order; move on when one is unavailable.
//!
//! A write is acknowledged by the first backend that takes it; the other
//! members of the policy are then behind on the key, which the consistency
//! state records (the repair worker copies the value over). A read skips a
//! backend that is behind on the key.

use super::{Ctx, Group, Out, Req, all_failed, behind, outcome_unknown};
use crate::consistency::WriteOutcome;
use crate::error::{BackendFailure, KeyRef, ManagerError};
use crate::slot::Slot;

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    group: &Group<'_>,
    req: Req<'_>,
) -> Result<Out, ManagerError> {
    let key = req.key();
    match req {
        Req::Put(..) | Req::Delete(_) => {
            // One backend and nothing stale anywhere: nothing to keep in step.
            if group.len() == 1 && !ctx.cons.any_stale() {
                return try_in_order(ctx, group.targets(), req, None).await;
            }
            let members = group.members();
            let ticket = ctx.cons.begin_write(key, &members).await;
            let mut tried = Vec::new();
            let result = try_in_order(ctx, group.targets(), req, Some(&mut tried)).await;
            let acked: Vec<&str> = tried
                .iter()
                .filter(|t| t.1 == Sent::Acked)
                .map(|t| t.0)
                .collect();
            let failed: Vec<&str> = tried
                .iter()
                .filter(|t| t.1 == Sent::Unknown)
                .map(|t| t.0)
                .collect();
            ticket.finish(WriteOutcome {
                acked: &acked,
                failed: &failed,
            });
            result
        }
        Req::Get(_) => {
            if group.len() > 1 {
                ctx.cons.settle(key).await;
            }
            if !ctx.cons.any_stale() {
                return try_in_order(ctx, group.targets(), req, None).await;
            }
            let mut readable = Vec::with_capacity(group.targets().len());
            let mut skipped = Vec::new();
            for &slot in group.targets() {
                if ctx.cons.is_stale(slot.name(), key) {
                    ctx.cons.metrics.stale_reads_avoided.inc();
                    skipped.push(behind(slot));
                } else {
                    readable.push(slot);
                }
            }
            if readable.is_empty() {
                return Err(all_failed(req.name(), key, skipped));
            }
            try_in_order(ctx, &readable, req, None).await
        }
        Req::List(_) | Req::ListPage(..) => try_in_order(ctx, group.targets(), req, None).await,
    }
}

/// What became of a write sent to one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// It took the write.
    Acked,
    /// It failed in a way that may still have applied the write.
    Unknown,
    /// It refused the write.
    Refused,
}

/// Runs `req` on the first of `slots` that answers, recording in `tried` (a
/// write's; reads pass `None` and allocate nothing)
/// each backend the operation was sent to and how it went. A backend whose
/// breaker is open is skipped, and tried only if every other one failed
/// (so that when all are open, operations still try).
async fn try_in_order<'s>(
    ctx: &Ctx<'_>,
    slots: &[&'s Slot],
    mut req: Req<'_>,
    mut tried: Option<&mut Vec<(&'s str, Sent)>>,
) -> Result<Out, ManagerError> {
    let mut failures: Vec<BackendFailure> = Vec::new();
    let mut deferred: Vec<&'s Slot> = Vec::new();
    // Ask each breaker only when its turn comes: `allow` claims the probe
    // of a breaker whose cooldown is over.
    for (i, &slot) in slots.iter().enumerate() {
        if !slot.breaker.allow() {
            deferred.push(slot);
            continue;
        }
        let last = i + 1 == slots.len() && deferred.is_empty();
        if let Some(r) = attempt(
            ctx,
            slot,
            &mut req,
            last,
            tried.as_deref_mut(),
            &mut failures,
        )
        .await
        {
            return r;
        }
    }
    let n = deferred.len();
    for (i, slot) in deferred.into_iter().enumerate() {
        if let Some(r) = attempt(
            ctx,
            slot,
            &mut req,
            i + 1 == n,
            tried.as_deref_mut(),
            &mut failures,
        )
        .await
        {
            return r;
        }
    }
    Err(all_failed(req.name(), req.key(), failures))
}

/// One attempt: `Some(result)` ends the operation, `None` moves on.
async fn attempt<'s>(
    ctx: &Ctx<'_>,
    slot: &'s Slot,
    req: &mut Req<'_>,
    last: bool,
    tried: Option<&mut Vec<(&'s str, Sent)>>,
    failures: &mut Vec<BackendFailure>,
) -> Option<Result<Out, ManagerError>> {
    match slot.run(req.op(last), ctx.timeout).await {
        Ok(out) => {
            if let Some(tried) = tried {
                tried.push((slot.name(), Sent::Acked));
            }
            Some(Ok(out))
        }
        Err(e) => {
            let sent = if outcome_unknown(&e) {
                Sent::Unknown
            } else {
                Sent::Refused
            };
            if let Some(tried) = tried {
                tried.push((slot.name(), sent));
            }
            if !e.is_unavailable() {
                return Some(Err(ManagerError::StorageOperation {
                    backend: slot.name().to_string(),
                    op: req.name(),
                    key: KeyRef::new(req.key()),
                    source: e,
                }));
            }
            if !last {
                tracing::debug!(backend = %slot.name(), op = req.name(), error = %e, "failing over");
            }
            failures.push(BackendFailure {
                backend: slot.name().to_string(),
                error: e,
            });
            None
        }
    }
}
