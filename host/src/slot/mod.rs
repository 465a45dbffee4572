//! One backend in a manager: its configuration, its current instance (which
//! a hot swap replaces), its gate, metrics and health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

mod gate;

use crate::config::BackendConfig;
use crate::health::{Breaker, Health};
use crate::metrics::BackendMetrics;
use crate::plugin::StoragePlugin;
use crate::storage::{KeyPage, Storage, StorageError};
use gate::Gate;

/// A live backend instance and the plugin that made it.
pub(crate) struct Instance {
    pub(crate) storage: Box<dyn Storage + Send + Sync>,
    pub(crate) plugin: Arc<dyn StoragePlugin>,
}

pub(crate) struct Slot {
    pub(crate) config: BackendConfig,
    pub(crate) enabled: AtomicBool,
    pub(crate) instance: ArcSwap<Instance>,
    pub(crate) gate: Gate,
    pub(crate) metrics: BackendMetrics,
    pub(crate) breaker: Breaker,
}

/// What a backend is asked to do.
pub(crate) enum Op<'a> {
    Get(&'a str),
    Put(&'a str, Vec<u8>),
    Delete(&'a str),
    List(&'a str),
    ListPage(&'a str, Option<&'a str>, usize),
}

/// What a backend answered.
pub(crate) enum Out {
    Value(Option<Vec<u8>>),
    Done,
    Keys(Vec<String>),
    Page(KeyPage),
}

impl Slot {
    pub(crate) fn new(config: BackendConfig, instance: Instance) -> Self {
        Slot {
            enabled: AtomicBool::new(config.enabled),
            config,
            instance: ArcSwap::from_pointee(instance),
            gate: Gate::default(),
            metrics: BackendMetrics::default(),
            breaker: Breaker::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    pub(crate) fn health(&self) -> Health {
        self.breaker.health()
    }

    /// Runs `op` on the current instance, bounded by `timeout`, recording
    /// metrics and health.
    pub(crate) async fn run(&self, op: Op<'_>, timeout: Duration) -> Result<Out, StorageError> {
        let _pass = self.gate.enter().await;
        let instance = self.instance.load();
        let storage = &instance.storage;
        let start = Instant::now();
        let fut = async {
            match op {
                Op::Get(k) => storage.get(k).await.map(Out::Value),
                Op::Put(k, v) => storage.put(k, v).await.map(|()| Out::Done),
                Op::Delete(k) => storage.delete(k).await.map(|()| Out::Done),
                Op::List(p) => storage.list(p).await.map(Out::Keys),
                Op::ListPage(p, after, limit) => {
                    storage.list_page(p, after, limit).await.map(Out::Page)
                }
            }
        };
        // Most operations on local backends are ready at the first poll:
        // only arm the timer (which touches the runtime's shared timer state)
        // for one that is not.
        let mut fut = std::pin::pin!(fut);
        let result = match futures_util::poll!(fut.as_mut()) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(StorageError::Timeout(timeout)),
            },
        };
        self.metrics.record(start.elapsed(), result.is_ok());
        match &result {
            Ok(_) => self.breaker.on_success(),
            Err(e) if e.is_unavailable() => {
                if self.breaker.on_unavailable() {
                    tracing::warn!(backend = %self.name(), error = %e, "backend keeps failing; taken out of routing for a while");
                }
            }
            Err(_) => {}
        }
        result
    }

    pub(crate) async fn get(
        &self,
        key: &str,
        t: Duration,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match self.run(Op::Get(key), t).await? {
            Out::Value(v) => Ok(v),
            _ => unreachable!("get answers a value"),
        }
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        t: Duration,
    ) -> Result<(), StorageError> {
        self.run(Op::Put(key, value), t).await.map(|_| ())
    }

    pub(crate) async fn delete(&self, key: &str, t: Duration) -> Result<(), StorageError> {
        self.run(Op::Delete(key), t).await.map(|_| ())
    }

    pub(crate) async fn list(
        &self,
        prefix: &str,
        t: Duration,
    ) -> Result<Vec<String>, StorageError> {
        match self.run(Op::List(prefix), t).await? {
            Out::Keys(k) => Ok(k),
            _ => unreachable!("list answers keys"),
        }
    }

    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        t: Duration,
    ) -> Result<KeyPage, StorageError> {
        match self.run(Op::ListPage(prefix, after, limit), t).await? {
            Out::Page(p) => Ok(p),
            _ => unreachable!("list_page answers a page"),
        }
    }
}
