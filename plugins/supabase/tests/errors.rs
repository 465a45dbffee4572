//! Failures are reported clearly, with the right kind, and never show a key.
//!
//! Needs `scripts/supabase-local.sh` to have run (except the tests against
//! servers they start themselves).

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{
    JWT_SECRET, anon_key, config, manager, service_config, service_key, sign_jwt, storage_error,
    unique_prefix, url, with,
};
use storage_host::StorageError;
use storage_supabase::{SupabaseBackend, SupabaseConfig};

/// Every log line of this test binary, from every thread (the plugin's
/// runtime threads included), so tests can check what was logged.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .init();
        buf
    })
    .clone()
}

fn message(e: &StorageError) -> String {
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anon_key_reads_but_cannot_write() {
    captured_logs();
    let service = manager(service_config()).await;
    let anon = manager(config(&url(), anon_key(), None)).await;
    let p = unique_prefix("anon");
    let key = format!("{p}k");
    service.put(&key, b"v".to_vec()).await.unwrap();

    // The test table has the optional "anon may read" policy of the SQL.
    assert_eq!(anon.get(&key).await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(anon.list(&p).await.unwrap(), vec![key.clone()]);

    for (what, result) in [
        ("overwrite", anon.put(&key, b"w".to_vec()).await),
        ("insert", anon.put(&format!("{p}new"), b"w".to_vec()).await),
    ] {
        let e = storage_error(&result.unwrap_err());
        let m = message(&e);
        assert!(
            matches!(e, StorageError::PermissionDenied(_)),
            "{what}: {e:?}"
        );
        assert!(m.contains("row-level security refused"), "{m}");
        assert!(
            m.contains("in table public.storage") && m.contains(&p),
            "{m}"
        );
        assert!(
            m.contains("`anon_key`") && m.contains("service_role_key"),
            "{m}"
        );
        // PostgREST says 401 for its anonymous role and 403 for others.
        assert!(
            m.contains("HTTP 401, 42501") || m.contains("HTTP 403, 42501"),
            "{m}"
        );
    }

    // RLS makes the delete answer 204 with nothing deleted: detected.
    let e = storage_error(&anon.delete(&key).await.unwrap_err());
    let m = message(&e);
    assert!(matches!(e, StorageError::PermissionDenied(_)), "{e:?}");
    assert!(
        m.contains("row-level security kept the row") && m.contains(&key),
        "{m}"
    );

    assert_eq!(
        service.get(&key).await.unwrap(),
        Some(b"v".to_vec()),
        "nothing changed"
    );
    assert_eq!(service.get(&format!("{p}new")).await.unwrap(), None);
    // Deleting a key that does not exist is still fine with the anon key.
    anon.delete(&format!("{p}missing")).await.unwrap();
    service.delete(&key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_expired_keys_are_rejected_without_retries() {
    captured_logs();
    let keys = [
        (
            "signed with another secret",
            sign_jwt(
                "another-secret-of-32-characters-or-more",
                "service_role",
                3600,
            ),
        ),
        ("expired", sign_jwt(JWT_SECRET, "service_role", -60)),
        ("not a JWT", "not-a-jwt".to_string()),
    ];
    for (what, bad) in keys {
        let c = with(
            config(&url(), anon_key(), Some(bad.clone())),
            |_, _, _, r| *r = 3,
        );
        let m = manager(c).await;
        let start = Instant::now();
        for result in [
            m.get("k").await.map(drop),
            m.put("k", b"v".to_vec()).await,
            m.list("k").await.map(drop),
        ] {
            let e = storage_error(&result.unwrap_err());
            let text = message(&e);
            assert!(
                matches!(e, StorageError::PermissionDenied(_)),
                "{what}: {e:?}"
            );
            assert!(
                text.contains("the API rejected `service_role_key` (HTTP 401"),
                "{what}: {text}"
            );
            assert!(text.contains("has not expired"), "{what}: {text}");
            assert!(
                !text.contains(&bad),
                "{what}: the key is in the message: {text}"
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: 4xx must not be retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_names_it_and_points_at_the_sql() {
    captured_logs();
    let c = with(service_config(), |_, table, _, _| {
        *table = "no_such_table".into()
    });
    let m = manager(c).await;
    for result in [
        m.get("k").await.map(drop),
        m.put("k", b"v".to_vec()).await,
        m.delete("k").await,
        m.list("").await.map(drop),
    ] {
        let e = storage_error(&result.unwrap_err());
        let text = message(&e);
        assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
        assert!(
            text.contains("table public.no_such_table does not exist"),
            "{text}"
        );
        assert!(text.contains("plugins/supabase/sql/storage.sql"), "{text}");
        assert!(
            text.contains("42P01") || text.contains("PGRST205"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_not_exposed_is_a_configuration_error() {
    captured_logs();
    let c = with(service_config(), |schema, _, _, _| {
        *schema = "not_exposed".into()
    });
    let m = manager(c).await;
    let e = storage_error(&m.get("k").await.unwrap_err());
    let text = message(&e);
    assert!(matches!(e, StorageError::InvalidConfig(_)), "{e:?}");
    assert!(
        text.contains("schema 'not_exposed' is not exposed") && text.contains("PGRST106"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_table_cannot_hold_are_refused_before_sending() {
    captured_logs();
    let m = manager(service_config()).await;
    for key in [
        "a\0b".to_string(),
        "k".repeat(storage_supabase::MAX_KEY_BYTES + 1),
    ] {
        let e = storage_error(&m.put(&key, b"v".to_vec()).await.unwrap_err());
        assert!(matches!(e, StorageError::InvalidInput(_)), "{e:?}");
        assert!(message(&e).contains("invalid key"), "{e}");
    }
}

/// A server that accepts connections and never answers: each attempt ends
/// at `timeout`, and the operation fails as unavailable after the retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    captured_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        // Hold every connection open, read nothing, answer nothing.
        let mut held = Vec::new();
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let c = config(&format!("http://{addr}"), anon_key(), Some(service_key()));
    let c = with(c, |_, _, timeout, retries| {
        *timeout = 1;
        *retries = 2;
    });
    let m = manager(c).await;
    let start = Instant::now();
    let e = storage_error(&m.get("k").await.unwrap_err());
    let elapsed = start.elapsed();
    let text = message(&e);
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(
        text.contains("no answer within the 1s `timeout` (3 attempt(s))"),
        "{text}"
    );
    // 3 attempts of 1 s, plus backoffs of at most 100 + 200 ms.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(3300 + 1500), "{elapsed:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection per attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    captured_logs();
    // A port nothing listens on: bind one, then let it go.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = with(
        config(&format!("http://{addr}"), anon_key(), None),
        |_, _, _, r| *r = 1,
    );
    let m = manager(c).await;
    let e = storage_error(&m.put("k", b"v".to_vec()).await.unwrap_err());
    let text = message(&e);
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(
        text.contains(&format!("cannot reach http://{addr}/rest/v1/")),
        "{text}"
    );
    assert!(
        text.contains("2 attempt(s)") && text.contains("check `url`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_appear_in_debug_display_errors_or_logs() {
    let logs = captured_logs();
    let anon = anon_key();
    let service = service_key();
    let secrets = |key: &str| -> Vec<String> {
        // The whole key, and its claims and signature on their own.
        let mut parts: Vec<String> = key.split('.').skip(1).map(str::to_string).collect();
        parts.push(key.to_string());
        parts
    };
    let mut texts = Vec::new();

    let host_config = config(&url(), anon.clone(), Some(service.clone()));
    texts.push(format!("{host_config:?}"));
    let plugin_config: SupabaseConfig =
        serde_json::from_value(host_config.plugin_config()).unwrap();
    texts.push(format!("{plugin_config:?}"));
    texts.push(format!(
        "{:?} {}",
        plugin_config.anon_key, plugin_config.anon_key
    ));
    texts.push(format!(
        "{:?}",
        SupabaseBackend::new(&plugin_config).unwrap()
    ));

    // Errors from every kind of failure, with the keys in play.
    let anon_only = manager(config(&url(), anon.clone(), None)).await;
    let p = unique_prefix("secrets");
    texts.push(
        anon_only
            .put(&format!("{p}k"), b"v".to_vec())
            .await
            .unwrap_err()
            .to_string(),
    );
    let missing = manager(with(
        config(&url(), anon.clone(), Some(service.clone())),
        |_, t, _, _| *t = "missing_table".into(),
    ))
    .await;
    texts.push(missing.get("k").await.unwrap_err().to_string());
    let bad_key = sign_jwt(
        "another-secret-of-32-characters-or-more",
        "service_role",
        3600,
    );
    let rejected = manager(config(&url(), anon.clone(), Some(bad_key.clone()))).await;
    let e = rejected.get("k").await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = manager(with(
        config(
            &format!("http://{addr}"),
            anon.clone(),
            Some(service.clone()),
        ),
        |_, _, _, r| *r = 1,
    ))
    .await;
    let e = unreachable.get("k").await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = SupabaseBackend::new(&SupabaseConfig {
        timeout: 0,
        ..plugin_config.clone()
    })
    .unwrap_err();
    texts.push(e.to_string());

    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("retrying"),
        "the retry above was logged: {logged}"
    );
    texts.push(logged);

    for text in &texts {
        for secret in secrets(&anon)
            .iter()
            .chain(&secrets(&service))
            .chain(&secrets(&bad_key))
        {
            assert!(!text.contains(secret.as_str()), "a key leaked into: {text}");
        }
    }
}
