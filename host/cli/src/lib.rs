//! The `storage-host` program on top of the `storage-host` core library.
//!
//! The core (`storage_host`: registry, manager, policies, loader, watcher,
//! metrics) has no HTTP server, CLI parser, TOML parser or log subscriber;
//! this crate adds them:
//!
//! - [`server`]: `storage-host serve`, the host as a service: the TOML
//!   config, the HTTP API and its accept loop, logging setup.
//! - the `storage-host` binary (`src/main.rs`): the command line (`serve`,
//!   one-shot `get`/`put`/`delete`/`list`, `plugins inspect|list|watch`).

#![warn(missing_docs)]

pub mod server;

// The program's built-in plugins: `local`, and `supabase` / `redis` with the
// features of the same names (the core links none).
storage_host::builtin_plugin!(storage_local::LocalPlugin);
#[cfg(feature = "supabase")]
storage_host::builtin_plugin!(storage_supabase::SupabasePlugin);
#[cfg(feature = "redis")]
storage_host::builtin_plugin!(storage_redis::RedisPlugin);
