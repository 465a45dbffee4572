//! The published storage API, pinned. Two programs spelled exactly as agent
//! code written against `p2p_ai_agents::storage` spells them: the quick start
//! (a manager with the built-in plugins, a local backend, a put and a get, as
//! at the top of the README) and a custom plugin (a native `StoragePlugin`
//! whose `Storage` implements only the three required methods, registered in
//! a `StorageRegistry`). They pin the module paths, trait signatures, error
//! variants and default methods: if this file stops compiling or passing,
//! existing users' code breaks too.

use p2p_ai_agents::storage::local::{Storage, StorageError};
use p2p_ai_agents::storage::plugin::{PluginError, StoragePlugin};
use p2p_ai_agents::storage::{
    BackendConfig, ManagerError, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
};

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

// ---- Quick start, as a function with the published example's body ----
async fn quick_start() -> Result<Option<Vec<u8>>, Box<dyn std::error::Error>> {
    // Create storage manager with default plugins (local + supabase if feature enabled)
    #[allow(unused_mut)]
    let mut manager = StorageManager::new();

    // Add a local storage backend
    let config = BackendConfig {
        name: "local".to_string(),
        storage_config: StorageConfig::Local { path: None },
        enabled: true,
        priority: 1,
    };
    manager.add_backend(config).await?;

    // Use the storage
    manager.put("key", b"value".to_vec()).await?;
    let data = manager.get("key").await?;

    Ok(data)
}

#[tokio::test]
async fn seed_quick_start_runs_as_written() {
    let data = quick_start().await.expect("quick start");
    assert_eq!(data, Some(b"value".to_vec()));
}

// ---- Custom plugin, as the published example writes it ----
pub struct MyCustomPlugin;

#[async_trait]
impl StoragePlugin for MyCustomPlugin {
    fn name(&self) -> &'static str {
        "mycustom"
    }

    fn description(&self) -> &'static str {
        "My custom storage backend"
    }

    async fn create(
        &self,
        config: &StorageConfig,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError> {
        match config {
            StorageConfig::Custom {
                plugin_name,
                config,
            } if plugin_name == "mycustom" => {
                // Parse your custom config and create storage instance
                Ok(Box::new(MyCustomStorage::new(config)?))
            }
            _ => Err(PluginError::InvalidConfig(
                self.name().to_string(),
                "Expected custom configuration".to_string(),
            )),
        }
    }

    fn validate_config(&self, _config: &StorageConfig) -> Result<(), PluginError> {
        // Validate your configuration
        Ok(())
    }
}

// The example's placeholder storage, filled in: an in-memory map.
pub struct MyCustomStorage {
    data: Mutex<HashMap<String, Vec<u8>>>,
    connection_string: String,
}

impl MyCustomStorage {
    fn new(config: &serde_json::Value) -> Result<Self, PluginError> {
        let connection_string = config
            .get("connection_string")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                PluginError::InvalidConfig(
                    "mycustom".into(),
                    "connection_string is required".into(),
                )
            })?
            .to_string();
        Ok(MyCustomStorage {
            data: Mutex::new(HashMap::new()),
            connection_string,
        })
    }
}

#[async_trait]
impl Storage for MyCustomStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.data.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        assert!(self.connection_string.starts_with("custom://"));
        self.data.lock().unwrap().insert(key.to_string(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.data.lock().unwrap().remove(key);
        Ok(())
    }
}

#[tokio::test]
async fn seed_custom_plugin_registers_and_serves() -> Result<(), Box<dyn std::error::Error>> {
    // Create custom registry
    let mut registry = StorageRegistry::new();
    registry.register_plugin(Box::new(MyCustomPlugin))?;

    // Create manager with custom registry
    let manager = StorageManager::with_registry(registry);

    // Add your custom backend
    let config = BackendConfig {
        name: "mycustom".to_string(),
        storage_config: StorageConfig::Custom {
            plugin_name: "mycustom".to_string(),
            config: serde_json::json!({
                "connection_string": "custom://localhost:1234",
                "timeout": 30
            }),
        },
        enabled: true,
        priority: 1,
    };
    manager.add_backend(config).await?;

    manager.put("a", b"1".to_vec()).await?;
    assert_eq!(manager.get("a").await?, Some(b"1".to_vec()));
    manager.delete("a").await?;
    assert_eq!(manager.get("a").await?, None);
    // The example's three-method Storage impl gets the default `list`: unsupported, clearly.
    let err = manager.list("").await.unwrap_err();
    assert!(err.to_string().contains("unsupported"), "{err}");
    Ok(())
}

