//! Watching a plugins directory: load what is dropped in, hot-swap what is
//! replaced, unregister what is removed.
//!
//! File events are debounced (a `cp` writes in several steps, an editor saves
//! through a temporary file) and each file's content is hashed, so one change
//! gives one reload and an unchanged file none. A file is read only once it
//! is stable (size and modification time unchanged over
//! [`WatchOptions::settle`]); one still being written gives one
//! [`PluginEvent::NotYetStable`] and is checked again until it stops
//! changing. A file that stays broken is reported once.
//!
//! **Files and plugin names.** Each plugin name is provided by one file: of
//! the files that hold a loadable plugin of that name, the one whose file
//! name sorts first (byte order). The others are reported as rejected
//! ("not used: plugin 'x' is provided by ...") and take over, in order, when
//! the providing file is deleted or stops holding that plugin. Deleting a
//! file that provides nothing changes nothing; deleting the last file of a
//! name unregisters it. A file replaced by a version that fails to load
//! keeps its last good version. The outcome depends only on the directory's
//! contents, so a restart gives the same result as the live watch.

mod trust;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer, notify};
use tokio::sync::{broadcast, mpsc};

use crate::loader::{
    self, Digest, FileStamp, LoadError, LoadFailure, LoadReport, Rejection, ReportLine,
};
use crate::manager::StorageManager;
use crate::plugin::{PluginError, PluginInfo, StoragePlugin};

pub use trust::{check_dir, check_file};

/// Options of [`StorageManager::watch_plugins`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How long file events are collected before they are handled.
    pub debounce: Duration,
    /// How long a file's size and modification time must stay the same
    /// before it is read and loaded (a file still being written is retried
    /// after this interval).
    pub settle: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(250),
            settle: loader::DEFAULT_SETTLE,
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
    /// A file changed but is still being written (its size or modification
    /// time changed within the settle interval): it is checked again once it
    /// stops changing. Reported once per change.
    NotYetStable {
        /// The file.
        file: PathBuf,
    },
    /// The last file providing a plugin was removed (or now holds another
    /// plugin): the plugin is unregistered for new backends; backends
    /// already running keep serving.
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
            } => ReportLine::Loaded {
                plugin,
                version,
                file,
            }
            .fmt(f),
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
            PluginEvent::Rejected { file, reason } => ReportLine::Rejected { file, reason }.fmt(f),
            PluginEvent::NotYetStable { file } => write!(
                f,
                "waiting  {}: still being written; loaded once it stops changing",
                file.display()
            ),
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
    /// The stamp of the file when last read: an event for a file whose
    /// stamp has not changed is not acted on (reading a file makes an
    /// "opened" event of its own: this keeps the watcher from chasing
    /// them, and a broken file from being reported twice).
    stamp: Option<FileStamp>,
    /// The digest of the content last read.
    hash: Option<Digest>,
    /// The last version of the file that loaded (kept when a later version
    /// fails: it still counts for the file).
    plugin: Option<Arc<dyn StoragePlugin>>,
}

struct State {
    manager: StorageManager,
    dir: PathBuf,
    settle: Duration,
    files: HashMap<PathBuf, Known>,
    /// The file providing each plugin name this watcher registered.
    providers: HashMap<String, PathBuf>,
    /// Files reported as still being written (reported once).
    pending: HashSet<PathBuf>,
    /// Files with a retry scheduled.
    retrying: HashSet<PathBuf>,
    retry: mpsc::UnboundedSender<PathBuf>,
    events: broadcast::Sender<PluginEvent>,
    /// During the first scan results go to the initial report, not to events.
    quiet: bool,
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

