//! The `redis` plugin's configuration and its checks.
//!
//! The URL may carry a password (`redis://:pw@host`, `redis+unix:///s?pass=pw`),
//! so the configuration never prints it: `Debug` shows a redacted URL, and
//! every error message goes through [`Secrets::scrub`].

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use storage_plugin_api::{Error, is_secret_param};

use crate::limits::MAX_KEY_PREFIX_LEN;

/// The default bound on one operation, retries included.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// The default number of retries after a retryable failure.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The largest accepted `timeout_ms` (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// The largest accepted `max_retries`.
pub const MAX_RETRIES: u32 = 10;

/// Configuration of a `redis` backend, as JSON:
///
/// ```json
/// {"url": "redis://:password@127.0.0.1:6379/0", "key_prefix": "app:cache:",
///  "ttl_seconds": 300, "timeout_ms": 2000, "max_retries": 2}
/// ```
///
/// Only `url` is required. Unknown fields are rejected, so a typo is an error
/// rather than a silently ignored setting.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS), or
    /// `redis+unix:///path/to/socket[?db=N&user=U&pass=P]` (also `unix://`).
    /// Never shown: `Debug` and messages redact the password.
    pub url: String,
    /// Prepended to every key, so that several backends (or applications)
    /// share one database without seeing each other's keys. Listing strips it.
    /// At most [`MAX_KEY_PREFIX_LEN`] bytes; it does not count against
    /// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[serde(default)]
    pub key_prefix: String,
    /// When set, every put expires after this many seconds (`SET ... EX`):
    /// what a cache wants. `None` keeps values until deleted.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Bound on one operation in milliseconds, connecting and retries
    /// included: `get`, `put`, `delete`, the whole `SCAN` walk of `list`, and
    /// the `PING` of `create`. Also bounds each connection attempt on its own
    /// (DNS, TCP, TLS and the `HELLO`/`AUTH`/`SELECT` handshake), including
    /// the reconnects the connection makes by itself. An operation that runs
    /// out of it is [`ErrorKind::Unavailable`](storage_plugin_api::ErrorKind::Unavailable)
    /// saying so. 1 to [`MAX_TIMEOUT_MS`].
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a retryable failure (dropped connection, `LOADING`,
    /// `TRYAGAIN`), within `timeout_ms`. A refused connection is not retried
    /// more than once: the server is down, and failing fast lets the host fail
    /// over.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// For `rediss://`: a PEM file of the certificate authority to trust
    /// instead of the system's roots (a private CA, a self-signed server).
    #[serde(default)]
    pub tls_ca_file: Option<String>,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

impl RedisConfig {
    /// A configuration for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: String::new(),
            ttl_seconds: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_retries: DEFAULT_MAX_RETRIES,
            tls_ca_file: None,
        }
    }

    /// The bound on one operation.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The URL with its password replaced by `<redacted>`: safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Checks the configuration without connecting or touching files.
    pub fn validate(&self) -> Result<(), Error> {
        let url = self.parsed_url()?;
        let tls = matches!(url.scheme(), "rediss" | "valkeys");
        if tls && !cfg!(feature = "tls") {
            return Err(Error::invalid_config(format!(
                "redis: `url` {} asks for TLS, but this build of the plugin has no TLS support; rebuild storage-redis with its `tls` feature or use redis://",
                self.redacted_url()
            )));
        }
        if self.tls_ca_file.is_some() && !tls {
            return Err(Error::invalid_config(format!(
                "redis: `tls_ca_file` is set but `url` {} does not use TLS; use a rediss:// URL or remove `tls_ca_file`",
                self.redacted_url()
            )));
        }
        if self
            .tls_ca_file
            .as_ref()
            .is_some_and(|ca| ca.trim().is_empty())
        {
            return Err(Error::invalid_config(
                "redis: `tls_ca_file` is empty; give the path of a PEM file or remove the field",
            ));
        }
        // The redis crate's own parser catches what the generic URL parser
        // lets through (a bad database number, a missing host).
        if let Err(e) = redis::Client::open(self.url.as_str()) {
            // Only the redis crate's words are scrubbed: scrubbing ours would
            // cut a short password out of them ("r<redacted>dis: ...").
            return Err(Error::invalid_config(format!(
                "redis: `url` {} is not usable: {}; expected redis://[user:password@]host[:port][/db], rediss://... or redis+unix:///path/to/socket",
                self.redacted_url(),
                self.secrets().scrub(&e.to_string())
            )));
        }
        if self.key_prefix.len() > MAX_KEY_PREFIX_LEN {
            return Err(Error::invalid_config(format!(
                "redis: `key_prefix` is {} bytes long; use at most {MAX_KEY_PREFIX_LEN} bytes (it is sent with every key)",
                self.key_prefix.len()
            )));
        }
        if self.ttl_seconds == Some(0) {
            return Err(Error::invalid_config(
                "redis: `ttl_seconds` is 0; use a positive number of seconds, or null for no expiry",
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(Error::invalid_config(format!(
                "redis: `timeout_ms` is {}; use 1..={MAX_TIMEOUT_MS} milliseconds",
                self.timeout_ms
            )));
        }
        if self.max_retries > MAX_RETRIES {
            return Err(Error::invalid_config(format!(
                "redis: `max_retries` is {}; use 0..={MAX_RETRIES} (each retry still fits in `timeout_ms`)",
                self.max_retries
            )));
        }
        Ok(())
    }

    fn parsed_url(&self) -> Result<url::Url, Error> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            // The URL did not parse, so it cannot be redacted reliably: leave it out.
            Error::invalid_config(format!(
                "redis: `url` is not a valid URL ({e}); expected redis://[user:password@]host[:port][/db], rediss://... or redis+unix:///path/to/socket"
            ))
        })?;
        match url.scheme() {
            "redis" | "rediss" | "valkey" | "valkeys" | "redis+unix" | "valkey+unix" | "unix" => {
                Ok(url)
            }
            other => Err(Error::invalid_config(format!(
                "redis: `url` scheme '{other}' is not supported; use redis://, rediss:// or redis+unix://"
            ))),
        }
    }

    /// The secrets of this configuration, for scrubbing messages.
    pub(crate) fn secrets(&self) -> Secrets {
        let mut values = Vec::new();
        if let Ok(url) = url::Url::parse(&self.url) {
            if let Some(pw) = url.password() {
                values.push(pw.to_string());
                if let Ok(decoded) = percent_encoding::percent_decode_str(pw).decode_utf8() {
                    values.push(decoded.into_owned());
                }
            }
            for (k, v) in url.query_pairs() {
                if is_secret_param(&k) && !v.is_empty() {
                    values.push(v.into_owned());
                }
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        values.retain(|v| !v.is_empty());
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets(values)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// Secret strings that must never appear in a message.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// `message` with every secret replaced by `<redacted>`. Belt and braces:
    /// messages are built from redacted URLs already, but an error from the
    /// redis crate or the OS could echo what it was given.
    pub(crate) fn scrub(&self, message: &str) -> String {
        // One pass: a secret is never looked for inside a `<redacted>`
        // already written (nor across one), whatever the order of secrets.
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        'next: while let Some(c) = rest.chars().next() {
            for s in self.0.iter().filter(|s| !s.is_empty()) {
                if rest.starts_with(s.as_str()) {
                    out.push_str("<redacted>");
                    rest = &rest[s.len()..];
                    continue 'next;
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

/// `url` with the password (userinfo or a `pass` query parameter) replaced
/// by `<redacted>` ([`storage_plugin_api::redact_url`]). A URL that does not
/// parse is not shown at all: it cannot be redacted reliably.
pub fn redact_url(url: &str) -> String {
    if url::Url::parse(url).is_err() {
        return "<unparseable URL, not shown>".to_string();
    }
    storage_plugin_api::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_is_one_pass_and_never_looks_inside_its_own_marks() {
        let secrets = Secrets(vec!["abc".into(), "d".into(), "e".into()]);
        // "d" and "e" occur in "<redacted>": a second pass would garble it.
        assert_eq!(secrets.scrub("xabcdy"), "x<redacted><redacted>y");
        assert_eq!(
            secrets.scrub("no secret here"),
            "no s<redacted>cr<redacted>t h<redacted>r<redacted>"
        );
        assert_eq!(Secrets(vec![]).scrub("as is"), "as is");
    }

    #[test]
    fn a_short_password_does_not_garble_the_config_error() {
        // Found by the plugin_config fuzz target (fuzz/corpus/plugin_config/
        // crash-redis-scrub-garbles-message): the plugin's own wording went
        // through the scrubber, and where "e" was cut out told the password.
        let c: RedisConfig = serde_json::from_str(r#"{"url":"unix:?pass=e"}"#).unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.message().starts_with("redis: `url` "), "{e}");
        assert!(e.message().contains("is not usable"), "{e}");
    }

    fn parse(json: &str) -> Result<RedisConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let c = parse(r#"{"url": "redis://127.0.0.1:6379"}"#).unwrap();
        assert_eq!(c, RedisConfig::new("redis://127.0.0.1:6379"));
        assert_eq!(c.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(c.validate().is_ok());
        let e = parse(r#"{"url": "redis://h", "ttl": 5}"#).unwrap_err();
        assert!(e.contains("unknown field `ttl`"), "{e}");
        let e = parse(r#"{"key_prefix": "x"}"#).unwrap_err();
        assert!(e.contains("missing field `url`"), "{e}");
    }

    #[test]
    fn validation() {
        let bad = |c: RedisConfig, needle: &str| {
            let e = c.validate().unwrap_err();
            assert_eq!(e.kind(), storage_plugin_api::ErrorKind::InvalidConfig);
            assert!(e.message().contains(needle), "{e}");
        };
        bad(RedisConfig::new("http://h"), "scheme 'http'");
        bad(RedisConfig::new("not a url"), "not a valid URL");
        bad(RedisConfig::new("redis://:hunter2@h/notadb"), "not usable");
        bad(
            RedisConfig {
                ttl_seconds: Some(0),
                ..RedisConfig::new("redis://h")
            },
            "ttl_seconds",
        );
        bad(
            RedisConfig {
                timeout_ms: 0,
                ..RedisConfig::new("redis://h")
            },
            "timeout_ms",
        );
        bad(
            RedisConfig {
                max_retries: 99,
                ..RedisConfig::new("redis://h")
            },
            "max_retries",
        );
        bad(
            RedisConfig {
                key_prefix: "p".repeat(MAX_KEY_PREFIX_LEN + 1),
                ..RedisConfig::new("redis://h")
            },
            "`key_prefix` is 1025 bytes long",
        );
        assert!(
            RedisConfig {
                key_prefix: "p".repeat(MAX_KEY_PREFIX_LEN),
                ..RedisConfig::new("redis://h")
            }
            .validate()
            .is_ok()
        );
        bad(
            RedisConfig {
                tls_ca_file: Some("/ca.pem".into()),
                ..RedisConfig::new("redis://h")
            },
            "does not use TLS",
        );
        assert!(
            RedisConfig::new("redis+unix:///tmp/r.sock?db=2")
                .validate()
                .is_ok()
        );
        assert!(RedisConfig::new("unix:///tmp/r.sock").validate().is_ok());
        #[cfg(feature = "tls")]
        assert!(RedisConfig::new("rediss://h:6380").validate().is_ok());
    }

    #[test]
    fn password_never_shown() {
        for url in [
            "redis://:hunter2@127.0.0.1:6379/0",
            "redis://alice:hunter2@127.0.0.1",
            "redis://:hun%40ter2@127.0.0.1",
            "redis+unix:///tmp/r.sock?db=1&pass=hunter2",
            "rediss://u:hunter2@h:6380",
        ] {
            let c = RedisConfig::new(url);
            for shown in [format!("{c:?}"), c.redacted_url()] {
                assert!(
                    !shown.contains("hunter2") && !shown.contains("hun@ter2"),
                    "{shown}"
                );
                assert!(shown.contains("<redacted>"), "{shown}");
            }
            // The decoded password is scrubbed as well as the raw one.
            let plain = if url.contains("%40") {
                "hun@ter2"
            } else {
                "hunter2"
            };
            let scrubbed = c.secrets().scrub(&format!("x {url} y {plain}"));
            assert!(!scrubbed.contains("ter2"), "{scrubbed}");
        }
        let c = RedisConfig::new("redis://alice:hunter2@h:1/3");
        assert_eq!(c.redacted_url(), "redis://alice:<redacted>@h:1/3");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        // A password in a URL that fails validation stays out of the message.
        let e = RedisConfig::new("redis://:hunter2@h/notadb")
            .validate()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = RedisConfig::new("redis://:hunter2@[::1")
            .validate()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