#[tokio::test]
async fn seed_registry_errors() {
    let mut registry = StorageRegistry::new();
    registry.register_plugin(Box::new(MyCustomPlugin)).unwrap();
    let err = registry
        .register_plugin(Box::new(MyCustomPlugin))
        .unwrap_err();
    assert!(
        matches!(err, PluginError::PluginAlreadyExists(ref n) if n == "mycustom"),
        "{err}"
    );
    assert!(registry.get_plugin("mycustom").is_some());
    assert_eq!(registry.list_plugins().len(), 1);
    registry.unregister_plugin("mycustom").unwrap();
    assert!(matches!(
        registry.unregister_plugin("mycustom"),
        Err(PluginError::PluginNotFound(_))
    ));

    // A backend for a plugin nobody registered.
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let err = manager
        .add_backend(BackendConfig {
            name: "x".into(),
            storage_config: StorageConfig::Custom {
                plugin_name: "nope".into(),
                config: serde_json::json!({}),
            },
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ManagerError::Plugin(PluginError::PluginNotFound(ref n)) if n == "nope"),
        "{err}"
    );
    // The custom plugin's own config check, reported as InvalidConfig.
    let manager = StorageManager::with_registry({
        let mut r = StorageRegistry::new();
        r.register_plugin(Box::new(MyCustomPlugin)).unwrap();
        r
    });
    let err = manager
        .add_backend(BackendConfig {
            name: "x".into(),
            storage_config: StorageConfig::Custom {
                plugin_name: "mycustom".into(),
                config: serde_json::json!({}),
            },
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ManagerError::Plugin(PluginError::InvalidConfig(..))),
        "{err}"
    );
    assert!(err.to_string().contains("connection_string"), "{err}");
}

async fn manager_with(names: &[&str]) -> StorageManager {
    let manager = StorageManager::new();
    for (i, n) in names.iter().enumerate() {
        manager
            .add_backend(BackendConfig {
                name: n.to_string(),
                storage_config: StorageConfig::Local { path: None },
                enabled: true,
                priority: i as u32,
            })
            .await
            .unwrap();
    }
    manager
}

