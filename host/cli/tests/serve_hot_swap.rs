//! `storage-host serve` end to end: the plugin library replaced on disk
//! while HTTP clients keep the server busy, and no request fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use storage_test_support::{TempDir, library_file_name};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_swaps_under_http_load_fail_no_request() {
    let root = TempDir::new("serve-swap");
    let dir = plugins_dir(root.path());
    let file = dir.join(library_file_name("storage_local_plugin"));
    let (a, b) = (v1(), v2());
    // Both backends take every write, so both are swapped under traffic.
    let config = write_config(
        root.path(),
        r#"
plugins_dir = "plugins"

[policy]
type = "redundant"
backends = ["memory", "disk"]

[[backends]]
name = "memory"
storage_config = { type = "local" }

[[backends]]
name = "disk"
storage_config = { type = "local", path = "data" }
"#,
    );
    let mut server = Server::start(&config);
    let http = reqwest::Client::new();
    let base = server.base.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (http, base, stop, failures) =
            (http.clone(), base.clone(), stop.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("t{t}/{i}");
                let url = format!("{base}/v1/kv/{}", enc(&key));
                match http.put(&url).body(key.clone()).send().await {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => acked.push(key.clone()),
                    Ok(r) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "put {key}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("put {key}: {e}");
                    }
                }
                match http.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let body = r.bytes().await.unwrap_or_default();
                        if body != key.as_bytes() {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("get {key}: wrong value {body:?}");
                        }
                    }
                    Ok(r) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "get {key}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("get {key}: {e}");
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            acked
        }));
    }

    let versions = |v: Value| -> Vec<String> {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["plugin_version"].as_str().unwrap().to_string())
            .collect()
    };
    for (round, (src, version)) in [
        (&b, "0.1.0+v2"),
        (&a, "0.1.0"),
        (&b, "0.1.0+v2"),
        (&a, "0.1.0"),
    ]
    .into_iter()
    .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        install(src, &file);
        let started = Instant::now();
        loop {
            let now: Value = http
                .get(server.url("/v1/backends"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if versions(now) == [version, version] {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "round {round}: no swap to {version}:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the swaps:\n{}",
        server.log()
    );
    assert!(
        acked.len() > 50,
        "the clients made progress: {}",
        acked.len()
    );
    for key in &acked {
        let r = http
            .get(server.url(&format!("/v1/kv/{}", enc(key))))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged {key} readable after four swaps"
        );
    }

    let plugins: Value = http
        .get(server.url("/v1/plugins"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let swaps: Vec<&Value> = plugins["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "swapped")
        .collect();
    assert_eq!(swaps.len(), 4, "{plugins:#}");
    assert_eq!(swaps[0]["from_version"], "0.1.0");
    assert_eq!(swaps[0]["version"], "0.1.0+v2");
    assert_eq!(swaps[0]["backends"].as_array().unwrap().len(), 2);

    // A broken file is rejected with its reason; the running version keeps serving.
    std::fs::write(dir.join(library_file_name("broken")), b"not a library").unwrap();
    let started = Instant::now();
    let rejected = loop {
        let p: Value = http
            .get(server.url("/v1/plugins"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(r) = p["rejected"].as_array().unwrap().first() {
            break r.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no rejection reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        rejected["file"]
            .as_str()
            .unwrap()
            .ends_with(&library_file_name("broken"))
    );
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("not a loadable library"),
        "{rejected}"
    );
    let r = http
        .get(server.url(&format!("/v1/kv/{}", enc(&acked[0]))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("storage_plugin_files_rejected 1"),
        "{metrics}"
    );

    let status = server.terminate();
    assert!(status.success(), "{status:?}:\n{}", server.log());
}
