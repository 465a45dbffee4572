//! `plugin_config`: every plugin's config validation on arbitrary configs,
//! and no secret of a config in its errors.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use storage_plugin_api::ffi::PluginModRef;
use storage_plugin_api::{ErrorKind, module_of};

use crate::text;

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
pub(crate) fn rotate(s: &str) -> String {
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
