//! The `supabase` storage plugin: key-value rows in a PostgreSQL table,
//! reached through Supabase's REST API (PostgREST).
//!
//! The table (`plugins/supabase/sql/storage.sql`):
//! `key text collate "C" primary key, value bytea not null, updated_at timestamptz`,
//! with row-level security enabled.
//!
//! | operation | request |
//! |-----------|---------|
//! | get       | `GET {url}/rest/v1/{table}?select=value&key=eq.{key}` |
//! | put       | `POST {url}/rest/v1/{table}` with `Prefer: resolution=merge-duplicates,return=minimal` (an upsert that sets `updated_at`) |
//! | delete    | `DELETE {url}/rest/v1/{table}?key=eq.{key}` with `Prefer: count=exact`, to detect a delete row-level security blocked |
//! | list      | `GET ...?select=key&key=like.{prefix}*&order=key.asc&limit=1000`, then pages after the last key |
//!
//! Every request carries `apikey` and `Authorization: Bearer` (the
//! service-role key when configured, else the anon key) and
//! `Accept-Profile` / `Content-Profile` naming the schema. Keys are
//! percent-encoded whole; values travel as `bytea` hex (`"\\x..."`).
//! Keys longer than [`MAX_KEY_BYTES`] (or holding NUL) and values larger than
//! [`MAX_VALUE_BYTES`] are refused as
//! [`ErrorKind::InvalidInput`](storage_plugin_api::ErrorKind::InvalidInput)
//! before any request is sent.
//! Network errors, timeouts and 502/503/504/520-524 are retried up to
//! `max_retries` times with exponential backoff and jitter, honouring
//! `Retry-After`; 4xx never is.
//!
//! This crate holds the logic and links into the host as a built-in plugin;
//! `cdylib/` beside it is the one-line crate that exports it as a loadable
//! library. reqwest needs tokio, which a loaded library cannot share with the
//! host, so the plugin owns a small runtime and every operation runs on it
//! (see `runtime.rs`).

#![warn(missing_docs)]

mod backend;
mod client;
mod config;
mod encoding;
mod error;
mod retry;
mod runtime;

pub use backend::SupabaseBackend;
pub use config::{MAX_RETRIES, MAX_TIMEOUT_SECS, Secret, SupabaseConfig};
pub use encoding::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use error::SupabaseError;

use storage_plugin_api::{Error, Plugin};

/// The SQL that creates the table this plugin expects (`public.storage`),
/// with row-level security enabled and the grants Supabase's API roles need.
pub const TABLE_SQL: &str = include_str!("../sql/storage.sql");

/// This plugin's version as it reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `supabase` plugin.
pub struct SupabasePlugin;

impl Plugin for SupabasePlugin {
    type Config = SupabaseConfig;
    type Backend = SupabaseBackend;

    const NAME: &'static str = "supabase";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Supabase: rows of a PostgreSQL table through the project's REST API (PostgREST)";

    fn validate(config: &SupabaseConfig) -> Result<(), Error> {
        config.validate()
    }

    async fn create(config: SupabaseConfig) -> Result<SupabaseBackend, Error> {
        SupabaseBackend::new(&config)
    }
}
