//! Where a value comes from: inline, `{ env = "NAME" }` or
//! `{ file = "PATH" }`, and the warning when a secret is written inline.

use std::path::Path;

use serde_json::Value as Json;
use toml::{Table, Value};

use super::error::{ConfigError, Result};
use super::fields::{kind, resolve};

/// A string value, or `{ env = "NAME" }` / `{ file = "PATH" }` standing for one.
pub(super) fn secret_or_string(
    field: &str,
    v: Value,
    base: &Path,
    warnings: &mut Vec<String>,
    secret: bool,
) -> Result<String> {
    match v {
        Value::String(s) => {
            if (secret && !s.is_empty()) || url_with_password(&s) {
                warnings.push(inline_secret_warning(field));
            }
            Ok(s)
        }
        Value::Table(t) => match indirection(field, &t, base)? {
            Some(s) => Ok(s),
            None => Err(ConfigError::invalid(
                field,
                "expected a string, { env = \"NAME\" } or { file = \"PATH\" }",
            )),
        },
        other => Err(ConfigError::invalid(
            field,
            format!("expected a string, found {}", kind(&other)),
        )),
    }
}

pub(super) fn inline_secret_warning(field: &str) -> String {
    format!(
        "{field}: a secret is written inline in the config file; prefer {{ env = \"NAME\" }} or {{ file = \"PATH\" }}"
    )
}

/// Resolves `{ env = "NAME" }` or `{ file = "PATH" }`; `None` for any other table.
pub(super) fn indirection(field: &str, t: &Table, base: &Path) -> Result<Option<String>> {
    if t.len() != 1 {
        return Ok(None);
    }
    match t.iter().next() {
        Some((k, Value::String(var))) if k == "env" => std::env::var(var).map(Some).map_err(|e| {
            ConfigError::invalid(
                format!("{field}.env"),
                format!("environment variable {var}: {e}"),
            )
        }),
        Some((k, Value::String(file))) if k == "file" => {
            let path = resolve(base, file);
            std::fs::read_to_string(&path)
                .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| {
                    ConfigError::invalid(
                        format!("{field}.file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
        }
        _ => Ok(None),
    }
}

/// Whether a field name says its value is a secret: the config loader's
/// "written inline" warning. Stricter than the redaction of `Debug` output
/// (which hides any field whose name merely contains `key` or `auth`, to be
/// safe): `password`, `token`, `secret`, `credential(s)` anywhere in the
/// name, or a name ending in `key` / `auth` / `pass` / `pwd` as a word
/// (`api_key`, `anon_key`, `privateKey`, `auth`). `key_prefix`, `keyspace`,
/// `auth_mode` or `max_keys` are not secrets and do not warn.
pub fn looks_like_secret_name(name: &str) -> bool {
    // Split snake_case, kebab-case and camelCase into lower-case words.
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    let anywhere = [
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "credential",
        "credentials",
    ];
    if words.iter().any(|w| anywhere.iter().any(|a| w.contains(a))) {
        return true;
    }
    matches!(
        words.last().map(String::as_str),
        Some("key" | "apikey" | "auth" | "pass" | "pwd")
    )
}

/// Whether a string value is a URL that carries a password
/// (`redis://:pw@host`, `postgres://user:pw@host/db`).
pub(super) fn url_with_password(s: &str) -> bool {
    // One rule with every redactor: a URL is secret when redaction changes it
    // (a password, a user name that may be a token, a secret parameter; the
    // lenient forms such as `http:///u:p@h` included).
    storage_plugin_api::redact_url(s) != s
}

/// A custom plugin's config as JSON, with `{ env }` / `{ file }` resolved.
pub(super) fn to_json(
    field: &str,
    v: Value,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<Json> {
    Ok(match v {
        Value::String(s) => Json::String(s),
        Value::Integer(n) => Json::from(n),
        Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| {
                ConfigError::invalid(field, format!("{f} cannot be represented in JSON"))
            })?,
        Value::Boolean(b) => Json::Bool(b),
        Value::Datetime(d) => Json::String(d.to_string()),
        Value::Array(items) => Json::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_json(&format!("{field}[{i}]"), v, base, warnings))
                .collect::<Result<_>>()?,
        ),
        Value::Table(t) => {
            if let Some(s) = indirection(field, &t, base)? {
                return Ok(Json::String(s));
            }
            let mut map = serde_json::Map::new();
            for (k, v) in t {
                let sub = format!("{field}.{k}");
                let inline_secret = match &v {
                    Value::String(s) if !s.is_empty() => {
                        looks_like_secret_name(&k) || url_with_password(s)
                    }
                    _ => false,
                };
                if inline_secret {
                    warnings.push(inline_secret_warning(&sub));
                }
                map.insert(k, to_json(&sub, v, base, warnings)?);
            }
            Json::Object(map)
        }
    })
}
