//! The backend: get, put, delete and list as PostgREST requests.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_RANGE, HeaderMap};
use serde::{Deserialize, Serialize};
use storage_plugin_api::{Backend, Error, KeyPage};

use crate::client::{Answer, Request, RestClient};
use crate::config::SupabaseConfig;
use crate::encoding::{
    MAX_VALUE_BYTES, bytea_hex, check_key, like_prefix, now_rfc3339, parse_bytea, query_value,
};
use crate::error::{Op, SupabaseError};
use crate::runtime;

/// Rows asked for per `list` page: Supabase's default cap on a response.
/// Pages continue past it (and past any lower cap the project sets).
const PAGE_ROWS: usize = 1000;

/// A `supabase` backend: rows `(key, value, updated_at)` of one table,
/// reached through the project's REST API with one pooled HTTP client.
///
/// Every operation runs on the plugin's own runtime; see the crate docs.
#[derive(Clone, Debug)]
pub struct SupabaseBackend {
    inner: Arc<RestClient>,
}

impl SupabaseBackend {
    /// A backend for `config` (validated here too). Connects lazily: a
    /// project that is down does not stop the backend from being created.
    pub fn new(config: &SupabaseConfig) -> Result<Self, Error> {
        config.validate()?;
        // The connection pool belongs to the plugin's runtime.
        let _guard = runtime::runtime()?.enter();
        let client = RestClient::new(config)?;
        tracing::debug!(
            table = client.table(),
            key = client.key_name(),
            "supabase backend created"
        );
        Ok(SupabaseBackend {
            inner: Arc::new(client),
        })
    }
}

#[derive(Deserialize)]
struct ValueRow {
    value: Option<String>,
}

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

#[derive(Serialize)]
struct PutRow<'a> {
    key: &'a str,
    value: String,
    updated_at: String,
}

fn invalid_key(client: &RestClient, op: Op, key: &str) -> Result<(), SupabaseError> {
    check_key(key).map_err(|reason| SupabaseError::InvalidKey {
        ctx: client.ctx(op, key),
        reason,
    })
}

fn parse_json<'a, T: Deserialize<'a>>(
    client: &RestClient,
    op: Op,
    key: &str,
    answer: &'a Answer,
) -> Result<T, SupabaseError> {
    serde_json::from_slice(&answer.body).map_err(|e| SupabaseError::BadResponse {
        ctx: client.ctx(op, key),
        detail: format!(
            "HTTP {} with a body that is not the expected JSON: {e}",
            answer.status.as_u16()
        ),
    })
}

/// The total of `Content-Range: 0-999/2600` (or `*/0`), sent with `Prefer: count=exact`.
fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

async fn get(client: &RestClient, key: &str) -> Result<Option<Vec<u8>>, SupabaseError> {
    invalid_key(client, Op::Get, key)?;
    let req = Request {
        method: Method::GET,
        query: format!("select=value&key=eq.{}", query_value(key)),
        prefer: None,
        body: None,
    };
    let answer = client.send(Op::Get, key, &req).await?;
    let mut rows: Vec<ValueRow> = parse_json(client, Op::Get, key, &answer)?;
    match rows.len() {
        0 => Ok(None),
        1 => {
            let Some(text) = rows.pop().and_then(|r| r.value) else {
                return Err(SupabaseError::BadResponse {
                    ctx: client.ctx(Op::Get, key),
                    detail: "the row's value is null; the table's `value` column must be `bytea not null`".into(),
                });
            };
            parse_bytea(&text)
                .map(Some)
                .map_err(|detail| SupabaseError::BadResponse {
                    ctx: client.ctx(Op::Get, key),
                    detail,
                })
        }
        n => Err(SupabaseError::BadResponse {
            ctx: client.ctx(Op::Get, key),
            detail: format!("{n} rows for one key; `key` must be the table's primary key"),
        }),
    }
}

