//! What can go wrong talking to Supabase, worded for the person who has to
//! fix it, and mapped to the [`ErrorKind`] the host routes on.
//!
//! Every message names the operation, the key, the table and (for HTTP
//! answers) the status and PostgREST's error code, then says what to do. No
//! message ever contains an API key: the keys travel only in headers, and any
//! text taken from a response is scrubbed of the key before it is kept.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use storage_plugin_api::{Error, ErrorKind};

use crate::config::Secret;

/// Where the plan for the table lives, for messages that tell users to create it.
pub(crate) const SQL_HINT: &str =
    "plugins/supabase/sql/storage.sql (shown in the README's Supabase section)";

/// The operation a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get`.
    Get,
    /// `put`.
    Put,
    /// `delete`.
    Delete,
    /// `list`.
    List,
}

impl Op {
    /// Lowercase name, as in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as messages show it: quoted and escaped, cut short when long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef(Box<str>);

impl KeyRef {
    /// Renders `key` for a message, as every message shows a key
    /// ([`storage_plugin_api::ShownKey`]).
    pub fn new(key: &str) -> Self {
        KeyRef(storage_plugin_api::ShownKey::new(key).to_string().into())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The operation, key and table an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// The operation.
    pub op: Op,
    /// The key (the prefix for `list`).
    pub key: KeyRef,
    /// `schema.table` (shared: every error of a backend names the same one).
    pub table: Arc<str>,
}

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::List => write!(f, "list prefix {} in table {}", self.key, self.table),
            op => write!(f, "{op} {} in table {}", self.key, self.table),
        }
    }
}

