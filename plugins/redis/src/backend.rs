//! The Redis backend: one managed, multiplexed connection shared by every
//! operation, a retry loop bounded by `timeout_ms`, and the key namespace.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError, RedisResult};
use storage_plugin_api::{Backend, Error};
use tokio::time::Instant;

use crate::config::{RedisConfig, Secrets};
use crate::error::{self, Class, Context};
use crate::keys::Namespace;
use crate::limits;
use crate::runtime;

/// Keys asked for per `SCAN` round trip (a hint to the server).
const SCAN_COUNT: u64 = 1_000;
/// Delay before the second retry; doubled for each one after, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A `redis` backend instance.
///
/// Created by [`RedisPlugin::create`](crate::RedisPlugin); cheap to share.
/// Every operation first checks the key and value against
/// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) and [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN)
/// (a refusal sends nothing), then runs on the plugin's own runtime,
/// bounded by `timeout_ms`.
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    manager_config: ConnectionManagerConfig,
    /// Swapped for a fresh manager when the current one cannot recover by
    /// itself (see [`error::poisons_connection`]).
    conn: ArcSwap<ConnectionManager>,
    ns: Namespace,
    ttl_seconds: Option<u64>,
    timeout: Duration,
    max_retries: u32,
    /// The server as a redacted URL, for messages and logs.
    target: String,
    secrets: Secrets,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisBackend")
            .field("target", &s.target)
            .field("key_prefix", &s.ns.prefix())
            .field("ttl_seconds", &s.ttl_seconds)
            .field("timeout", &s.timeout)
            .field("max_retries", &s.max_retries)
            .finish()
    }
}

impl RedisBackend {
    /// Validates `config`, builds the client and probes the server once
    /// (bounded by `timeout_ms`).
    ///
    /// A server that answers but refuses us (wrong password, bad TLS setup)
    /// fails creation: that needs a person. A server that cannot be reached
    /// does not: the backend is created, its operations fail as unavailable
    /// (so the host fails over and opens its circuit breaker), and it
    /// reconnects by itself once the server is back. A cache that is down
    /// when the host starts must not keep the host from starting.
    pub async fn connect(config: RedisConfig) -> Result<Self, Error> {
        config.validate()?;
        runtime::spawn("create", Self::connect_on_runtime(config)).await
    }

    async fn connect_on_runtime(config: RedisConfig) -> Result<Self, Error> {
        let secrets = config.secrets();
        let target = config.redacted_url();
        let client = build_client(&config, &secrets)?;
        let manager_config = ConnectionManagerConfig::new()
            // One connection attempt per (re)connect: retrying is the
            // operation's business, within its own deadline. The manager's
            // default (6 retries with backoff) would make every operation
            // wait for seconds while the server is down.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(config.timeout()))
            .set_response_timeout(None);
        let conn = new_manager(&client, &manager_config, &target, &secrets)?;
        let shared = Arc::new(Shared {
            client,
            manager_config,
            conn: ArcSwap::from_pointee(conn),
            ns: Namespace::new(config.key_prefix.clone()),
            ttl_seconds: config.ttl_seconds,
            timeout: config.timeout(),
            max_retries: config.max_retries,
            target,
            secrets,
        });
        match shared
            .query::<String>("connect", None, redis::cmd("PING"))
            .await
        {
            Ok(_) => {
                tracing::info!(target = %shared.target, key_prefix = %shared.ns.prefix(), ttl_seconds = ?shared.ttl_seconds, "redis backend connected")
            }
            Err(e) if error::is_unreachable(&e) => {
                tracing::warn!(target = %shared.target, error = %e, "redis is unreachable; the backend is created and its operations fail as unavailable until the server is back");
                // Start afresh rather than keep the failed connection attempt.
                shared.reset_connection();
            }
            Err(e) => return Err(e),
        }
        Ok(RedisBackend { shared })
    }
}

fn build_client(config: &RedisConfig, secrets: &Secrets) -> Result<Client, Error> {
    let invalid = |e: RedisError| {
        Error::invalid_config(format!(
            "redis: cannot use `url` {}: {}",
            config.redacted_url(),
            secrets.scrub(&e.to_string())
        ))
    };
    #[cfg(feature = "tls")]
    if config.url.starts_with("rediss:") || config.url.starts_with("valkeys:") {
        // rustls needs a crypto provider; with only `ring` compiled in it
        // would pick it by itself, but a host linking this crate may also
        // compile in aws-lc-rs, and then rustls refuses to guess. An
        // already installed provider stays (install_default fails harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(path) = &config.tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::invalid_config(format!(
                    "redis: cannot read `tls_ca_file` '{path}': {e}; give the path of a readable PEM file"
                ))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            return Client::build_with_tls(config.url.as_str(), certs).map_err(invalid);
        }
    }
    Client::open(config.url.as_str()).map_err(invalid)
}

fn new_manager(
    client: &Client,
    config: &ConnectionManagerConfig,
    target: &str,
    secrets: &Secrets,
) -> Result<ConnectionManager, Error> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(|e| {
        Error::other(format!(
            "redis: cannot set up the connection to {target}: {}",
            secrets.scrub(&e.to_string())
        ))
    })
}

