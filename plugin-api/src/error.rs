//! The error value that crosses the plugin boundary.
//!
//! A plugin cannot hand the host a `Box<dyn Error>`: its layout and vtable
//! belong to the plugin's copy of the standard library. So errors cross as a
//! plain `#[repr(C)]` value: a [`ErrorKind`] the host can route on (fail over on
//! `Unavailable`, report `InvalidConfig` to the user, ...) and a message for people.

use std::fmt;

use abi_stable::{StableAbi, std_types::RString};

/// What went wrong, as far as routing and retry decisions are concerned.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing addressed does not exist (a table, a bucket; not a missing key:
    /// a missing key is `Ok(None)` from `get`).
    NotFound,
    /// The configuration handed to the plugin is wrong. Not retryable.
    InvalidConfig,
    /// The backend cannot be reached or is overloaded right now (connection
    /// refused, timeout, 5xx). Retryable; policies fail over on it.
    Unavailable,
    /// The backend refused the operation (bad credentials, row-level security).
    PermissionDenied,
    /// The backend does not implement this operation.
    Unsupported,
    /// The plugin panicked; the panic was caught inside the plugin.
    Panicked,
    /// The request itself is invalid for this backend (key too long, value too large).
    InvalidInput,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// A short lowercase name, stable enough for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Panicked => "panicked",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error returned by a plugin: a kind plus a human-readable message.
///
/// Messages must never contain secrets (keys, passwords, tokens).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: RString,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: RString::from(message.into()),
        }
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Shorthand for [`ErrorKind::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }
    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Shorthand for [`ErrorKind::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }
    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// Shorthand for [`ErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}
