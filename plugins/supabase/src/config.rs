//! The plugin's configuration: what the host's `StorageConfig::Supabase` becomes.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use storage_plugin_api::{Error, redact_url};

pub use storage_plugin_api::Secret;

/// Configuration of a `supabase` backend, as JSON. Field names are those of
/// the host's `StorageConfig::Supabase`:
///
/// ```json
/// {"url": "https://xyz.supabase.co", "anon_key": "...", "service_role_key": "...",
///  "schema": "public", "table_name": "storage", "timeout": 30, "max_retries": 3}
/// ```
///
/// `service_role_key` may be null or absent; `schema`, `table_name`, `timeout`
/// and `max_retries` default to `public`, `storage`, 30 and 3 (for
/// `StorageConfig::Custom` users who leave them out).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupabaseConfig {
    /// The project URL, e.g. `https://xyz.supabase.co`. The REST API is
    /// reached under `{url}/rest/v1/`; a URL that already ends in `/rest/v1`
    /// is accepted as is.
    pub url: String,
    /// The project's anon (public) key. Used when no service-role key is given.
    pub anon_key: Secret,
    /// The service-role key, which bypasses row-level security. Used instead
    /// of the anon key when given.
    #[serde(default)]
    pub service_role_key: Option<Secret>,
    /// The PostgreSQL schema holding the table (must be exposed by the API).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// The table holding the rows (see `sql/storage.sql`).
    #[serde(default = "default_table")]
    pub table_name: String,
    /// Seconds one HTTP attempt may take, connecting included (1 to
    /// [`MAX_TIMEOUT_SECS`]).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// How many times a retryable failure (network error, timeout, 502, 503,
    /// 504, 520-524) is retried before the operation fails as unavailable
    /// (at most [`MAX_RETRIES`]).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

/// The largest `timeout` accepted, in seconds (10 minutes): a bound on one
/// request must stay a bound.
pub const MAX_TIMEOUT_SECS: u64 = 600;

/// The largest `max_retries` accepted.
pub const MAX_RETRIES: u32 = 10;

