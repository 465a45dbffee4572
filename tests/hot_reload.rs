//! Hot reload: a watched plugins directory, plugins dropped in, replaced under
//! load, broken, removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use p2p_ai_agents::storage::watch::{PluginEvent, PluginWatcher, WatchOptions};
use p2p_ai_agents::storage::{BackendConfig, StorageConfig, StorageManager, StorageRegistry};
use storage_test_support::{TempDir, plugin_library};

fn v1() -> PathBuf {
    plugin_library("storage-local-plugin", "storage_local_plugin")
}
fn v2() -> PathBuf {
    plugin_library("local-v2-plugin", "local_v2_plugin")
}

/// Replaces `dest` with `src` atomically, as a deployment would (copy beside, rename).
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// The next event, any kind.
async fn next_any(w: &mut PluginWatcher) -> PluginEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next_event())
        .await
        .expect("an event within 10 s")
        .expect("watcher running")
}

/// The next event that is not "still being written" (a file renamed over
/// during the settle interval can give one: it is informational).
async fn next(w: &mut PluginWatcher) -> PluginEvent {
    loop {
        match next_any(w).await {
            PluginEvent::NotYetStable { .. } => continue,
            e => return e,
        }
    }
}

/// No event within `wait` (other than "still being written").
async fn quiet_for(w: &mut PluginWatcher, wait: Duration) {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w.next_event()).await {
            Err(_) => return,
            Ok(Some(PluginEvent::NotYetStable { .. })) => continue,
            Ok(other) => panic!("expected no event, got {other:?}"),
        }
    }
}

/// The first `len / divisor` bytes of `src`, written to `dest`.
fn truncated_copy(src: &Path, dest: &Path, divisor: usize) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dest, &bytes[..bytes.len() / divisor]).unwrap();
}

/// The file a registered plugin was loaded from.
fn provider(manager: &StorageManager, plugin: &str) -> Option<PathBuf> {
    match manager.get_plugin(plugin)?.source() {
        p2p_ai_agents::storage::plugin::PluginSource::Library { path, .. } => Some(path),
        other => panic!("plugin {plugin} is not from a library: {other:?}"),
    }
}

fn local_backend(name: &str, path: Option<String>) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        storage_config: StorageConfig::Local { path },
        enabled: true,
        priority: 0,
    }
}

