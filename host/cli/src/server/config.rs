//! The host's TOML configuration, validated up front.
//!
//! Every error names the field it is about, as a path into the file
//! (`backends[1].storage_config.path: ...`), so a wrong config is fixed from
//! the message alone. The file is walked by hand rather than through
//! `#[derive(Deserialize)]`: serde loses the field path inside internally
//! tagged enums (`storage_config` is one), and unknown fields are errors here.
//!
//! Secrets never have to be written in the file: the API token comes from an
//! environment variable or a file (`[auth] token_env` / `token_file`), and any
//! value of a `storage_config` can be given as `{ env = "NAME" }` or
//! `{ file = "PATH" }` instead of inline.
//!
//! ```
//! use storage_host_cli::server::config::HostConfig;
//!
//! let config = HostConfig::from_toml_str(r#"
//!     listen = "127.0.0.1:7070"
//!
//!     [[backends]]
//!     name = "memory"
//!     storage_config = { type = "local" }
//! "#, std::path::Path::new(".")).unwrap();
//! assert_eq!(config.backends[0].name, "memory");
//!
//! let err = HostConfig::from_toml_str(r#"
//!     [[backends]]
//!     name = "disk"
//!     storage_config = { type = "local", path = "" }
//! "#, std::path::Path::new(".")).unwrap_err();
//! assert!(err.to_string().starts_with("backends[0].storage_config.path: "));
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;
use toml::{Table, Value};

use storage_host::config::{BackendConfig, StorageConfig};
use storage_host::manager::DEFAULT_OP_TIMEOUT;
use storage_host::policy::StoragePolicy;

/// The listen address when the config names none: loopback only, so a host
/// started without thinking about it is not reachable from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// The request body bound when the config names none (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The largest `max_body_size` accepted (1 GiB): every value is held in memory
/// whole while it crosses the plugin boundary.
pub const MAX_MAX_BODY_BYTES: usize = 1024 * 1024 * 1024;

/// How long in-flight requests may take to finish after a shutdown signal,
/// when the config names no `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's headers, from the first
/// byte of the request, when the config names no `header_timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may sit with no request before it is closed, when
/// the config names no `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest wait for the next piece of a request body, when the config
/// names no `body_timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server waits for a client to take the next bytes of an
/// answer, when the config names no `send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections served at once, when the config names no
/// `max_connections` (lowered further to fit the process's descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The largest `max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// A configuration error, naming the field it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A field has a wrong value (or should not be there).
    #[error("{field}: {message}")]
    Invalid {
        /// The path of the field, e.g. `backends[1].storage_config.path`.
        field: String,
        /// What is wrong and, where it helps, what is expected.
        message: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The path of the field at fault, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

pub use storage_plugin_api::Secret;

/// Where the API's bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The environment variable of this name.
    Env(String),
    /// This file (its content, trailing newline removed).
    File(PathBuf),
}

/// The API's access control.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Where the token was read from; `None`: the API is open.
    pub source: Option<TokenSource>,
    /// The token every request except `GET /healthz` must present as
    /// `Authorization: Bearer <token>`; `None`: the API is open.
    pub token: Option<Secret>,
}

