//! The in-process side of the HTTP benchmark (a measurement, ignored by
//! default; see its doc comment for the command).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use storage_test_support::TempDir;

use common::*;

/// The in-process side of the HTTP benchmark in BENCHMARKS.md: the same
/// backends (the local plugin loaded from a plugins directory, memory and
/// durable) driven through the manager directly, with as many concurrent
/// tasks as the load generator has connections. Release mode only:
/// `cargo test --release -p storage-host-cli --test serve_in_process -- --ignored --nocapture in_process`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it in release mode"]
async fn in_process_throughput() {
    use storage_host_cli::server::Host;
    use storage_host_cli::server::config::HostConfig;

    const TASKS: usize = 32;
    const KEYS: usize = 1000;
    const RUN: Duration = Duration::from_secs(5);
    let root = TempDir::new("serve-bench");
    plugins_dir(root.path());
    for (label, storage) in [
        ("memory", "{ type = \"local\" }"),
        ("durable", "{ type = \"local\", path = \"data\" }"),
    ] {
        let config = write_config(
            root.path(),
            &format!(
                "plugins_dir = \"plugins\"\n[[backends]]\nname = \"b\"\nstorage_config = {storage}\n"
            ),
        );
        let config = HostConfig::from_file(&config).unwrap();
        let host = Host::start(&config, false).await.unwrap();
        let manager = host.manager().clone();
        for i in 0..KEYS {
            manager
                .put(&format!("bench/{i}"), vec![b'x'; 100])
                .await
                .unwrap();
        }
        for op in ["get", "put"] {
            let stop = Arc::new(AtomicBool::new(false));
            let started = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (m, stop) = (manager.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let key = format!("bench/{}", (t * 31 + n as usize) % KEYS);
                            if op == "get" {
                                assert!(m.get(&key).await.unwrap().is_some());
                            } else {
                                m.put(&key, vec![b'x'; 100]).await.unwrap();
                            }
                            n += 1;
                            // A memory get never waits, so without this a task
                            // would hold its worker forever (the timer too).
                            if n.is_multiple_of(16) {
                                tokio::task::yield_now().await;
                            }
                        }
                        n
                    })
                })
                .collect();
            tokio::time::sleep(RUN).await;
            stop.store(true, Ordering::Relaxed);
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "in-process {label} {op}: {:.0} ops/s ({TASKS} tasks, 100 B values)",
                total as f64 / secs
            );
        }
        host.shutdown().await;
    }
}
