//! The PreferCache policy made real: `cache: "redis"` in front of
//! `primary: "supabase"`, both plugins loaded from their libraries, against a
//! real Redis and the local Supabase REST API (`scripts/services.sh`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p2p_ai_agents::storage::{
    BackendConfig, Health, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
};
use serde_json::json;
use storage_test_support::{TempDir, plugin_library, supabase};

/// A private redis-server this test may kill and restart (the shared one on
/// 6379 is left alone: other tests use it).
struct PrivateRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis {
            port,
            dir: TempDir::new("private-redis"),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/services.sh installs it)");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn manager(redis_url: &str, prefix: &str) -> StorageManager {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    manager
        .load_plugin(plugin_library(
            "storage-redis-plugin",
            "storage_redis_plugin",
        ))
        .unwrap();
    manager
        .load_plugin(plugin_library(
            "storage-supabase-plugin",
            "storage_supabase_plugin",
        ))
        .unwrap();
    manager
        .add_backend(BackendConfig {
            name: "redis".into(),
            storage_config: StorageConfig::Custom {
                plugin_name: "redis".into(),
                config: json!({"url": redis_url, "key_prefix": prefix, "ttl_seconds": 300, "timeout_ms": 500}),
            },
            enabled: true,
            priority: 1,
        })
        .await
        .unwrap();
    manager
        .add_backend(BackendConfig {
            name: "supabase".into(),
            storage_config: supabase::local_config(5, 1),
            enabled: true,
            priority: 2,
        })
        .await
        .unwrap();
    manager.set_policy(StoragePolicy::PreferCache {
        cache: "redis".to_string(),
        primary: "supabase".to_string(),
    });
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_in_front_of_supabase_survives_a_redis_outage() {
    let mut redis = PrivateRedis::start();
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let run = format!("cache-e2e-{}", std::process::id());
    let m = manager(&url, "e2e:").await;
    let key = |i: usize| format!("{run}/k{i}");

    // Write through, then read: the first read after a write is a hit (put
    // fills the cache); a value written behind the cache's back is a miss,
    // filled, then a hit.
    for i in 0..5 {
        m.put(&key(i), format!("v{i}").into_bytes()).await.unwrap();
    }
    m.reset_metrics();
    for i in 0..5 {
        assert_eq!(
            m.get(&key(i)).await.unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    let metrics = m.metrics().await;
    assert_eq!((metrics.cache_hits, metrics.cache_misses), (5, 0));

    m.set_policy(StoragePolicy::AlwaysUse("supabase".into()));
    m.put(&key(9), b"direct".to_vec()).await.unwrap();
    m.set_policy(StoragePolicy::PreferCache {
        cache: "redis".into(),
        primary: "supabase".into(),
    });
    m.reset_metrics();
    assert_eq!(m.get(&key(9)).await.unwrap(), Some(b"direct".to_vec())); // miss, fill
    assert_eq!(m.get(&key(9)).await.unwrap(), Some(b"direct".to_vec())); // hit
    let metrics = m.metrics().await;
    assert_eq!((metrics.cache_hits, metrics.cache_misses), (1, 1));
    assert_eq!(metrics.cache_hit_rate(), 0.5);

    // No stale cache: a put is visible to the next get.
    m.put(&key(0), b"new".to_vec()).await.unwrap();
    assert_eq!(m.get(&key(0)).await.unwrap(), Some(b"new".to_vec()));

    // Redis dies mid-run: every operation still succeeds through Supabase.
    redis.kill();
    m.reset_metrics();
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let t = Instant::now();
        m.put(&key(round % 5), format!("r{round}").into_bytes())
            .await
            .unwrap();
        assert_eq!(
            m.get(&key(round % 5)).await.unwrap(),
            Some(format!("r{round}").into_bytes())
        );
        if round >= 5 {
            slowest = slowest.max(t.elapsed());
        }
    }
    let metrics = m.metrics().await;
    assert_eq!(metrics.errors, 0, "no operation failed");
    assert!(
        metrics.backend_errors["redis"] >= 1,
        "cache errors counted: {metrics:?}"
    );
    assert_eq!(metrics.backend_errors["supabase"], 0);
    assert_eq!(
        m.list_backends()
            .iter()
            .find(|b| b.name == "redis")
            .unwrap()
            .health,
        Health::TakenOut
    );
    assert!(
        slowest < Duration::from_millis(450),
        "once the breaker is open no op waits the cache's timeout: {slowest:?}"
    );

    // Redis comes back (empty): after the breaker's cooldown, hits resume.
    redis.spawn();
    let t = Instant::now();
    loop {
        m.reset_metrics();
        m.get(&key(1)).await.unwrap();
        m.get(&key(1)).await.unwrap();
        if m.metrics().await.cache_hits > 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "hits did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in [0, 1, 2, 3, 4, 9] {
        m.delete(&key(i)).await.unwrap();
    }
}
