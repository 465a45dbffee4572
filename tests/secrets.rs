//! Secrets (keys, passwords, tokens) never appear in Debug, Display or logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use p2p_ai_agents::storage::local::{Storage, StorageError};
use p2p_ai_agents::storage::plugin::{PluginError, StoragePlugin};
use p2p_ai_agents::storage::{BackendConfig, StorageConfig, StorageManager, StorageRegistry};

const SECRETS: [&str; 4] = [
    "anon-SECRET-a1",
    "service-SECRET-b2",
    "hunter2-SECRET",
    "tok-SECRET-c3",
];

/// Accepts any configuration, fails every operation as unavailable.
struct Anything(&'static str);
struct Down;

#[async_trait]
impl StoragePlugin for Anything {
    fn name(&self) -> &'static str {
        self.0
    }
    fn description(&self) -> &'static str {
        "test"
    }
    async fn create(
        &self,
        _: &StorageConfig,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError> {
        Ok(Box::new(Down))
    }
    fn validate_config(&self, _: &StorageConfig) -> Result<(), PluginError> {
        Ok(())
    }
}

#[async_trait]
impl Storage for Down {
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Err(StorageError::Unavailable("connection refused".into()))
    }
    async fn put(&self, _: &str, _: Vec<u8>) -> Result<(), StorageError> {
        Err(StorageError::Unavailable("connection refused".into()))
    }
    async fn delete(&self, _: &str) -> Result<(), StorageError> {
        Err(StorageError::Unavailable("connection refused".into()))
    }
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn configured_secrets_stay_out_of_logs_debug_and_errors() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut registry = StorageRegistry::new();
    registry
        .register_plugin(Box::new(Anything("supabase")))
        .unwrap();
    registry
        .register_plugin(Box::new(Anything("redis")))
        .unwrap();
    let manager = StorageManager::with_registry(registry);
    let configs = [
        StorageConfig::Supabase {
            url: "https://x.supabase.co".into(),
            anon_key: SECRETS[0].into(),
            service_role_key: Some(SECRETS[1].into()),
            schema: "public".into(),
            table_name: "storage".into(),
            timeout: 1,
            max_retries: 0,
        },
        StorageConfig::Custom {
            plugin_name: "redis".into(),
            config: serde_json::json!({"url": format!("redis://agent:{}@127.0.0.1:6379/0", SECRETS[2]), "token": SECRETS[3]}),
        },
    ];
    let mut seen = String::new();
    for (i, c) in configs.into_iter().enumerate() {
        let b = BackendConfig {
            name: format!("b{i}"),
            storage_config: c,
            enabled: true,
            priority: i as u32,
        };
        seen.push_str(&format!("{b:?}\n"));
        manager.add_backend(b).await.unwrap();
    }
    for _ in 0..6 {
        let e = manager.put("k", b"v".to_vec()).await.unwrap_err();
        seen.push_str(&format!("{e}\n{e:?}\n"));
    }
    seen.push_str(&format!("{:?}\n", manager.list_backends()));
    seen.push_str(&manager.metrics().await.to_prometheus());
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("backend added"),
        "logging was captured: {logs}"
    );
    for s in SECRETS {
        assert!(!logs.contains(s), "secret {s} in logs:\n{logs}");
        assert!(!seen.contains(s), "secret {s} in Debug/Display:\n{seen}");
    }
}
