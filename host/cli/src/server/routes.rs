//! The HTTP API's routes and handlers.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use axum::Json;
use axum::Router;
use axum::body::BodyDataStream;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};

use super::auth;
use super::config::Secret;
use super::error::{ApiError, ErrorCode};
use super::plugins::PluginLog;
use storage_host::health::Health;
use storage_host::manager::StorageManager;
use storage_host::metrics::escape_label_value;
use storage_host::plugin::PluginSource;
use storage_host::policy::StoragePolicy;

/// The longest key the API accepts, in bytes of UTF-8 (the durable local
/// store's limit; other backends may have lower ones and answer `invalid_input`).
pub const MAX_KEY_BYTES: usize = 4 * 1024;

/// Keys per page of `GET /v1/kv` when the request names no `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 1000;

/// The largest `limit` of `GET /v1/kv`: the manager's page bound.
pub const MAX_LIST_LIMIT: usize = storage_host::manager::MAX_LIST_PAGE;

/// The most request headers the API takes; more is answered 431.
pub const MAX_HEADERS: usize = 100;

/// The most bytes of request headers (names, values and separators) the API
/// takes; more is answered 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The longest request target (path and query) the API takes, in bytes;
/// longer is answered 414. Room for the longest key, percent-encoded whole.
pub const MAX_URI_BYTES: usize = 3 * MAX_KEY_BYTES + 1024;

/// What the handlers share.
pub(crate) struct AppState {
    pub(crate) manager: StorageManager,
    pub(crate) plugins: Arc<PluginLog>,
    pub(crate) plugins_dir: Option<std::path::PathBuf>,
    pub(crate) max_body_bytes: usize,
    pub(crate) body_timeout: Duration,
}

type Shared = State<Arc<AppState>>;

