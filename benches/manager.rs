//! The manager's overhead and scaling.
//!
//! - get/put of 100-byte values on the local memory backend: loaded as a
//!   dynamic library, the same plugin linked in (through the same ABI glue),
//!   the same store behind a native in-process `Storage` impl (no ABI), and a
//!   bare `RwLock<HashMap>` (no manager at all);
//! - manager throughput from 1 and 2 tasks (no global lock);
//! - Redundant put to three backends delayed 20 ms vs the same puts one after another.
//!
//! `cargo bench --bench manager`

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use faulty_plugin::{FaultyPlugin, control};
use p2p_ai_agents::storage::local::{Storage, StorageError};
use p2p_ai_agents::storage::plugin::{AbiPlugin, PluginError, StoragePlugin};
use p2p_ai_agents::storage::plugin_api::module_of;
use p2p_ai_agents::storage::{
    BackendConfig, PluginSource, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
};
use storage_local::MemoryBackend;

const VALUE: [u8; 100] = [7; 100];

/// The local memory store behind the native trait: what "linked in
/// natively" costs, without the ABI layer.
struct NativeLocal;
struct NativeStore(MemoryBackend);

#[async_trait]
impl StoragePlugin for NativeLocal {
    fn name(&self) -> &'static str {
        "native-local"
    }
    fn description(&self) -> &'static str {
        "local memory store, native trait"
    }
    async fn create(
        &self,
        _: &StorageConfig,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError> {
        Ok(Box::new(NativeStore(MemoryBackend::new())))
    }
    fn validate_config(&self, _: &StorageConfig) -> Result<(), PluginError> {
        Ok(())
    }
}

#[async_trait]
impl Storage for NativeStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.get(key))
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.0.put(key, value);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete(key);
        Ok(())
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

async fn manager_for(kind: &str) -> StorageManager {
    let mut registry = StorageRegistry::new();
    let storage_config = match kind {
        "dylib" => {
            let lib = storage_test_support::plugin_library(
                "storage-local-plugin",
                "storage_local_plugin",
            );
            registry.load_plugin(lib).unwrap();
            StorageConfig::Local { path: None }
        }
        "linked" => {
            registry
                .register_arc(Arc::new(AbiPlugin::new(
                    module_of::<storage_local::LocalPlugin>(),
                    PluginSource::Builtin,
                )))
                .unwrap();
            StorageConfig::Local { path: None }
        }
        "native" => {
            registry.register_plugin(Box::new(NativeLocal)).unwrap();
            StorageConfig::Custom {
                plugin_name: "native-local".into(),
                config: serde_json::json!({}),
            }
        }
        _ => unreachable!(),
    };
    let m = StorageManager::with_registry(registry);
    m.add_backend(BackendConfig {
        name: "mem".into(),
        storage_config,
        enabled: true,
        priority: 0,
    })
    .await
    .unwrap();
    m.put("key-00042", VALUE.to_vec()).await.unwrap();
    m
}

fn get_put(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("local_memory_100B");
    for kind in ["dylib", "linked", "native"] {
        let m = rt.block_on(manager_for(kind));
        g.bench_function(format!("get/{kind}"), |b| {
            b.to_async(&rt)
                .iter(|| async { m.get("key-00042").await.unwrap() })
        });
        g.bench_function(format!("put/{kind}"), |b| {
            b.to_async(&rt)
                .iter(|| async { m.put("key-00042", VALUE.to_vec()).await.unwrap() })
        });
    }
    let map: RwLock<HashMap<String, Vec<u8>>> = RwLock::new(HashMap::new());
    map.write()
        .unwrap()
        .insert("key-00042".into(), VALUE.to_vec());
    g.bench_function("get/bare_rwlock_hashmap", |b| {
        b.iter(|| map.read().unwrap().get("key-00042").cloned())
    });
    g.bench_function("put/bare_rwlock_hashmap", |b| {
        b.iter(|| {
            map.write()
                .unwrap()
                .insert("key-00042".to_string(), VALUE.to_vec())
        })
    });
    g.finish();
}

/// Total time for `iters` gets spread over `tasks` tasks on a 2-worker runtime.
fn scaling(c: &mut Criterion) {
    let rt = runtime(2);
    let m = rt.block_on(manager_for("dylib"));
    rt.block_on(async {
        for i in 0..1000 {
            m.put(&format!("key-{i:05}"), VALUE.to_vec()).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("manager_throughput");
    for tasks in [1u64, 2] {
        g.throughput(criterion::Throughput::Elements(1));
        g.bench_function(format!("get/{tasks}_tasks"), |b| {
            b.iter_custom(|iters| {
                let m = m.clone();
                rt.block_on(async move {
                    let per_task = iters / tasks + 1;
                    let start = Instant::now();
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let m = m.clone();
                            tokio::spawn(async move {
                                for i in 0..per_task {
                                    let key = format!("key-{:05}", (i * 7 + t * 13) % 1000);
                                    std::hint::black_box(m.get(&key).await.unwrap());
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = runtime(2);
    let mut registry = StorageRegistry::new();
    registry
        .register_arc(Arc::new(AbiPlugin::new(
            module_of::<FaultyPlugin>(),
            PluginSource::Builtin,
        )))
        .unwrap();
    let m = StorageManager::with_registry(registry);
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    rt.block_on(async {
        for n in &names {
            m.add_backend(BackendConfig {
                name: n.clone(),
                storage_config: StorageConfig::Custom {
                    plugin_name: "faulty".into(),
                    config: serde_json::json!({ "name": format!("bench-{n}") }),
                },
                enabled: true,
                priority: 0,
            })
            .await
            .unwrap();
            control(&format!("bench-{n}")).set_delay(Duration::from_millis(20));
        }
    });
    let mut g = c.benchmark_group("redundant_put_3x20ms");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("fan_out", |b| {
        m.set_policy(StoragePolicy::Redundant(names.clone()));
        b.to_async(&rt)
            .iter(|| async { m.put("k", VALUE.to_vec()).await.unwrap() })
    });
    g.bench_function("sequential", |b| {
        b.to_async(&rt).iter(|| async {
            for n in &names {
                m.set_policy(StoragePolicy::AlwaysUse(n.clone()));
                m.put("k", VALUE.to_vec()).await.unwrap();
            }
        })
    });
    g.bench_function("single_backend", |b| {
        m.set_policy(StoragePolicy::AlwaysUse("a".into()));
        b.to_async(&rt)
            .iter(|| async { m.put("k", VALUE.to_vec()).await.unwrap() })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = get_put, scaling, fan_out
}
criterion_main!(benches);
