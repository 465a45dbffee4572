//! Replays the fuzzing corpora (`fuzz/corpus/<target>/`, crash inputs
//! included) through the same property checks the cargo-fuzz targets run, so
//! everything fuzzing found keeps being checked on stable Rust, in CI.
//! How to fuzz: `fuzz/README.md`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use storage_fuzz_checks::{Check, TARGETS};

fn replay(target: &str, check: Check) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read an input");
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs violate a property (the panics above say which):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn plugin_config() {
    replay("plugin_config", target("plugin_config"));
}

#[test]
fn supabase_key() {
    replay("supabase_key", target("supabase_key"));
}

#[test]
fn redis_key() {
    replay("redis_key", target("redis_key"));
}

#[test]
fn http_request() {
    replay("http_request", target("http_request"));
}

fn target(name: &str) -> Check {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no check for {name}"))
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in TARGETS {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(name)
                .is_dir(),
            "fuzz/corpus/{name} is missing"
        );
    }
}
