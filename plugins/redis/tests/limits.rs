//! Key-length and value-size limits: exactly at the limit an operation goes
//! through to Redis, one byte over it is refused as invalid input before
//! anything is sent.

mod common;

use std::time::Duration;

use common::{cleanup, config, free_port, raw, require_shared_redis, timed, unique_prefix};
use storage_plugin_api::{Backend, ErrorKind, Plugin};
use storage_redis::{MAX_KEY_LEN, MAX_VALUE_LEN, RedisConfig, RedisPlugin};

/// Against a port nothing listens on, any operation that reaches the network
/// fails as *unavailable* ("cannot connect"). An operation over a limit must
/// instead fail as *invalid input*, at once: the check ran before any I/O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limits_is_refused_before_any_io() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let b = RedisPlugin::create(RedisConfig {
        timeout_ms: 5_000,
        ..config(&url, "limits:")
    })
    .await
    .expect("an unreachable server does not fail create");

    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let refusals = [
        ("get", b.get(&long_key).await.map(drop)),
        ("put", b.put(&long_key, b"v".to_vec()).await),
        ("delete", b.delete(&long_key).await),
        ("list", b.list(&long_key).await.map(drop)),
        ("put", b.put("big", vec![0; MAX_VALUE_LEN + 1]).await),
    ];
    for (op, r) in refusals {
        let e = r.expect_err("over the limit");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{op}: {e}");
        assert!(e.message().starts_with("redis: "), "{e}");
        assert!(e.message().contains("refused before sending"), "{e}");
        assert!(!e.message().contains("cannot connect"), "{e}");
    }

    // The same operations exactly at the limits pass the checks and go on to
    // the network, where they meet the closed port.
    let longest = "k".repeat(MAX_KEY_LEN);
    let reached_the_network = [
        b.get(&longest).await.map(drop),
        b.put(&longest, b"v".to_vec()).await,
        b.delete(&longest).await,
        b.list(&longest).await.map(drop),
        b.put("big", vec![0; MAX_VALUE_LEN]).await,
    ];
    for r in reached_the_network {
        let e = r.expect_err("nothing listens");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains("cannot connect"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_values_at_the_limit_are_stored_one_byte_more_is_not() {
    let url = require_shared_redis().await;
    let prefix = unique_prefix("limits");
    // A 64 MiB value on loopback takes well under a second; the margin is
    // for a machine busy with other tests.
    let b = RedisPlugin::create(RedisConfig {
        timeout_ms: 20_000,
        ..config(&url, &prefix)
    })
    .await
    .expect("create");
    let mut conn = raw(&url).await;

    // The longest key: stored under the namespace, read, listed, deleted.
    let longest = "k".repeat(MAX_KEY_LEN);
    b.put(&longest, b"v".to_vec()).await.unwrap();
    assert!(exists(&mut conn, &prefix, &longest).await);
    assert_eq!(b.get(&longest).await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(b.list(&longest).await.unwrap(), vec![longest.clone()]);
    b.delete(&longest).await.unwrap();
    assert!(!exists(&mut conn, &prefix, &longest).await);

    // One byte more: refused, nothing written.
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    let e = b.put(&too_long, b"v".to_vec()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("4097 bytes"), "{e}");
    assert!(!exists(&mut conn, &prefix, &too_long).await);

    // The largest value, byte for byte, in reasonable time.
    let largest: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 251) as u8).collect();
    let (r, took) = timed(b.put("big", largest.clone())).await;
    r.unwrap();
    eprintln!("put of a {MAX_VALUE_LEN}-byte value took {took:?}");
    let (got, took) = timed(b.get("big")).await;
    assert!(got.unwrap() == Some(largest), "the value read back differs");
    eprintln!("get of it took {took:?}");

    // One byte more: refused, the stored value left as it was.
    b.put("big", b"small".to_vec()).await.unwrap();
    let (r, took) = timed(b.put("big", vec![1; MAX_VALUE_LEN + 1])).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.message().contains("\"big\"") && e.message().contains("64 MiB"),
        "{e}"
    );
    assert!(
        took < Duration::from_millis(100),
        "refused at once: {took:?}"
    );
    assert_eq!(b.get("big").await.unwrap(), Some(b"small".to_vec()));

    assert_eq!(b.list("").await.unwrap(), vec!["big"]);
    cleanup(&url, &prefix).await;
}

/// Whether Redis holds the key `key` of namespace `prefix`.
async fn exists(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(format!("{prefix}{key}"))
        .query_async::<u32>(conn)
        .await
        .unwrap()
        == 1
}
