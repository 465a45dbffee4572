use std::fmt;
use std::path::PathBuf;

use super::LoadError;
use crate::plugin::PluginInfo;

/// A rejected plugin file and the reason.
#[derive(Debug)]
pub struct Rejection {
    /// The file.
    pub path: PathBuf,
    /// Why it was rejected.
    pub error: LoadError,
}

/// What happened to each file of a plugins directory.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Files loaded, with the plugin each holds.
    pub loaded: Vec<(PathBuf, PluginInfo)>,
    /// Files rejected, with the reason.
    pub rejected: Vec<Rejection>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, info) in &self.loaded {
            writeln!(
                f,
                "loaded   {} -> {} {}: {}",
                path.display(),
                info.name,
                info.version,
                info.description
            )?;
        }
        for r in &self.rejected {
            writeln!(f, "rejected {}", r.error)?;
        }
        Ok(())
    }
}