async fn watched(dir: &Path) -> (StorageManager, PluginWatcher) {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let watcher = manager
        .watch_plugins(dir, WatchOptions::default())
        .await
        .unwrap();
    (manager, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_plugin_is_usable_within_two_seconds() {
    let dir = TempDir::new("hot-drop");
    let (manager, mut watcher) = watched(dir.path()).await;
    assert!(watcher.initial_report().loaded.is_empty());
    let src = v1();
    let t = Instant::now();
    install(&src, &dir.path().join("libstorage_local_plugin.so"));
    loop {
        if manager.get_plugin("local").is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not loaded within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.add_backend(local_backend("m", None)).await.unwrap();
    manager.put("k", b"v".to_vec()).await.unwrap();
    assert!(
        matches!(next(&mut watcher).await, PluginEvent::Loaded { ref plugin, .. } if plugin == "local")
    );

    // An unchanged rewrite causes no reload; removal unregisters, the backend keeps serving.
    install(&src, &dir.path().join("libstorage_local_plugin.so"));
    std::fs::remove_file(dir.path().join("libstorage_local_plugin.so")).unwrap();
    match next(&mut watcher).await {
        PluginEvent::Removed {
            plugin,
            still_serving,
            ..
        } => {
            assert_eq!(plugin, "local");
            assert_eq!(still_serving, vec!["m".to_string()]);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(manager.get_plugin("local").is_none());
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
}

/// Ten swaps between two builds while four tasks write and read.
async fn swaps_under_load(path: Option<String>, label: &str) {
    let dir = TempDir::new(label);
    let file = dir.path().join("libstorage_local_plugin.so");
    let (a, b) = (v1(), v2());
    install(&a, &file);
    let (manager, mut watcher) = watched(dir.path()).await;
    assert_eq!(watcher.initial_report().loaded.len(), 1);
    manager
        .add_backend(local_backend("data", path))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (m, stop, failures) = (manager.clone(), stop.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("t{t}-{i}");
                let started = Instant::now();
                match m.put(&key, key.clone().into_bytes()).await {
                    Ok(()) => acked.push(key.clone()),
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("put failed: {e}");
                    }
                }
                match m.get(&key).await {
                    Ok(Some(v)) if v == key.as_bytes() => {}
                    other => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("get {key}: {other:?}");
                    }
                }
                worst = worst.max(started.elapsed());
                i += 1;
                // Paced like a busy client (~1000 ops/s per task), so the
                // in-memory state handed over at each swap stays realistic.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (acked, worst)
        }));
    }

    let mut versions = vec![manager.list_backends()[0].plugin_version.clone()];
    let mut swap_times = Vec::new();
    let mut pauses = Vec::new();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let src = if round % 2 == 0 { &b } else { &a };
        let t = Instant::now();
        install(src, &file);
        match next(&mut watcher).await {
            PluginEvent::Swapped {
                to,
                backends,
                paused,
                ..
            } => {
                assert_eq!(backends, vec!["data".to_string()]);
                swap_times.push(t.elapsed());
                pauses.push(paused);
                versions.push(to);
            }
            other => panic!("round {round}: unexpected {other}"),
        }
        assert_eq!(
            manager.list_backends()[0].plugin_version,
            *versions.last().unwrap()
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (keys, w) = t.await.unwrap();
        acked.extend(keys);
        worst = worst.max(w);
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no operation failed during the swaps"
    );
    assert!(
        acked.len() > 100,
        "the writers made progress: {}",
        acked.len()
    );
    for key in &acked {
        assert_eq!(
            manager.get(key).await.unwrap().as_deref(),
            Some(key.as_bytes()),
            "acknowledged write {key} is readable after ten swaps"
        );
    }
    let expected: Vec<String> = (0..=10)
        .map(|i| {
            if i % 2 == 0 {
                "0.1.0".to_string()
            } else {
                "0.1.0+v2".to_string()
            }
        })
        .collect();
    assert_eq!(versions, expected, "the version switched at every swap");
    println!(
        "{label}: {} acked writes, swap latency max {:?}, ops held max {:?}, worst op (put+get) during swaps {:?}",
        acked.len(),
        swap_times.iter().max().unwrap(),
        pauses.iter().max().unwrap(),
        worst
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_under_load_lose_nothing_in_memory() {
    swaps_under_load(None, "hot-swap-memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_under_load_lose_nothing_durable() {
    let data = TempDir::new("hot-swap-durable-data");
    swaps_under_load(
        Some(data.path().to_string_lossy().into_owned()),
        "hot-swap-durable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_new_versions_change_nothing() {
    let dir = TempDir::new("hot-broken");
    let file = dir.path().join("libstorage_local_plugin.so");
    install(&v1(), &file);
    let (manager, mut watcher) = watched(dir.path()).await;
    manager.add_backend(local_backend("m", None)).await.unwrap();
    manager.put("k", b"v".to_vec()).await.unwrap();

    let random = dir.path().join("random.bin");
    std::fs::write(&random, vec![0x5a; 8192]).unwrap();
    let broken = [
        (random.clone(), "not a loadable library"),
        (
            plugin_library("incompatible-layout-plugin", "incompatible_layout_plugin"),
            "incompatible plugin-api",
        ),
        (
            plugin_library("local-broken-plugin", "local_broken_plugin"),
            "panicked in create",
        ),
    ];
    for (src, why) in broken {
        install(&src, &file);
        match next(&mut watcher).await {
            PluginEvent::Rejected { file: f, reason } => {
                assert_eq!(f.file_name(), file.file_name());
                assert!(reason.contains(why), "expected '{why}' in: {reason}");
            }
            other => panic!("unexpected {other}"),
        }
        // The old version keeps serving, with its data.
        let b = &manager.list_backends()[0];
        assert_eq!(b.plugin_version, "0.1.0");
        assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
        manager.put("k2", b"v2".to_vec()).await.unwrap();
        assert_eq!(manager.get_plugin("local").unwrap().version(), "0.1.0");
    }
    // A good version afterwards still swaps in.
    install(&v2(), &file);
    assert!(
        matches!(next(&mut watcher).await, PluginEvent::Swapped { ref to, .. } if to == "0.1.0+v2")
    );
    assert_eq!(manager.get("k2").await.unwrap(), Some(b"v2".to_vec()));
}

#[cfg(unix)]
#[tokio::test]
async fn a_world_writable_plugins_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("hot-world-writable");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let manager = StorageManager::with_registry(StorageRegistry::new());
    let err = match manager
        .watch_plugins(dir.path(), WatchOptions::default())
        .await
    {
        Ok(_) => panic!("a world-writable directory was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("world-writable") && err.contains("chmod go-w"),
        "{err}"
    );

    // A file that links outside the directory is refused too.
    let ok_dir = TempDir::new("hot-symlink");
    std::os::unix::fs::symlink(v1(), ok_dir.path().join("libstorage_local_plugin.so")).unwrap();
    let watcher = manager
        .watch_plugins(ok_dir.path(), WatchOptions::default())
        .await
        .unwrap();
    let rejected = &watcher.initial_report().rejected;
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]
            .error
            .to_string()
            .contains("outside the plugins directory"),
        "{}",
        rejected[0].error
    );
}

/// A truncated library in the plugins directory when watching starts: it is
/// refused with the file and the reason (the dynamic linker used to map it
/// and the process died with SIGBUS); the good file beside it loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_library_at_startup_is_refused() {
    let dir = TempDir::new("hot-truncated-start");
    install(&v1(), &dir.path().join("libstorage_local_plugin.so"));
    truncated_copy(&v2(), &dir.path().join("libcut.so"), 20);
    let (manager, watcher) = watched(dir.path()).await;
    let report = watcher.initial_report();
    assert_eq!(report.loaded.len(), 1, "{report}");
    assert_eq!(report.rejected.len(), 1, "{report}");
    let why = report.rejected[0].error.to_string();
    assert!(
        why.contains("libcut.so") && why.contains("truncated"),
        "the file and the reason: {why}"
    );
    assert!(manager.get_plugin("local").is_some());
}

/// A truncated file renamed over a loaded plugin: refused once, the old
/// version keeps serving; the same broken bytes again are not reported
/// again; a complete file afterwards swaps in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_library_renamed_over_a_loaded_plugin_is_refused_once() {
    let dir = TempDir::new("hot-truncated-rename");
    let file = dir.path().join("libstorage_local_plugin.so");
    install(&v1(), &file);
    let (manager, mut watcher) = watched(dir.path()).await;
    manager.add_backend(local_backend("m", None)).await.unwrap();
    manager.put("k", b"v".to_vec()).await.unwrap();

    for divisor in [20, 2] {
        let cut = dir.path().join("cut.bin");
        truncated_copy(&v2(), &cut, divisor);
        std::fs::rename(&cut, &file).unwrap();
        match next(&mut watcher).await {
            PluginEvent::Rejected { file: f, reason } => {
                assert_eq!(f, std::fs::canonicalize(&file).unwrap());
                assert!(
                    reason.contains("truncated") || reason.contains("past the end"),
                    "{reason}"
                );
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0");
        assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
    }
    // The same broken bytes written again: reported once, not again.
    let bytes = std::fs::read(&file).unwrap();
    let again = dir.path().join("again.bin");
    std::fs::write(&again, &bytes).unwrap();
    std::fs::rename(&again, &file).unwrap();
    quiet_for(&mut watcher, Duration::from_millis(1500)).await;

    install(&v2(), &file);
    assert!(
        matches!(next(&mut watcher).await, PluginEvent::Swapped { ref to, .. } if to == "0.1.0+v2")
    );
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
}

/// `cp new.so plugins/` over a loaded plugin: the file is rewritten in place,
/// in chunks, while the watcher reacts. The host stays up, the old version
/// serves every operation meanwhile, and the complete file is then swapped
/// in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_copied_in_place_in_chunks_is_picked_up_when_complete() {
    use std::io::Write;
    let dir = TempDir::new("hot-chunked-cp");
    let file = dir.path().join("libstorage_local_plugin.so");
    install(&v1(), &file);
    let (manager, mut watcher) = watched(dir.path()).await;
    manager.add_backend(local_backend("m", None)).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let load = {
        let (m, stop, failures) = (manager.clone(), stop.clone(), failures.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{i}");
                if m.put(&key, b"v".to_vec()).await.is_err()
                    || m.get(&key).await.ok().flatten().as_deref() != Some(b"v".as_slice())
                {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            i
        })
    };

    // Like cp: truncate the file, then write it in 64 KiB chunks, pausing
    // between chunks (about 1.5 s in all, many debounce periods).
    let bytes = std::fs::read(v2()).unwrap();
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&file)
                .unwrap();
            let chunks: Vec<&[u8]> = bytes.chunks(64 * 1024).collect();
            let pause = Duration::from_millis(1500 / chunks.len() as u64);
            for chunk in chunks {
                f.write_all(chunk).unwrap();
                std::thread::sleep(pause);
            }
        })
    };
    let mut seen = Vec::new();
    loop {
        let event = next_any(&mut watcher).await;
        seen.push(event.to_string());
        match event {
            PluginEvent::Swapped { to, .. } => {
                assert_eq!(to, "0.1.0+v2");
                break;
            }
            PluginEvent::NotYetStable { .. } => {}
            // A pause longer than the settle interval can show a partial file
            // as stable: it is refused before it is mapped.
            PluginEvent::Rejected { reason, .. }
                if reason.contains("truncated") || reason.contains("not a shared library") => {}
            other => panic!("unexpected {other}; events so far: {seen:#?}"),
        }
        // The old version serves until the complete file is there.
        assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0");
    }
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let ops = load.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no operation failed");
    assert!(ops > 50, "the load ran: {ops} rounds");
    assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0+v2");
    println!("events while the file was written: {seen:#?}");
}

