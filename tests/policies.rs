//! Routing policies under normal operation and under failure, driven by the
//! fault-injecting plugin (a plugin like any other, run in-process here so the
//! test can flip its faults at runtime).

use std::sync::Arc;
use std::time::{Duration, Instant};

use faulty_plugin::{Control, FaultyPlugin, Mode, control};
use p2p_ai_agents::storage::plugin::AbiPlugin;
use p2p_ai_agents::storage::plugin_api::module_of;
use p2p_ai_agents::storage::{
    BackendConfig, Health, ManagerError, PluginSource, StorageConfig, StorageManager,
    StoragePolicy, StorageRegistry,
};
use serde_json::json;

/// A manager with faulty backends named `<test>-<b>` for each `b`, in
/// priority order. Returns the manager and each backend's control.
async fn setup(test: &str, backends: &[&str]) -> (StorageManager, Vec<Arc<Control>>) {
    let mut registry = StorageRegistry::new();
    registry
        .register_arc(Arc::new(AbiPlugin::new(
            module_of::<FaultyPlugin>(),
            PluginSource::Builtin,
        )))
        .unwrap();
    let manager = StorageManager::with_registry(registry);
    manager.set_op_timeout(Duration::from_millis(300));
    let mut controls = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let id = format!("{test}-{b}");
        manager
            .add_backend(BackendConfig {
                name: b.to_string(),
                storage_config: StorageConfig::Custom {
                    plugin_name: "faulty".into(),
                    config: json!({ "name": id }),
                },
                enabled: true,
                priority: i as u32,
            })
            .await
            .unwrap();
        controls.push(control(&id));
    }
    (manager, controls)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn always_use_routes_everything_to_one_backend() {
    let (m, c) = setup("always", &["a", "b"]).await;
    m.set_policy(StoragePolicy::AlwaysUse("b".into()));
    m.put("k", b"v".to_vec()).await.unwrap();
    assert_eq!(c[1].peek("k"), Some(b"v".to_vec()));
    assert!(c[0].is_empty());
    // No failover: b's failure is the answer.
    c[1].set_mode(Mode::Unavailable);
    let err = m.get("k").await.unwrap_err();
    assert!(
        matches!(err, ManagerError::StorageOperation { ref backend, .. } if backend == "b"),
        "{err}"
    );
    // Unknown and disabled names are clear errors.
    m.set_policy(StoragePolicy::AlwaysUse("zzz".into()));
    assert!(matches!(m.get("k").await, Err(ManagerError::BackendNotFound(n)) if n == "zzz"));
    m.set_policy(StoragePolicy::AlwaysUse("a".into()));
    m.set_backend_enabled("a", false).unwrap();
    assert!(matches!(m.get("k").await, Err(ManagerError::BackendDisabled(n)) if n == "a"));
}

#[tokio::test]
async fn first_available_fails_over_on_unavailable_only() {
    let (m, c) = setup("first", &["a", "b"]).await;
    m.set_policy(StoragePolicy::FirstAvailable(names(&["a", "b"])));
    m.put("k", b"1".to_vec()).await.unwrap();
    assert_eq!(c[0].peek("k"), Some(b"1".to_vec()));
    // The first backend acknowledged; the others are replicas, given a copy
    // in the background (here: now).
    m.repair_now().await;
    assert_eq!(c[1].peek("k"), Some(b"1".to_vec()));

    // A miss is an answer: no fallthrough to b.
    c[1].poke("only-b", b"x");
    assert_eq!(m.get("only-b").await.unwrap(), None);

    // Unavailable: fail over to b.
    c[0].set_mode(Mode::Unavailable);
    m.put("k2", b"2".to_vec()).await.unwrap();
    assert_eq!(c[1].peek("k2"), Some(b"2".to_vec()));
    assert_eq!(m.get("only-b").await.unwrap(), Some(b"x".to_vec()));

    // A non-retryable error is returned, not hidden by failover.
    c[0].set_mode(Mode::Fail);
    let err = m.get("k").await.unwrap_err();
    assert!(
        matches!(err, ManagerError::StorageOperation { ref backend, .. } if backend == "a"),
        "{err}"
    );

    // Every backend down: the error names each.
    c[0].set_mode(Mode::Unavailable);
    c[1].set_mode(Mode::Unavailable);
    let err = m.put("k3", b"3".to_vec()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ManagerError::AllBackendsFailed { .. }),
        "{msg}"
    );
    assert!(msg.contains("'a'") && msg.contains("'b'"), "{msg}");

    // Recovery.
    c[0].set_mode(Mode::Ok);
    c[1].set_mode(Mode::Ok);
    m.put("k4", b"4".to_vec()).await.unwrap();
    assert_eq!(c[0].peek("k4"), Some(b"4".to_vec()));

    let metrics = m.metrics().await;
    assert_eq!(metrics.operations, 7);
    assert_eq!(metrics.errors, 2);
    assert!(metrics.backend_errors["a"] >= 3, "{metrics:?}");
}

