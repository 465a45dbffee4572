//! Helpers shared by the Redis tests: the shared server, unique namespaces,
//! a raw client, and private `redis-server` processes a test owns.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use storage_redis::RedisConfig;
use storage_test_support::TempDir;

/// The shared development server (override with `REDIS_URL`).
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// How to get the shared server running, for failure messages.
pub const START_REDIS: &str = "start it with `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no` (or run `.ci/run`, which starts it), or point REDIS_URL at a server";

/// The URL of the shared server after checking it answers; panics with how
/// to start it otherwise.
pub async fn require_shared_redis() -> String {
    let url = shared_url();
    let result = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(3), result).await {
        Ok(Ok(_)) => url,
        Ok(Err(e)) => panic!("these tests need Redis at {url}, which failed: {e}; {START_REDIS}"),
        Err(_) => panic!(
            "these tests need Redis at {url}, which did not answer within 3 s; {START_REDIS}"
        ),
    }
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "storage-redis-test:{test}:{}:{nanos}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration for `url` in namespace `prefix`. Keys expire after five
/// minutes so that a failed test does not leave garbage behind for long.
pub fn config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        key_prefix: prefix.to_string(),
        ttl_seconds: Some(300),
        ..RedisConfig::new(url)
    }
}

/// A plain connection to `url`, bypassing the plugin.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("valid url");
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection to {url}: {e}; {START_REDIS}"))
}

/// Deletes every key of namespace `prefix` on `url`.
pub async fn cleanup(url: &str, prefix: &str) {
    let mut conn = raw(url).await;
    let pattern = format!("{}*", storage_redis::escape_glob(prefix));
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The `redis-server` binary, when installed.
pub fn redis_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A `redis-server` process owned by a test: no persistence, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: TempDir,
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port with `extra` arguments; `None` (and a
    /// note on stderr) when `redis-server` is not installed.
    pub fn start(extra: &[&str]) -> Option<Self> {
        Self::start_on(free_port(), extra, false)
    }

    /// Starts a server that speaks only TLS on a free port (`extra` names
    /// the certificate files).
    pub fn start_tls(extra: &[&str]) -> Option<Self> {
        Self::start_on(free_port(), extra, true)
    }

    /// Starts a server on `port`.
    pub fn start_on(port: u16, extra: &[&str], tls: bool) -> Option<Self> {
        // A test that needs its own server fails, never skips, without one.
        assert!(
            redis_server_binary().is_some(),
            "this test runs its own Redis and needs `redis-server` on PATH: apt-get install redis-server (scripts/services.sh does)"
        );
        let dir = TempDir::new("storage-redis-server");
        let mut server = RedisServer {
            child: None,
            port,
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            tls,
        };
        server.spawn();
        Some(server)
    }

    /// The directory the server runs in (for sockets and certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let port = self.port.to_string();
        // With TLS the plain port is off.
        let port_args: Vec<&str> = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        let child = Command::new("redis-server")
            .args(&port_args)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "redis-server on port {} exited ({status}):\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not start within 10 s",
            self.port
        );
    }

    /// Whether the server accepts connections (and, without TLS, answers a
    /// PING, with PONG or an authentication error).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-') && !buf[..n].starts_with(b"-LOADING"))
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Awaits `f` and returns its output and how long it took.
pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}
