//! `storage-host serve` on configs that must be refused: exit code 2, no
//! listening, and a message naming the field at fault.

mod common;

use std::path::Path;
use std::process::Command;

use storage_test_support::TempDir;

use common::*;

/// Runs `serve` on a config that must be refused; returns stderr.
fn refused(dir: &Path, body: &str) -> String {
    let config = write_config(dir, body);
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("STORAGE_HOST_UNSET_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "refused with exit 2:\n{stderr}");
    assert!(out.stdout.is_empty(), "never started listening");
    stderr
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let root = TempDir::new("serve-bad-config");
    let mem = "[[backends]]\nname = \"memory\"\nstorage_config = { type = \"local\" }\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{mem}[[backends]]\nname = \"disk\"\nstorage_config = {{ type = \"local\", path = \"\" }}\n"
            ),
            "backends[1].storage_config.path: ",
        ),
        (
            format!("{mem}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"lokal\" }}\n"),
            "backends[1].storage_config.type: ",
        ),
        (
            format!(
                "{mem}[[backends]]\nname = \"memory\"\nstorage_config = {{ type = \"local\" }}\n"
            ),
            "backends[1].name: ",
        ),
        (
            format!(
                "{mem}[policy]\ntype = \"first_available\"\nbackends = [\"memory\", \"disk\"]\n"
            ),
            "policy.backends[1]: ",
        ),
        (format!("{mem}[auth]\ntoken = \"inline\"\n"), "auth.token: "),
        (
            format!("{mem}[auth]\ntoken_env = \"STORAGE_HOST_UNSET_TOKEN\"\n"),
            "auth.token_env: ",
        ),
        (
            format!("max_body_size = \"lots\"\n{mem}"),
            "max_body_size: ",
        ),
        (
            format!("plugins_dir = \"no-such-dir\"\n{mem}"),
            "plugins_dir: ",
        ),
        (
            format!("lisen = \"127.0.0.1:1\"\n{mem}"),
            "lisen: unknown field",
        ),
        (String::new(), "backends: "),
        ("[[backends]\n".to_string(), "not valid TOML"),
    ];
    for (body, expected) in cases {
        let stderr = refused(root.path(), &body);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    // Valid config, impossible backend: refused at start, naming the backend.
    let stderr = refused(
        root.path(),
        &format!(
            "{mem}[[backends]]\nname = \"other\"\nstorage_config = {{ type = \"custom\", plugin_name = \"nope\" }}\n"
        ),
    );
    assert!(
        stderr.contains("backends[1] (\"other\"): plugin 'nope' not found"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/storage-host.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/storage-host.toml")
    );
}