fn default_schema() -> String {
    "public".into()
}
fn default_table() -> String {
    "storage".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_max_retries() -> u32 {
    3
}

impl fmt::Debug for SupabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("anon_key", &self.anon_key)
            .field("service_role_key", &self.service_role_key)
            .field("schema", &self.schema)
            .field("table_name", &self.table_name)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// The longest PostgreSQL identifier (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

impl SupabaseConfig {
    /// Checks the configuration without connecting to anything.
    pub fn validate(&self) -> Result<(), Error> {
        self.rest_base()?;
        check_key("anon_key", &self.anon_key)?;
        if let Some(key) = &self.service_role_key {
            check_key("service_role_key", key)?;
        }
        check_identifier("schema", &self.schema)?;
        check_identifier("table_name", &self.table_name)?;
        if self.timeout == 0 || self.timeout > MAX_TIMEOUT_SECS {
            return Err(Error::invalid_config(format!(
                "supabase: `timeout` is {}; give the seconds one request may take, 1 to {MAX_TIMEOUT_SECS} (e.g. 30)",
                self.timeout
            )));
        }
        if self.max_retries > MAX_RETRIES {
            return Err(Error::invalid_config(format!(
                "supabase: `max_retries` is {}; at most {MAX_RETRIES} retries are allowed (each waits longer than the last)",
                self.max_retries
            )));
        }
        Ok(())
    }

    /// The key requests are sent with: the service-role key when given.
    pub fn api_key(&self) -> &Secret {
        self.service_role_key.as_ref().unwrap_or(&self.anon_key)
    }

    /// Which key requests use, for messages ("service_role_key" or "anon_key").
    pub fn api_key_name(&self) -> &'static str {
        if self.service_role_key.is_some() {
            "service_role_key"
        } else {
            "anon_key"
        }
    }

    /// The bound on one HTTP attempt.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// `{url}/rest/v1/`, parsed: the base of every request.
    pub fn rest_base(&self) -> Result<Url, Error> {
        let shown = redact_url(&self.url);
        let mut url = Url::parse(self.url.trim()).map_err(|e| {
            Error::invalid_config(format!(
                "supabase: `url` '{shown}' is not a URL ({e}); give the project URL, e.g. https://xyz.supabase.co"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::invalid_config(format!(
                "supabase: `url` '{shown}' must be an http(s) URL with a host, e.g. https://xyz.supabase.co"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid_config(format!(
                "supabase: `url` '{shown}' must not contain credentials; the keys go in `anon_key` / `service_role_key`"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::invalid_config(format!(
                "supabase: `url` '{shown}' must not have a query or fragment; give the project URL, e.g. https://xyz.supabase.co"
            )));
        }
        let path = url.path().trim_end_matches('/').to_string();
        let path = if path.ends_with("/rest/v1") {
            format!("{path}/")
        } else {
            format!("{path}/rest/v1/")
        };
        url.set_path(&path);
        Ok(url)
    }
}

fn check_key(field: &str, key: &Secret) -> Result<(), Error> {
    let key = key.expose();
    if key.trim().is_empty() {
        return Err(Error::invalid_config(format!(
            "supabase: `{field}` is empty; copy it from the project's API settings"
        )));
    }
    // Never show the key itself, not even in part.
    if key.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(Error::invalid_config(format!(
            "supabase: `{field}` contains spaces, line breaks or non-ASCII characters, which an API key never has; copy it again from the project's API settings"
        )));
    }
    Ok(())
}

/// Accepts what can be written unquoted in PostgREST's URL and headers and is
/// a valid PostgreSQL identifier: letters, digits, `_` and `$`, not starting
/// with a digit or `$`, at most 63 bytes.
fn check_identifier(field: &str, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid = valid_start
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && value.len() <= MAX_IDENTIFIER_LEN;
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "supabase: `{field}` '{}' is not a valid identifier: use letters, digits and _ (starting with a letter or _), at most {MAX_IDENTIFIER_LEN} characters",
            value.escape_debug()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SupabaseConfig {
        serde_json::from_value(serde_json::json!({
            "url": "https://xyz.supabase.co",
            "anon_key": "anon-SECRET",
            "service_role_key": "service-SECRET",
            "schema": "public",
            "table_name": "storage",
            "timeout": 30,
            "max_retries": 3,
        }))
        .unwrap()
    }

    #[test]
    fn accepts_the_host_config_and_defaults() {
        config().validate().unwrap();
        let c: SupabaseConfig = serde_json::from_str(
            r#"{"url":"http://127.0.0.1:54321","anon_key":"k","service_role_key":null}"#,
        )
        .unwrap();
        assert_eq!(
            (
                c.schema.as_str(),
                c.table_name.as_str(),
                c.timeout,
                c.max_retries
            ),
            ("public", "storage", 30, 3)
        );
        assert_eq!(c.api_key_name(), "anon_key");
        assert!(
            serde_json::from_str::<SupabaseConfig>(r#"{"url":"u","anon_key":"k","tabel":"x"}"#)
                .is_err()
        );
    }

    #[test]
    fn rest_base() {
        let mut c = config();
        for (url, want) in [
            (
                "https://xyz.supabase.co",
                "https://xyz.supabase.co/rest/v1/",
            ),
            (
                "https://xyz.supabase.co/",
                "https://xyz.supabase.co/rest/v1/",
            ),
            (
                "https://xyz.supabase.co/rest/v1",
                "https://xyz.supabase.co/rest/v1/",
            ),
            (
                "http://127.0.0.1:54321/prefix/",
                "http://127.0.0.1:54321/prefix/rest/v1/",
            ),
        ] {
            c.url = url.into();
            assert_eq!(c.rest_base().unwrap().as_str(), want);
        }
        for bad in [
            "",
            "xyz.supabase.co",
            "ftp://x",
            "https://x.co/?a=b",
            "https://x.co/#f",
            "https://u:p@x.co",
        ] {
            c.url = bad.into();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_fields_without_showing_keys() {
        type Change = Box<dyn Fn(&mut SupabaseConfig)>;
        let checks: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.anon_key = Secret::new(" ")), "anon_key"),
            (
                Box::new(|c| c.service_role_key = Some(Secret::new(""))),
                "service_role_key",
            ),
            (
                Box::new(|c| c.anon_key = Secret::new("ab SECRET\n")),
                "anon_key",
            ),
            (Box::new(|c| c.schema = "pub-lic".into()), "schema"),
            (Box::new(|c| c.table_name = "".into()), "table_name"),
            (Box::new(|c| c.table_name = "1abc".into()), "table_name"),
            (Box::new(|c| c.table_name = "a".repeat(64)), "table_name"),
            (Box::new(|c| c.table_name = "t;drop".into()), "table_name"),
            (Box::new(|c| c.timeout = 0), "timeout"),
            (Box::new(|c| c.timeout = MAX_TIMEOUT_SECS + 1), "timeout"),
            (Box::new(|c| c.timeout = u64::MAX), "timeout"),
            (Box::new(|c| c.max_retries = MAX_RETRIES + 1), "max_retries"),
        ];
        for (change, field) in checks {
            let mut c = config();
            change(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.kind(), storage_plugin_api::ErrorKind::InvalidConfig);
            assert!(e.message().contains(field), "{e}");
            assert!(!e.message().contains("SECRET"), "{e}");
        }
        let mut c = config();
        c.table_name = "Storage_2$".into();
        c.validate().unwrap();
    }

    #[test]
    fn debug_hides_keys() {
        let mut c = config();
        c.url = "https://user:hunter2@xyz.supabase.co".into();
        let s = format!("{c:?}");
        assert!(!s.contains("SECRET") && !s.contains("hunter2"), "{s}");
        assert!(
            s.contains("xyz.supabase.co") && s.contains("storage"),
            "{s}"
        );
        assert_eq!(c.api_key().to_string(), "<redacted>");
        // Credentials where a search for `://` does not find them.
        for url in [
            "http:///u:hunter2@h",
            "https:u:hunter2@h",
            "https:\\\\u:hunter2@h",
        ] {
            c.url = url.into();
            let e = c.validate().unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
            assert!(!format!("{c:?}").contains("hunter2"), "{url}");
        }
        assert_eq!(c.api_key_name(), "service_role_key");
    }
}
