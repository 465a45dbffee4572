//! What the multi-backend policies cost per operation, through
//! `StorageManager`, over 10,000 random keys with 64-byte values on local
//! memory backends (linked in, through the same ABI glue as a library):
//!
//! - `prefer_cache_hit`: PreferCache get answered by the cache;
//! - `prefer_cache_miss`: PreferCache get of a key only the primary has
//!   (read the primary, fill the cache); fresh keys every round;
//! - `round_robin_get` / `round_robin_put`: RoundRobin over three replicas;
//! - `manager_get_linked` / `manager_get_dylib`: a get through the default
//!   policy and one backend, the plugin linked in or loaded from its
//!   library: what every get pays for routing, metrics and the boundary.
//!
//! Each round times every scenario once and prints `scenario ns_per_op`.
//! `scripts/bench-policies.sh OLD_REV` builds this file at OLD_REV too and
//! runs the two binaries round by round (old, new, old, new...), then prints
//! the median ratio per scenario: the machines are noisy, so only ratios
//! measured in one run mean anything.
//!
//! `cargo bench --bench policies -- --rounds 5`

use std::sync::Arc;
use std::time::Instant;

use p2p_ai_agents::storage::plugin::AbiPlugin;
use p2p_ai_agents::storage::plugin_api::module_of;
use p2p_ai_agents::storage::{
    BackendConfig, PluginSource, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
};

const KEYS: usize = 10_000;
const VALUE: [u8; 64] = [7; 64];

/// A small deterministic generator (xorshift): random key order without a
/// dependency, the same in the old and the new binary.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn manager(backends: &[&str]) -> StorageManager {
    manager_from(backends, false).await
}

/// A manager over local memory backends, the plugin linked in or (`dylib`)
/// loaded from its library.
async fn manager_from(backends: &[&str], dylib: bool) -> StorageManager {
    let mut registry = StorageRegistry::new();
    if dylib {
        let lib =
            storage_test_support::plugin_library("storage-local-plugin", "storage_local_plugin");
        registry.load_plugin(lib).unwrap();
    } else {
        registry
            .register_arc(Arc::new(AbiPlugin::new(
                module_of::<storage_local::LocalPlugin>(),
                PluginSource::Builtin,
            )))
            .unwrap();
    }
    let m = StorageManager::with_registry(registry);
    for (i, b) in backends.iter().enumerate() {
        m.add_backend(BackendConfig {
            name: b.to_string(),
            storage_config: StorageConfig::Local { path: None },
            enabled: true,
            priority: i as u32,
        })
        .await
        .unwrap();
    }
    m
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Random keys from `prefix-0` .. `prefix-{KEYS-1}`, in a random order.
fn keys(prefix: &str, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed | 1);
    (0..KEYS)
        .map(|_| format!("{prefix}-{:05}", rng.next() as usize % KEYS))
        .collect()
}

async fn time_gets(m: &StorageManager, keys: &[String]) -> f64 {
    let t = Instant::now();
    for k in keys {
        std::hint::black_box(m.get(k).await.unwrap());
    }
    t.elapsed().as_nanos() as f64 / keys.len() as f64
}

async fn time_puts(m: &StorageManager, keys: &[String]) -> f64 {
    let t = Instant::now();
    for k in keys {
        m.put(k, VALUE.to_vec()).await.unwrap();
    }
    t.elapsed().as_nanos() as f64 / keys.len() as f64
}

fn main() {
    let rounds = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1usize);
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // check that the bench runs, quickly.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        rounds
    } else {
        0
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = manager(&["cache", "primary"]).await;
        let all: Vec<String> = (0..KEYS).map(|i| format!("hot-{i:05}")).collect();
        cache.set_policy(StoragePolicy::AlwaysUse("primary".into()));
        time_puts(&cache, &all).await;
        cache.set_policy(StoragePolicy::PreferCache {
            cache: "cache".into(),
            primary: "primary".into(),
        });
        time_gets(&cache, &all).await; // every key is now in the cache too

        let rr = manager(&["a", "b", "c"]).await;
        rr.set_policy(StoragePolicy::RoundRobin(names(&["a", "b", "c"])));
        let rr_keys: Vec<String> = (0..KEYS).map(|i| format!("rr-{i:05}")).collect();
        for b in ["a", "b", "c"] {
            rr.set_policy(StoragePolicy::AlwaysUse(b.into()));
            time_puts(&rr, &rr_keys).await;
        }
        rr.set_policy(StoragePolicy::RoundRobin(names(&["a", "b", "c"])));

        let single_keys: Vec<String> = (0..KEYS).map(|i| format!("one-{i:05}")).collect();
        let linked = manager_from(&["mem"], false).await;
        let dylib = manager_from(&["mem"], true).await;
        for m in [&linked, &dylib] {
            time_puts(m, &single_keys).await;
        }

        for round in 0..rounds.max(1) as u64 {
            let hit = time_gets(&cache, &keys("hot", round + 1)).await;
            // Fresh keys only the primary has: every get misses and fills.
            let fresh: Vec<String> = (0..KEYS).map(|i| format!("cold{round}-{i:05}")).collect();
            cache.set_policy(StoragePolicy::AlwaysUse("primary".into()));
            time_puts(&cache, &fresh).await;
            cache.set_policy(StoragePolicy::PreferCache {
                cache: "cache".into(),
                primary: "primary".into(),
            });
            let miss = time_gets(&cache, &fresh).await;
            let rr_get = time_gets(&rr, &keys("rr", round + 7)).await;
            let rr_put = time_puts(&rr, &keys("rr", round + 13)).await;
            let get_linked = time_gets(&linked, &keys("one", round + 17)).await;
            let get_dylib = time_gets(&dylib, &keys("one", round + 19)).await;
            if rounds == 0 {
                assert!(hit > 0.0 && miss > 0.0 && rr_get > 0.0 && rr_put > 0.0);
                assert!(get_linked > 0.0 && get_dylib > 0.0);
                println!("policies bench: ok (run with `cargo bench --bench policies`)");
                break;
            }
            println!("prefer_cache_hit {hit:.1}");
            println!("prefer_cache_miss {miss:.1}");
            println!("round_robin_get {rr_get:.1}");
            println!("round_robin_put {rr_put:.1}");
            println!("manager_get_linked {get_linked:.1}");
            println!("manager_get_dylib {get_dylib:.1}");
        }
    });
}
