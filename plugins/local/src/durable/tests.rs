//! Unit tests of the durable store, through its own API.

use std::sync::Arc;

use storage_plugin_api::ErrorKind;
use storage_test_support::TempDir;

use super::*;

fn store_file(dir: &TempDir) -> PathBuf {
    dir.path().join("db").join(STORE_FILE_NAME)
}

async fn open(dir: &TempDir) -> DurableBackend {
    DurableBackend::open(dir.path().join("db"))
        .await
        .expect("open")
}

#[tokio::test]
async fn put_get_delete_list() {
    let dir = TempDir::new("durable-basic");
    let s = open(&dir).await;
    assert_eq!(s.get("a").await.unwrap(), None);
    s.put("a", b"1".to_vec()).await.unwrap();
    s.put("empty", Vec::new()).await.unwrap();
    s.put("ünï/кей/🔑", vec![0, 255, 7]).await.unwrap();
    s.put("", b"empty key".to_vec()).await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get("empty").await.unwrap(), Some(Vec::new()));
    assert_eq!(s.get("ünï/кей/🔑").await.unwrap(), Some(vec![0, 255, 7]));
    assert_eq!(s.get("").await.unwrap(), Some(b"empty key".to_vec()));
    s.put("a", b"2".to_vec()).await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), Some(b"2".to_vec()));
    s.delete("a").await.unwrap();
    s.delete("a").await.unwrap(); // a missing key is fine
    s.delete("never-there").await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), None);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_is_a_prefix_range_in_byte_order() {
    let dir = TempDir::new("durable-list");
    let s = open(&dir).await;
    for k in [
        "b",
        "ab",
        "a",
        "abc",
        "aa",
        "ab\u{0}",
        "ab\u{10FFFF}",
        "abd",
        "B",
    ] {
        s.put(k, vec![]).await.unwrap();
    }
    assert_eq!(
        s.list("ab").await.unwrap(),
        vec!["ab", "ab\u{0}", "abc", "abd", "ab\u{10FFFF}"]
    );
    assert_eq!(
        s.list("").await.unwrap(),
        vec![
            "B",
            "a",
            "aa",
            "ab",
            "ab\u{0}",
            "abc",
            "abd",
            "ab\u{10FFFF}",
            "b"
        ]
    );
    assert!(s.list("z").await.unwrap().is_empty());
    s.delete("abc").await.unwrap();
    assert_eq!(s.list("abc").await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn data_survives_shutdown_and_drop() {
    let dir = TempDir::new("durable-persist");
    let s = open(&dir).await;
    s.put("k1", b"v1".to_vec()).await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);

    let s = open(&dir).await;
    assert_eq!(s.get("k1").await.unwrap(), Some(b"v1".to_vec()));
    s.put("k2", b"v2".to_vec()).await.unwrap();
    drop(s); // no shutdown: dropping closes the file too

    let s = open(&dir).await;
    assert_eq!(s.get("k1").await.unwrap(), Some(b"v1".to_vec()));
    assert_eq!(s.get("k2").await.unwrap(), Some(b"v2".to_vec()));
}

#[tokio::test]
async fn after_shutdown_every_operation_is_unavailable() {
    let dir = TempDir::new("durable-closed");
    let s = open(&dir).await;
    s.put("k", b"v".to_vec()).await.unwrap();
    s.shutdown().await.unwrap();
    s.shutdown().await.unwrap(); // idempotent
    for e in [
        s.get("k").await.unwrap_err(),
        s.put("k", vec![]).await.unwrap_err(),
        s.delete("k").await.unwrap_err(),
        s.list("").await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains("shut down"), "{e}");
    }
}

