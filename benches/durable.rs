//! The durable local store against raw redb, in one run on one machine.
//!
//! - (a) one durable put at a time vs raw redb, one commit per insert
//!   (target: ratio >= 0.8);
//! - (b) 64 concurrent writers (group commit) vs (a) (target: >= 10x);
//! - (c) gets vs raw redb reads (target: ratio >= 0.7);
//! - (d) a `list_page` of 100 keys vs a full `list` of the preloaded store
//!   (a page's cost is bounded by its size, not the store's).
//!
//! Both sides use the same redb version, the same page cache size
//! ([`storage_local::CACHE_SIZE`]), the same key and value sizes, and files on
//! the same disk (the system temp directory). The local store is driven
//! through the plugin's `Backend` trait, as the host drives it.
//!
//! Run: `cargo bench --bench durable -- --warm-up-time 1 --measurement-time 3`.
//! Criterion measures each benchmark (distributions, outliers) and the rates
//! of its samples are printed at the end ([`Record`]). The three ratios come
//! from a second, interleaved measurement ([`paired`]): criterion runs one
//! benchmark after the other, and on a shared machine the load changes in
//! between, so a ratio of two criterion means can be off by 2x either way.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use storage_local::{CACHE_SIZE, LocalBackend, LocalConfig};
use storage_plugin_api::Backend;
use storage_test_support::TempDir;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const VALUE_LEN: usize = 128;
const WRITERS: usize = 64;
const PRELOADED: u64 = 10_000;
/// Samples per benchmark. Criterion's measurement phase calls a routine once
/// per sample, after its warm-up calls: the last `SAMPLES` calls recorded
/// for a benchmark are the measured ones.
const SAMPLES: usize = 20;

/// Every (elapsed, operations) a routine measured, by benchmark.
struct Record(Mutex<BTreeMap<&'static str, Vec<(Duration, u64)>>>);

impl Record {
    fn add(&self, bench: &'static str, elapsed: Duration, ops: u64) {
        self.0
            .lock()
            .unwrap()
            .entry(bench)
            .or_default()
            .push((elapsed, ops));
    }

    /// Operations per second over the measured samples.
    fn ops_per_sec(&self, bench: &str) -> f64 {
        let all = self.0.lock().unwrap();
        let calls = &all[bench];
        let measured = &calls[calls.len().saturating_sub(SAMPLES)..];
        let time: Duration = measured.iter().map(|(t, _)| *t).sum();
        let ops: u64 = measured.iter().map(|(_, n)| *n).sum();
        ops as f64 / time.as_secs_f64()
    }
}

static RECORD: Record = Record(Mutex::new(BTreeMap::new()));

fn key(n: u64) -> String {
    format!("key{n:010}")
}

fn raw_db(dir: &Path) -> Database {
    Database::builder()
        .set_cache_size(CACHE_SIZE)
        .create(dir.join("raw.redb"))
        .expect("create raw redb")
}

fn raw_put(db: &Database, key: &str, value: &[u8]) {
    let mut txn = db.begin_write().unwrap();
    txn.set_durability(Durability::Immediate).unwrap();
    {
        let mut table = txn.open_table(TABLE).unwrap();
        table.insert(key, value).unwrap();
    }
    txn.commit().unwrap();
}

fn raw_get(db: &Database, key: &str) -> Option<Vec<u8>> {
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    table.get(key).unwrap().map(|v| v.value().to_vec())
}

async fn local_store(dir: &Path) -> LocalBackend {
    let config = LocalConfig {
        path: Some(dir.join("local").display().to_string()),
        verify_on_open: None,
    };
    LocalBackend::open(&config)
        .await
        .expect("open the durable local store")
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// (a): one put at a time.
fn serial_puts(c: &mut Criterion, tmp: &Path) {
    let rt = runtime(2);
    let raw = raw_db(tmp);
    let local = rt.block_on(local_store(tmp));
    let value = vec![7u8; VALUE_LEN];
    let next = AtomicU64::new(1_000_000);

    let mut g = c.benchmark_group("durable_put_serial");
    g.sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(1));
    g.bench_function("raw_redb_commit_per_insert", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                raw_put(&raw, &key(next.fetch_add(1, Relaxed)), &value);
            }
            let t = start.elapsed();
            RECORD.add("raw_serial", t, iters);
            t
        })
    });
    g.bench_function("local_put", |b| {
        b.iter_custom(|iters| {
            let t = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    local
                        .put(&key(next.fetch_add(1, Relaxed)), value.clone())
                        .await
                        .unwrap();
                }
                start.elapsed()
            });
            RECORD.add("local_serial", t, iters);
            t
        })
    });
    g.finish();
    rt.block_on(local.shutdown()).unwrap();
}

