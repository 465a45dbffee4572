//! A template storage plugin: an in-memory store with an entry limit.
//!
//! Replace the store with your backend. What matters:
//! - `Plugin` gives the name backends use (`StorageConfig::Custom { plugin_name, .. }`),
//!   a version, a description, how to read the JSON config and how to create a backend;
//! - `Backend` is ordinary async Rust; every method may be called concurrently;
//! - `export_plugin!` generates the ABI-stable glue (and turns panics into errors).
//!
//! If your backend needs tokio (most network clients do), own a runtime in the
//! plugin and spawn onto it: the host's runtime is not visible inside a library.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Deserialize;
use storage_plugin_api::{Backend, Error, Plugin};

/// The JSON configuration: `{"max_entries": 1000}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Refuse puts of new keys beyond this many entries.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_max_entries() -> usize {
    10_000
}

/// The plugin.
pub struct TemplatePlugin;

impl Plugin for TemplatePlugin {
    type Config = Config;
    type Backend = TemplateBackend;

    const NAME: &'static str = "template";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Template plugin: an in-memory store with an entry limit";

    fn validate(config: &Config) -> Result<(), Error> {
        if config.max_entries == 0 {
            return Err(Error::invalid_config("template: max_entries must be at least 1"));
        }
        Ok(())
    }

    async fn create(config: Config) -> Result<TemplateBackend, Error> {
        Ok(TemplateBackend {
            max_entries: config.max_entries,
            map: Mutex::new(BTreeMap::new()),
        })
    }
}

/// One backend instance.
pub struct TemplateBackend {
    max_entries: usize,
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Backend for TemplateBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.max_entries && !map.contains_key(key) {
            return Err(Error::invalid_input(format!(
                "template: store is full ({} entries); delete keys or raise max_entries",
                self.max_entries
            )));
        }
        map.insert(key.to_string(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.map.lock().unwrap().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let map = self.map.lock().unwrap();
        Ok(map.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }

    // `list_page` (bounded listing) defaults to cutting a page out of `list`.
    // A backend with an ordered index should override it and read only the
    // page: up to `limit + 1` keys after `after`, then `KeyPage::from_overfetch`.
}

storage_plugin_api::export_plugin!(TemplatePlugin);
