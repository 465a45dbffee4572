use storage_plugin_api::{Backend, Error};

use crate::{LocalConfig, MemoryBackend};

/// A `local` backend: in memory or on disk, chosen by the configuration.
pub enum LocalBackend {
    /// `path: None`.
    Memory(MemoryBackend),
}

impl LocalBackend {
    /// Opens the backend `config` describes.
    pub fn open(config: &LocalConfig) -> Result<Self, Error> {
        config.validate()?;
        match &config.path {
            None => Ok(LocalBackend::Memory(MemoryBackend::new())),
            Some(path) => Err(Error::invalid_config(format!(
                "local: durable storage at '{path}' is not available in this build; use `path: None` for in-memory storage"
            ))),
        }
    }
}

impl Backend for LocalBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(m.get(key)),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        match self {
            LocalBackend::Memory(m) => {
                m.put(key, value);
                Ok(())
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            LocalBackend::Memory(m) => {
                m.delete(key);
                Ok(())
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(m.list(prefix)),
        }
    }

    async fn export_state(&self) -> Result<Option<Vec<u8>>, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(Some(m.export_state())),
        }
    }
}
