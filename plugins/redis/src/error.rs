//! From the redis crate's errors to the plugin API's: the kind decides how
//! the host routes (an `Unavailable` backend is failed over and circuit-broken),
//! the message tells a person which operation failed and what to do.

use std::time::Duration;

use redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};
use storage_plugin_api::{Error, ErrorKind, ShownKey};

/// What an error means for retries and routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Refused connection: the server is not listening. Retried at most once
    /// (to get past a connection the manager had already given up on).
    Refused,
    /// Worth another attempt: a dropped connection, an I/O timeout, a server
    /// that is loading its data set or failing over.
    Transient,
    /// Retrying cannot help (bad credentials, a wrong kind of value, ...).
    Permanent,
}

/// Classifies `e` for the retry loop.
pub(crate) fn classify(e: &RedisError) -> Class {
    if is_tls_refusal(e) {
        return Class::Permanent;
    }
    if e.is_connection_refusal() {
        return Class::Refused;
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
        return Class::Transient;
    }
    match e.kind() {
        RedisKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown,
        ) => Class::Transient,
        _ => Class::Permanent,
    }
}

/// Whether `e` is a TLS handshake failure retrying cannot fix (an untrusted
/// or mismatched certificate, a server that insists on a client
/// certificate). rustls reports these inside an I/O error, and the redis
/// crate does not expose the inner error, so only its text tells them apart
/// from a dropped connection.
fn is_tls_refusal(e: &RedisError) -> bool {
    if !e.is_io_error() {
        return false;
    }
    let s = e.to_string();
    [
        "invalid peer certificate",
        "received fatal alert",
        "peer is incompatible",
    ]
    .iter()
    .any(|needle| s.contains(needle))
}

/// Where an error happened, for the message.
pub(crate) struct Context<'a> {
    /// `get`, `put`, `delete`, `list`, `connect`.
    pub op: &'static str,
    /// The key (or listed prefix) as the host named it; `None` for `connect`.
    pub key: Option<&'a str>,
    /// The server, as a redacted URL.
    pub target: &'a str,
    /// Attempts made (1 + retries).
    pub attempts: u32,
}

impl Context<'_> {
    fn what(&self) -> String {
        match self.key {
            Some(k) if self.op == "list" => {
                format!("{} of keys starting with {}", self.op, ShownKey::new(k))
            }
            Some(k) => format!("{} of key {}", self.op, ShownKey::new(k)),
            None => self.op.to_string(),
        }
    }

    fn tries(&self) -> String {
        if self.attempts > 1 {
            format!(" (after {} attempts)", self.attempts)
        } else {
            String::new()
        }
    }
}

