//! What is retried and how: against a scripted HTTP server in the test, which
//! can answer exactly the statuses and `Retry-After` values to check.
//! (PostgREST itself cannot be made to answer a 503 on demand; the outage
//! test covers a real gateway's 502.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{anon_key, config, manager, service_key, storage_error, with};
use storage_host::{StorageError, StorageManager};

/// A server answering the n-th request with `answers[n]` (the last one
/// repeats), one request per connection.
struct Scripted {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn answer(status: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

fn scripted(answers: Vec<String>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut content_length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    content_length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            let n = count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(answers[n.min(answers.len() - 1)].as_bytes());
        }
    });
    Scripted { url, requests }
}

async fn manager_for(server: &Scripted, max_retries: u32) -> StorageManager {
    let c = config(&server.url, anon_key(), Some(service_key()));
    manager(with(c, |_, _, timeout, retries| {
        *timeout = 5;
        *retries = max_retries;
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_retryable_answers() {
    let server = scripted(vec![
        answer(
            "503 Service Unavailable",
            "Retry-After: 1\r\n",
            r#"{"message":"busy"}"#,
        ),
        answer("200 OK", "", r#"[{"value":"\\x6869"}]"#),
    ]);
    let m = manager_for(&server, 3).await;
    let start = Instant::now();
    assert_eq!(m.get("k").await.unwrap(), Some(b"hi".to_vec()));
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_statuses_are_retried_with_backoff() {
    for status in [
        "502 Bad Gateway",
        "503 Service Unavailable",
        "504 Gateway Timeout",
        "520 Unknown",
        "524 A Timeout Occurred",
    ] {
        let server = scripted(vec![
            answer(status, "", "<html>oops</html>"),
            answer(status, "", "<html>oops</html>"),
            answer("201 Created", "", ""),
        ]);
        let m = manager_for(&server, 3).await;
        let start = Instant::now();
        m.put("k", b"v".to_vec()).await.unwrap();
        // Backoff: at least half of 100 ms, then half of 200 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{status}: {:?}",
            start.elapsed()
        );
        assert_eq!(server.requests.load(Ordering::SeqCst), 3, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_max_retries_with_an_unavailable_error() {
    let server = scripted(vec![answer(
        "502 Bad Gateway",
        "",
        "<html><body>502 Bad Gateway</body></html>",
    )]);
    let m = manager_for(&server, 3).await;
    let e = storage_error(&m.delete("k").await.unwrap_err());
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("HTTP 502 after 4 attempt(s)"), "{e}");
    assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);

    let server = scripted(vec![answer("503 Service Unavailable", "", "")]);
    let m = manager_for(&server, 0).await;
    assert!(m.get("k").await.is_err());
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "max_retries 0: one attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_without_postgrest_error_body_is_retried_as_transient() {
    // Seen while PostgreSQL restarted under load: PostgREST describes its own
    // 4xx in JSON, so an anonymous 400 came from the path, not the request.
    let server = scripted(vec![
        answer("400 Bad Request", "", ""),
        answer("400 Bad Request", "", ""),
        answer("400 Bad Request", "", ""),
    ]);
    let m = manager_for(&server, 2).await;
    let e = storage_error(&m.get("k").await.unwrap_err());
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("not ready"), "{e}");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        3,
        "retried up to max_retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_500_are_never_retried() {
    let cases = [
        ("400 Bad Request", StorageError::InvalidInput(String::new())),
        (
            "401 Unauthorized",
            StorageError::PermissionDenied(String::new()),
        ),
        (
            "403 Forbidden",
            StorageError::PermissionDenied(String::new()),
        ),
        ("404 Not Found", StorageError::NotFound(String::new())),
        ("409 Conflict", StorageError::Other(String::new())),
        (
            "429 Too Many Requests",
            StorageError::Unavailable(String::new()),
        ),
        (
            "500 Internal Server Error",
            StorageError::Other(String::new()),
        ),
    ];
    for (status, kind) in cases {
        let server = scripted(vec![answer(
            status,
            "Retry-After: 0\r\n",
            r#"{"code":"X","message":"no"}"#,
        )]);
        let m = manager_for(&server, 3).await;
        let e = storage_error(&m.get("k").await.unwrap_err());
        assert_eq!(e.code(), kind.code(), "{status}: {e}");
        assert_eq!(
            server.requests.load(Ordering::SeqCst),
            1,
            "{status} was retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_bound_fails_at_once() {
    let server = scripted(vec![answer(
        "503 Service Unavailable",
        "Retry-After: 3600\r\n",
        "",
    )]);
    let m = manager_for(&server, 3).await;
    let start = Instant::now();
    let e = storage_error(&m.get("k").await.unwrap_err());
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexpected_bodies_are_reported() {
    let server = scripted(vec![answer("200 OK", "", r#"[{"value":"not hex"}]"#)]);
    let m = manager_for(&server, 0).await;
    let e = storage_error(&m.get("k").await.unwrap_err());
    assert!(e.to_string().contains("does not start with \\x"), "{e}");

    let server = scripted(vec![answer("200 OK", "", "<html>a captive portal</html>")]);
    let m = manager_for(&server, 0).await;
    let e = storage_error(&m.get("k").await.unwrap_err());
    assert!(e.to_string().contains("not the expected JSON"), "{e}");
}
