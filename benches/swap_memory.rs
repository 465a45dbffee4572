//! Memory across hot swaps: 200 swaps of the local plugin through a watched
//! plugins directory, with four tasks writing and reading (over a bounded key
//! set, so the store itself does not grow), and after each swap the
//! process's resident memory, its anonymous part, its file-backed part and
//! its thread count (from /proc/self/status).
//!
//! `cargo bench --bench swap_memory` (prints one line per swap and a
//! summary; not a criterion bench: memory is a level, not a speed).
//! `SWAPS=N` changes the number of swaps; `SWAP_MEMORY_DISTINCT=1` makes
//! every swap install a library with new bytes (a new build each time)
//! instead of alternating between two builds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use p2p_ai_agents::storage::watch::{PluginEvent, WatchOptions};
use p2p_ai_agents::storage::{BackendConfig, StorageConfig, StorageManager, StorageRegistry};
use storage_test_support::{TempDir, plugin_library};

/// KiB figures of /proc/self/status.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

fn sample() -> Sample {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    Sample {
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        threads: field("Threads:"),
    }
}

/// Copies `src` beside `dest`, appends `suffix` (bytes after the end of the
/// ELF image: another file to the loader, the same code), renames it over
/// `dest`. The bench holds no library in memory: what it measures is the
/// host's.
fn install(src: &Path, dest: &Path, suffix: &[u8]) {
    use std::io::Write;
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    if !suffix.is_empty() {
        let mut f = std::fs::OpenOptions::new().append(true).open(&tmp).unwrap();
        f.write_all(suffix).unwrap();
    }
    std::fs::rename(&tmp, dest).unwrap();
}

/// Least-squares slope of `y` over the sample index, per sample.
fn slope(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        num += (i as f64 - mx) * (v - my);
        den += (i as f64 - mx).powi(2);
    }
    num / den
}

async fn run(swaps: usize, distinct: bool) {
    let v1 = plugin_library("storage-local-plugin", "storage_local_plugin");
    let v2 = plugin_library("local-v2-plugin", "local_v2_plugin");
    let dir = TempDir::new("bench-swap-memory");
    let file = dir.path().join("libstorage_local_plugin.so");
    install(&v1, &file, b"");
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let options = WatchOptions {
        debounce: Duration::from_millis(50),
        settle: Duration::from_millis(20),
    };
    let mut watcher = manager.watch_plugins(dir.path(), options).await.unwrap();
    manager
        .add_backend(BackendConfig {
            name: "data".into(),
            storage_config: StorageConfig::Local { path: None },
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (m, stop, failed, ops) =
                (manager.clone(), stop.clone(), failed.clone(), ops.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // A bounded key set: the store's own size stays flat.
                    let key = format!("t{t}-{}", i % 1000);
                    if m.put(&key, vec![2; 100]).await.is_err()
                        || m.get(&key).await.map(|v| v.is_none()).unwrap_or(true)
                    {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    ops.fetch_add(2, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = sample();
    println!("swap,rss_kib,anon_kib,file_kib,threads");
    println!(
        "0,{},{},{},{}",
        start.rss, start.anon, start.file, start.threads
    );
    let mut samples = Vec::with_capacity(swaps);
    for round in 0..swaps {
        let src = if round % 2 == 0 { &v2 } else { &v1 };
        // A new build each time: new bytes after the end of the ELF image.
        let suffix = if distinct {
            format!("build-{round}").into_bytes()
        } else {
            Vec::new()
        };
        install(src, &file, &suffix);
        loop {
            match tokio::time::timeout(Duration::from_secs(20), watcher.next_event()).await {
                Ok(Some(PluginEvent::Swapped { .. })) => break,
                Ok(Some(PluginEvent::NotYetStable { .. })) => continue,
                Ok(Some(other)) => panic!("unexpected event {other}"),
                _ => panic!("no swap within 20 s"),
            }
        }
        // Let the old version drain and the allocator settle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = sample();
        println!(
            "{},{},{},{},{}",
            round + 1,
            s.rss,
            s.anon,
            s.file,
            s.threads
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let after10 = &samples[10.min(samples.len() - 1)..];
    let kib = |f: fn(&Sample) -> u64| after10.iter().map(|s| f(s) as f64).collect::<Vec<_>>();
    let last = samples.last().unwrap();
    println!(
        "summary ({}): {swaps} swaps, {} ops, {} failed; RSS {} -> {} KiB, anonymous {} -> {} KiB, file-backed {} -> {} KiB, threads {} -> {} (min {} max {} after swap 10); \
         per swap after the first 10 (least squares): RSS {:+.0} KiB, anonymous {:+.1} KiB, file-backed {:+.0} KiB, threads {:+.3}",
        if distinct {
            "a new build every swap"
        } else {
            "two builds alternating"
        },
        ops.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        start.rss,
        last.rss,
        start.anon,
        last.anon,
        start.file,
        last.file,
        start.threads,
        last.threads,
        after10.iter().map(|s| s.threads).min().unwrap(),
        after10.iter().map(|s| s.threads).max().unwrap(),
        slope(&kib(|s| s.rss)),
        slope(&kib(|s| s.anon)),
        slope(&kib(|s| s.file)),
        slope(&kib(|s| s.threads)),
    );
    manager.shutdown().await;
}

fn main() {
    let swaps = std::env::var("SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let distinct = std::env::var("SWAP_MEMORY_DISTINCT").is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(swaps, distinct));
}