async fn put(client: &RestClient, key: &str, value: &[u8]) -> Result<(), SupabaseError> {
    invalid_key(client, Op::Put, key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(SupabaseError::ValueTooLarge {
            ctx: client.ctx(Op::Put, key),
            len: value.len(),
        });
    }
    let row = PutRow {
        key,
        value: bytea_hex(value),
        updated_at: now_rfc3339(),
    };
    let body = serde_json::to_vec(&row).map_err(|e| SupabaseError::BadResponse {
        ctx: client.ctx(Op::Put, key),
        detail: format!("cannot encode the row: {e}"),
    })?;
    let req = Request {
        method: Method::POST,
        query: String::new(),
        // An upsert on the primary key: insert, or update the existing row.
        prefer: Some("resolution=merge-duplicates,return=minimal"),
        body: Some(Bytes::from(body)),
    };
    client.send(Op::Put, key, &req).await.map(drop)
}

async fn delete(client: &RestClient, key: &str) -> Result<(), SupabaseError> {
    invalid_key(client, Op::Delete, key)?;
    let filter = format!("key=eq.{}", query_value(key));
    let req = Request {
        method: Method::DELETE,
        query: filter.clone(),
        // count=exact makes PostgREST say how many rows went (Content-Range
        // */N): row-level security blocks a delete silently, with 204 and 0.
        prefer: Some("return=minimal,count=exact"),
        body: None,
    };
    let answer = client.send(Op::Delete, key, &req).await?;
    if content_range_total(&answer.headers) == Some(0) {
        // Nothing deleted: either the key did not exist (fine, deletes are
        // idempotent) or RLS hid the row from DELETE. If the row can still
        // be read, it was the latter. (A row this key can neither read nor
        // delete is indistinguishable from a missing one.)
        let check = Request {
            method: Method::GET,
            query: format!("select=key&{filter}"),
            prefer: None,
            body: None,
        };
        let answer = client.send(Op::Delete, key, &check).await?;
        let rows: Vec<KeyRow> = parse_json(client, Op::Delete, key, &answer)?;
        if !rows.is_empty() {
            return Err(SupabaseError::DeleteBlocked {
                ctx: client.ctx(Op::Delete, key),
                key_name: client.key_name(),
            });
        }
    }
    Ok(())
}

async fn list(client: &RestClient, prefix: &str) -> Result<Vec<String>, SupabaseError> {
    scan(client, prefix, None, None).await
}

