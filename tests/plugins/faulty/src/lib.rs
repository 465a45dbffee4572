//! A fault-injecting backend for tests: an in-memory store whose behaviour a
//! test changes at runtime (fail as unavailable, fail otherwise, delay, panic,
//! hang, apply a write and then report it failed, answer late), per backend,
//! through [`control`].
//!
//! Two kinds of delay: [`Control::set_delay`] delays every operation *before*
//! it takes effect (a slow request); [`Control::set_answer_delay`] delays the
//! answer of one kind of operation *after* it took effect (a slow reply: a get
//! returns the value it read before the delay, a put is applied before it).
//!
//! Config: `{"name": "a", "panic_on_create": false, "panic_on": ["get"], "delay_ms": 0}`.
//! `name` picks the [`Control`] shared with the test (in-process use); the
//! other fields set faults from the configuration (for the library build,
//! whose statics the test cannot reach).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use storage_plugin_api::{Backend, Error, Plugin};

/// What the backend does on its next operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Serve normally.
    Ok = 0,
    /// Fail every operation as unavailable.
    Unavailable = 1,
    /// Fail every operation with a non-retryable error.
    Fail = 2,
    /// Panic in every operation.
    Panic = 3,
    /// Never answer.
    Hang = 4,
    /// Apply the operation (a put or delete takes effect), then fail it as
    /// unavailable: the write the client was told failed is in the store.
    AppliedThenUnavailable = 5,
}

/// An operation of the backend, for per-operation faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Op {
    /// `get`.
    Get = 0,
    /// `put`.
    Put = 1,
    /// `delete`.
    Delete = 2,
    /// `list` (and `list_page`).
    List = 3,
}

/// The shared state of one faulty backend: its data and its faults.
#[derive(Default)]
pub struct Control {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    answer_delay_ms: [AtomicU64; 4],
    calls: AtomicU64,
    hanging: AtomicU64,
    data: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Control {
    /// Sets the behaviour of the next operations.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, SeqCst);
    }
    /// Delays every operation by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, SeqCst);
    }
    /// Delays the answer of every `op` by `d` after the operation took effect
    /// (zero: no delay). A host that gives up waiting (its timeout) leaves the
    /// operation applied.
    pub fn set_answer_delay(&self, op: Op, d: Duration) {
        self.answer_delay_ms[op as usize].store(d.as_millis() as u64, SeqCst);
    }
    /// Operations received so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(SeqCst)
    }
    /// Operations hanging right now (a cancelled one is dropped, and leaves).
    pub fn hanging(&self) -> u64 {
        self.hanging.load(SeqCst)
    }
    /// The stored value of `key`, bypassing faults.
    pub fn peek(&self, key: &str) -> Option<Vec<u8>> {
        self.data.lock().unwrap().get(key).cloned()
    }
    /// Writes directly, bypassing faults.
    pub fn poke(&self, key: &str, value: &[u8]) {
        self.data.lock().unwrap().insert(key.into(), value.to_vec());
    }
    /// The number of stored keys.
    pub fn len(&self) -> usize {
        self.data.lock().unwrap().len()
    }
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn mode(&self) -> Mode {
        match self.mode.load(SeqCst) {
            1 => Mode::Unavailable,
            2 => Mode::Fail,
            3 => Mode::Panic,
            4 => Mode::Hang,
            5 => Mode::AppliedThenUnavailable,
            _ => Mode::Ok,
        }
    }
}

/// The control of the faulty backend named `name` (created on first use).
pub fn control(name: &str) -> Arc<Control> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<Control>>>> = OnceLock::new();
    ALL.get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Configuration of a faulty backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which [`Control`] to use.
    pub name: String,
    /// Panic inside `create`.
    #[serde(default)]
    pub panic_on_create: bool,
    /// Operations (`get`, `put`, `delete`, `list`) that panic.
    #[serde(default)]
    pub panic_on: Vec<String>,
}

