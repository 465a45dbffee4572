//! The plugin as users deploy it: the cdylib built from `cdylib/`, loaded by
//! a `StorageManager` from its file, with its own copy of tokio inside.
//!
//! Needs `scripts/supabase-local.sh` to have run.

mod common;

use futures_util::{StreamExt as _, stream};
use storage_host::{StorageError, StorageManager, StorageRegistry};

use common::{Direct, add_backend, service_config, storage_error, unique_prefix, url, with};

fn load() -> StorageManager {
    let path =
        storage_test_support::plugin_library("storage-supabase-plugin", "storage_supabase_plugin");
    let m = StorageManager::with_registry(StorageRegistry::new());
    let info = m.load_plugin(&path).unwrap();
    assert_eq!(info.name, "supabase");
    assert_eq!(info.version, storage_supabase::VERSION);
    assert!(
        info.description.contains("PostgREST"),
        "{}",
        info.description
    );
    assert_eq!(
        info.api_version.as_deref(),
        Some(storage_plugin_api::API_VERSION)
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loaded_library_serves_a_backend() {
    url();
    let m = load();
    add_backend(&m, service_config()).await;
    let p = unique_prefix("dylib");

    let value: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let tricky = format!("{p}a&b=c+d %2B/é*");
    m.put(&tricky, value.clone()).await.unwrap();
    assert_eq!(m.get(&tricky).await.unwrap(), Some(value));
    assert_eq!(m.list(&p).await.unwrap(), vec![tricky.clone()]);

    // Many operations in flight at once, all polled by this test's runtime
    // while the library's own runtime does the I/O.
    let results = stream::iter(0..64)
        .map(|i| {
            let m = m.clone();
            let key = format!("{p}n{i:02}");
            async move {
                m.put(&key, vec![i; 10]).await?;
                m.get(&key).await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().map(|v| v.len()), Some(10), "op {i}");
    }
    assert_eq!(m.list(&p).await.unwrap().len(), 65);

    m.delete(&tricky).await.unwrap();
    assert_eq!(m.get(&tricky).await.unwrap(), None);
    Direct::new().purge("public", &p).await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_cross_the_library_boundary_with_their_kind() {
    url();
    let m = load();
    add_backend(
        &m,
        with(service_config(), |_, t, _, _| *t = "not_created".into()),
    )
    .await;
    let e = storage_error(&m.get("k").await.unwrap_err());
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("table public.not_created does not exist"),
        "{e}"
    );

    // A configuration the plugin refuses is refused when the backend is added.
    let m = load();
    let bad = with(service_config(), |_, _, timeout, _| *timeout = 0);
    let e = m
        .add_backend(storage_host::BackendConfig {
            name: "bad".into(),
            storage_config: bad,
            enabled: true,
            priority: 1,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`timeout` is 0"), "{e}");
}
