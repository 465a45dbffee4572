//! One `[[backends]]` table: its name, flags and `storage_config` (local,
//! supabase or a custom plugin's), and the check of a durable store's directory.

use std::path::Path;

use serde_json::Value as Json;
use toml::Value;

use storage_host::config::{BackendConfig, StorageConfig};

use super::error::{ConfigError, Result};
use super::fields::{Fields, kind, resolve};
use super::sources::{secret_or_string, to_json};

/// Backend names appear in policies, metrics labels and URLs: keep them plain.
pub(super) fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(ConfigError::invalid(field, "is empty"));
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError::invalid(
            field,
            format!("{name:?}: use 1 to 64 characters among letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

pub(super) fn backend_config(
    mut t: Fields,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<BackendConfig> {
    let name = t.str("name")?;
    check_name(&t.path("name"), &name)?;
    let enabled = t.opt_bool("enabled")?.unwrap_or(true);
    let priority = t.opt_u32("priority")?.unwrap_or(0);
    let storage = t.opt_table("storage_config")?.ok_or_else(|| {
        ConfigError::invalid(
            t.path("storage_config"),
            "missing (required): e.g. storage_config = { type = \"local\" }",
        )
    })?;
    let storage_config = storage_config(storage, base, warnings)?;
    t.finish()?;
    Ok(BackendConfig {
        name,
        storage_config,
        enabled,
        priority,
    })
}

pub(super) fn storage_config(
    mut t: Fields,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<StorageConfig> {
    let ty = t.str("type")?;
    let config = match ty.as_str() {
        "local" => {
            let path = match t.take("path") {
                None => None,
                Some(v) => {
                    let field = t.path("path");
                    let s = secret_or_string(&field, v, base, warnings, false)?;
                    if s.trim().is_empty() {
                        return Err(ConfigError::invalid(
                            field,
                            "is empty; remove it for an in-memory store, or give a directory",
                        ));
                    }
                    let dir = resolve(base, &s);
                    check_data_dir(&field, &dir)?;
                    Some(dir.to_string_lossy().into_owned())
                }
            };
            StorageConfig::Local { path }
        }
        "supabase" => {
            let mut secret =
                |t: &mut Fields, key: &'static str, required: bool| -> Result<Option<String>> {
                    match t.take(key) {
                        None if required => {
                            Err(ConfigError::invalid(t.path(key), "missing (required)"))
                        }
                        None => Ok(None),
                        Some(v) => {
                            secret_or_string(&t.path(key), v, base, warnings, key.ends_with("key"))
                                .map(Some)
                        }
                    }
                };
            let url = secret(&mut t, "url", true)?.unwrap_or_default();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::invalid(
                    t.path("url"),
                    "expected an http:// or https:// URL, e.g. https://xyz.supabase.co",
                ));
            }
            let anon_key = secret(&mut t, "anon_key", true)?.unwrap_or_default();
            let service_role_key = secret(&mut t, "service_role_key", false)?;
            let schema = t.opt_str("schema")?.unwrap_or_else(|| "public".into());
            let table_name = t.opt_str("table_name")?.unwrap_or_else(|| "storage".into());
            let timeout = t.opt_u64("timeout")?.unwrap_or(30);
            let max_retries = t.opt_u32("max_retries")?.unwrap_or(3);
            StorageConfig::Supabase {
                url,
                anon_key,
                service_role_key,
                schema,
                table_name,
                timeout,
                max_retries,
            }
        }
        "custom" => {
            let plugin_name = t.str("plugin_name")?;
            if plugin_name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    t.path("plugin_name"),
                    "is empty: name a registered plugin",
                ));
            }
            let field = t.path("config");
            let config = match t.take("config") {
                None => Json::Object(Default::default()),
                Some(v @ Value::Table(_)) => to_json(&field, v, base, warnings)?,
                Some(v) => {
                    return Err(ConfigError::invalid(
                        field,
                        format!("expected a table, found {}", kind(&v)),
                    ));
                }
            };
            StorageConfig::Custom {
                plugin_name,
                config,
            }
        }
        other => {
            return Err(ConfigError::invalid(
                t.path("type"),
                format!(
                    "unknown storage type {other:?}; expected \"local\", \"supabase\" or \"custom\" (with plugin_name = \"...\")"
                ),
            ));
        }
    };
    t.finish()?;
    Ok(config)
}

/// A durable store's directory: it may not exist yet (the store creates it),
/// but it must not be a file, and the nearest existing ancestor must be a directory.
pub(super) fn check_data_dir(field: &str, dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            field,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(_) => {
            let mut up = dir.parent();
            while let Some(p) = up {
                if p.as_os_str().is_empty() {
                    break;
                }
                match std::fs::metadata(p) {
                    Ok(m) if m.is_dir() => return Ok(()),
                    Ok(_) => {
                        return Err(ConfigError::invalid(
                            field,
                            format!(
                                "{} cannot be created: {} is not a directory",
                                dir.display(),
                                p.display()
                            ),
                        ));
                    }
                    Err(_) => up = p.parent(),
                }
            }
            Ok(())
        }
    }
}
