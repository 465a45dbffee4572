//! `supabase_key`: keys through the Supabase plugin against a fake
//! PostgREST that checks every request's encoding.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};

use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use storage_plugin_api::{Backend, ErrorKind};

use crate::{lock, runtime, split, text};

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
pub(crate) enum Like {
    Any,
    One,
    Lit(char),
}

pub(crate) fn like_tokens(pattern: &str) -> Result<Vec<Like>, String> {
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
pub(crate) fn like_matches(p: &[Like], s: &str) -> bool {
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
