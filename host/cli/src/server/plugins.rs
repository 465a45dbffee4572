//! What the host knows about its plugin files, for `GET /v1/plugins`: the
//! watcher's first scan, then every later load, swap, rejection and removal.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use storage_host::loader::{LoadReport, ReportLine};
use storage_host::watch::PluginEvent;

/// Events kept for `GET /v1/plugins`; older ones are dropped (they are in the log).
const KEPT_EVENTS: usize = 256;

/// One entry of the event history.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// `loaded`, `swapped`, `rejected`, `waiting` or `removed`.
    pub(crate) event: &'static str,
    pub(crate) file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) plugin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) backends: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The event in one line, as the log shows it.
    pub(crate) message: String,
}

/// A file whose latest version was not loaded.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rejected {
    pub(crate) file: String,
    pub(crate) reason: String,
    pub(crate) at_ms: u64,
}

#[derive(Default)]
struct Inner {
    rejected: BTreeMap<PathBuf, Rejected>,
    events: VecDeque<Entry>,
}

/// The plugin history, shared between the watcher task and the API.
#[derive(Default)]
pub(crate) struct PluginLog {
    inner: RwLock<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

impl PluginLog {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the watcher's first scan.
    pub(crate) fn record_initial(&self, report: &LoadReport) {
        let at_ms = now_ms();
        let mut inner = self.write();
        for (path, info) in &report.loaded {
            inner.push(Entry {
                at_ms,
                event: "loaded",
                file: show(path),
                plugin: Some(info.name.clone()),
                version: Some(info.version.clone()),
                from_version: None,
                backends: Vec::new(),
                reason: None,
                message: ReportLine::Loaded {
                    plugin: &info.name,
                    version: &info.version,
                    file: path,
                }
                .to_string(),
            });
        }
        for r in &report.rejected {
            let reason = r.error.reason.to_string();
            inner.rejected.insert(
                r.path.clone(),
                Rejected {
                    file: show(&r.path),
                    reason: reason.clone(),
                    at_ms,
                },
            );
            inner.push(Entry {
                at_ms,
                event: "rejected",
                file: show(&r.path),
                plugin: None,
                version: None,
                from_version: None,
                backends: Vec::new(),
                message: ReportLine::Rejected {
                    file: &r.path,
                    reason: &reason,
                }
                .to_string(),
                reason: Some(reason),
            });
        }
    }

    /// Records a later event.
    pub(crate) fn record(&self, event: &PluginEvent) {
        let at_ms = now_ms();
        let message = event.to_string();
        let mut inner = self.write();
        let entry = match event {
            PluginEvent::Loaded {
                plugin,
                version,
                file,
            } => {
                inner.rejected.remove(file);
                Entry {
                    at_ms,
                    event: "loaded",
                    file: show(file),
                    plugin: Some(plugin.clone()),
                    version: Some(version.clone()),
                    from_version: None,
                    backends: Vec::new(),
                    reason: None,
                    message,
                }
            }
            PluginEvent::Swapped {
                plugin,
                from,
                to,
                file,
                backends,
                ..
            } => {
                inner.rejected.remove(file);
                Entry {
                    at_ms,
                    event: "swapped",
                    file: show(file),
                    plugin: Some(plugin.clone()),
                    version: Some(to.clone()),
                    from_version: Some(from.clone()),
                    backends: backends.clone(),
                    reason: None,
                    message,
                }
            }
            PluginEvent::Rejected { file, reason } => {
                inner.rejected.insert(
                    file.clone(),
                    Rejected {
                        file: show(file),
                        reason: reason.clone(),
                        at_ms,
                    },
                );
                Entry {
                    at_ms,
                    event: "rejected",
                    file: show(file),
                    plugin: None,
                    version: None,
                    from_version: None,
                    backends: Vec::new(),
                    reason: Some(reason.clone()),
                    message,
                }
            }
            PluginEvent::NotYetStable { file } => Entry {
                at_ms,
                event: "waiting",
                file: show(file),
                plugin: None,
                version: None,
                from_version: None,
                backends: Vec::new(),
                reason: None,
                message,
            },
            PluginEvent::Removed {
                plugin,
                file,
                still_serving,
            } => {
                inner.rejected.remove(file);
                Entry {
                    at_ms,
                    event: "removed",
                    file: show(file),
                    plugin: Some(plugin.clone()),
                    version: None,
                    from_version: None,
                    backends: still_serving.clone(),
                    reason: None,
                    message,
                }
            }
        };
        inner.push(entry);
    }

    /// The files whose latest version was rejected (and still exist), and
    /// the event history, oldest first.
    pub(crate) fn snapshot(&self) -> (Vec<Rejected>, Vec<Entry>) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        // A rejected file that is deleted produces no event: drop it here.
        let rejected = inner
            .rejected
            .iter()
            .filter(|(path, _)| path.exists())
            .map(|(_, r)| r.clone())
            .collect();
        (rejected, inner.events.iter().cloned().collect())
    }
}

impl Inner {
    fn push(&mut self, entry: Entry) {
        if self.events.len() == KEPT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(entry);
    }
}
