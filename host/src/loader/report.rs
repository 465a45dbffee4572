use std::fmt;
use std::path::{Path, PathBuf};

use crate::load_error::LoadError;
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
            let line = ReportLine::Loaded {
                plugin: &info.name,
                version: &info.version,
                file: path,
            };
            writeln!(f, "{line}: {}", info.description)?;
        }
        for r in &self.rejected {
            let line = ReportLine::Rejected {
                file: &r.path,
                reason: &r.error.reason,
            };
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// One line about one plugin file, worded the same wherever a load is
/// reported: [`LoadReport`]'s `Display`, the watcher's
/// [`PluginEvent`](crate::watch::PluginEvent)s (and so the program's log and
/// `/v1/plugins`), and `storage-host plugins list`. The verb comes first,
/// padded, so the lines of a report align.
#[derive(Clone, Copy)]
pub enum ReportLine<'a> {
    /// `loaded   {plugin} {version} from {file}`
    Loaded {
        /// The plugin's name.
        plugin: &'a str,
        /// The version it reports.
        version: &'a str,
        /// The file it was loaded from.
        file: &'a Path,
    },
    /// `rejected {file}: {reason}`
    Rejected {
        /// The file.
        file: &'a Path,
        /// Why it was not loaded.
        reason: &'a dyn fmt::Display,
    },
    /// `shadowed {file}: {reason}`: a file not used because another one
    /// provides the same plugin name.
    Shadowed {
        /// The file.
        file: &'a Path,
        /// Which file provides the plugin instead.
        reason: &'a dyn fmt::Display,
    },
}

impl fmt::Display for ReportLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportLine::Loaded {
                plugin,
                version,
                file,
            } => write!(f, "loaded   {plugin} {version} from {}", file.display()),
            ReportLine::Rejected { file, reason } => {
                write!(f, "rejected {}: {reason}", file.display())
            }
            ReportLine::Shadowed { file, reason } => {
                write!(f, "shadowed {}: {reason}", file.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_worded_alike() {
        let file = Path::new("/p/liblocal.so");
        assert_eq!(
            ReportLine::Loaded {
                plugin: "local",
                version: "0.1.0",
                file
            }
            .to_string(),
            "loaded   local 0.1.0 from /p/liblocal.so"
        );
        assert_eq!(
            ReportLine::Rejected {
                file,
                reason: &"bad"
            }
            .to_string(),
            "rejected /p/liblocal.so: bad"
        );
        assert_eq!(
            ReportLine::Shadowed {
                file,
                reason: &"provided by x"
            }
            .to_string(),
            "shadowed /p/liblocal.so: provided by x"
        );
    }
}
