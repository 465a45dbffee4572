//! Paged listing through the manager: `list_page` over plugin libraries
//! really loaded, every policy's routing, and the page bounds.

use p2p_ai_agents::storage::{
    BackendConfig, MAX_LIST_PAGE, ManagerError, StorageConfig, StorageManager, StoragePolicy,
    StorageRegistry,
};
use serde_json::json;
use storage_test_support::{TempDir, plugin_library, supabase};

fn local(name: &str, path: Option<&std::path::Path>, priority: u32) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        storage_config: StorageConfig::Local {
            path: path.map(|p| p.to_string_lossy().into_owned()),
        },
        enabled: true,
        priority,
    }
}

/// Every key under `prefix`, page by page of `limit`.
async fn walk(manager: &StorageManager, prefix: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = manager
            .list_page(prefix, after.as_deref(), limit)
            .await
            .unwrap();
        pages += 1;
        assert!(
            page.keys.len() <= limit,
            "a page holds at most {limit} keys"
        );
        assert!(
            page.keys.windows(2).all(|w| w[0] < w[1]),
            "ascending, no duplicates"
        );
        seen.extend(page.keys.iter().cloned());
        match page.next_after() {
            Some(k) => after = Some(k.to_owned()),
            None => break,
        }
        assert!(pages < 10_000, "paging ends");
    }
    seen
}

async fn manager_with_library() -> StorageManager {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    manager
        .load_plugin(plugin_library(
            "storage-local-plugin",
            "storage_local_plugin",
        ))
        .expect("load the local plugin library");
    manager
}

#[tokio::test]
async fn pages_cover_every_key_once_on_memory_and_durable_backends() {
    let tmp = TempDir::new("list-pages");
    let manager = manager_with_library().await;
    manager.add_backend(local("mem", None, 0)).await.unwrap();
    manager
        .add_backend(local("disk", Some(&tmp.path().join("store")), 1))
        .await
        .unwrap();
    let mut keys: Vec<String> = (0..250).map(|i| format!("pg/{i:04}")).collect();
    keys.push("pg/ünï".into());
    manager.set_policy(StoragePolicy::Redundant(vec!["mem".into(), "disk".into()]));
    for k in keys
        .iter()
        .chain(["pf".to_string(), "ph".to_string()].iter())
    {
        manager.put(k, k.as_bytes().to_vec()).await.unwrap();
    }
    keys.sort();
    for backend in ["mem", "disk"] {
        manager.set_policy(StoragePolicy::AlwaysUse(backend.into()));
        for limit in [1, 3, 100, 251, MAX_LIST_PAGE] {
            assert_eq!(
                walk(&manager, "pg/", limit).await,
                keys,
                "{backend}, limit {limit}"
            );
        }
        assert_eq!(manager.list("pg/").await.unwrap(), keys, "{backend}");
    }
    // The other policies route a page like a list.
    for policy in [
        StoragePolicy::FirstAvailable(vec!["disk".into(), "mem".into()]),
        StoragePolicy::Redundant(vec!["mem".into(), "disk".into()]),
        StoragePolicy::RoundRobin(vec!["mem".into(), "disk".into()]),
        StoragePolicy::PreferCache {
            cache: "mem".into(),
            primary: "disk".into(),
        },
    ] {
        manager.set_policy(policy.clone());
        assert_eq!(walk(&manager, "pg/", 64).await, keys, "{policy:?}");
    }
    manager.shutdown().await;
}

#[tokio::test]
async fn a_page_limit_out_of_bounds_is_refused_before_any_backend_is_asked() {
    let manager = manager_with_library().await;
    manager.add_backend(local("mem", None, 0)).await.unwrap();
    for limit in [0, MAX_LIST_PAGE + 1, usize::MAX] {
        let e = manager
            .list_page("", None, limit)
            .await
            .expect_err("out of bounds");
        assert!(matches!(e, ManagerError::InvalidRequest(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&limit.to_string()) && text.contains(&MAX_LIST_PAGE.to_string()),
            "the message names the limit and the bound: {text}"
        );
    }
    let m = manager.metrics().await;
    assert_eq!(
        m.backend_operations.get("mem").copied().unwrap_or(0),
        0,
        "no backend was asked"
    );
    manager.shutdown().await;
}

/// Supabase reads a page with one bounded PostgREST request (keyset paging);
/// Redis, which cannot, cuts it out of its listing. Keys with `*`, `%` and
/// `_` check that the LIKE filter's over-matching never leaks into a page.
#[tokio::test]
async fn pages_over_supabase_and_redis_match_their_listings() {
    let manager = StorageManager::with_registry(StorageRegistry::new());
    for (package, lib) in [
        ("storage-supabase-plugin", "storage_supabase_plugin"),
        ("storage-redis-plugin", "storage_redis_plugin"),
    ] {
        manager.load_plugin(plugin_library(package, lib)).unwrap();
    }
    manager
        .add_backend(BackendConfig {
            name: "supabase".into(),
            storage_config: supabase::local_config(5, 1),
            enabled: true,
            priority: 0,
        })
        .await
        .unwrap();
    let run = format!("list-pages-{}-{}", std::process::id(), line!());
    manager
        .add_backend(BackendConfig {
            name: "redis".into(),
            storage_config: StorageConfig::Custom {
                plugin_name: "redis".into(),
                config: json!({"url": "redis://127.0.0.1:6379", "key_prefix": run, "ttl_seconds": 300}),
            },
            enabled: true,
            priority: 1,
        })
        .await
        .unwrap();
    manager.set_policy(StoragePolicy::Redundant(vec![
        "supabase".into(),
        "redis".into(),
    ]));
    let prefix = format!("{run}/a*");
    let mut keys: Vec<String> = (0..23).map(|i| format!("{prefix}/{i:02}")).collect();
    keys.push(format!("{prefix}%"));
    keys.push(format!("{prefix}_x"));
    // Match `a*` only as a LIKE pattern, not as a prefix: some sort before
    // every real key (a page's first rows are all filtered out), some after.
    let decoys = [
        format!("{run}/a!"),
        format!("{run}/a)1"),
        format!("{run}/a)2"),
        format!("{run}/ab/1"),
        format!("{run}/a/1"),
        format!("{run}/a_"),
    ];
    for k in keys.iter().chain(decoys.iter()) {
        manager.put(k, b"v".to_vec()).await.unwrap();
    }
    keys.sort();
    for backend in ["supabase", "redis"] {
        manager.set_policy(StoragePolicy::AlwaysUse(backend.into()));
        assert_eq!(manager.list(&prefix).await.unwrap(), keys, "{backend} list");
        for limit in [1, 4, 25, 100] {
            assert_eq!(
                walk(&manager, &prefix, limit).await,
                keys,
                "{backend}, limit {limit}"
            );
        }
    }
    manager.set_policy(StoragePolicy::Redundant(vec![
        "supabase".into(),
        "redis".into(),
    ]));
    for k in keys.iter().chain(decoys.iter()) {
        manager.delete(k).await.unwrap();
    }
    manager.shutdown().await;
}
