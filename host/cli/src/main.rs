//! `storage-host`: run the storage host as a service, use it from scripts,
//! and inspect plugins.
//!
//! Exit codes: 0 success; 1 `get` found no value, or plugins were rejected;
//! 2 an error (bad config, a backend failure, bad arguments).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use storage_host::loader::{self, LoadFailure};
use storage_host::plugin::StoragePlugin;
use storage_host::watch::WatchOptions;
use storage_host::{StorageConfig, StorageManager, StorageRegistry};
use storage_host_cli::server::config::HostConfig;
use storage_host_cli::server::{self, Host};

#[derive(Parser)]
#[command(name = "storage-host", version, about = "Storage plugin host")]
struct Cli {
    /// Show full reports (e.g. abi_stable's layout mismatch report).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: load and watch plugins, create the backends, serve the
    /// HTTP API until SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the value under KEY (raw bytes on stdout); exit 1 when there is none.
    Get {
        #[command(flatten)]
        config: ConfigArg,
        /// The key.
        key: String,
    },
    /// Store VALUE (or, without it, standard input) under KEY.
    Put {
        #[command(flatten)]
        config: ConfigArg,
        /// The key.
        key: String,
        /// The value; read from standard input when omitted.
        value: Option<String>,
    },
    /// Delete KEY (deleting a missing key succeeds).
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        /// The key.
        key: String,
    },
    /// Print the keys starting with PREFIX, one per line.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// The prefix (all keys when omitted).
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Work with plugin libraries.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The host's TOML config file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Load one plugin library and print what it is, or why it is rejected.
    Inspect {
        /// The library file (.so, .dylib, .dll).
        file: PathBuf,
    },
    /// Load every plugin library in a directory and report on each.
    List {
        /// The plugins directory.
        dir: PathBuf,
    },
    /// Load a directory's plugins, then print every load, swap, rejection and
    /// removal as files come and go (Ctrl-C to stop).
    Watch {
        /// The plugins directory.
        dir: PathBuf,
    },
}

/// Logs go to stderr (stdout carries values and listings). `RUST_LOG`, when
/// set, overrides `default`.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: escape codes in a log file or journal are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(path: &Path) -> Result<HostConfig, ExitCode> {
    HostConfig::from_file(path).map_err(|e| {
        eprintln!("error: config {}: {e}", path.display());
        ExitCode::from(2)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(2)
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(&config.config),
        Command::Get { config, key } => one_shot(&config.config, OneShot::Get(key)),
        Command::Put { config, key, value } => {
            let value = match value {
                Some(v) => v.into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                        eprintln!("error: cannot read the value from standard input: {e}");
                        return ExitCode::from(2);
                    }
                    buf
                }
            };
            one_shot(&config.config, OneShot::Put(key, value))
        }
        Command::Delete { config, key } => one_shot(&config.config, OneShot::Delete(key)),
        Command::List { config, prefix } => one_shot(&config.config, OneShot::List(prefix)),
        Command::Plugins { command } => {
            init_logging("warn");
            Ok(plugins(command, cli.verbose))
        }
    };
    result.unwrap_or_else(|code| code)
}

fn serve(path: &Path) -> Result<ExitCode, ExitCode> {
    let config = load_config(path)?;
    init_logging(&config.log_level);
    let runtime = runtime()?;
    runtime.block_on(async {
        match server::serve(config, server::shutdown_signal()).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                tracing::error!(error = %e, "storage-host stopped");
                eprintln!("error: {e}");
                Err(ExitCode::from(2))
            }
        }
    })
}

enum OneShot {
    Get(String),
    Put(String, Vec<u8>),
    Delete(String),
    List(String),
}

