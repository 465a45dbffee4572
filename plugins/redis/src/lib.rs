//! The `redis` storage plugin: keys and byte values in a Redis server.
//!
//! Meant first as the cache of a `PreferCache` policy (a key prefix per
//! backend, an optional TTL on every put), and usable as a plain store.
//!
//! - One managed, multiplexed connection per backend (the redis crate's
//!   `ConnectionManager`): every operation shares it, and it reconnects by
//!   itself after the server restarts.
//! - The connection lives on a tokio runtime the plugin owns (a cdylib cannot
//!   see the host's). get/put/delete are polled by the host with that runtime
//!   entered; create and list run as tasks on it (see the `runtime` module).
//!   Every operation is bounded by `timeout_ms`, retries included.
//! - A server that cannot be reached, or a timeout, is
//!   [`ErrorKind::Unavailable`](storage_plugin_api::ErrorKind::Unavailable),
//!   which the host fails over on and feeds to its circuit breaker; a rejected
//!   password is [`ErrorKind::PermissionDenied`](storage_plugin_api::ErrorKind::PermissionDenied).
//! - `list(prefix)` walks `SCAN MATCH` with the prefix's glob characters
//!   escaped, strips the namespace prefix and returns the keys sorted.
//!   SCAN visits the whole database, so listing is O(keys in the database):
//!   fine for a cache, slow on a huge shared database.
//! - Keys are limited to [`MAX_KEY_LEN`] bytes (4 KiB, not counting
//!   `key_prefix`, itself at most [`MAX_KEY_PREFIX_LEN`]) and values to
//!   [`MAX_VALUE_LEN`] bytes (64 MiB); both are checked before anything is
//!   sent, and a refusal is
//!   [`ErrorKind::InvalidInput`](storage_plugin_api::ErrorKind::InvalidInput)
//!   naming the key and the limit (see the `limits` module for why these numbers).
//!
//! This crate holds the logic; `cdylib/` beside it exports it as a loadable
//! library (`storage_plugin_api::export_plugin!(storage_redis::RedisPlugin)`).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod config;
mod error;
mod keys;
mod limits;
mod runtime;

pub use backend::RedisBackend;
pub use config::{
    DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, MAX_RETRIES, MAX_TIMEOUT_MS, RedisConfig, redact_url,
};
pub use keys::{Namespace, escape_glob};
pub use limits::{MAX_KEY_LEN, MAX_KEY_PREFIX_LEN, MAX_VALUE_LEN};

use storage_plugin_api::{Error, Plugin};

/// The `redis` plugin. Configuration: [`RedisConfig`].
pub struct RedisPlugin;

/// This plugin's version as it reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Plugin for RedisPlugin {
    type Config = RedisConfig;
    type Backend = RedisBackend;

    const NAME: &'static str = "redis";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Redis: keys in a Redis server under a key prefix, with an optional TTL for cache use";

    fn validate(config: &RedisConfig) -> Result<(), Error> {
        config.validate()
    }

    async fn create(config: RedisConfig) -> Result<RedisBackend, Error> {
        RedisBackend::connect(config).await
    }
}
