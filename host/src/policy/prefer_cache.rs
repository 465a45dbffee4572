//! A cache in front of a source of truth.
//!
//! The primary decides every outcome; the cache only saves reads. A cache
//! failure is logged and counted on the cache backend, never returned.

use super::{Ctx, Out, Req};
use crate::error::{KeyRef, ManagerError};
use crate::manager::slot::Slot;

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    cache: Option<&Slot>,
    primary: &Slot,
    req: Req<'_>,
) -> Result<Out, ManagerError> {
    let t = ctx.timeout;
    // A cache whose breaker is open is skipped: a dead cache must not add its
    // timeout to every operation. Writes it misses may leave it stale until
    // its entries expire (as when a cache write fails), which is logged.
    let cache = cache.filter(|c| {
        let allowed = c.breaker.allow();
        if !allowed && !matches!(req, Req::Get(_) | Req::List(_) | Req::ListPage(..)) {
            tracing::warn!(backend = %c.name(), "cache skipped (circuit open); it may serve a stale value for this key until it expires");
        }
        allowed || matches!(req, Req::List(_) | Req::ListPage(..))
    });
    let fail = |op: &'static str, key: &str, e| ManagerError::StorageOperation {
        backend: primary.name().to_string(),
        op,
        key: KeyRef::new(key),
        source: e,
    };
    match req {
        Req::Get(key) => {
            if cache.is_none() {
                ctx.metrics.cache_misses.inc();
            }
            if let Some(cache) = cache {
                match cache.get(key, t).await {
                    Ok(Some(v)) => {
                        ctx.metrics.cache_hits.inc();
                        return Ok(Out::Value(Some(v)));
                    }
                    Ok(None) => ctx.metrics.cache_misses.inc(),
                    Err(e) => {
                        ctx.metrics.cache_misses.inc();
                        tracing::debug!(backend = %cache.name(), error = %e, "cache read failed; reading the primary");
                    }
                }
            }
            let value = primary.get(key, t).await.map_err(|e| fail("get", key, e))?;
            if let (Some(cache), Some(v)) = (cache, &value)
                && let Err(e) = cache.put(key, v.clone(), t).await
            {
                tracing::debug!(backend = %cache.name(), error = %e, "cache fill failed");
            }
            Ok(Out::Value(value))
        }
        Req::Put(key, value) => {
            let for_cache = cache.map(|_| value.clone());
            primary
                .put(key, value, t)
                .await
                .map_err(|e| fail("put", key, e))?;
            if let (Some(cache), Some(v)) = (cache, for_cache)
                && let Err(e) = cache.put(key, v, t).await
            {
                // The cache may still hold the previous value: drop it.
                invalidate(cache, key, ctx, &e.to_string()).await;
            }
            Ok(Out::Done)
        }
        Req::Delete(key) => {
            primary
                .delete(key, t)
                .await
                .map_err(|e| fail("delete", key, e))?;
            if let Some(cache) = cache
                && let Err(e) = cache.delete(key, t).await
            {
                tracing::warn!(backend = %cache.name(), key = %KeyRef::new(key), error = %e, "cache delete failed; the cache may serve the deleted value until it expires");
            }
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

async fn invalidate(cache: &Slot, key: &str, ctx: &Ctx<'_>, why: &str) {
    if let Err(e) = cache.delete(key, ctx.timeout).await {
        tracing::warn!(backend = %cache.name(), key = %KeyRef::new(key), put_error = why, error = %e, "cache write and invalidation both failed; the cache may serve a stale value until it expires");
    }
}
