//! The `[auth]` section: where the API's bearer token comes from (an
//! environment variable or a file, never the config file itself).

use std::path::Path;

use super::error::{ConfigError, Result};
use super::fields::{Fields, resolve};
use super::schema::{AuthConfig, Secret, TokenSource};

pub(super) fn auth_config(
    mut t: Fields,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<AuthConfig> {
    if t.take("token").is_some() {
        return Err(ConfigError::invalid(
            t.path("token"),
            "a token is never read from the config file (it would end up in backups and version control); use token_env = \"VAR\" or token_file = \"/path\"",
        ));
    }
    let env = t.opt_str("token_env")?;
    let file = t.opt_str("token_file")?;
    let (source, token) = match (env, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                t.path("token_file"),
                "give either token_env or token_file, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                t.path("token_env"),
                "[auth] needs token_env or token_file; remove [auth] to run without a token",
            ));
        }
        (Some(var), None) => {
            let value = std::env::var(&var).map_err(|e| {
                ConfigError::invalid(
                    t.path("token_env"),
                    format!("environment variable {var}: {e}"),
                )
            })?;
            (TokenSource::Env(var), value)
        }
        (None, Some(file)) => {
            let path = resolve(base, &file);
            let value = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    t.path("token_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if let Some(how) = readable_by_others(&path) {
                warnings.push(format!(
                    "auth.token_file: {} is {how}; run `chmod go-r` on it",
                    path.display()
                ));
            }
            (
                TokenSource::File(path),
                value.trim_end_matches(['\r', '\n']).to_string(),
            )
        }
    };
    if token.trim().is_empty() {
        return Err(ConfigError::invalid(
            t.path(match source {
                TokenSource::Env(_) => "token_env",
                TokenSource::File(_) => "token_file",
            }),
            "the token is empty",
        ));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::invalid(
            t.path(match source {
                TokenSource::Env(_) => "token_env",
                TokenSource::File(_) => "token_file",
            }),
            "the token contains spaces or control characters; it must fit in an Authorization header",
        ));
    }
    if token.len() < 16 {
        warnings.push("auth: the token is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)".into());
    }
    t.finish()?;
    Ok(AuthConfig {
        source: Some(source),
        token: Some(Secret::new(token)),
    })
}

#[cfg(unix)]
pub(super) fn readable_by_others(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 != 0 {
        Some("readable by every user")
    } else if mode & 0o040 != 0 {
        Some("readable by its group")
    } else {
        None
    }
}

#[cfg(not(unix))]
pub(super) fn readable_by_others(_path: &Path) -> Option<&'static str> {
    None
}
