//! The durable local store (`StorageConfig::Local { path: Some(dir) }`)
//! through the facade: persistence, crash safety under SIGKILL, concurrency,
//! error cases, hand-over between instances, and the plugin as a library.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_ai_agents::storage::local::StorageError;
use p2p_ai_agents::storage::{
    BackendConfig, ManagerError, StorageConfig, StorageManager, StorageRegistry,
};
use storage_test_support::{TempDir, plugin_library};

fn durable(name: &str, dir: &Path) -> BackendConfig {
    BackendConfig {
        name: name.to_string(),
        storage_config: StorageConfig::Local {
            path: Some(dir.display().to_string()),
        },
        enabled: true,
        priority: 1,
    }
}

async fn open_manager(dir: &Path) -> StorageManager {
    let manager = StorageManager::new();
    manager
        .add_backend(durable("disk", dir))
        .await
        .expect("open the durable store");
    manager
}

/// The storage errors inside a manager error.
fn storage_errors(e: &ManagerError) -> Vec<StorageError> {
    e.backend_failures().into_iter().map(|f| f.error).collect()
}

#[tokio::test]
async fn data_persists_across_manager_drop_and_reopen() {
    let tmp = TempDir::new("durable-it-persist");
    let dir = tmp.path().join("store");

    let manager = open_manager(&dir).await;
    manager.put("greeting", b"hello".to_vec()).await.unwrap();
    manager.put("empty", Vec::new()).await.unwrap();
    manager.put("ключ/🔑", vec![0, 1, 255]).await.unwrap();
    manager.put("gone", b"x".to_vec()).await.unwrap();
    manager.delete("gone").await.unwrap();
    // Dropped without shutdown: dropping closes the store and releases it.
    drop(manager);

    let manager = open_manager(&dir).await;
    assert_eq!(
        manager.get("greeting").await.unwrap(),
        Some(b"hello".to_vec())
    );
    assert_eq!(manager.get("empty").await.unwrap(), Some(Vec::new()));
    assert_eq!(manager.get("ключ/🔑").await.unwrap(), Some(vec![0, 1, 255]));
    assert_eq!(manager.get("gone").await.unwrap(), None);
    assert_eq!(
        manager.list("").await.unwrap(),
        vec!["empty", "greeting", "ключ/🔑"]
    );
    manager.put("second", b"2".to_vec()).await.unwrap();
    manager.shutdown().await;

    let manager = open_manager(&dir).await;
    assert_eq!(manager.get("second").await.unwrap(), Some(b"2".to_vec()));
    manager.shutdown().await;
}

// ---- Crash safety ------------------------------------------------------

/// Set in the child process: the directory it writes to.
const CRASH_WRITER_DIR: &str = "DURABLE_LOCAL_CRASH_WRITER_DIR";
/// Set in the child process: a prefix that makes its keys unique per run.
const CRASH_WRITER_RUN: &str = "DURABLE_LOCAL_CRASH_WRITER_RUN";

/// The value written under `key`: derived from it, so the parent can check
/// it, and of varying size (empty up to a few pages).
fn value_for(key: &str) -> Vec<u8> {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let len = (h % 9000) as usize;
    (0..len).map(|i| (h >> (i % 56)) as u8 ^ i as u8).collect()
}

/// xorshift64*: enough randomness for kill timings, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The child's role: write keys through the manager from several tasks (so
/// writes share commits) and print each key once its put returned, until
/// killed.
fn crash_writer(dir: &str, run: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let manager = open_manager(Path::new(dir)).await;
        let mut tasks = Vec::new();
        for t in 0..8 {
            let manager = manager.clone();
            let run = run.to_string();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("{run}/t{t}/{i:06}");
                    manager.put(&key, value_for(&key)).await.expect("put");
                    // One println is one locked, line-buffered write: lines
                    // from different tasks never interleave.
                    println!("acked {key}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let (Ok(dir), Ok(run)) = (
        std::env::var(CRASH_WRITER_DIR),
        std::env::var(CRASH_WRITER_RUN),
    ) {
        crash_writer(&dir, &run);
        return;
    }

    let tmp = TempDir::new("durable-it-crash");
    let dir = tmp.path().join("store");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill timings seed: {seed}");
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let rounds = 20;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "acknowledged_writes_survive_sigkill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_WRITER_DIR, &dir)
            .env(CRASH_WRITER_RUN, format!("r{round:02}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer child");

        // Read the child's acknowledgements on a thread; report the first.
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut keys = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A line cut short by the kill has no newline: the put may
                // have returned, but the key was not fully reported.
                let Some(key) = line
                    .strip_suffix('\n')
                    .and_then(|l| l.strip_prefix("acked "))
                else {
                    continue;
                };
                keys.push(key.to_string());
                if keys.len() == 1 {
                    let _ = first_tx.send(());
                }
            }
            keys
        });

        // Kill at a random moment: mostly while writes are flowing, and every
        // fourth round possibly before or during the open (crash recovery of
        // the previous round's kill).
        let early = round % 4 == 3;
        if early {
            std::thread::sleep(Duration::from_millis(rng.below(60)));
        } else {
            first_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the writer child acknowledged no write within 60 s");
            std::thread::sleep(Duration::from_millis(rng.below(250)));
        }
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the child was killed, not finished: {status}"
        );
        let keys = reader.join().unwrap();
        eprintln!(
            "round {round}: {} writes acknowledged before SIGKILL",
            keys.len()
        );
        acked.extend(keys);

        // Re-open (crash recovery) and check every write acknowledged so far,
        // in this round and all before it.
        rt.block_on(async {
            let manager = open_manager(&dir).await;
            for key in &acked {
                let got = manager.get(key).await.unwrap();
                assert!(
                    got.as_deref() == Some(value_for(key).as_slice()),
                    "round {round}: acknowledged key {key} is {} after SIGKILL",
                    match &got {
                        None => "missing".to_string(),
                        Some(v) => format!("wrong ({} bytes)", v.len()),
                    }
                );
            }
            manager.shutdown().await;
        });
    }
    assert!(
        acked.len() > rounds,
        "the children acknowledged too few writes ({}) for the test to mean anything",
        acked.len()
    );
}

