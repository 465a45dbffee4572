//! [`ConfigError`]: what is wrong with a configuration, naming the field.

use std::path::PathBuf;

/// A configuration error, naming the field it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A field has a wrong value (or should not be there).
    #[error("{field}: {message}")]
    Invalid {
        /// The path of the field, e.g. `backends[1].storage_config.path`.
        field: String,
        /// What is wrong and, where it helps, what is expected.
        message: String,
    },
}

impl ConfigError {
    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The path of the field at fault, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

pub(super) type Result<T, E = ConfigError> = std::result::Result<T, E>;