    fn schedule_retry(&mut self, path: &Path) {
        if !self.retrying.insert(path.to_path_buf()) {
            return;
        }
        let (tx, path, delay) = (
            self.retry.clone(),
            path.to_path_buf(),
            self.settle.max(Duration::from_millis(20)),
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(path);
        });
    }

    /// Loads, swaps or forgets `path` according to what is on disk now.
    /// Returns what happened to this file, if there is something to report.
    async fn sync_file(&mut self, path: &Path) -> Option<Result<PluginInfo, LoadError>> {
        if std::fs::symlink_metadata(path).is_err() {
            return self.removed(path).await;
        }
        if !loader::is_library_file(path) {
            return None;
        }
        let stamp = FileStamp::of_path(path).ok();
        let known = self.files.get(path);
        if stamp.is_some() && known.and_then(|k| k.stamp.as_ref()) == stamp.as_ref() {
            return None; // Not changed since it was last read.
        }
        // Copying, hashing, checking and mapping a library is blocking file
        // work: keep it off the runtime's workers (a blocked worker stalls
        // the tasks queued on it, which would show up as slow storage
        // operations).
        let (dir, file, settle) = (self.dir.clone(), path.to_path_buf(), self.settle);
        let known = known.and_then(|k| k.hash);
        let prepared = tokio::task::spawn_blocking(move || prepare(&dir, &file, known, settle))
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
        let plugin = match prepared {
            Prepared::Gone => return self.removed(path).await,
            Prepared::Unchanged(stamp) => {
                self.pending.remove(path);
                if let Some(k) = self.files.get_mut(path) {
                    k.stamp = Some(stamp);
                }
                return None;
            }
            Prepared::Unstable(e) => {
                self.schedule_retry(path);
                if self.quiet {
                    return Some(Err(e));
                }
                if self.pending.insert(path.to_path_buf()) {
                    self.emit(PluginEvent::NotYetStable {
                        file: path.to_path_buf(),
                    });
                }
                return None;
            }
            Prepared::Failed(read, e) => {
                self.pending.remove(path);
                // The same file again is not reported again. The last good
                // version of the file still counts for it.
                let (stamp, hash) = match read {
                    Some((stamp, hash)) => (Some(stamp), Some(hash)),
                    None => (stamp, None),
                };
                let plugin = self.files.remove(path).and_then(|k| k.plugin);
                self.files.insert(
                    path.to_path_buf(),
                    Known {
                        stamp,
                        hash,
                        plugin,
                    },
                );
                return Some(Err(e));
            }
            Prepared::Loaded(stamp, hash, plugin) => (stamp, hash, plugin),
        };
        self.pending.remove(path);
        let (stamp, hash, plugin) = plugin;
        let previous = self.files.insert(
            path.to_path_buf(),
            Known {
                stamp: Some(stamp),
                hash: Some(hash),
                plugin: Some(Arc::clone(&plugin)),
            },
        );
        // A file that now holds another plugin than before: that name may
        // need another provider, or none.
        if let Some(old) = previous.and_then(|k| k.plugin)
            && old.name() != plugin.name()
            && let Some(Err(e)) = self.reconcile(old.name(), path).await
        {
            self.emit(PluginEvent::Rejected {
                file: e.path.clone(),
                reason: e.reason.to_string(),
            });
        }
        self.reconcile(plugin.name(), path).await
    }

    /// `path` is gone: the plugin it held may need another provider, or none.
    async fn removed(&mut self, path: &Path) -> Option<Result<PluginInfo, LoadError>> {
        self.pending.remove(path);
        match self.files.remove(path) {
            Some(Known {
                plugin: Some(old), ..
            }) => self.reconcile(old.name(), path).await,
            _ => None,
        }
    }

    /// Applies the rule for plugin names to `name` after `changed` changed:
    /// the file whose name sorts first among those holding `name` provides
    /// it. Returns what happened to `changed` (when it holds `name`).
    async fn reconcile(
        &mut self,
        name: &str,
        changed: &Path,
    ) -> Option<Result<PluginInfo, LoadError>> {
        let desired = self
            .files
            .iter()
            .filter_map(|(p, k)| {
                k.plugin
                    .as_ref()
                    .filter(|pl| pl.name() == name)
                    .map(|pl| (p.clone(), Arc::clone(pl)))
            })
            .min_by(|a, b| a.0.cmp(&b.0));
        let current = self.providers.get(name).cloned();
        let changed_holds_name = self
            .files
            .get(changed)
            .and_then(|k| k.plugin.as_ref())
            .is_some_and(|p| p.name() == name);
        let Some((file, plugin)) = desired else {
            if current.is_some() {
                self.providers.remove(name);
                self.unregister(name, changed);
            }
            return None;
        };
        if current.as_deref() == Some(file.as_path()) && file != changed {
            // The provider stays; `changed` (if it holds the name) is not used.
            return changed_holds_name.then(|| {
                Err(reject(
                    changed,
                    LoadFailure::Shadowed {
                        plugin: name.to_string(),
                        by: file.clone(),
                    },
                ))
            });
        }
        let result = self.install(name, &file, plugin).await;
        // The file that provided the name before and still holds it is now
        // shadowed by the new provider.
        if let Some(old) = current
            && old != file
            && self.providers.get(name) == Some(&file)
            && self
                .files
                .get(&old)
                .and_then(|k| k.plugin.as_ref())
                .is_some_and(|p| p.name() == name)
        {
            self.emit(PluginEvent::Rejected {
                reason: LoadFailure::Shadowed {
                    plugin: name.to_string(),
                    by: file.clone(),
                }
                .to_string(),
                file: old,
            });
        }
        if file == changed {
            return Some(result);
        }
        if let Err(e) = result {
            self.emit(PluginEvent::Rejected {
                file: e.path.clone(),
                reason: e.reason.to_string(),
            });
        }
        // `changed` was removed or holds the name no more; a later file took over.
        None
    }

    /// Makes `plugin` (from `file`) the registered plugin `name`: a new
    /// version of a registered plugin hot-swaps its backends.
    async fn install(
        &mut self,
        name: &str,
        file: &Path,
        plugin: Arc<dyn StoragePlugin>,
    ) -> Result<PluginInfo, LoadError> {
        let info = PluginInfo::of(plugin.as_ref());
        let Some(current) = self.manager.get_plugin(name) else {
            if let Err(e) = self.manager.register_arc(Arc::clone(&plugin)) {
                return Err(reject(file, LoadFailure::InitFailed(e.to_string())));
            }
            self.providers.insert(name.to_string(), file.to_path_buf());
            self.emit(PluginEvent::Loaded {
                plugin: info.name.clone(),
                version: info.version.clone(),
                file: file.to_path_buf(),
            });
            return Ok(info);
        };
        if Arc::ptr_eq(&current, &plugin) {
            self.providers.insert(name.to_string(), file.to_path_buf());
            return Ok(info);
        }
        let from = current.version().to_string();
        let outcomes = self.manager.swap_plugin(Arc::clone(&plugin)).await;
        if self
            .manager
            .get_plugin(name)
            .is_some_and(|p| Arc::ptr_eq(&p, &plugin))
        {
            self.providers.insert(name.to_string(), file.to_path_buf());
        }
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
            return Err(reject(file, LoadFailure::InitFailed(reason)));
        }
        self.emit(PluginEvent::Swapped {
            plugin: info.name.clone(),
            from,
            to: info.version.clone(),
            file: file.to_path_buf(),
            paused: outcomes
                .iter()
                .map(|o| o.paused_for)
                .max()
                .unwrap_or_default(),
            backends: outcomes.into_iter().map(|o| o.backend).collect(),
        });
        Ok(info)
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
    /// The file was removed meanwhile.
    Gone,
    /// The same bytes as last time (the file was touched or re-written).
    Unchanged(FileStamp),
    Unstable(LoadError),
    /// Refused; with what was read, when the file could be read.
    Failed(Option<(FileStamp, Digest)>, LoadError),
    Loaded(FileStamp, Digest, Arc<dyn StoragePlugin>),
}

