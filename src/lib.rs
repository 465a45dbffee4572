//! P2P AI Agents: the storage plugin system.
//!
//! Everything lives under [`storage`]:
//!
//! ```
//! use p2p_ai_agents::storage::{BackendConfig, StorageConfig, StorageManager, StoragePolicy};
//! ```
//!
//! The implementation is split into crates that follow the architecture
//! (see ARCHITECTURE.md): `storage-plugin-api` (the ABI-stable interface
//! plugins are built against), `storage-host` (registry, manager, policies,
//! loader, watcher, metrics), and one crate per plugin under `plugins/`. The
//! `storage-host` program (CLI, HTTP API, TOML config) is its own crate,
//! `storage-host-cli`, which this facade does not depend on: embedding the
//! storage brings no HTTP server, CLI parser or log subscriber.

#![warn(missing_docs)]

// The built-in plugins `StorageManager::new()` offers: `local`, and the
// Supabase and Redis plugins with the `storage-supabase` / `storage-redis`
// features. The core links no plugin; the product assembled here does.
storage_host::builtin_plugin!(storage_local::LocalPlugin);
#[cfg(feature = "storage-supabase")]
storage_host::builtin_plugin!(storage_supabase::SupabasePlugin);
#[cfg(feature = "storage-redis")]
storage_host::builtin_plugin!(storage_redis::RedisPlugin);

/// One storage interface over many backends, with plugins.
pub mod storage {
    pub use storage_host::{
        BackendConfig, BackendFailure, BackendStatus, ConsistencyMetrics, Health, KeyPage,
        MAX_LIST_PAGE, ManagerError, PluginError, PluginInfo, PluginSource, RepairReport,
        StorageConfig, StorageManager, StorageMetrics, StoragePlugin, StoragePolicy,
        StorageRegistry, SwapOutcome,
    };
    pub use storage_host::{BuiltinPlugin, builtin_plugin};
    pub use storage_host::{config, health, loader, metrics, policy, watch};

    /// The plugin trait and its errors (`storage::plugin::{StoragePlugin, PluginError}`).
    pub mod plugin {
        pub use storage_host::plugin::*;
        pub use storage_host::registry::StorageRegistry;
    }

    /// The storage trait every backend implements, and the local plugin.
    pub mod local {
        pub use storage_host::storage::{Storage, StorageError};
        pub use storage_local::{LocalConfig, LocalPlugin, MAX_KEY_LEN, MAX_VALUE_LEN};
    }

    /// The ABI-stable interface for plugins built out of tree.
    pub use storage_plugin_api as plugin_api;
}
