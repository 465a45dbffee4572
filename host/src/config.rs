//! Backend configuration: which plugin, with which settings.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The settings of one backend. `Local` and `Supabase` are shorthands for the
/// plugins of those names; `Custom` names any registered plugin and passes its
/// JSON through untouched.
///
/// `Debug` never shows secrets: keys are redacted, and so are the values of
/// any `Custom` field whose name suggests a secret and passwords inside URLs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StorageConfig {
    /// The `local` plugin: in memory (`path: None`) or durable in a directory.
    Local {
        /// Directory of the durable store; `None` keeps data in memory.
        path: Option<String>,
    },
    /// The `supabase` plugin (PostgREST).
    Supabase {
        /// Project URL, e.g. `https://xyz.supabase.co`.
        url: String,
        /// The project's anon (public) key.
        anon_key: String,
        /// The service-role key; used instead of the anon key when given.
        service_role_key: Option<String>,
        /// The PostgreSQL schema of the table.
        schema: String,
        /// The table holding the key-value rows.
        table_name: String,
        /// Seconds each HTTP attempt may take.
        timeout: u64,
        /// Retries after a retryable failure (network, timeout, 5xx).
        max_retries: u32,
    },
    /// Any plugin, by name, with its own JSON configuration.
    Custom {
        /// The name the plugin registered under.
        plugin_name: String,
        /// The plugin's configuration.
        config: Value,
    },
}

impl StorageConfig {
    /// The name of the plugin this configuration is for.
    pub fn plugin_name(&self) -> &str {
        match self {
            StorageConfig::Local { .. } => "local",
            StorageConfig::Supabase { .. } => "supabase",
            StorageConfig::Custom { plugin_name, .. } => plugin_name,
        }
    }

    /// The JSON configuration the plugin receives.
    pub fn plugin_config(&self) -> Value {
        match self {
            StorageConfig::Local { path } => json!({ "path": path }),
            StorageConfig::Supabase {
                url,
                anon_key,
                service_role_key,
                schema,
                table_name,
                timeout,
                max_retries,
            } => json!({
                "url": url,
                "anon_key": anon_key,
                "service_role_key": service_role_key,
                "schema": schema,
                "table_name": table_name,
                "timeout": timeout,
                "max_retries": max_retries,
            }),
            StorageConfig::Custom { config, .. } => config.clone(),
        }
    }
}

/// Replaces secrets in a JSON value for display.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_field(k) && !v.is_null() {
                        Value::String("<redacted>".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_url(s)),
        other => other.clone(),
    }
}

pub(crate) fn is_secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "key",
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "auth",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// Hides the credentials of a URL: the one redactor the host and the plugins
/// share (see [`storage_plugin_api::redact_url`]).
pub use storage_plugin_api::redact_url;

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::Local { path } => f.debug_struct("Local").field("path", path).finish(),
            StorageConfig::Supabase {
                url,
                service_role_key,
                schema,
                table_name,
                timeout,
                max_retries,
                ..
            } => f
                .debug_struct("Supabase")
                .field("url", &redact_url(url))
                .field("anon_key", &"<redacted>")
                .field(
                    "service_role_key",
                    &service_role_key.as_ref().map(|_| "<redacted>"),
                )
                .field("schema", schema)
                .field("table_name", table_name)
                .field("timeout", timeout)
                .field("max_retries", max_retries)
                .finish(),
            StorageConfig::Custom {
                plugin_name,
                config,
            } => f
                .debug_struct("Custom")
                .field("plugin_name", plugin_name)
                .field("config", &redact(config))
                .finish(),
        }
    }
}

/// One backend of a [`StorageManager`](crate::StorageManager): a name, the
/// plugin settings, and its place in routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    /// The name policies refer to; unique within a manager.
    pub name: String,
    /// Which plugin, with which settings.
    pub storage_config: StorageConfig,
    /// A disabled backend is kept but receives no operations.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lower first: the order of the default policy.
    #[serde(default)]
    pub priority: u32,
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = StorageConfig::Supabase {
            url: "https://x.supabase.co".into(),
            anon_key: "anon-SECRET-1".into(),
            service_role_key: Some("service-SECRET-2".into()),
            schema: "public".into(),
            table_name: "storage".into(),
            timeout: 30,
            max_retries: 3,
        };
        let s = format!("{c:?}");
        assert!(!s.contains("SECRET"), "{s}");
        assert!(s.contains("x.supabase.co"));

        let c = StorageConfig::Custom {
            plugin_name: "redis".into(),
            config: json!({"url": "redis://user:hunter2@localhost:6379/0", "api_token": "tok-SECRET", "nested": {"password": "pw-SECRET"}, "port": 1}),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("SECRET") && !s.contains("hunter2"), "{s}");
        assert!(
            s.contains("localhost:6379") && s.contains("\"port\": Number(1)") || s.contains("port")
        );
    }

    #[test]
    fn url_redaction() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:<redacted>@h:1/0");
        assert_eq!(redact_url("redis://u:pw@h"), "redis://u:<redacted>@h");
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
        assert_eq!(redact_url("plain"), "plain");
        // A search for `://` missed these credentials; the URL parser finds them.
        assert_eq!(redact_url("http:///u:pw@h"), "http://u:<redacted>@h/");
        let s = format!(
            "{:?}",
            StorageConfig::Custom {
                plugin_name: "x".into(),
                config: json!({"endpoint": "http:///u:hunter2@h"}),
            }
        );
        assert!(!s.contains("hunter2"), "{s}");
    }
}
