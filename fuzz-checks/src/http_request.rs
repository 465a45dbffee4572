//! `http_request`: arbitrary requests through the HTTP API's router, each
//! answer checked against the store.

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use storage_host_cli::server::Host;
use storage_host_cli::server::config::{HostConfig, Secret};
use storage_host_cli::server::error::ErrorCode;
use tower::ServiceExt;

use crate::{runtime, split, text};

/// Keys in the store before every request, with their values.
const FIXED: &[(&str, &[u8])] = &[
    ("a", b"1"),
    ("a b", b"2"),
    ("a+b", b"3"),
    ("a/b", b"4"),
    ("a%2F", b"5"),
    ("k*", b"6"),
    ("k?x", b"7"),
    ("z", b""),
    ("\u{e9}", b"8"),
];

const TOKEN: &str = "fuzz-token-0123456789abcdef";
const MAX_BODY: usize = 1024;

const METHODS: [Method; 8] = [
    Method::GET,
    Method::PUT,
    Method::DELETE,
    Method::POST,
    Method::HEAD,
    Method::GET,
    Method::PUT,
    Method::OPTIONS,
];

const ROUTES: &[&str] = &[
    "/v1/kv/",
    "/v1/kv?prefix=",
    "/v1/kv?limit=2&prefix=",
    "/v1/kv?prefix=a&after=",
    "/v1/kv",
    "/v1/kv/a",
    "/",
    "/v1/",
    "/healthz",
    "/metrics",
    "/v1/plugins",
    "/v1/backends",
    "",
];

struct Api {
    host: Host,
    open: Router,
    guarded: Router,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let config = HostConfig::from_toml_str(
            &format!(
                "listen = \"127.0.0.1:0\"\nmax_body_size = {MAX_BODY}\n\n[[backends]]\nname = \"mem\"\nstorage_config = {{ type = \"local\" }}\n"
            ),
            Path::new("/nonexistent"),
        )
        .expect("the fuzz host config");
        let mut guarded_config = config.clone();
        guarded_config.auth.token = Some(Secret::new(TOKEN));
        runtime().block_on(async {
            let host = Host::start(&config, false)
                .await
                .expect("an in-memory host");
            for (k, v) in FIXED {
                host.manager().put(k, v.to_vec()).await.expect("put");
            }
            Api {
                open: host.router(&config),
                guarded: host.router(&guarded_config),
                host,
            }
        })
    })
}

fn fixed_keys() -> Vec<String> {
    let mut keys: Vec<String> = FIXED.iter().map(|(k, _)| k.to_string()).collect();
    keys.sort();
    keys
}

fn fixed_value(key: &str) -> Option<&'static [u8]> {
    FIXED.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The code of a JSON error body, checked against its status.
fn error_code(status: StatusCode, body: &[u8]) -> ErrorCode {
    const CODES: &[ErrorCode] = &[
        ErrorCode::BadKey,
        ErrorCode::BadRequest,
        ErrorCode::InvalidInput,
        ErrorCode::Unauthorized,
        ErrorCode::RequestTimeout,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::NotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::BodyTooLarge,
        ErrorCode::Unsupported,
        ErrorCode::PartialWrite,
        ErrorCode::BackendError,
        ErrorCode::Unavailable,
        ErrorCode::NoBackends,
        ErrorCode::Internal,
    ];
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "a {status} whose body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    let code = v["error"]["code"].as_str().unwrap_or("");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "an error without a message: {v}");
    let code = CODES
        .iter()
        .copied()
        .find(|c| c.as_str() == code)
        .unwrap_or_else(|| panic!("an unknown error code: {v}"));
    assert_eq!(code.status(), status, "{v}");
    code
}

/// A URL component decoded the way the API must: `None` when a `%` is not
/// followed by two hex digits or the bytes are not UTF-8 (the API answers
/// 400 then; it never takes a broken escape literally or substitutes U+FFFD).
fn strict_decode(raw: &str, plus_is_space: bool) -> Option<String> {
    let b = raw.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    });
    if !well_formed {
        return None;
    }
    let raw = if plus_is_space {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode_str(&raw)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// The expected page of `GET /v1/kv?<query>` over the fixed keys, when the
/// query is one the API accepts; `None` otherwise.
fn expected_page(query: Option<&str>) -> Option<Value> {
    let mut prefix = String::new();
    let mut limit = storage_host_cli::server::DEFAULT_LIST_LIMIT;
    let mut after = None;
    let mut seen = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (strict_decode(name, true)?, strict_decode(value, true)?);
        if seen.contains(&name) {
            return None;
        }
        match name.as_str() {
            "prefix" => prefix = value,
            "limit" => limit = value.parse().ok()?,
            "after" => after = Some(value),
            _ => return None,
        }
        seen.push(name);
    }
    if limit == 0
        || limit > storage_host_cli::server::MAX_LIST_LIMIT
        || storage_host_cli::server::check_key(&prefix, "prefix").is_err()
    {
        return None;
    }
    let keys: Vec<String> = fixed_keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .filter(|k| after.as_ref().is_none_or(|a| k > a))
        .collect();
    let page: Vec<String> = keys.iter().take(limit).cloned().collect();
    let mut v = json!({ "keys": page });
    if keys.len() > limit {
        v["next_after"] = json!(page.last());
    }
    Some(v)
}