#[tokio::test]
async fn panics_and_timeouts_fail_over_too() {
    let (m, c) = setup("panic-timeout", &["a", "b"]).await;
    c[1].poke("k", b"from-b");
    c[0].set_mode(Mode::Panic);
    assert_eq!(m.get("k").await.unwrap(), Some(b"from-b".to_vec()));
    c[0].set_mode(Mode::Hang);
    let t = Instant::now();
    assert_eq!(m.get("k").await.unwrap(), Some(b"from-b".to_vec()));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the per-op timeout fired: {:?}",
        t.elapsed()
    );
    c[0].set_mode(Mode::Ok);
    c[0].poke("k", b"from-a");
    assert_eq!(m.get("k").await.unwrap(), Some(b"from-a".to_vec()));
}

#[tokio::test]
async fn prefer_cache_fills_on_miss_and_never_fails_for_the_cache() {
    let (m, c) = setup("cache", &["cache", "primary"]).await;
    let (cache, primary) = (&c[0], &c[1]);
    m.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    primary.poke("k", b"v1");
    assert_eq!(m.get("k").await.unwrap(), Some(b"v1".to_vec())); // miss
    assert_eq!(
        cache.peek("k"),
        Some(b"v1".to_vec()),
        "the miss filled the cache"
    );
    assert_eq!(m.get("k").await.unwrap(), Some(b"v1".to_vec())); // hit
    let metrics = m.metrics().await;
    assert_eq!((metrics.cache_hits, metrics.cache_misses), (1, 1));
    assert_eq!(metrics.cache_hit_rate(), 0.5);

    // put: primary, then cache; no stale read.
    m.put("k", b"v2".to_vec()).await.unwrap();
    assert_eq!(primary.peek("k"), Some(b"v2".to_vec()));
    assert_eq!(m.get("k").await.unwrap(), Some(b"v2".to_vec()));

    // The cache failing never fails an operation.
    cache.set_mode(Mode::Unavailable);
    m.put("k", b"v3".to_vec()).await.unwrap();
    assert_eq!(m.get("k").await.unwrap(), Some(b"v3".to_vec()));
    m.delete("k").await.unwrap();
    assert_eq!(primary.peek("k"), None);
    for _ in 0..3 {
        m.put("k2", b"x".to_vec()).await.unwrap();
        m.delete("k2").await.unwrap();
    }
    // Failing repeatedly opened the cache's breaker: it is skipped (no
    // timeout per op) until a probe after the cooldown finds it back.
    assert_eq!(m.list_backends()[0].health, Health::TakenOut);
    let calls = cache.calls();
    assert_eq!(m.get("k").await.unwrap(), None);
    assert_eq!(cache.calls(), calls, "an open cache is not tried");
    cache.set_mode(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A failed cache write invalidates the cached key (here: the cache's
    // write path is refused but delete works).
    primary.poke("j", b"old");
    m.get("j").await.unwrap(); // fill
    assert_eq!(cache.peek("j"), Some(b"old".to_vec()));

    // delete removes from both.
    m.put("d", b"x".to_vec()).await.unwrap();
    m.delete("d").await.unwrap();
    assert_eq!((cache.peek("d"), primary.peek("d")), (None, None));

    // The primary failing is the op's failure: it is the source of truth.
    primary.set_mode(Mode::Unavailable);
    let err = m.put("p", b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, ManagerError::StorageOperation { ref backend, .. } if backend == "primary"),
        "{err}"
    );
    // list follows the primary.
    primary.set_mode(Mode::Ok);
    cache.poke("only-in-cache", b"x");
    assert!(
        !m.list("")
            .await
            .unwrap()
            .contains(&"only-in-cache".to_string())
    );
}

#[tokio::test]
async fn redundant_writes_everywhere_concurrently_and_reports_partial_writes() {
    let (m, c) = setup("redundant", &["a", "b", "c"]).await;
    m.set_policy(StoragePolicy::Redundant(names(&["a", "b", "c"])));
    m.put("k", b"v".to_vec()).await.unwrap();
    for ctl in &c {
        assert_eq!(ctl.peek("k"), Some(b"v".to_vec()));
    }

    // Concurrent: three backends delayed 100 ms each take ~100 ms, not 300.
    for ctl in &c {
        ctl.set_delay(Duration::from_millis(100));
    }
    let t = Instant::now();
    m.put("slow", b"v".to_vec()).await.unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_millis(250), "fan-out took {took:?}");
    for ctl in &c {
        ctl.set_delay(Duration::ZERO);
    }

    // One backend failing: the write is reported with who has it.
    c[1].set_mode(Mode::Fail);
    let err = m.put("k2", b"v".to_vec()).await.unwrap_err();
    match &err {
        ManagerError::PartialWrite {
            succeeded,
            failures,
            ..
        } => {
            assert_eq!(succeeded, &names(&["a", "c"]));
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].backend, "b");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("'b'"), "{err}");

    // get falls back on miss or error.
    c[0].set_mode(Mode::Unavailable);
    c[2].poke("only-c", b"x");
    assert_eq!(m.get("only-c").await.unwrap(), Some(b"x".to_vec()));
    // list comes from the first that answers.
    assert!(m.list("").await.unwrap().contains(&"only-c".to_string()));
    c[0].set_mode(Mode::Ok);
    c[1].set_mode(Mode::Ok);
    m.delete("k").await.unwrap();
    for ctl in &c {
        assert_eq!(ctl.peek("k"), None);
    }
}

