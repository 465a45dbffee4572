//! Property checks for coverage-guided fuzzing.
//!
//! Each `check_*` function takes arbitrary bytes, drives one piece of the
//! host's input handling with them and panics when a property is violated.
//! The cargo-fuzz targets in `fuzz/` are one-line calls to these functions,
//! and `tests/fuzz_corpus.rs` replays the saved corpora through them on stable
//! Rust, so every input fuzzing kept (crashes found included) keeps being
//! checked in CI.
//!
//! What each check asserts is in its doc comment (and, as a table, in
//! `fuzz/README.md`, with what fuzzing found).
//!
//! Inputs that hold two strings separate them with a 0xFF byte, which never
//! occurs in UTF-8; strings are decoded lossily, so every input is usable.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use storage_host_cli::server::Host;
use storage_host_cli::server::config::{HostConfig, Secret};
use storage_host_cli::server::error::ErrorCode;
use storage_plugin_api::ffi::PluginModRef;
use storage_plugin_api::{Backend, ErrorKind, module_of};
use tower::ServiceExt;

/// A property check: panics when `data` violates the property.
pub type Check = fn(data: &[u8]);

/// The checks by fuzz target name (also the name of its corpus directory,
/// `fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Check)] = &[
    ("plugin_config", check_plugin_config),
    ("supabase_key", check_supabase_key),
    ("redis_key", check_redis_key),
    ("http_request", check_http_request),
];

/// `data` split at its first 0xFF byte; without one, all of it and nothing.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A failed check panics while holding a lock; the next input still runs.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime the checks drive async code with.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

// ---------------------------------------------------------------------------
// plugin_config

fn plugin_modules() -> [PluginModRef; 3] {
    [
        module_of::<storage_local::LocalPlugin>(),
        module_of::<storage_supabase::SupabasePlugin>(),
        module_of::<storage_redis::RedisPlugin>(),
    ]
}

/// What `validate_config` of `module` answers for `config`: `None` when accepted.
fn validate(module: PluginModRef, config: &str) -> Option<(ErrorKind, String)> {
    (module.validate_config())(config.into())
        .into_result()
        .err()
        .map(|e| (e.kind(), e.message().to_string()))
}

/// Any text given as configuration to any shipped plugin is accepted, or
/// refused as invalid configuration with a message that names the plugin;
/// never a panic (which the plugin boundary would turn into `Panicked`). The
/// message shows none of the secrets the configuration holds.
pub fn check_plugin_config(data: &[u8]) {
    let config = text(data);
    for module in plugin_modules() {
        let name = module.name().as_str();
        if let Some((kind, message)) = validate(module, &config) {
            assert_eq!(
                kind,
                ErrorKind::InvalidConfig,
                "{name}: {message} (config {config:?})"
            );
            assert!(
                message.starts_with(&format!("{name}: "))
                    || message.starts_with(&format!("plugin '{name}': ")),
                "{name}: the message does not start by naming the plugin: {message:?} (config {config:?})"
            );
        }
    }
    check_config_secrets(&config);
}

/// Replaces each ASCII letter and digit by the next one of its kind (`z` by
/// `a`, `9` by `0`), leaving `%XX` escapes alone: every check a plugin makes
/// on a secret (empty, spaces, non-ASCII, valid escapes) answers the same,
/// but the text is different wherever it has a letter or digit.
fn rotate(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escape = 0;
    for c in s.chars() {
        if escape > 0 {
            escape -= 1;
            out.push(c);
            continue;
        }
        out.push(match c {
            '%' => {
                escape = 2;
                c
            }
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            'a'..='y' | 'A'..='Y' | '0'..='8' => (c as u8 + 1) as char,
            c => c,
        });
    }
    out
}

