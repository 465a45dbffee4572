//! Writes to every backend at once; reads from the first that answers.

use futures_util::future::join_all;

use super::{Ctx, Out, Req};
use crate::error::{BackendFailure, KeyRef, ManagerError};
use crate::manager::slot::Slot;
use crate::storage::StorageError;

pub(crate) async fn run(ctx: &Ctx<'_>, slots: &[&Slot], req: Req<'_>) -> Result<Out, ManagerError> {
    match req {
        Req::Put(..) | Req::Delete(_) => fan_out(ctx, slots, req).await,
        Req::Get(key) => {
            let mut failures = Vec::new();
            let mut answered = false;
            for slot in slots {
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
                Err(ManagerError::AllBackendsFailed {
                    op: "get",
                    key: KeyRef::new(key),
                    failures,
                })
            }
        }
        Req::List(prefix) | Req::ListPage(prefix, ..) => {
            let mut failures = Vec::new();
            for slot in slots {
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

/// Sends a put or delete to every backend concurrently: the latency is the
/// slowest backend's, not the sum. A backend whose breaker is open is
/// reported failed without waiting for it (unless all are open).
async fn fan_out(ctx: &Ctx<'_>, slots: &[&Slot], mut req: Req<'_>) -> Result<Out, ManagerError> {
    // `allow` claims a probe when a cooldown is over, so ask each breaker once.
    let allowed: Vec<bool> = slots.iter().map(|s| s.breaker.allow()).collect();
    let all_open = !allowed.contains(&true);
    let n = slots.len();
    let mut skipped = Vec::new();
    let mut futures = Vec::with_capacity(n);
    for (i, slot) in slots.iter().enumerate() {
        if !all_open && !allowed[i] {
            skipped.push(BackendFailure {
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
    let mut succeeded = Vec::new();
    let mut failures = skipped;
    for (name, r) in results {
        match r {
            Ok(_) => succeeded.push(name.to_string()),
            Err(error) => failures.push(BackendFailure {
                backend: name.to_string(),
                error,
            }),
        }
    }
    if failures.is_empty() {
        return Ok(Out::Done);
    }
    let key = KeyRef::new(req.key());
    if succeeded.is_empty() {
        Err(ManagerError::AllBackendsFailed {
            op: req.name(),
            key,
            failures,
        })
    } else {
        tracing::warn!(op = req.name(), key = %key, ?succeeded, failed = failures.len(), "redundant write reached only some backends");
        Err(ManagerError::PartialWrite {
            op: req.name(),
            key,
            succeeded,
            failures,
        })
    }
}