/// An error of the `supabase` backend. Converts into the plugin API's
/// [`Error`] with the matching [`ErrorKind`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SupabaseError {
    /// The key is not accepted by the API (401): wrong project, typo, expired JWT.
    #[error(
        "supabase: {ctx}: the API rejected `{key_name}` (HTTP {status}{code}): {detail}; check that it is this project's current key (API settings) and has not expired"
    )]
    Unauthorized {
        /// What was being done.
        ctx: Ctx,
        /// `anon_key` or `service_role_key`.
        key_name: &'static str,
        /// HTTP status.
        status: u16,
        /// `, <PostgREST code>` or empty.
        code: String,
        /// PostgREST's message.
        detail: String,
    },
    /// Row-level security (or a missing grant) refused the operation.
    #[error(
        "supabase: {ctx}: row-level security refused it for `{key_name}` (HTTP {status}{code}): {detail}; configure `service_role_key`, or add a policy allowing it for this role"
    )]
    Forbidden {
        /// What was being done.
        ctx: Ctx,
        /// `anon_key` or `service_role_key`.
        key_name: &'static str,
        /// HTTP status.
        status: u16,
        /// `, <PostgREST code>` or empty.
        code: String,
        /// PostgREST's message.
        detail: String,
    },
    /// A delete that answered 204 but removed nothing while the row is still there.
    #[error(
        "supabase: {ctx}: row-level security kept the row (the API answered 204 with 0 rows deleted, and the row is still visible to `{key_name}`); configure `service_role_key`, or add a delete policy for this role"
    )]
    DeleteBlocked {
        /// What was being done.
        ctx: Ctx,
        /// `anon_key` or `service_role_key`.
        key_name: &'static str,
    },
    /// The table does not exist, or the API cannot see it.
    #[error(
        "supabase: {ctx}: table {} does not exist or is not visible to the API (HTTP 404{code}: {detail}); create it with the SQL in {SQL_HINT}, or fix `schema` / `table_name`",
        .ctx.table
    )]
    TableMissing {
        /// What was being done (`ctx.table` is the missing table).
        ctx: Ctx,
        /// `, <PostgREST code>`.
        code: String,
        /// PostgREST's message.
        detail: String,
    },
    /// The schema is not one the API exposes (406 PGRST106).
    #[error(
        "supabase: {ctx}: schema '{schema}' is not exposed by the API (HTTP 406, PGRST106: {detail}); add it to the exposed schemas in the project's API settings, or use `schema: \"public\"`"
    )]
    SchemaNotExposed {
        /// What was being done.
        ctx: Ctx,
        /// The configured schema.
        schema: String,
        /// PostgREST's message.
        detail: String,
    },
    /// A 404 that is not about the table: the URL does not lead to the REST API.
    #[error(
        "supabase: {ctx}: {url} answered HTTP 404 ({detail}); check that `url` is the project URL (https://<project>.supabase.co)"
    )]
    NoApi {
        /// What was being done.
        ctx: Ctx,
        /// The base URL requests go to.
        url: String,
        /// What the server said.
        detail: String,
    },
    /// A retryable HTTP status, still there after every retry (or 429).
    #[error(
        "supabase: {ctx}: the service is unavailable (HTTP {status}{code} after {attempts} attempt(s)): {detail}; it is down or overloaded, try again later"
    )]
    Unavailable {
        /// What was being done.
        ctx: Ctx,
        /// HTTP status of the last attempt.
        status: u16,
        /// `, <PostgREST code>` or empty.
        code: String,
        /// Attempts made.
        attempts: u32,
        /// What the server said.
        detail: String,
    },
    /// Every attempt ran out of time.
    #[error(
        "supabase: {ctx}: no answer within the {timeout:?} `timeout` ({attempts} attempt(s)); the service is slow or unreachable, try again later or raise `timeout`"
    )]
    TimedOut {
        /// What was being done.
        ctx: Ctx,
        /// The per-attempt bound.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The server could not be reached (DNS, refused, reset, TLS).
    #[error(
        "supabase: {ctx}: cannot reach {url} ({cause}; {attempts} attempt(s)); check `url` and the network"
    )]
    Unreachable {
        /// What was being done.
        ctx: Ctx,
        /// The base URL requests go to.
        url: String,
        /// The transport error, without URL.
        cause: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A key this backend cannot store.
    #[error("supabase: {ctx}: invalid key: {reason}")]
    InvalidKey {
        /// What was being done.
        ctx: Ctx,
        /// Why.
        reason: String,
    },
    /// A value larger than [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES); nothing was sent.
    #[error(
        "supabase: {ctx}: refused before sending: the value is {len} bytes and this backend takes values of at most {max} bytes (16 MiB; it travels as hex, twice its size); keep values this large in another backend, or split them over several keys",
        max = crate::MAX_VALUE_BYTES
    )]
    ValueTooLarge {
        /// What was being done.
        ctx: Ctx,
        /// The value's size in bytes.
        len: usize,
    },
    /// Any other HTTP error status.
    #[error("supabase: {ctx}: the API answered HTTP {status}{code}: {detail}")]
    Rejected {
        /// What was being done.
        ctx: Ctx,
        /// How the host should treat it.
        kind: ErrorKind,
        /// HTTP status.
        status: u16,
        /// `, <PostgREST code>` or empty.
        code: String,
        /// What the server said.
        detail: String,
    },
    /// A success status with a body this plugin cannot read.
    #[error("supabase: {ctx}: unexpected answer from the API: {detail}")]
    BadResponse {
        /// What was being done.
        ctx: Ctx,
        /// What is wrong with it.
        detail: String,
    },
    /// The plugin's runtime could not run the operation.
    #[error("supabase: {0}")]
    Runtime(String),
}

impl SupabaseError {
    /// How the host should treat this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SupabaseError::Unauthorized { .. }
            | SupabaseError::Forbidden { .. }
            | SupabaseError::DeleteBlocked { .. } => ErrorKind::PermissionDenied,
            SupabaseError::TableMissing { .. } | SupabaseError::NoApi { .. } => ErrorKind::NotFound,
            SupabaseError::SchemaNotExposed { .. } => ErrorKind::InvalidConfig,
            SupabaseError::Unavailable { .. }
            | SupabaseError::TimedOut { .. }
            | SupabaseError::Unreachable { .. }
            | SupabaseError::Runtime(_) => ErrorKind::Unavailable,
            SupabaseError::InvalidKey { .. } | SupabaseError::ValueTooLarge { .. } => {
                ErrorKind::InvalidInput
            }
            SupabaseError::Rejected { kind, .. } => *kind,
            SupabaseError::BadResponse { .. } => ErrorKind::Other,
        }
    }
}