/// [`WRITERS`] tasks at once, each putting `per_writer` new keys one at a
/// time (keys numbered from `next`); the time until all are acknowledged.
async fn writers_put(
    local: &Arc<LocalBackend>,
    next: &Arc<AtomicU64>,
    per_writer: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let local = Arc::clone(local);
        let next = Arc::clone(next);
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let k = key(next.fetch_add(1, Relaxed));
                local.put(&k, vec![7u8; VALUE_LEN]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// (b): 64 writers at once, each one put at a time.
fn concurrent_puts(c: &mut Criterion, tmp: &Path) {
    let rt = runtime(2);
    let local = Arc::new(rt.block_on(local_store(tmp)));
    let next = Arc::new(AtomicU64::new(5_000_000_000));

    let mut g = c.benchmark_group("durable_put_concurrent");
    g.sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(WRITERS as u64));
    g.bench_function(
        BenchmarkId::new("local_put", format!("{WRITERS}_writers")),
        |b| {
            b.iter_custom(|iters| {
                let t = rt.block_on(writers_put(&local, &next, iters));
                RECORD.add("local_concurrent", t, iters * WRITERS as u64);
                t
            })
        },
    );
    g.finish();
    rt.block_on(local.shutdown()).unwrap();
}

/// (c): gets of keys that exist, spread over a preloaded store.
fn gets(c: &mut Criterion, tmp: &Path) {
    let rt = runtime(2);
    let raw = raw_db(tmp);
    let local = Arc::new(rt.block_on(local_store(tmp)));
    preload(&rt, &raw, &local);
    // A fixed pseudo-random walk over the keys, the same for both.
    let step = 7_919; // prime, coprime with PRELOADED
    let cursor = AtomicU64::new(0);
    let next_key = || key(cursor.fetch_add(step, Relaxed) % PRELOADED);

    let mut g = c.benchmark_group("durable_get");
    g.sample_size(SAMPLES).throughput(Throughput::Elements(1));
    g.bench_function("raw_redb_get", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(raw_get(&raw, &next_key()).expect("preloaded"));
            }
            let t = start.elapsed();
            RECORD.add("raw_get", t, iters);
            t
        })
    });
    g.bench_function("local_get", |b| {
        b.iter_custom(|iters| {
            let t = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(local.get(&next_key()).await.unwrap().expect("preloaded"));
                }
                start.elapsed()
            });
            RECORD.add("local_get", t, iters);
            t
        })
    });
    g.finish();
    rt.block_on(local.shutdown()).unwrap();
}

/// A page of 100 keys against the full listing it bounds, over the
/// preloaded store: `list_page` reads `limit + 1` keys, `list` every key.
fn listing(c: &mut Criterion, tmp: &Path) {
    let rt = runtime(2);
    let raw = raw_db(tmp);
    let local = Arc::new(rt.block_on(local_store(tmp)));
    preload(&rt, &raw, &local);
    let mut g = c.benchmark_group("durable_list");
    g.sample_size(SAMPLES);
    g.bench_function("list_page_100", |b| {
        b.iter_custom(|iters| {
            let t = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let page = local.list_page("", None, 100).await.unwrap();
                    assert_eq!(black_box(page).keys.len(), 100);
                }
                start.elapsed()
            });
            RECORD.add("list_page_100", t, iters);
            t
        })
    });
    g.bench_function("list_all", |b| {
        b.iter_custom(|iters| {
            let t = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let keys = local.list("").await.unwrap();
                    assert_eq!(black_box(keys).len() as u64, PRELOADED);
                }
                start.elapsed()
            });
            RECORD.add("list_all", t, iters);
            t
        })
    });
    g.finish();
    rt.block_on(local.shutdown()).unwrap();
}

/// The ratios, from interleaved rounds: criterion measures one benchmark
/// after another, and on a shared machine the load (other builds, their
/// fsyncs) changes between them, which skews a ratio of two criterion means.
/// Alternating short blocks of each side puts both under the same conditions.
struct Paired {
    raw_put: Duration,
    local_put: Duration,
    puts: u64,
    concurrent: Duration,
    concurrent_puts: u64,
    raw_get: Duration,
    local_get: Duration,
    gets: u64,
}

