//! The [`StorageManager`]: backends by name, routed by a policy, measured.
//!
//! The manager owns the state (backends, policy, metrics, consistency) and
//! executes; `policy` decides where each operation goes and calls the
//! backends' slots. Nothing below reaches back up here.

mod repair;
mod swap;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

pub use crate::consistency::{LOCK_STRIPES, MAX_STALE_KEYS};
pub use repair::RepairReport;
pub use swap::SwapOutcome;

use crate::config::BackendConfig;
use crate::consistency::Consistency;
use crate::error::ManagerError;
use crate::health::Health;
use crate::loader::LoadReport;
use crate::metrics::{ConsistencyMetrics, ManagerMetrics, StorageMetrics};
use crate::plugin::{PluginError, PluginInfo, StoragePlugin};
use crate::policy::{self, Backends, Ctx, Req, StoragePolicy};
use crate::registry::StorageRegistry;
use crate::slot::{Instance, Out, Slot};
use crate::storage::KeyPage;

/// The most keys one [`StorageManager::list_page`] returns: a page is held
/// in memory whole (and, over the HTTP API, sent as one response).
pub const MAX_LIST_PAGE: usize = 10_000;

/// The default bound on one backend operation.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Routes get/put/delete/list over backends created by plugins.
///
/// Every method takes `&self`; the manager is cheap to clone (an `Arc`) and
/// safe to share across tasks. Operations never hold a lock across an await:
/// backends and the policy are read through atomically swappable pointers,
/// which is also what lets backends be hot-swapped under traffic.
///
/// ```
/// // Whoever assembles the program links the built-ins (the facade does).
/// storage_host::builtin_plugin!(storage_local::LocalPlugin);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use storage_host::{BackendConfig, StorageConfig, StorageManager};
///
/// let manager = StorageManager::new();
/// manager.add_backend(BackendConfig {
///     name: "mem".into(),
///     storage_config: StorageConfig::Local { path: None },
///     enabled: true,
///     priority: 1,
/// }).await?;
/// manager.put("k", b"v".to_vec()).await?;
/// assert_eq!(manager.get("k").await?, Some(b"v".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StorageManager {
    inner: Arc<Inner>,
}

struct Inner {
    registry: RwLock<StorageRegistry>,
    backends: ArcSwap<Backends>,
    policy: ArcSwapOption<StoragePolicy>,
    metrics: ManagerMetrics,
    round_robin: AtomicUsize,
    op_timeout_ms: AtomicU64,
    /// Serializes changes to the set of backends (add, remove, swap).
    admin: tokio::sync::Mutex<()>,
    /// Stale keys, per-key write order, repair bookkeeping.
    cons: Consistency,
    /// The background repair task, once started.
    repair_worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the repair worker notice that the manager is gone.
        self.cons.wake.notify_one();
    }
}

/// The state of one backend, from [`StorageManager::list_backends`].
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    /// The backend's name.
    pub name: String,
    /// The plugin serving it.
    pub plugin: String,
    /// That plugin's version (changes on a hot swap).
    pub plugin_version: String,
    /// Whether it receives operations.
    pub enabled: bool,
    /// Its priority (lower first).
    pub priority: u32,
    /// Its health as routing sees it.
    pub health: Health,
}

impl Default for StorageManager {
    fn default() -> Self {
        Self::new()
    }
}

impl StorageManager {
    /// A manager with the built-in plugins ([`StorageRegistry::with_defaults`]).
    pub fn new() -> Self {
        Self::with_registry(StorageRegistry::with_defaults())
    }

    /// A manager using `registry`'s plugins.
    pub fn with_registry(registry: StorageRegistry) -> Self {
        StorageManager {
            inner: Arc::new(Inner {
                registry: RwLock::new(registry),
                backends: ArcSwap::from_pointee(Backends::default()),
                policy: ArcSwapOption::empty(),
                metrics: ManagerMetrics::default(),
                round_robin: AtomicUsize::new(0),
                op_timeout_ms: AtomicU64::new(DEFAULT_OP_TIMEOUT.as_millis() as u64),
                admin: tokio::sync::Mutex::new(()),
                cons: Consistency::default(),
                repair_worker: Mutex::new(None),
            }),
        }
    }

    fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, StorageRegistry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn registry_write(&self) -> std::sync::RwLockWriteGuard<'_, StorageRegistry> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an in-process plugin.
    pub fn register_plugin(&self, plugin: Box<dyn StoragePlugin>) -> Result<(), PluginError> {
        self.registry_write().register_plugin(plugin)
    }

    /// Registers a shared plugin (e.g. one loaded with [`loader::load_plugin`](crate::loader::load_plugin)).
    pub fn register_arc(&self, plugin: Arc<dyn StoragePlugin>) -> Result<(), PluginError> {
        self.registry_write().register_arc(plugin)
    }

    /// Loads the plugin library at `path` and registers it.
    pub fn load_plugin(&self, path: impl AsRef<Path>) -> Result<PluginInfo, PluginError> {
        self.registry_write().load_plugin(path)
    }