/// The validated configuration of `storage-host serve` (and of the one-shot
/// commands, which use its plugins, backends and policy).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    /// Address the HTTP API listens on (`listen`). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The `tracing` filter (`log_level`), e.g. `info` or `storage_host=debug,info`.
    pub log_level: String,
    /// A directory of plugin libraries, loaded and watched (`plugins_dir`).
    /// Relative paths in the file are relative to the file's directory.
    pub plugins_dir: Option<PathBuf>,
    /// The backends, in the order of the file (`[[backends]]`).
    pub backends: Vec<BackendConfig>,
    /// The routing policy (`[policy]`); `None` is the manager's default
    /// (enabled backends by priority, failing over).
    pub policy: Option<StoragePolicy>,
    /// Largest accepted request body, in bytes (`max_body_size`).
    pub max_body_bytes: usize,
    /// Bound on one backend operation (`op_timeout`).
    pub op_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM
    /// (`shutdown_timeout`).
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request's headers, counted from
    /// the request's first byte (`header_timeout`). Past it the server answers
    /// 408 and closes the connection.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in progress
    /// (`idle_timeout`): a fresh connection before its first byte, a
    /// keep-alive connection between requests.
    pub idle_timeout: Duration,
    /// The longest wait for the next piece of a request body (`body_timeout`);
    /// past it the request is answered 408.
    pub body_timeout: Duration,
    /// How long the server waits for a client to take the next bytes of an
    /// answer (`send_timeout`): a client that stops reading loses its
    /// connection.
    pub send_timeout: Duration,
    /// The most connections served at once (`max_connections`). At the
    /// limit, the connection idle the longest is closed to make room; when
    /// none is idle, new connections wait in the listen queue.
    pub max_connections: usize,
    /// The bearer token (`[auth]`).
    pub auth: AuthConfig,
    /// Things that are allowed but unwise (an inline secret, a token file
    /// others can read), to log once logging is set up.
    pub warnings: Vec<String>,
}

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

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A TOML table being read: every field read is removed, so what is left at
/// [`finish`](Fields::finish) is unknown (usually a typo) and reported.
struct Fields {
    path: String,
    table: Table,
    known: Vec<&'static str>,
}

impl Fields {
    fn new(path: String, table: Table) -> Self {
        Fields {
            path,
            table,
            known: Vec::new(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError::invalid(
            self.path(key),
            format!("expected {expected}, found {}", kind(found)),
        )
    }

    fn opt_str(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", &v)),
        }
    }

    fn str(&mut self, key: &'static str) -> Result<String> {
        self.opt_str(key)?
            .ok_or_else(|| ConfigError::invalid(self.path(key), "missing (required)"))
    }

    fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong(key, "true or false", &v)),
        }
    }

    fn opt_u32(&mut self, key: &'static str) -> Result<Option<u32>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => u32::try_from(n).map(Some).map_err(|_| {
                ConfigError::invalid(
                    self.path(key),
                    format!("{n} is out of range (0 to {})", u32::MAX),
                )
            }),
            Some(v) => Err(self.wrong(key, "a non-negative integer", &v)),
        }
    }

    fn opt_u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => u64::try_from(n)
                .map(Some)
                .map_err(|_| ConfigError::invalid(self.path(key), format!("{n} is negative"))),
            Some(v) => Err(self.wrong(key, "a non-negative integer", &v)),
        }
    }

    fn opt_table(&mut self, key: &'static str) -> Result<Option<Fields>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(Fields::new(self.path(key), t))),
            Some(v) => Err(self.wrong(key, "a table", &v)),
        }
    }

    fn names(&mut self, key: &'static str) -> Result<Vec<String>> {
        let field = self.path(key);
        match self.take(key) {
            None => Err(ConfigError::invalid(
                field,
                "missing (required): a list of backend names",
            )),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ConfigError::invalid(
                        format!("{field}[{i}]"),
                        format!("expected a backend name (a string), found {}", kind(&other)),
                    )),
                })
                .collect(),
            Some(v) => Err(ConfigError::invalid(
                field,
                format!("expected a list of backend names, found {}", kind(&v)),
            )),
        }
    }

    /// Fails on the first field that was never read.
    fn finish(self) -> Result<()> {
        if let Some(key) = self.table.keys().next() {
            let mut known = self.known.clone();
            known.sort_unstable();
            known.dedup();
            return Err(ConfigError::invalid(
                self.path(key),
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
        Ok(())
    }
}

fn auth_config(mut t: Fields, base: &Path, warnings: &mut Vec<String>) -> Result<AuthConfig> {
    if t.take("token").is_some() {
        return Err(ConfigError::invalid(
            t.path("token"),
            "a token is never read from the config file (it would end up in backups and version control); use token_env = \"VAR\" or token_file = \"/path\"",
        ));
    }
    let env = t.opt_str("token_env")?;
    let file = t.opt_str("token_file")?;
    let (source, token) = match (env, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                t.path("token_file"),
                "give either token_env or token_file, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                t.path("token_env"),
                "[auth] needs token_env or token_file; remove [auth] to run without a token",
            ));
        }
        (Some(var), None) => {
            let value = std::env::var(&var).map_err(|e| {
                ConfigError::invalid(
                    t.path("token_env"),
                    format!("environment variable {var}: {e}"),
                )
            })?;
            (TokenSource::Env(var), value)
        }
        (None, Some(file)) => {
            let path = resolve(base, &file);
            let value = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    t.path("token_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if let Some(how) = readable_by_others(&path) {
                warnings.push(format!(
                    "auth.token_file: {} is {how}; run `chmod go-r` on it",
                    path.display()
                ));
            }
            (
                TokenSource::File(path),
                value.trim_end_matches(['\r', '\n']).to_string(),
            )
        }
    };
    if token.trim().is_empty() {
        return Err(ConfigError::invalid(
            t.path(match source {
                TokenSource::Env(_) => "token_env",
                TokenSource::File(_) => "token_file",
            }),
            "the token is empty",
        ));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::invalid(
            t.path(match source {
                TokenSource::Env(_) => "token_env",
                TokenSource::File(_) => "token_file",
            }),
            "the token contains spaces or control characters; it must fit in an Authorization header",
        ));
    }
    if token.len() < 16 {
        warnings.push("auth: the token is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)".into());
    }
    t.finish()?;
    Ok(AuthConfig {
        source: Some(source),
        token: Some(Secret::new(token)),
    })
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 != 0 {
        Some("readable by every user")
    } else if mode & 0o040 != 0 {
        Some("readable by its group")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<&'static str> {
    None
}

