//! `storage-host serve` end to end: a configured bearer token is required,
//! and never written to the log.

mod common;

use reqwest::StatusCode;
use storage_test_support::TempDir;

use common::*;

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
