//! Test helpers shared by the workspace's integration tests.
//!
//! Tests load plugins as real dynamic libraries. They must not rely on a
//! previous build, so [`plugin_library`] builds the plugin crate with the same
//! cargo, profile and target directory as the test itself (a no-op when it is
//! already built) and returns the path of the library.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub mod history;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support is two levels below the root")
        .to_path_buf()
}

/// The target directory tests and their builds share.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                workspace_root().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Whether this test binary was built in release mode.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The file name of the dynamic library of crate `lib_name` on this platform.
pub fn library_file_name(lib_name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        lib_name,
        std::env::consts::DLL_SUFFIX
    )
}

/// Builds workspace package `package` (a cdylib whose library is named
/// `lib_name`) and returns the path of its library.
pub fn plugin_library(package: &str, lib_name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let path = target_dir()
        .join(profile())
        .join(library_file_name(lib_name));
    if !built.iter().any(|p| p == package) {
        cargo_build(&workspace_root().join("Cargo.toml"), &["-p", package]);
        built.push(package.to_string());
    }
    assert!(
        path.is_file(),
        "building {package} did not produce {}",
        path.display()
    );
    path
}

/// Runs `cargo build` on `manifest` with extra `args`, in this test's profile
/// and the shared target directory. Panics with cargo's output on failure.
pub fn cargo_build(manifest: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir());
    if profile() == "release" {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build {} {:?} failed:\n{}",
        manifest.display(),
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The local Supabase stack `scripts/supabase-local.sh` runs: where it is,
/// and keys signed with its JWT secret like Supabase's anon and service_role keys.
pub mod supabase {
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// The JWT secret the script configures PostgREST with (a test secret).
    pub const JWT_SECRET: &str = "storage-host-local-test-jwt-secret-0123456789";
    /// The gateway of the `main` PostgREST instance.
    pub const GATEWAY: &str = "127.0.0.1:54321";

    /// `http://` + `addr`, after checking something listens there; fails the
    /// test with what to do otherwise.
    pub fn require(addr: &str) -> String {
        let sock: SocketAddr = addr.parse().expect("a socket address");
        if let Err(e) = TcpStream::connect_timeout(&sock, Duration::from_secs(2)) {
            panic!(
                "the local Supabase REST gateway is not reachable at {addr} ({e}); start it with `scripts/supabase-local.sh` (PostgreSQL + PostgREST 12.0.2 + nginx) and run the tests again"
            );
        }
        format!("http://{addr}")
    }

    /// The URL of the main gateway, checked.
    pub fn url() -> String {
        require(GATEWAY)
    }

    /// An HS256 JWT for `role`, signed with `secret`, expiring `ttl_secs` from
    /// now (negative: already expired).
    pub fn sign_jwt(secret: &str, role: &str, ttl_secs: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"supabase-local","role":"{role}","iat":{},"exp":{}}}"#,
            now.min(now + ttl_secs),
            now + ttl_secs
        ));
        let signing_input = format!("{header}.{claims}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// A valid anon key for the local stack.
    pub fn anon_key() -> String {
        sign_jwt(JWT_SECRET, "anon", 3600)
    }

    /// A valid service_role key for the local stack.
    pub fn service_key() -> String {
        sign_jwt(JWT_SECRET, "service_role", 3600)
    }

    /// The configuration of a backend on the local stack's `public.storage`
    /// table, with the service-role key (checked reachable, see [`url()`]).
    pub fn local_config(timeout: u64, max_retries: u32) -> storage_host::StorageConfig {
        storage_host::StorageConfig::Supabase {
            url: url(),
            anon_key: anon_key(),
            service_role_key: Some(service_key()),
            schema: "public".into(),
            table_name: "storage".into(),
            timeout,
            max_retries,
        }
    }
}
