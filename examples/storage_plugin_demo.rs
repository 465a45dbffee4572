//! The storage plugin system on the embedded default, no services needed:
//! a manager, a backend, a put and a get, run through the `local` plugin
//! loaded as a dynamic library, then every routing policy, a live hot swap,
//! and the metrics.
//!
//! ```text
//! cargo run --example storage_plugin_demo
//! ```

use std::time::{Duration, Instant};

use p2p_ai_agents::storage::{
    BackendConfig, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
    watch::{PluginEvent, WatchOptions},
};
use storage_test_support::{TempDir, plugin_library};

fn step(title: &str) {
    println!("\n== {title}");
}

fn local(name: &str, priority: u32) -> BackendConfig {
    BackendConfig {
        name: name.to_string(),
        storage_config: StorageConfig::Local { path: None },
        enabled: true,
        priority,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    step("Building the plugin libraries (cargo, first run takes a while)");
    let started = Instant::now();
    let local_lib = plugin_library("storage-local-plugin", "storage_local_plugin");
    let local_v2_lib = plugin_library("local-v2-plugin", "local_v2_plugin");
    println!(
        "   built in {:.1?}: {}",
        started.elapsed(),
        local_lib.display()
    );

    // A plugins directory, as a deployment would have.
    let plugins = TempDir::new("storage-demo-plugins");
    let plugin_file = plugins.path().join("libstorage_local_plugin.so");
    std::fs::copy(&local_lib, &plugin_file)?;

    step("Discovering plugins (no plugin is linked in: everything comes from the directory)");
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let mut watcher = manager
        .watch_plugins(plugins.path(), WatchOptions::default())
        .await?;
    print!("{}", watcher.initial_report());

    step("Quick Start: put and get through the dynamically loaded `local` plugin");
    manager.add_backend(local("local", 1)).await?;
    manager.put("key", b"value".to_vec()).await?;
    let data = manager.get("key").await?;
    println!(
        "   get(\"key\") = {:?}",
        data.as_deref().map(String::from_utf8_lossy)
    );

    step("Durable local store: write, shut down, reopen, read back");
    let data_dir = TempDir::new("storage-demo-data");
    let durable = BackendConfig {
        name: "durable".into(),
        storage_config: StorageConfig::Local {
            path: Some(data_dir.path().to_string_lossy().into_owned()),
        },
        enabled: true,
        priority: 100,
    };
    manager.add_backend(durable.clone()).await?;
    manager.set_policy(StoragePolicy::AlwaysUse("durable".into()));
    manager.put("config:model", b"llama-3-8b".to_vec()).await?;
    manager.remove_backend("durable").await?; // flushes and releases the store
    manager.add_backend(durable).await?;
    println!(
        "   after reopening {}: config:model = {:?}",
        data_dir.path().display(),
        manager
            .get("config:model")
            .await?
            .as_deref()
            .map(String::from_utf8_lossy)
    );
    manager.remove_backend("durable").await?;
    manager.clear_policy();

    step("Adding more backends: cache, primary, replica-a, replica-b");
    for (i, name) in ["cache", "primary", "replica-a", "replica-b"]
        .iter()
        .enumerate()
    {
        manager.add_backend(local(name, 2 + i as u32)).await?;
    }
    for b in manager.list_backends() {
        println!(
            "   {:<10} plugin {} {} priority {} {:?}",
            b.name, b.plugin, b.plugin_version, b.priority, b.health
        );
    }

    step("AlwaysUse(primary)");
    manager.set_policy(StoragePolicy::AlwaysUse("primary".into()));
    manager.put("user:1", b"alice".to_vec()).await?;
    println!(
        "   put user:1 -> primary; keys on primary: {:?}",
        manager.list("user:").await?
    );

    step("PreferCache { cache, primary }: first read misses and fills, second hits");
    manager.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    for _ in 0..2 {
        manager.get("user:1").await?;
    }
    let m = manager.metrics().await;
    println!(
        "   cache hits {} misses {} (hit rate {:.0}%)",
        m.cache_hits,
        m.cache_misses,
        m.cache_hit_rate() * 100.0
    );

    step("Redundant [replica-a, replica-b]: one put lands on both");
    manager.set_policy(StoragePolicy::Redundant(vec![
        "replica-a".into(),
        "replica-b".into(),
    ]));
    manager.put("doc:1", b"replicated".to_vec()).await?;
    for r in ["replica-a", "replica-b"] {
        manager.set_policy(StoragePolicy::AlwaysUse(r.into()));
        println!(
            "   {r} has doc:1 = {:?}",
            manager.get("doc:1").await?.is_some()
        );
    }

    step("RoundRobin [replica-a, replica-b]: reads alternate");
    manager.set_policy(StoragePolicy::RoundRobin(vec![
        "replica-a".into(),
        "replica-b".into(),
    ]));
    let before = manager.metrics().await;
    for _ in 0..10 {
        manager.get("doc:1").await?;
    }
    let after = manager.metrics().await;
    let served = |b: &str| after.backend_operations[b] - before.backend_operations[b];
    println!(
        "   replica-a served {}, replica-b served {}",
        served("replica-a"),
        served("replica-b")
    );

    step("FirstAvailable [cache, primary] with cache disabled at runtime");
    manager.set_policy(StoragePolicy::FirstAvailable(vec![
        "cache".into(),
        "primary".into(),
    ]));
    manager.set_backend_enabled("cache", false)?;
    manager.put("note", b"went to primary".to_vec()).await?;
    manager.set_backend_enabled("cache", true)?;
    // The cache missed that write: it is skipped for `note` (never a stale
    // answer) until the repair copies the value over.
    println!(
        "   cache back; read note = {:?} (from primary: the cache is behind on it)",
        manager
            .get("note")
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    manager.repair_now().await; // the background worker would do it too
    manager.set_policy(StoragePolicy::AlwaysUse("cache".into()));
    println!(
        "   after repair, cache has note = {:?}",
        manager.get("note").await?.is_some()
    );

    step("Hot swap: a new build of `local` is copied over the plugin file while a writer runs");
    manager.clear_policy();
    let writer = {
        let manager = manager.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                match manager.put(&format!("live:{ok}"), b"x".to_vec()).await {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let swap_started = Instant::now();
    let tmp = plugins.path().join(".incoming");
    std::fs::copy(&local_v2_lib, &tmp)?;
    std::fs::rename(&tmp, &plugin_file)?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), watcher.next_event()).await {
            Ok(Some(PluginEvent::Swapped {
                plugin, from, to, ..
            })) => {
                println!(
                    "   swapped {plugin} {from} -> {to} in {:.0?}",
                    swap_started.elapsed()
                );
                break;
            }
            Ok(Some(other)) => println!("   event: {other}"),
            Ok(None) | Err(_) => return Err("no swap event within 10 s".into()),
        }
    }
    let (ok, failed) = writer.await?;
    println!("   writer during the swap: {ok} puts acknowledged, {failed} failed");
    let mut missing = 0;
    for i in 0..ok {
        if manager.get(&format!("live:{i}")).await?.is_none() {
            missing += 1;
        }
    }
    println!("   acknowledged writes missing after the swap: {missing}");
    for b in manager.list_backends() {
        println!(
            "   {:<10} now runs {} {}",
            b.name, b.plugin, b.plugin_version
        );
    }

    step("Metrics");
    let m = manager.metrics().await;
    println!(
        "   operations {}  errors {}  success {:.1}%  cache hit rate {:.1}%",
        m.operations,
        m.errors,
        m.success_rate() * 100.0,
        m.cache_hit_rate() * 100.0
    );
    let c = &m.consistency;
    println!(
        "   stale reads avoided {}  copies marked behind {}  repaired {}  backlog {}",
        c.stale_reads_avoided, c.stale_marks, c.repairs, c.repair_backlog
    );
    println!(
        "   {:<10} {:>8} {:>7} {:>10} {:>10}",
        "backend", "ops", "errors", "mean", "p99<="
    );
    let mut names: Vec<_> = m.backend_operations.keys().cloned().collect();
    names.sort();
    for n in names {
        let lat = &m.backend_latency[&n];
        println!(
            "   {:<10} {:>8} {:>7} {:>10.1?} {:>10?}",
            n,
            m.backend_operations[&n],
            m.backend_errors[&n],
            lat.mean(),
            lat.quantile(0.99).unwrap_or_default()
        );
    }
    manager.shutdown().await;
    Ok(())
}
