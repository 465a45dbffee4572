//! A cache in front of a source of truth.
//!
//! The primary decides every outcome; the cache only saves reads. A cache
//! failure is logged and counted on the cache backend, never returned. The
//! cache is never trusted blindly:
//! - a write updates (or, failing that, invalidates) the cache before it is
//!   acknowledged; when neither works (the cache is down, frozen, disabled,
//!   or its circuit is open) the key is marked stale in the cache, reads of
//!   it go to the primary, and the repair worker copies the primary's value
//!   over once the cache answers again;
//! - a fill (a miss read from the primary, written to the cache) is dropped
//!   when a write to the key finished or is in flight since the fill read
//!   the primary: the value it carries may be older than that write.

use super::{Ctx, Out, Req, outcome_unknown};
use crate::consistency::WriteOutcome;
use crate::error::{KeyRef, ManagerError};
use crate::slot::Slot;
use crate::storage::StorageError;

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    cache: &Slot,
    primary: &Slot,
    req: Req<'_>,
) -> Result<Out, ManagerError> {
    let t = ctx.timeout;
    let fail = |op: &'static str, key: &str, e| ManagerError::StorageOperation {
        backend: primary.name().to_string(),
        op,
        key: KeyRef::new(key),
        source: e,
    };
    let members = [primary.name(), cache.name()];
    // A cache whose breaker is open is skipped: a dead cache must not add
    // its timeout to every operation.
    let usable = |c: &Slot| c.is_enabled() && c.breaker.allow();
    match req {
        Req::Get(key) => {
            // The stripe's write count, read before the primary is: a write
            // finishing after this makes the fill below drop its (possibly
            // old) value.
            let version = ctx.cons.settle(key).await;
            let stale = ctx.cons.is_stale(cache.name(), key);
            let cache = (!stale && usable(cache)).then_some(cache);
            if stale {
                ctx.cons.metrics.stale_reads_avoided.inc();
            }
            let Some(cache) = cache else {
                ctx.metrics.cache_misses.inc();
                return primary
                    .get(key, t)
                    .await
                    .map(Out::Value)
                    .map_err(|e| fail("get", key, e));
            };
            match cache.get(key, t).await {
                Ok(Some(v)) => {
                    ctx.metrics.cache_hits.inc();
                    return Ok(Out::Value(Some(v)));
                }
                Ok(None) => ctx.metrics.cache_misses.inc(),
                Err(e) => {
                    ctx.metrics.cache_misses.inc();
                    tracing::debug!(backend = %cache.name(), error = %e, "cache read failed; reading the primary");
                    return primary
                        .get(key, t)
                        .await
                        .map(Out::Value)
                        .map_err(|e| fail("get", key, e));
                }
            }
            let value = primary.get(key, t).await.map_err(|e| fail("get", key, e))?;
            if let Some(v) = &value {
                fill(ctx, cache, primary, key, v, version).await;
            }
            Ok(Out::Value(value))
        }
        Req::Put(key, value) => {
            let ticket = ctx.cons.begin_write(key, &members).await;
            let cache = usable(cache).then_some(cache);
            let for_cache = cache.map(|_| value.clone());
            if let Err(e) = primary.put(key, value, t).await {
                ticket.finish(primary_failed(&e, &members));
                return Err(fail("put", key, e));
            }
            let cache_ok = match (cache, for_cache) {
                (Some(cache), Some(v)) => match cache.put(key, v, t).await {
                    Ok(()) => true,
                    // The cache may still hold the previous value: drop it.
                    Err(e) => invalidate(cache, key, ctx, &e).await,
                },
                _ => false,
            };
            ticket.finish(if cache_ok {
                WriteOutcome {
                    acked: &members,
                    failed: &[],
                }
            } else {
                WriteOutcome {
                    acked: &members[..1],
                    failed: &[],
                }
            });
            Ok(Out::Done)
        }
        Req::Delete(key) => {
            let ticket = ctx.cons.begin_write(key, &members).await;
            let cache = usable(cache).then_some(cache);
            if let Err(e) = primary.delete(key, t).await {
                ticket.finish(primary_failed(&e, &members));
                return Err(fail("delete", key, e));
            }
            let cache_ok = match cache {
                Some(cache) => match cache.delete(key, t).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(backend = %cache.name(), error = %e, "cache delete failed; the key is read from the primary until the cache is repaired");
                        false
                    }
                },
                None => false,
            };
            ticket.finish(WriteOutcome {
                acked: if cache_ok { &members } else { &members[..1] },
                failed: &[],
            });
            Ok(Out::Done)
        }
        Req::List(prefix) => primary
            .list(prefix, t)
            .await
            .map(Out::Keys)
            .map_err(|e| fail("list", prefix, e)),
        Req::ListPage(prefix, after, limit) => primary
            .list_page(prefix, after, limit, t)
            .await
            .map(Out::Page)
            .map_err(|e| fail("list", prefix, e)),
    }
}

/// A write the primary failed: if it may still have been applied, the
/// cache (which was not told) is behind on the key.
fn primary_failed<'a>(e: &StorageError, members: &'a [&'a str; 2]) -> WriteOutcome<'a> {
    WriteOutcome {
        acked: &[],
        failed: if outcome_unknown(e) {
            &members[..1]
        } else {
            &[]
        },
    }
}

/// Writes a value read from the primary into the cache, unless a write to
/// the key overtook it (then the value may be old: it is dropped).
async fn fill(ctx: &Ctx<'_>, cache: &Slot, primary: &Slot, key: &str, value: &[u8], version: u64) {
    let Some(_stripe) = ctx.cons.fill_guard(key, version).await else {
        ctx.cons.metrics.fills_dropped.inc();
        return;
    };
    // A write that missed the cache since: leave the key to the repair.
    if ctx.cons.is_stale(cache.name(), key) {
        return;
    }
    if let Err(e) = cache.put(key, value.to_vec(), ctx.timeout).await {
        tracing::debug!(backend = %cache.name(), error = %e, "cache fill failed");
        // A fill that timed out may still land later: repair the key to be
        // sure. One the cache refused did not land.
        if outcome_unknown(&e) {
            ctx.cons.mark_stale(cache.name(), key, primary.name());
        }
    }
}

/// Drops `key` from the cache after a failed cache write; false when that
/// failed too (the key is then marked stale in the cache).
async fn invalidate(cache: &Slot, key: &str, ctx: &Ctx<'_>, put_error: &StorageError) -> bool {
    match cache.delete(key, ctx.timeout).await {
        Ok(()) => true,
        // A key the cache refuses as invalid (too long) cannot be in it.
        Err(StorageError::InvalidInput(_)) => true,
        Err(e) => {
            tracing::warn!(backend = %cache.name(), put_error = %put_error, error = %e, "cache write and invalidation both failed; the key is read from the primary until the cache is repaired");
            false
        }
    }
}
