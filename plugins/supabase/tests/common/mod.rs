//! Shared by the integration tests: where the local Supabase stack is, test
//! keys signed with its JWT secret, and managers wired to the plugin.
//!
//! The stack is started by `scripts/supabase-local.sh` (see its header).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use storage_host::plugin::AbiPlugin;
use storage_host::{
    BackendConfig, ManagerError, PluginSource, StorageConfig, StorageError, StorageManager,
    StorageRegistry,
};
use storage_supabase::SupabasePlugin;

#[allow(unused_imports)] // each test binary uses a different subset
pub use storage_test_support::supabase::{
    GATEWAY, JWT_SECRET, anon_key, require, service_key, sign_jwt, url,
};

/// The gateway of the `outage` instance, which only the outage test stops.
pub const OUTAGE_GATEWAY: &str = "127.0.0.1:54323";
/// The non-public schema the script creates and exposes.
pub const ALT_SCHEMA: &str = "storage_alt";

/// A `StorageConfig::Supabase` as users write it.
pub fn config(url: &str, anon_key: String, service_role_key: Option<String>) -> StorageConfig {
    StorageConfig::Supabase {
        url: url.to_string(),
        anon_key,
        service_role_key,
        schema: "public".into(),
        table_name: "storage".into(),
        timeout: 10,
        max_retries: 2,
    }
}

/// The main stack with the service_role key, on `public.storage`.
pub fn service_config() -> StorageConfig {
    config(&url(), anon_key(), Some(service_key()))
}

/// Changes fields of a `StorageConfig::Supabase`.
pub fn with(
    mut config: StorageConfig,
    f: impl FnOnce(&mut String, &mut String, &mut u64, &mut u32),
) -> StorageConfig {
    if let StorageConfig::Supabase {
        schema,
        table_name,
        timeout,
        max_retries,
        ..
    } = &mut config
    {
        f(schema, table_name, timeout, max_retries);
    }
    config
}

/// A manager holding one backend, "supabase", created by the plugin linked
/// into this test (through the same ABI-stable interface a library uses).
pub async fn manager(config: StorageConfig) -> StorageManager {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    manager
        .register_plugin(Box::new(AbiPlugin::new(
            storage_plugin_api::module_of::<SupabasePlugin>(),
            PluginSource::Builtin,
        )))
        .unwrap();
    add_backend(&manager, config).await;
    manager
}

/// Adds `config` as backend "supabase".
pub async fn add_backend(manager: &StorageManager, config: StorageConfig) {
    manager
        .add_backend(BackendConfig {
            name: "supabase".into(),
            storage_config: config,
            enabled: true,
            priority: 1,
        })
        .await
        .unwrap();
}

/// The backend's own error inside a manager error.
pub fn storage_error(e: &ManagerError) -> StorageError {
    e.backend_failures()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("not a backend failure: {e}"))
        .error
}

/// A key prefix no other test (or earlier run) uses. Letters, digits, `-`
/// and `/` only, so it is also a literal `like` pattern.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t-{}-{}-{nanos}/",
        test.replace('_', "-"),
        std::process::id()
    )
}

/// Plain requests to the REST API with the service_role key, to look at rows
/// the way a user's SQL editor would, bypassing the plugin.
pub struct Direct {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Direct {
    /// On the main gateway.
    pub fn new() -> Self {
        Direct {
            client: reqwest::Client::new(),
            base: format!("{}/rest/v1", url()),
            key: service_key(),
        }
    }

    /// `GET /rest/v1/{path}` in `schema`, as JSON.
    pub async fn get(&self, schema: &str, path: &str) -> serde_json::Value {
        let r = self
            .client
            .get(format!("{}/{path}", self.base))
            .header("apikey", &self.key)
            .bearer_auth(&self.key)
            .header("Accept-Profile", schema)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    /// Deletes every row of `schema.storage` whose key starts with `prefix`
    /// (made by [`unique_prefix`]).
    pub async fn purge(&self, schema: &str, prefix: &str) {
        let r = self
            .client
            .delete(format!("{}/storage?key=like.{prefix}*", self.base))
            .header("apikey", &self.key)
            .bearer_auth(&self.key)
            .header("Content-Profile", schema)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "purge {prefix}: {}", r.status());
    }
}

/// `scripts/supabase-local.sh`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/supabase-local.sh")
}

/// Runs `scripts/supabase-local.sh args...`, failing the test if it fails.
pub fn run_script(args: &[&str]) {
    let out = std::process::Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("run scripts/supabase-local.sh");
    assert!(
        out.status.success(),
        "scripts/supabase-local.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