async fn list_page(
    client: &RestClient,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<KeyPage, SupabaseError> {
    // No key holds a NUL, so every key after `a\0...` is after `a` too, and
    // PostgreSQL text cannot carry a NUL: cut the cursor there. A cursor
    // longer than any key is refused like such a key.
    let after = after.map(|a| a.split('\0').next().unwrap_or_default());
    if let Some(after) = after {
        invalid_key(client, Op::List, after)?;
    }
    // One key past the page tells whether more follow.
    let keys = scan(client, prefix, after, Some(limit.saturating_add(1))).await?;
    Ok(KeyPage::from_overfetch(keys, limit))
}

/// The keys starting with `prefix` that sort after `after`, in key order:
/// all of them, or the first `want`.
async fn scan(
    client: &RestClient,
    prefix: &str,
    after: Option<&str>,
    want: Option<usize>,
) -> Result<Vec<String>, SupabaseError> {
    invalid_key(client, Op::List, prefix)?;
    // Keyset pagination in key order: each request starts after the last key
    // of the previous one, so requests neither skip nor repeat rows, whatever
    // the server's cap on rows per response.
    let like =
        (!prefix.is_empty()).then(|| format!("&key=like.{}", query_value(&like_prefix(prefix))));
    let mut keys = Vec::new();
    let mut after: Option<String> = after.map(str::to_owned);
    // Counting the matches saves asking for an empty page at the end of a
    // full listing; a bounded page stops at `want` instead.
    let count = want.is_none();
    let mut total: Option<u64> = None;
    let mut received: u64 = 0;
    let mut first = true;
    loop {
        let rows_wanted = match want {
            Some(want) => (want - keys.len()).min(PAGE_ROWS),
            None => PAGE_ROWS,
        };
        let mut query = format!("select=key&order=key.asc&limit={rows_wanted}");
        if let Some(like) = &like {
            query.push_str(like);
        }
        if let Some(after) = &after {
            query.push_str("&key=gt.");
            query.push_str(&query_value(after));
        }
        let req = Request {
            method: Method::GET,
            query,
            prefer: (count && first).then_some("count=exact"),
            body: None,
        };
        let answer = client.send(Op::List, prefix, &req).await?;
        if count && first {
            total = content_range_total(&answer.headers);
        }
        first = false;
        let rows: Vec<KeyRow> = parse_json(client, Op::List, prefix, &answer)?;
        let Some(last) = rows.last() else { break };
        received += rows.len() as u64;
        after = Some(last.key.clone());
        // `like` over-matches when the prefix has a `*` (see like_prefix).
        keys.extend(
            rows.into_iter()
                .map(|r| r.key)
                .filter(|k| k.starts_with(prefix)),
        );
        if total.is_some_and(|t| received >= t) || want.is_some_and(|w| keys.len() >= w) {
            break;
        }
    }
    Ok(keys)
}

impl Backend for SupabaseBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let client = Arc::clone(&self.inner);
        let key = key.to_owned();
        runtime::run("get", async move {
            get(&client, &key).await.map_err(Error::from)
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        let client = Arc::clone(&self.inner);
        let key = key.to_owned();
        runtime::run("put", async move {
            put(&client, &key, &value).await.map_err(Error::from)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        let client = Arc::clone(&self.inner);
        let key = key.to_owned();
        runtime::run("delete", async move {
            delete(&client, &key).await.map_err(Error::from)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let client = Arc::clone(&self.inner);
        let prefix = prefix.to_owned();
        runtime::run("list", async move {
            list(&client, &prefix).await.map_err(Error::from)
        })
        .await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, Error> {
        let client = Arc::clone(&self.inner);
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        runtime::run("list", async move {
            list_page(&client, &prefix, after.as_deref(), limit)
                .await
                .map_err(Error::from)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use storage_plugin_api::ErrorKind;

    use super::*;
    use crate::config::Secret;
    use crate::encoding::MAX_KEY_BYTES;

    /// A backend for a port nothing listens on: any request it sends fails
    /// as unavailable ("cannot reach"), so a different error proves that
    /// nothing was sent.
    fn unreachable_backend() -> SupabaseBackend {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        SupabaseBackend::new(&SupabaseConfig {
            url: format!("http://127.0.0.1:{port}"),
            anon_key: Secret::new("anon"),
            service_role_key: None,
            schema: "public".into(),
            table_name: "storage".into(),
            timeout: 5,
            max_retries: 0,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn limits_are_checked_before_any_request() {
        let b = unreachable_backend();
        let e = b
            .put("big", vec![0; MAX_VALUE_BYTES + 1])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let m = e.message();
        assert!(
            m.starts_with("supabase: put \"big\" in table public.storage: refused before sending"),
            "{e}"
        );
        assert!(
            m.contains("16777217 bytes") && m.contains("at most 16777216 bytes (16 MiB"),
            "{e}"
        );
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        for e in [
            b.put(&long, b"v".to_vec()).await.unwrap_err(),
            b.get(&long).await.unwrap_err(),
            b.delete(&long).await.unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains("2049 bytes long"), "{e}");
        }

        // Exactly at the limits, the request is sent and meets the closed port.
        for e in [
            b.put("big", vec![0; MAX_VALUE_BYTES]).await.unwrap_err(),
            b.put(&"k".repeat(MAX_KEY_BYTES), b"v".to_vec())
                .await
                .unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            assert!(e.message().contains("cannot reach"), "{e}");
        }
    }

    #[test]
    fn content_range() {
        let mut h = HeaderMap::new();
        assert_eq!(content_range_total(&h), None);
        for (v, want) in [
            ("*/0", Some(0)),
            ("0-999/2600", Some(2600)),
            ("0-0/*", None),
            ("*/*", None),
        ] {
            h.insert(CONTENT_RANGE, HeaderValue::from_static(v));
            assert_eq!(content_range_total(&h), want, "{v}");
        }
    }
}
