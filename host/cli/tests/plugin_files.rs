//! Plugin files as an attacker or a hurried user leaves them: a truncated
//! library, symlinks and foreign directories planted in `$TMPDIR`, two
//! files claiming one plugin name, a `serve` stopped with SIGTERM. What the
//! host must do is in RELIABILITY.md ("Plugin files under abuse").

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use storage_host::StorageConfig;
use storage_host::loader::{self, PRIVATE_DIR_PREFIX};
use storage_host::plugin::{PluginSource, StoragePlugin};
use storage_host_cli::server::Host;
use storage_host_cli::server::config::HostConfig;
use storage_test_support::{TempDir, plugin_library};
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_storage-host");

fn v1() -> PathBuf {
    plugin_library("storage-local-plugin", "storage_local_plugin")
}

fn v2() -> PathBuf {
    plugin_library("local-v2-plugin", "local_v2_plugin")
}

/// Replaces `dest` with `src` as a deployment would: copy beside, rename over.
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

#[cfg(unix)]
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Before the host starts, a local user plants, in `$TMPDIR`, a symlink at
/// the name the host used to use (`storage-host-plugins-<pid>`, planted by
/// a shell that then `exec`s the host, so the pid is the host's) pointing
/// to a directory of theirs (owned by `nobody`, world-writable) full of
/// symlinks to a mode-600 file of the host's user; and a `nobody`-owned
/// directory with the prefix the host uses now. `plugins inspect` must
/// write through none of them: the victim file is unchanged, the planted
/// directories hold nothing new, and nothing of the host's is left in
/// `$TMPDIR` after it exits.
#[cfg(unix)]
#[test]
fn planted_symlinks_and_foreign_directories_in_tmpdir_change_nothing() {
    use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};

    let root = my_uid() == 0;
    let nobody = 65534;
    let work = TempDir::new("planted");
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let victim = work.path().join("secret");
    std::fs::write(&victim, b"the host user's secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();

    let attacker = work.path().join("attacker");
    std::fs::create_dir(&attacker).unwrap();
    let mut planted = Vec::new();
    for n in 0..64 {
        let link = attacker.join(format!("libstorage_local_plugin-{n}.so"));
        symlink(&victim, &link).unwrap();
        planted.push(link);
    }
    std::fs::set_permissions(&attacker, std::fs::Permissions::from_mode(0o777)).unwrap();
    let foreign = tmp.join(format!("{PRIVATE_DIR_PREFIX}planted"));
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o777)).unwrap();
    if root {
        chown(&attacker, Some(nobody), Some(nobody)).unwrap();
        chown(&foreign, Some(nobody), Some(nobody)).unwrap();
        for link in &planted {
            lchown(link, Some(nobody), Some(nobody)).unwrap();
        }
    }

    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let lib = plugins.join("libstorage_local_plugin.so");
    install(&v1(), &lib);
    // The shell plants the symlink under its own pid, then becomes the host.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ln -s \"$1\" \"$TMPDIR/{PRIVATE_DIR_PREFIX}$$\" && exec \"$0\" plugins inspect \"$2\""
        ))
        .arg(BIN)
        .arg(&attacker)
        .arg(&lib)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("name:        local"),
        "{out:?}"
    );

    let now = std::fs::read(&victim).unwrap();
    assert!(
        now == b"the host user's secret",
        "the victim file was overwritten through a planted symlink (now {} bytes)",
        now.len()
    );
    planted.sort();
    assert_eq!(
        entries(&attacker),
        planted,
        "nothing new in the attacker's directory"
    );
    assert_eq!(entries(&foreign), Vec::<PathBuf>::new());
    let left: Vec<PathBuf> = entries(&tmp)
        .into_iter()
        .filter(|p| p != &foreign)
        .collect();
    assert_eq!(left.len(), 1, "only the planted symlink is left: {left:?}");
    assert!(
        std::fs::symlink_metadata(&left[0])
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        root,
        "the symlink part passed; the foreign-owned part needs root (chown to nobody): run the tests as root, as CI does"
    );
}

