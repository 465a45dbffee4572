//! The tokio runtime this plugin owns.
//!
//! reqwest needs tokio, and a plugin loaded from a library has its own copy of
//! tokio's statics: the host's runtime is invisible from inside it. So the
//! plugin runs a small multi-thread runtime of its own (one per process, or
//! rather per loaded copy of the library), spawns every operation onto it and
//! hands the host a future that only waits for the task. That future is
//! runtime-agnostic: whatever executor polls it gets woken by the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use storage_plugin_api::{Error, ErrorKind, panic_message};
use tokio::runtime::{Builder, Runtime};
use tokio::task::{JoinError, JoinHandle};

/// Worker threads: enough to overlap TLS and JSON work with the host's own
/// threads, few enough not to crowd a small machine.
const MAX_WORKERS: usize = 4;

/// The shared runtime, built on first use. Never dropped: a plugin library is
/// never unloaded, and dropping a runtime from async code would panic.
pub(crate) fn runtime() -> Result<&'static Runtime, Error> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, MAX_WORKERS);
            Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("storage-supabase")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Error::unavailable(format!("supabase: cannot start the plugin's runtime: {e}"))
        })
}

/// Runs `fut` on the plugin's runtime and waits for it from any executor.
///
/// If the caller gives up (drops the returned future, e.g. on the host's
/// operation timeout), the task is aborted: its request stops instead of
/// running on unobserved.
pub(crate) async fn run<T, F>(op: &'static str, fut: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    let task = AbortOnDrop(runtime()?.spawn(fut));
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Error::new(
            ErrorKind::Panicked,
            format!(
                "supabase: {op} panicked: {}",
                panic_message(&*e.into_panic())
            ),
        )),
        Err(_) => Err(Error::unavailable(format!(
            "supabase: {op} was cancelled because the plugin's runtime is shutting down"
        ))),
    }
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        // A no-op when the task has finished.
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn runs_without_a_caller_runtime() {
        let r = futures_executor_block_on(run("get", async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(7)
        }));
        assert_eq!(r.unwrap(), 7);
    }

    #[test]
    fn panics_become_errors() {
        let r: Result<(), Error> = futures_executor_block_on(run("put", async { panic!("boom") }));
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked);
        assert!(e.message().contains("put panicked: boom"), "{e}");
    }

    #[test]
    fn dropping_the_future_aborts_the_task() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let fut = run("get", async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = tx.send(());
            Ok(())
        });
        // Poll once so the task is spawned, then drop it.
        let mut fut = Box::pin(fut);
        let waker = std::task::Waker::noop();
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(fut);
        // The sender is dropped with the aborted task.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }

    /// A minimal executor: the host polls from its own runtime, which these
    /// tests stand in for without using tokio.
    fn futures_executor_block_on<F: Future>(fut: F) -> F::Output {
        use std::sync::Arc;
        use std::task::Wake;
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
