//! The storage plugin host: one storage interface over many backends.
//!
//! - [`StorageRegistry`] holds plugins by name: registered in-process, built
//!   in, or loaded from dynamic libraries ([`loader`]).
//! - [`StorageManager`] creates backends from plugins and routes
//!   get/put/delete/list over them with a [`StoragePolicy`], keeping
//!   [`StorageMetrics`].
//! - Backends can be hot-swapped to a new plugin version under traffic
//!   ([`StorageManager::swap_plugin`]).
//!
//! Users normally reach this crate through the `p2p_ai_agents::storage` facade.

#![warn(missing_docs)]

pub mod config;
mod consistency;
pub mod error;
pub mod health;
mod load_error;
pub mod loader;
pub mod manager;
pub mod metrics;
pub mod plugin;
pub mod policy;
pub mod registry;
mod slot;
pub mod storage;
pub mod watch;

pub use config::{BackendConfig, StorageConfig};
pub use error::{BackendFailure, ManagerError};
pub use health::Health;
pub use manager::{
    BackendStatus, LOCK_STRIPES, MAX_LIST_PAGE, MAX_STALE_KEYS, RepairReport, StorageManager,
    SwapOutcome,
};
pub use metrics::{ConsistencyMetrics, StorageMetrics};
pub use plugin::{PluginError, PluginInfo, PluginSource, StoragePlugin};
pub use policy::StoragePolicy;
pub use registry::{BuiltinPlugin, StorageRegistry};

#[doc(hidden)]
pub use inventory as __inventory;
pub use storage::{KeyPage, Storage, StorageError};