/// The URL normalized, the same with its secrets rotated, the password (as
/// written and decoded), and the values of `pass`/`password` query
/// parameters (which only the `redis` plugin reads as secrets, for
/// `redis+unix://` URLs); `None` when it holds none of these.
#[allow(clippy::type_complexity)]
fn url_variants(url: &str) -> Option<(String, String, Vec<String>, Vec<String>)> {
    let parsed = url::Url::parse(url).ok()?;
    let mut plain = parsed.clone();
    let mut rotated = parsed.clone();
    let mut password = Vec::new();
    let mut params = Vec::new();
    if let Some(pw) = parsed.password() {
        rotated.set_password(Some(&rotate(pw))).ok()?;
        password.push(pw.to_string());
        if let Ok(decoded) = percent_decode_str(pw).decode_utf8() {
            password.push(decoded.into_owned());
        }
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                if k == "pass" || k == "password" {
                    params.push(v.to_string());
                    (k.into_owned(), rotate(&v))
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        plain
            .query_pairs_mut()
            .clear()
            .extend_pairs(parsed.query_pairs());
        rotated.query_pairs_mut().clear().extend_pairs(pairs);
        // Also as the normalized URL writes them.
        let encoded: Vec<String> = plain
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| *k == "pass" || *k == "password")
            .map(|(_, v)| v.to_string())
            .collect();
        params.extend(encoded);
    }
    (!password.is_empty() || !params.is_empty())
        .then(|| (plain.to_string(), rotated.to_string(), password, params))
}

/// A secret never shows in a message: whatever a configuration's secrets
/// (API keys, URL passwords) are, the message does not hold one that the
/// same configuration with other secrets of the same shape does not also
/// show (as ordinary text: a one-letter password is in many words).
fn check_config_secrets(config: &str) {
    let Ok(Value::Object(plain)) = serde_json::from_str::<Value>(config) else {
        return;
    };
    let mut plain: Map<String, Value> = plain;
    let mut rotated = plain.clone();
    let mut secrets = Vec::new();
    let mut redis_secrets = Vec::new();
    for field in ["anon_key", "service_role_key"] {
        if let Some(Value::String(s)) = rotated.get_mut(field) {
            secrets.push(s.clone());
            *s = rotate(s);
        }
    }
    if let Some(Value::String(url)) = plain.get("url")
        && let Some((normal, other, password, params)) = url_variants(url)
    {
        secrets.extend(password);
        redis_secrets.extend(params);
        plain.insert("url".into(), Value::String(normal));
        rotated.insert("url".into(), Value::String(other));
    }
    secrets.retain(|s| !s.is_empty() && rotate(s) != *s);
    redis_secrets.retain(|s| !s.is_empty() && rotate(s) != *s);
    if secrets.is_empty() && redis_secrets.is_empty() {
        return;
    }
    let plain = Value::Object(plain).to_string();
    let rotated = Value::Object(rotated).to_string();
    for module in plugin_modules() {
        let Some((_, b)) = validate(module, &rotated) else {
            continue;
        };
        let name = module.name();
        let extra = if name.as_str() == "redis" {
            &redis_secrets[..]
        } else {
            &[]
        };
        // The configuration as the parser writes it back, and as written (a
        // URL the parser reads leniently, e.g. `http:///u:p@h`). The latter
        // is not the same shape as the rotated one, so a secret found in its
        // message counts only when the text holds it nowhere else.
        for (text, as_written) in [(plain.as_str(), false), (config, true)] {
            let Some((_, a)) = validate(module, text) else {
                continue;
            };
            for s in secrets.iter().chain(extra) {
                if as_written && text.matches(s.as_str()).count() != 1 {
                    continue;
                }
                assert!(
                    !a.contains(s.as_str()) || b.contains(s.as_str()),
                    "{name}: the message shows the secret {s:?}: {a:?} (config {text:?})"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// supabase_key

/// One request the fake PostgREST received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The request target exactly as sent: path and query.
    target: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct RestState {
    /// The table: key -> value.
    table: BTreeMap<String, Vec<u8>>,
    seen: Vec<Seen>,
}

/// Rows per response: one, so a listing of a few keys takes several pages
/// and each page after the first carries a `key=gt.<last key>` filter.
const PAGE_CAP: usize = 1;

/// A fake PostgREST over an in-memory table, serving the plugin's requests
/// (HTTP/1.1 with keep-alive) and recording each one.
struct FakeRest {
    state: Arc<Mutex<RestState>>,
    backend: storage_supabase::SupabaseBackend,
}

fn fake_rest() -> &'static FakeRest {
    static FAKE: OnceLock<FakeRest> = OnceLock::new();
    FAKE.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(Mutex::new(RestState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &state);
                });
            }
        });
        let config: storage_supabase::SupabaseConfig = serde_json::from_value(json!({
            "url": format!("http://{addr}"),
            "anon_key": "fuzz-anon-key",
            "timeout": 10,
            "max_retries": 0,
        }))
        .expect("a supabase config");
        let backend = storage_supabase::SupabaseBackend::new(&config).expect("a supabase backend");
        FakeRest { state, backend }
    })
}