    /// Loads every plugin library in `dir`; the report says what happened to each file.
    pub fn load_plugins_dir(&self, dir: impl AsRef<Path>) -> Result<LoadReport, PluginError> {
        self.registry_write().load_dir(dir)
    }

    /// The registered plugins.
    pub fn list_plugins(&self) -> Vec<PluginInfo> {
        self.registry_read().list_plugins()
    }

    /// The plugin registered under `name`.
    pub fn get_plugin(&self, name: &str) -> Option<Arc<dyn StoragePlugin>> {
        self.registry_read().get_plugin(name)
    }

    /// Removes a plugin from the registry; backends created from it keep serving.
    pub fn unregister_plugin(&self, name: &str) -> Result<Arc<dyn StoragePlugin>, PluginError> {
        self.registry_write().unregister_plugin(name)
    }

    /// Creates a backend with the plugin its configuration names and adds it.
    pub async fn add_backend(&self, config: BackendConfig) -> Result<(), ManagerError> {
        let _admin = self.inner.admin.lock().await;
        if self
            .inner
            .backends
            .load()
            .by_name
            .contains_key(&config.name)
        {
            return Err(ManagerError::BackendAlreadyExists(config.name));
        }
        let plugin_name = config.storage_config.plugin_name().to_string();
        let plugin = self
            .get_plugin(&plugin_name)
            .ok_or(PluginError::PluginNotFound(plugin_name))?;
        plugin.validate_config(&config.storage_config)?;
        let storage = plugin.create(&config.storage_config).await?;
        tracing::info!(backend = %config.name, plugin = plugin.name(), version = plugin.version(), config = ?config.storage_config, "backend added");
        let slot = Arc::new(Slot::new(config, Instance { storage, plugin }));
        self.update_backends(|map| {
            map.insert(slot.name().to_string(), slot);
        });
        Ok(())
    }

