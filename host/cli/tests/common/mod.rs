//! Helpers shared by the `serve_*` tests: the real `storage-host` binary
//! started on a config file, its plugins directory, and small HTTP helpers.
//!
//! Each test file uses only some of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use storage_test_support::{library_file_name, plugin_library};

pub const BIN: &str = env!("CARGO_BIN_EXE_storage-host");

pub fn v1() -> PathBuf {
    plugin_library("storage-local-plugin", "storage_local_plugin")
}

pub fn v2() -> PathBuf {
    plugin_library("local-v2-plugin", "local_v2_plugin")
}

/// Replaces `dest` with `src` as a deployment would: copy beside, rename over.
pub fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// A plugins directory with the local plugin (v1) in it.
pub fn plugins_dir(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    install(&v1(), &dir.join(library_file_name("storage_local_plugin")));
    dir
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn enc(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A running `storage-host serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let log = config.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start storage-host");
        // The server prints its address once bound (the config asks for port 0).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "storage-host did not start:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };
        Server { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no exit 30 s after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_string(),
    )
}

pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("storage-host.toml");
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\nlog_level = \"info\"\n{body}"),
    )
    .unwrap();
    path
}