impl From<SupabaseError> for Error {
    fn from(e: SupabaseError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

/// PostgREST's error body: `{"code", "message", "details", "hint"}`.
#[derive(Debug, Default, Deserialize)]
struct PgrstError {
    code: Option<String>,
    message: Option<String>,
    details: Option<serde_json::Value>,
    hint: Option<serde_json::Value>,
}

/// An HTTP error answer, read for messages.
pub(crate) struct ErrorBody {
    /// PostgREST's error code (`42P01`, `PGRST106`, ...), when the body has one.
    pub code: Option<String>,
    /// A one-line description: message, details and hint, or the start of a
    /// non-JSON body (a gateway's HTML page).
    pub detail: String,
}

impl ErrorBody {
    /// Reads `body`, removing `secret` from anything kept.
    pub fn parse(status: StatusCode, body: &[u8], secret: &Secret) -> Self {
        let parsed = serde_json::from_slice::<PgrstError>(body).ok();
        let (code, mut detail) = match parsed {
            Some(e) if e.code.is_some() || e.message.is_some() => {
                let mut d = e.message.unwrap_or_default();
                if let Some(details) = e.details.as_ref().and_then(text_of) {
                    d = format!("{d} ({details})");
                }
                if let Some(hint) = e.hint.as_ref().and_then(text_of) {
                    d = format!("{d}; hint: {hint}");
                }
                (e.code, d)
            }
            _ => {
                let text = String::from_utf8_lossy(body);
                let text = strip_tags(&text);
                let mut short: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if short.chars().count() > 200 {
                    short = short.chars().take(200).collect::<String>() + "…";
                }
                (None, short)
            }
        };
        if detail.is_empty() {
            detail = status
                .canonical_reason()
                .unwrap_or("no details")
                .to_string();
        }
        let exposed = secret.expose();
        if !exposed.is_empty() && detail.contains(exposed) {
            detail = detail.replace(exposed, "<redacted>");
        }
        ErrorBody { code, detail }
    }

    /// `", <code>"`, or empty without a code: to follow a status in messages.
    pub fn code_suffix(&self) -> String {
        self.code
            .as_ref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    }
}

fn text_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// What the caller of [`classify`] knows about the request.
pub(crate) struct Failure<'a> {
    pub ctx: Ctx,
    pub status: StatusCode,
    pub body: &'a [u8],
    pub attempts: u32,
    pub key_name: &'static str,
    pub secret: &'a Secret,
    pub schema: &'a str,
    pub base_url: &'a str,
}

/// Turns an HTTP error answer into an error.
pub(crate) fn classify(f: Failure<'_>) -> SupabaseError {
    let body = ErrorBody::parse(f.status, f.body, f.secret);
    let status = f.status.as_u16();
    let code = body.code_suffix();
    let pg_code = body.code.as_deref().unwrap_or("");
    let ctx = f.ctx;
    match status {
        // 42501 is PostgreSQL's insufficient_privilege: PostgREST answers it
        // with 401 for a request without a JWT role and 403 with one.
        401 | 403 if pg_code == "42501" => SupabaseError::Forbidden {
            ctx,
            key_name: f.key_name,
            status,
            code,
            detail: body.detail,
        },
        401 => SupabaseError::Unauthorized {
            ctx,
            key_name: f.key_name,
            status,
            code,
            detail: body.detail,
        },
        403 => SupabaseError::Forbidden {
            ctx,
            key_name: f.key_name,
            status,
            code,
            detail: body.detail,
        },
        404 if matches!(pg_code, "42P01" | "PGRST205") => SupabaseError::TableMissing {
            ctx,
            code,
            detail: body.detail,
        },
        404 => SupabaseError::NoApi {
            ctx,
            url: f.base_url.to_string(),
            detail: body.detail,
        },
        406 if pg_code == "PGRST106" => SupabaseError::SchemaNotExposed {
            ctx,
            schema: f.schema.to_string(),
            detail: body.detail,
        },
        400 if crate::retry::is_retryable_answer(f.status, f.body) => SupabaseError::Unavailable {
            ctx,
            status,
            code,
            attempts: f.attempts,
            detail: format!(
                "{} (without PostgREST's error body: the gateway or the server was not ready)",
                body.detail
            ),
        },
        s if crate::retry::is_retryable_status(f.status) || s == 429 => {
            SupabaseError::Unavailable {
                ctx,
                status,
                code,
                attempts: f.attempts,
                detail: body.detail,
            }
        }
        300..=399 => SupabaseError::Rejected {
            ctx,
            kind: ErrorKind::InvalidConfig,
            status,
            code,
            detail: format!(
                "{}; the API does not redirect: set `url` to the final project URL",
                body.detail
            ),
        },
        400 | 413 | 414 | 431 => SupabaseError::Rejected {
            ctx,
            kind: ErrorKind::InvalidInput,
            status,
            code,
            detail: body.detail,
        },
        _ => SupabaseError::Rejected {
            ctx,
            kind: ErrorKind::Other,
            status,
            code,
            detail: body.detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, body: &'static str) -> SupabaseError {
        classify(Failure {
            ctx: Ctx {
                op: Op::Put,
                key: KeyRef::new("k"),
                table: "public.storage".into(),
            },
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes(),
            attempts: 4,
            key_name: "anon_key",
            secret: &Secret::new("SECRET-KEY"),
            schema: "public",
            base_url: "https://x.supabase.co/rest/v1/",
        })
    }

    #[test]
    fn maps_statuses_and_codes() {
        let cases = [
            (
                401,
                r#"{"code":"PGRST301","message":"JWSError JWSInvalidSignature"}"#,
                ErrorKind::PermissionDenied,
                "rejected `anon_key`",
            ),
            (
                401,
                r#"{"message":"Invalid API key"}"#,
                ErrorKind::PermissionDenied,
                "Invalid API key",
            ),
            (
                403,
                r#"{"code":"42501","message":"new row violates row-level security policy for table \"storage\""}"#,
                ErrorKind::PermissionDenied,
                "row-level security refused",
            ),
            (
                401,
                r#"{"code":"42501","message":"permission denied for table storage"}"#,
                ErrorKind::PermissionDenied,
                "row-level security refused",
            ),
            (
                404,
                r#"{"code":"42P01","message":"relation \"public.nope\" does not exist"}"#,
                ErrorKind::NotFound,
                "storage.sql",
            ),
            (
                404,
                r#"{"code":"PGRST205","message":"Could not find the table"}"#,
                ErrorKind::NotFound,
                "public.storage does not exist",
            ),
            (
                404,
                "<html>not found</html>",
                ErrorKind::NotFound,
                "check that `url`",
            ),
            (
                406,
                r#"{"code":"PGRST106","message":"The schema must be one of the following: public"}"#,
                ErrorKind::InvalidConfig,
                "exposed schemas",
            ),
            (
                502,
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
                ErrorKind::Unavailable,
                "HTTP 502 after 4 attempt(s)",
            ),
            (429, "", ErrorKind::Unavailable, "Too Many Requests"),
            (
                400,
                r#"{"code":"22P02","message":"invalid input syntax","details":null,"hint":"fix it"}"#,
                ErrorKind::InvalidInput,
                "hint: fix it",
            ),
            (
                409,
                r#"{"code":"23505","message":"duplicate"}"#,
                ErrorKind::Other,
                "HTTP 409, 23505",
            ),
            (
                500,
                r#"{"code":"XX000","message":"boom SECRET-KEY"}"#,
                ErrorKind::Other,
                "boom <redacted>",
            ),
        ];
        for (status, body, kind, needle) in cases {
            let e = failure(status, body);
            let m = e.to_string();
            assert_eq!(e.kind(), kind, "{status}: {m}");
            assert!(m.contains(needle), "{status}: {m}");
            assert!(m.contains("put \"k\" in table public.storage"), "{m}");
            assert!(!m.contains("SECRET-KEY"), "{m}");
        }
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let k = KeyRef::new(&"é".repeat(500));
        assert!(k.to_string().ends_with("(1000 bytes)"), "{k}");
        assert_eq!(KeyRef::new("a\"b\n").to_string(), r#""a\"b\n""#);
    }
}
