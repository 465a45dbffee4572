//! get and put ops/s through `StorageManager` and the plugin loaded from its
//! library, against plain reqwest requests to the same PostgREST endpoint
//! from the same process: the physical limit of this setup. Concurrency 1, 8
//! and 32. Ratios (manager ops/s / plain ops/s) are printed at the end, from
//! the same run.
//!
//! Needs `scripts/supabase-local.sh` to have run.
//!
//! ```text
//! cargo bench -p storage-supabase --bench supabase
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use storage_host::{BackendConfig, StorageConfig, StorageManager, StorageRegistry};

const GATEWAY: &str = "127.0.0.1:54321";
const JWT_SECRET: &str = "storage-host-local-test-jwt-secret-0123456789";
const KEYS: usize = 64;
const VALUE_BYTES: usize = 256;
const CONCURRENCY: [usize; 3] = [1, 8, 32];
const PREFIX: &str = "bench/";

fn service_key() -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"role":"service_role","iat":{now},"exp":{}}}"#,
        now + 3600
    ));
    let input = format!("{header}.{claims}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn key(i: u64) -> String {
    format!("{PREFIX}{:03}", i as usize % KEYS)
}

/// What a careful hand-written client sends: the same requests the plugin
/// sends, on the caller's runtime, with one pooled client.
struct Plain {
    client: reqwest::Client,
    table_url: String,
    key: String,
}

