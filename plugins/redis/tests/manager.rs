//! The Redis plugin inside the host: loaded as a dynamic library, and as the
//! cache of a PreferCache policy in front of a local (memory) primary,
//! including a Redis outage in the middle of a run.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{RedisServer, cleanup, raw, require_shared_redis, timed, unique_prefix};
use serde_json::json;
use storage_host::plugin::AbiPlugin;
use storage_host::{
    BackendConfig, Health, PluginSource, StorageConfig, StorageManager, StoragePolicy,
    StorageRegistry,
};
use storage_plugin_api::module_of;
use storage_redis::RedisPlugin;
use storage_test_support::plugin_library;

fn redis_backend(name: &str, config: serde_json::Value) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        storage_config: StorageConfig::Custom {
            plugin_name: "redis".into(),
            config,
        },
        enabled: true,
        priority: 0,
    }
}

fn memory_backend(name: &str) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        storage_config: StorageConfig::Local { path: None },
        enabled: true,
        priority: 1,
    }
}

/// A manager with the `local` plugin and the `redis` plugin linked in,
/// both through the ABI adapter (the code path of a loaded library). An
/// empty registry, so the test does not depend on the host's features.
fn manager_in_process() -> StorageManager {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    for module in [
        module_of::<RedisPlugin>(),
        module_of::<storage_local::LocalPlugin>(),
    ] {
        manager
            .register_plugin(Box::new(AbiPlugin::new(module, PluginSource::Builtin)))
            .expect("register plugin");
    }
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_the_cdylib_and_serves_through_the_manager() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("dylib");
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let info = manager
        .load_plugin(plugin_library(
            "storage-redis-plugin",
            "storage_redis_plugin",
        ))
        .expect("load the redis plugin library");
    assert_eq!(info.name, "redis");
    assert_eq!(info.version, storage_redis::VERSION);
    assert_eq!(
        info.api_version.as_deref(),
        Some(storage_plugin_api::API_VERSION)
    );
    assert!(
        matches!(info.source, PluginSource::Library { .. }),
        "{:?}",
        info.source
    );

    manager
        .add_backend(redis_backend(
            "redis",
            json!({"url": url, "key_prefix": prefix, "ttl_seconds": 300}),
        ))
        .await
        .expect("add a redis backend from the library");
    manager.set_policy(StoragePolicy::AlwaysUse("redis".into()));
    manager.put("a*1", b"one".to_vec()).await.unwrap();
    manager.put("ab", b"two".to_vec()).await.unwrap();
    assert_eq!(manager.get("a*1").await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(manager.list("a*").await.unwrap(), vec!["a*1"]);
    assert_eq!(manager.list("").await.unwrap(), vec!["a*1", "ab"]);
    manager.delete("a*1").await.unwrap();
    assert_eq!(manager.get("a*1").await.unwrap(), None);

    // Configuration errors cross the library boundary with their message.
    let e = manager
        .add_backend(redis_backend("typo", json!({"url": url, "ttl": 5})))
        .await
        .expect_err("unknown field");
    assert!(e.to_string().contains("unknown field `ttl`"), "{e}");

    // And so does an authentication failure, without the password.
    let hostport = url.trim_start_matches("redis://");
    let e = manager
        .add_backend(redis_backend(
            "bad-auth",
            json!({"url": format!("redis://:wrongpass@{hostport}")}),
        ))
        .await
        .expect_err("wrong password");
    let msg = e.to_string();
    eprintln!("authentication failure as the host reports it: {msg}");
    assert!(
        msg.contains("permission_denied") && msg.contains("authentication"),
        "{msg}"
    );
    assert!(!msg.contains("wrongpass"), "the password leaked: {msg}");

    manager.shutdown().await;
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_cache_misses_fills_hits_and_never_serves_stale_values() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("prefer_cache");
    let manager = manager_in_process();
    manager
        .add_backend(redis_backend(
            "cache",
            json!({"url": url, "key_prefix": prefix, "ttl_seconds": 60}),
        ))
        .await
        .unwrap();
    manager
        .add_backend(memory_backend("primary"))
        .await
        .unwrap();

    // Seed the primary alone, so the cache starts cold.
    manager.set_policy(StoragePolicy::AlwaysUse("primary".into()));
    manager.put("user:1", b"v1".to_vec()).await.unwrap();

    manager.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    manager.reset_metrics();
    let mut conn = raw(&url).await;
    let cached = |conn: &mut redis::aio::MultiplexedConnection, key: &str| {
        let cmd = redis::cmd("GET").arg(format!("{prefix}{key}")).to_owned();
        let mut conn = conn.clone();
        async move { cmd.query_async::<Option<Vec<u8>>>(&mut conn).await.unwrap() }
    };

    // First get: a miss, answered by the primary, and the cache is filled.
    assert_eq!(cached(&mut conn, "user:1").await, None);
    assert_eq!(manager.get("user:1").await.unwrap(), Some(b"v1".to_vec()));
    let m = manager.metrics().await;
    assert_eq!((m.cache_hits, m.cache_misses), (0, 1));
    assert_eq!(
        cached(&mut conn, "user:1").await,
        Some(b"v1".to_vec()),
        "filled on the miss"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}user:1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=60).contains(&ttl),
        "the fill carries the cache TTL, got {ttl}"
    );

    // Second get: a hit.
    assert_eq!(manager.get("user:1").await.unwrap(), Some(b"v1".to_vec()));
    let m = manager.metrics().await;
    assert_eq!((m.cache_hits, m.cache_misses), (1, 1));
    assert!(
        (m.cache_hit_rate() - 0.5).abs() < 1e-9,
        "hit rate {}",
        m.cache_hit_rate()
    );

    // A put goes to the primary and the cache: the next get (a hit) is the new value.
    manager.put("user:1", b"v2".to_vec()).await.unwrap();
    assert_eq!(manager.get("user:1").await.unwrap(), Some(b"v2".to_vec()));
    assert_eq!(cached(&mut conn, "user:1").await, Some(b"v2".to_vec()));
    let m = manager.metrics().await;
    assert_eq!((m.cache_hits, m.cache_misses), (2, 1));

    // A delete removes it from both.
    manager.delete("user:1").await.unwrap();
    assert_eq!(manager.get("user:1").await.unwrap(), None);
    assert_eq!(cached(&mut conn, "user:1").await, None);

    // A missing key is a miss, and nothing is cached for it.
    assert_eq!(manager.get("nobody").await.unwrap(), None);
    assert_eq!(cached(&mut conn, "nobody").await, None);

    let m = manager.metrics().await;
    assert_eq!(m.errors, 0);
    assert_eq!(m.backend_errors["cache"], 0);
    assert!(
        m.backend_operations["cache"] >= 8,
        "{:?}",
        m.backend_operations
    );
    assert!(
        m.to_prometheus().contains("cache"),
        "metrics export names the cache backend"
    );
    manager.shutdown().await;
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_mid_run_is_absorbed_by_the_primary_and_hits_resume() {
    let Some(mut server) = RedisServer::start(&[]) else {
        panic!(
            "this test runs its own Redis and needs `redis-server` on PATH: apt-get install redis-server"
        );
    };
    const TIMEOUT_MS: u64 = 2_000;
    let manager = manager_in_process();
    manager
        .add_backend(redis_backend(
            "cache",
            json!({"url": server.url(), "key_prefix": "outage:", "ttl_seconds": 300, "timeout_ms": TIMEOUT_MS}),
        ))
        .await
        .unwrap();
    manager
        .add_backend(memory_backend("primary"))
        .await
        .unwrap();
    manager.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });

    // Warm up: puts go to both, gets hit the cache.
    let mut model: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..10 {
        let (k, v) = (format!("k{i}"), format!("v{i}").into_bytes());
        manager.put(&k, v.clone()).await.unwrap();
        model.insert(k, v);
    }
    for i in 0..10 {
        assert_eq!(
            manager.get(&format!("k{i}")).await.unwrap(),
            model.get(&format!("k{i}")).cloned()
        );
    }
    let m = manager.metrics().await;
    assert_eq!(m.cache_hits, 10);
    assert_eq!(m.backend_errors["cache"], 0);

    // Outage: every operation still succeeds through the primary.
    server.kill();
    let mut slowest = Duration::ZERO;
    let mut slowest_after_open = Duration::ZERO;
    let mut saw_open = false;
    for round in 0..60 {
        let k = format!("k{}", round % 12);
        let took = match round % 4 {
            0 | 1 => {
                let (r, took) = timed(manager.get(&k)).await;
                let got = r.unwrap_or_else(|e| panic!("get {k} during the outage: {e}"));
                assert_eq!(got, model.get(&k).cloned(), "get {k} during the outage");
                took
            }
            2 => {
                let v = format!("outage-{round}").into_bytes();
                let (r, took) = timed(manager.put(&k, v.clone())).await;
                r.unwrap_or_else(|e| panic!("put {k} during the outage: {e}"));
                model.insert(k, v);
                took
            }
            _ => {
                let (r, took) = timed(manager.delete(&k)).await;
                r.unwrap_or_else(|e| panic!("delete {k} during the outage: {e}"));
                model.remove(&k);
                took
            }
        };
        slowest = slowest.max(took);
        if saw_open {
            slowest_after_open = slowest_after_open.max(took);
        }
        saw_open |= cache_health(&manager) == Health::TakenOut;
    }
    assert!(
        saw_open,
        "the cache's circuit breaker opened during the outage"
    );
    let m = manager.metrics().await;
    assert_eq!(m.errors, 0, "no operation failed");
    assert!(
        m.backend_errors["cache"] >= 5,
        "cache errors counted: {:?}",
        m.backend_errors
    );
    assert_eq!(m.backend_errors["primary"], 0, "{:?}", m.backend_errors);
    // A refused connection fails in well under the operation timeout, so
    // no operation waits for it (and none once the breaker is open).
    eprintln!(
        "outage: slowest op {slowest:?}, slowest with the breaker open {slowest_after_open:?}, backend errors {:?}",
        m.backend_errors
    );
    let bound = Duration::from_millis(TIMEOUT_MS / 4);
    assert!(
        slowest < bound,
        "slowest op during the outage took {slowest:?}"
    );
    assert!(
        slowest_after_open < bound,
        "slowest op with the breaker open took {slowest_after_open:?}"
    );

    // Redis comes back (empty: it has no persistence): gets refill the cache
    // and hit again, once the breaker lets a probe through.
    server.restart();
    let hits_before = manager.metrics().await.cache_hits;
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(45);
    let key = model.keys().next().expect("a key survives").clone();
    loop {
        assert_eq!(manager.get(&key).await.unwrap(), model.get(&key).cloned());
        if manager.metrics().await.cache_hits > hits_before {
            eprintln!("hits resumed {:?} after the restart", restarted.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cache hits did not resume within 45 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cache_health(&manager), Health::Healthy);
    let mut conn = raw(&server.url()).await;
    let cached: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("outage:{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        cached,
        model.get(&key).cloned(),
        "the restarted Redis was refilled"
    );
    // Every key still reads right.
    for (k, v) in &model {
        assert_eq!(manager.get(k).await.unwrap().as_ref(), Some(v));
    }
    manager.shutdown().await;
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
async fn failover_policy_skips_a_dead_redis() {
    // FirstAvailable [redis, memory]: with Redis down the memory backend
    // answers, and once the breaker is open Redis is not even tried.
    let Some(mut server) = RedisServer::start(&[]) else {
        panic!(
            "this test runs its own Redis and needs `redis-server` on PATH: apt-get install redis-server"
        );
    };
    let manager = manager_in_process();
    manager
        .add_backend(redis_backend(
            "redis",
            json!({"url": server.url(), "timeout_ms": 2000}),
        ))
        .await
        .unwrap();
    manager.add_backend(memory_backend("memory")).await.unwrap();
    manager.set_policy(StoragePolicy::FirstAvailable(vec![
        "redis".into(),
        "memory".into(),
    ]));
    manager.put("k", b"v".to_vec()).await.unwrap();
    server.kill();
    for _ in 0..20 {
        let (r, took) = timed(manager.put("k", b"w".to_vec())).await;
        r.expect("fails over to memory");
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
    let m = manager.metrics().await;
    assert_eq!(m.errors, 0);
    let redis_errors = m.backend_errors["redis"];
    assert!(
        (5..20).contains(&redis_errors),
        "breaker stops the attempts: {redis_errors} errors"
    );
    match manager.get("missing").await {
        Ok(None) => {}
        other => panic!("memory answers the read: {other:?}"),
    }
}
