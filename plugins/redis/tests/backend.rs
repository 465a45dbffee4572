//! The Redis backend against real servers: the shared one on 127.0.0.1:6379
//! (each test in its own key namespace) and private `redis-server`
//! processes for passwords, sockets, TLS and outages.

mod common;

use std::time::Duration;

use common::{RedisServer, cleanup, config, raw, require_shared_redis, timed, unique_prefix};
use storage_plugin_api::{Backend, ErrorKind, Plugin};
use storage_redis::{RedisConfig, RedisPlugin};

async fn create(config: RedisConfig) -> storage_redis::RedisBackend {
    RedisPlugin::create(config)
        .await
        .expect("create redis backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_overwrites_and_deletes() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("round_trip");
    let b = create(config(&url, &prefix)).await;

    assert_eq!(b.get("missing").await.unwrap(), None);
    b.delete("missing")
        .await
        .expect("deleting a missing key succeeds");

    let binary: Vec<u8> = (0..=255).collect();
    let big = vec![7u8; 1 << 20];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain", b"value".to_vec()),
        ("empty", Vec::new()),
        ("binary", binary),
        ("big", big),
        ("ключ/🔑 with spaces\nand newline", b"unicode key".to_vec()),
    ];
    for (k, v) in &cases {
        b.put(k, v.clone()).await.unwrap();
        assert_eq!(b.get(k).await.unwrap().as_ref(), Some(v), "key {k:?}");
    }
    // Stored under the namespace, byte for byte.
    let mut conn = raw(&url).await;
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{prefix}plain"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(&b"value"[..]));

    b.put("plain", b"second".to_vec()).await.unwrap();
    assert_eq!(b.get("plain").await.unwrap(), Some(b"second".to_vec()));

    b.delete("plain").await.unwrap();
    assert_eq!(b.get("plain").await.unwrap(), None);
    assert_eq!(
        b.get("empty").await.unwrap(),
        Some(Vec::new()),
        "an empty value is not a missing key"
    );

    let mut all = b.list("").await.unwrap();
    all.sort();
    assert_eq!(
        all,
        vec!["big", "binary", "empty", "ключ/🔑 with spaces\nand newline"]
    );
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expires_values() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("ttl");
    let b = create(RedisConfig {
        ttl_seconds: Some(1),
        ..config(&url, &prefix)
    })
    .await;
    b.put("k", b"v".to_vec()).await.unwrap();
    let mut conn = raw(&url).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=1000).contains(&pttl), "PTTL {pttl}");
    assert_eq!(b.get("k").await.unwrap(), Some(b"v".to_vec()));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(b.get("k").await.unwrap(), None, "expired after ttl_seconds");

    // Without a TTL, values stay.
    let persistent = create(RedisConfig {
        ttl_seconds: None,
        ..config(&url, &prefix)
    })
    .await;
    persistent.put("p", b"v".to_vec()).await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}p"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "no expiry without ttl_seconds");
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated() {
    let url = require_shared_redis().await;
    let (pa, pb) = (unique_prefix("ns_a"), unique_prefix("ns_b"));
    let a = create(config(&url, &pa)).await;
    let b = create(config(&url, &pb)).await;
    a.put("shared", b"from a".to_vec()).await.unwrap();
    b.put("shared", b"from b".to_vec()).await.unwrap();
    a.put("only-a", b"1".to_vec()).await.unwrap();
    assert_eq!(a.get("shared").await.unwrap(), Some(b"from a".to_vec()));
    assert_eq!(b.get("shared").await.unwrap(), Some(b"from b".to_vec()));
    assert_eq!(b.get("only-a").await.unwrap(), None);
    assert_eq!(a.list("").await.unwrap(), vec!["only-a", "shared"]);
    assert_eq!(b.list("").await.unwrap(), vec!["shared"]);
    b.delete("shared").await.unwrap();
    assert_eq!(a.get("shared").await.unwrap(), Some(b"from a".to_vec()));
    cleanup(&url, &pa).await;
    cleanup(&url, &pb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_glob_characters_are_listed_exactly() {
    let url = require_shared_redis().await;
    let base = unique_prefix("glob");
    // The namespace itself holds glob characters; unescaped, `[*?]` would be
    // a character class matching the sibling namespace `{base}*:` below.
    let ns = format!("{base}[*?]\\:");
    let sibling = format!("{base}*:");
    let b = create(config(&url, &ns)).await;
    let other = create(config(&url, &sibling)).await;

    let keys = [
        "a*b", "a*", "ab", "aXb", "a?c", "abc", "a[1]", "a1]", "a\\d", "a\\", "a]", "[x", "x[",
        "\\", "*", "?", "plain", "a^b", "a-b",
    ];
    for k in keys {
        b.put(k, k.as_bytes().to_vec()).await.unwrap();
        other.put(k, b"other namespace".to_vec()).await.unwrap();
    }
    for prefix in [
        "", "a", "a*", "a?", "a[", "a[1", "a\\", "a]", "[", "*", "?", "\\", "a^", "a-", "x", "zzz",
    ] {
        let mut expected: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        expected.sort_unstable();
        assert_eq!(b.list(prefix).await.unwrap(), expected, "list({prefix:?})");
    }
    for k in keys {
        assert_eq!(b.get(k).await.unwrap(), Some(k.as_bytes().to_vec()));
    }
    cleanup(&url, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_walks_every_scan_page_sorted_without_duplicates() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("many");
    let b = create(config(&url, &prefix)).await;
    // Written with a raw pipeline: 2 500 keys spread over several SCAN pages.
    let mut conn = raw(&url).await;
    let mut pipe = redis::pipe();
    let mut expected = Vec::new();
    for i in 0..2_500 {
        let k = format!("k{i}");
        pipe.cmd("SET")
            .arg(format!("{prefix}{k}"))
            .arg(i)
            .arg("EX")
            .arg(300)
            .ignore();
        expected.push(k);
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    expected.sort();
    assert_eq!(b.list("").await.unwrap(), expected);
    let ones: Vec<String> = expected
        .iter()
        .filter(|k| k.starts_with("k1"))
        .cloned()
        .collect();
    assert_eq!(b.list("k1").await.unwrap(), ones);
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_share_one_connection() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("concurrent");
    let b = std::sync::Arc::new(create(config(&url, &prefix)).await);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let b = std::sync::Arc::clone(&b);
            tokio::spawn(async move {
                let k = format!("k{i}");
                b.put(&k, k.clone().into_bytes()).await.unwrap();
                assert_eq!(b.get(&k).await.unwrap(), Some(k.into_bytes()));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.list("").await.unwrap().len(), 200);
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_permission_denied_and_never_shown() {
    let url = require_shared_redis().await;
    // The shared server has no password: it answers AUTH with an error.
    let hostport = url.trim_start_matches("redis://");
    let bad = RedisConfig::new(format!("redis://:wrongpass@{hostport}"));
    assert!(!format!("{bad:?}").contains("wrongpass"));
    let e = RedisPlugin::create(bad).await.expect_err("AUTH must fail");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("authentication") && msg.contains("password"),
        "{msg}"
    );
    assert!(!msg.contains("wrongpass"), "the password leaked: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_server_over_tcp_and_unix_socket() {
    let sock_dir = storage_test_support::TempDir::new("storage-redis-sock");
    let socket = sock_dir.path().join("redis.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    let Some(server) = RedisServer::start(&[
        "--requirepass",
        "s3cret-pw",
        "--unixsocket",
        &socket_arg,
        "--unixsocketperm",
        "700",
    ]) else {
        return;
    };
    let port = server.port();

    // Right password, over TCP.
    let ok = create(config(
        &format!("redis://:s3cret-pw@127.0.0.1:{port}"),
        "p:",
    ))
    .await;
    ok.put("k", b"v".to_vec()).await.unwrap();
    assert_eq!(ok.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert!(!format!("{ok:?}").contains("s3cret-pw"));

    // Right password, over the unix socket.
    let unix_url = format!("redis+unix://{}?pass=s3cret-pw", socket.display());
    assert!(!format!("{:?}", config(&unix_url, "p:")).contains("s3cret-pw"));
    let via_socket = create(config(&unix_url, "p:")).await;
    assert_eq!(via_socket.get("k").await.unwrap(), Some(b"v".to_vec()));

    // Wrong password.
    let e = RedisPlugin::create(config(&format!("redis://:not-it@127.0.0.1:{port}"), "p:"))
        .await
        .expect_err("wrong password");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        e.message().contains("authentication") && !e.message().contains("not-it"),
        "{e}"
    );

    // No password at all: the server answers NOAUTH.
    let e = RedisPlugin::create(config(&format!("redis://127.0.0.1:{port}"), "p:"))
        .await
        .expect_err("no password");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.message().contains("requires authentication"), "{e}");

    // An ACL user that may read but not write.
    let mut admin = raw(&format!("redis://:s3cret-pw@127.0.0.1:{port}")).await;
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "reader",
            "on",
            ">reader-pw",
            "~*",
            "+get",
            "+ping",
            "+client",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let reader = create(config(
        &format!("redis://reader:reader-pw@127.0.0.1:{port}"),
        "p:",
    ))
    .await;
    assert_eq!(reader.get("k").await.unwrap(), Some(b"v".to_vec()));
    let e = reader
        .put("k", b"x".to_vec())
        .await
        .expect_err("no SET permission");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        e.message().contains("put of key \"k\"") && !e.message().contains("reader-pw"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_creates_lazily_fails_fast_and_recovers() {
    let Some(mut server) = RedisServer::start(&[]) else {
        return;
    };
    let url = server.url();
    server.kill();

    let cfg = RedisConfig {
        timeout_ms: 5_000,
        ..config(&url, "lazy:")
    };
    let (b, took) = timed(RedisPlugin::create(cfg)).await;
    let b = b.expect("an unreachable server does not fail create");
    assert!(took < Duration::from_secs(1), "create took {took:?}");

    for _ in 0..5 {
        let (r, took) = timed(b.get("k")).await;
        let e = r.expect_err("server is down");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(
            e.message().contains("cannot connect") && e.message().contains(&url),
            "{e}"
        );
        assert!(
            took < Duration::from_secs(1),
            "a refused connection must fail fast, took {took:?}"
        );
    }

    server.restart();
    // The first operation after the restart succeeds: it retries past the
    // connection attempt that failed while the server was down.
    b.put("k", b"back".to_vec())
        .await
        .expect("recovered after restart");
    assert_eq!(b.get("k").await.unwrap(), Some(b"back".to_vec()));

    // Killed while connected: in-flight and later operations fail as
    // unavailable, then recover.
    server.kill();
    let e = b.get("k").await.expect_err("down again");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    server.restart();
    b.put("k", b"again".to_vec())
        .await
        .expect("recovered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_times_out_as_unavailable() {
    // A server that accepts connections and never answers: a listening
    // socket nobody reads from.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let cfg = RedisConfig {
        timeout_ms: 300,
        ..config(&url, "hung:")
    };
    let (b, took) = timed(RedisPlugin::create(cfg)).await;
    let b = b.expect("a silent server does not fail create");
    assert!(
        took < Duration::from_secs(2),
        "create is bounded by timeout_ms, took {took:?}"
    );
    // Every operation, the SCAN loop of list included, ends at timeout_ms
    // with a message that says which operation and what to do.
    let ops = [
        ("put of key \"k\"", timed(b.put("k", b"v".to_vec())).await),
        (
            "get of key \"k\"",
            timed(async { b.get("k").await.map(drop) }).await,
        ),
        ("delete of key \"k\"", timed(b.delete("k")).await),
        (
            "list of keys starting with \"p\"",
            timed(async { b.list("p").await.map(drop) }).await,
        ),
    ];
    for (what, (r, took)) in ops {
        let e = r.expect_err("no answer");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains(what), "{e}");
        assert!(
            e.message().contains("did not finish within 300 ms")
                && e.message().contains("raise `timeout_ms`"),
            "{e}"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{what}: bounded by timeout_ms, took {took:?}"
        );
    }
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configurations_are_rejected_before_connecting() {
    let e = RedisPlugin::create(RedisConfig::new("http://127.0.0.1:6379"))
        .await
        .expect_err("wrong scheme");
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let e = RedisPlugin::create(RedisConfig {
        ttl_seconds: Some(0),
        ..RedisConfig::new("redis://127.0.0.1:6379")
    })
    .await
    .expect_err("ttl 0");
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(e.message().contains("ttl_seconds"), "{e}");
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    use std::process::Command;
    assert!(
        common::redis_server_binary().is_some()
            && Command::new("openssl").arg("version").output().is_ok(),
        "this test needs redis-server and openssl on PATH: apt-get install redis-server openssl"
    );
    let certs = storage_test_support::TempDir::new("storage-redis-tls");
    let d = certs.path();
    let sh = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=storage-redis test CA",
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    sh(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let Some(server) = RedisServer::start_tls(&[
        "--tls-cert-file",
        &p("server.crt"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let b = create(RedisConfig {
        tls_ca_file: Some(p("ca.crt")),
        ..config(&url, "tls:")
    })
    .await;
    b.put("k", b"over tls".to_vec()).await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), Some(b"over tls".to_vec()));
    assert_eq!(b.list("").await.unwrap(), vec!["k"]);

    // Without the CA, the server's certificate is not trusted.
    let e = RedisPlugin::create(config(&url, "tls:"))
        .await
        .expect_err("untrusted certificate");
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert!(
        e.message().contains("certificate") && e.message().contains("tls_ca_file"),
        "{e}"
    );
}

/// The host may poll from a single-threaded runtime and may drop an
/// operation half-way (its own timeout): neither disturbs the backend.
#[tokio::test(flavor = "current_thread")]
async fn works_from_a_current_thread_runtime_and_survives_cancelled_operations() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("current_thread");
    let b = create(config(&url, &prefix)).await;
    for i in 0..50 {
        // Dropped at its first await: the command may or may not have been sent.
        let _ = tokio::time::timeout(Duration::from_nanos(1), b.put("k", vec![i])).await;
    }
    b.put("k", b"final".to_vec()).await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), Some(b"final".to_vec()));
    assert_eq!(b.list("").await.unwrap(), vec!["k"]);
    cleanup(&url, &prefix).await;
}
