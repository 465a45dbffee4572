//! Consistency under faults: every policy, one `StorageManager`, several
//! concurrent clients; each history is checked to be linearizable per key
//! (see `storage_test_support::history` for the contract and the checker).
//!
//! Faults: a private `redis-server` frozen (SIGSTOP/SIGCONT) and killed
//! (SIGKILL) and restarted under `PreferCache`; the fault-injecting plugin
//! (unavailable, failing, hanging, slow, "applied then reported failed",
//! late answers) under every policy; hot swaps of plugins mid-run.
//!
//! CI runs 20 seeds per policy. Replay one run:
//! `CONSISTENCY_SEED=17 cargo test --test consistency round_robin_is_linearizable_under_faults -- --nocapture`;
//! more runs: `cargo test --test consistency -- --ignored` (200 seeds per
//! policy, `CONSISTENCY_RUNS=N` to change).
//!
//! The per-bug regression tests at the end are deterministic.

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faulty_plugin::{Control, FaultyPlugin, Mode, Op as FaultOp, control};
use p2p_ai_agents::storage::local::LocalPlugin;
use p2p_ai_agents::storage::plugin::{AbiPlugin, StoragePlugin};
use p2p_ai_agents::storage::plugin_api::module_of;
use p2p_ai_agents::storage::{
    BackendConfig, PluginSource, StorageConfig, StorageManager, StoragePolicy, StorageRegistry,
};
use serde_json::json;
use storage_test_support::TempDir;
use storage_test_support::history::{Recorder, Ret, Rng, Summary, Workload, check};

/// Seeded runs per policy in CI.
const CI_RUNS: u64 = 20;
/// Seeded runs per policy in the `--ignored` variant (`CONSISTENCY_RUNS`).
const LONG_RUNS: u64 = 200;
/// Runs executed at the same time (each has its own manager and backends).
const PARALLEL: usize = 4;

