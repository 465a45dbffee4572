//! The registry: plugins by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::loader::{self, LoadReport};
use storage_plugin_api::{Plugin, module_of};

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

    /// A registry holding the plugins linked into this program as built-ins
    /// ([`BuiltinPlugin`], submitted with [`builtin_plugin!`](crate::builtin_plugin)):
    /// through the `p2p-ai-agents` facade, `local`, plus `supabase` and
    /// `redis` with its `storage-supabase` and `storage-redis` features.
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

/// A plugin linked into the program, offered by
/// [`StorageRegistry::with_defaults`] (and so by `StorageManager::new()`).
///
/// This crate links no plugin: whoever assembles the product submits its
/// built-ins with [`builtin_plugin!`](crate::builtin_plugin), once per plugin
/// type, anywhere in a crate of the program (the `p2p-ai-agents` facade does
/// it for `local` and its `storage-supabase` / `storage-redis` features, the
/// `storage-host` program for its own). A plugin submitted by several crates
/// of one program is registered once.
pub struct BuiltinPlugin {
    make: fn() -> AbiPlugin,
}

impl BuiltinPlugin {
    /// The built-in record of plugin `P`; what [`builtin_plugin!`](crate::builtin_plugin) submits.
    pub const fn of<P: Plugin>() -> Self {
        Self {
            make: builtin_of::<P>,
        }
    }
}

fn builtin_of<P: Plugin>() -> AbiPlugin {
    AbiPlugin::new(module_of::<P>(), PluginSource::Builtin)
}

inventory::collect!(BuiltinPlugin);

/// Links plugin type `$plugin` (a [`storage_plugin_api::Plugin`]) into the
/// program as a built-in: [`StorageRegistry::with_defaults`], and so
/// `StorageManager::new()`, offer it. Use it at item level, in any crate of
/// the program:
///
/// ```
/// storage_host::builtin_plugin!(storage_local::LocalPlugin);
///
/// let registry = storage_host::StorageRegistry::with_defaults();
/// assert!(registry.get_plugin("local").is_some());
/// ```
#[macro_export]
macro_rules! builtin_plugin {
    ($plugin:ty) => {
        $crate::__inventory::submit! {
            $crate::registry::BuiltinPlugin::of::<$plugin>()
        }
    };
}

/// Every submitted built-in, by name (sorted), each name once.
fn builtin_plugins() -> Vec<Arc<dyn StoragePlugin>> {
    let mut by_name: BTreeMap<String, Arc<dyn StoragePlugin>> = BTreeMap::new();
    for builtin in inventory::iter::<BuiltinPlugin> {
        let plugin = (builtin.make)();
        match by_name.get(plugin.name()) {
            // Submitted by several crates of the program: the same plugin.
            Some(kept) if kept.version() == plugin.version() => {}
            Some(kept) => tracing::warn!(
                plugin = plugin.name(),
                kept = kept.version(),
                ignored = plugin.version(),
                "two built-in plugins of one name are linked in; one is ignored"
            ),
            None => {
                by_name.insert(plugin.name().to_string(), Arc::new(plugin));
            }
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two crates of one program linking the same plugin: both submit it.
    crate::builtin_plugin!(storage_local::LocalPlugin);
    crate::builtin_plugin!(storage_local::LocalPlugin);

    #[test]
    fn submitted_builtins_are_registered_once_each() {
        assert_eq!(inventory::iter::<BuiltinPlugin>.into_iter().count(), 2);
        let plugins = StorageRegistry::with_defaults().list_plugins();
        let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["local"]);
        assert_eq!(plugins[0].source, PluginSource::Builtin);
        assert!(StorageRegistry::new().list_plugins().is_empty());
    }
}
