//! Property checks for coverage-guided fuzzing.
//!
//! Each `check_*` function takes arbitrary bytes, drives one piece of the
//! host's input handling with them and panics when a property is violated.
//! The cargo-fuzz targets in `fuzz/` are one-line calls to these functions,
//! and `tests/fuzz_corpus.rs` replays the saved corpora through them on stable
//! Rust, so every input fuzzing kept (crashes found included) keeps being
//! checked in CI.
//!
//! What each check asserts is in its doc comment (and, as a table, in
//! `fuzz/README.md`, with what fuzzing found).
//!
//! Inputs that hold two strings separate them with a 0xFF byte, which never
//! occurs in UTF-8; strings are decoded lossily, so every input is usable.

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard, OnceLock};

mod http_request;
mod plugin_config;
mod redis_key;
mod supabase_key;
#[cfg(test)]
mod tests;

pub use http_request::check_http_request;
pub use plugin_config::check_plugin_config;
pub use redis_key::{check_redis_key, redis_glob, scan_matches};
pub use supabase_key::check_supabase_key;

/// A property check: panics when `data` violates the property.
pub type Check = fn(data: &[u8]);

/// The checks by fuzz target name (also the name of its corpus directory,
/// `fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Check)] = &[
    ("plugin_config", check_plugin_config),
    ("supabase_key", check_supabase_key),
    ("redis_key", check_redis_key),
    ("http_request", check_http_request),
];

/// `data` split at its first 0xFF byte; without one, all of it and nothing.
pub(crate) fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

pub(crate) fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A failed check panics while holding a lock; the next input still runs.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime the checks drive async code with.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}
