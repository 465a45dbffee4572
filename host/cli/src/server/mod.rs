//! `storage-host serve`: the host as a service, configured by a TOML file,
//! reached over an HTTP API.
//!
//! - [`config`]: the file, validated up front (errors name the field).
//! - [`Host`]: a [`StorageManager`] built from a config: built-in plugins,
//!   the plugins directory loaded and watched (hot reload), backends added,
//!   policy set.
//! - [`serve`]: the HTTP API on the configured address until a shutdown
//!   signal, then a graceful stop: no new connections, requests in flight
//!   finish, every backend is shut down (durable stores flushed).
//! - [`error`]: the API's JSON errors and their stable codes.
//! - `listen`: the accept loop under [`serve`]: header, idle, body and send
//!   timeouts, a connection limit sized to the descriptor limit, back-off
//!   when descriptors run out, a shutdown that drops half-sent requests.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use storage_host_cli::server::{self, config::HostConfig};
//!
//! let config = HostConfig::from_file("storage-host.toml".as_ref())?;
//! server::serve(config, server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod auth;
pub mod config;
pub mod error;
mod listen;
mod plugins;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use config::{HostConfig, TokenSource};
pub use listen::RESERVED_DESCRIPTORS;
use plugins::PluginLog;
pub use routes::{
    DEFAULT_LIST_LIMIT, MAX_HEADER_BYTES, MAX_HEADERS, MAX_KEY_BYTES, MAX_LIST_LIMIT,
    MAX_URI_BYTES, check_key, percent_decode_strict,
};
use storage_host::error::ManagerError;
use storage_host::manager::StorageManager;
use storage_host::plugin::PluginError;
use storage_host::registry::StorageRegistry;
use storage_host::watch::WatchOptions;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The plugins directory cannot be watched (unreadable, or writable by others).
    #[error("plugins_dir: {0}")]
    PluginsDir(#[source] PluginError),
    /// A backend of the config could not be created.
    #[error("backends[{index}] ({name:?}): {source}{hint}")]
    Backend {
        /// Its index in the config's `[[backends]]`.
        index: usize,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: ManagerError,
        /// Where to look next, or empty.
        hint: String,
    },
    /// The listen address cannot be bound.
    #[error("listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A [`StorageManager`] set up from a [`HostConfig`], with its plugins
/// directory watched.
pub struct Host {
    manager: StorageManager,
    plugins: Arc<PluginLog>,
    plugins_dir: Option<std::path::PathBuf>,
    watch_task: Option<tokio::task::JoinHandle<()>>,
}

impl Host {
    /// Builds the manager: the built-in plugins, then the plugins directory
    /// (a plugin there named like a built-in replaces it, so its backends
    /// can be hot-swapped), then the backends in order, then the policy.
    ///
    /// With `watch`, the directory stays watched: a replaced plugin file
    /// hot-swaps its backends, a new one is loaded. Plugin files that fail to
    /// load do not stop the start (they are reported); a backend that
    /// cannot be created does.
    pub async fn start(config: &HostConfig, watch: bool) -> Result<Host, StartError> {
        let manager = StorageManager::with_registry(StorageRegistry::with_defaults());
        manager.set_op_timeout(config.op_timeout);
        let plugins = Arc::new(PluginLog::default());
        let mut watch_task = None;
        let mut rejected = 0;
        if let Some(dir) = &config.plugins_dir {
            let mut watcher = manager
                .watch_plugins(dir, WatchOptions::default())
                .await
                .map_err(StartError::PluginsDir)?;
            let report = watcher.initial_report();
            for (path, info) in &report.loaded {
                tracing::info!(plugin = %info.name, version = %info.version, file = %path.display(), "plugin loaded");
            }
            for r in &report.rejected {
                tracing::warn!(file = %r.path.display(), reason = %r.error.reason, "plugin rejected");
            }
            rejected = report.rejected.len();
            plugins.record_initial(report);
            if watch {
                let log = Arc::clone(&plugins);
                watch_task = Some(tokio::spawn(async move {
                    // The task owns the watcher: aborting it stops the watch.
                    while let Some(event) = watcher.next_event().await {
                        log.record(&event);
                    }
                }));
            }
        }
        for (index, backend) in config.backends.iter().enumerate() {
            let name = backend.name.clone();
            if let Err(source) = manager.add_backend(backend.clone()).await {
                let hint = match &source {
                    ManagerError::Plugin(PluginError::PluginNotFound(_)) if rejected > 0 => {
                        format!(
                            " ({rejected} plugin file(s) in plugins_dir were rejected; see the log above)"
                        )
                    }
                    ManagerError::Plugin(PluginError::PluginNotFound(_)) => {
                        " (not a built-in plugin: put its library in plugins_dir)".to_string()
                    }
                    _ => String::new(),
                };
                // Backends already created hold resources (file locks): release them.
                manager.shutdown().await;
                if let Some(t) = watch_task {
                    t.abort();
                }
                return Err(StartError::Backend {
                    index,
                    name,
                    source,
                    hint,
                });
            }
        }
        if let Some(policy) = &config.policy {
            manager.set_policy(policy.clone());
        }
        Ok(Host {
            manager,
            plugins,
            plugins_dir: config.plugins_dir.clone(),
            watch_task,
        })
    }

    /// The manager.
    pub fn manager(&self) -> &StorageManager {
        &self.manager
    }

    /// The HTTP API over this host's manager: body size bound and bearer
    /// token taken from `config`.
    pub fn router(&self, config: &HostConfig) -> axum::Router {
        let state = Arc::new(routes::AppState {
            manager: self.manager.clone(),
            plugins: Arc::clone(&self.plugins),
            plugins_dir: self.plugins_dir.clone(),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
        });
        routes::router(state, config.auth.token.clone())
    }

    /// Stops watching plugins (so no swap starts during the shutdown), then
    /// shuts every backend down after its operations in flight.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.watch_task.take() {
            task.abort();
            let _ = task.await;
        }
        self.manager.shutdown().await;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. A second signal while the
/// shutdown runs exits at once (durable stores are crash-safe; an
/// acknowledged write is already on disk).
pub async fn shutdown_signal() {
    let which = wait_for_signal().await;
    tracing::info!(
        signal = which,
        "shutting down: no new connections; finishing requests in flight"
    );
    tokio::spawn(async {
        let which = wait_for_signal().await;
        tracing::warn!(signal = which, "second signal: exiting without waiting");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the host");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

/// Runs the host: starts it from `config`, serves the HTTP API until
/// `shutdown` resolves, then stops gracefully (see the module docs).
///
/// Prints `listening on http://ADDR` on stdout once the socket is bound
/// (with the real port when the config asks for port 0).
pub async fn serve(
    config: HostConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let host = Host::start(&config, true).await?;
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(source) => {
            host.shutdown().await;
            return Err(StartError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    match &config.auth.source {
        Some(TokenSource::Env(var)) => {
            tracing::info!(env = %var, "bearer token required (from the environment)")
        }
        Some(TokenSource::File(f)) => {
            tracing::info!(file = %f.display(), "bearer token required (from a file)")
        }
        None if addr.ip().is_loopback() => tracing::warn!(
            %addr,
            "no [auth] in the config: the API is open to every local user and process; set auth.token_env or auth.token_file"
        ),
        None => tracing::warn!(
            %addr,
            "no [auth] in the config and a non-loopback address: the API is open to the network; set auth.token_env or auth.token_file"
        ),
    }
    let backends: Vec<String> = host
        .manager()
        .list_backends()
        .into_iter()
        .map(|b| format!("{}={} {}", b.name, b.plugin, b.plugin_version))
        .collect();
    let (max_connections, nofile) = listen::connection_limit(config.max_connections);
    if max_connections < config.max_connections {
        tracing::info!(
            configured = config.max_connections,
            max_connections,
            descriptor_limit = nofile,
            "max_connections lowered to leave {} of the descriptor limit (ulimit -n) to backends and plugins",
            listen::RESERVED_DESCRIPTORS
        );
    }
    tracing::info!(
        %addr,
        backends = %backends.join(", "),
        max_body_bytes = config.max_body_bytes,
        max_connections,
        header_timeout_ms = config.header_timeout.as_millis() as u64,
        idle_timeout_ms = config.idle_timeout.as_millis() as u64,
        body_timeout_ms = config.body_timeout.as_millis() as u64,
        send_timeout_ms = config.send_timeout.as_millis() as u64,
        "storage-host listening"
    );
    println!("listening on http://{addr}");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    let app = host.router(&config);
    let limits = listen::Limits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        send_timeout: config.send_timeout,
        max_connections,
    };
    listen::serve(listener, app, limits, shutdown, config.shutdown_timeout).await;
    host.shutdown().await;
    tracing::info!("stopped: every backend shut down");
    Ok(())
}
