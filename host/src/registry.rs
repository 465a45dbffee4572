//! The registry: plugins by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::loader::{self, LoadReport};
use crate::plugin::{AbiPlugin, PluginError, PluginInfo, PluginSource, StoragePlugin};

/// Plugins by name, in-process ones and ones loaded from libraries alike.
#[derive(Default, Clone)]
pub struct StorageRegistry {
    plugins: BTreeMap<String, Arc<dyn StoragePlugin>>,
}

impl StorageRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the plugins linked into this build: `local`, plus
    /// `supabase` and `redis` when their features are enabled.
    pub fn with_defaults() -> Self {
        let mut r = Self::new();
        for plugin in builtin_plugins() {
            r.register_arc(plugin)
                .expect("built-in plugin names are distinct");
        }
        r
    }

    /// Registers an in-process plugin under its [`name`](StoragePlugin::name).
    pub fn register_plugin(&mut self, plugin: Box<dyn StoragePlugin>) -> Result<(), PluginError> {
        self.register_arc(Arc::from(plugin))
    }

    /// Registers a shared plugin under its name.
    pub fn register_arc(&mut self, plugin: Arc<dyn StoragePlugin>) -> Result<(), PluginError> {
        let name = plugin.name().to_string();
        if self.plugins.contains_key(&name) {
            return Err(PluginError::PluginAlreadyExists(name));
        }
        tracing::debug!(plugin = %name, version = plugin.version(), "plugin registered");
        self.plugins.insert(name, plugin);
        Ok(())
    }

    /// Registers `plugin`, replacing any plugin of the same name; returns the old one.
    pub fn replace_plugin(
        &mut self,
        plugin: Arc<dyn StoragePlugin>,
    ) -> Option<Arc<dyn StoragePlugin>> {
        self.plugins.insert(plugin.name().to_string(), plugin)
    }

    /// Removes a plugin. Backends already created from it keep working.
    pub fn unregister_plugin(&mut self, name: &str) -> Result<Arc<dyn StoragePlugin>, PluginError> {
        self.plugins
            .remove(name)
            .ok_or_else(|| PluginError::PluginNotFound(name.to_string()))
    }

    /// The plugin registered under `name`.
    pub fn get_plugin(&self, name: &str) -> Option<Arc<dyn StoragePlugin>> {
        self.plugins.get(name).cloned()
    }

    /// Every registered plugin, by name.
    pub fn list_plugins(&self) -> Vec<PluginInfo> {
        self.plugins
            .values()
            .map(|p| PluginInfo::of(p.as_ref()))
            .collect()
    }

    /// Loads the plugin library at `path` and registers it.
    pub fn load_plugin(&mut self, path: impl AsRef<Path>) -> Result<PluginInfo, PluginError> {
        let plugin = loader::load_plugin(path.as_ref())?;
        let info = PluginInfo::of(&plugin);
        self.register_arc(Arc::new(plugin))?;
        Ok(info)
    }

    /// Loads and registers every plugin library in `dir`. A file whose plugin
    /// name is already registered is rejected; one bad file never stops the others.
    pub fn load_dir(&mut self, dir: impl AsRef<Path>) -> Result<LoadReport, PluginError> {
        let (plugins, mut report) = loader::load_dir(dir.as_ref())?;
        let mut loaded = Vec::new();
        for (plugin, (path, info)) in plugins.into_iter().zip(report.loaded.drain(..)) {
            match self.register_arc(Arc::new(plugin)) {
                Ok(()) => loaded.push((path, info)),
                Err(e) => report.rejected.push(loader::Rejection {
                    error: loader::LoadError {
                        path: path.clone(),
                        reason: loader::LoadFailure::InitFailed(e.to_string()),
                    },
                    path,
                }),
            }
        }
        report.loaded = loaded;
        Ok(report)
    }
}

impl std::fmt::Debug for StorageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugins.keys()).finish()
    }
}

fn builtin_plugins() -> Vec<Arc<dyn StoragePlugin>> {
    let builtin = |m| Arc::new(AbiPlugin::new(m, PluginSource::Builtin)) as Arc<dyn StoragePlugin>;
    #[allow(unused_mut)]
    let mut v = vec![builtin(storage_plugin_api::module_of::<
        storage_local::LocalPlugin,
    >())];
    #[cfg(feature = "supabase")]
    v.push(builtin(storage_plugin_api::module_of::<
        storage_supabase::SupabasePlugin,
    >()));
    #[cfg(feature = "redis")]
    v.push(builtin(storage_plugin_api::module_of::<
        storage_redis::RedisPlugin,
    >()));
    v
}