#[tokio::test]
async fn a_directory_serves_one_backend_until_it_shuts_down() {
    let dir = TempDir::new("durable-twice");
    let first = open(&dir).await;
    first.put("k", b"v".to_vec()).await.unwrap();
    let started = std::time::Instant::now();
    let e = DurableBackend::open(dir.path().join("db"))
        .await
        .err()
        .expect("second open refused");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "refusal must be fast"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(
        e.message()
            .contains(&dir.path().join("db").display().to_string()),
        "{e}"
    );
    assert!(
        e.message()
            .contains("already used by another durable backend in this process"),
        "{e}"
    );
    // The refused open must not disturb the first instance.
    assert_eq!(first.get("k").await.unwrap(), Some(b"v".to_vec()));
    first.put("k2", b"v2".to_vec()).await.unwrap();

    // Another spelling of the same directory is the same directory.
    let other_spelling = dir.path().join("db").join("..").join("db");
    assert!(DurableBackend::open(other_spelling).await.is_err());

    first.shutdown().await.unwrap();
    let second = open(&dir).await;
    assert_eq!(second.get("k2").await.unwrap(), Some(b"v2".to_vec()));
}

#[tokio::test]
async fn the_file_lock_refuses_another_copy_of_the_plugin() {
    // Another copy of the plugin library (a hot swap) has its own claim
    // registry; what stops it is redb's lock on the file. Opening the file
    // with redb directly stands in for that copy.
    let dir = TempDir::new("durable-lock");
    let s = open(&dir).await;
    let raw = redb::Database::create(store_file(&dir));
    assert!(
        matches!(raw, Err(redb::DatabaseError::DatabaseAlreadyOpen)),
        "{:?}",
        raw.err()
    );
    s.shutdown().await.unwrap();
    drop(redb::Database::create(store_file(&dir)).expect("the lock is released by shutdown"));
}

#[tokio::test]
async fn a_file_where_the_directory_should_be_is_refused() {
    let dir = TempDir::new("durable-file");
    let path = dir.path().join("plain-file");
    std::fs::write(&path, b"not a dir").unwrap();
    let e = DurableBackend::open(&path).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(
        e.message()
            .contains(&format!("'{}' is a file, not a directory", path.display())),
        "{e}"
    );
    // A file as a parent component.
    let below = path.join("sub");
    let e = DurableBackend::open(&below).await.err().unwrap();
    assert!(e.message().contains(&below.display().to_string()), "{e}");
    assert!(e.message().contains("is a file"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a dir");
}

#[cfg(unix)]
#[tokio::test]
async fn a_directory_that_is_not_writable_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("durable-ro");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root (CAP_DAC_OVERRIDE) writes through mode bits; the immutable
    // attribute stops root too, so the test runs either way.
    let immutable = std::fs::write(ro.join("probe"), b"").is_ok();
    if immutable {
        std::fs::remove_file(ro.join("probe")).unwrap();
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&ro)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "running with CAP_DAC_OVERRIDE: this test makes the directory immutable with `chattr +i` (e2fsprogs, on ext4/xfs); that failed"
        );
    }
    let e = DurableBackend::open(&ro).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.message().contains(&ro.display().to_string()), "{e}");
    let e = DurableBackend::open(ro.join("sub")).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    if immutable {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&ro)
            .status();
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_reported_and_left_alone() {
    let dir = TempDir::new("durable-garbage");
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(db.join(STORE_FILE_NAME), &garbage).unwrap();
    let e = DurableBackend::open(&db).await.err().unwrap();
    assert!(e.message().contains("corrupt"), "{e}");
    assert!(
        e.message()
            .contains(&db.join(STORE_FILE_NAME).display().to_string()),
        "{e}"
    );
    assert_eq!(
        std::fs::read(db.join(STORE_FILE_NAME)).unwrap(),
        garbage,
        "never overwritten"
    );
    // And it stays refused: no second attempt starts over either.
    assert!(DurableBackend::open(&db).await.is_err());
    assert_eq!(std::fs::read(db.join(STORE_FILE_NAME)).unwrap(), garbage);
}

