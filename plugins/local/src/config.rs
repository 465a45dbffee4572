use serde::Deserialize;
use storage_plugin_api::Error;

/// Configuration of a `local` backend, as JSON: `{"path": null}` or `{"path": "/dir"}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// `None`: keep everything in memory. `Some(dir)`: a durable store in `dir`.
    #[serde(default)]
    pub path: Option<String>,
}

impl LocalConfig {
    /// Checks the configuration without touching the file system.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(path) = &self.path {
            if path.trim().is_empty() {
                return Err(Error::invalid_config(
                    "local: `path` is empty; use null for an in-memory store or a directory path",
                ));
            }
        }
        Ok(())
    }
}