/// The API: `/healthz` is always open; every other route needs the bearer
/// token when one is configured.
pub(crate) fn router(state: Arc<AppState>, token: Option<Secret>) -> Router {
    let body_timeout = state.body_timeout;
    let mut api = Router::new()
        .route("/v1/kv", get(list_keys))
        .route("/v1/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .route(
            "/v1/kv/{*key}",
            get(get_value).put(put_value).delete(delete_value),
        )
        .route("/v1/plugins", get(plugins))
        .route("/v1/backends", get(backends))
        .route("/metrics", get(metrics));
    if let Some(token) = token {
        api = api.layer(middleware::from_fn_with_state(token, auth::require_token));
    }
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(middleware::from_fn(check_head))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Refuses, with the API's JSON error, a request whose target or headers
/// are larger than the API takes (414, 431). The HTTP parser's own limits
/// are set above these (see `listen`), so it is this answer clients see.
async fn check_head(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!(
                "the request target is {target} bytes long; the limit is {MAX_URI_BYTES} (keys are at most {MAX_KEY_BYTES} bytes)"
            ),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request has {} headers of {bytes} bytes; the limits are {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// One debug line per request. The path is not logged: keys may be personal data.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(%method, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}

async fn route_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        "no such route; the API has /v1/kv/{key}, /v1/kv?prefix=, /v1/plugins, /v1/backends, /metrics and /healthz",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// A key as shown in messages: the manager's own rendering (quoted, cut short when long).
fn show(key: &str) -> String {
    storage_host::error::KeyRef::new(key).to_string()
}

/// Checks a key (or a list prefix, which may be empty). Control characters
/// are refused: they break line-oriented tools (`storage-host list`) and
/// logs, and no sane key needs them.
pub fn check_key(key: &str, what: &str) -> Result<(), ApiError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::new(
            ErrorCode::BadKey,
            format!(
                "the {what} is {} bytes long; the limit is {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(ApiError::new(
            ErrorCode::BadKey,
            format!(
                "the {what} {} contains the control character {:?}",
                show(key),
                c
            ),
        ));
    }
    Ok(())
}

/// Decodes the `%XX` escapes of a URL component strictly: each `%` must be
/// followed by two hex digits, and the bytes must be UTF-8. With
/// `plus_is_space` (query strings), `+` stands for a space. The error says
/// what is wrong and where, for a 400.
pub fn percent_decode_strict(raw: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                        out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                        i += 3;
                    }
                    _ => {
                        let escape: String = raw[i..].chars().take(3).collect();
                        return Err(format!(
                            "{escape:?} at byte {i} is not a percent-escape: '%' must be followed by two hex digits (write %25 for a literal '%')"
                        ));
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| {
        format!(
            "the percent-escapes decode to bytes that are not UTF-8 (at decoded byte {}); encode text as UTF-8 before percent-encoding it",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The key of a `/v1/kv/{key}` request, decoded strictly from the raw path.
fn key_of(uri: &Uri) -> Result<String, ApiError> {
    let raw = uri.path().strip_prefix("/v1/kv/").unwrap_or_default();
    let key = percent_decode_strict(raw, false).map_err(|reason| {
        ApiError::new(
            ErrorCode::BadKey,
            format!("the key in the path is not valid: {reason}"),
        )
    })?;
    if key.is_empty() {
        return Err(ApiError::new(ErrorCode::BadKey, "the key is empty"));
    }
    check_key(&key, "key")?;
    Ok(key)
}

async fn empty_key() -> ApiError {
    ApiError::new(
        ErrorCode::BadKey,
        "the key is empty: use /v1/kv/{key}, or GET /v1/kv to list keys",
    )
}

async fn get_value(State(s): Shared, uri: Uri) -> Result<Response, ApiError> {
    let key = key_of(&uri)?;
    match s.manager.get(&key).await? {
        Some(value) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            value,
        )
            .into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no value under the key {}", show(&key)),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("the body is larger than the limit of {limit} bytes (max_body_size in the config)"),
    )
}

/// How much of a refused body is still read and thrown away. A client that
/// is still sending when the server answers and closes gets a connection
/// reset instead of the 413 (the unread bytes make the kernel send RST):
/// reading a bounded amount more lets ordinary clients see the answer,
/// without letting anyone make the server read without end.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

async fn drain(stream: &mut BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Whether a body error is `body_timeout` expiring.
fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(e);
    while let Some(err) = e {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        e = err.source();
    }
    false
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(
    request: Request,
    limit: usize,
    body_timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = request.into_body().into_data_stream();
    if let Some(n) = declared
        && n > limit as u64
    {
        // Refused before reading; drained only when the excess is small.
        if n - limit as u64 <= DRAIN_BYTES as u64 {
            drain(&mut stream).await;
        }
        return Err(too_large(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let e = e.into_inner();
            if is_body_timeout(&*e) {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "no part of the body arrived for {} ms (body_timeout in the config)",
                        body_timeout.as_millis()
                    ),
                )
            } else {
                ApiError::new(ErrorCode::BadRequest, format!("cannot read the body: {e}"))
            }
        })?;
        if body.len() + chunk.len() > limit {
            drain(&mut stream).await;
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn put_value(State(s): Shared, uri: Uri, request: Request) -> Result<StatusCode, ApiError> {
    let key = key_of(&uri)?;
    let body = read_body(request, s.max_body_bytes, s.body_timeout).await?;
    s.manager.put(&key, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_value(State(s): Shared, uri: Uri) -> Result<StatusCode, ApiError> {
    let key = key_of(&uri)?;
    s.manager.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The query of `GET /v1/kv`.
#[derive(Default)]
struct ListQuery {
    prefix: String,
    limit: Option<usize>,
    after: Option<String>,
}

impl ListQuery {
    /// Parses `prefix=P&limit=N&after=K`, each value percent-decoded
    /// strictly (`+` is a space); unknown or repeated parameters are refused.
    fn parse(query: Option<&str>) -> Result<ListQuery, ApiError> {
        let bad = |m: String| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{m}; the parameters are prefix, limit (1 to {MAX_LIST_LIMIT}) and after"),
            )
        };
        let mut q = ListQuery::default();
        let mut seen = [false; 3];
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode_strict(raw_name, true)
                .map_err(|r| bad(format!("a parameter name in the query is not valid: {r}")))?;
            let value = percent_decode_strict(raw_value, true)
                .map_err(|r| bad(format!("the query parameter {name:?} is not valid: {r}")))?;
            let slot = match name.as_str() {
                "prefix" => 0,
                "limit" => 1,
                "after" => 2,
                _ => return Err(bad(format!("unknown query parameter {name:?}"))),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(bad(format!("the query parameter {name:?} is given twice")));
            }
            match slot {
                0 => q.prefix = value,
                1 => {
                    q.limit = Some(
                        value
                            .parse()
                            .map_err(|_| bad(format!("limit {value:?} is not a number")))?,
                    )
                }
                _ => q.after = Some(value),
            }
        }
        Ok(q)
    }
}

#[derive(Serialize)]
struct KeyPage {
    keys: Vec<String>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

async fn list_keys(State(s): Shared, uri: Uri) -> Result<Json<KeyPage>, ApiError> {
    let q = ListQuery::parse(uri.query())?;
    check_key(&q.prefix, "prefix")?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    // Only the page is read (by backends that can; others cut it out of
    // a full listing). `after` is a key, so it stays a correct cursor while
    // keys are added or removed.
    let page = s
        .manager
        .list_page(&q.prefix, q.after.as_deref(), limit)
        .await?;
    let next_after = page.next_after().map(str::to_owned);
    Ok(Json(KeyPage {
        keys: page.keys,
        next_after,
    }))
}

fn source_json(source: &PluginSource) -> (&'static str, Option<String>) {
    match source {
        PluginSource::InProcess => ("in_process", None),
        PluginSource::Builtin => ("builtin", None),
        PluginSource::Library { path, .. } => ("library", Some(path.display().to_string())),
    }
}

async fn plugins(State(s): Shared) -> Json<Value> {
    let loaded: Vec<Value> = s
        .manager
        .list_plugins()
        .into_iter()
        .map(|p| {
            let (source, file) = source_json(&p.source);
            json!({
                "name": p.name,
                "version": p.version,
                "description": p.description,
                "api_version": p.api_version,
                "source": source,
                "file": file,
            })
        })
        .collect();
    let (rejected, events) = s.plugins.snapshot();
    Json(json!({
        "plugins_dir": s.plugins_dir.as_ref().map(|d| d.display().to_string()),
        "loaded": loaded,
        "rejected": rejected,
        "events": events,
    }))
}

fn health_str(h: Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::TakenOut => "taken_out",
    }
}

/// A policy as the config file writes it.
pub(crate) fn policy_json(policy: Option<&StoragePolicy>) -> Value {
    match policy {
        None => json!({"type": "default"}),
        Some(StoragePolicy::AlwaysUse(b)) => json!({"type": "always_use", "backend": b}),
        Some(StoragePolicy::FirstAvailable(l)) => json!({"type": "first_available", "backends": l}),
        Some(StoragePolicy::PreferCache { cache, primary }) => {
            json!({"type": "prefer_cache", "cache": cache, "primary": primary})
        }
        Some(StoragePolicy::Redundant(l)) => json!({"type": "redundant", "backends": l}),
        Some(StoragePolicy::RoundRobin(l)) => json!({"type": "round_robin", "backends": l}),
    }
}

async fn backends(State(s): Shared) -> Json<Value> {
    let backends: Vec<Value> = s
        .manager
        .list_backends()
        .into_iter()
        .map(|b| {
            let status = if !b.enabled {
                "disabled"
            } else if b.health == Health::TakenOut {
                "unavailable"
            } else {
                "serving"
            };
            json!({
                "name": b.name,
                "plugin": b.plugin,
                "plugin_version": b.plugin_version,
                "enabled": b.enabled,
                "priority": b.priority,
                "health": health_str(b.health),
                "status": status,
            })
        })
        .collect();
    Json(json!({
        "policy": policy_json(s.manager.policy().as_ref()),
        "backends": backends,
    }))
}

async fn metrics(State(s): Shared) -> Response {
    let mut text = s.manager.metrics().await.to_prometheus();
    // Beside the manager's counters: which backends routing can use now, and
    // which plugin versions are loaded (changes on a hot swap).
    let backends = s.manager.list_backends();
    text.push_str("# HELP storage_backend_up Whether the backend is enabled and its circuit closed.\n# TYPE storage_backend_up gauge\n");
    for b in &backends {
        let up = u8::from(b.enabled && b.health != Health::TakenOut);
        let _ = writeln!(
            text,
            "storage_backend_up{{backend=\"{}\",plugin_version=\"{}\"}} {up}",
            escape_label_value(&b.name),
            escape_label_value(&b.plugin_version)
        );
    }
    text.push_str("# HELP storage_plugin_info A loaded plugin and its version.\n# TYPE storage_plugin_info gauge\n");
    for p in s.manager.list_plugins() {
        let _ = writeln!(
            text,
            "storage_plugin_info{{plugin=\"{}\",version=\"{}\"}} 1",
            escape_label_value(&p.name),
            escape_label_value(&p.version)
        );
    }
    let (rejected, _) = s.plugins.snapshot();
    text.push_str("# HELP storage_plugin_files_rejected Plugin files whose latest version was rejected.\n# TYPE storage_plugin_files_rejected gauge\n");
    let _ = writeln!(text, "storage_plugin_files_rejected {}", rejected.len());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// 200 while at least one enabled backend can be routed to, 503 otherwise.
async fn healthz(State(s): Shared) -> Response {
    let backends = s.manager.list_backends();
    let available = backends
        .iter()
        .filter(|b| b.enabled && b.health != Health::TakenOut)
        .count();
    if available == 0 {
        let mut e = ApiError::new(ErrorCode::Unavailable, "no backend is available");
        if backends.iter().all(|b| !b.enabled) {
            e.code = ErrorCode::NoBackends;
            e.message = "no backend is enabled".into();
        }
        return e.into_response();
    }
    Json(json!({
        "status": "ok",
        "backends_available": available,
        "backends": backends.len(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("a/b c%ü", "key").is_ok());
        assert_eq!(
            check_key("a\nb", "key").unwrap_err().code,
            ErrorCode::BadKey
        );
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_BYTES + 1), "key")
                .unwrap_err()
                .code,
            ErrorCode::BadKey
        );
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES), "key").is_ok());
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(
            percent_decode_strict("a%2Fb%20c+d", false).unwrap(),
            "a/b c+d"
        );
        assert_eq!(percent_decode_strict("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode_strict("%C3%BC", false).unwrap(), "ü");
        for bad in ["%G1", "a%", "a%4", "%%", "%-1", "%+1"] {
            let e = percent_decode_strict(bad, false).unwrap_err();
            assert!(e.contains("not a percent-escape"), "{bad}: {e}");
        }
        for bad in ["%FF", "a%C3", "%C3%28", "%ED%A0%80"] {
            let e = percent_decode_strict(bad, false).unwrap_err();
            assert!(e.contains("not UTF-8"), "{bad}: {e}");
        }
    }

    #[test]
    fn list_queries() {
        let q = ListQuery::parse(Some("prefix=a%2Fb+c&limit=5&after=x")).unwrap();
        assert_eq!(
            (q.prefix.as_str(), q.limit, q.after.as_deref()),
            ("a/b c", Some(5), Some("x"))
        );
        assert!(ListQuery::parse(None).unwrap().prefix.is_empty());
        for bad in [
            "prefix=%G1",
            "prefix=%",
            "prefix=%FF",
            "after=%FF",
            "pre%FFfix=a",
            "limit=x",
            "limit=%FF",
            "nope=1",
            "prefix=a&prefix=b",
        ] {
            let e = ListQuery::parse(Some(bad)).err().unwrap();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
        }
    }
}