    /// Removes a backend: waits for its operations in flight, then shuts it down.
    pub async fn remove_backend(&self, name: &str) -> Result<(), ManagerError> {
        let _admin = self.inner.admin.lock().await;
        let slot = self
            .inner
            .backends
            .load()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ManagerError::BackendNotFound(name.to_string()))?;
        self.update_backends(|map| {
            map.remove(name);
        });
        self.inner.cons.forget_backend(name);
        slot.gate.pause_and_drain().await;
        if let Err(e) = slot.instance.load().storage.shutdown().await {
            tracing::warn!(backend = %name, error = %e, "backend shutdown failed");
        }
        slot.gate.resume();
        tracing::info!(backend = %name, "backend removed");
        Ok(())
    }

    fn update_backends(&self, f: impl FnOnce(&mut HashMap<String, Arc<Slot>>)) {
        let mut map = self.inner.backends.load().by_name.clone();
        f(&mut map);
        self.inner.backends.store(Arc::new(Backends::new(map)));
    }

    /// Enables or disables a backend at runtime. A disabled backend keeps its
    /// data and receives no operations.
    pub fn set_backend_enabled(&self, name: &str, enabled: bool) -> Result<(), ManagerError> {
        let backends = self.inner.backends.load();
        let slot = backends
            .by_name
            .get(name)
            .ok_or_else(|| ManagerError::BackendNotFound(name.to_string()))?;
        slot.enabled.store(enabled, Relaxed);
        if enabled {
            // It may have missed writes while disabled: repair it now.
            self.inner.cons.wake.notify_one();
        }
        Ok(())
    }

    /// The backends, in priority order.
    pub fn list_backends(&self) -> Vec<BackendStatus> {
        self.inner
            .backends
            .load()
            .by_priority
            .iter()
            .map(|s| {
                let instance = s.instance.load();
                BackendStatus {
                    name: s.name().to_string(),
                    plugin: instance.plugin.name().to_string(),
                    plugin_version: instance.plugin.version().to_string(),
                    enabled: s.is_enabled(),
                    priority: s.config.priority,
                    health: s.health(),
                }
            })
            .collect()
    }

    /// Sets the routing policy; operations already running finish under the old one.
    pub fn set_policy(&self, policy: StoragePolicy) {
        tracing::info!(?policy, "policy set");
        self.inner.policy.store(Some(Arc::new(policy)));
    }

    /// Goes back to the default policy (enabled backends in priority order, failing over).
    pub fn clear_policy(&self) {
        self.inner.policy.store(None);
    }

    /// The current policy; `None` is the default policy.
    pub fn policy(&self) -> Option<StoragePolicy> {
        self.inner.policy.load_full().map(|p| (*p).clone())
    }

    /// Bounds every backend operation; one that takes longer is cancelled and
    /// counts as unavailable (so policies fail over).
    pub fn set_op_timeout(&self, timeout: Duration) {
        self.inner
            .op_timeout_ms
            .store(timeout.as_millis().max(1) as u64, Relaxed);
    }

    /// Bounds the memory the manager spends remembering keys that backends
    /// are behind on (default [`MAX_STALE_KEYS`] (key, backend) pairs). Past
    /// it, a backend that misses one more write is read for no key at all:
    /// a PreferCache cache until the repair worker has flushed it, a replica
    /// until it is removed and added again.
    pub fn set_max_stale_keys(&self, max: usize) {
        self.inner.cons.limit.store(max.max(1), Relaxed);
    }

    fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.op_timeout_ms.load(Relaxed))
    }

    async fn execute(&self, req: Req<'_>) -> Result<Out, ManagerError> {
        let inner = &*self.inner;
        inner.metrics.operations.inc();
        // Guards, not Arc clones: no shared reference count to contend on.
        let backends = inner.backends.load();
        let policy = inner.policy.load();
        let ctx = Ctx {
            backends: &backends,
            metrics: &inner.metrics,
            timeout: self.op_timeout(),
            round_robin: &inner.round_robin,
            cons: &inner.cons,
        };
        let result = policy::route(&ctx, policy.as_deref(), req).await;
        if result.is_err() {
            inner.metrics.errors.inc();
        }
        if inner.cons.any_stale() {
            self.ensure_repair_worker();
        }
        result
    }

    /// Reads `key` according to the policy; `Ok(None)` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ManagerError> {
        match self.execute(Req::Get(key)).await? {
            Out::Value(v) => Ok(v),
            _ => unreachable!("get answers a value"),
        }
    }

    /// Writes `value` under `key` according to the policy.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), ManagerError> {
        self.execute(Req::Put(key, value)).await.map(|_| ())
    }

    /// Deletes `key` according to the policy; deleting a missing key succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), ManagerError> {
        self.execute(Req::Delete(key)).await.map(|_| ())
    }

    /// The keys starting with `prefix`, in ascending order: all of them, in
    /// one vector. For a listing whose memory is bounded, page through it
    /// with [`list_page`](Self::list_page).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ManagerError> {
        match self.execute(Req::List(prefix)).await? {
            Out::Keys(k) => Ok(k),
            _ => unreachable!("list answers keys"),
        }
    }

    /// Up to `limit` keys starting with `prefix` that sort after `after`
    /// (from the first when `after` is `None`), ascending, and whether more
    /// follow. Pass the page's [`next_after`](KeyPage::next_after) as
    /// `after` to get the next one: the cursor is a key, so paging stays
    /// correct while keys come and go. Routed like [`list`](Self::list).
    ///
    /// `limit` must be between 1 and [`MAX_LIST_PAGE`]; anything else is
    /// [`ManagerError::InvalidRequest`], before any backend is asked.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, ManagerError> {
        if limit == 0 || limit > MAX_LIST_PAGE {
            return Err(ManagerError::InvalidRequest(format!(
                "list page limit {limit} is out of bounds: ask for 1 to {MAX_LIST_PAGE} keys per page"
            )));
        }
        match self.execute(Req::ListPage(prefix, after, limit)).await? {
            Out::Page(p) => Ok(p),
            _ => unreachable!("list_page answers a page"),
        }
    }

    /// A snapshot of the metrics.
    pub async fn metrics(&self) -> StorageMetrics {
        let m = &self.inner.metrics;
        let backends = self.inner.backends.load();
        let mut s = StorageMetrics {
            operations: m.operations.get(),
            errors: m.errors.get(),
            cache_hits: m.cache_hits.get(),
            cache_misses: m.cache_misses.get(),
            ..Default::default()
        };
        let c = &self.inner.cons.metrics;
        let (pending, untrusted) = self.inner.cons.backlog();
        s.consistency = ConsistencyMetrics {
            stale_reads_avoided: c.stale_reads_avoided.get(),
            stale_marks: c.writes_missed.get(),
            repairs: c.repairs.get(),
            repair_failures: c.repair_failures.get(),
            fills_dropped: c.fills_dropped.get(),
            repair_backlog: pending as u64,
            untrusted_backends: untrusted as u64,
        };
        for slot in &backends.by_priority {
            let name = slot.name().to_string();
            s.backend_operations
                .insert(name.clone(), slot.metrics.operations.get());
            s.backend_errors
                .insert(name.clone(), slot.metrics.errors.get());
            s.backend_latency
                .insert(name, slot.metrics.latency.snapshot());
        }
        s
    }

    /// Sets every counter back to zero.
    pub fn reset_metrics(&self) {
        let m = &self.inner.metrics;
        let c = &self.inner.cons.metrics;
        for c in [
            &m.operations,
            &m.errors,
            &m.cache_hits,
            &m.cache_misses,
            &c.stale_reads_avoided,
            &c.writes_missed,
            &c.repairs,
            &c.repair_failures,
            &c.fills_dropped,
        ] {
            c.reset();
        }
        for slot in &self.inner.backends.load().by_priority {
            slot.metrics.reset();
        }
    }

    /// Removes every backend, shutting each down after its operations in
    /// flight finish (durable stores flush and release their files).
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.inner.backends.load().by_name.keys().cloned().collect();
        for name in names {
            let _ = self.remove_backend(&name).await;
        }
    }
}
