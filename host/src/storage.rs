//! The native storage interface every backend implements, in-process or loaded.
//!
//! Agent code imports these as `p2p_ai_agents::storage::local::{Storage, StorageError}`
//! (the facade's published path, pinned by `tests/seed_api.rs`).

use std::time::Duration;

use async_trait::async_trait;
use storage_plugin_api::ErrorKind;
pub use storage_plugin_api::KeyPage;

/// An error from one backend operation.
///
/// Messages never contain secrets. The variant tells the manager how to route:
/// [`Unavailable`](Self::Unavailable), [`Timeout`](Self::Timeout) and
/// [`Panicked`](Self::Panicked) make policies fail over to the next backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A resource the backend needs does not exist (a table, a bucket).
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend's configuration is wrong.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The backend cannot be reached or is overloaded; retrying later may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the operation.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The backend does not support this operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The plugin panicked; the panic was contained and the backend still works.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The request is invalid for this backend (key too long, value too large).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operation did not finish in time and was cancelled.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl StorageError {
    /// Whether another backend (or a later attempt) may succeed where this one
    /// failed: policies fail over on these, and the health check counts them.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable(_) | StorageError::Timeout(_) | StorageError::Panicked(_)
        )
    }

    /// A short stable name for the variant (metrics labels, JSON error codes).
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::NotFound(_) => "not_found",
            StorageError::InvalidConfig(_) => "invalid_config",
            StorageError::Unavailable(_) => "unavailable",
            StorageError::PermissionDenied(_) => "permission_denied",
            StorageError::Unsupported(_) => "unsupported",
            StorageError::Panicked(_) => "panicked",
            StorageError::InvalidInput(_) => "invalid_input",
            StorageError::Timeout(_) => "timeout",
            StorageError::Other(_) => "other",
        }
    }
}

impl From<storage_plugin_api::Error> for StorageError {
    fn from(e: storage_plugin_api::Error) -> Self {
        let m = e.message().to_owned();
        match e.kind() {
            ErrorKind::NotFound => StorageError::NotFound(m),
            ErrorKind::InvalidConfig => StorageError::InvalidConfig(m),
            ErrorKind::Unavailable => StorageError::Unavailable(m),
            ErrorKind::PermissionDenied => StorageError::PermissionDenied(m),
            ErrorKind::Unsupported => StorageError::Unsupported(m),
            ErrorKind::Panicked => StorageError::Panicked(m),
            ErrorKind::InvalidInput => StorageError::InvalidInput(m),
            ErrorKind::Other => StorageError::Other(m),
        }
    }
}

/// A key-value store of byte values.
///
/// Implement the three required methods for a minimal backend; `list`,
/// `list_page`, `shutdown` and `export_state` have defaults.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Reads `key`; `Ok(None)` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Writes `value` under `key`, replacing any previous value.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;

    /// Removes `key`; removing a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// The keys starting with `prefix`, in ascending order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let _ = prefix;
        Err(StorageError::Unsupported(
            "this backend cannot list keys".into(),
        ))
    }

    /// Up to `limit` keys starting with `prefix` that sort after `after`,
    /// ascending, and whether more follow (see [`KeyPage`]). The manager
    /// never asks for `limit == 0`.
    ///
    /// The default cuts the page out of [`list`](Storage::list); override it
    /// when the backend can read one page without reading every key.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StorageError> {
        Ok(KeyPage::cut(self.list(prefix).await?, after, limit))
    }

    /// Releases the backend's resources. Called once, after the last operation.
    async fn shutdown(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// State to hand to a replacement instance during a hot swap (in-memory
    /// contents). `None` when the data lives outside the process.
    async fn export_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
}