#[tokio::test]
async fn limits_are_enforced_before_any_io() {
    let dir = TempDir::new("durable-limits");
    let s = open(&dir).await;
    let long = "k".repeat(MAX_KEY_LEN + 1);
    for e in [
        s.get(&long).await.unwrap_err(),
        s.put(&long, vec![]).await.unwrap_err(),
        s.delete(&long).await.unwrap_err(),
        s.put("big", vec![0; MAX_VALUE_LEN + 1]).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    assert_eq!(s.commit_stats().commits, 0, "nothing reached the writer");
    let longest = "k".repeat(MAX_KEY_LEN);
    s.put(&longest, b"v".to_vec()).await.unwrap();
    assert_eq!(s.get(&longest).await.unwrap(), Some(b"v".to_vec()));
    // Even after shutdown, bad input is named as such.
    s.shutdown().await.unwrap();
    assert_eq!(
        s.put(&long, vec![]).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let dir = TempDir::new("durable-group");
    let s = Arc::new(open(&dir).await);
    let writers = 64;
    let per_writer = 20;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                s.put(&format!("w{w:02}/{i:03}"), format!("{w}-{i}").into_bytes())
                    .await
                    .unwrap();
                // Every writer also hammers one shared key.
                s.put("shared", format!("{w}-{i}").into_bytes())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for w in 0..writers {
        let keys = s.list(&format!("w{w:02}/")).await.unwrap();
        assert_eq!(keys.len(), per_writer);
        for i in 0..per_writer {
            let v = s.get(&format!("w{w:02}/{i:03}")).await.unwrap();
            assert_eq!(v, Some(format!("{w}-{i}").into_bytes()));
        }
    }
    let shared = String::from_utf8(s.get("shared").await.unwrap().unwrap()).unwrap();
    let (w, i) = shared.split_once('-').unwrap();
    assert!(w.parse::<usize>().unwrap() < writers && i.parse::<usize>().unwrap() < per_writer);
    let stats = s.commit_stats();
    assert_eq!(stats.writes, (writers * per_writer * 2) as u64);
    assert!(
        stats.commits * 4 < stats.writes,
        "64 concurrent writers should share commits: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_racing_writers_loses_no_acknowledged_write() {
    let dir = TempDir::new("durable-race");
    let s = Arc::new(open(&dir).await);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let s = Arc::clone(&s);
        writers.spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let key = format!("w{w}/{i}");
                match s.put(&key, key.clone().into_bytes()).await {
                    Ok(()) => acked.push(key),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                        return acked;
                    }
                }
            }
            unreachable!()
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.shutdown().await.unwrap();
    let acked: Vec<String> = writers.join_all().await.into_iter().flatten().collect();
    assert!(!acked.is_empty());
    drop(s);
    let s = open(&dir).await;
    for key in &acked {
        assert_eq!(
            s.get(key).await.unwrap(),
            Some(key.clone().into_bytes()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_write_is_visible_once_acknowledged() {
    let dir = TempDir::new("durable-ryw");
    let s = open(&dir).await;
    for i in 0..50u32 {
        s.put("k", i.to_le_bytes().to_vec()).await.unwrap();
        assert_eq!(s.get("k").await.unwrap(), Some(i.to_le_bytes().to_vec()));
    }
}

#[test]
fn futures_need_no_tokio_runtime() {
    // A cdylib's copy of tokio is not the host's: the store must work when
    // polled by any executor. A minimal executor that knows nothing of tokio:
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(v) => return v,
                Poll::Pending => std::thread::park(),
            }
        }
    }
    let dir = TempDir::new("durable-no-tokio");
    let s = block_on(DurableBackend::open(dir.path().join("db"))).unwrap();
    block_on(s.put("k", b"v".to_vec())).unwrap();
    assert_eq!(block_on(s.get("k")).unwrap(), Some(b"v".to_vec()));
    assert_eq!(block_on(s.list("")).unwrap(), vec!["k"]);
    block_on(s.shutdown()).unwrap();
}

#[tokio::test]
async fn a_damaged_store_is_reported_at_open_and_left_alone() {
    let dir = TempDir::new("durable-flip");
    let s = Arc::new(open(&dir).await);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..20u32 {
        let s = Arc::clone(&s);
        writers.spawn(async move {
            for i in 0..100u32 {
                s.put(&format!("key{w:02}{i:03}"), vec![i as u8; 100])
                    .await
                    .unwrap();
            }
        });
    }
    writers.join_all().await;
    s.shutdown().await.unwrap();
    drop(s);
    // Damage every page past the header (bit rot, a bad copy) after a clean
    // shutdown: only verification can tell. Every page, because where the
    // live B-tree pages sit varies from run to run, and damage in a free page
    // is (rightly) not an error.
    let file = store_file(&dir);
    let mut bytes = std::fs::read(&file).unwrap();
    let mut at = 8192;
    while at + 600 < bytes.len() {
        for b in &mut bytes[at + 512..at + 576] {
            *b ^= 0x5a;
        }
        at += 4096;
    }
    std::fs::write(&file, &bytes).unwrap();

    let e = DurableBackend::open(dir.path().join("db"))
        .await
        .err()
        .expect("damage detected");
    assert!(e.message().contains("corrupt"), "{e}");
    assert!(e.message().contains(&file.display().to_string()), "{e}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the damaged file is left as it was"
    );

    // Without verification redb trusts the file (the documented trade-off):
    // the open succeeds, or redb panics where it meets the damage, which is
    // reported as an error, never a crash or an empty store.
    let unverified = DurableOptions {
        verify_on_open: false,
    };
    match DurableBackend::open_with(dir.path().join("db"), unverified).await {
        Ok(s) => s.shutdown().await.unwrap(),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
            assert!(e.message().contains("corrupt"), "{e}");
        }
    }
}

/// Set in the child of [`a_read_only_mount_is_named`]: the read-only directory.
const READ_ONLY_DIR: &str = "DURABLE_LOCAL_READ_ONLY_DIR";

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_read_only_mount_is_named() {
    if let Ok(dir) = std::env::var(READ_ONLY_DIR) {
        // The child, inside a private mount namespace where `dir` is a
        // read-only bind mount: an existing directory, and one to create.
        let existing = Path::new(&dir).join("existing");
        let e = DurableBackend::open(&existing)
            .await
            .err()
            .expect("refused");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.message().contains("read-only file system"), "{e}");
        assert!(e.message().contains(&existing.display().to_string()), "{e}");
        let new = Path::new(&dir).join("new");
        let e = DurableBackend::open(&new).await.err().expect("refused");
        assert!(e.message().contains("read-only file system"), "{e}");
        assert!(e.message().contains(&new.display().to_string()), "{e}");
        return;
    }
    // A read-only mount needs privileges (a mount namespace): where
    // `unshare -m` is not allowed, there is nothing to run. The mapping of
    // EROFS itself is tested in `error::tests` regardless.
    let tmp = TempDir::new("durable-rofs");
    std::fs::create_dir(tmp.path().join("existing")).unwrap();
    let d = tmp.path().display();
    let script = format!(
        "mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' && exec \"$0\" \
         durable::tests::a_read_only_mount_is_named --exact --test-threads=1"
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(READ_ONLY_DIR, tmp.path())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("1 passed"),
                "the child ran no test: {stdout}"
            );
        }
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("panicked") => {
            panic!(
                "on a read-only mount: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(out) => panic!(
            "this test needs privileges for a read-only bind mount (root, `unshare -m`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("this test needs `unshare` (util-linux) to make a read-only mount: {e}"),
    }
}