fn paired(tmp: &Path) -> Paired {
    const ROUNDS: u64 = 10;
    const PUTS: u64 = 100;
    const PER_WRITER: u64 = 10;
    const GETS: u64 = 20_000;
    let rt = runtime(2);
    let raw = raw_db(tmp);
    let local = Arc::new(rt.block_on(local_store(tmp)));
    let mut p = Paired {
        raw_put: Duration::ZERO,
        local_put: Duration::ZERO,
        puts: 0,
        concurrent: Duration::ZERO,
        concurrent_puts: 0,
        raw_get: Duration::ZERO,
        local_get: Duration::ZERO,
        gets: 0,
    };
    // Reads first, while both stores hold exactly the same keys.
    preload(&rt, &raw, &local);
    for round in 0..ROUNDS {
        let n = |i: u64| key((round * GETS + i) * 7_919 % PRELOADED);
        let start = Instant::now();
        for i in 0..GETS {
            black_box(raw_get(&raw, &n(i)).expect("preloaded"));
        }
        p.raw_get += start.elapsed();
        p.local_get += rt.block_on(async {
            let start = Instant::now();
            for i in 0..GETS {
                black_box(local.get(&n(i)).await.unwrap().expect("preloaded"));
            }
            start.elapsed()
        });
        p.gets += GETS;
    }

    let value = vec![7u8; VALUE_LEN];
    let next = Arc::new(AtomicU64::new(PRELOADED));
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PUTS {
            raw_put(&raw, &key(next.fetch_add(1, Relaxed)), &value);
        }
        p.raw_put += start.elapsed();
        p.local_put += rt.block_on(async {
            let start = Instant::now();
            for _ in 0..PUTS {
                local
                    .put(&key(next.fetch_add(1, Relaxed)), value.clone())
                    .await
                    .unwrap();
            }
            start.elapsed()
        });
        p.puts += PUTS;
        p.concurrent += rt.block_on(writers_put(&local, &next, PER_WRITER));
        p.concurrent_puts += PER_WRITER * WRITERS as u64;
    }
    rt.block_on(local.shutdown()).unwrap();
    p
}

/// Writes keys `0..PRELOADED`: raw in one transaction, local through 64
/// concurrent writers (group commit makes that quick).
fn preload(rt: &tokio::runtime::Runtime, raw: &Database, local: &Arc<LocalBackend>) {
    let txn = raw.begin_write().unwrap();
    {
        let mut table = txn.open_table(TABLE).unwrap();
        for n in 0..PRELOADED {
            table
                .insert(key(n).as_str(), [7u8; VALUE_LEN].as_slice())
                .unwrap();
        }
    }
    txn.commit().unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..WRITERS as u64 {
            let local = Arc::clone(local);
            tasks.push(tokio::spawn(async move {
                for n in (w..PRELOADED).step_by(WRITERS) {
                    local.put(&key(n), vec![7u8; VALUE_LEN]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// A benchmark group: criterion, and a fresh directory for its files.
type Group = fn(&mut Criterion, &Path);

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let tmp = TempDir::new("durable-bench");
    let groups: [(&str, Group); 4] = [
        ("serial", serial_puts),
        ("concurrent", concurrent_puts),
        ("get", gets),
        ("list", listing),
    ];
    for (name, group) in groups {
        // Fresh files per group, so one group's data does not slow another.
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        group(&mut c, &dir);
    }
    c.final_summary();
    // `cargo test --benches` runs each benchmark once to see that it works
    // (`--test`); `--list` lists them. Neither wants the ratios.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    criterion_rates();
    let dir = tmp.path().join("paired");
    std::fs::create_dir_all(&dir).unwrap();
    report(&paired(&dir));
}

/// The rates criterion measured (the benchmarks a filter left in).
fn criterion_rates() {
    let measured: Vec<&str> = RECORD.0.lock().unwrap().keys().copied().collect();
    println!("\n== durable local store: criterion's samples, as rates ==");
    for k in measured {
        println!("{k:>18}: {:>12.0} ops/s", RECORD.ops_per_sec(k));
    }
}

fn report(p: &Paired) {
    let rate = |ops: u64, t: Duration| ops as f64 / t.as_secs_f64();
    let raw_put = rate(p.puts, p.raw_put);
    let local_put = rate(p.puts, p.local_put);
    let concurrent = rate(p.concurrent_puts, p.concurrent);
    let raw_get = rate(p.gets, p.raw_get);
    let local_get = rate(p.gets, p.local_get);
    println!("\n== durable local store: interleaved rounds (the ratios) ==");
    println!("raw redb, commit per insert: {raw_put:>10.0} puts/s");
    println!("local put, one at a time:    {local_put:>10.0} puts/s");
    println!("local put, {WRITERS} writers:       {concurrent:>10.0} puts/s");
    println!("raw redb get:                {raw_get:>10.0} gets/s");
    println!("local get:                   {local_get:>10.0} gets/s");
    println!(
        "(a) local put one at a time / raw redb commit per insert = {:.2} (target >= 0.8)",
        local_put / raw_put
    );
    println!(
        "(b) local put {WRITERS} writers / one at a time = {:.1}x (target >= 10x)",
        concurrent / local_put
    );
    println!(
        "(c) local get / raw redb get = {:.2} (target >= 0.7)",
        local_get / raw_get
    );
}
