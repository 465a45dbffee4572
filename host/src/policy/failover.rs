//! Try backends in order; move on when one is unavailable.

use super::{Ctx, Out, Req};
use crate::error::{BackendFailure, KeyRef, ManagerError};
use crate::manager::slot::Slot;

/// Runs `req` on the first of `slots` that answers. A backend whose breaker
/// is open is skipped, and tried only if every other one failed (so that
/// when all are open, operations still try).
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    slots: &[&Slot],
    mut req: Req<'_>,
) -> Result<Out, ManagerError> {
    let mut failures: Vec<BackendFailure> = Vec::new();
    let mut deferred: Vec<&Slot> = Vec::new();
    for (i, &slot) in slots.iter().enumerate() {
        if !slot.breaker.allow() {
            deferred.push(slot);
            continue;
        }
        let last = i + 1 == slots.len() && deferred.is_empty();
        match attempt(ctx, slot, &mut req, last, &mut failures).await {
            Some(r) => return r,
            None => continue,
        }
    }
    let n = deferred.len();
    for (i, slot) in deferred.into_iter().enumerate() {
        match attempt(ctx, slot, &mut req, i + 1 == n, &mut failures).await {
            Some(r) => return r,
            None => continue,
        }
    }
    Err(all_failed(&req, failures))
}

/// One attempt: `Some(result)` ends the operation, `None` moves on.
async fn attempt(
    ctx: &Ctx<'_>,
    slot: &Slot,
    req: &mut Req<'_>,
    last: bool,
    failures: &mut Vec<BackendFailure>,
) -> Option<Result<Out, ManagerError>> {
    match slot.run(req.op(last), ctx.timeout).await {
        Ok(out) => Some(Ok(out)),
        Err(e) if e.is_unavailable() && !last => {
            tracing::debug!(backend = %slot.name(), op = req.name(), error = %e, "failing over");
            failures.push(BackendFailure {
                backend: slot.name().to_string(),
                error: e,
            });
            None
        }
        Err(e) if e.is_unavailable() => {
            failures.push(BackendFailure {
                backend: slot.name().to_string(),
                error: e,
            });
            None
        }
        Err(e) => Some(Err(ManagerError::StorageOperation {
            backend: slot.name().to_string(),
            op: req.name(),
            key: KeyRef::new(req.key()),
            source: e,
        })),
    }
}

fn all_failed(req: &Req<'_>, mut failures: Vec<BackendFailure>) -> ManagerError {
    if failures.len() == 1 {
        let f = failures.pop().expect("one failure");
        ManagerError::StorageOperation {
            backend: f.backend,
            op: req.name(),
            key: KeyRef::new(req.key()),
            source: f.error,
        }
    } else {
        ManagerError::AllBackendsFailed {
            op: req.name(),
            key: KeyRef::new(req.key()),
            failures,
        }
    }
}
