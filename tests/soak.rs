//! A bounded soak: mixed operations from many tasks through
//! `Redundant { local durable, supabase }` with a hot swap of the local plugin
//! every few seconds. At the end every acknowledged write is readable from
//! every backend, memory and file descriptors are flat, and no configured
//! secret reached the logs. `SOAK_SECS` sets the length (default 30 s).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2p_ai_agents::storage::watch::{PluginEvent, WatchOptions};
use p2p_ai_agents::storage::{
    BackendConfig, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
};
use storage_test_support::{TempDir, plugin_library, supabase};

/// A resident-memory figure of this process, in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn mem_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn soak_redundant_local_and_supabase_with_hot_swaps() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (v1, v2) = (
            plugin_library("storage-local-plugin", "storage_local_plugin"),
            plugin_library("local-v2-plugin", "local_v2_plugin"),
        );
        let plugins = TempDir::new("soak-plugins");
        let file = plugins.path().join("libstorage_local_plugin.so");
        install(&v1, &file);
        let data = TempDir::new("soak-data");
        let (anon, service) = (supabase::anon_key(), supabase::service_key());

        let manager = StorageManager::with_registry(StorageRegistry::new());
        manager
            .load_plugin(plugin_library("storage-supabase-plugin", "storage_supabase_plugin"))
            .unwrap();
        let mut watcher = manager.watch_plugins(plugins.path(), WatchOptions::default()).await.unwrap();
        manager
            .add_backend(BackendConfig {
                name: "disk".into(),
                storage_config: StorageConfig::Local { path: Some(data.path().to_string_lossy().into_owned()) },
                enabled: true,
                priority: 0,
            })
            .await
            .unwrap();
        manager
            .add_backend(BackendConfig {
                name: "supabase".into(),
                storage_config: StorageConfig::Supabase {
                    url: supabase::url(),
                    anon_key: anon.clone(),
                    service_role_key: Some(service.clone()),
                    schema: "public".into(),
                    table_name: "storage".into(),
                    timeout: 10,
                    max_retries: 3,
                },
                enabled: true,
                priority: 1,
            })
            .await
            .unwrap();
        manager.set_policy(StoragePolicy::Redundant(vec!["disk".into(), "supabase".into()]));

        // Warm up with the same concurrency (the HTTP pool opens one
        // connection per concurrent request), then take the baseline.
        let run = format!("soak-{}", std::process::id());
        let warm: Vec<_> = (0..8)
            .map(|t| {
                let (m, run) = (manager.clone(), run.clone());
                tokio::spawn(async move {
                    for i in 0..50 {
                        m.put(&format!("{run}/warm{t}-{i}"), vec![0; 256]).await.unwrap();
                    }
                })
            })
            .collect();
        for w in warm {
            w.await.unwrap();
        }
        let fd_list = || -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            v.sort();
            v
        };
        let fds_before = fd_list();
        let (rss_start, anon_start, file_start, fds_start) =
            (mem_kib("VmRSS"), mem_kib("RssAnon"), mem_kib("RssFile"), open_fds());

        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (m, stop, run) = (manager.clone(), stop.clone(), run.clone());
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut failures = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{run}/t{t}/{i}");
                        let value = format!("{key}:{}", "x".repeat((i % 512) as usize)).into_bytes();
                        match m.put(&key, value.clone()).await {
                            Ok(()) => acked.push((key.clone(), value.clone())),
                            Err(e) => failures.push(e.to_string()),
                        }
                        match i % 4 {
                            0 => {
                                if let Err(e) = m.get(&key).await {
                                    failures.push(e.to_string());
                                }
                            }
                            1 if i > 8 => {
                                // Delete an older key of ours; it leaves `acked`.
                                let old = format!("{run}/t{t}/{}", i - 8);
                                match m.delete(&old).await {
                                    Ok(()) => acked.retain(|(k, _)| *k != old),
                                    Err(e) => failures.push(e.to_string()),
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    (acked, failures)
                })
            })
            .collect();

        let started = Instant::now();
        let mut swaps = 0;
        while started.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(4)).await;
            install(if swaps % 2 == 0 { &v2 } else { &v1 }, &file);
            loop {
                match tokio::time::timeout(Duration::from_secs(20), watcher.next_event()).await {
                    Ok(Some(PluginEvent::Swapped { .. })) => swaps += 1,
                    // Renamed over during its settle interval: checked again.
                    Ok(Some(PluginEvent::NotYetStable { .. })) => continue,
                    other => panic!("swap {swaps}: {other:?}"),
                }
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let (mut acked, mut failures) = (Vec::new(), Vec::new());
        for t in tasks {
            let (a, f) = t.await.unwrap();
            acked.extend(a);
            failures.extend(f);
        }
        let (rss_end, anon_end, file_end, fds_end) =
            (mem_kib("VmRSS"), mem_kib("RssAnon"), mem_kib("RssFile"), open_fds());
        println!(
            "soak: {secs} s, {swaps} hot swaps, {} acknowledged writes kept, {} failures; \
             RSS {rss_start} -> {rss_end} KiB (anonymous {anon_start} -> {anon_end}, file-backed {file_start} -> {file_end}); fds {fds_start} -> {fds_end}",
            acked.len(),
            failures.len()
        );
        assert!(failures.is_empty(), "operations failed: {:?}", &failures[..failures.len().min(5)]);
        assert!(swaps >= 3, "hot swaps happened: {swaps}");

        use futures_util::StreamExt;
        for backend in ["disk", "supabase"] {
            manager.set_policy(StoragePolicy::AlwaysUse(backend.into()));
            let m = &manager;
            let missing: Vec<String> = futures_util::stream::iter(&acked)
                .map(|(key, value)| async move {
                    (m.get(key).await.unwrap().as_ref() != Some(value)).then(|| key.clone())
                })
                .buffer_unordered(32)
                .filter_map(|k| async move { k })
                .collect()
                .await;
            assert!(missing.is_empty(), "{} acknowledged writes missing on {backend}: {:?}", missing.len(), &missing[..missing.len().min(5)]);
        }
        // Flat heap: what may grow is the durable store's page cache (capped
        // at 64 MiB) and allocator slack. File-backed pages grow with the
        // library copy each swap maps (libraries are never unloaded, by design).
        assert!(
            anon_end < anon_start + 96 * 1024,
            "anonymous memory grew from {anon_start} to {anon_end} KiB"
        );
        let library = std::fs::metadata(&v1).unwrap().len() / 1024;
        assert!(
            file_end < file_start + (swaps as u64 + 1) * library,
            "file-backed memory grew from {file_start} to {file_end} KiB over {swaps} swaps of a {library} KiB library"
        );
        assert!(
            fds_end <= fds_start + 4,
            "file descriptors grew from {fds_start} to {fds_end}: before {fds_before:?}, after {:?}",
            fd_list()
        );

        manager.set_policy(StoragePolicy::AlwaysUse("supabase".into()));
        let keys = manager.list(&format!("{run}/")).await.unwrap();
        let m = &manager;
        futures_util::stream::iter(keys)
            .for_each_concurrent(32, |key| async move { m.delete(&key).await.unwrap() })
            .await;
        manager.shutdown().await;
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("backend hot-swapped"), "logs were captured");
        for secret in [&anon, &service] {
            assert!(!logs.contains(secret.as_str()), "a key reached the logs");
        }
    });
}