/// The seeds to run: `CONSISTENCY_SEED` alone if set, else `runs` seeds
/// from `first`.
fn seeds(first: u64, runs: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("CONSISTENCY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    (first..first + runs).collect()
}

fn long_runs() -> u64 {
    std::env::var("CONSISTENCY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(LONG_RUNS)
}

/// The `--ignored` variant's name.
const LONG_TEST: &str = "every_policy_over_many_seeds";

/// Runs `run(seed)` for every seed, `PARALLEL` at a time, and fails with
/// every violating seed (the first three with their sub-history).
async fn run_seeds<F, Fut>(label: &str, test: &str, seeds: Vec<u64>, run: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Summary, String>> + Send + 'static,
{
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for &seed in &seeds {
        let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
        let fut = run(seed);
        tasks.push((
            seed,
            tokio::spawn(async move {
                let r = fut.await;
                drop(permit);
                r
            }),
        ));
    }
    let mut total = Summary::default();
    let mut failures = Vec::new();
    for (seed, task) in tasks {
        match task.await.expect("a run panicked") {
            Ok(s) => {
                total.ops += s.ops;
                total.failed += s.failed;
                total.reads += s.reads;
            }
            Err(e) => failures.push((seed, e)),
        }
    }
    eprintln!(
        "{label}: {} runs, {} violating; {} operations in the linearizable ones ({} reads answered, {} failed operations); {:.1} s",
        seeds.len(),
        failures.len(),
        total.ops,
        total.reads,
        total.failed,
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let mut msg = format!(
            "{label}: {} of {} seeded runs are not linearizable (seeds {:?}); replay one with CONSISTENCY_SEED=<seed> cargo test --test consistency {test} -- --exact{} --nocapture\n",
            failures.len(),
            seeds.len(),
            failures.iter().map(|f| f.0).collect::<Vec<_>>(),
            if test == LONG_TEST { " --ignored" } else { "" }
        );
        for (seed, e) in failures.iter().take(3) {
            msg.push_str(&format!("\n--- seed {seed} ---\n{e}"));
        }
        panic!("{msg}");
    }
}

/// Checks a recorded history off the async workers; the violation (with
/// the fault log) as the error.
async fn check_recorded(rec: &Recorder, faults: &Mutex<Vec<String>>) -> Result<Summary, String> {
    let history = rec.history();
    let summary = tokio::task::spawn_blocking(move || check(&history).map_err(|v| v.to_string()))
        .await
        .expect("the checker panicked");
    summary.map_err(|v| {
        format!(
            "{v}faults injected (times since the run began):\n  {}\n",
            faults.lock().unwrap().join("\n  ")
        )
    })
}

fn note(log: &Mutex<Vec<String>>, rec: &Recorder, what: String) {
    let t = rec.elapsed().as_secs_f64() * 1e3;
    log.lock().unwrap().push(format!("{t:>9.3} ms  {what}"));
}

// ---------------------------------------------------------------------------
// Managers and backends
// ---------------------------------------------------------------------------

fn faulty_plugin() -> Arc<dyn StoragePlugin> {
    Arc::new(AbiPlugin::new(
        module_of::<FaultyPlugin>(),
        PluginSource::Builtin,
    ))
}

fn local_plugin() -> Arc<dyn StoragePlugin> {
    Arc::new(AbiPlugin::new(
        module_of::<LocalPlugin>(),
        PluginSource::Builtin,
    ))
}

/// A manager with the faulty and local plugins, in-process (the test flips
/// the faulty backends' faults through their shared controls).
fn manager(op_timeout: Duration) -> StorageManager {
    let m = StorageManager::with_registry(StorageRegistry::new());
    m.register_arc(faulty_plugin()).unwrap();
    m.register_arc(local_plugin()).unwrap();
    m.set_op_timeout(op_timeout);
    m
}

/// Adds faulty backend `name` whose control is `id` (unique per test and
/// run), and returns the control.
async fn add_faulty(m: &StorageManager, name: &str, id: &str, priority: u32) -> Arc<Control> {
    m.add_backend(BackendConfig {
        name: name.into(),
        storage_config: StorageConfig::Custom {
            plugin_name: "faulty".into(),
            config: json!({ "name": id }),
        },
        enabled: true,
        priority,
    })
    .await
    .unwrap();
    control(id)
}

async fn add_local(m: &StorageManager, name: &str, path: Option<String>, priority: u32) {
    m.add_backend(BackendConfig {
        name: name.into(),
        storage_config: StorageConfig::Local { path },
        enabled: true,
        priority,
    })
    .await
    .unwrap();
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn heal(c: &Control) {
    c.set_mode(Mode::Ok);
    c.set_delay(Duration::ZERO);
    for op in [FaultOp::Get, FaultOp::Put, FaultOp::Delete, FaultOp::List] {
        c.set_answer_delay(op, Duration::ZERO);
    }
}

/// One random fault on `c` (or a heal), described.
fn random_fault(rng: &mut Rng, c: &Control) -> String {
    match rng.below(8) {
        0 | 1 => {
            heal(c);
            "healed".into()
        }
        2 => {
            c.set_mode(Mode::Unavailable);
            "unavailable".into()
        }
        3 => {
            c.set_mode(Mode::Fail);
            "failing (non-retryable)".into()
        }
        4 => {
            c.set_mode(Mode::Hang);
            "hanging".into()
        }
        5 => {
            c.set_mode(Mode::AppliedThenUnavailable);
            "applies, then reports unavailable".into()
        }
        6 => {
            let d = rng.millis(1, 30);
            c.set_delay(d);
            format!("every op delayed {d:?} before it applies")
        }
        _ => {
            let op = [FaultOp::Get, FaultOp::Put, FaultOp::Delete][rng.below(3) as usize];
            let d = rng.millis(5, 80);
            c.set_answer_delay(op, d);
            format!("{op:?} answers {d:?} after it applied")
        }
    }
}

// ---------------------------------------------------------------------------
// Runs over the faulty plugin
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Kind {
    AlwaysUse,
    FirstAvailable,
    RoundRobin,
    Redundant,
    PreferCache,
}

/// One seeded run: `kind` over faulty backends whose faults a nemesis flips
/// for 400 ms, then 300 ms healed; with `swaps`, an in-memory local backend
/// joins the policy and plugins are hot-swapped during the faults.
async fn faulty_run(
    test: &'static str,
    kind: Kind,
    seed: u64,
    swaps: bool,
) -> Result<Summary, String> {
    let mut rng = Rng::new(seed);
    let m = manager(Duration::from_millis(40));
    let backends: &[&str] = match kind {
        Kind::AlwaysUse => &["a"],
        Kind::PreferCache => &["cache", "primary"],
        _ => &["a", "b", "c"],
    };
    let mut controls = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        // Controls are process-wide: a run with hot swaps must not share
        // one (and its data) with the run of the same policy and seed.
        let swapping = if swaps { "swaps-" } else { "" };
        let id = format!("{test}-{kind:?}-{swapping}{seed}-{b}");
        let c = add_faulty(&m, b, &id, i as u32).await;
        heal(&c);
        controls.push(c);
    }
    let mut list = names(backends);
    if swaps {
        add_local(&m, "mem", None, 9).await;
        list.insert(1, "mem".into());
    }
    m.set_policy(match kind {
        Kind::AlwaysUse => StoragePolicy::AlwaysUse("a".into()),
        Kind::FirstAvailable => StoragePolicy::FirstAvailable(list),
        Kind::RoundRobin => StoragePolicy::RoundRobin(list),
        Kind::Redundant => StoragePolicy::Redundant(list),
        Kind::PreferCache => StoragePolicy::PreferCache {
            cache: "cache".into(),
            primary: "primary".into(),
        },
    });
    let rec = Arc::new(Recorder::new());
    let log = Mutex::new(vec![format!("policy {:?}", m.policy().unwrap())]);
    let start = Instant::now();
    let faults_until = start + Duration::from_millis(400);
    let until = start + Duration::from_millis(700);
    let workload = Workload {
        clients: 5,
        keys: 3,
        ..Workload::default()
    };
    let nemesis = async {
        while Instant::now() < faults_until {
            tokio::time::sleep(rng.millis(10, 50)).await;
            let b = rng.below(controls.len() as u64) as usize;
            let what = random_fault(&mut rng, &controls[b]);
            note(&log, &rec, format!("{}: {what}", backends[b]));
            if swaps && rng.below(3) == 0 {
                let (plugin, which) = if rng.below(2) == 0 {
                    (local_plugin(), "local")
                } else {
                    (faulty_plugin(), "faulty")
                };
                note(&log, &rec, format!("hot swap of the {which} plugin begins"));
                for o in m.swap_plugin(plugin).await {
                    note(
                        &log,
                        &rec,
                        format!(
                            "hot swap of {}: {} (held {:?})",
                            o.backend,
                            match &o.result {
                                Ok(_) => "done".to_string(),
                                Err(e) => format!("failed: {e}"),
                            },
                            o.paused_for
                        ),
                    );
                }
            }
        }
        for (b, c) in controls.iter().enumerate() {
            heal(c);
            note(&log, &rec, format!("{}: healed", backends[b]));
        }
    };
    tokio::join!(workload.run(&m, &rec, seed, until), nemesis);
    check_recorded(&rec, &log).await
}

async fn faulty_runs(test: &'static str, kind: Kind, swaps: bool, first: u64, runs: u64) {
    run_seeds(
        &format!("{kind:?} over faulty backends"),
        test,
        seeds(first, runs),
        move |seed| faulty_run(test, kind, seed, swaps),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_use_is_linearizable_under_faults() {
    faulty_runs(
        "always_use_is_linearizable_under_faults",
        Kind::AlwaysUse,
        false,
        1,
        CI_RUNS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_available_is_linearizable_under_faults() {
    faulty_runs(
        "first_available_is_linearizable_under_faults",
        Kind::FirstAvailable,
        false,
        1,
        CI_RUNS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_linearizable_under_faults() {
    faulty_runs(
        "round_robin_is_linearizable_under_faults",
        Kind::RoundRobin,
        false,
        1,
        CI_RUNS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_is_linearizable_under_faults() {
    faulty_runs(
        "redundant_is_linearizable_under_faults",
        Kind::Redundant,
        false,
        1,
        CI_RUNS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_cache_over_faulty_backends_is_linearizable_under_faults() {
    faulty_runs(
        "prefer_cache_over_faulty_backends_is_linearizable_under_faults",
        Kind::PreferCache,
        false,
        1,
        CI_RUNS,
    )
    .await;
}

/// Hot swaps of the local and faulty plugins mid-run, under faults; the
/// policy cycles over FirstAvailable, RoundRobin and Redundant by seed.
async fn hot_swap_runs(test: &'static str, first: u64, runs: u64) {
    run_seeds(
        "hot swaps mid-run (FirstAvailable / RoundRobin / Redundant by seed)",
        test,
        seeds(first, runs),
        |seed| {
            let kind =
                [Kind::FirstAvailable, Kind::RoundRobin, Kind::Redundant][(seed % 3) as usize];
            faulty_run(test, kind, seed, true)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_mid_run_is_linearizable() {
    hot_swap_runs("hot_swap_mid_run_is_linearizable", 1, CI_RUNS).await;
}

// ---------------------------------------------------------------------------
// PreferCache { cache: a private redis-server, primary: local }
// ---------------------------------------------------------------------------

/// A `redis-server` owned by one run: no persistence, killed on drop; it
/// can be frozen (SIGSTOP), thawed (SIGCONT), killed (SIGKILL) and restarted
/// on the same port.
struct PrivateRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis {
            port,
            dir: TempDir::new("consistency-redis"),
            child: None,
        };
        r.spawn().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test runs its own Redis and needs `redis-server` on PATH ({e}): apt-get install redis-server, or run scripts/services.sh")
            });
        self.child = Some(child);
        let t = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not start within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {pid} failed");
    }

    fn freeze(&self) {
        self.signal("-STOP");
    }

    fn thaw(&self) {
        self.signal("-CONT");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.thaw();
        }
        self.kill();
    }
}

/// The redis plugin, linked in and used through the ABI adapter (the code
/// path of a loaded library; the plugin owns its runtime either way).
/// Loading `libstorage_redis_plugin.so` instead would make `cargo test`
/// and the library's `cargo build` rebuild `storage-redis` in turn.
fn redis_plugin() -> Arc<dyn StoragePlugin> {
    Arc::new(AbiPlugin::new(
        module_of::<storage_redis::RedisPlugin>(),
        PluginSource::Builtin,
    ))
}

/// PreferCache { cache: redis, primary: local } with `op_timeout`;
/// the primary is durable (on disk, in `dir`) when `durable`.
async fn redis_manager(
    redis: &PrivateRedis,
    prefix: &str,
    op_timeout: Duration,
    durable: Option<&TempDir>,
) -> StorageManager {
    let m = manager(op_timeout);
    m.register_arc(redis_plugin()).unwrap();
    m.add_backend(BackendConfig {
        name: "redis".into(),
        storage_config: StorageConfig::Custom {
            plugin_name: "redis".into(),
            config: json!({
                "url": redis.url(),
                "key_prefix": prefix,
                "timeout_ms": op_timeout.as_millis() as u64,
                "max_retries": 1,
            }),
        },
        enabled: true,
        priority: 0,
    })
    .await
    .unwrap();
    add_local(
        &m,
        "primary",
        durable.map(|d| d.path().display().to_string()),
        1,
    )
    .await;
    m.set_policy(StoragePolicy::PreferCache {
        cache: "redis".into(),
        primary: "primary".into(),
    });
    m
}

/// One seeded run: 1 to 3 faults of the cache (frozen 150-400 ms, or killed
/// and restarted after 50-200 ms) in the first 1.2 s, then 1.3 s healed
/// (longer than the breaker's 1 s cooldown, so the cache serves again).
async fn redis_run(seed: u64) -> Result<Summary, String> {
    let mut rng = Rng::new(seed);
    let mut redis = PrivateRedis::start().await;
    let dir = TempDir::new("consistency-primary");
    let durable = seed % 2 == 1;
    let m = redis_manager(
        &redis,
        &format!("h{seed}:"),
        Duration::from_millis(100),
        durable.then_some(&dir),
    )
    .await;
    let rec = Arc::new(Recorder::new());
    let log = Mutex::new(vec![format!(
        "PreferCache {{ cache: redis (private redis-server), primary: local {} }}",
        if durable { "durable" } else { "memory" }
    )]);
    let start = Instant::now();
    let until = start + Duration::from_millis(2500);
    let workload = Workload {
        clients: 5,
        keys: 4,
        max_think: Duration::from_millis(6),
        ..Workload::default()
    };
    let nemesis = async {
        let events = 1 + rng.below(3);
        for _ in 0..events {
            tokio::time::sleep(rng.millis(50, 150)).await;
            if rng.below(3) < 2 {
                let d = rng.millis(150, 400);
                note(&log, &rec, format!("redis frozen (SIGSTOP) for {d:?}"));
                redis.freeze();
                tokio::time::sleep(d).await;
                redis.thaw();
                note(&log, &rec, "redis thawed (SIGCONT)".into());
            } else {
                let d = rng.millis(50, 200);
                note(
                    &log,
                    &rec,
                    format!("redis killed (SIGKILL), restarted after {d:?}"),
                );
                redis.kill();
                tokio::time::sleep(d).await;
                redis.spawn().await;
                note(&log, &rec, "redis restarted (empty)".into());
            }
        }
    };
    tokio::join!(workload.run(&m, &rec, seed, until), nemesis);
    let r = check_recorded(&rec, &log).await;
    m.shutdown().await;
    drop(redis);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_cache_redis_is_linearizable_through_freezes_and_kills() {
    run_seeds(
        "PreferCache { redis, local } with SIGSTOP/SIGKILL",
        "prefer_cache_redis_is_linearizable_through_freezes_and_kills",
        seeds(1, CI_RUNS),
        redis_run,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Longer variant
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 200 seeded runs per policy (CONSISTENCY_RUNS=N to change); run with --ignored"]
async fn every_policy_over_many_seeds() {
    let n = long_runs();
    for kind in [
        Kind::AlwaysUse,
        Kind::FirstAvailable,
        Kind::RoundRobin,
        Kind::Redundant,
        Kind::PreferCache,
    ] {
        faulty_runs(LONG_TEST, kind, false, 1000, n).await;
    }
    hot_swap_runs(LONG_TEST, 1000, n).await;
    run_seeds(
        "PreferCache { redis, local } with SIGSTOP/SIGKILL",
        LONG_TEST,
        seeds(1000, n),
        redis_run,
    )
    .await;
}

// ---------------------------------------------------------------------------
// One regression test per reported bug (deterministic)
// ---------------------------------------------------------------------------

/// Fails with the offending sub-history when `rec`'s history is not
/// linearizable.
fn assert_linearizable(rec: &Recorder, what: &str) {
    if let Err(v) = check(&rec.history()) {
        panic!("{what}:\n{v}");
    }
}

/// PreferCache, Redis frozen while writes go on: the breaker skips the
/// cache, which comes back holding the old values. No later read may
/// return one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_cache_never_serves_an_old_value_after_a_frozen_redis() {
    let redis = PrivateRedis::start().await;
    let m = redis_manager(&redis, "frozen:", Duration::from_millis(100), None).await;
    let rec = Recorder::new();
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    for k in &keys {
        assert_eq!(
            rec.put(&m, 0, k, format!("old-{k}").into_bytes()).await,
            Ret::Done
        );
        rec.get(&m, 1, k).await; // cached
    }
    redis.freeze();
    for k in &keys {
        // The primary acknowledges; the cache cannot be told.
        assert_eq!(
            rec.put(&m, 0, k, format!("new-{k}").into_bytes()).await,
            Ret::Done
        );
    }
    redis.thaw();
    // Past the breaker's cooldown, the cache is asked again.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1600) {
        for k in &keys {
            rec.get(&m, 1, k).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_linearizable(
        &rec,
        "PreferCache after Redis was frozen (SIGSTOP) during writes",
    );
}

/// PreferCache, the cache's writes failing (a faulty cache, unavailable)
/// while writes go on, then back: no later read returns the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_cache_never_serves_an_old_value_after_cache_write_failures() {
    let m = manager(Duration::from_millis(100));
    let cache = add_faulty(&m, "cache", "regress-cache-down-cache", 0).await;
    add_faulty(&m, "primary", "regress-cache-down-primary", 1).await;
    m.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    let rec = Recorder::new();
    rec.put(&m, 0, "k", b"old".to_vec()).await;
    assert_eq!(rec.get(&m, 1, "k").await, Ret::Value(Some(b"old".to_vec())));
    cache.set_mode(Mode::Unavailable);
    assert_eq!(rec.put(&m, 0, "k", b"new".to_vec()).await, Ret::Done);
    cache.set_mode(Mode::Ok);
    for _ in 0..5 {
        rec.get(&m, 1, "k").await;
    }
    assert_linearizable(
        &rec,
        "PreferCache after the cache refused a write and its invalidation",
    );
}

/// PreferCache fill race: a get misses the cache and reads the old value
/// from a slow primary; a put of a new value lands (primary, then cache);
/// the get's fill then writes the old value into the cache. No later read
/// may return it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_cache_fill_never_resurrects_an_old_value() {
    let m = manager(Duration::from_secs(5));
    let cache = add_faulty(&m, "cache", "regress-fill-cache", 0).await;
    let primary = add_faulty(&m, "primary", "regress-fill-primary", 1).await;
    m.set_policy(StoragePolicy::PreferCache {
        cache: "cache".into(),
        primary: "primary".into(),
    });
    let rec = Recorder::new();
    // "old" in the primary only (the cache refuses it).
    cache.set_mode(Mode::Unavailable);
    rec.put(&m, 0, "k", b"old".to_vec()).await;
    cache.set_mode(Mode::Ok);
    // The reader's primary get reads "old", then answers 300 ms later.
    primary.set_answer_delay(FaultOp::Get, Duration::from_millis(300));
    let reader = async { rec.get(&m, 1, "k").await };
    let writer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        primary.set_answer_delay(FaultOp::Get, Duration::ZERO);
        rec.put(&m, 0, "k", b"new".to_vec()).await
    };
    let (_, put) = tokio::join!(reader, writer);
    assert_eq!(put, Ret::Done);
    for _ in 0..5 {
        rec.get(&m, 2, "k").await;
    }
    assert_linearizable(&rec, "PreferCache fill racing a put");
}

/// RoundRobin: a read right after an acknowledged put returns that value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_reads_the_write_just_acknowledged() {
    let m = manager(Duration::from_millis(300));
    for b in ["a", "b", "c"] {
        add_faulty(&m, b, &format!("regress-rr-{b}"), 0).await;
    }
    m.set_policy(StoragePolicy::RoundRobin(names(&["a", "b", "c"])));
    let rec = Recorder::new();
    for i in 0..30 {
        let k = format!("k{}", i % 5);
        let v = format!("v{i}").into_bytes();
        assert_eq!(rec.put(&m, 0, &k, v).await, Ret::Done);
        rec.get(&m, 0, &k).await;
    }
    assert_linearizable(&rec, "RoundRobin, a get right after each put");
}

/// FirstAvailable: a write acknowledged by the first backend, which then
/// becomes unavailable: the read from the second must not answer "absent"
/// (an unavailable error is acceptable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_available_failover_never_loses_an_acknowledged_write() {
    let m = manager(Duration::from_millis(300));
    let a = add_faulty(&m, "a", "regress-fa-a", 0).await;
    add_faulty(&m, "b", "regress-fa-b", 1).await;
    m.set_policy(StoragePolicy::FirstAvailable(names(&["a", "b"])));
    let rec = Recorder::new();
    assert_eq!(rec.put(&m, 0, "k", b"v1".to_vec()).await, Ret::Done);
    a.set_mode(Mode::Unavailable);
    rec.get(&m, 1, "k").await;
    assert_linearizable(&rec, "FirstAvailable failing over");
}

/// FirstAvailable: a write that failed over to the second backend was
/// acknowledged; when the first comes back, a read must not return the
/// older value it still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_available_never_reads_an_older_value_after_failing_back() {
    let m = manager(Duration::from_millis(300));
    let a = add_faulty(&m, "a", "regress-fa-back-a", 0).await;
    add_faulty(&m, "b", "regress-fa-back-b", 1).await;
    m.set_policy(StoragePolicy::FirstAvailable(names(&["a", "b"])));
    let rec = Recorder::new();
    assert_eq!(rec.put(&m, 0, "k", b"v1".to_vec()).await, Ret::Done);
    a.set_mode(Mode::Unavailable);
    assert_eq!(rec.put(&m, 0, "k", b"v2".to_vec()).await, Ret::Done); // on b
    a.set_mode(Mode::Ok);
    rec.get(&m, 1, "k").await;
    assert_linearizable(&rec, "FirstAvailable failing back to the first backend");
}

/// Redundant: a delete that reached only one replica (a partial write, so
/// indeterminate) was seen (a read answered absent); a read that falls back
/// after the miss must not bring the old value back from the replica that
/// missed the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_fallback_after_a_miss_never_returns_an_older_value() {
    let m = manager(Duration::from_millis(300));
    add_faulty(&m, "a", "regress-red-miss-a", 0).await;
    let b = add_faulty(&m, "b", "regress-red-miss-b", 1).await;
    m.set_policy(StoragePolicy::Redundant(names(&["a", "b"])));
    let rec = Recorder::new();
    assert_eq!(rec.put(&m, 0, "k", b"v1".to_vec()).await, Ret::Done);
    b.set_mode(Mode::Unavailable);
    rec.delete(&m, 0, "k").await; // a: deleted; b: missed it
    rec.get(&m, 1, "k").await;
    b.set_mode(Mode::Ok);
    rec.get(&m, 1, "k").await;
    assert_linearizable(&rec, "Redundant read falling back after a miss");
}

/// Redundant: a put that reached only the first replica was read back;
/// when that replica is unavailable, the fallback read must not return the
/// older value from the replica that missed the put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_fallback_after_an_error_never_returns_an_older_value() {
    let m = manager(Duration::from_millis(300));
    let a = add_faulty(&m, "a", "regress-red-err-a", 0).await;
    let b = add_faulty(&m, "b", "regress-red-err-b", 1).await;
    m.set_policy(StoragePolicy::Redundant(names(&["a", "b"])));
    let rec = Recorder::new();
    assert_eq!(rec.put(&m, 0, "k", b"v1".to_vec()).await, Ret::Done);
    b.set_mode(Mode::Unavailable);
    rec.put(&m, 0, "k", b"v2".to_vec()).await; // a: v2; b: missed it
    rec.get(&m, 1, "k").await;
    b.set_mode(Mode::Ok);
    a.set_mode(Mode::Unavailable);
    rec.get(&m, 1, "k").await;
    assert_linearizable(&rec, "Redundant read falling back after an error");
}
