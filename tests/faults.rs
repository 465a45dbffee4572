//! Fault injection against the durable store and the Supabase backend:
//! nothing acknowledged is lost, and every failure is a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;

use p2p_ai_agents::storage::{BackendConfig, StorageConfig, StorageManager, StoragePolicy};
use storage_test_support::TempDir;

/// A tmpfs of a given size, unmounted on drop (needs root, as CI has).
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = TempDir::new("small-disk");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "this test mounts a small tmpfs to fill it up: it needs root (`mount -t tmpfs`)"
        );
        SmallDisk { dir }
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {size}");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn durable(dir: &Path) -> BackendConfig {
    BackendConfig {
        name: "disk".into(),
        storage_config: StorageConfig::Local {
            path: Some(dir.to_string_lossy().into_owned()),
        },
        enabled: true,
        priority: 0,
    }
}

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 64 * 1024];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_loses_nothing_and_recovers() {
    let disk = SmallDisk::mount("8m");
    let store: PathBuf = disk.path().join("store");
    let manager = StorageManager::new();
    manager.add_backend(durable(&store)).await.unwrap();
    manager.set_policy(StoragePolicy::AlwaysUse("disk".into()));

    // Fill it: 64 KiB values until the disk refuses.
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..400 {
        match manager.put(&format!("k{i:04}"), value(i)).await {
            Ok(()) => acked.push(i),
            Err(e) => {
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("an 8 MiB disk refuses 25 MiB of writes");
    println!("disk full after {} writes: {refusal}", acked.len());
    assert!(acked.len() > 10, "some writes fit: {}", acked.len());
    assert!(
        refusal.contains("disk") || refusal.contains("space") || refusal.contains("full"),
        "the error says the disk is full: {refusal}"
    );
    assert!(
        refusal.contains(&*store.to_string_lossy()) || refusal.contains("disk"),
        "{refusal}"
    );

    // Every acknowledged write is still readable, the refused one is not there.
    for &i in &acked {
        assert_eq!(
            manager.get(&format!("k{i:04}")).await.unwrap(),
            Some(value(i)),
            "k{i:04}"
        );
    }

    // While the disk stays full, a write is refused at once with the same
    // clear answer, and reads keep working.
    let again = manager
        .put("still-full", b"x".to_vec())
        .await
        .expect_err("the disk is still full");
    assert!(again.to_string().contains("full"), "{again}");
    assert_eq!(
        manager.get(&format!("k{:04}", acked[0])).await.unwrap(),
        Some(value(acked[0]))
    );

    // Space comes back: the very next write works, on the same backend
    // instance (the store reopens itself), and nothing acknowledged is lost.
    disk.resize("64m");
    manager
        .put("after", b"space is back".to_vec())
        .await
        .expect("writes resume by themselves once space returns");
    for &i in &acked {
        assert_eq!(
            manager.get(&format!("k{i:04}")).await.unwrap(),
            Some(value(i)),
            "k{i:04} after the store reopened itself"
        );
    }
    assert_eq!(manager.get("still-full").await.unwrap(), None);
    // And from a fresh open of the directory.
    manager.remove_backend("disk").await.unwrap();
    manager.add_backend(durable(&store)).await.unwrap();
    for &i in &acked {
        assert_eq!(
            manager.get(&format!("k{i:04}")).await.unwrap(),
            Some(value(i)),
            "k{i:04} after reopen"
        );
    }
    assert_eq!(
        manager.get("after").await.unwrap(),
        Some(b"space is back".to_vec())
    );
    manager.shutdown().await;
}

/// Restarts the local PostgreSQL cluster (as `scripts/services.sh` starts it).
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL's configuration in /etc/postgresql (scripts/services.sh)")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL cluster");
    let ok = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "pg_ctlcluster {version} main restart failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_supabase_load_loses_nothing_acknowledged() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use storage_test_support::{plugin_library, supabase};

    let manager = StorageManager::with_registry(p2p_ai_agents::storage::StorageRegistry::new());
    manager
        .load_plugin(plugin_library(
            "storage-supabase-plugin",
            "storage_supabase_plugin",
        ))
        .unwrap();
    manager
        .add_backend(BackendConfig {
            name: "supabase".into(),
            storage_config: supabase::local_config(5, 5),
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap();
    let run = format!("pg-restart-{}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (m, stop, run) = (manager.clone(), stop.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{run}/t{t}-{i}");
                match m.put(&key, key.clone().into_bytes()).await {
                    Ok(()) => acked.push(key),
                    Err(e) => errors.push(e.to_string()),
                }
                i += 1;
            }
            (acked, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let restarted = Instant::now();
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    println!("PostgreSQL restarted in {:?}", restarted.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut errors) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, e) = t.await.unwrap();
        acked.extend(a);
        errors.extend(e);
    }
    println!(
        "{} writes acknowledged, {} refused",
        acked.len(),
        errors.len()
    );
    for e in &errors {
        assert!(
            e.contains("unavailable") && e.contains("supabase"),
            "a failure during the restart is a clear unavailable error: {e}"
        );
    }
    // Wait for the REST API to be back, then check every acknowledged write.
    let t = Instant::now();
    while manager.get(&format!("{run}/probe")).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the REST API did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        acked.len() > 20,
        "writes went through before and after the restart"
    );
    for key in &acked {
        assert_eq!(
            manager.get(key).await.unwrap().as_deref(),
            Some(key.as_bytes()),
            "acknowledged write {key} survived the restart"
        );
    }
    for key in &acked {
        manager.delete(key).await.unwrap();
    }
}
