//! When to retry and how long to wait.
//!
//! Only what can succeed later is retried: network errors, timeouts and the
//! gateway/overload statuses 502, 503, 504 and 520-524 (Cloudflare's, which
//! sits in front of Supabase). A 4xx is an answer about the request (a wrong
//! key, a missing table, RLS) and is never retried; neither is 500, which
//! PostgREST uses for database errors that a retry would only repeat. Every
//! operation this plugin sends is idempotent (an upsert, a delete by key, a
//! read), so retrying one whose answer was lost is safe.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Whether an answer with `status` may succeed if sent again.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502 | 503 | 504 | 520..=524)
}

/// Whether an answer may succeed if sent again, judging by its body too.
///
/// PostgREST describes every 4xx of its own with a JSON error (`code`,
/// `message`). A 400 without one did not come from PostgREST's judgement of
/// the request but from the path to it: seen while PostgreSQL restarted under
/// load (tests/faults.rs). Every request this plugin sends is idempotent
/// (upsert by key, delete by key, reads), so sending it again is safe.
pub fn is_retryable_answer(status: StatusCode, body: &[u8]) -> bool {
    is_retryable_status(status) || (status == StatusCode::BAD_REQUEST && !is_postgrest_error(body))
}

/// Whether `body` is PostgREST's description of an error: JSON with a
/// non-empty `code` (a PGRST code or a PostgreSQL SQLSTATE).
fn is_postgrest_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code")?.as_str().map(|c| !c.is_empty()))
        .unwrap_or(false)
}

/// Exponential backoff with jitter, bounded by `max_retries`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The wait before the first retry (before jitter).
    pub base: Duration,
    /// The longest backoff wait (before jitter).
    pub cap: Duration,
    /// The longest `Retry-After` honoured; a server asking for more is given
    /// up on at once, so the caller can fail over instead of stalling.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The policy for `max_retries` retries with the default timings
    /// (100 ms doubling up to 5 s; `Retry-After` up to 30 s).
    pub fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }

    /// How long to wait before retry number `retry` (1 for the first), given
    /// the server's `Retry-After`; `None` means do not retry.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << (retry - 1).min(20))
            .min(self.cap);
        // "Equal jitter": half fixed, half random, so clients that failed
        // together do not retry together, yet each still backs off.
        let half = exp / 2;
        let backoff = half + half.mul_f64(random_unit());
        match retry_after {
            Some(ra) if ra > self.max_retry_after => None,
            Some(ra) => Some(ra.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// The `Retry-After` header: delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A random number in [0, 1), good enough for jitter without a dependency:
/// `RandomState` is seeded from the OS, and the counter makes every call differ.
fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Relaxed);
    let bits = RandomState::new().hash_one(n);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn anonymous_bad_requests_are_retried_postgrest_ones_are_not() {
        assert!(is_retryable_answer(StatusCode::BAD_REQUEST, b""));
        assert!(is_retryable_answer(
            StatusCode::BAD_REQUEST,
            b"<html>400 Bad Request</html>"
        ));
        assert!(!is_retryable_answer(
            StatusCode::BAD_REQUEST,
            br#"{"code":"PGRST100","message":"failed to parse filter"}"#
        ));
        assert!(is_retryable_answer(
            StatusCode::BAD_REQUEST,
            br#"{"code":null,"message":null}"#
        ));
        assert!(!is_retryable_answer(StatusCode::UNAUTHORIZED, b""));
        assert!(is_retryable_answer(StatusCode::BAD_GATEWAY, b""));
    }

    #[test]
    fn retryable_statuses() {
        for s in [502, 503, 504, 520, 521, 522, 523, 524] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 406, 409, 429, 500, 501, 505, 525] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops() {
        let p = RetryPolicy::new(4);
        for retry in 1..=4 {
            let exp = Duration::from_millis(100 * (1 << (retry - 1)));
            for _ in 0..50 {
                let d = p.delay(retry, None).unwrap();
                assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
            }
        }
        assert_eq!(p.delay(5, None), None);
        assert_eq!(p.delay(0, None), None);
        assert_eq!(RetryPolicy::new(0).delay(1, None), None);
        let p = RetryPolicy::new(30);
        assert!(p.delay(30, None).unwrap() <= Duration::from_secs(5));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = RetryPolicy::new(3);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert!(p.delay(3, Some(Duration::ZERO)).unwrap() >= Duration::from_millis(200));
        assert_eq!(p.delay(1, Some(Duration::from_secs(31))), None);

        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(8) && d <= Duration::from_secs(10),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
