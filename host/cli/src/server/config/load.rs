//! Reading a whole file: the top-level table of the TOML, field by field,
//! into a [`HostConfig`], with the checks that span several backends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use storage_host::config::{BackendConfig, StorageConfig};
use storage_host::manager::DEFAULT_OP_TIMEOUT;

use super::auth::auth_config;
use super::backend::backend_config;
use super::error::{ConfigError, Result};
use super::fields::{Fields, kind, resolve};
use super::policy::policy_config;
use super::schema::*;
use super::units::{parse_duration, parse_size};

impl HostConfig {
    /// Reads and validates the TOML file at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let mut config = Self::from_toml_str(&text, base)?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates a TOML configuration. Relative paths in it
    /// (`plugins_dir`, `auth.token_file`, local `path`s, `{ file = ... }`)
    /// are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::Syntax(e.to_string().trim_end().to_string())
        })?;
        let mut warnings = Vec::new();
        let mut root = Fields::new(String::new(), table);

        let listen = match root.opt_str("listen")? {
            None => DEFAULT_LISTEN.parse().expect("the default address parses"),
            Some(s) => s.parse::<SocketAddr>().map_err(|_| {
                ConfigError::invalid(
                    root.path("listen"),
                    format!("{s:?} is not an IP address and port, e.g. \"127.0.0.1:7070\" or \"[::1]:7070\""),
                )
            })?,
        };

        let log_level = root.opt_str("log_level")?.unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(ConfigError::invalid(
                root.path("log_level"),
                format!(
                    "{log_level:?} is not a log filter ({e}); use error, warn, info, debug or trace, or directives like \"storage_host=debug,info\""
                ),
            ));
        }

        let plugins_dir = match root.opt_str("plugins_dir")? {
            None => None,
            Some(s) if s.trim().is_empty() => {
                return Err(ConfigError::invalid(
                    root.path("plugins_dir"),
                    "is empty; remove it to use only the built-in plugins",
                ));
            }
            Some(s) => {
                let dir = resolve(base_dir, &s);
                match std::fs::metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(ConfigError::invalid(
                            root.path("plugins_dir"),
                            format!("{} is not a directory", dir.display()),
                        ));
                    }
                    Err(e) => {
                        return Err(ConfigError::invalid(
                            root.path("plugins_dir"),
                            format!("cannot read {}: {e}", dir.display()),
                        ));
                    }
                }
                Some(dir)
            }
        };

        let max_body_bytes = match root.take("max_body_size") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => parse_size(&v)
                .and_then(|n| {
                    if n == 0 {
                        Err("must be at least 1 byte".to_string())
                    } else if n > MAX_MAX_BODY_BYTES as u64 {
                        Err(format!("{n} bytes is more than the limit of 1 GiB"))
                    } else {
                        Ok(n as usize)
                    }
                })
                .map_err(|m| ConfigError::invalid(root.path("max_body_size"), m))?,
        };

        let op_timeout = match root.take("op_timeout") {
            None => DEFAULT_OP_TIMEOUT,
            Some(v) => {
                parse_duration(&v).map_err(|m| ConfigError::invalid(root.path("op_timeout"), m))?
            }
        };
        let shutdown_timeout = match root.take("shutdown_timeout") {
            None => DEFAULT_SHUTDOWN_TIMEOUT,
            Some(v) => parse_duration(&v)
                .map_err(|m| ConfigError::invalid(root.path("shutdown_timeout"), m))?,
        };

        let mut duration = |key: &'static str, default: Duration| -> Result<Duration> {
            match root.take(key) {
                None => Ok(default),
                Some(v) => parse_duration(&v).map_err(|m| ConfigError::invalid(key, m)),
            }
        };
        let header_timeout = duration("header_timeout", DEFAULT_HEADER_TIMEOUT)?;
        let idle_timeout = duration("idle_timeout", DEFAULT_IDLE_TIMEOUT)?;
        let body_timeout = duration("body_timeout", DEFAULT_BODY_TIMEOUT)?;
        let send_timeout = duration("send_timeout", DEFAULT_SEND_TIMEOUT)?;
        let max_connections = match root.take("max_connections") {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(Value::Integer(n)) if n >= 1 && n as u64 <= MAX_MAX_CONNECTIONS as u64 => {
                n as usize
            }
            Some(Value::Integer(n)) => {
                return Err(ConfigError::invalid(
                    "max_connections",
                    format!("{n} is out of range; use 1 to {MAX_MAX_CONNECTIONS}"),
                ));
            }
            Some(v) => return Err(root.wrong("max_connections", "an integer", &v)),
        };

        let auth = match root.opt_table("auth")? {
            None => AuthConfig::default(),
            Some(t) => auth_config(t, base_dir, &mut warnings)?,
        };

        let backends = match root.take("backends") {
            None => {
                return Err(ConfigError::invalid(
                    "backends",
                    "missing: add at least one [[backends]] table, e.g. name = \"memory\" with storage_config = { type = \"local\" }",
                ));
            }
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "backends",
                    format!(
                        "expected an array of tables ([[backends]]), found {}",
                        kind(&other)
                    ),
                ));
            }
        };
        if backends.is_empty() {
            return Err(ConfigError::invalid(
                "backends",
                "is empty: add at least one [[backends]] table",
            ));
        }
        let mut parsed: Vec<BackendConfig> = Vec::with_capacity(backends.len());
        let mut durable_paths: HashMap<PathBuf, usize> = HashMap::new();
        for (i, item) in backends.into_iter().enumerate() {
            let path = format!("backends[{i}]");
            let Value::Table(t) = item else {
                return Err(ConfigError::invalid(
                    path,
                    format!("expected a table, found {}", kind(&item)),
                ));
            };
            let backend = backend_config(Fields::new(path.clone(), t), base_dir, &mut warnings)?;
            if let Some(j) = parsed.iter().position(|b| b.name == backend.name) {
                return Err(ConfigError::invalid(
                    format!("{path}.name"),
                    format!(
                        "{:?} is already the name of backends[{j}]; backend names must be unique",
                        backend.name
                    ),
                ));
            }
            if let StorageConfig::Local { path: Some(dir) } = &backend.storage_config {
                // Two stores on one directory would fight over its lock file.
                let key = std::fs::canonicalize(dir).unwrap_or_else(|_| PathBuf::from(dir));
                if let Some(j) = durable_paths.insert(key, i) {
                    return Err(ConfigError::invalid(
                        format!("{path}.storage_config.path"),
                        format!(
                            "{dir} is already the directory of backends[{j}] ({:?}); a durable store can be opened only once",
                            parsed[j].name
                        ),
                    ));
                }
            }
            parsed.push(backend);
        }

        let policy = match root.opt_table("policy")? {
            None => None,
            Some(t) => Some(policy_config(t, &parsed)?),
        };

        root.finish()?;
        Ok(HostConfig {
            file: None,
            listen,
            log_level,
            plugins_dir,
            backends: parsed,
            policy,
            max_body_bytes,
            op_timeout,
            shutdown_timeout,
            header_timeout,
            idle_timeout,
            body_timeout,
            send_timeout,
            max_connections,
            auth,
            warnings,
        })
    }
}
