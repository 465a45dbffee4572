//! Why a plugin file was not loaded: the error every load path returns.
//!
//! It sits apart from `loader` so that the plugin types, which wrap it in
//! `PluginError`, and the loader, which makes plugins, do not import each
//! other.

use std::path::PathBuf;
use std::time::Duration;

/// Why a plugin file was not loaded.
#[derive(Debug, thiserror::Error)]
#[error("plugin file '{}': {reason}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: LoadFailure,
}

/// The reasons a plugin file can be rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The file cannot be read or copied.
    #[error("cannot read it: {0}")]
    Io(String),
    /// The dynamic linker refused the file.
    #[error("not a loadable library ({0})")]
    NotALibrary(String),
    /// A library, but it exports no abi_stable root module.
    #[error("not a storage plugin: it exports no abi_stable root module")]
    NoRootModule,
    /// Built with an abi_stable whose ABI differs from the host's.
    #[error("built with an incompatible abi_stable ({0})")]
    IncompatibleAbiStable(String),
    /// Built against a `storage-plugin-api` version the host cannot use.
    #[error(
        "built against an incompatible plugin-api: the host needs {expected}, the plugin has {found}"
    )]
    IncompatibleApiVersion {
        /// What the host was built with.
        expected: String,
        /// What the plugin was built with.
        found: String,
    },
    /// The interface types differ between host and plugin.
    #[error("built against an incompatible plugin-api: {summary}")]
    LayoutMismatch {
        /// The first mismatch, in one line.
        summary: String,
        /// abi_stable's full report (long).
        report: String,
    },
    /// The library's root-module initializer failed or panicked.
    #[error("its initializer failed: {0}")]
    InitFailed(String),
    /// The file or its directory is not safe to load from.
    #[error("refused: {0}")]
    Untrusted(String),
    /// The file changed while it was being checked: it is still being
    /// written. The watcher retries it once it stops changing.
    #[error(
        "not yet stable: its size or modification time changed within {0:?} (still being written?); it is loaded once it stops changing"
    )]
    NotStable(Duration),
    /// A loadable plugin, but another file of the directory provides a
    /// plugin of the same name (the file whose name sorts first does).
    #[error(
        "not used: plugin '{plugin}' is provided by {}, whose name sorts first; remove or rename one of the two files",
        by.display()
    )]
    Shadowed {
        /// The plugin name both files provide.
        plugin: String,
        /// The file that provides it.
        by: PathBuf,
    },
}
