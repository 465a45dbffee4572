//! Hot swap: moving every backend of a plugin to a new version of it.
//!
//! The order, per backend: hold new operations, let those in flight finish,
//! take the old instance's state (in-memory contents), create the new
//! instance, retire the old one, release the held operations. Held operations
//! wait; they do not fail.
//!
//! The new instance is first created while the old one is still open. If that
//! fails (a durable store's file lock is still held by the old instance), the
//! old one is shut down and creation is tried again. If the new version still
//! cannot serve, the old plugin re-creates the backend: the old version keeps
//! serving and the failure is returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StorageManager;
use crate::config::StorageConfig;
use crate::plugin::{PluginError, StoragePlugin};
use crate::slot::{Instance, Slot};
use crate::storage::Storage;

/// What happened to one backend during a swap.
#[derive(Debug)]
pub struct SwapOutcome {
    /// The backend.
    pub backend: String,
    /// The plugin version serving it before.
    pub from_version: String,
    /// `Ok(new version)` or why the old version still serves.
    pub result: Result<String, PluginError>,
    /// How long new operations were held.
    pub paused_for: Duration,
}

type Boxed = Box<dyn Storage + Send + Sync>;

async fn create(
    plugin: &dyn StoragePlugin,
    config: &StorageConfig,
    state: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Boxed, PluginError> {
    let fut = async {
        match state {
            Some(s) => plugin.create_with_state(config, s).await,
            None => plugin.create(config).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(PluginError::InitializationFailed(
            plugin.name().to_string(),
            format!("create did not finish within {timeout:?}"),
        )),
    }
}

impl StorageManager {
    /// Registers `plugin` in place of the plugin of the same name and moves
    /// every backend created from that plugin to a new instance made by it.
    /// Returns one outcome per backend; a failed backend keeps its old version.
    pub async fn swap_plugin(&self, plugin: Arc<dyn StoragePlugin>) -> Vec<SwapOutcome> {
        let _admin = self.inner.admin.lock().await;
        let old = self.registry_write().replace_plugin(Arc::clone(&plugin));
        let slots: Vec<Arc<Slot>> = self
            .inner
            .backends
            .load()
            .by_priority
            .iter()
            .filter(|s| s.config.storage_config.plugin_name() == plugin.name())
            .cloned()
            .collect();
        let mut outcomes = Vec::with_capacity(slots.len());
        for slot in slots {
            outcomes.push(self.swap_slot(&slot, &plugin).await);
        }
        // If no backend could move to the new version, new backends should
        // not be created with it either.
        let all_failed = !outcomes.is_empty() && outcomes.iter().all(|o| o.result.is_err());
        if all_failed && let Some(old) = old {
            self.registry_write().replace_plugin(old);
        }
        outcomes
    }

    async fn swap_slot(&self, slot: &Slot, plugin: &Arc<dyn StoragePlugin>) -> SwapOutcome {
        let timeout = self.op_timeout();
        let config = &slot.config.storage_config;
        let old = slot.instance.load_full();
        let from_version = old.plugin.version().to_string();
        let mut outcome = SwapOutcome {
            backend: slot.name().to_string(),
            from_version: from_version.clone(),
            result: Ok(String::new()),
            paused_for: Duration::ZERO,
        };
        if let Err(e) = plugin.validate_config(config) {
            outcome.result = Err(e);
            return outcome;
        }

        let paused = Instant::now();
        slot.gate.pause_and_drain().await;
        let state = match old.storage.export_state().await {
            Ok(s) => s,
            Err(e) => {
                slot.gate.resume();
                outcome.paused_for = paused.elapsed();
                outcome.result = Err(PluginError::InitializationFailed(
                    old.plugin.name().to_string(),
                    format!("the running instance could not hand over its state: {e}"),
                ));
                return outcome;
            }
        };

        let result = match create(plugin.as_ref(), config, state.clone(), timeout).await {
            Ok(new) => {
                if let Err(e) = old.storage.shutdown().await {
                    tracing::warn!(backend = %slot.name(), error = %e, "old instance shutdown failed");
                }
                Ok(new)
            }
            Err(first) => {
                tracing::debug!(backend = %slot.name(), error = %first, "creating beside the old instance failed; retrying after closing it");
                if let Err(e) = old.storage.shutdown().await {
                    tracing::warn!(backend = %slot.name(), error = %e, "old instance shutdown failed");
                }
                match create(plugin.as_ref(), config, state.clone(), timeout).await {
                    Ok(new) => Ok(new),
                    Err(e) => {
                        // Roll back: the old plugin re-creates the backend.
                        match create(old.plugin.as_ref(), config, state, timeout).await {
                            Ok(restored) => slot.instance.store(Arc::new(Instance {
                                storage: restored,
                                plugin: Arc::clone(&old.plugin),
                            })),
                            Err(re) => {
                                tracing::error!(backend = %slot.name(), error = %re, "the old version could not be re-created either; the backend is failing")
                            }
                        }
                        Err(e)
                    }
                }
            }
        };
        outcome.result = match result {
            Ok(storage) => {
                slot.instance.store(Arc::new(Instance {
                    storage,
                    plugin: Arc::clone(plugin),
                }));
                Ok(plugin.version().to_string())
            }
            Err(e) => Err(e),
        };
        slot.gate.resume();
        outcome.paused_for = paused.elapsed();
        match &outcome.result {
            Ok(v) => {
                tracing::info!(backend = %slot.name(), from = %from_version, to = %v, paused_ms = outcome.paused_for.as_millis() as u64, "backend hot-swapped")
            }
            Err(e) => {
                tracing::warn!(backend = %slot.name(), version = %from_version, error = %e, "hot swap failed; the old version keeps serving")
            }
        }
        outcome
    }
}