/// Backend names appear in policies, metrics labels and URLs: keep them plain.
fn check_name(field: &str, name: &str) -> Result<()> {
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

fn backend_config(mut t: Fields, base: &Path, warnings: &mut Vec<String>) -> Result<BackendConfig> {
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

fn storage_config(mut t: Fields, base: &Path, warnings: &mut Vec<String>) -> Result<StorageConfig> {
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
fn check_data_dir(field: &str, dir: &Path) -> Result<()> {
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

/// A string value, or `{ env = "NAME" }` / `{ file = "PATH" }` standing for one.
fn secret_or_string(
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

fn inline_secret_warning(field: &str) -> String {
    format!(
        "{field}: a secret is written inline in the config file; prefer {{ env = \"NAME\" }} or {{ file = \"PATH\" }}"
    )
}

/// Resolves `{ env = "NAME" }` or `{ file = "PATH" }`; `None` for any other table.
fn indirection(field: &str, t: &Table, base: &Path) -> Result<Option<String>> {
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
fn url_with_password(s: &str) -> bool {
    let Some(scheme_end) = s.find("://") else {
        return false;
    };
    let rest = &s[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => authority[..at]
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty()),
        None => false,
    }
}

/// A custom plugin's config as JSON, with `{ env }` / `{ file }` resolved.
fn to_json(field: &str, v: Value, base: &Path, warnings: &mut Vec<String>) -> Result<Json> {
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

fn policy_config(mut t: Fields, backends: &[BackendConfig]) -> Result<StoragePolicy> {
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let known = |field: String, name: &str| -> Result<String> {
        if names.contains(&name) {
            Ok(name.to_string())
        } else {
            Err(ConfigError::invalid(
                field,
                format!(
                    "no backend is named {name:?}; the backends are: {}",
                    names.join(", ")
                ),
            ))
        }
    };
    let ty = t.str("type")?;
    let list = |t: &mut Fields| -> Result<Vec<String>> {
        let field = t.path("backends");
        let list = t.names("backends")?;
        if list.is_empty() {
            return Err(ConfigError::invalid(
                field,
                "is empty: name at least one backend",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, n) in list.iter().enumerate() {
            known(format!("{field}[{i}]"), n)?;
            if !seen.insert(n.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{field}[{i}]"),
                    format!("{n:?} is listed twice"),
                ));
            }
        }
        Ok(list)
    };
    let policy = match ty.as_str() {
        "always_use" => {
            let b = t.str("backend")?;
            StoragePolicy::AlwaysUse(known(t.path("backend"), &b)?)
        }
        "first_available" => StoragePolicy::FirstAvailable(list(&mut t)?),
        "redundant" => StoragePolicy::Redundant(list(&mut t)?),
        "round_robin" => StoragePolicy::RoundRobin(list(&mut t)?),
        "prefer_cache" => {
            let cache = t.str("cache")?;
            let cache = known(t.path("cache"), &cache)?;
            let primary = t.str("primary")?;
            let primary = known(t.path("primary"), &primary)?;
            if cache == primary {
                return Err(ConfigError::invalid(
                    t.path("primary"),
                    "is the same backend as the cache; name two different backends",
                ));
            }
            StoragePolicy::PreferCache { cache, primary }
        }
        other => {
            return Err(ConfigError::invalid(
                t.path("type"),
                format!(
                    "unknown policy {other:?}; expected always_use, first_available, prefer_cache, redundant or round_robin"
                ),
            ));
        }
    };
    t.finish()?;
    Ok(policy)
}

/// `4194304`, `"4MiB"`, `"512 KiB"`, `"1MB"`.
fn parse_size(v: &Value) -> Result<u64, String> {
    let s = match v {
        Value::Integer(n) => return u64::try_from(*n).map_err(|_| format!("{n} is negative")),
        Value::String(s) => s.trim(),
        other => {
            return Err(format!(
                "expected a size like \"4MiB\" or a number of bytes, found {}",
                kind(other)
            ));
        }
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a size; expected e.g. \"4MiB\", \"512KiB\" or a number of bytes")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `"30s"`, `"500ms"`, `"2m"`; a bare integer is milliseconds.
fn parse_duration(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::Integer(n) if *n > 0 => Duration::from_millis(*n as u64),
        Value::Integer(n) => return Err(format!("{n} must be positive")),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().map_err(|_| {
                format!("{s:?} is not a duration; expected e.g. \"500ms\", \"30s\" or \"2m\"")
            })?;
            match unit.trim() {
                "ms" => Duration::from_millis(n),
                "s" | "" => Duration::from_secs(n),
                "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
                other => return Err(format!("unknown unit {other:?} in {s:?}; use ms, s or m")),
            }
        }
        other => {
            return Err(format!(
                "expected a duration like \"30s\", found {}",
                kind(other)
            ));
        }
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    if d > Duration::from_secs(3600) {
        return Err(format!("{d:?} is longer than the limit of one hour"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostConfig> {
        HostConfig::from_toml_str(s, Path::new("/tmp"))
    }

    fn field_of(s: &str) -> String {
        match parse(s) {
            Ok(_) => panic!("accepted:\n{s}"),
            Err(e) => e
                .field()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string()),
        }
    }

    const MEM: &str = "[[backends]]\nname = \"m\"\nstorage_config = { type = \"local\" }\n";

    #[test]
    fn defaults() {
        let c = parse(MEM).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.op_timeout, DEFAULT_OP_TIMEOUT);
        assert!(c.auth.token.is_none() && c.policy.is_none() && c.plugins_dir.is_none());
        assert_eq!(
            c.backends[0].storage_config,
            StorageConfig::Local { path: None }
        );
        assert!(c.backends[0].enabled);
    }

    #[test]
    fn full() {
        let c = parse(
            r#"
            listen = "0.0.0.0:0"
            log_level = "storage_host=debug,warn"
            max_body_size = "1MiB"
            op_timeout = "250ms"
            shutdown_timeout = 5

            [policy]
            type = "prefer_cache"
            cache = "m"
            primary = "d"

            [[backends]]
            name = "m"
            storage_config = { type = "local" }

            [[backends]]
            name = "d"
            priority = 2
            enabled = false
            [backends.storage_config]
            type = "local"
            path = "data"

            [[backends]]
            name = "r"
            [backends.storage_config]
            type = "custom"
            plugin_name = "redis"
            config = { url = "redis://127.0.0.1:6379", ttl = 5, nested = { a = [1, 2.5] } }
            "#,
        )
        .unwrap();
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.op_timeout, Duration::from_millis(250));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(5));
        assert_eq!(
            c.policy,
            Some(StoragePolicy::PreferCache {
                cache: "m".into(),
                primary: "d".into()
            })
        );
        assert_eq!(
            c.backends[1].storage_config,
            StorageConfig::Local {
                path: Some("/tmp/data".into())
            }
        );
        assert!(!c.backends[1].enabled);
        assert_eq!(c.backends[1].priority, 2);
        assert_eq!(
            c.backends[2].storage_config,
            StorageConfig::Custom {
                plugin_name: "redis".into(),
                config: serde_json::json!({"url": "redis://127.0.0.1:6379", "ttl": 5, "nested": {"a": [1, 2.5]}}),
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of("listen = \"nowhere\"\n"), "listen");
        assert_eq!(field_of(&format!("log_level = \"[\"\n{MEM}")), "log_level");
        assert_eq!(
            field_of(&format!("max_body_size = \"4 parsecs\"\n{MEM}")),
            "max_body_size"
        );
        assert_eq!(
            field_of(&format!("op_timeout = \"0s\"\n{MEM}")),
            "op_timeout"
        );
        assert_eq!(
            field_of(&format!("plugins_dir = \"/nonexistent-s8\"\n{MEM}")),
            "plugins_dir"
        );
        assert_eq!(field_of(&format!("listne = \"x\"\n{MEM}")), "listne");
        assert_eq!(field_of(""), "backends");
        assert_eq!(
            field_of("[[backends]]\nstorage_config = { type = \"local\" }\n"),
            "backends[0].name"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[[backends]]\nname = \"m\"\nstorage_config = {{ type = \"local\" }}\n"
            )),
            "backends[1].name"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"local\", path = 5 }}\n"
            )),
            "backends[1].storage_config.path"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"local\", path = \"\" }}\n"
            )),
            "backends[1].storage_config.path"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"locl\" }}\n"
            )),
            "backends[1].storage_config.type"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"local\", pth = \"a\" }}\n"
            )),
            "backends[1].storage_config.pth"
        );
        assert_eq!(
            field_of(
                "[[backends]]\nname = \"x\"\npriority = -1\nstorage_config = { type = \"local\" }\n"
            ),
            "backends[0].priority"
        );
        assert_eq!(
            field_of("[[backends]]\nname = \"a b\"\nstorage_config = { type = \"local\" }\n"),
            "backends[0].name"
        );
        assert_eq!(
            field_of(
                "[[backends]]\nname = \"a\"\nstorage_config = { type = \"local\", path = \"d\" }\n[[backends]]\nname = \"b\"\nstorage_config = { type = \"local\", path = \"d\" }\n"
            ),
            "backends[1].storage_config.path"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[policy]\ntype = \"always_use\"\nbackend = \"nope\"\n"
            )),
            "policy.backend"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[policy]\ntype = \"first_available\"\nbackends = [\"m\", \"z\"]\n"
            )),
            "policy.backends[1]"
        );
        assert_eq!(
            field_of(&format!("{MEM}[policy]\ntype = \"fastest\"\n")),
            "policy.type"
        );
        assert_eq!(
            field_of(&format!("{MEM}[auth]\ntoken = \"hunter2\"\n")),
            "auth.token"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[auth]\ntoken_env = \"S8_SURELY_UNSET_VAR\"\n"
            )),
            "auth.token_env"
        );
        assert_eq!(
            field_of(&format!(
                "{MEM}[auth]\ntoken_file = \"/nonexistent-s8/token\"\n"
            )),
            "auth.token_file"
        );
        let e = parse(
            "[[backends]]\nname = \"x\"\nstorage_config = { type = \"local\", path = \"\" }\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("backends[0].storage_config.path: "),
            "{e}"
        );
        assert!(matches!(parse("listen = "), Err(ConfigError::Syntax(_))));
    }

    #[test]
    fn secrets_come_from_elsewhere() {
        let dir = std::env::temp_dir().join(format!("s8-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "0123456789abcdef-token\n").unwrap();
        std::fs::write(dir.join("anon"), "anon-from-file\n").unwrap();
        let c = HostConfig::from_toml_str(
            "[auth]\ntoken_file = \"token\"\n[[backends]]\nname = \"s\"\n[backends.storage_config]\ntype = \"supabase\"\nurl = \"http://127.0.0.1:3000\"\nanon_key = { file = \"anon\" }\n",
            &dir,
        )
        .unwrap();
        assert_eq!(
            c.auth.token.as_ref().unwrap().expose(),
            "0123456789abcdef-token"
        );
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "Debug hides the token"
        );
        match &c.backends[0].storage_config {
            StorageConfig::Supabase {
                anon_key, schema, ..
            } => {
                assert_eq!(anon_key, "anon-from-file");
                assert_eq!(schema, "public");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !c.warnings.iter().any(|w| w.contains("inline")),
            "{:?}",
            c.warnings
        );

        let c = parse("[[backends]]\nname = \"r\"\n[backends.storage_config]\ntype = \"custom\"\nplugin_name = \"redis\"\nconfig = { password = \"pw\" }\n").unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with("backends[0].storage_config.config.password")),
            "{:?}",
            c.warnings
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_secret_warning_fires_for_secrets_only() {
        for name in [
            "password",
            "redis_password",
            "api_key",
            "apiKey",
            "anon_key",
            "service_role_key",
            "privateKey",
            "access_token",
            "client_secret",
            "credentials",
            "auth",
            "key",
            "db_pass",
        ] {
            assert!(looks_like_secret_name(name), "{name}");
        }
        for name in [
            "key_prefix",
            "keyPrefix",
            "keyspace",
            "max_keys",
            "auth_mode",
            "monkey",
            "url",
            "ttl_seconds",
            "timeout_ms",
            "author",
        ] {
            assert!(!looks_like_secret_name(name), "{name}");
        }
        let warnings = |config: &str| {
            parse(&format!(
                "[[backends]]\nname = \"r\"\n[backends.storage_config]\ntype = \"custom\"\nplugin_name = \"redis\"\nconfig = {{ {config} }}\n"
            ))
            .unwrap()
            .warnings
        };
        assert!(
            warnings("url = \"redis://127.0.0.1:6379\", key_prefix = \"app:cache:\"").is_empty(),
            "key_prefix is not a secret"
        );
        let w = warnings("url = \"redis://:hunter2@127.0.0.1:6379\"");
        assert!(
            w.len() == 1 && w[0].starts_with("backends[0].storage_config.config.url:"),
            "a password in a URL is a secret: {w:?}"
        );
        assert!(!w[0].contains("hunter2"), "{w:?}");
        assert_eq!(warnings("api_key = \"abc\"").len(), 1);
    }

    #[test]
    fn connection_limits_and_timeouts() {
        let c = parse(MEM).unwrap();
        assert_eq!(
            (
                c.header_timeout,
                c.idle_timeout,
                c.body_timeout,
                c.max_connections
            ),
            (
                DEFAULT_HEADER_TIMEOUT,
                DEFAULT_IDLE_TIMEOUT,
                DEFAULT_BODY_TIMEOUT,
                DEFAULT_MAX_CONNECTIONS
            )
        );
        assert_eq!(c.send_timeout, DEFAULT_SEND_TIMEOUT);
        let c = parse(&format!(
            "header_timeout = \"2s\"\nidle_timeout = \"1m\"\nbody_timeout = \"500ms\"\nsend_timeout = \"3s\"\nmax_connections = 10\n{MEM}"
        ))
        .unwrap();
        assert_eq!(c.send_timeout, Duration::from_secs(3));
        assert_eq!(
            (
                c.header_timeout,
                c.idle_timeout,
                c.body_timeout,
                c.max_connections
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_millis(500),
                10
            )
        );
        for (field, value) in [
            ("header_timeout", "\"0s\""),
            ("idle_timeout", "\"2h\""),
            ("body_timeout", "\"soon\""),
            ("send_timeout", "-1"),
            ("max_connections", "0"),
            ("max_connections", "\"many\""),
        ] {
            assert_eq!(field_of(&format!("{field} = {value}\n{MEM}")), field);
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storage-host.toml");
        let c = HostConfig::from_file(&path).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size(&Value::String("4MiB".into())), Ok(4 << 20));
        assert_eq!(parse_size(&Value::String("512 KiB".into())), Ok(512 << 10));
        assert_eq!(parse_size(&Value::String("1MB".into())), Ok(1_000_000));
        assert_eq!(parse_size(&Value::Integer(10)), Ok(10));
        assert!(parse_size(&Value::String("MiB".into())).is_err());
        assert_eq!(
            parse_duration(&Value::String("2m".into())),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration(&Value::String("30s".into())),
            Ok(Duration::from_secs(30))
        );
        assert!(parse_duration(&Value::String("2h".into())).is_err());
    }
}
