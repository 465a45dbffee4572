use storage_plugin_api::{Backend, Error, KeyPage};

use crate::{DurableBackend, DurableOptions, LocalConfig, MemoryBackend};

/// A `local` backend: in memory or on disk, chosen by the configuration.
pub enum LocalBackend {
    /// `path: None`.
    Memory(MemoryBackend),
    /// `path: Some(dir)`: a durable store in `dir`.
    Durable(DurableBackend),
}

impl LocalBackend {
    /// Opens the backend `config` describes. For a durable store this creates
    /// the directory if needed and opens (or creates) the store file in it;
    /// see [`DurableBackend::open`] for the errors.
    pub async fn open(config: &LocalConfig) -> Result<Self, Error> {
        config.validate()?;
        match &config.path {
            None => Ok(LocalBackend::Memory(MemoryBackend::new())),
            Some(path) => {
                let options = DurableOptions {
                    verify_on_open: config.verify_on_open.unwrap_or(true),
                };
                Ok(LocalBackend::Durable(
                    DurableBackend::open_with(path, options).await?,
                ))
            }
        }
    }
}

impl Backend for LocalBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(m.get(key)),
            LocalBackend::Durable(d) => d.get(key).await,
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        match self {
            LocalBackend::Memory(m) => {
                m.put(key, value);
                Ok(())
            }
            LocalBackend::Durable(d) => d.put(key, value).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            LocalBackend::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            LocalBackend::Durable(d) => d.delete(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(m.list(prefix)),
            LocalBackend::Durable(d) => d.list(prefix).await,
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(m.list_page(prefix, after, limit)),
            LocalBackend::Durable(d) => d.list_page(prefix, after, limit).await,
        }
    }

    async fn shutdown(&self) -> Result<(), Error> {
        match self {
            LocalBackend::Memory(_) => Ok(()),
            LocalBackend::Durable(d) => d.shutdown().await,
        }
    }

    async fn export_state(&self) -> Result<Option<Vec<u8>>, Error> {
        match self {
            LocalBackend::Memory(m) => Ok(Some(m.export_state())),
            // The data is on disk: the next instance opens the same directory.
            LocalBackend::Durable(_) => Ok(None),
        }
    }
}
