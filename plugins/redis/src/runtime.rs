//! The tokio runtime the plugin owns.
//!
//! Built as a cdylib, the plugin has its own copy of tokio's statics: the
//! host's runtime is invisible in here, and the redis crate's I/O and timers
//! need a runtime. So the plugin keeps one multi-thread runtime for the life
//! of the process: its workers drive the connection (socket I/O, parsing,
//! timers), and the host only ever polls runtime-agnostic futures.
//!
//! Two ways to run an operation:
//! - [`spawn`]: the whole operation becomes a task on the plugin's runtime
//!   and the host awaits its join handle. For heavy or rare work (creating a
//!   backend, listing keys: sorting many keys must not run on a host thread).
//! - [`inline`]: the host's own poll drives the operation, with the plugin's
//!   runtime entered for the duration of each poll so that timers and
//!   reconnects land on it. For get/put/delete: their own work is a few
//!   microseconds (build a command, queue it on the connection, wait for the
//!   answer), and skipping the task spawn and the extra cross-thread wake-up
//!   per operation is what keeps 32 concurrent operations within reach of a
//!   raw client (see BENCHMARKS.md, "Redis"). Nothing blocks: the socket
//!   and the parser live in the connection's task on the plugin's workers.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use storage_plugin_api::{Error, ErrorKind};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Worker threads. One drives a connection's socket and parser, which is
/// the whole of the plugin's steady work; a second helps while one is busy
/// listing or reconnecting. More only add idle threads to wake up.
const MAX_WORKERS: usize = 2;

fn runtime() -> Result<&'static Runtime, Error> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, MAX_WORKERS);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("storage-redis")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Error::other(format!(
                "redis: cannot start the plugin's tokio runtime: {e}"
            ))
        })
}

/// Polls `fut` on the caller's thread with the plugin's runtime entered
/// during each poll. Dropping the returned future drops the operation.
pub(crate) async fn inline<T, F>(fut: F) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let rt = runtime()?;
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        // Entering only sets the runtime handle that tokio's constructors
        // (sleep, spawn, socket registration) look up; it does not start a
        // runtime, so it is allowed on any thread, a host worker included.
        let _entered = rt.enter();
        fut.as_mut().poll(cx)
    })
    .await
}

/// Runs `fut` as a task on the plugin's runtime and waits for it from any
/// executor.
///
/// Dropping the returned future (the host timed out or gave up) aborts the
/// task, so abandoned operations do not pile up on the plugin's runtime.
pub(crate) async fn spawn<T, F>(what: &'static str, fut: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    let handle = runtime()?.spawn(fut);
    match (AbortOnDrop(handle)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(Error::new(
            ErrorKind::Panicked,
            format!(
                "redis: {what} panicked on the plugin's runtime: {}",
                storage_plugin_api::panic_message(&*e.into_panic())
            ),
        )),
        Err(e) => Err(Error::other(format!("redis: {what} was cancelled: {e}"))),
    }
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        // A no-op once the task has finished.
        self.0.abort();
    }
}