/// Every Redis key matching `pattern`, possibly with duplicates (SCAN may
/// return a key twice when the table is resized during the iteration).
async fn scan_all(mut conn: ConnectionManager, pattern: Arc<str>) -> RedisResult<Vec<Vec<u8>>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&*pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

impl Shared {
    /// Runs `attempt` with retries until it succeeds, fails for good, or the
    /// operation's deadline (`timeout_ms` from now) passes.
    async fn execute<T, F, Fut>(
        &self,
        op: &'static str,
        key: Option<&str>,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut attempts = 0u32;
        let mut refusals = 0u32;
        loop {
            attempts += 1;
            let conn = ConnectionManager::clone(&self.conn.load());
            let ctx = Context {
                op,
                key,
                target: &self.target,
                attempts,
            };
            let e = match tokio::time::timeout_at(deadline, attempt(conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => return Err(error::timed_out(&ctx, self.timeout)),
            };
            if error::poisons_connection(&e) {
                self.reset_connection();
            }
            let retry = attempts <= self.max_retries
                && match error::classify(&e) {
                    // The first refusal may come from a connection attempt
                    // made before the server came back (the manager hands
                    // its last failure to the next caller and reconnects
                    // behind it): try once more. A second means it is down.
                    Class::Refused => {
                        refusals += 1;
                        refusals == 1
                    }
                    Class::Transient => true,
                    Class::Permanent => false,
                };
            let delay = backoff(attempts);
            if retry && Instant::now() + delay < deadline {
                tracing::debug!(target = %self.target, op, attempt = attempts, error = %self.secrets.scrub(&e.to_string()), "redis operation failed; retrying");
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                continue;
            }
            if e.is_timeout() {
                // The connection attempt's own bound (also `timeout_ms`)
                // fired rather than the operation's: the same story for the
                // reader, told the same way.
                return Err(error::timed_out(&ctx, self.timeout));
            }
            return Err(error::from_redis(
                &e,
                &self.secrets.scrub(&e.to_string()),
                &ctx,
            ));
        }
    }

    /// Replaces the connection manager with a fresh one that connects on
    /// first use.
    fn reset_connection(&self) {
        match new_manager(
            &self.client,
            &self.manager_config,
            &self.target,
            &self.secrets,
        ) {
            Ok(conn) => self.conn.store(Arc::new(conn)),
            Err(e) => {
                tracing::warn!(target = %self.target, error = %e, "cannot replace the redis connection")
            }
        }
    }

    /// Sends `cmd` (with retries) and decodes the answer as `T`.
    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: Option<&str>,
        cmd: Cmd,
    ) -> Result<T, Error> {
        let cmd = &cmd;
        self.execute(op, key, move |mut conn| async move {
            cmd.query_async::<T>(&mut conn).await
        })
        .await
    }
}

/// The pause before retry number `attempts` (1-based): none before the
/// first, since the connection manager is already reconnecting by then.
fn backoff(attempts: u32) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => BASE_BACKOFF
            .saturating_mul(1 << (n - 2).min(16))
            .min(MAX_BACKOFF),
    }
}

impl Backend for RedisBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        limits::check_key("get", key)?;
        let s = &self.shared;
        let mut cmd = redis::cmd("GET");
        cmd.arg(s.ns.redis_key(key));
        runtime::inline(s.query::<Option<Vec<u8>>>("get", Some(key), cmd)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        limits::check_key("put", key)?;
        limits::check_value(key, value.len())?;
        let s = &self.shared;
        let mut cmd = redis::cmd("SET");
        cmd.arg(s.ns.redis_key(key)).arg(&value[..]);
        if let Some(ttl) = s.ttl_seconds {
            cmd.arg("EX").arg(ttl);
        }
        runtime::inline(s.query::<()>("put", Some(key), cmd)).await
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        limits::check_key("delete", key)?;
        let s = &self.shared;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(s.ns.redis_key(key));
        runtime::inline(s.query::<()>("delete", Some(key), cmd)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        limits::check_key("list", prefix)?;
        let prefix = prefix.to_owned();
        let s = Arc::clone(&self.shared);
        // Spawned: a large listing sorts many keys, which must not run on a
        // host thread.
        runtime::spawn("list", async move {
            let pattern: Arc<str> = s.ns.match_pattern(&prefix).into();
            let raw = s
                .execute("list", Some(&prefix), |conn| scan_all(conn, Arc::clone(&pattern)))
                .await?;
            let mut skipped = 0usize;
            let mut keys = BTreeSet::new();
            for k in &raw {
                match s.ns.host_key(k, &prefix) {
                    Some(k) => {
                        keys.insert(k.to_owned());
                    }
                    None => skipped += 1,
                }
            }
            if skipped > 0 {
                // Only keys that are not UTF-8 get here: another writer's
                // keys under our prefix, which get() could not name anyway.
                tracing::warn!(target = %s.target, key_prefix = %s.ns.prefix(), skipped, "list skipped Redis keys that are not valid UTF-8");
            }
            // A BTreeSet of Strings is in byte order and without the
            // duplicates SCAN may return.
            Ok(keys.into_iter().collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(20));
        assert_eq!(backoff(3), Duration::from_millis(40));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
