//! `storage-host serve` end to end: the real binary, a real plugins
//! directory holding the local plugin as a dynamic library, a real HTTP
//! client, SIGTERM to stop it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use storage_test_support::{TempDir, library_file_name, plugin_library};

const BIN: &str = env!("CARGO_BIN_EXE_storage-host");

fn v1() -> PathBuf {
    plugin_library("storage-local-plugin", "storage_local_plugin")
}

fn v2() -> PathBuf {
    plugin_library("local-v2-plugin", "local_v2_plugin")
}

/// Replaces `dest` with `src` as a deployment would: copy beside, rename over.
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// A plugins directory with the local plugin (v1) in it.
fn plugins_dir(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    install(&v1(), &dir.join(library_file_name("storage_local_plugin")));
    dir
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn enc(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A running `storage-host serve`.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(config: &Path) -> Server {
        Self::start_with_env(config, &[])
    }

    fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let log = config.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start storage-host");
        // The server prints its address once bound (the config asks for port 0).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "storage-host did not start:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no exit 30 s after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_string(),
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("storage-host.toml");
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\nlog_level = \"info\"\n{body}"),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_then_sigterm_keeps_durable_data() {
    let root = TempDir::new("serve-routes");
    plugins_dir(root.path());
    let config = write_config(
        root.path(),
        r#"
plugins_dir = "plugins"
max_body_size = "64KiB"

[policy]
type = "always_use"
backend = "disk"

[[backends]]
name = "memory"
storage_config = { type = "local" }

[[backends]]
name = "disk"
priority = 1
storage_config = { type = "local", path = "data" }
"#,
    );
    let mut server = Server::start(&config);
    let http = reqwest::Client::new();

    // Keys of every shape, including '/', '%', '+', '?', '#', spaces and non-ASCII.
    let keys = [
        "plain",
        "a/b/c",
        "100% sure+?&=#x",
        "ключ ü",
        " spaced ",
        "..x",
        "a%2Fb",
    ];
    let binary: Vec<u8> = (0..=255u8).collect();
    for (i, key) in keys.iter().enumerate() {
        let value = [binary.clone(), vec![i as u8]].concat();
        let r = http
            .put(server.url(&format!("/v1/kv/{}", enc(key))))
            .body(value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "put {key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        let r = http
            .get(server.url(&format!("/v1/kv/{}", enc(key))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "get {key:?}");
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            [binary.clone(), vec![i as u8]].concat(),
            "{key:?}"
        );
    }
    // An unencoded '/' addresses the same key as %2F.
    let r = http.get(server.url("/v1/kv/a/b/c")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Missing key, delete.
    let r = http.get(server.url("/v1/kv/missing")).send().await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let r = http
        .delete(server.url(&format!("/v1/kv/{}", enc("..x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(server.url(&format!("/v1/kv/{}", enc("..x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .delete(server.url("/v1/kv/never-there"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "deleting a missing key succeeds"
    );

    // Bad keys: not UTF-8, a control character, too long, empty.
    for bad in ["/v1/kv/%FF%FE", "/v1/kv/a%0Ab", "/v1/kv/"] {
        let r = http.get(server.url(bad)).send().await.unwrap();
        assert_eq!(
            error_code(r).await,
            (StatusCode::BAD_REQUEST, "bad_key".into()),
            "{bad}"
        );
    }
    let r = http
        .put(server.url(&format!("/v1/kv/{}", "k".repeat(5000))))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "bad_key".into())
    );

    // Oversized bodies: declared (Content-Length) and streamed (chunked).
    let r = http
        .put(server.url("/v1/kv/big"))
        .body(vec![1u8; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".into())
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![2u8; 10 * 1024])).collect();
    let r = http
        .put(server.url("/v1/kv/big"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".into())
    );
    let r = http.get(server.url("/v1/kv/big")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "nothing stored from a refused body"
    );
    let r = http
        .put(server.url("/v1/kv/fits"))
        .body(vec![3u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "a body of exactly the limit fits"
    );

    // Listing, paginated.
    for i in 0..25 {
        let r = http
            .put(server.url(&format!("/v1/kv/page%2F{i:02}")))
            .body("p")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = http
            .get(server.url("/v1/kv"))
            .query(&[("prefix", "page/"), ("limit", "10")]);
        if let Some(a) = &after {
            req = req.query(&[("after", a)]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        pages += 1;
        listed.extend(
            page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string()),
        );
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        listed,
        (0..25).map(|i| format!("page/{i:02}")).collect::<Vec<_>>()
    );
    let all: Value = http
        .get(server.url("/v1/kv"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "ключ ü")
    );
    let r = http.get(server.url("/v1/kv?limit=0")).send().await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    let r = http
        .get(server.url("/v1/kv?limit=ten"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );

    // Admin routes.
    let plugins: Value = http
        .get(server.url("/v1/plugins"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let local = plugins["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "local")
        .expect("local loaded");
    assert_eq!(local["source"], "library");
    assert_eq!(local["version"], "0.1.0");
    assert!(
        local["file"]
            .as_str()
            .unwrap()
            .ends_with(&library_file_name("storage_local_plugin"))
    );
    assert_eq!(plugins["events"][0]["event"], "loaded");
    assert_eq!(plugins["rejected"].as_array().unwrap().len(), 0);

    let backends: Value = http
        .get(server.url("/v1/backends"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(backends["policy"]["type"], "always_use");
    let list = backends["backends"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["memory", "disk"]
    );
    for b in list {
        assert_eq!(b["plugin"], "local");
        assert_eq!(b["plugin_version"], "0.1.0");
        assert_eq!(b["health"], "healthy");
        assert_eq!(b["status"], "serving");
    }

    let r = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let ops: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("storage_operations_total "))
        .expect("storage_operations_total")
        .parse()
        .unwrap();
    assert!(ops >= 40, "{ops}");
    assert!(
        text.contains("storage_backend_operations_total{backend=\"disk\"}"),
        "{text}"
    );
    assert!(
        text.contains("storage_backend_up{backend=\"memory\",plugin_version=\"0.1.0\"} 1"),
        "{text}"
    );

    let health: Value = http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["backends_available"], 2);

    let r = http.get(server.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "route_not_found".into())
    );
    let r = http
        .post(server.url("/v1/kv/plain"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );

    // SIGTERM while a request is in flight (a body still arriving): the
    // request is finished and its write kept, then the host exits cleanly
    // after shutting every backend down.
    let slow = futures_util::stream::unfold(0u8, |i| async move {
        if i == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(vec![i; 10]), i + 1))
    });
    let in_flight = tokio::spawn(
        http.put(server.url("/v1/kv/in-flight"))
            .body(reqwest::Body::wrap_stream(slow))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = tokio::task::block_in_place(|| server.terminate());
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "the in-flight request succeeded"
    );
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("SIGTERM") && log.contains("every backend shut down"),
        "{log}"
    );
    assert!(
        log.contains("the API is open"),
        "an open API is logged:\n{log}"
    );

    // The one-shot commands read the same durable store (now unlocked).
    let out = Command::new(BIN)
        .args(["get", "--config"])
        .arg(&config)
        .arg("ключ ü")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, [binary.clone(), vec![3u8]].concat());
    let out = Command::new(BIN)
        .args(["get", "--config"])
        .arg(&config)
        .arg("missing")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a missing key exits 1");
    let out = Command::new(BIN)
        .args(["put", "--config"])
        .arg(&config)
        .args(["one-shot", "from the CLI"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["list", "--config"])
        .arg(&config)
        .arg("page/1")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        (10..20).map(|i| format!("page/{i}\n")).collect::<String>()
    );
    let out = Command::new(BIN)
        .args(["delete", "--config"])
        .arg(&config)
        .arg("page/10")
        .output()
        .unwrap();
    assert!(out.status.success());

    // Restart: what was acknowledged before SIGTERM is there.
    let mut server = Server::start(&config);
    for (i, key) in keys.iter().enumerate().filter(|(_, k)| **k != "..x") {
        let r = http
            .get(server.url(&format!("/v1/kv/{}", enc(key))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{key:?} after restart");
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            [binary.clone(), vec![i as u8]].concat()
        );
    }
    let r = http
        .get(server.url("/v1/kv/in-flight"))
        .send()
        .await
        .unwrap();
    let expected: Vec<u8> = (0..5u8).flat_map(|i| [i; 10]).collect();
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        expected,
        "the in-flight write survived the restart"
    );
    let r = http
        .get(server.url("/v1/kv/one-shot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "from the CLI");
    let r = http
        .get(server.url("/v1/kv/page%2F10"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(server.terminate().success());
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required() {
    let root = TempDir::new("serve-auth");
    let config = write_config(
        root.path(),
        r#"
[auth]
token_env = "STORAGE_HOST_TEST_TOKEN"

[[backends]]
name = "memory"
storage_config = { type = "local" }
"#,
    );
    let token = "test-token-0123456789abcdef";
    let mut server = Server::start_with_env(&config, &[("STORAGE_HOST_TEST_TOKEN", token)]);
    let http = reqwest::Client::new();

    for path in [
        "/v1/kv/k",
        "/v1/kv",
        "/v1/plugins",
        "/v1/backends",
        "/metrics",
    ] {
        let r = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"storage-host\""
        );
        assert_eq!(
            error_code(r).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            "{path}"
        );
    }
    let r = http
        .put(server.url("/v1/kv/k"))
        .bearer_auth("wrong-token")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    let r = http
        .put(server.url("/v1/kv/k"))
        .bearer_auth(token)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(server.url("/v1/kv/k"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "v");
    let r = http
        .get(server.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Health probes need no token.
    let r = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    assert!(server.terminate().success());
    let log = server.log();
    assert!(
        !log.contains(token),
        "the token never reaches the log:\n{log}"
    );
    assert!(log.contains("bearer token required"), "{log}");
}

/// Runs `serve` on a config that must be refused; returns stderr.
fn refused(dir: &Path, body: &str) -> String {
    let config = write_config(dir, body);
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("STORAGE_HOST_UNSET_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "refused with exit 2:\n{stderr}");
    assert!(out.stdout.is_empty(), "never started listening");
    stderr
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let root = TempDir::new("serve-bad-config");
    let mem = "[[backends]]\nname = \"memory\"\nstorage_config = { type = \"local\" }\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{mem}[[backends]]\nname = \"disk\"\nstorage_config = {{ type = \"local\", path = \"\" }}\n"
            ),
            "backends[1].storage_config.path: ",
        ),
        (
            format!("{mem}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"lokal\" }}\n"),
            "backends[1].storage_config.type: ",
        ),
        (
            format!(
                "{mem}[[backends]]\nname = \"memory\"\nstorage_config = {{ type = \"local\" }}\n"
            ),
            "backends[1].name: ",
        ),
        (
            format!(
                "{mem}[policy]\ntype = \"first_available\"\nbackends = [\"memory\", \"disk\"]\n"
            ),
            "policy.backends[1]: ",
        ),
        (format!("{mem}[auth]\ntoken = \"inline\"\n"), "auth.token: "),
        (
            format!("{mem}[auth]\ntoken_env = \"STORAGE_HOST_UNSET_TOKEN\"\n"),
            "auth.token_env: ",
        ),
        (
            format!("max_body_size = \"lots\"\n{mem}"),
            "max_body_size: ",
        ),
        (
            format!("plugins_dir = \"no-such-dir\"\n{mem}"),
            "plugins_dir: ",
        ),
        (
            format!("lisen = \"127.0.0.1:1\"\n{mem}"),
            "lisen: unknown field",
        ),
        (String::new(), "backends: "),
        ("[[backends]\n".to_string(), "not valid TOML"),
    ];
    for (body, expected) in cases {
        let stderr = refused(root.path(), &body);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    // Valid config, impossible backend: refused at start, naming the backend.
    let stderr = refused(
        root.path(),
        &format!(
            "{mem}[[backends]]\nname = \"other\"\nstorage_config = {{ type = \"custom\", plugin_name = \"nope\" }}\n"
        ),
    );
    assert!(
        stderr.contains("backends[1] (\"other\"): plugin 'nope' not found"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/storage-host.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/storage-host.toml")
    );
}

#[test]
fn plugins_subcommands_still_work() {
    let root = TempDir::new("serve-plugins-cli");
    let dir = plugins_dir(root.path());
    let out = Command::new(BIN)
        .args(["plugins", "list"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("local 0.1.0"));
    let out = Command::new(BIN)
        .args(["plugins", "inspect"])
        .arg(dir.join(library_file_name("storage_local_plugin")))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("name:        local"));
}

/// The in-process side of the HTTP benchmark in BENCHMARKS.md: the same
/// backends (the local plugin loaded from a plugins directory, memory and
/// durable) driven through the manager directly, with as many concurrent
/// tasks as the load generator has connections. Release mode only:
/// `cargo test --release -p storage-host-cli --test serve -- --ignored --nocapture in_process`
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_available_backend_answers_503() {
    let root = TempDir::new("serve-503");
    let config = write_config(
        root.path(),
        "[[backends]]\nname = \"off\"\nenabled = false\nstorage_config = { type = \"local\" }\n",
    );
    let mut server = Server::start(&config);
    let http = reqwest::Client::new();
    let r = http.get(server.url("/v1/kv/k")).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "no_backends".into())
    );
    let r = http
        .put(server.url("/v1/kv/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "no_backends".into())
    );
    let r = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "no_backends".into())
    );
    let backends: Value = http
        .get(server.url("/v1/backends"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(backends["backends"][0]["status"], "disabled");
    assert!(server.terminate().success());
}
