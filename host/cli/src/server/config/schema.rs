//! The validated configuration's types ([`HostConfig`], [`AuthConfig`],
//! [`TokenSource`]) and the defaults and limits of its fields.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use storage_host::config::BackendConfig;
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