/// The plugin error for `e`, raised while doing `ctx`. `shown` is `e`'s text
/// with the configuration's secrets scrubbed out: only the redis crate's
/// words are scrubbed, never ours (a short password would cut holes in them).
pub(crate) fn from_redis(e: &RedisError, shown: &str, ctx: &Context<'_>) -> Error {
    let (what, target, tries) = (ctx.what(), ctx.target, ctx.tries());
    // NOAUTH / WRONGPASS arrive as server errors the redis crate has no kind for.
    let code = e.code().unwrap_or_default();
    match e.kind() {
        RedisKind::AuthenticationFailed => Error::permission_denied(format!(
            "redis: authentication to {target} failed during {what}: the server rejected the user/password in `url` ({shown}); fix the password (redis://:PASSWORD@host or redis://USER:PASSWORD@host), or remove it if the server has none"
        )),
        _ if code == "NOAUTH" || code == "WRONGPASS" => Error::permission_denied(format!(
            "redis: {target} refused {what}: it requires authentication ({shown}); put the password in `url` (redis://:PASSWORD@host)"
        )),
        RedisKind::Server(ServerErrorKind::NoPerm) => Error::permission_denied(format!(
            "redis: {target} refused {what}: the ACL user in `url` lacks permission ({shown}); grant it GET/SET/DEL/SCAN on the key prefix"
        )),
        _ if is_tls_refusal(e) => Error::invalid_config(format!(
            "redis: the TLS handshake with {target} failed during {what}: {shown}; if the server uses a private CA or a self-signed certificate, set `tls_ca_file` to its PEM file, and check that the host name in `url` is one the certificate names"
        )),
        RedisKind::InvalidClientConfig => Error::invalid_config(format!(
            "redis: cannot use {target} for {what}: {shown}; check `url` and `tls_ca_file`"
        )),
        _ if code == "OOM" => Error::unavailable(format!(
            "redis: {target} is out of memory and refused {what} ({shown}); raise maxmemory or set an eviction policy"
        )),
        RedisKind::Server(ServerErrorKind::ReadOnly) => Error::unavailable(format!(
            "redis: {target} is a read-only replica and refused {what} ({shown}); point `url` at the primary"
        )),
        _ if code == "WRONGTYPE" => Error::other(format!(
            "redis: {what} on {target} failed: the Redis key holds a non-string value written by something else ({shown}); use a `key_prefix` no other application writes under"
        )),
        _ => match classify(e) {
            Class::Refused => Error::unavailable(format!(
                "redis: cannot connect to {target} for {what}{tries}: {shown}; is the server running and `url` right?"
            )),
            Class::Transient => Error::unavailable(format!(
                "redis: {what} on {target} failed{tries}: {shown}; the server is unreachable, restarting or overloaded, retry later"
            )),
            Class::Permanent => Error::other(format!("redis: {what} on {target} failed: {shown}")),
        },
    }
}

/// The error for an operation that ran out of its time budget.
pub(crate) fn timed_out(ctx: &Context<'_>, timeout: Duration) -> Error {
    Error::unavailable(format!(
        "redis: {} on {} did not finish within {} ms{}; the server is unreachable or slow (raise `timeout_ms` if it is just slow)",
        ctx.what(),
        ctx.target,
        timeout.as_millis(),
        ctx.tries()
    ))
}

/// Whether `e` is a failed connection handshake that the connection manager
/// caches: it only reconnects by itself after I/O errors, so after an
/// authentication failure the manager must be replaced for a later fix of
/// the server's password to take effect.
pub(crate) fn poisons_connection(e: &RedisError) -> bool {
    e.kind() == RedisKind::AuthenticationFailed
}

/// Whether an error of this kind means the server is out of reach (as
/// opposed to a server that answered with a refusal).
pub(crate) fn is_unreachable(e: &Error) -> bool {
    e.kind() == ErrorKind::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            op: "get",
            key: Some("k"),
            target: "redis://h:1",
            attempts: 1,
        }
    }

    #[test]
    fn io_errors_are_unavailable() {
        let refused: RedisError =
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert_eq!(classify(&refused), Class::Refused);
        let e = from_redis(&refused, &refused.to_string(), &ctx());
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(
            e.message().contains("get of key \"k\"") && e.message().contains("redis://h:1"),
            "{e}"
        );
        let reset: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(classify(&reset), Class::Transient);
        assert_eq!(
            from_redis(&reset, &reset.to_string(), &ctx()).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn auth_is_permission_denied() {
        let e: RedisError = (
            RedisKind::AuthenticationFailed,
            "Password authentication failed",
        )
            .into();
        assert_eq!(classify(&e), Class::Permanent);
        assert!(poisons_connection(&e));
        let e = from_redis(&e, &e.to_string(), &ctx());
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("authentication"), "{e}");
    }

    #[test]
    fn long_keys_are_cut() {
        let key = "x".repeat(500);
        let c = Context {
            key: Some(&key),
            ..ctx()
        };
        let e = timed_out(&c, Duration::from_millis(5));
        assert!(
            e.message().contains("500 bytes") && e.message().len() < 400,
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }
}
