//! `storage-host plugins inspect|list`: what users see, and exit codes.

use std::path::PathBuf;
use std::process::Command;

use storage_test_support::{TempDir, library_file_name, plugin_library};

mod common;

use common::{BIN, plugins_dir};

fn storage_host() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_storage-host"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(storage_host()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_prints_the_plugin_or_the_reason() {
    let lib = plugin_library("storage-local-plugin", "storage_local_plugin");
    let (ok, out, _) = run(&["plugins", "inspect", lib.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("name:        local"), "{out}");
    assert!(out.contains("plugin-api:  0.1.0"), "{out}");
    assert!(out.contains("description: Local storage"), "{out}");

    let bad = plugin_library("incompatible-layout-plugin", "incompatible_layout_plugin");
    let (ok, _, err) = run(&["plugins", "inspect", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("incompatible plugin-api"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "one line by default: {err}");
    let (ok, _, err) = run(&["--verbose", "plugins", "inspect", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.lines().count() > 50, "--verbose shows the full report");
}

#[test]
fn list_reports_each_file() {
    let dir = TempDir::new("cli-list");
    std::fs::copy(
        plugin_library("storage-local-plugin", "storage_local_plugin"),
        dir.path().join("liblocal.so"),
    )
    .unwrap();
    let (ok, out, _) = run(&["plugins", "list", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("liblocal.so") && out.contains("local 0.1.0"),
        "{out}"
    );

    std::fs::write(dir.path().join("broken.so"), b"garbage").unwrap();
    let (ok, out, err) = run(&["plugins", "list", dir.path().to_str().unwrap()]);
    assert!(!ok, "a rejected file makes the exit code non-zero");
    assert!(out.contains("liblocal.so"), "{out}");
    assert!(
        err.contains("broken.so") && err.contains("not a loadable library"),
        "{err}"
    );
}

/// A library cut to 1/20 of its size: `plugins inspect` and `plugins list`
/// refuse it with the file and the reason, and exit with status 1, not a
/// signal (the dynamic linker used to map it, and the process died with
/// SIGBUS).
#[test]
fn a_truncated_library_is_refused_not_a_crash() {
    let dir = TempDir::new("cli-truncated");
    let bytes = std::fs::read(plugin_library(
        "storage-local-plugin",
        "storage_local_plugin",
    ))
    .unwrap();
    let cut = dir.path().join("libcut.so");
    std::fs::write(&cut, &bytes[..bytes.len() / 20]).unwrap();
    for args in [
        ["plugins", "inspect", cut.to_str().unwrap()],
        ["plugins", "list", dir.path().to_str().unwrap()],
    ] {
        let out = Command::new(storage_host()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: exit status 1, not a signal: {:?} {err}",
            out.status
        );
        assert!(
            err.contains("libcut.so") && err.contains("truncated"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

/// Two files providing plugin `local`: `plugins list` shows the one whose
/// name sorts first as loaded and the other as shadowed (not an error).
#[test]
fn list_shows_which_file_provides_a_plugin_name() {
    let dir = TempDir::new("cli-two-files");
    std::fs::copy(
        plugin_library("storage-local-plugin", "storage_local_plugin"),
        dir.path().join("liba.so"),
    )
    .unwrap();
    std::fs::copy(
        plugin_library("local-v2-plugin", "local_v2_plugin"),
        dir.path().join("libb.so"),
    )
    .unwrap();
    let (ok, out, err) = run(&["plugins", "list", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let loaded: Vec<&str> = out.lines().filter(|l| l.starts_with("loaded")).collect();
    assert_eq!(loaded.len(), 1, "{out}");
    assert!(
        loaded[0].contains("liba.so") && loaded[0].contains("local 0.1.0"),
        "{out}"
    );
    let shadowed: Vec<&str> = out.lines().filter(|l| l.starts_with("shadowed")).collect();
    assert_eq!(shadowed.len(), 1, "{out}");
    assert!(
        shadowed[0].contains("libb.so")
            && shadowed[0].contains("provided by")
            && shadowed[0].contains("liba.so"),
        "{out}"
    );
}

#[test]
fn plugins_subcommands_still_work() {
    let root = TempDir::new("serve-plugins-cli");
    let dir = plugins_dir(root.path());
    let out = Command::new(BIN)
        .args(["plugins", "list"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("local 0.1.0"));
    let out = Command::new(BIN)
        .args(["plugins", "inspect"])
        .arg(dir.join(library_file_name("storage_local_plugin")))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("name:        local"));
}
