//! Plugins as real dynamic libraries: loaded, used through the manager, and
//! rejected with clear errors when they are not what the host needs.

use std::path::{Path, PathBuf};

use p2p_ai_agents::storage::loader::LoadFailure;
use p2p_ai_agents::storage::{
    BackendConfig, ManagerError, PluginError, PluginSource, StorageConfig, StorageManager,
    StoragePolicy, StorageRegistry,
};
use serde_json::json;
use storage_test_support::{TempDir, plugin_library, workspace_root};

fn local_so() -> PathBuf {
    plugin_library("storage-local-plugin", "storage_local_plugin")
}

fn backend(name: &str, storage_config: StorageConfig) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        storage_config,
        enabled: true,
        priority: 0,
    }
}

fn custom(plugin: &str, config: serde_json::Value) -> StorageConfig {
    StorageConfig::Custom {
        plugin_name: plugin.into(),
        config,
    }
}

/// A manager with no built-in plugins, so `local` can only come from the library.
fn empty_manager() -> StorageManager {
    StorageManager::with_registry(StorageRegistry::new())
}

async fn assert_local_works(manager: &StorageManager) {
    manager
        .add_backend(backend("mem", StorageConfig::Local { path: None }))
        .await
        .unwrap();
    manager.put("k", b"v".to_vec()).await.unwrap();
    assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(manager.list("").await.unwrap(), vec!["k".to_string()]);
    manager.delete("k").await.unwrap();
    assert_eq!(manager.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn local_plugin_from_its_library_serves_through_the_manager() {
    let manager = empty_manager();
    let info = manager.load_plugin(local_so()).unwrap();
    assert_eq!(info.name, "local");
    assert_eq!(
        info.api_version.as_deref(),
        Some(p2p_ai_agents::storage::plugin_api::API_VERSION)
    );
    assert!(matches!(info.source, PluginSource::Library { .. }));
    assert_local_works(&manager).await;
    let b = &manager.list_backends()[0];
    assert_eq!(
        (b.plugin.as_str(), b.plugin_version.as_str()),
        ("local", "0.1.0")
    );
}

#[tokio::test]
async fn durable_path_is_refused_clearly_until_supported_or_works() {
    // `path: Some` is either supported (durable store) or refused with a
    // clear InvalidConfig; it never silently falls back to memory.
    let manager = empty_manager();
    manager.load_plugin(local_so()).unwrap();
    let dir = TempDir::new("dylib-durable");
    let r = manager
        .add_backend(backend(
            "disk",
            StorageConfig::Local {
                path: Some(dir.path().to_string_lossy().into_owned()),
            },
        ))
        .await;
    match r {
        Ok(()) => {
            manager.put("k", b"v".to_vec()).await.unwrap();
            assert_eq!(manager.get("k").await.unwrap(), Some(b"v".to_vec()));
        }
        Err(e) => assert!(
            matches!(e, ManagerError::Plugin(PluginError::InvalidConfig(..))),
            "{e}"
        ),
    }
}

fn rejection(path: &Path) -> LoadFailure {
    let manager = empty_manager();
    match manager.load_plugin(path) {
        Ok(info) => panic!("{} was accepted as {info:?}", path.display()),
        Err(PluginError::Load(e)) => {
            assert_eq!(e.path, path, "the error names the file");
            assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
            e.reason
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn random_bytes_named_so_is_rejected() {
    let dir = TempDir::new("dylib-random");
    let path = dir.path().join("x.so");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let reason = rejection(&path);
    assert!(matches!(reason, LoadFailure::NotALibrary(_)), "{reason}");
}

#[tokio::test]
async fn library_without_root_module_is_rejected() {
    let path = plugin_library("no-root-plugin", "no_root_plugin");
    let reason = rejection(&path);
    assert!(matches!(reason, LoadFailure::NoRootModule), "{reason}");
    assert!(reason.to_string().contains("not a storage plugin"));
}

#[tokio::test]
async fn incompatible_layout_is_rejected_with_one_line() {
    let path = plugin_library("incompatible-layout-plugin", "incompatible_layout_plugin");
    match rejection(&path) {
        LoadFailure::LayoutMismatch { summary, report } => {
            assert_eq!(
                summary,
                "mismatched type: expected PluginMod, found OtherMod"
            );
            assert!(report.lines().count() > 50, "the full report is kept");
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn incompatible_api_version_is_rejected() {
    let path = plugin_library("incompatible-version-plugin", "incompatible_version_plugin");
    match rejection(&path) {
        LoadFailure::IncompatibleApiVersion { expected, found } => {
            assert_eq!(expected, p2p_ai_agents::storage::plugin_api::API_VERSION);
            assert_eq!(found, "9.0.0");
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn panicking_create_is_an_error_and_the_host_goes_on() {
    let manager = empty_manager();
    manager
        .load_plugin(plugin_library("faulty-plugin", "faulty_plugin"))
        .unwrap();
    manager.load_plugin(local_so()).unwrap();
    let err = manager
        .add_backend(backend(
            "f",
            custom(
                "faulty",
                json!({"name": "dylib-create", "panic_on_create": true}),
            ),
        ))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ManagerError::Plugin(PluginError::InitializationFailed(..))
        ),
        "{msg}"
    );
    assert!(msg.contains("panicked") && msg.contains("create"), "{msg}");
    assert_local_works(&manager).await;
}

#[tokio::test]
async fn panicking_get_is_an_error_and_the_next_op_works() {
    let manager = empty_manager();
    manager
        .load_plugin(plugin_library("faulty-plugin", "faulty_plugin"))
        .unwrap();
    manager
        .add_backend(backend(
            "f",
            custom("faulty", json!({"name": "dylib-get", "panic_on": ["get"]})),
        ))
        .await
        .unwrap();
    manager.put("k", b"v".to_vec()).await.unwrap();
    for _ in 0..3 {
        let err = manager.get("k").await.unwrap_err();
        assert!(err.to_string().contains("panicked in get"), "{err}");
    }
    // The backend is intact: other operations still work.
    manager.put("k2", b"v2".to_vec()).await.unwrap();
    assert_eq!(manager.list("k").await.unwrap(), vec!["k", "k2"]);
}

#[tokio::test]
async fn a_plugin_panicking_in_every_entry_point_never_takes_the_host_down() {
    let manager = empty_manager();
    manager
        .load_plugin(plugin_library("faulty-plugin", "faulty_plugin"))
        .unwrap();
    manager
        .add_backend(backend(
            "f",
            custom(
                "faulty",
                json!({"name": "dylib-all", "panic_on": ["get", "put", "delete", "list"]}),
            ),
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        let errors = [
            manager.get("k").await.unwrap_err().to_string(),
            manager
                .put("k", b"v".to_vec())
                .await
                .unwrap_err()
                .to_string(),
            manager.delete("k").await.unwrap_err().to_string(),
            manager.list("").await.unwrap_err().to_string(),
        ];
        for (e, op) in errors.iter().zip(["get", "put", "delete", "list"]) {
            assert!(e.contains(&format!("panicked in {op}")), "{e}");
        }
    }
    let metrics = manager.metrics().await;
    assert_eq!((metrics.operations, metrics.errors), (8, 8));
    // The host and other backends are unaffected.
    manager.load_plugin(local_so()).unwrap();
    manager.set_policy(StoragePolicy::AlwaysUse("mem".into()));
    assert_local_works(&manager).await;
}

#[tokio::test]
async fn bad_config_is_refused_by_the_plugin_with_the_field() {
    let manager = empty_manager();
    manager.load_plugin(local_so()).unwrap();
    let err = manager
        .add_backend(backend("x", custom("local", json!({"paht": "/tmp"}))))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ManagerError::Plugin(PluginError::InvalidConfig(..))),
        "{msg}"
    );
    assert!(msg.contains("paht"), "names the unknown field: {msg}");
}

#[tokio::test]
async fn a_directory_with_good_and_bad_files_loads_the_good_ones() {
    let dir = TempDir::new("dylib-dir");
    std::fs::copy(local_so(), dir.path().join("libstorage_local_plugin.so")).unwrap();
    std::fs::copy(
        plugin_library("faulty-plugin", "faulty_plugin"),
        dir.path().join("libfaulty_plugin.so"),
    )
    .unwrap();
    std::fs::copy(
        plugin_library("no-root-plugin", "no_root_plugin"),
        dir.path().join("libno_root_plugin.so"),
    )
    .unwrap();
    std::fs::copy(
        plugin_library("incompatible-layout-plugin", "incompatible_layout_plugin"),
        dir.path().join("libincompatible.so"),
    )
    .unwrap();
    std::fs::write(dir.path().join("x.so"), b"not a library").unwrap();
    std::fs::write(
        dir.path().join("README.txt"),
        b"ignored: not a library name",
    )
    .unwrap();

    let manager = empty_manager();
    let report = manager.load_plugins_dir(dir.path()).unwrap();
    let mut loaded: Vec<&str> = report.loaded.iter().map(|(_, i)| i.name.as_str()).collect();
    loaded.sort();
    assert_eq!(loaded, ["faulty", "local"]);
    let mut rejected: Vec<(String, String)> = report
        .rejected
        .iter()
        .map(|r| {
            (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                r.error.reason.to_string(),
            )
        })
        .collect();
    rejected.sort();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert!(
        rejected[0].0 == "libincompatible.so" && rejected[0].1.contains("incompatible plugin-api")
    );
    assert!(
        rejected[1].0 == "libno_root_plugin.so"
            && rejected[1].1.contains("no abi_stable root module")
    );
    assert!(rejected[2].0 == "x.so" && rejected[2].1.contains("not a loadable library"));
    let text = report.to_string();
    assert!(
        text.contains("rejected") && text.contains("loaded"),
        "{text}"
    );

    assert_local_works(&manager).await;
    manager.set_policy(StoragePolicy::AlwaysUse("mem".into()));
    assert_eq!(manager.list_plugins().len(), 2);
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let err = empty_manager()
        .load_plugins_dir("/nonexistent/plugins")
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/plugins"), "{err}");
}

#[tokio::test]
async fn the_template_builds_out_of_tree_and_serves() {
    // Copy the template outside the workspace, point it at this plugin-api,
    // build it there (sharing the target directory, so nothing is rebuilt
    // twice), load the result.
    let dir = TempDir::new("template-out-of-tree");
    let src = workspace_root().join("plugins/template");
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::copy(src.join("src/lib.rs"), dir.path().join("src/lib.rs")).unwrap();
    let manifest = std::fs::read_to_string(src.join("Cargo.toml")).unwrap();
    let api = workspace_root().join("plugin-api");
    let manifest = manifest.replace(
        "path = \"../../plugin-api\"",
        &format!("path = {:?}", api.to_string_lossy()),
    );
    assert!(manifest.contains(&*api.to_string_lossy()));
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    // Same dependency versions as the host, so the build reuses its artifacts.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .unwrap();
    storage_test_support::cargo_build(&dir.path().join("Cargo.toml"), &[]);
    let lib = storage_test_support::target_dir()
        .join(storage_test_support::profile())
        .join(storage_test_support::library_file_name("my_storage_plugin"));

    let manager = empty_manager();
    let info = manager.load_plugin(&lib).unwrap();
    assert_eq!(info.name, "template");
    manager
        .add_backend(backend("t", custom("template", json!({"max_entries": 2}))))
        .await
        .unwrap();
    manager.put("a", b"1".to_vec()).await.unwrap();
    manager.put("b", b"2".to_vec()).await.unwrap();
    let err = manager.put("c", b"3".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("store is full"), "{err}");
    assert_eq!(manager.get("a").await.unwrap(), Some(b"1".to_vec()));
    let err = manager
        .add_backend(backend("t0", custom("template", json!({"max_entries": 0}))))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max_entries must be at least 1"),
        "{err}"
    );
}
