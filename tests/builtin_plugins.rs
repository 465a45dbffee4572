//! The built-in plugins of each build: `local` always; `supabase` and `redis`
//! with the `storage-supabase` and `storage-redis` features of the facade.

use p2p_ai_agents::storage::{PluginSource, StorageManager, StorageRegistry};

#[test]
fn new_offers_the_plugins_of_the_enabled_features() {
    let manager = StorageManager::new();
    let names: Vec<String> = manager.list_plugins().into_iter().map(|p| p.name).collect();
    let mut expected = vec!["local"];
    if cfg!(feature = "storage-redis") {
        expected.push("redis");
    }
    if cfg!(feature = "storage-supabase") {
        expected.push("supabase");
    }
    assert_eq!(names, expected);
    for p in StorageRegistry::with_defaults().list_plugins() {
        assert_eq!(p.source, PluginSource::Builtin);
        assert!(!p.description.is_empty() && !p.version.is_empty());
    }
}

/// A Supabase backend added by name, as agent code does, with the built-in plugin, against the
/// local Supabase REST API (`scripts/supabase-local.sh`).
#[cfg(feature = "storage-supabase")]
#[tokio::test]
async fn seed_using_supabase_runs_against_the_local_stack() -> Result<(), Box<dyn std::error::Error>>
{
    use p2p_ai_agents::storage::BackendConfig;
    use storage_test_support::supabase;

    let manager = StorageManager::new();
    #[cfg(feature = "storage-supabase")]
    {
        let supabase_config = BackendConfig {
            name: "supabase".to_string(),
            storage_config: supabase::local_config(30, 3),
            enabled: true,
            priority: 2,
        };
        manager.add_backend(supabase_config).await?;
    }
    let key = format!("seed-feature/{}", std::process::id());
    manager.put(&key, b"from the facade".to_vec()).await?;
    assert_eq!(manager.get(&key).await?, Some(b"from the facade".to_vec()));
    manager.delete(&key).await?;
    assert_eq!(manager.get(&key).await?, None);
    Ok(())
}
