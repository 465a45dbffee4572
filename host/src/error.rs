//! Errors of the manager.

use std::fmt;

use crate::plugin::PluginError;
use crate::storage::StorageError;

/// One backend's failure within a multi-backend operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFailure {
    /// The backend.
    pub backend: String,
    /// What it answered.
    pub error: StorageError,
}

impl fmt::Display for BackendFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': {}", self.backend, self.error)
    }
}

struct Failures<'a>(&'a [BackendFailure]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, fail) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{fail}")?;
        }
        Ok(())
    }
}

/// A key an error is about. Shown as every message shows a key
/// ([`storage_plugin_api::ShownKey`]): quoted, and cut short when very long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef(pub String);

impl KeyRef {
    /// The key `key`.
    pub fn new(key: &str) -> Self {
        KeyRef(key.to_string())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        storage_plugin_api::ShownKey::new(&self.0).fmt(f)
    }
}

/// An error from a [`StorageManager`](crate::StorageManager).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// No backend of this name (in `add_backend`'s absence, or named by a policy).
    #[error("backend '{0}' not found; add it with StorageManager::add_backend")]
    BackendNotFound(String),
    /// A backend of this name already exists.
    #[error("backend '{0}' already exists; remove it first or pick another name")]
    BackendAlreadyExists(String),
    /// The backend the policy needs is disabled.
    #[error("backend '{0}' is disabled")]
    BackendDisabled(String),
    /// There is no enabled backend to route the operation to.
    #[error("no backends available: add one with StorageManager::add_backend or enable one")]
    NoBackends,
    /// One backend failed the operation.
    #[error("backend '{backend}' failed to {op} {key}: {source}")]
    StorageOperation {
        /// The backend.
        backend: String,
        /// `get`, `put`, `delete` or `list`.
        op: &'static str,
        /// The key (or prefix for `list`).
        key: KeyRef,
        /// What the backend answered.
        #[source]
        source: StorageError,
    },
    /// Every backend tried failed.
    #[error("{op} {key} failed on every backend: {}", Failures(failures))]
    AllBackendsFailed {
        /// `get`, `put`, `delete` or `list`.
        op: &'static str,
        /// The key (or prefix).
        key: KeyRef,
        /// Each backend and its error, in the order tried.
        failures: Vec<BackendFailure>,
    },
    /// A write meant for several backends reached only some of them.
    #[error(
        "{op} {key} reached {succeeded:?} but failed on {}",
        Failures(failures)
    )]
    PartialWrite {
        /// `put` or `delete`.
        op: &'static str,
        /// The key.
        key: KeyRef,
        /// Backends where the write succeeded.
        succeeded: Vec<String>,
        /// Backends where it failed, and why.
        failures: Vec<BackendFailure>,
    },
    /// The request itself is invalid (a page `limit` out of bounds).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A plugin error while adding or swapping a backend.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl ManagerError {
    /// The storage errors inside this error, with their backends.
    pub fn backend_failures(&self) -> Vec<BackendFailure> {
        match self {
            ManagerError::StorageOperation {
                backend, source, ..
            } => vec![BackendFailure {
                backend: backend.clone(),
                error: source.clone(),
            }],
            ManagerError::AllBackendsFailed { failures, .. }
            | ManagerError::PartialWrite { failures, .. } => failures.clone(),
            _ => Vec::new(),
        }
    }
}