#[tokio::test]
async fn round_robin_rotates_and_skips_unavailable_replicas() {
    let (m, c) = setup("rr", &["a", "b", "c"]).await;
    m.set_policy(StoragePolicy::RoundRobin(names(&["a", "b", "c"])));
    for ctl in &c {
        ctl.poke("k", b"v");
    }
    for _ in 0..9 {
        assert_eq!(m.get("k").await.unwrap(), Some(b"v".to_vec()));
    }
    let calls: Vec<u64> = c.iter().map(|c| c.calls()).collect();
    assert_eq!(calls, vec![3, 3, 3]);
    c[1].set_mode(Mode::Unavailable);
    for _ in 0..9 {
        assert_eq!(m.get("k").await.unwrap(), Some(b"v".to_vec()), "skips b");
    }
    assert_eq!(m.metrics().await.errors, 0);
}

#[tokio::test]
async fn default_policy_follows_priority_and_enabled_flags() {
    let (m, c) = setup("default", &["first", "second"]).await;
    m.put("k", b"v".to_vec()).await.unwrap();
    assert_eq!(c[0].peek("k"), Some(b"v".to_vec()));
    m.set_backend_enabled("first", false).unwrap();
    m.put("k2", b"v".to_vec()).await.unwrap();
    assert_eq!(
        (c[0].peek("k2"), c[1].peek("k2")),
        (None, Some(b"v".to_vec()))
    );
    m.set_backend_enabled("second", false).unwrap();
    assert!(matches!(m.get("k").await, Err(ManagerError::NoBackends)));
    m.set_backend_enabled("first", true).unwrap();
    assert_eq!(m.get("k").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn a_dead_backend_is_taken_out_of_routing_then_probed() {
    let (m, c) = setup("breaker", &["dead", "alive"]).await;
    m.set_policy(StoragePolicy::FirstAvailable(names(&["dead", "alive"])));
    c[0].set_mode(Mode::Hang); // every op on it costs the full 300 ms timeout
    c[1].poke("k", b"v");
    for _ in 0..5 {
        assert_eq!(m.get("k").await.unwrap(), Some(b"v".to_vec()));
    }
    assert_eq!(m.list_backends()[0].health, Health::TakenOut);
    let calls = c[0].calls();
    let t = Instant::now();
    for _ in 0..50 {
        assert_eq!(m.get("k").await.unwrap(), Some(b"v".to_vec()));
    }
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "open breaker skips the dead backend: {:?}",
        t.elapsed()
    );
    assert_eq!(c[0].calls(), calls, "no op was sent to the open backend");

    // When every candidate is open, operations still try.
    c[1].set_mode(Mode::Unavailable);
    for _ in 0..5 {
        let _ = m.get("k").await;
    }
    c[1].set_mode(Mode::Ok);
    assert_eq!(m.get("k").await.unwrap(), Some(b"v".to_vec()));

    // Recovery: after the cooldown one probe goes through and closes it.
    c[0].set_mode(Mode::Ok);
    c[0].poke("k", b"from-dead");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut recovered = false;
    for _ in 0..3 {
        if m.get("k").await.unwrap() == Some(b"from-dead".to_vec()) {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the probe reached the recovered backend");
    assert_eq!(m.list_backends()[0].health, Health::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_under_concurrent_traffic() {
    let (m, c) = setup("concurrent", &["a", "b"]).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("t{t}-{i}");
                m.put(&key, key.clone().into_bytes()).await.unwrap();
                let got = m.get(&key).await.unwrap();
                // Under Redundant / FirstAvailable / RoundRobin over replicas
                // the key may be on either backend; under any policy a put
                // that succeeded is readable through one of them.
                assert!(got.is_none() || got == Some(key.clone().into_bytes()));
            }
        }));
    }
    let policies = [
        StoragePolicy::Redundant(names(&["a", "b"])),
        StoragePolicy::FirstAvailable(names(&["a", "b"])),
        StoragePolicy::PreferCache {
            cache: "b".into(),
            primary: "a".into(),
        },
        StoragePolicy::AlwaysUse("a".into()),
    ];
    for p in policies.iter().cycle().take(40) {
        m.set_policy(p.clone());
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = m.metrics().await;
    assert_eq!(metrics.operations, 8 * 200 * 2);
    assert_eq!(metrics.errors, 0);
    // Every put reached `a` (every policy above writes it) or `b`.
    for t in 0..8 {
        for i in 0..200 {
            let key = format!("t{t}-{i}");
            assert!(
                c[0].peek(&key).is_some() || c[1].peek(&key).is_some(),
                "{key} lost"
            );
        }
    }
}

#[tokio::test]
async fn metrics_render_as_prometheus_text_and_reset() {
    let (m, _c) = setup("prom", &["a"]).await;
    m.put("k", b"v".to_vec()).await.unwrap();
    m.get("k").await.unwrap();
    let text = m.metrics().await.to_prometheus();
    assert!(text.contains("storage_operations_total 2"), "{text}");
    assert!(
        text.contains("storage_backend_operations_total{backend=\"a\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("storage_backend_latency_seconds_count{backend=\"a\"} 2"),
        "{text}"
    );
    assert!(text.contains("le=\"+Inf\""), "{text}");
    let lat = &m.metrics().await.backend_latency["a"];
    assert_eq!(lat.count(), 2);
    m.reset_metrics();
    let after = m.metrics().await;
    assert_eq!((after.operations, after.backend_operations["a"]), (0, 0));
    assert_eq!(after.success_rate(), 1.0);
}

/// Polls `repair_now` until nothing is pending (the backoff of a breaker
/// that opened during the test may delay the first repair).
async fn repair_until_done(m: &StorageManager) {
    for _ in 0..60 {
        let r = m.repair_now().await;
        if r.pending == 0 && r.untrusted == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("repairs still pending: {:?}", m.repair_now().await);
}

#[tokio::test]
async fn a_write_dropped_half_way_is_never_half_visible_and_is_repaired() {
    let (m, c) = setup("dropped", &["a", "b"]).await;
    m.set_policy(StoragePolicy::Redundant(names(&["a", "b"])));
    m.put("k", b"old".to_vec()).await.unwrap();
    // b is slow: the caller gives up while only a has the new value.
    c[1].set_delay(Duration::from_millis(500));
    let gave_up =
        tokio::time::timeout(Duration::from_millis(50), m.put("k", b"new".to_vec())).await;
    assert!(gave_up.is_err(), "the put was dropped half-way");
    assert_eq!(
        (c[0].peek("k"), c[1].peek("k")),
        (Some(b"new".to_vec()), Some(b"old".to_vec()))
    );
    c[1].set_delay(Duration::ZERO);
    // Whichever policy reads, b's old copy is never served.
    m.set_policy(StoragePolicy::RoundRobin(names(&["a", "b"])));
    for _ in 0..6 {
        assert_eq!(m.get("k").await.unwrap(), Some(b"new".to_vec()));
    }
    assert!(m.metrics().await.consistency.stale_reads_avoided >= 3);
    repair_until_done(&m).await;
    assert_eq!(c[1].peek("k"), Some(b"new".to_vec()), "b was repaired");
    let metrics = m.metrics().await.consistency;
    assert!(
        metrics.repairs >= 1 && metrics.repair_backlog == 0,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_replica_disabled_during_writes_is_repaired_when_enabled() {
    let (m, c) = setup("reenabled", &["a", "b"]).await;
    m.set_policy(StoragePolicy::RoundRobin(names(&["a", "b"])));
    m.put("k", b"v1".to_vec()).await.unwrap();
    m.set_backend_enabled("b", false).unwrap();
    m.put("k", b"v2".to_vec()).await.unwrap();
    m.delete("gone").await.unwrap();
    m.set_backend_enabled("b", true).unwrap();
    assert_eq!(c[1].peek("k"), Some(b"v1".to_vec()), "b missed v2");
    for _ in 0..4 {
        assert_eq!(m.get("k").await.unwrap(), Some(b"v2".to_vec()));
    }
    repair_until_done(&m).await;
    assert_eq!(c[1].peek("k"), Some(b"v2".to_vec()));
}

#[tokio::test]
async fn a_cache_past_the_stale_bound_is_flushed_then_trusted_again() {
    let (m, c) = setup("flush", &["cache", "primary"]).await;
    let (cache, primary) = (&c[0], &c[1]);
    m.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    m.set_max_stale_keys(2);
    cache.set_mode(Mode::Unavailable);
    for i in 0..4 {
        m.put(&format!("k{i}"), b"new".to_vec()).await.unwrap();
    }
    cache.set_mode(Mode::Ok);
    // What a cache that missed those writes could hold.
    cache.poke("k3", b"old");
    cache.poke("other", b"old");
    assert_eq!(m.metrics().await.consistency.untrusted_backends, 1);
    assert_eq!(m.get("k3").await.unwrap(), Some(b"new".to_vec()));
    repair_until_done(&m).await;
    assert_eq!(cache.peek("other"), None, "the untrusted cache was flushed");
    assert_eq!(primary.peek("k3"), Some(b"new".to_vec()));
    // Trusted again: a miss fills it, then it answers.
    assert_eq!(m.get("k3").await.unwrap(), Some(b"new".to_vec()));
    assert_eq!(cache.peek("k3"), Some(b"new".to_vec()));
    let hits = m.metrics().await.cache_hits;
    assert_eq!(m.get("k3").await.unwrap(), Some(b"new".to_vec()));
    assert_eq!(m.metrics().await.cache_hits, hits + 1);
}
