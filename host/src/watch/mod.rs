//! Watching a plugins directory: load what is dropped in, hot-swap what is
//! replaced, unregister what is removed.
//!
//! File events are debounced (a `cp` writes in several steps, an editor saves
//! through a temporary file) and each file's content is hashed, so one change
//! gives one reload and an unchanged file none.

mod trust;

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer, notify};
use tokio::sync::{broadcast, mpsc};

use crate::loader::{self, LoadError, LoadFailure, LoadReport, Rejection};
use crate::manager::StorageManager;
use crate::plugin::{PluginError, PluginInfo, StoragePlugin};

pub use trust::{check_dir, check_file};

/// Options of [`StorageManager::watch_plugins`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How long a file must stay unchanged before it is (re)loaded.
    pub debounce: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(250),
        }
    }
}

/// Something that happened in a watched plugins directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEvent {
    /// A new plugin was loaded and registered.
    Loaded {
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
        /// The file.
        file: PathBuf,
    },
    /// A plugin was replaced by a new version, and its backends moved to it.
    Swapped {
        /// Plugin name.
        plugin: String,
        /// The version before.
        from: String,
        /// The version now.
        to: String,
        /// The file.
        file: PathBuf,
        /// The backends that now run the new version.
        backends: Vec<String>,
        /// The longest time a backend held new operations during the swap.
        paused: Duration,
    },
    /// A file was not loaded, or a new version could not take over; whatever
    /// ran before keeps running.
    Rejected {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A plugin file was removed: the plugin is unregistered for new
    /// backends; backends already running keep serving.
    Removed {
        /// Plugin name.
        plugin: String,
        /// The file.
        file: PathBuf,
        /// Backends still running the plugin.
        still_serving: Vec<String>,
    },
}

impl fmt::Display for PluginEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginEvent::Loaded {
                plugin,
                version,
                file,
            } => {
                write!(f, "loaded   {plugin} {version} from {}", file.display())
            }
            PluginEvent::Swapped {
                plugin,
                from,
                to,
                file,
                backends,
                paused,
            } => write!(
                f,
                "swapped  {plugin} {from} -> {to} from {} (backends: {}; ops held {paused:.1?})",
                file.display(),
                backends.join(", ")
            ),
            PluginEvent::Rejected { file, reason } => {
                write!(f, "rejected {}: {reason}", file.display())
            }
            PluginEvent::Removed {
                plugin,
                file,
                still_serving,
            } => write!(
                f,
                "removed  {plugin} ({} deleted); backends still serving: {}",
                file.display(),
                if still_serving.is_empty() {
                    "none".to_string()
                } else {
                    still_serving.join(", ")
                }
            ),
        }
    }
}

