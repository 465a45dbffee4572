//! GET/SET throughput through the storage manager (the redis plugin loaded
//! as a dynamic library) against a raw redis client on the same server, at
//! concurrency 1 and 32. Prints the manager/raw ratios at the end.
//!
//! Needs Redis at `REDIS_URL` (default redis://127.0.0.1:6379).
//!
//! ```text
//! cargo bench -p storage-redis --bench redis
//! ```

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use redis::aio::ConnectionManager;
use serde_json::json;
use storage_host::{BackendConfig, StorageConfig, StorageManager, StoragePolicy, StorageRegistry};
use storage_test_support::{plugin_library, target_dir};

const CONCURRENCY: [usize; 2] = [1, 32];
const KEYS: usize = 1_000;
const VALUE_LEN: usize = 100;
const PREFIX: &str = "storage-redis-bench:";

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

struct Fixture {
    manager: StorageManager,
    raw: ConnectionManager,
    /// The plugin's backend called directly (linked in, no manager, no
    /// ABI): splits the manager's overhead into host and plugin parts.
    direct: storage_redis::RedisBackend,
}

async fn fixture() -> Fixture {
    let url = url();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a valid URL");
    let raw = ConnectionManager::new(client).await.unwrap_or_else(|e| {
        panic!(
            "the benchmark needs Redis at {url}: {e}; start it with `redis-server --daemonize yes`"
        )
    });

    let manager = StorageManager::with_registry(StorageRegistry::new());
    manager
        .load_plugin(plugin_library(
            "storage-redis-plugin",
            "storage_redis_plugin",
        ))
        .expect("load the redis plugin");
    manager
        .add_backend(BackendConfig {
            name: "redis".into(),
            storage_config: StorageConfig::Custom {
                plugin_name: "redis".into(),
                config: json!({"url": url, "key_prefix": PREFIX}),
            },
            enabled: true,
            priority: 0,
        })
        .await
        .expect("add the redis backend");
    manager.set_policy(StoragePolicy::AlwaysUse("redis".into()));
    // Both paths read the same keys: the manager's namespace is PREFIX.
    for i in 0..KEYS {
        manager
            .put(&key(i), vec![b'x'; VALUE_LEN])
            .await
            .expect("seed");
    }
    let direct = <storage_redis::RedisPlugin as storage_plugin_api::Plugin>::create(
        storage_redis::RedisConfig {
            key_prefix: PREFIX.to_string(),
            ..storage_redis::RedisConfig::new(url)
        },
    )
    .await
    .expect("create the redis backend directly");
    Fixture {
        manager,
        raw,
        direct,
    }
}

fn key(i: usize) -> String {
    format!("k{}", i % KEYS)
}

/// `n` concurrent `op`s through the manager.
async fn manager_round(m: &StorageManager, op: &str, base: usize, n: usize) {
    join_all((0..n).map(|i| async move {
        let k = key(base + i);
        if op == "get" {
            assert!(m.get(&k).await.expect("get").is_some());
        } else {
            m.put(&k, vec![b'y'; VALUE_LEN]).await.expect("put");
        }
    }))
    .await;
}

/// `n` concurrent `op`s on the plugin's backend, without the manager.
async fn direct_round(b: &storage_redis::RedisBackend, op: &str, base: usize, n: usize) {
    use storage_plugin_api::Backend;
    join_all((0..n).map(|i| async move {
        let k = key(base + i);
        if op == "get" {
            assert!(b.get(&k).await.expect("get").is_some());
        } else {
            b.put(&k, vec![b'y'; VALUE_LEN]).await.expect("put");
        }
    }))
    .await;
}

/// `n` concurrent `op`s with the raw client.
async fn raw_round(raw: &ConnectionManager, op: &str, base: usize, n: usize) {
    join_all((0..n).map(|i| {
        let mut conn = raw.clone();
        async move {
            let k = format!("{PREFIX}{}", key(base + i));
            if op == "get" {
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .expect("get");
                assert!(v.is_some());
            } else {
                let () = redis::cmd("SET")
                    .arg(&k)
                    .arg(vec![b'y'; VALUE_LEN])
                    .query_async(&mut conn)
                    .await
                    .expect("set");
            }
        }
    }))
    .await;
}

