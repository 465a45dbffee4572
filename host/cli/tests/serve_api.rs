//! `storage-host serve` end to end, the HTTP API: every route against the
//! real binary with the local plugin loaded from a plugins directory, SIGTERM
//! during a request, durable data after a restart; 503 with no backend.

mod common;

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use storage_test_support::{TempDir, library_file_name};

use common::*;

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