fn serve_connection(stream: TcpStream, state: &Mutex<RestState>) -> std::io::Result<()> {
    // One write per answer, sent at once (no Nagle delay before the client's ACK).
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut length = 0;
        let mut prefer = String::new();
        loop {
            let mut h = Vec::new();
            reader.read_until(b'\n', &mut h)?;
            let h = String::from_utf8_lossy(&h);
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "prefer" => prefer = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let seen = Seen {
            method,
            target,
            body,
        };
        let (status, headers, body) = {
            let mut s = lock(state);
            let answer = answer(&mut s.table, &seen, &prefer);
            s.seen.push(seen);
            answer
        };
        let mut head = format!(
            "HTTP/1.1 {status} Fake\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        writer.write_all(&out)?;
        writer.flush()?;
    }
}

/// The parameters of a query string as PostgREST reads them: split on `&`,
/// then on the first `=`, each side percent-decoded.
fn query_params(query: &str) -> Result<Vec<(String, String)>, String> {
    if query.is_empty() {
        return Ok(Vec::new());
    }
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(Cow::into_owned)
                    .map_err(|e| format!("{s:?} does not decode: {e}"))
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// A PostgreSQL `LIKE` pattern (escape `\`) as tokens; `Err` when PostgreSQL
/// would refuse it (it ends with the escape character).
enum Like {
    Any,
    One,
    Lit(char),
}

fn like_tokens(pattern: &str) -> Result<Vec<Like>, String> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '%' => Like::Any,
            '_' => Like::One,
            '\\' => Like::Lit(chars.next().ok_or_else(|| {
                format!("LIKE pattern must not end with escape character: {pattern:?}")
            })?),
            c => Like::Lit(c),
        });
    }
    Ok(out)
}