/// In-process: the private directory is the loader's own (a fresh name,
/// 0700, owned by this user, not a symlink), the copy is gone once mapped,
/// and the mapping of the deleted copy serves.
#[cfg(unix)]
#[test]
fn the_private_directory_is_fresh_and_closed_and_copies_are_unlinked() {
    use std::os::unix::fs::MetadataExt;

    let plugins = TempDir::new("private-dir");
    let lib = plugins.path().join("libstorage_local_plugin.so");
    install(&v1(), &lib);
    let plugin = loader::load_plugin(&lib).expect("the plugin loads");
    let PluginSource::Library { loaded_from, .. } = plugin.source() else {
        panic!("a library plugin")
    };
    assert!(!loaded_from.exists(), "the copy is unlinked once mapped");
    let private = loaded_from.parent().unwrap().to_path_buf();
    assert_eq!(loader::private_dir_path(), Some(private.clone()));
    assert!(
        private.starts_with(std::env::temp_dir()),
        "{}",
        private.display()
    );
    assert_ne!(
        private,
        std::env::temp_dir().join(format!("{PRIVATE_DIR_PREFIX}{}", std::process::id())),
        "not the predictable name"
    );
    let meta = std::fs::symlink_metadata(&private).unwrap();
    assert!(meta.is_dir() && !meta.file_type().is_symlink());
    assert_eq!(meta.uid(), my_uid());
    assert_eq!(meta.mode() & 0o777, 0o700);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = plugin
            .create(&StorageConfig::Local { path: None })
            .await
            .unwrap();
        backend.put("k", b"v".to_vec()).await.unwrap();
        assert_eq!(backend.get("k").await.unwrap(), Some(b"v".to_vec()));
    });
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("storage-host.toml");
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\nlog_level = \"info\"\n{body}"),
    )
    .unwrap();
    path
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// `serve` with its own `$TMPDIR`: while it runs, one private directory
/// with no copy in it (each is unlinked once mapped, a hot swap included);
/// after SIGTERM, nothing at all. `plugins inspect` and `plugins list` leave
/// nothing either.
#[cfg(unix)]
#[test]
fn no_private_copies_are_left_after_exit_or_sigterm() {
    let root = TempDir::new("copies-serve");
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let lib = plugins.join("libstorage_local_plugin.so");
    install(&v1(), &lib);
    let config = write_config(
        root.path(),
        "plugins_dir = \"plugins\"\n[[backends]]\nname = \"m\"\nstorage_config = { type = \"local\" }\n",
    );
    let log = root.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("TMPDIR", &tmp)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening on ") => break,
            Some(_) => {}
            None => panic!(
                "serve did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }
    let running = entries(&tmp);
    assert_eq!(running.len(), 1, "one private directory: {running:?}");
    assert!(
        running[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(PRIVATE_DIR_PREFIX)
    );
    assert_eq!(entries(&running[0]), Vec::<PathBuf>::new(), "no copy kept");

    install(&v2(), &lib);
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("swapped  local 0.1.0 -> 0.1.0+v2")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no swap:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        entries(&running[0]),
        Vec::<PathBuf>::new(),
        "no copy kept after a swap"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        entries(&tmp),
        Vec::<PathBuf>::new(),
        "nothing left after SIGTERM"
    );

    for args in [
        vec!["plugins", "inspect", lib.to_str().unwrap()],
        vec!["plugins", "list", plugins.to_str().unwrap()],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(entries(&tmp), Vec::<PathBuf>::new(), "{args:?} left files");
    }
}

async fn get_json(router: &axum::Router, uri: &str) -> Value {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{uri}: {}",
        response.status()
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The provider of plugin `local` per `/v1/plugins` (file name, version),
/// after checking that `/v1/backends` runs the same version.
async fn local_as_the_api_sees_it(router: &axum::Router) -> (String, String) {
    let plugins = get_json(router, "/v1/plugins").await;
    let backends = get_json(router, "/v1/backends").await;
    let local: Vec<&Value> = plugins["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "local")
        .collect();
    assert_eq!(local.len(), 1, "{plugins:#}");
    let version = local[0]["version"].as_str().unwrap().to_string();
    let file = local[0]["file"].as_str().unwrap_or("").to_string();
    let m = &backends["backends"][0];
    assert_eq!(m["name"], "m");
    assert_eq!(
        m["plugin_version"].as_str().unwrap(),
        version,
        "/v1/plugins and /v1/backends agree: {plugins:#} {backends:#}"
    );
    let file = Path::new(&file)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    (file, version)
}

/// Waits (bounded) until the API shows `local` provided by `file`.
async fn until_provided_by(router: &axum::Router, file: &str) -> String {
    let started = Instant::now();
    loop {
        let (f, v) = local_as_the_api_sees_it(router).await;
        if f == file {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "local still provided by {f}, not {file}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two files of the plugins directory provide `local`: the API shows the
/// first (by file name) as the provider and the second as not used;
/// deleting the second changes nothing; deleting the first hands the plugin
/// to the second. `/v1/plugins` and `/v1/backends` agree at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_plugins_and_backends_follow_the_rule_for_two_files() {
    let root = TempDir::new("api-two-files");
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let (a, b) = (plugins.join("liba.so"), plugins.join("libb.so"));
    install(&v1(), &a);
    install(&v2(), &b);
    let text = "listen = \"127.0.0.1:0\"\nplugins_dir = \"plugins\"\n[[backends]]\nname = \"m\"\nstorage_config = { type = \"local\" }\n";
    let config = HostConfig::from_toml_str(text, root.path()).unwrap();
    let host = Host::start(&config, true).await.unwrap();
    let router = host.router(&config);

    assert_eq!(
        local_as_the_api_sees_it(&router).await,
        ("liba.so".to_string(), "0.1.0".to_string())
    );
    let listed = get_json(&router, "/v1/plugins").await;
    let rejected = listed["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{listed:#}");
    assert!(rejected[0]["file"].as_str().unwrap().ends_with("libb.so"));
    assert!(
        rejected[0]["reason"].as_str().unwrap().contains("not used"),
        "{listed:#}"
    );

    // Delete the second: the first still provides the plugin.
    std::fs::remove_file(&b).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        local_as_the_api_sees_it(&router).await,
        ("liba.so".to_string(), "0.1.0".to_string())
    );

    // Put it back (and wait until the watcher has seen it: a second "not
    // used" event for it), then delete the first: the second takes over.
    install(&v2(), &b);
    let started = Instant::now();
    loop {
        let listed = get_json(&router, "/v1/plugins").await;
        let seen = listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["event"] == "rejected" && e["file"].as_str().unwrap_or("").ends_with("libb.so")
            })
            .count();
        if seen == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "libb.so not seen again: {listed:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        local_as_the_api_sees_it(&router).await,
        ("liba.so".to_string(), "0.1.0".to_string())
    );
    std::fs::remove_file(&a).unwrap();
    assert_eq!(until_provided_by(&router, "libb.so").await, "0.1.0+v2");
    host.shutdown().await;
}