/// Ops/s of the manager and the raw client measured in alternating short
/// slices, and the median of the per-slice-pair ratios: load from other
/// processes drifts over seconds, so a ratio of neighbouring slices is far
/// steadier than one of two runs taken a minute apart.
async fn interleaved(f: &Fixture, op: &str, n: usize) -> (f64, f64, f64, f64) {
    const PAIRS: usize = 15;
    const SLICE: Duration = Duration::from_millis(150);
    async fn slice<Fut: std::future::Future<Output = ()>>(
        n: usize,
        mut round: impl FnMut(usize) -> Fut,
    ) -> f64 {
        let start = std::time::Instant::now();
        let mut ops = 0usize;
        while start.elapsed() < SLICE {
            round(ops).await;
            ops += n;
        }
        ops as f64 / start.elapsed().as_secs_f64()
    }
    let (mut ms, mut rs, mut ratios, mut direct) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        let m = slice(n, |base| manager_round(&f.manager, op, base, n)).await;
        let r = slice(n, |base| raw_round(&f.raw, op, base, n)).await;
        let d = slice(n, |base| direct_round(&f.direct, op, base, n)).await;
        ms.push(m);
        rs.push(r);
        ratios.push(m / r);
        direct.push(d / r);
    }
    (median(ms), median(rs), median(ratios), median(direct))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, f: &Fixture) {
    for op in ["get", "set"] {
        let mut group = c.benchmark_group(format!("redis_{op}"));
        for n in CONCURRENCY {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("manager", n), &n, |b, &n| {
                let mut round = 0usize;
                b.to_async(rt).iter(|| {
                    round += 1;
                    manager_round(&f.manager, op, round * n, n)
                });
            });
            group.bench_with_input(BenchmarkId::new("raw", n), &n, |b, &n| {
                let mut round = 0usize;
                b.to_async(rt).iter(|| {
                    round += 1;
                    raw_round(&f.raw, op, round * n, n)
                });
            });
        }
        group.finish();
    }
}

/// Mean ops/s of one benchmark, from criterion's estimates on disk.
fn ops_per_sec(group: &str, id: &str, n: usize) -> Option<f64> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(id)
        .join(n.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ns = v["mean"]["point_estimate"].as_f64()?;
    Some(n as f64 / (ns * 1e-9))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let f = rt.block_on(fixture());
    // Short runs: the machines are shared and noisy; ratios come from one run.
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    benches(&mut c, &rt, &f);
    c.final_summary();

    println!(
        "\ncriterion means (sequential runs; read from target/criterion, so from an earlier run for benchmarks this run filtered out):"
    );
    println!("| op | concurrency | manager ops/s | raw ops/s | ratio |");
    println!("|---|---|---|---|---|");
    for op in ["get", "set"] {
        let group = format!("redis_{op}");
        for n in CONCURRENCY {
            match (
                ops_per_sec(&group, "manager", n),
                ops_per_sec(&group, "raw", n),
            ) {
                (Some(m), Some(r)) => println!("| {op} | {n} | {m:.0} | {r:.0} | {:.2} |", m / r),
                _ => println!("| {op} | {n} | (not measured in this run) | | |"),
            }
        }
    }
    let cleanup = || {
        rt.block_on(async {
            let keys: Vec<String> = (0..KEYS).map(|i| format!("{PREFIX}{}", key(i))).collect();
            let mut raw = f.raw.clone();
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut raw).await;
            f.manager.shutdown().await;
        })
    };
    if std::env::args().any(|a| a == "--list" || a == "--test" || a == "--profile-time") {
        cleanup();
        return;
    }
    println!("\ninterleaved (15 rounds of 150 ms slices, medians):");
    println!("| op | concurrency | manager ops/s | raw ops/s | manager/raw | plugin direct/raw |");
    println!("|---|---|---|---|---|---|");
    for op in ["get", "set"] {
        for n in CONCURRENCY {
            let (m, r, ratio, direct) = rt.block_on(interleaved(&f, op, n));
            println!("| {op} | {n} | {m:.0} | {r:.0} | {ratio:.2} | {direct:.2} |");
        }
    }
    cleanup();
}
