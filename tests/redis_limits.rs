//! The Redis plugin's key and value limits through the manager, with the
//! plugin loaded from its library: a refusal crosses the boundary as
//! *invalid input* with its message, does not count against the backend's
//! health, and under PreferCache a value too large for the cache is served
//! by the primary, never a stale cached copy.
//!
//! Needs Redis at 127.0.0.1:6379 (`scripts/services.sh`) or `REDIS_URL`.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2p_ai_agents::storage::{
    BackendConfig, Health, PluginSource, StorageConfig, StorageManager, StoragePolicy,
    StorageRegistry,
};
use serde_json::json;
use storage_host::plugin::AbiPlugin;
use storage_host::storage::StorageError;
use storage_redis::{MAX_KEY_LEN, MAX_VALUE_LEN};
use storage_test_support::plugin_library;

/// The shared Redis, after checking that it answers a PING.
fn require_redis() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let hostport = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let answered = std::net::TcpStream::connect(&hostport).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf)?;
        Ok(buf[..n].starts_with(b"+PONG"))
    });
    assert!(
        matches!(answered, Ok(true)),
        "this test needs Redis at {url} ({answered:?}); start it with scripts/services.sh or set REDIS_URL"
    );
    url
}

/// A manager with the redis plugin loaded from its library as "cache"
/// (under a key prefix of its own) and an in-memory local backend as
/// "primary".
async fn manager(url: &str) -> StorageManager {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    manager
        .register_plugin(Box::new(AbiPlugin::new(
            storage_plugin_api::module_of::<storage_local::LocalPlugin>(),
            PluginSource::Builtin,
        )))
        .unwrap();
    manager
        .load_plugin(plugin_library(
            "storage-redis-plugin",
            "storage_redis_plugin",
        ))
        .expect("load the redis plugin library");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("redis-limits-test:{}:{nanos}:", std::process::id());
    manager
        .add_backend(BackendConfig {
            name: "cache".into(),
            storage_config: StorageConfig::Custom {
                plugin_name: "redis".into(),
                config: json!({"url": url, "key_prefix": prefix, "ttl_seconds": 120, "timeout_ms": 20_000}),
            },
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap();
    manager
        .add_backend(BackendConfig {
            name: "primary".into(),
            storage_config: StorageConfig::Local { path: None },
            enabled: true,
            priority: 1,
        })
        .await
        .unwrap();
    manager
}

fn cache_health(manager: &StorageManager) -> Health {
    manager
        .list_backends()
        .into_iter()
        .find(|b| b.name == "cache")
        .map(|b| b.health)
        .expect("cache backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_through_the_manager() {
    let url = require_redis();
    let m = manager(&url).await;

    // Straight to Redis: every refusal is invalid input naming the backend,
    // the key and the limit.
    m.set_policy(StoragePolicy::AlwaysUse("cache".into()));
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    for _ in 0..4 {
        let refusals = [
            m.put(&long_key, b"v".to_vec()).await.unwrap_err(),
            m.get(&long_key).await.unwrap_err(),
            m.put("big", vec![0; MAX_VALUE_LEN + 1]).await.unwrap_err(),
        ];
        for e in refusals {
            let failures = e.backend_failures();
            let f = failures.first().unwrap_or_else(|| panic!("{e}"));
            assert_eq!(f.backend, "cache");
            let StorageError::InvalidInput(message) = &f.error else {
                panic!("not invalid input: {e}");
            };
            assert!(message.starts_with("redis: "), "{message}");
            assert!(
                message.contains("at most 4096 bytes") || message.contains("at most 67108864"),
                "{message}"
            );
        }
    }
    // Twelve refusals, yet the backend is healthy (a bad request says
    // nothing about the server) and serves the largest key and value.
    assert_eq!(cache_health(&m), Health::Healthy);
    let longest = "k".repeat(MAX_KEY_LEN);
    m.put(&longest, b"v".to_vec()).await.unwrap();
    assert_eq!(m.get(&longest).await.unwrap(), Some(b"v".to_vec()));
    m.delete(&longest).await.unwrap();

    // PreferCache: a value the cache refuses is stored by the primary, and
    // the cache's older copy of the key is dropped rather than served.
    m.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    m.put("doc", b"small".to_vec()).await.unwrap();
    assert_eq!(m.get("doc").await.unwrap(), Some(b"small".to_vec()));
    let big: Vec<u8> = (0..MAX_VALUE_LEN + 1).map(|i| (i % 253) as u8).collect();
    m.put("doc", big.clone()).await.unwrap();
    assert!(
        m.get("doc").await.unwrap() == Some(big),
        "the primary's value, not the cache's stale one"
    );
    // A key too long for the cache is kept by the primary alone.
    m.put(&long_key, b"long".to_vec()).await.unwrap();
    assert_eq!(m.get(&long_key).await.unwrap(), Some(b"long".to_vec()));
    assert_eq!(cache_health(&m), Health::Healthy);

    m.set_policy(StoragePolicy::AlwaysUse("cache".into()));
    assert_eq!(
        m.get("doc").await.unwrap(),
        None,
        "nothing cached for a refused value"
    );
    m.delete("doc").await.unwrap();
    m.shutdown().await;
}
