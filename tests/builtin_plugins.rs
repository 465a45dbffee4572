//! The built-in plugins of each build: `local` always; `supabase` and `redis`
//! with the `storage-supabase` and `storage-redis` features, as the seed says.

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
