//! `storage-host`: inspect plugins, and run the storage host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storage_host::loader::{self, LoadFailure};
use storage_host::plugin::StoragePlugin;
use storage_host::watch::WatchOptions;
use storage_host::{StorageManager, StorageRegistry};

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
    /// Work with plugin libraries.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Plugins { command } => match command {
            PluginsCommand::Inspect { file } => inspect(&file, cli.verbose),
            PluginsCommand::List { dir } => list(&dir, cli.verbose),
            PluginsCommand::Watch { dir } => watch(&dir),
        },
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
                println!(
                    "loaded    {}  {} {} (plugin-api {}): {}",
                    path.display(),
                    info.name,
                    info.version,
                    info.api_version.as_deref().unwrap_or("?"),
                    info.description
                );
            }
            for r in &report.rejected {
                print_error(&r.error, verbose);
            }
            if report.loaded.is_empty() && report.rejected.is_empty() {
                println!("no plugin libraries (.so, .dylib, .dll) in {}", dir.display());
            }
            if report.rejected.is_empty() {
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
