//! Plugins: the [`StoragePlugin`] trait, its errors, and the adapter that
//! makes an ABI-stable plugin module (loaded from a library, or linked in) a
//! native `StoragePlugin`.
//!
//! Agent code imports `p2p_ai_agents::storage::plugin::{StoragePlugin, PluginError}`
//! (the facade's published path, pinned by `tests/seed_api.rs`).

mod abi;

use std::path::PathBuf;

use async_trait::async_trait;

pub use abi::AbiPlugin;

use crate::config::StorageConfig;
use crate::load_error::LoadError;
use crate::storage::Storage;

/// An error about plugins: finding, registering, configuring, loading them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// No plugin is registered under this name.
    #[error(
        "plugin '{0}' not found; registered plugins are listed by StorageRegistry::list_plugins"
    )]
    PluginNotFound(String),
    /// A plugin is already registered under this name.
    #[error("plugin '{0}' is already registered")]
    PluginAlreadyExists(String),
    /// The plugin (first field) refused the configuration (second field).
    #[error("plugin '{0}': invalid configuration: {1}")]
    InvalidConfig(String, String),
    /// The plugin (first field) failed to create a backend (second field: why).
    #[error("plugin '{0}': initialization failed: {1}")]
    InitializationFailed(String, String),
    /// A plugin library could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Where a registered plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Registered in-process with [`StorageRegistry::register_plugin`](crate::StorageRegistry::register_plugin).
    InProcess,
    /// Linked into the program ([`builtin_plugin!`](crate::builtin_plugin)) and registered by [`StorageRegistry::with_defaults`](crate::StorageRegistry::with_defaults).
    Builtin,
    /// Loaded from a dynamic library.
    Library {
        /// The file the user dropped in.
        path: PathBuf,
        /// The private copy actually mapped (reloads never re-open a path);
        /// it is unlinked once mapped.
        loaded_from: PathBuf,
    },
}

/// A factory of storage backends, registered in a [`StorageRegistry`](crate::StorageRegistry) by name.
#[async_trait]
pub trait StoragePlugin: Send + Sync {
    /// The name configurations refer to.
    fn name(&self) -> &'static str;

    /// One line describing the plugin.
    fn description(&self) -> &'static str;

    /// Creates a backend instance from `config`.
    async fn create(
        &self,
        config: &StorageConfig,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError>;

    /// Checks `config` without side effects.
    fn validate_config(&self, config: &StorageConfig) -> Result<(), PluginError>;

    /// The plugin's version.
    fn version(&self) -> &str {
        "unversioned"
    }

    /// The `storage-plugin-api` version a plugin reached through the ABI was
    /// built against; `None` for plugins implemented natively in-process.
    fn api_version(&self) -> Option<&str> {
        None
    }

    /// Where the plugin came from.
    fn source(&self) -> PluginSource {
        PluginSource::InProcess
    }

    /// Creates a backend that continues from `state` (exported by the instance
    /// it replaces in a hot swap). The default ignores the state.
    async fn create_with_state(
        &self,
        config: &StorageConfig,
        state: Vec<u8>,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError> {
        let _ = state;
        self.create(config).await
    }
}

/// A summary of a registered plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Registered name.
    pub name: String,
    /// Version the plugin reports.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// The `storage-plugin-api` version it was built against (ABI plugins).
    pub api_version: Option<String>,
    /// Where it came from.
    pub source: PluginSource,
}

impl PluginInfo {
    /// Describes `plugin`.
    pub fn of(plugin: &dyn StoragePlugin) -> Self {
        PluginInfo {
            name: plugin.name().to_string(),
            version: plugin.version().to_string(),
            description: plugin.description().to_string(),
            api_version: plugin.api_version().map(str::to_string),
            source: plugin.source(),
        }
    }
}