impl Plain {
    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("apikey", &self.key)
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Accept-Profile", "public")
            .header("Content-Profile", "public")
            .header("Accept", "application/json")
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        let url = format!(
            "{}?select=value&key=eq.{}",
            self.table_url,
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
        );
        let body = self
            .request(reqwest::Method::GET, url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let hex = rows[0]["value"].as_str().unwrap().trim_start_matches("\\x");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    async fn put(&self, key: &str, value: &[u8]) {
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({"key": key, "value": format!("\\x{hex}"), "updated_at": "2025-01-01T00:00:00Z"});
        let status = self
            .request(reqwest::Method::POST, self.table_url.clone())
            .header("Prefer", "resolution=merge-duplicates,return=minimal")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }
}

/// Runs `iters` operations over `concurrency` tasks; the total time.
async fn run<F, Fut>(iters: u64, concurrency: usize, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = Arc::clone(&next);
            let op = op.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= iters {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// The two clients, ready to run against a populated table.
struct Setup {
    rt: tokio::runtime::Runtime,
    manager: StorageManager,
    plain: Arc<Plain>,
    value: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
        if std::net::TcpStream::connect(GATEWAY).is_err() {
            panic!(
                "the local Supabase REST gateway is not reachable at {GATEWAY}; run scripts/supabase-local.sh first"
            );
        }
        // The host's runtime: it polls the plugin's futures, and runs the
        // plain client itself.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://{GATEWAY}");
        let api_key = service_key();

        let path = storage_test_support::plugin_library(
            "storage-supabase-plugin",
            "storage_supabase_plugin",
        );
        let manager = StorageManager::with_registry(StorageRegistry::new());
        manager.load_plugin(&path).unwrap();
        rt.block_on(manager.add_backend(BackendConfig {
            name: "supabase".into(),
            storage_config: StorageConfig::Supabase {
                url: url.clone(),
                anon_key: api_key.clone(),
                service_role_key: Some(api_key.clone()),
                schema: "public".into(),
                table_name: "storage".into(),
                timeout: 30,
                max_retries: 3,
            },
            enabled: true,
            priority: 1,
        }))
        .unwrap();
        let plain = Arc::new(Plain {
            client: rt.block_on(async {
                reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .build()
                    .unwrap()
            }),
            table_url: format!("{url}/rest/v1/storage"),
            key: api_key,
        });
        let value = vec![0xa5u8; VALUE_BYTES];
        rt.block_on(async {
            for i in 0..KEYS as u64 {
                manager.put(&key(i), value.clone()).await.unwrap();
            }
        });
        Setup {
            rt,
            manager,
            plain,
            value,
        }
    }

    /// `iters` ops of `op` through the manager, over `concurrency` tasks.
    async fn run_manager(&self, op: &'static str, iters: u64, concurrency: usize) -> Duration {
        let m = self.manager.clone();
        let v = self.value.clone();
        run(iters, concurrency, move |i| {
            let m = m.clone();
            let v = v.clone();
            async move {
                if op == "get" {
                    assert_eq!(
                        m.get(&key(i)).await.unwrap().map(|v| v.len()),
                        Some(VALUE_BYTES)
                    );
                } else {
                    m.put(&key(i), v).await.unwrap();
                }
            }
        })
        .await
    }

    /// The same with plain reqwest requests.
    async fn run_plain(&self, op: &'static str, iters: u64, concurrency: usize) -> Duration {
        let p = Arc::clone(&self.plain);
        let v = self.value.clone();
        run(iters, concurrency, move |i| {
            let p = Arc::clone(&p);
            let v = v.clone();
            async move {
                if op == "get" {
                    assert_eq!(p.get(&key(i)).await.len(), VALUE_BYTES);
                } else {
                    p.put(&key(i), &v).await;
                }
            }
        })
        .await
    }
}

fn bench(c: &mut Criterion, setup: &Setup) {
    for op in ["get", "put"] {
        let mut group = c.benchmark_group(format!("supabase_{op}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(1));
        for concurrency in CONCURRENCY {
            group.bench_with_input(
                BenchmarkId::new("manager", concurrency),
                &concurrency,
                |b, &n| {
                    b.to_async(&setup.rt)
                        .iter_custom(|iters| setup.run_manager(op, iters, n))
                },
            );
            group.bench_with_input(
                BenchmarkId::new("reqwest", concurrency),
                &concurrency,
                |b, &n| {
                    b.to_async(&setup.rt)
                        .iter_custom(|iters| setup.run_plain(op, iters, n))
                },
            );
        }
        group.finish();
    }
}

/// ns per op of one benchmark of this run, from criterion's output: the
/// estimate criterion prints (the slope of its linear sampling, else the mean).
fn ns_per_op(group: &str, id: &str, concurrency: usize) -> Option<f64> {
    let path = storage_test_support::target_dir()
        .join("criterion")
        .join(group)
        .join(id)
        .join(concurrency.to_string())
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

/// Rounds of the same ops, manager and plain alternating (ABBA), summed per
/// side: on a shared machine the load drifts between criterion's benchmarks,
/// and alternating short rounds puts both sides under the same drift.
fn interleaved(setup: &Setup, op: &'static str, concurrency: usize) -> (f64, f64) {
    const ROUNDS: usize = 6;
    let ops: u64 = if op == "get" { 300 } else { 150 } * (concurrency as u64).min(8);
    let (mut manager, mut plain) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        setup.rt.block_on(async {
            if round % 2 == 0 {
                manager += setup.run_manager(op, ops, concurrency).await;
                plain += setup.run_plain(op, ops, concurrency).await;
            } else {
                plain += setup.run_plain(op, ops, concurrency).await;
                manager += setup.run_manager(op, ops, concurrency).await;
            }
        });
    }
    let total = (ops * ROUNDS as u64) as f64;
    (total / manager.as_secs_f64(), total / plain.as_secs_f64())
}

fn main() {
    let setup = Setup::new();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &setup);
    c.final_summary();
    // `cargo test --benches` runs each benchmark once to check it works;
    // only `cargo bench` (which passes --bench) measures the ratios.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }

    println!("\nops/s, manager (plugin library) vs plain reqwest; ratio = manager / plain");
    println!(
        "op   concurrency | interleaved: manager    plain  ratio | criterion: manager    plain  ratio"
    );
    for op in ["get", "put"] {
        for n in CONCURRENCY {
            let (im, ip) = interleaved(&setup, op, n);
            let group = format!("supabase_{op}");
            let (cm, cp) = (
                ns_per_op(&group, "manager", n),
                ns_per_op(&group, "reqwest", n),
            );
            let criterion = match (cm, cp) {
                (Some(m), Some(p)) => format!("{:>16.0} {:>8.0} {:>6.2}", 1e9 / m, 1e9 / p, p / m),
                _ => "               (not run)".to_string(),
            };
            println!(
                "{op:<4} {n:>11} | {im:>20.0} {ip:>8.0} {:>6.2} | {criterion}",
                im / ip
            );
        }
    }
}
