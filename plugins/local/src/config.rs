use serde::Deserialize;
use storage_plugin_api::Error;

/// Configuration of a `local` backend, as JSON: `{"path": null}` or `{"path": "/dir"}`
/// (optionally `"verify_on_open": false` for a durable store).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// `None`: keep everything in memory. `Some(dir)`: a durable store in `dir`.
    #[serde(default)]
    pub path: Option<String>,
    /// Durable store only: check every page's checksum when opening, so a
    /// damaged file is reported instead of served. `None` means `true`; see
    /// [`DurableOptions::verify_on_open`](crate::DurableOptions::verify_on_open).
    #[serde(default)]
    pub verify_on_open: Option<bool>,
}

impl LocalConfig {
    /// Checks the configuration without touching the file system.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(path) = &self.path
            && path.trim().is_empty()
        {
            return Err(Error::invalid_config(
                "local: `path` is empty; use null for an in-memory store or a directory path",
            ));
        }
        Ok(())
    }
}