#[tokio::test]
async fn seed_policies_compile_and_route() -> Result<(), Box<dyn std::error::Error>> {
    let manager = manager_with(&[
        "local", "cache", "redis", "supabase", "backend1", "backend2", "backend3",
    ])
    .await;

    manager.set_policy(StoragePolicy::AlwaysUse("local".to_string()));
    manager.put("k", b"v".to_vec()).await?;
    assert_eq!(manager.get("k").await?, Some(b"v".to_vec()));

    manager.set_policy(StoragePolicy::FirstAvailable(vec![
        "cache".to_string(),
        "local".to_string(),
    ]));
    manager.put("fa", b"1".to_vec()).await?;

    manager.set_policy(StoragePolicy::PreferCache {
        cache: "redis".to_string(),
        primary: "supabase".to_string(),
    });
    manager.put("pc", b"2".to_vec()).await?;
    assert_eq!(manager.get("pc").await?, Some(b"2".to_vec()));

    manager.set_policy(StoragePolicy::Redundant(vec![
        "local".to_string(),
        "supabase".to_string(),
    ]));
    manager.put("r", b"3".to_vec()).await?;

    manager.set_policy(StoragePolicy::RoundRobin(vec![
        "backend1".to_string(),
        "backend2".to_string(),
        "backend3".to_string(),
    ]));
    for i in 0..6 {
        manager.put(&format!("rr{i}"), vec![i]).await?;
    }

    // Where the data went, read back per backend.
    let on = |b: &str| StoragePolicy::AlwaysUse(b.to_string());
    manager.set_policy(on("cache"));
    assert_eq!(
        manager.get("fa").await?,
        Some(b"1".to_vec()),
        "FirstAvailable wrote to the first"
    );
    manager.set_policy(on("supabase"));
    assert_eq!(
        manager.get("pc").await?,
        Some(b"2".to_vec()),
        "PreferCache wrote the primary"
    );
    assert_eq!(
        manager.get("r").await?,
        Some(b"3".to_vec()),
        "Redundant wrote to all"
    );
    manager.set_policy(on("local"));
    assert_eq!(
        manager.get("r").await?,
        Some(b"3".to_vec()),
        "Redundant wrote to all"
    );
    manager.set_policy(on("redis"));
    assert_eq!(
        manager.get("pc").await?,
        Some(b"2".to_vec()),
        "PreferCache filled the cache"
    );
    let mut per_backend = Vec::new();
    for b in ["backend1", "backend2", "backend3"] {
        manager.set_policy(on(b));
        per_backend.push(manager.list("rr").await?.len());
    }
    assert_eq!(
        per_backend,
        vec![6, 6, 6],
        "RoundRobin wrote every put to every replica"
    );

    manager.set_policy(on("nope"));
    let err = manager.get("k").await.unwrap_err();
    assert!(
        matches!(err, ManagerError::BackendNotFound(ref n) if n == "nope"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn seed_configuration_types_build() {
    let configs = [
        StorageConfig::Local {
            path: Some("/path/to/storage".to_string()), // None for in-memory
        },
        StorageConfig::Supabase {
            url: "https://project.supabase.co".to_string(),
            anon_key: "public-anon-key".to_string(),
            service_role_key: Some("private-service-key".to_string()),
            schema: "public".to_string(),
            table_name: "storage".to_string(),
            timeout: 30,
            max_retries: 3,
        },
        StorageConfig::Custom {
            plugin_name: "myplugin".to_string(),
            config: serde_json::json!({
                "host": "localhost",
                "port": 5432,
                "database": "mydb"
            }),
        },
    ];
    let names: Vec<&str> = configs.iter().map(|c| c.plugin_name()).collect();
    assert_eq!(names, ["local", "supabase", "myplugin"]);
    // Keys stay out of Debug output.
    let debug = format!("{:?}", configs[1]);
    assert!(
        !debug.contains("public-anon-key") && !debug.contains("private-service-key"),
        "{debug}"
    );
}

#[tokio::test]
async fn seed_metrics_loop_prints_sensible_numbers() -> Result<(), Box<dyn std::error::Error>> {
    // The cache joins just before the PreferCache policy: under the default
    // policy it would be a replica, given a copy of every write.
    let manager = manager_with(&["local"]).await;
    manager.put("a", b"1".to_vec()).await?;
    manager.get("a").await?;
    manager.get("missing").await?;
    manager.set_policy(StoragePolicy::AlwaysUse("nope".into()));
    assert!(manager.get("a").await.is_err());
    manager
        .add_backend(BackendConfig {
            name: "cache".into(),
            storage_config: StorageConfig::Local { path: None },
            enabled: true,
            priority: 1,
        })
        .await?;
    manager.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "local".into(),
    });
    manager.get("a").await?; // miss, fills
    manager.get("a").await?; // hit

    let metrics = manager.metrics().await;
    let mut out = String::new();
    use std::fmt::Write;
    writeln!(out, "Total operations: {}", metrics.operations)?;
    writeln!(out, "Success rate: {:.1}%", metrics.success_rate() * 100.0)?;
    writeln!(
        out,
        "Cache hit rate: {:.1}%",
        metrics.cache_hit_rate() * 100.0
    )?;

    // Per-backend metrics
    for (backend, ops) in &metrics.backend_operations {
        let errors = metrics.backend_errors.get(backend).unwrap_or(&0);
        writeln!(
            out,
            "Backend '{}': {} operations, {} errors",
            backend, ops, errors
        )?;
    }
    println!("{out}");
    assert_eq!(metrics.operations, 6);
    assert_eq!(metrics.errors, 1);
    assert!(out.contains("Success rate: 83.3%"), "{out}");
    assert!(out.contains("Cache hit rate: 50.0%"), "{out}");
    // local: put, get, get, get (miss read); cache: get(miss), put(fill), get(hit).
    assert_eq!(metrics.backend_operations["local"], 4);
    assert_eq!(metrics.backend_operations["cache"], 3);
    assert!(
        out.contains("Backend 'cache': 3 operations, 0 errors"),
        "{out}"
    );
    Ok(())
}