/// The plugin.
pub struct FaultyPlugin;

impl Plugin for FaultyPlugin {
    type Config = Config;
    type Backend = FaultyBackend;
    const NAME: &'static str = "faulty";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test fixture: in-memory store with injectable faults";

    async fn create(config: Config) -> Result<FaultyBackend, Error> {
        if config.panic_on_create {
            panic!("faulty: asked to panic in create");
        }
        Ok(FaultyBackend {
            control: control(&config.name),
            panic_on: config.panic_on,
        })
    }
}

/// A backend whose behaviour its [`Control`] decides.
pub struct FaultyBackend {
    control: Arc<Control>,
    panic_on: Vec<String>,
}

impl FaultyBackend {
    async fn enter(&self, op: &str) -> Result<(), Error> {
        self.control.calls.fetch_add(1, SeqCst);
        if self.panic_on.iter().any(|p| p == op) {
            panic!("faulty: asked to panic in {op}");
        }
        let delay = self.control.delay_ms.load(SeqCst);
        if delay > 0 {
            sleep(Duration::from_millis(delay)).await;
        }
        match self.control.mode() {
            Mode::Ok | Mode::AppliedThenUnavailable => Ok(()),
            Mode::Unavailable => Err(Error::unavailable(format!(
                "faulty: {op} refused (injected)"
            ))),
            Mode::Fail => Err(Error::other(format!("faulty: {op} failed (injected)"))),
            Mode::Panic => panic!("faulty: injected panic in {op}"),
            Mode::Hang => {
                // Counted while pending; the guard leaves when the host drops
                // the operation (a timeout), proving nothing is left behind.
                struct Hanging<'a>(&'a AtomicU64);
                impl Drop for Hanging<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, SeqCst);
                    }
                }
                self.control.hanging.fetch_add(1, SeqCst);
                let _guard = Hanging(&self.control.hanging);
                std::future::pending().await
            }
        }
    }
}

impl FaultyBackend {
    /// After the operation took effect: the answer delay of `op`, then the
    /// failure of [`Mode::AppliedThenUnavailable`].
    async fn leave(&self, op: Op, name: &str) -> Result<(), Error> {
        let delay = self.control.answer_delay_ms[op as usize].load(SeqCst);
        if delay > 0 {
            sleep(Duration::from_millis(delay)).await;
        }
        if self.control.mode() == Mode::AppliedThenUnavailable {
            return Err(Error::unavailable(format!(
                "faulty: {name} applied, then reported unavailable (injected)"
            )));
        }
        Ok(())
    }
}

/// A runtime-free sleep: a thread wakes the task (plugins cannot use the
/// host's timer).
async fn sleep(d: Duration) {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct Sleep {
        done: Arc<std::sync::atomic::AtomicBool>,
        started: bool,
        d: Duration,
    }
    impl Future for Sleep {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.done.load(SeqCst) {
                return Poll::Ready(());
            }
            if !self.started {
                self.started = true;
                let done = Arc::clone(&self.done);
                let waker = cx.waker().clone();
                let d = self.d;
                std::thread::spawn(move || {
                    std::thread::sleep(d);
                    done.store(true, SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }
    Sleep {
        done: Arc::default(),
        started: false,
        d,
    }
    .await
}

impl Backend for FaultyBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.enter("get").await?;
        let value = self.control.peek(key);
        self.leave(Op::Get, "get").await?;
        Ok(value)
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.enter("put").await?;
        self.control.data.lock().unwrap().insert(key.into(), value);
        self.leave(Op::Put, "put").await
    }
    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.enter("delete").await?;
        self.control.data.lock().unwrap().remove(key);
        self.leave(Op::Delete, "delete").await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.enter("list").await?;
        let keys = {
            let data = self.control.data.lock().unwrap();
            data.keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        };
        self.leave(Op::List, "list").await?;
        Ok(keys)
    }
}

storage_plugin_api::export_plugin!(FaultyPlugin);
