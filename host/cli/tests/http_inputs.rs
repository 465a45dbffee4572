//! The HTTP API's path and body handling under generated input: any path,
//! method and body gets a well-formed answer (a success, or a JSON error with
//! a stable code), never a 500, and a key that is accepted round-trips.

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use proptest::prelude::*;
use storage_host_cli::server::Host;
use storage_host_cli::server::config::HostConfig;
use tower::ServiceExt;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
max_body_size = "64KiB"

[[backends]]
name = "mem"
storage_config = { type = "local" }
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn answer(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>, Option<String>) {
    let request = match Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
    {
        Ok(r) => r,
        // Not a request a client could send (the URI does not parse): nothing to answer.
        Err(_) => return (StatusCode::BAD_REQUEST, Vec::new(), None),
    };
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, bytes, content_type)
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[%/?#&=+ .a-z0-9]{0,24}",
        "(%[0-9A-Fa-f]{2}|%[g-z]{2}|%|[a-z]){0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The HTTP fuzz target's oracle (`storage_fuzz_checks`) under
    /// generated paths and queries full of escapes, broken ones included:
    /// a key or query with a `%` not followed by two hex digits, or escapes
    /// that are not UTF-8, is a 400 with the JSON error; every other is
    /// decoded exactly.
    #[test]
    fn the_fuzz_oracle_holds_for_escapes(
        flags in any::<u8>(),
        route in prop_oneof![0u8..4, any::<u8>()],
        segment in prop_oneof![
            "(%[0-9A-Fa-f]{2}|%[g-zG-Z0-9]{1,2}|%|[a-z+=&/]|%[C-F][0-9A-F]|%[89AB][0-9A-F]){0,10}",
            "[a-z%0-9+]{0,4}(&(prefix|after|limit|x)=(%[0-9A-Fa-f]{2}|%|%G1|%FF|[a-z0-9+]){0,4}){0,2}",
        ],
        body in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        // Flags bit 3 (encode the segment whole) off: the escapes are the test.
        // Routes 0 to 3 put the segment in a key or a list query.
        let mut data = vec![flags & !8, route];
        data.extend_from_slice(segment.as_bytes());
        data.push(0xFF);
        data.extend_from_slice(&body);
        storage_fuzz_checks::check_http_request(&data);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_request_gets_a_well_formed_answer(
        segment in path_segment(),
        method in prop_oneof![Just(Method::GET), Just(Method::PUT), Just(Method::DELETE), Just(Method::POST)],
        body in proptest::collection::vec(any::<u8>(), 0..256),
        route in prop_oneof![Just("/v1/kv/"), Just("/v1/kv?prefix="), Just("/v1/"), Just("/")],
    ) {
        let rt = runtime();
        rt.block_on(async {
            let config = HostConfig::from_toml_str(CONFIG, Path::new("/tmp")).unwrap();
            let host = Host::start(&config, false).await.unwrap();
            let router = host.router(&config);
            let uri = format!("{route}{segment}");
            let (status, bytes, content_type) = answer(&router, method, &uri, body).await;
            prop_assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "500 for {uri}: {}", String::from_utf8_lossy(&bytes));
            if status.is_client_error() && content_type.as_deref() == Some("application/json") {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let code = v["error"]["code"].as_str().unwrap_or("");
                prop_assert!(!code.is_empty(), "a JSON error has a code: {v}");
            }
            host.shutdown().await;
            Ok(())
        })?;
    }

    #[test]
    fn an_accepted_key_round_trips_exactly(key in "\\PC{1,40}", value in proptest::collection::vec(any::<u8>(), 0..128)) {
        let rt = runtime();
        rt.block_on(async {
            let config = HostConfig::from_toml_str(CONFIG, Path::new("/tmp")).unwrap();
            let host = Host::start(&config, false).await.unwrap();
            let router = host.router(&config);
            let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
            let uri = format!("/v1/kv/{encoded}");
            let (status, body, _) = answer(&router, Method::PUT, &uri, value.clone()).await;
            if status == StatusCode::NO_CONTENT {
                // Stored under exactly that key: readable, and listed as itself.
                prop_assert_eq!(host.manager().get(&key).await.unwrap(), Some(value.clone()));
                let (status, got, _) = answer(&router, Method::GET, &uri, Vec::new()).await;
                prop_assert_eq!(status, StatusCode::OK);
                prop_assert_eq!(got, value);
                prop_assert_eq!(host.manager().list("").await.unwrap(), vec![key.clone()]);
            } else {
                // Refused keys are refused as bad keys, and nothing was stored.
                prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
                prop_assert!(host.manager().list("").await.unwrap().is_empty());
            }
            host.shutdown().await;
            Ok(())
        })?;
    }
}
