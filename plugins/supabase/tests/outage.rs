//! PostgREST stopped behind its gateway, as Supabase looks when the API is
//! down: the gateway answers 502, the plugin retries, then reports the
//! backend unavailable (so policies fail over), and recovers once PostgREST
//! is back.
//!
//! Stops and restarts only the `outage` PostgREST instance of
//! `scripts/supabase-local.sh`, which no other test uses, and is alone in
//! this test binary: tests running in parallel are never disturbed.

mod common;

use std::time::{Duration, Instant};

use common::{
    OUTAGE_GATEWAY, add_backend, anon_key, config, require, run_script, service_key, storage_error,
    unique_prefix, with,
};
use storage_host::plugin::AbiPlugin;
use storage_host::{
    BackendConfig, PluginSource, StorageConfig, StorageError, StorageManager, StoragePolicy,
    StorageRegistry,
};
use storage_supabase::SupabasePlugin;

/// Starts the outage instance again when the test ends, however it ends.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let status = std::process::Command::new("bash")
            .arg(common::script())
            .args(["start-postgrest", "outage"])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("could not restart PostgREST (outage): run scripts/supabase-local.sh");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_down_is_retried_then_unavailable_then_recovers() {
    let url = require(OUTAGE_GATEWAY);
    // An earlier run may have been killed while PostgREST was stopped.
    run_script(&["start-postgrest", "outage"]);

    let (timeout, retries) = (2u64, 3u32);
    let supabase = with(
        config(&url, anon_key(), Some(service_key())),
        |_, _, t, r| {
            *t = timeout;
            *r = retries;
        },
    );
    // The `local` plugin, linked in, to fail over to.
    let m = StorageManager::with_registry(StorageRegistry::new());
    m.register_plugin(Box::new(AbiPlugin::new(
        storage_plugin_api::module_of::<storage_local::LocalPlugin>(),
        PluginSource::Builtin,
    )))
    .unwrap();
    m.register_plugin(Box::new(AbiPlugin::new(
        storage_plugin_api::module_of::<SupabasePlugin>(),
        PluginSource::Builtin,
    )))
    .unwrap();
    add_backend(&m, supabase).await;
    m.add_backend(BackendConfig {
        name: "local".into(),
        storage_config: StorageConfig::Local { path: None },
        enabled: true,
        priority: 2,
    })
    .await
    .unwrap();
    m.set_policy(StoragePolicy::AlwaysUse("supabase".into()));

    let p = unique_prefix("outage");
    let key = format!("{p}k");
    m.put(&key, b"before".to_vec()).await.unwrap();

    let _restart = RestartOnDrop;
    run_script(&["stop-postgrest", "outage"]);

    let bound = Duration::from_secs(timeout * u64::from(retries + 1));
    for op in ["get", "put", "delete", "list"] {
        let start = Instant::now();
        let result = match op {
            "get" => m.get(&key).await.map(drop),
            "put" => m.put(&key, b"during".to_vec()).await,
            "delete" => m.delete(&key).await,
            _ => m.list(&p).await.map(drop),
        };
        let elapsed = start.elapsed();
        let e = storage_error(&result.unwrap_err());
        let text = e.to_string();
        assert!(matches!(e, StorageError::Unavailable(_)), "{op}: {e:?}");
        assert!(e.is_unavailable(), "{op}: policies fail over on it");
        assert!(text.contains("HTTP 502 after 4 attempt(s)"), "{op}: {text}");
        assert!(text.contains("try again later"), "{op}: {text}");
        // Three backoffs of at least 50, 100 and 200 ms; well within timeout x attempts.
        assert!(
            elapsed >= Duration::from_millis(350),
            "{op}: {elapsed:?}: no backoff?"
        );
        assert!(elapsed < bound, "{op}: {elapsed:?} exceeds {bound:?}");
    }

    // With a failover policy, the outage is absorbed by the next backend.
    m.set_policy(StoragePolicy::FirstAvailable(vec![
        "supabase".into(),
        "local".into(),
    ]));
    m.put(&format!("{p}failover"), b"to local".to_vec())
        .await
        .unwrap();
    m.set_policy(StoragePolicy::AlwaysUse("supabase".into()));

    run_script(&["start-postgrest", "outage"]);
    // The same backend (same client and pool) works again.
    assert_eq!(m.get(&key).await.unwrap(), Some(b"before".to_vec()));
    m.put(&key, b"after".to_vec()).await.unwrap();
    assert_eq!(m.get(&key).await.unwrap(), Some(b"after".to_vec()));
    m.delete(&key).await.unwrap();
    // That write went to local; Supabase, which missed it, is behind on the
    // key: it is not read (no stale answer) until repaired (by the
    // background worker, or now), then has it.
    match m.get(&format!("{p}failover")).await {
        Err(e) => assert!(storage_error(&e).is_unavailable(), "{e}"),
        Ok(v) => assert_eq!(v, Some(b"to local".to_vec()), "never the old value"),
    }
    let repaired = m.repair_now().await;
    assert_eq!(repaired.pending, 0, "{repaired:?}");
    assert_eq!(
        m.get(&format!("{p}failover")).await.unwrap(),
        Some(b"to local".to_vec()),
        "the write Supabase missed was repaired onto it"
    );
    m.delete(&format!("{p}failover")).await.unwrap();
}
