//! Loading plugins from dynamic libraries.
//!
//! A library is accepted only when abi_stable's load-time checks pass: the
//! abi_stable version, the `storage-plugin-api` version, and the layout of
//! every type that crosses the boundary. These checks catch mistakes (a plugin
//! built against another interface); they are not a security boundary.
//!
//! Libraries are never unloaded: a reload maps a fresh copy of the file under a
//! unique path ([`copy_for_loading`]) and the previous mapping stays in memory.

mod library;
mod report;

use std::path::{Path, PathBuf};

pub use library::{copy_for_loading, is_library_file, load_module};
pub use report::{LoadReport, Rejection};

use crate::plugin::{AbiPlugin, PluginSource};

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
}

/// Loads the plugin in the library at `path` (mapping a private copy of it).
pub fn load_plugin(path: &Path) -> Result<AbiPlugin, LoadError> {
    let err = |reason| LoadError {
        path: path.to_path_buf(),
        reason,
    };
    let copy = copy_for_loading(path).map_err(|e| err(LoadFailure::Io(e.to_string())))?;
    let module = load_module(&copy).map_err(|reason| match reason {
        // The linker names the private copy; users know the original.
        LoadFailure::NotALibrary(m) => err(LoadFailure::NotALibrary(
            m.replace(&*copy.to_string_lossy(), &path.to_string_lossy()),
        )),
        other => err(other),
    })?;
    Ok(AbiPlugin::new(
        module,
        PluginSource::Library {
            path: path.to_path_buf(),
            loaded_from: copy,
        },
    ))
}

/// Loads every library file (`.so`, `.dylib`, `.dll`) in `dir`. One bad file
/// never stops the others: the report says what happened to each.
pub fn load_dir(dir: &Path) -> Result<(Vec<AbiPlugin>, LoadReport), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
        path: dir.to_path_buf(),
        reason: LoadFailure::Io(format!("cannot read the plugins directory: {e}")),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_library_file(p))
        .collect();
    files.sort();
    let mut plugins = Vec::new();
    let mut report = LoadReport::default();
    for file in files {
        match load_plugin(&file) {
            Ok(p) => {
                report
                    .loaded
                    .push((file, crate::plugin::PluginInfo::of(&p)));
                plugins.push(p);
            }
            Err(e) => report.rejected.push(Rejection {
                path: file,
                error: e,
            }),
        }
    }
    Ok((plugins, report))
}