/// A running watch. Dropping it stops watching (loaded plugins stay).
pub struct PluginWatcher {
    initial: LoadReport,
    events: broadcast::Receiver<PluginEvent>,
    sender: broadcast::Sender<PluginEvent>,
    _debouncer: Debouncer<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl PluginWatcher {
    /// What the first scan of the directory loaded and rejected.
    pub fn initial_report(&self) -> &LoadReport {
        &self.initial
    }

    /// The next event. Events are the changes after the first scan (whose
    /// results are in [`initial_report`](Self::initial_report)); up to 1024
    /// unread events are kept.
    pub async fn next_event(&mut self) -> Option<PluginEvent> {
        loop {
            match self.events.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "plugin event subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Another receiver of the events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.sender.subscribe()
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the watcher knows of each file.
struct Known {
    hash: u64,
    /// The plugin the file holds, when it loaded.
    plugin: Option<String>,
}

struct State {
    manager: StorageManager,
    dir: PathBuf,
    files: HashMap<PathBuf, Known>,
    events: broadcast::Sender<PluginEvent>,
    /// During the first scan results go to the initial report, not to events.
    quiet: bool,
}

fn content_hash(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    let mut h = DefaultHasher::new();
    h.write(&bytes);
    Ok(h.finish())
}

impl State {
    fn emit(&self, event: PluginEvent) {
        if self.quiet {
            return;
        }
        match &event {
            PluginEvent::Rejected { .. } => tracing::warn!(%event, "plugin event"),
            _ => tracing::info!(%event, "plugin event"),
        }
        let _ = self.events.send(event);
    }

    /// Loads, swaps or forgets `path` according to what is on disk now.
    async fn sync_file(&mut self, path: &Path) -> Option<Result<PluginInfo, LoadError>> {
        if !path.exists() {
            self.removed(path);
            return None;
        }
        if !loader::is_library_file(path) {
            return None;
        }
        // Hashing, copying and mapping a library is blocking file work: keep
        // it off the runtime's workers (a blocked worker stalls the tasks
        // queued on it, which would show up as slow storage operations).
        let (dir, file) = (self.dir.clone(), path.to_path_buf());
        let known = self.files.get(path).map(|k| k.hash);
        let prepared = tokio::task::spawn_blocking(move || prepare(&dir, &file, known))
            .await
            .unwrap_or_else(|e| {
                Prepared::Failed(
                    None,
                    reject(
                        path,
                        LoadFailure::InitFailed(format!("loader task failed: {e}")),
                    ),
                )
            });
        let (hash, plugin) = match prepared {
            Prepared::Unchanged => return None,
            Prepared::Failed(hash, e) => {
                if let Some(hash) = hash {
                    let previous = self
                        .files
                        .insert(path.to_path_buf(), Known { hash, plugin: None });
                    // Keep track of the plugin the file held, for a later removal.
                    if let (Some(prev), Some(k)) = (previous, self.files.get_mut(path)) {
                        k.plugin = prev.plugin;
                    }
                }
                return Some(Err(e));
            }
            Prepared::Loaded(hash, plugin) => (hash, plugin),
        };
        let previous = self
            .files
            .insert(path.to_path_buf(), Known { hash, plugin: None });
        let info = PluginInfo::of(plugin.as_ref());
        // A file that now holds another plugin than before: the old one is gone.
        if let Some(old) = previous.and_then(|k| k.plugin)
            && old != info.name
        {
            self.unregister(&old, path);
        }
        if let Some(current) = self.manager.get_plugin(&info.name) {
            let from = current.version().to_string();
            let outcomes = self.manager.swap_plugin(plugin).await;
            let failures: Vec<String> = outcomes
                .iter()
                .filter_map(|o| {
                    o.result
                        .as_ref()
                        .err()
                        .map(|e| format!("backend '{}': {e}", o.backend))
                })
                .collect();
            if !failures.is_empty() {
                let reason = format!(
                    "{} {} could not take over; {from} keeps serving: {}",
                    info.name,
                    info.version,
                    failures.join("; ")
                );
                return Some(Err(reject(path, LoadFailure::InitFailed(reason))));
            }
            if let Some(k) = self.files.get_mut(path) {
                k.plugin = Some(info.name.clone());
            }
            self.emit(PluginEvent::Swapped {
                plugin: info.name.clone(),
                from,
                to: info.version.clone(),
                file: path.to_path_buf(),
                paused: outcomes
                    .iter()
                    .map(|o| o.paused_for)
                    .max()
                    .unwrap_or_default(),
                backends: outcomes.into_iter().map(|o| o.backend).collect(),
            });
        } else {
            if let Err(e) = self.manager.register_arc(plugin) {
                return Some(Err(reject(path, LoadFailure::InitFailed(e.to_string()))));
            }
            if let Some(k) = self.files.get_mut(path) {
                k.plugin = Some(info.name.clone());
            }
            self.emit(PluginEvent::Loaded {
                plugin: info.name.clone(),
                version: info.version.clone(),
                file: path.to_path_buf(),
            });
        }
        Some(Ok(info))
    }

    fn removed(&mut self, path: &Path) {
        if let Some(Known {
            plugin: Some(name), ..
        }) = self.files.remove(path)
        {
            self.unregister(&name, path);
        }
    }

    fn unregister(&self, name: &str, path: &Path) {
        let _ = self.manager.unregister_plugin(name);
        let still_serving = self
            .manager
            .list_backends()
            .into_iter()
            .filter(|b| b.plugin == name)
            .map(|b| b.name)
            .collect();
        self.emit(PluginEvent::Removed {
            plugin: name.to_string(),
            file: path.to_path_buf(),
            still_serving,
        });
    }
}

enum Prepared {
    Unchanged,
    Failed(Option<u64>, LoadError),
    Loaded(u64, Arc<dyn StoragePlugin>),
}

/// The blocking part of a reload: hash, trust check, copy and load.
fn prepare(dir: &Path, path: &Path, known: Option<u64>) -> Prepared {
    let hash = match content_hash(path) {
        Ok(h) => h,
        Err(e) => return Prepared::Failed(None, reject(path, LoadFailure::Io(e.to_string()))),
    };
    if known == Some(hash) {
        return Prepared::Unchanged; // Same bytes as last time: nothing to do.
    }
    if let Err(why) = check_file(dir, path) {
        return Prepared::Failed(Some(hash), reject(path, LoadFailure::Untrusted(why)));
    }
    match loader::load_plugin(path) {
        Ok(p) => Prepared::Loaded(hash, Arc::new(p)),
        Err(e) => Prepared::Failed(Some(hash), e),
    }
}

fn reject(path: &Path, reason: LoadFailure) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        reason,
    }
}

impl StorageManager {
    /// Loads every plugin library in `dir` and keeps watching it: a new file
    /// is loaded and registered, a changed file hot-swaps every backend of its
    /// plugin, a removed file unregisters its plugin (running backends keep
    /// serving). A plugin whose name is already registered (a built-in, say)
    /// is treated as a new version of it.
    ///
    /// Refuses a directory other users can write. Must be called within a
    /// tokio runtime; the watch stops when the returned [`PluginWatcher`] is dropped.
    pub async fn watch_plugins(
        &self,
        dir: impl AsRef<Path>,
        options: WatchOptions,
    ) -> Result<PluginWatcher, PluginError> {
        let dir = dir.as_ref();
        let canonical = check_dir(dir).map_err(|why| reject(dir, LoadFailure::Untrusted(why)))?;
        let (sender, events) = broadcast::channel(1024);
        let mut state = State {
            manager: self.clone(),
            dir: canonical.clone(),
            files: HashMap::new(),
            events: sender.clone(),
            quiet: true,
        };

        // Start watching before the first scan, so nothing dropped in between is missed.
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let mut debouncer =
            new_debouncer(
                options.debounce,
                move |res: DebounceEventResult| match res {
                    Ok(events) => {
                        let _ = tx.send(events.into_iter().map(|e| e.path).collect());
                    }
                    Err(e) => tracing::warn!(error = %e, "plugin directory watch error"),
                },
            )
            .map_err(|e| reject(dir, LoadFailure::Io(e.to_string())))?;
        debouncer
            .watcher()
            .watch(&canonical, notify::RecursiveMode::NonRecursive)
            .map_err(|e| reject(dir, LoadFailure::Io(e.to_string())))?;

        let mut initial = LoadReport::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&canonical)
            .map_err(|e| reject(dir, LoadFailure::Io(e.to_string())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| loader::is_library_file(p))
            .collect();
        files.sort();
        for file in files {
            match state.sync_file(&file).await {
                Some(Ok(info)) => initial.loaded.push((file, info)),
                Some(Err(error)) => {
                    tracing::warn!(%error, "plugin rejected");
                    initial.rejected.push(Rejection { path: file, error });
                }
                None => {}
            }
        }
        state.quiet = false;

        let task = tokio::spawn(async move {
            while let Some(mut paths) = rx.recv().await {
                paths.sort();
                paths.dedup();
                for path in paths {
                    if let Some(Err(error)) = state.sync_file(&path).await {
                        state.emit(PluginEvent::Rejected {
                            file: path,
                            reason: error.reason.to_string(),
                        });
                    }
                }
            }
        });
        Ok(PluginWatcher {
            initial,
            events,
            sender,
            _debouncer: debouncer,
            task,
        })
    }
}
