//! Hot-swap latency: from the new library file written to the new version
//! serving, and the longest operation latency while swaps happen, with four
//! tasks writing and reading (paced like busy clients), for the in-memory and
//! the durable local backend.
//!
//! `cargo bench --bench hot_swap` (prints its figures; not a criterion bench:
//! a swap is a one-off event, measured over a series).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use p2p_ai_agents::storage::watch::{PluginEvent, WatchOptions};
use p2p_ai_agents::storage::{BackendConfig, StorageConfig, StorageManager, StorageRegistry};
use storage_test_support::{TempDir, plugin_library};

const SWAPS: usize = 10;

fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn run(label: &str, path: Option<String>) {
    let v1 = plugin_library("storage-local-plugin", "storage_local_plugin");
    let v2 = plugin_library("local-v2-plugin", "local_v2_plugin");
    let dir = TempDir::new("bench-hot-swap");
    let file = dir.path().join("libstorage_local_plugin.so");
    install(&v1, &file);
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let mut watcher = manager
        .watch_plugins(dir.path(), WatchOptions::default())
        .await
        .unwrap();
    manager
        .add_backend(BackendConfig {
            name: "data".into(),
            storage_config: StorageConfig::Local { path },
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap();
    // Some data to hand over / reopen: 10,000 keys of 100 bytes.
    for i in 0..10_000 {
        manager
            .put(&format!("seed-{i}"), vec![1; 100])
            .await
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (m, stop, failed) = (manager.clone(), stop.clone(), failed.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("t{t}-{i}");
                    let start = Instant::now();
                    if m.put(&key, vec![2; 100]).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(start.elapsed());
                    let start = Instant::now();
                    if m.get(&key).await.map(|v| v.is_none()).unwrap_or(true) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(start.elapsed());
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                latencies
            })
        })
        .collect();

    let mut swap = Vec::new();
    let mut held = Vec::new();
    for round in 0..SWAPS {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        install(if round % 2 == 0 { &v2 } else { &v1 }, &file);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), watcher.next_event()).await {
                Ok(Some(PluginEvent::Swapped { paused, .. })) => {
                    swap.push(start.elapsed());
                    held.push(paused);
                }
                Ok(Some(PluginEvent::NotYetStable { .. })) => continue,
                Ok(Some(other)) => panic!("unexpected event {other}"),
                _ => panic!("no swap within 10 s"),
            }
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut ops = Vec::new();
    for t in tasks {
        ops.extend(t.await.unwrap());
    }
    let n = ops.len();
    println!(
        "{label}: {SWAPS} swaps; file written -> new version serving: median {:.0?}, max {:.0?}; \
         ops held per swap: median {:.1?}, max {:.1?}; op latency over {n} ops: p50 {:.0?}, p99 {:.1?}, max {:.1?}; failed ops {}",
        percentile(&mut swap, 0.5),
        percentile(&mut swap, 1.0),
        percentile(&mut held, 0.5),
        percentile(&mut held, 1.0),
        percentile(&mut ops, 0.5),
        percentile(&mut ops, 0.99),
        percentile(&mut ops, 1.0),
        failed.load(Ordering::Relaxed),
    );
    manager.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run("memory", None));
    let data = TempDir::new("bench-hot-swap-data");
    rt.block_on(run(
        "durable",
        Some(data.path().to_string_lossy().into_owned()),
    ));
}
