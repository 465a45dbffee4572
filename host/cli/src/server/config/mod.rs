//! The host's TOML configuration, validated up front.
//!
//! Every error names the field it is about, as a path into the file
//! (`backends[1].storage_config.path: ...`), so a wrong config is fixed from
//! the message alone. The file is walked by hand rather than through
//! `#[derive(Deserialize)]`: serde loses the field path inside internally
//! tagged enums (`storage_config` is one), and unknown fields are errors here.
//!
//! Secrets never have to be written in the file: the API token comes from an
//! environment variable or a file (`[auth] token_env` / `token_file`), and any
//! value of a `storage_config` can be given as `{ env = "NAME" }` or
//! `{ file = "PATH" }` instead of inline.
//!
//! ```
//! use storage_host_cli::server::config::HostConfig;
//!
//! let config = HostConfig::from_toml_str(r#"
//!     listen = "127.0.0.1:7070"
//!
//!     [[backends]]
//!     name = "memory"
//!     storage_config = { type = "local" }
//! "#, std::path::Path::new(".")).unwrap();
//! assert_eq!(config.backends[0].name, "memory");
//!
//! let err = HostConfig::from_toml_str(r#"
//!     [[backends]]
//!     name = "disk"
//!     storage_config = { type = "local", path = "" }
//! "#, std::path::Path::new(".")).unwrap_err();
//! assert!(err.to_string().starts_with("backends[0].storage_config.path: "));
//! ```

mod auth;
mod backend;
mod error;
mod fields;
mod load;
mod policy;
mod schema;
mod sources;
mod units;

pub use error::ConfigError;
pub use schema::*;
pub use sources::looks_like_secret_name;

#[cfg(test)]
mod tests;