#[tokio::test]
async fn list_page_walks_the_prefix_once_in_byte_order() {
    let dir = TempDir::new("durable-list-page");
    let s = open(&dir).await;
    let mut all: Vec<String> = (0..300).map(|i| format!("p/{i:03}")).collect();
    all.push("p/\u{10FFFF}".into());
    for k in all
        .iter()
        .chain(["o".to_string(), "p".to_string(), "q".to_string()].iter())
    {
        s.put(k, vec![]).await.unwrap();
    }
    all.sort();
    for limit in [1, 10, 300, 301, 1000] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s.list_page("p/", after.as_deref(), limit).await.unwrap();
            assert!(page.keys.len() <= limit, "limit {limit}");
            seen.extend(page.keys.iter().cloned());
            match page.next_after() {
                Some(k) => after = Some(k.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, all, "limit {limit}");
    }
    // The same keys as the full listing.
    assert_eq!(s.list("p/").await.unwrap(), all);
    // A cursor that is no key, before the prefix, or past its end.
    let page = s.list_page("p/", Some("p/0055"), 2).await.unwrap();
    assert_eq!(page.keys, ["p/006", "p/007"]);
    assert_eq!(
        s.list_page("p/", Some("a"), 1).await.unwrap().keys,
        ["p/000"]
    );
    let end = s.list_page("p/", Some("p/\u{10FFFF}"), 5).await.unwrap();
    assert!(end.keys.is_empty() && !end.more);
    s.shutdown().await.unwrap();
}
