//! One pooled HTTP client per backend: the headers every request carries,
//! the per-attempt timeout and the retry loop.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use storage_plugin_api::Error;

use crate::config::{Secret, SupabaseConfig};
use crate::error::{Ctx, Failure, KeyRef, Op, SupabaseError, classify};
use crate::retry::{RetryPolicy, is_retryable_answer, retry_after};
use storage_plugin_api::redact_url;

/// A request to the backend's table, minus what every request shares.
pub(crate) struct Request {
    /// GET, POST or DELETE.
    pub method: Method,
    /// The query string, every value already percent-encoded.
    pub query: String,
    /// The `Prefer` header, if any.
    pub prefer: Option<&'static str>,
    /// A JSON body. `Bytes` so a retry resends it without copying.
    pub body: Option<Bytes>,
}

/// A successful (2xx) answer.
pub(crate) struct Answer {
    /// The status.
    pub status: StatusCode,
    /// Its headers (`Content-Range` says how many rows matched).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why an attempt got no HTTP answer.
enum Transport {
    TimedOut,
    Failed(String),
}

/// PostgREST's REST API for one table, reached through a pooled client.
pub(crate) struct RestClient {
    client: reqwest::Client,
    /// `{url}/rest/v1/{table}`.
    table_url: String,
    /// `{url}/rest/v1/` with any credentials hidden, for messages.
    base_shown: String,
    headers: HeaderMap,
    timeout: Duration,
    retry: RetryPolicy,
    /// Kept only to scrub it from any text quoted from a response.
    secret: Secret,
    key_name: &'static str,
    schema: String,
    /// `schema.table`, for messages.
    table: Arc<str>,
}

const PROFILE_ACCEPT: HeaderName = HeaderName::from_static("accept-profile");
const PROFILE_CONTENT: HeaderName = HeaderName::from_static("content-profile");
const APIKEY: HeaderName = HeaderName::from_static("apikey");
const PREFER: HeaderName = HeaderName::from_static("prefer");

impl RestClient {
    /// A client for the table `config` names. Must be called inside the
    /// plugin's runtime (the connection pool lives there).
    pub fn new(config: &SupabaseConfig) -> Result<Self, Error> {
        config.validate()?;
        let base = config.rest_base()?;
        let key = config.api_key();

        let mut headers = HeaderMap::new();
        let secret_header = |value: String| {
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                Error::invalid_config(format!(
                    "supabase: `{}` contains characters not allowed in an HTTP header",
                    config.api_key_name()
                ))
            })?;
            // Keeps the value out of reqwest's and http's Debug output.
            v.set_sensitive(true);
            Ok::<_, Error>(v)
        };
        headers.insert(APIKEY, secret_header(key.expose().to_string())?);
        headers.insert(
            AUTHORIZATION,
            secret_header(format!("Bearer {}", key.expose()))?,
        );
        // The schema rides in headers: Accept-Profile for reads,
        // Content-Profile for writes. Validated as an identifier, so it is a
        // valid header value.
        let schema = HeaderValue::from_str(&config.schema)
            .map_err(|_| Error::invalid_config("supabase: `schema` is not a valid header value"))?;
        headers.insert(PROFILE_ACCEPT, schema.clone());
        headers.insert(PROFILE_CONTENT, schema);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let timeout = config.attempt_timeout();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("storage-supabase/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            // PostgREST never redirects; following one could send the key to
            // another host, and would hide a wrong `url`.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::invalid_config(format!("supabase: cannot build the HTTP client: {e}"))
            })?;

        Ok(RestClient {
            client,
            table_url: format!("{base}{}", config.table_name),
            base_shown: redact_url(base.as_str()),
            headers,
            timeout,
            retry: RetryPolicy::new(config.max_retries),
            secret: key.clone(),
            key_name: config.api_key_name(),
            schema: config.schema.clone(),
            table: format!("{}.{}", config.schema, config.table_name).into(),
        })
    }

    /// `schema.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Which configured key requests use.
    pub fn key_name(&self) -> &'static str {
        self.key_name
    }

    /// The context of an error about `op` on `key`.
    pub fn ctx(&self, op: Op, key: &str) -> Ctx {
        Ctx {
            op,
            key: KeyRef::new(key),
            table: Arc::clone(&self.table),
        }
    }

    /// Sends `req`, retrying what may succeed later; a 2xx answer or an error.
    pub async fn send(&self, op: Op, key: &str, req: &Request) -> Result<Answer, SupabaseError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.attempt(req).await {
                Ok(answer) if answer.status.is_success() => return Ok(answer),
                Ok(answer) => {
                    if is_retryable_answer(answer.status, &answer.body) {
                        if answer.status == reqwest::StatusCode::BAD_REQUEST {
                            tracing::debug!(
                                body = %String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]),
                                "supabase: 400 without a PostgREST error body, treated as transient"
                            );
                        }
                        let wait = self.retry.delay(attempt, retry_after(&answer.headers));
                        if let Some(wait) = wait {
                            tracing::warn!(
                                op = op.as_str(),
                                table = %self.table,
                                status = answer.status.as_u16(),
                                attempt,
                                retry_in_ms = wait.as_millis() as u64,
                                "supabase: retryable answer, retrying"
                            );
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    let error = self.classify(op, key, &answer, attempt);
                    if matches!(error, SupabaseError::NoApi { .. }) && req.method != Method::GET {
                        // PostgREST 12.0 answers a write to a missing table with
                        // a bare 404 `{}`; a read says which (42P01 / PGRST205).
                        if let Some(missing) = self.probe_table(op, key).await {
                            return Err(missing);
                        }
                    }
                    return Err(error);
                }
                Err(transport) => {
                    if let Some(wait) = self.retry.delay(attempt, None) {
                        tracing::warn!(
                            op = op.as_str(),
                            table = %self.table,
                            attempt,
                            retry_in_ms = wait.as_millis() as u64,
                            error = match &transport {
                                Transport::TimedOut => "timed out",
                                Transport::Failed(cause) => cause.as_str(),
                            },
                            "supabase: request failed, retrying"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(match transport {
                        Transport::TimedOut => SupabaseError::TimedOut {
                            ctx: self.ctx(op, key),
                            timeout: self.timeout,
                            attempts: attempt,
                        },
                        Transport::Failed(cause) => SupabaseError::Unreachable {
                            ctx: self.ctx(op, key),
                            url: self.base_shown.clone(),
                            cause,
                            attempts: attempt,
                        },
                    });
                }
            }
        }
    }

    fn classify(&self, op: Op, key: &str, answer: &Answer, attempts: u32) -> SupabaseError {
        classify(Failure {
            ctx: self.ctx(op, key),
            status: answer.status,
            body: &answer.body,
            attempts,
            key_name: self.key_name,
            secret: &self.secret,
            schema: &self.schema,
            base_url: &self.base_shown,
        })
    }

    /// The missing-table error a read of the table gets, if it gets one.
    async fn probe_table(&self, op: Op, key: &str) -> Option<SupabaseError> {
        let probe = Request {
            method: Method::GET,
            query: "select=key&limit=0".into(),
            prefer: None,
            body: None,
        };
        let answer = self.attempt(&probe).await.ok()?;
        match self.classify(op, key, &answer, 1) {
            e @ SupabaseError::TableMissing { .. } => Some(e),
            _ => None,
        }
    }

    /// One attempt, bounded by `timeout` from connecting to the last byte.
    async fn attempt(&self, req: &Request) -> Result<Answer, Transport> {
        let url = if req.query.is_empty() {
            self.table_url.clone()
        } else {
            format!("{}?{}", self.table_url, req.query)
        };
        let mut builder = self
            .client
            .request(req.method.clone(), url)
            .headers(self.headers.clone());
        if let Some(prefer) = req.prefer {
            builder = builder.header(PREFER, prefer);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let exchange = async {
            let response = builder.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_elapsed) => Err(Transport::TimedOut),
            Ok(Err(e)) if e.is_timeout() => Err(Transport::TimedOut),
            Ok(Err(e)) => Err(Transport::Failed(describe(e))),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

/// A transport error and its causes on one line, without the URL (which
/// holds the key being read or written, and is shown separately).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("url", &self.base_shown)
            .field("table", &self.table)
            .field("key", &self.key_name)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.retry.max_retries)
            .finish_non_exhaustive()
    }
}