/// Whether `s` matches the LIKE pattern (iterative wildcard matching).
fn like_matches(p: &[Like], s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(Like::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(Like::One) => {
                pi += 1;
                si += 1;
            }
            Some(Like::Lit(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| matches!(t, Like::Any))
}

/// The `like.` filter of a PostgREST query as PostgreSQL gets it: PostgREST
/// turns every `*` into `%`.
fn postgrest_like(value: &str) -> Result<Vec<Like>, String> {
    like_tokens(&value.replace('*', "%"))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let h = s.strip_prefix("\\x")?;
    if h.len() % 2 != 0 || !h.is_ascii() {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
        .collect()
}

/// What the fake PostgREST answers: status, extra headers, body.
fn answer(
    table: &mut BTreeMap<String, Vec<u8>>,
    req: &Seen,
    prefer: &str,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let refuse = |why: String| {
        let body = json!({"code": "PGRST100", "message": why}).to_string();
        (400, Vec::new(), body.into_bytes())
    };
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if path != "/rest/v1/storage" {
        return refuse(format!("path {path}"));
    }
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let mut select = None;
    let mut filters: Vec<(String, String)> = Vec::new();
    for (name, value) in &params {
        match name.as_str() {
            "select" => select = Some(value.as_str()),
            "order" | "limit" => {}
            "key" => match value.split_once('.') {
                Some((op, v)) => filters.push((op.to_string(), v.to_string())),
                None => return refuse(format!("filter {value:?}")),
            },
            other => return refuse(format!("unexpected parameter {other:?}")),
        }
    }
    let mut like = Vec::new();
    for (op, v) in &filters {
        if op == "like" {
            match postgrest_like(v) {
                Ok(p) => like.push(p),
                Err(e) => return refuse(e),
            }
        }
    }
    let keep = |k: &str| {
        filters.iter().all(|(op, v)| match op.as_str() {
            "eq" => k == v,
            "gt" => k > v.as_str(),
            _ => true,
        }) && like.iter().all(|p| like_matches(p, k))
    };
    let matching: Vec<String> = table.keys().filter(|k| keep(k)).cloned().collect();
    match req.method.as_str() {
        "GET" if select == Some("value") => {
            let rows: Vec<Value> = matching
                .iter()
                .map(|k| json!({"value": hex(&table[k])}))
                .collect();
            (200, Vec::new(), Value::Array(rows).to_string().into_bytes())
        }
        "GET" if select == Some("key") => {
            let total = matching.len();
            let page: Vec<Value> = matching
                .iter()
                .take(PAGE_CAP)
                .map(|k| json!({"key": k}))
                .collect();
            let mut headers = Vec::new();
            if prefer.contains("count=exact") {
                let range = if page.is_empty() {
                    format!("*/{total}")
                } else {
                    format!("0-{}/{total}", page.len() - 1)
                };
                headers.push(("content-range", range));
            }
            (200, headers, Value::Array(page).to_string().into_bytes())
        }
        "DELETE" => {
            for k in &matching {
                table.remove(k);
            }
            let range = format!("*/{}", matching.len());
            (204, vec![("content-range", range)], Vec::new())
        }
        "POST" => {
            let row: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => return refuse(format!("body: {e}")),
            };
            match (row["key"].as_str(), row["value"].as_str().and_then(unhex)) {
                (Some(k), Some(v)) => {
                    table.insert(k.to_string(), v);
                    (201, Vec::new(), Vec::new())
                }
                _ => refuse(format!("row {row}")),
            }
        }
        m => refuse(format!("method {m}")),
    }
}

/// Checks the shape of one request the plugin sent and returns its parameters.
fn request_params(seen: &Seen, method: &str) -> Vec<(String, String)> {
    assert_eq!(seen.method, method, "{seen:?}");
    let (path, query) = seen.target.split_once('?').unwrap_or((&seen.target, ""));
    assert_eq!(path, "/rest/v1/storage", "{seen:?}");
    // Nothing that could end a value, start a parameter, or be read as a
    // space: unreserved characters and %XX escapes only, beside the `&` and
    // `=` the plugin puts between parameters.
    let bytes = query.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_alphanumeric() || b"-._~&=".contains(&b) || b == b'%';
        assert!(ok, "byte {:?} in the query {query:?}", b as char);
        if b == b'%' {
            assert!(
                bytes.len() > i + 2
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit(),
                "a bad escape in {query:?}"
            );
        }
    }
    query_params(query).unwrap_or_else(|e| panic!("{e}: {seen:?}"))
}

fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Keys and values reach PostgREST exactly: each request the `supabase`
/// backend sends for a key (or prefix) has exactly the expected parameters,
/// its key filter decodes to exactly that key, and the result is what a
/// database holding the table would answer.
///
/// Input: one byte choosing the operation (bits 0-1: get, put, delete, list;
/// bit 2: the key exists; for a listing, bit 3: one page, bit 4: after the
/// other key, bits 5-7: page size - 1), then the key (or prefix), 0xFF, and a
/// value (also another key in the table).
pub fn check_supabase_key(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = split(rest);
    let key = text(key).into_owned();
    let other = text(value).into_owned();
    let fake = fake_rest();
    let mut table = BTreeMap::new();
    table.insert(other.clone(), vec![2]);
    table.insert(format!("{key}{other}"), vec![3]);
    if op & 4 != 0 {
        table.insert(key.clone(), value.to_vec());
    }
    {
        let mut s = lock(&fake.state);
        s.table = table.clone();
        s.seen.clear();
    }
    let backend = &fake.backend;
    let mut valid = !key.contains('\0') && key.len() <= storage_supabase::MAX_KEY_BYTES;
    let rt = runtime();
    // A listing: of every key (`list`), or one page (`list_page`) of 1 to 8
    // keys, from the start or after the other key. No key can hold a NUL, so
    // the plugin cuts the cursor there (the keys after it are the same); a
    // cursor longer than any key is refused like such a key.
    let paged = op & 8 != 0;
    let cursor_given = (op & 16 != 0).then(|| other.clone());
    let cursor = cursor_given
        .as_ref()
        .map(|c| c.split('\0').next().unwrap_or_default().to_owned());
    if paged
        && op % 4 == 3
        && cursor
            .as_ref()
            .is_some_and(|c| c.len() > storage_supabase::MAX_KEY_BYTES)
    {
        valid = false;
    }
    let limit = 1 + (op >> 5) as usize;
    let (result, expected): (Result<Value, _>, Value) = match op % 4 {
        0 => (
            rt.block_on(backend.get(&key)).map(|v| json!(v)),
            json!(table.get(&key)),
        ),
        1 => (
            rt.block_on(backend.put(&key, value.to_vec()))
                .map(|()| Value::Null),
            Value::Null,
        ),
        2 => (
            rt.block_on(backend.delete(&key)).map(|()| Value::Null),
            Value::Null,
        ),
        _ if paged => {
            let under: Vec<&String> = table
                .keys()
                .filter(|k| k.starts_with(key.as_str()))
                .filter(|k| cursor.as_ref().is_none_or(|c| *k > c))
                .collect();
            (
                rt.block_on(backend.list_page(&key, cursor_given.as_deref(), limit))
                    .map(|p| json!({"keys": p.keys, "more": p.more})),
                json!({"keys": &under[..under.len().min(limit)], "more": under.len() > limit}),
            )
        }
        _ => (
            rt.block_on(backend.list(&key)).map(|v| json!(v)),
            json!(
                table
                    .keys()
                    .filter(|k| k.starts_with(key.as_str()))
                    .collect::<Vec<_>>()
            ),
        ),
    };
    let (after, seen) = {
        let s = lock(&fake.state);
        (s.table.clone(), s.seen.clone())
    };
    if !valid {
        // Refused before any I/O.
        let e = result.expect_err("an invalid key is refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            seen.is_empty(),
            "requests sent for an invalid key: {seen:?}"
        );
        return;
    }
    let got = result.unwrap_or_else(|e| panic!("op {} on {key:?}: {e}", op % 4));
    assert_eq!(got, expected, "op {} on {key:?}", op % 4);
    let eq = format!("eq.{key}");
    match op % 4 {
        0 => {
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert_eq!(
                request_params(&seen[0], "GET"),
                params(&[("select", "value"), ("key", &eq)])
            );
            assert_eq!(after, table);
        }
        1 => {
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(request_params(&seen[0], "POST").is_empty());
            let row: Value = serde_json::from_slice(&seen[0].body).expect("a JSON body");
            let mut fields: Vec<&String> = row.as_object().expect("an object").keys().collect();
            fields.sort();
            assert_eq!(fields, ["key", "updated_at", "value"], "{row}");
            assert_eq!(row["key"].as_str(), Some(key.as_str()));
            assert_eq!(row["value"].as_str().and_then(unhex), Some(value.to_vec()));
            let mut want = table;
            want.insert(key, value.to_vec());
            assert_eq!(after, want);
        }
        2 => {
            let existed = table.contains_key(&key);
            assert_eq!(seen.len(), if existed { 1 } else { 2 }, "{seen:?}");
            assert_eq!(request_params(&seen[0], "DELETE"), params(&[("key", &eq)]));
            if !existed {
                // Nothing deleted: the plugin looks for the row RLS may hide.
                assert_eq!(
                    request_params(&seen[1], "GET"),
                    params(&[("select", "key"), ("key", &eq)])
                );
            }
            let mut want = table;
            want.remove(&key);
            assert_eq!(after, want);
        }
        _ => {
            let first = seen.first().expect("a request");
            let like = (!key.is_empty()).then(|| {
                let (_, v) = request_params(first, "GET")
                    .into_iter()
                    .find(|(n, v)| n == "key" && v.starts_with("like."))
                    .expect("a like filter for a non-empty prefix");
                let pattern = v["like.".len()..].to_string();
                check_like(&key, &pattern, &other);
                pattern
            });
            // The rows the database returns for that filter, one per response.
            let rows: Vec<&String> = table
                .keys()
                .filter(|k| {
                    like.as_ref()
                        .is_none_or(|p| postgrest_like(p).is_ok_and(|t| like_matches(&t, k)))
                })
                .filter(|k| !paged || cursor.as_ref().is_none_or(|c| *k > c))
                .collect();
            if paged {
                // Stops once it has one key more than the page.
                assert!(seen.len() <= rows.len() + 1, "{seen:?}");
            } else {
                assert_eq!(seen.len(), rows.len().max(1), "{seen:?}");
            }
            for (i, s) in seen.iter().enumerate() {
                let mut got = request_params(s, "GET");
                let mut want = params(&[("select", "key"), ("order", "key.asc")]);
                if paged {
                    // As many rows as the page still needs, at most 1000.
                    let (name, rows) = got.remove(2);
                    assert_eq!(name, "limit", "{s:?}");
                    let rows: usize = rows.parse().expect("a row count");
                    assert!(
                        (1..=limit + 1).contains(&rows),
                        "limit={rows} for a page of {limit}"
                    );
                } else {
                    want.push(("limit".into(), "1000".into()));
                }
                if let Some(p) = &like {
                    want.push(("key".into(), format!("like.{p}")));
                }
                // Each request starts after the cursor, then after the last
                // key of the response before.
                let start = if i > 0 {
                    Some(rows[i - 1])
                } else {
                    cursor.as_ref().filter(|_| paged)
                };
                if let Some(k) = start {
                    want.push(("key".into(), format!("gt.{k}")));
                }
                assert_eq!(got, want, "request {i}");
            }
            assert_eq!(after, table);
        }
    }
}

/// The `like` filter sent for `prefix` is one PostgreSQL accepts and matches
/// every key that starts with the prefix, and, when the prefix has no `*`
/// (which PostgREST cannot express literally), only those.
fn check_like(prefix: &str, pattern: &str, other: &str) {
    let p = postgrest_like(pattern).unwrap_or_else(|e| panic!("prefix {prefix:?}: {e}"));
    for suffix in ["", "x", "%", "_", "\\", "*", other] {
        let k = format!("{prefix}{suffix}");
        assert!(
            like_matches(&p, &k),
            "the pattern {pattern:?} for the prefix {prefix:?} misses {k:?}"
        );
    }
    if !prefix.contains('*') {
        assert_eq!(
            like_matches(&p, other),
            other.starts_with(prefix),
            "the pattern {pattern:?} for the prefix {prefix:?} on {other:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// redis_key

/// Redis's glob matching, `stringmatchlen` of util.c (case-sensitive), on bytes.
pub fn redis_glob(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    glob_impl(pattern, string, &mut skip_longer, 0)
}

fn glob_impl(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    // Each arm consumes what it matched of the pattern and the string.
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if glob_impl(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                p = &p[1..];
                s = &s[1..];
            }
            b'[' => {
                let mut q = &p[1..];
                let not = q.first() == Some(&b'^');
                if not {
                    q = &q[1..];
                }
                let mut matched = false;
                loop {
                    if q.len() >= 2 && q[0] == b'\\' {
                        matched |= q[1] == s[0];
                        q = &q[2..];
                    } else if q.first() == Some(&b']') {
                        q = &q[1..];
                        break;
                    } else if q.is_empty() {
                        // An unterminated class ends with the pattern.
                        break;
                    } else if q.len() >= 3 && q[1] == b'-' {
                        let (start, end) = (q[0].min(q[2]), q[0].max(q[2]));
                        matched |= (start..=end).contains(&s[0]);
                        q = &q[3..];
                    } else {
                        matched |= q[0] == s[0];
                        q = &q[1..];
                    }
                }
                if matched == not {
                    return false;
                }
                p = q;
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                if p[1] != s[0] {
                    return false;
                }
                p = &p[2..];
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                p = &p[1..];
                s = &s[1..];
            }
        }
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

/// Whether `SCAN ... MATCH pattern` returns `key`: SCAN skips matching
/// when the pattern is exactly `*` (`scanGenericCommand`), so that one also
/// returns the empty key, which `stringmatchlen` alone would not match.
pub fn scan_matches(pattern: &[u8], key: &[u8]) -> bool {
    pattern == b"*" || redis_glob(pattern, key)
}

/// The arguments of a RESP array of bulk strings (what a client sends).
fn resp_args(mut b: &[u8]) -> Vec<Vec<u8>> {
    fn line(b: &mut &[u8], lead: u8) -> usize {
        assert_eq!(b.first(), Some(&lead), "RESP: expected {:?}", lead as char);
        let end = b.windows(2).position(|w| w == b"\r\n").expect("RESP: CRLF");
        let n = std::str::from_utf8(&b[1..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("RESP: a length");
        *b = &b[end + 2..];
        n
    }
    let count = line(&mut b, b'*');
    let mut args = Vec::new();
    for _ in 0..count {
        let len = line(&mut b, b'$');
        args.push(b[..len].to_vec());
        assert_eq!(&b[len..len + 2], b"\r\n", "RESP: CRLF after a bulk string");
        b = &b[len + 2..];
    }
    assert!(b.is_empty(), "RESP: bytes after the command");
    args
}

/// The Redis plugin's keys: under Redis's own glob rules, the `SCAN MATCH`
/// pattern of a listing selects exactly the Redis keys of the namespace that
/// start with the prefix, whatever glob characters either holds; a Redis key
/// maps back to a host key only when it is one of those, and then to exactly
/// the key that was stored; commands carry the key byte for byte.
///
/// Input: namespace, 0xFF, prefix, 0xFF, key (the key's raw bytes also serve
/// as an arbitrary Redis key, possibly foreign, possibly not UTF-8).
pub fn check_redis_key(data: &[u8]) {
    let (ns, rest) = split(data);
    let (prefix, raw) = split(rest);
    let (ns, prefix, key) = (text(ns), text(prefix), text(raw));
    let n = storage_redis::Namespace::new(ns.as_ref());
    assert_eq!(n.prefix(), ns);
    let pattern = n.match_pattern(&prefix);
    let redis_key = n.redis_key(&key);
    assert_eq!(redis_key, format!("{ns}{key}"));

    // The host key stored, and any Redis key at all.
    let under = key.starts_with(prefix.as_ref());
    assert_eq!(
        scan_matches(pattern.as_bytes(), redis_key.as_bytes()),
        under,
        "pattern {pattern:?} on {redis_key:?} (namespace {ns:?}, prefix {prefix:?})"
    );
    let full_prefix = format!("{ns}{prefix}");
    assert_eq!(
        scan_matches(pattern.as_bytes(), raw),
        raw.starts_with(full_prefix.as_bytes()),
        "pattern {pattern:?} on the Redis key {:?}",
        String::from_utf8_lossy(raw)
    );

    assert_eq!(
        n.host_key(redis_key.as_bytes(), &prefix),
        under.then_some(key.as_ref())
    );
    match n.host_key(raw, &prefix) {
        Some(k) => {
            assert_eq!(n.redis_key(k).as_bytes(), raw);
            assert!(k.starts_with(prefix.as_ref()));
        }
        None => assert!(
            !raw.starts_with(full_prefix.as_bytes()) || std::str::from_utf8(raw).is_err(),
            "{:?} is under the namespace and prefix but was not listed",
            String::from_utf8_lossy(raw)
        ),
    }

    // The commands the backend sends carry the key and the pattern unchanged.
    let mut get = redis::cmd("GET");
    get.arg(&redis_key);
    assert_eq!(
        resp_args(&get.get_packed_command()),
        [b"GET".to_vec(), redis_key.as_bytes().to_vec()]
    );
    let mut set = redis::cmd("SET");
    set.arg(&redis_key).arg(raw);
    assert_eq!(
        resp_args(&set.get_packed_command()),
        [b"SET".to_vec(), redis_key.as_bytes().to_vec(), raw.to_vec()]
    );
    let mut scan = redis::cmd("SCAN");
    scan.arg(0u64).arg("MATCH").arg(&pattern);
    assert_eq!(
        resp_args(&scan.get_packed_command())[3],
        pattern.as_bytes().to_vec()
    );
}

// ---------------------------------------------------------------------------
// http_request

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_glob_follows_redis() {
        for (p, s, want) in [
            ("*", "", false),
            ("a*", "a", true),
            ("a**", "a", true),
            ("a*", "abc", true),
            ("a*c", "abc", true),
            ("a*d", "abc", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("[\\]]", "]", true),
            ("[", "[", false),
            ("x\\", "x\\", true),
        ] {
            assert_eq!(
                redis_glob(p.as_bytes(), s.as_bytes()),
                want,
                "{p:?} on {s:?}"
            );
        }
    }

    #[test]
    fn like_patterns() {
        let like = |p: &str, s: &str| like_matches(&like_tokens(p).unwrap(), s);
        assert!(like("a%", "abc"));
        assert!(like("a\\%%", "a%c"));
        assert!(!like("a\\%%", "abc"));
        assert!(like("a_c", "abc"));
        assert!(like("%b%", "abc"));
        assert!(!like("a", "ab"));
        assert!(like_tokens("a\\").is_err());
    }

    #[test]
    fn rotate_keeps_the_shape() {
        assert_eq!(rotate("az AZ 09 %4f-"), "ba BA 10 %4f-");
    }
}