/// One operation against the config's backends, in-process. A durable
/// store is locked by a running `serve`: use the HTTP API then.
fn one_shot(path: &Path, op: OneShot) -> Result<ExitCode, ExitCode> {
    let config = load_config(path)?;
    init_logging("warn");
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let (key, what) = match &op {
        OneShot::Get(k) | OneShot::Put(k, _) | OneShot::Delete(k) => (k.as_str(), "key"),
        OneShot::List(p) => (p.as_str(), "prefix"),
    };
    if what == "key" && key.is_empty() {
        eprintln!("error: the key is empty");
        return Err(ExitCode::from(2));
    }
    if let Err(e) = server::check_key(key, what) {
        eprintln!("error: {}", e.message);
        return Err(ExitCode::from(2));
    }
    let runtime = runtime()?;
    runtime.block_on(async {
        let host = Host::start(&config, false).await.map_err(|e| {
            eprintln!("error: {e}");
            let durable = config
                .backends
                .iter()
                .any(|b| matches!(b.storage_config, StorageConfig::Local { path: Some(_) }));
            if durable {
                eprintln!(
                    "note: a running `storage-host serve` holds its durable stores open; use its HTTP API instead"
                );
            }
            ExitCode::from(2)
        })?;
        let m = host.manager();
        let result = match op {
            OneShot::Get(key) => m.get(&key).await.map(|v| match v {
                Some(v) => {
                    let mut out = std::io::stdout().lock();
                    if out.write_all(&v).and_then(|()| out.flush()).is_err() {
                        return ExitCode::from(2);
                    }
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("not found: {}", storage_plugin_api::ShownKey::new(&key));
                    ExitCode::from(1)
                }
            }),
            OneShot::Put(key, value) => m.put(&key, value).await.map(|()| ExitCode::SUCCESS),
            OneShot::Delete(key) => m.delete(&key).await.map(|()| ExitCode::SUCCESS),
            OneShot::List(prefix) => list_keys(m, &prefix).await,
        };
        // Flush durable stores before exiting, whatever happened.
        host.shutdown().await;
        result.map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })
    })
}

/// Prints every key under `prefix`, one page at a time: memory stays
/// bounded by a page however many keys match.
async fn list_keys(
    m: &storage_host::StorageManager,
    prefix: &str,
) -> Result<ExitCode, storage_host::ManagerError> {
    const PAGE: usize = 1000;
    let mut after: Option<String> = None;
    loop {
        let page = m.list_page(prefix, after.as_deref(), PAGE).await?;
        let mut out = std::io::stdout().lock();
        for k in &page.keys {
            if writeln!(out, "{k}").is_err() {
                return Ok(ExitCode::from(2));
            }
        }
        match page.next_after() {
            Some(last) => after = Some(last.to_owned()),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn plugins(command: PluginsCommand, verbose: bool) -> ExitCode {
    match command {
        PluginsCommand::Inspect { file } => inspect(&file, verbose),
        PluginsCommand::List { dir } => list(&dir, verbose),
        PluginsCommand::Watch { dir } => watch(&dir),
    }
}

fn print_error(e: &loader::LoadError, verbose: bool) {
    eprintln!("rejected: {e}");
    if let LoadFailure::LayoutMismatch { report, .. } = &e.reason {
        if verbose {
            eprintln!("{report}");
        } else {
            eprintln!("  (--verbose shows abi_stable's full layout report)");
        }
    }
}

fn inspect(file: &std::path::Path, verbose: bool) -> ExitCode {
    match loader::load_plugin(file) {
        Ok(p) => {
            println!("file:        {}", file.display());
            println!("name:        {}", p.name());
            println!("version:     {}", p.version());
            println!("plugin-api:  {}", p.api_version().unwrap_or("?"));
            println!("description: {}", p.description());
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e, verbose);
            ExitCode::FAILURE
        }
    }
}

fn list(dir: &std::path::Path, verbose: bool) -> ExitCode {
    match loader::load_dir(dir) {
        Ok((_, report)) => {
            for (path, info) in &report.loaded {
                let line = loader::ReportLine::Loaded {
                    plugin: &info.name,
                    version: &info.version,
                    file: path,
                };
                println!(
                    "{line} (plugin-api {}): {}",
                    info.api_version.as_deref().unwrap_or("?"),
                    info.description
                );
            }
            // Another file provides the same plugin name: not an error (it
            // takes over when that file goes), but it is not used.
            let (shadowed, rejected): (Vec<_>, Vec<_>) = report
                .rejected
                .iter()
                .partition(|r| matches!(r.error.reason, LoadFailure::Shadowed { .. }));
            for r in &shadowed {
                let line = loader::ReportLine::Shadowed {
                    file: &r.path,
                    reason: &r.error.reason,
                };
                println!("{line}");
            }
            for r in &rejected {
                print_error(&r.error, verbose);
            }
            if report.loaded.is_empty() && report.rejected.is_empty() {
                println!(
                    "no plugin libraries (.so, .dylib, .dll) in {}",
                    dir.display()
                );
            }
            if rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn watch(dir: &std::path::Path) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let manager = StorageManager::with_registry(StorageRegistry::new());
        let mut watcher = match manager.watch_plugins(dir, WatchOptions::default()).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        print!("{}", watcher.initial_report());
        println!("watching {} (Ctrl-C to stop)", dir.display());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        loop {
            tokio::select! {
                event = watcher.next_event() => match event {
                    Some(e) => {
                        println!("{e}");
                        let _ = std::io::stdout().flush();
                    }
                    None => return ExitCode::SUCCESS,
                },
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}
