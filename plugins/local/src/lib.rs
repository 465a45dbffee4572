//! The `local` storage plugin: an in-memory store, or (with a `path`) a
//! durable store on disk.
//!
//! The durable store ([`DurableBackend`]) keeps `dir/local.redb` (redb),
//! acknowledges a write only once it is fsync'd, shares commits between
//! concurrent writers, and limits keys to [`MAX_KEY_LEN`] bytes and values to
//! [`MAX_VALUE_LEN`] bytes. A directory serves one backend at a time.
//!
//! This crate holds the logic and is linked into the host as a built-in
//! plugin; `cdylib/` beside it is the one-line crate that exports it as a
//! loadable library.

#![warn(missing_docs)]

mod backend;
mod config;
mod durable;
mod memory;

pub use backend::LocalBackend;
pub use config::LocalConfig;
pub use durable::{
    CACHE_SIZE, CommitStats, DurableBackend, DurableOptions, MAX_KEY_LEN, MAX_VALUE_LEN,
    STORE_FILE_NAME,
};
pub use memory::MemoryBackend;

use storage_plugin_api::{Error, Plugin};

/// The `local` plugin.
pub struct LocalPlugin;

/// This plugin's version as it reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Plugin for LocalPlugin {
    type Config = LocalConfig;
    type Backend = LocalBackend;

    const NAME: &'static str = "local";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Local storage: in memory, or durable on disk with `path`";

    fn validate(config: &LocalConfig) -> Result<(), Error> {
        config.validate()
    }

    async fn create(config: LocalConfig) -> Result<LocalBackend, Error> {
        LocalBackend::open(&config).await
    }

    async fn create_with_state(config: LocalConfig, state: Vec<u8>) -> Result<LocalBackend, Error> {
        match config.path {
            // Only the in-memory store needs its contents carried over: a
            // durable store finds them on disk.
            None => Ok(LocalBackend::Memory(MemoryBackend::from_state(&state)?)),
            Some(_) => LocalBackend::open(&config).await,
        }
    }
}