/// The HTTP API under any method, path and body: a 2xx, or a 4xx with a JSON
/// error whose code matches its status (never a 5xx); keys in paths are
/// decoded exactly and stored, read and deleted as themselves; listings are
/// exactly the stored keys under the prefix; nothing changes the store but a
/// successful PUT or DELETE of its key; without the token only `/healthz`
/// succeeds.
///
/// Input: a flags byte (method, whether the path segment is percent-encoded
/// whole, a declared `Content-Length`, token none/right/wrong), a route byte,
/// then the path segment, 0xFF, the body.
pub fn check_http_request(data: &[u8]) {
    let [flags, route, rest @ ..] = data else {
        return;
    };
    let method = METHODS[*flags as usize & 7].clone();
    let encode = flags & 8 != 0;
    let declare_length = flags & 16 != 0;
    let auth = (flags >> 5) & 3;
    let (segment, body) = split(rest);
    let mut uri = ROUTES[*route as usize % ROUTES.len()].as_bytes().to_vec();
    if encode {
        for b in text(segment).bytes() {
            uri.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    } else {
        uri.extend_from_slice(segment);
    }
    let Ok(uri) = Uri::try_from(uri) else {
        // Not a request line a client could send.
        return;
    };
    let api = api();
    let router = if auth == 0 { &api.open } else { &api.guarded };
    let mut request = Request::builder().method(method.clone()).uri(uri.clone());
    match auth {
        2 => request = request.header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
        3 => request = request.header(header::AUTHORIZATION, "Bearer not-the-token"),
        _ => {}
    }
    if declare_length {
        request = request.header(header::CONTENT_LENGTH, body.len());
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .expect("a request from a valid URI");
    let path = uri.path().to_string();
    let authorized = auth == 0 || auth == 2;
    let head = method == Method::HEAD;
    runtime().block_on(async {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("the response body");
        let what = format!("{method} {uri} -> {status}");
        assert!(
            status.is_success() || status.is_client_error(),
            "{what}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let code = if status.is_client_error() && !head {
            assert_eq!(content_type, "application/json", "{what}");
            Some(error_code(status, &bytes))
        } else {
            None
        };
        if !authorized && path != "/healthz" {
            assert!(!status.is_success(), "{what} without the token");
        }

        let manager = api.host.manager();
        let mut want = fixed_keys();
        let kv_key = path.strip_prefix("/v1/kv/").map(|raw| {
            strict_decode(raw, false)
                .filter(|k| !k.is_empty() && storage_host_cli::server::check_key(k, "key").is_ok())
        });
        let mut changed = None;
        if authorized {
            match (kv_key, method.clone()) {
                (Some(None), Method::GET | Method::HEAD | Method::PUT | Method::DELETE) => {
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
                    if let Some(code) = code {
                        assert_eq!(code, ErrorCode::BadKey, "{what}");
                    }
                }
                (Some(Some(key)), Method::GET | Method::HEAD) => match fixed_value(&key) {
                    Some(v) => {
                        assert_eq!(status, StatusCode::OK, "{what}");
                        if !head {
                            assert_eq!(bytes, v, "{what}");
                        }
                    }
                    None => {
                        assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
                        if let Some(code) = code {
                            assert_eq!(code, ErrorCode::NotFound, "{what}");
                        }
                    }
                },
                (Some(Some(key)), Method::PUT) => {
                    if body.len() > MAX_BODY {
                        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}");
                    } else if status == StatusCode::NO_CONTENT {
                        assert_eq!(
                            manager.get(&key).await.expect("get"),
                            Some(body.to_vec()),
                            "{what}"
                        );
                        if !want.contains(&key) {
                            want.push(key.clone());
                            want.sort();
                        }
                        changed = Some(key);
                    } else {
                        // A backend may refuse a key or value the API takes.
                        assert_eq!(code, Some(ErrorCode::InvalidInput), "{what}");
                    }
                }
                (Some(Some(key)), Method::DELETE) => {
                    assert_eq!(status, StatusCode::NO_CONTENT, "{what}");
                    want.retain(|k| *k != key);
                    changed = Some(key);
                }
                (Some(_), _) => {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
                }
                (None, _) if path == "/v1/kv" && method == Method::GET => {
                    if status == StatusCode::OK {
                        let got: Value = serde_json::from_slice(&bytes).expect("a JSON page");
                        let expected = expected_page(uri.query())
                            .unwrap_or_else(|| panic!("{what}: a query the API should refuse"));
                        assert_eq!(got, expected, "{what}");
                    } else {
                        assert!(
                            matches!(code, Some(ErrorCode::BadRequest | ErrorCode::BadKey)),
                            "{what}"
                        );
                    }
                }
                _ => {}
            }
        }
        let keys = manager.list("").await.expect("list");
        assert_eq!(keys, want, "{what}: the store holds other keys");
        if let Some(key) = changed {
            // Back to the fixed contents for the next input.
            match fixed_value(&key) {
                Some(v) => manager.put(&key, v.to_vec()).await.expect("restore"),
                None => manager.delete(&key).await.expect("restore"),
            }
        }
    });
}
