//! The `[policy]` section: which routing policy, over which named backends.

use std::collections::BTreeSet;

use storage_host::config::BackendConfig;
use storage_host::policy::StoragePolicy;

use super::error::{ConfigError, Result};
use super::fields::Fields;

pub(super) fn policy_config(mut t: Fields, backends: &[BackendConfig]) -> Result<StoragePolicy> {
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let known = |field: String, name: &str| -> Result<String> {
        if names.contains(&name) {
            Ok(name.to_string())
        } else {
            Err(ConfigError::invalid(
                field,
                format!(
                    "no backend is named {name:?}; the backends are: {}",
                    names.join(", ")
                ),
            ))
        }
    };
    let ty = t.str("type")?;
    let list = |t: &mut Fields| -> Result<Vec<String>> {
        let field = t.path("backends");
        let list = t.names("backends")?;
        if list.is_empty() {
            return Err(ConfigError::invalid(
                field,
                "is empty: name at least one backend",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, n) in list.iter().enumerate() {
            known(format!("{field}[{i}]"), n)?;
            if !seen.insert(n.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{field}[{i}]"),
                    format!("{n:?} is listed twice"),
                ));
            }
        }
        Ok(list)
    };
    let policy = match ty.as_str() {
        "always_use" => {
            let b = t.str("backend")?;
            StoragePolicy::AlwaysUse(known(t.path("backend"), &b)?)
        }
        "first_available" => StoragePolicy::FirstAvailable(list(&mut t)?),
        "redundant" => StoragePolicy::Redundant(list(&mut t)?),
        "round_robin" => StoragePolicy::RoundRobin(list(&mut t)?),
        "prefer_cache" => {
            let cache = t.str("cache")?;
            let cache = known(t.path("cache"), &cache)?;
            let primary = t.str("primary")?;
            let primary = known(t.path("primary"), &primary)?;
            if cache == primary {
                return Err(ConfigError::invalid(
                    t.path("primary"),
                    "is the same backend as the cache; name two different backends",
                ));
            }
            StoragePolicy::PreferCache { cache, primary }
        }
        other => {
            return Err(ConfigError::invalid(
                t.path("type"),
                format!(
                    "unknown policy {other:?}; expected always_use, first_available, prefer_cache, redundant or round_robin"
                ),
            ));
        }
    };
    t.finish()?;
    Ok(policy)
}