/// The blocking part of a reload: wait until stable and copy (hashing the
/// bytes), trust check, then check and map the copy.
fn prepare(dir: &Path, path: &Path, known: Option<Digest>, settle: Duration) -> Prepared {
    let staged = match loader::stage(path, settle) {
        Ok(s) => s,
        Err(
            e @ LoadError {
                reason: LoadFailure::NotStable(_),
                ..
            },
        ) => return Prepared::Unstable(e),
        Err(_) if std::fs::symlink_metadata(path).is_err() => return Prepared::Gone,
        Err(e) => return Prepared::Failed(None, e),
    };
    let (stamp, hash) = (staged.stamp().clone(), *staged.digest());
    if known == Some(hash) {
        return Prepared::Unchanged(stamp); // Same bytes as last time: nothing to do.
    }
    if let Err(why) = check_file(dir, path) {
        return Prepared::Failed(
            Some((stamp, hash)),
            reject(path, LoadFailure::Untrusted(why)),
        );
    }
    match loader::load_staged(staged) {
        Ok(p) => Prepared::Loaded(stamp, hash, Arc::new(p)),
        Err(e) => Prepared::Failed(Some((stamp, hash)), e),
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
    /// is treated as a new version of it. When several files hold one plugin
    /// name, the rule in the [module docs](self) decides which provides it.
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
        let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut state = State {
            manager: self.clone(),
            dir: canonical.clone(),
            settle: options.settle,
            files: HashMap::new(),
            providers: HashMap::new(),
            pending: HashSet::new(),
            retrying: HashSet::new(),
            retry: retry_tx,
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
            loop {
                let mut paths = tokio::select! {
                    paths = rx.recv() => match paths {
                        Some(p) => p,
                        None => return,
                    },
                    Some(path) = retry_rx.recv() => {
                        state.retrying.remove(&path);
                        vec![path]
                    }
                };
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