// ---- Concurrency -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_end_with_a_written_value() {
    let tmp = TempDir::new("durable-it-concurrency");
    let manager = open_manager(&tmp.path().join("store")).await;
    let tasks = 32;
    let rounds = 15;
    let shared_keys = ["hot/a", "hot/b", "hot/c"];
    let mut handles = Vec::new();
    for t in 0..tasks {
        let manager = manager.clone();
        handles.push(tokio::spawn(async move {
            for r in 0..rounds {
                let own = format!("own/{t:02}/{r:02}");
                manager
                    .put(&own, format!("{t}:{r}").into_bytes())
                    .await
                    .unwrap();
                // Read-your-write on a key only this task writes.
                assert_eq!(
                    manager.get(&own).await.unwrap(),
                    Some(format!("{t}:{r}").into_bytes())
                );
                let hot = shared_keys[(t + r) % shared_keys.len()];
                manager
                    .put(hot, format!("{t}:{r}").into_bytes())
                    .await
                    .unwrap();
                // A concurrent read sees some written value, never a torn one.
                if let Some(v) = manager
                    .get(shared_keys[r % shared_keys.len()])
                    .await
                    .unwrap()
                {
                    let v = String::from_utf8(v).expect("a whole value");
                    let (vt, vr) = v.split_once(':').expect("a written value");
                    assert!(
                        vt.parse::<usize>().unwrap() < tasks
                            && vr.parse::<usize>().unwrap() < rounds
                    );
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(manager.list("own/").await.unwrap().len(), tasks * rounds);
    for t in 0..tasks {
        for r in 0..rounds {
            let got = manager.get(&format!("own/{t:02}/{r:02}")).await.unwrap();
            assert_eq!(got, Some(format!("{t}:{r}").into_bytes()));
        }
    }
    for hot in shared_keys {
        let v = String::from_utf8(manager.get(hot).await.unwrap().expect("written")).unwrap();
        let (t, r) = v.split_once(':').unwrap();
        let (t, r): (usize, usize) = (t.parse().unwrap(), r.parse().unwrap());
        assert!(
            t < tasks && r < rounds && shared_keys[(t + r) % shared_keys.len()] == hot,
            "{hot} = {v}"
        );
    }
    manager.shutdown().await;
}

// ---- Error cases -------------------------------------------------------

#[tokio::test]
async fn a_file_in_place_of_the_directory_is_named() {
    let tmp = TempDir::new("durable-it-file");
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = StorageManager::new()
        .add_backend(durable("disk", &file))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("'{}' is a file, not a directory", file.display())),
        "{msg}"
    );
}

#[tokio::test]
async fn a_corrupt_store_file_is_reported_not_replaced() {
    let tmp = TempDir::new("durable-it-corrupt");
    let dir = tmp.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(storage_local::STORE_FILE_NAME);
    let junk = b"this is not a redb file, but it is somebody's data".repeat(200);
    std::fs::write(&file, &junk).unwrap();
    let e = StorageManager::new()
        .add_backend(durable("disk", &dir))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("corrupt") && msg.contains(&file.display().to_string()),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        junk,
        "the file must be left untouched"
    );
}

#[tokio::test]
async fn two_backends_on_one_directory_are_refused_clearly() {
    let tmp = TempDir::new("durable-it-twice");
    let dir = tmp.path().join("store");
    let manager = open_manager(&dir).await;
    manager.put("k", b"v".to_vec()).await.unwrap();
    let started = Instant::now();
    let e = manager
        .add_backend(durable("disk-again", &dir))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal must be fast"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("already"),
        "{msg}"
    );
    // The first backend is unaffected.
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
    // A second manager in the same process is refused as well.
    let e = StorageManager::new()
        .add_backend(durable("other", &dir))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");
    manager.shutdown().await;
}

#[tokio::test]
async fn keys_and_values_beyond_the_limits_are_invalid_input() {
    let tmp = TempDir::new("durable-it-limits");
    let manager = open_manager(&tmp.path().join("store")).await;
    let long_key = "k".repeat(storage_local::MAX_KEY_LEN + 1);
    for e in [
        manager.put(&long_key, b"v".to_vec()).await.unwrap_err(),
        manager.get(&long_key).await.unwrap_err(),
        manager
            .put("big", vec![0; storage_local::MAX_VALUE_LEN + 1])
            .await
            .unwrap_err(),
    ] {
        let errors = storage_errors(&e);
        assert!(
            errors
                .iter()
                .any(|s| matches!(s, StorageError::InvalidInput(_))),
            "{e}"
        );
    }
    // At the limits, everything works.
    let longest = "k".repeat(storage_local::MAX_KEY_LEN);
    manager.put(&longest, b"v".to_vec()).await.unwrap();
    assert_eq!(manager.get(&longest).await.unwrap(), Some(b"v".to_vec()));
    manager.shutdown().await;
}

// ---- Hand-over between instances ---------------------------------------

#[tokio::test]
async fn a_directory_is_handed_over_after_shutdown_in_process() {
    let tmp = TempDir::new("durable-it-handover");
    let dir = tmp.path().join("store");
    let manager = open_manager(&dir).await;
    manager.put("before", b"1".to_vec()).await.unwrap();
    // Shut down (remove_backend drains, then shuts the instance down), and
    // open again at once in the same process.
    manager.remove_backend("disk").await.unwrap();
    manager.add_backend(durable("disk", &dir)).await.unwrap();
    assert_eq!(manager.get("before").await.unwrap(), Some(b"1".to_vec()));
    manager.put("after", b"2".to_vec()).await.unwrap();
    manager.shutdown().await;
    let manager = open_manager(&dir).await;
    assert_eq!(manager.list("").await.unwrap(), vec!["after", "before"]);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_to_the_library_moves_the_durable_store() {
    // The built-in `local` serves a durable backend; the same plugin loaded
    // as a library (another copy, other statics) replaces it. The swap's
    // first create beside the open instance must fail fast on the file lock;
    // after the old instance is shut down the second create succeeds.
    let tmp = TempDir::new("durable-it-swap");
    let dir = tmp.path().join("store");
    let manager = open_manager(&dir).await;
    for i in 0..50 {
        manager
            .put(&format!("k{i:02}"), format!("v{i}").into_bytes())
            .await
            .unwrap();
    }

    let loader = StorageManager::with_registry(StorageRegistry::new());
    loader
        .load_plugin(plugin_library(
            "storage-local-plugin",
            "storage_local_plugin",
        ))
        .expect("load the local plugin library");
    let library_plugin = loader.get_plugin("local").expect("loaded as 'local'");

    let outcomes = manager.swap_plugin(library_plugin).await;
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert!(outcome.result.is_ok(), "swap failed: {:?}", outcome.result);
    assert!(
        outcome.paused_for < Duration::from_secs(5),
        "the hand-over took {:?}",
        outcome.paused_for
    );
    for i in 0..50 {
        assert_eq!(
            manager.get(&format!("k{i:02}")).await.unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    manager.put("after-swap", b"yes".to_vec()).await.unwrap();
    manager.shutdown().await;

    let manager = open_manager(&dir).await;
    assert_eq!(
        manager.get("after-swap").await.unwrap(),
        Some(b"yes".to_vec())
    );
    assert_eq!(manager.list("k").await.unwrap().len(), 50);
    manager.shutdown().await;
}

// ---- The plugin as a library -------------------------------------------

#[tokio::test]
async fn the_local_plugin_library_serves_a_durable_store() {
    let tmp = TempDir::new("durable-it-dylib");
    let dir = tmp.path().join("store");
    // The built-in plugin is also named "local": start from an empty registry.
    let manager = StorageManager::with_registry(StorageRegistry::new());
    manager
        .load_plugin(plugin_library(
            "storage-local-plugin",
            "storage_local_plugin",
        ))
        .expect("load the local plugin library");
    manager.add_backend(durable("disk", &dir)).await.unwrap();

    let manager = Arc::new(manager);
    let mut writers = Vec::new();
    for t in 0..16 {
        let manager = Arc::clone(&manager);
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                manager
                    .put(&format!("lib/{t:02}/{i}"), vec![t as u8; i])
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(manager.list("lib/").await.unwrap().len(), 160);
    assert_eq!(manager.get("lib/03/7").await.unwrap(), Some(vec![3; 7]));

    // The built-in copy of the plugin cannot open the directory while the
    // library's instance holds it: its claim registry does not see the
    // library's, so this is the file lock answering.
    let e = StorageManager::new()
        .add_backend(durable("builtin", &dir))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already open"), "{e}");

    manager.shutdown().await;
    // Same file format either way: the built-in plugin reads what the library wrote.
    let builtin = open_manager(&dir).await;
    assert_eq!(builtin.get("lib/15/9").await.unwrap(), Some(vec![15; 9]));
    builtin.shutdown().await;
}