/// The rule for plugin names: of the files holding plugin `local`, the one
/// whose name sorts first provides it. Every case: two files, replace
/// either, delete the second (nothing changes), delete the first (the
/// second takes over), delete the last (unregistered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_files_with_one_plugin_name_follow_one_rule() {
    let dir = TempDir::new("hot-two-files");
    let a = dir.path().join("liba.so");
    let b = dir.path().join("libb.so");
    install(&v1(), &a);
    install(&v2(), &b);
    let (manager, mut watcher) = watched(dir.path()).await;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap();
    let (a_c, b_c) = (canon(&a), canon(&b));
    {
        let report = watcher.initial_report();
        assert_eq!(report.loaded.len(), 1, "{report}");
        assert_eq!(report.loaded[0].0, a_c, "the first file name provides");
        assert_eq!(report.rejected.len(), 1, "{report}");
        let why = report.rejected[0].error.to_string();
        assert!(
            why.contains("libb.so") && why.contains("not used") && why.contains("liba.so"),
            "{why}"
        );
    }
    manager.add_backend(local_backend("m", None)).await.unwrap();
    manager.put("k", b"v".to_vec()).await.unwrap();
    assert_eq!(provider(&manager, "local"), Some(a_c.clone()));
    assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0");

    // Replace the second: checked, still not used.
    install(&v1(), &b);
    match next(&mut watcher).await {
        PluginEvent::Rejected { file, reason } => {
            assert_eq!(file, b_c);
            assert!(reason.contains("not used"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(provider(&manager, "local"), Some(a_c.clone()));
    assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0");

    // Replace the first: a hot swap.
    install(&v2(), &a);
    match next(&mut watcher).await {
        PluginEvent::Swapped { file, to, .. } => {
            assert_eq!(file, a_c);
            assert_eq!(to, "0.1.0+v2");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0+v2");

    // Delete the second: nothing changes, the first still provides.
    std::fs::remove_file(&b).unwrap();
    quiet_for(&mut watcher, Duration::from_millis(1200)).await;
    assert_eq!(provider(&manager, "local"), Some(a_c.clone()));
    assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0+v2");
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));

    // Put it back, then delete the first: the second takes over (a swap).
    install(&v1(), &b);
    assert!(
        matches!(next(&mut watcher).await, PluginEvent::Rejected { ref file, .. } if *file == b_c)
    );
    std::fs::remove_file(&a).unwrap();
    match next(&mut watcher).await {
        PluginEvent::Swapped { file, from, to, .. } => {
            assert_eq!(file, b_c);
            assert_eq!((from.as_str(), to.as_str()), ("0.1.0+v2", "0.1.0"));
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(provider(&manager, "local"), Some(b_c.clone()));
    assert_eq!(manager.list_backends()[0].plugin_version, "0.1.0");
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));

    // A new file that sorts first takes over; the old provider is reported
    // as not used.
    install(&v2(), &a);
    let mut got = vec![next(&mut watcher).await, next(&mut watcher).await];
    got.sort_by_key(|e| e.to_string());
    assert!(
        matches!(&got[0], PluginEvent::Rejected { file, reason } if *file == b_c && reason.contains("not used")),
        "{got:?}"
    );
    assert!(
        matches!(&got[1], PluginEvent::Swapped { file, .. } if *file == a_c),
        "{got:?}"
    );
    std::fs::remove_file(&a).unwrap();
    assert!(
        matches!(next(&mut watcher).await, PluginEvent::Swapped { ref file, .. } if *file == b_c)
    );

    // Delete the last file of the name: unregistered, the backend serves on.
    std::fs::remove_file(&b).unwrap();
    match next(&mut watcher).await {
        PluginEvent::Removed {
            plugin,
            file,
            still_serving,
        } => {
            assert_eq!(plugin, "local");
            assert_eq!(file, b_c);
            assert_eq!(still_serving, vec!["m".to_string()]);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(manager.get_plugin("local").is_none());
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
}
