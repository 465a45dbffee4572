//! The optional bearer token in front of the KV and admin routes.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::config::Secret;
use super::error::{ApiError, ErrorCode};

/// Compares without an early exit, so the time taken does not tell an
/// attacker how many leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Authorization` header value carries `token`.
pub(crate) fn authorized(header_value: Option<&[u8]>, token: &Secret) -> bool {
    let Some(value) = header_value else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1).
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    constant_time_eq(value[7..].trim_ascii(), token.expose().as_bytes())
}

/// Middleware: refuses requests without the right bearer token with 401.
pub(crate) async fn require_token(
    State(token): State<Secret>,
    request: Request,
    next: Next,
) -> Response {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if authorized(value, &token) {
        return next.run(request).await;
    }
    // Never echo or log what was sent: it may be a real token for something else.
    let message = if value.is_none() {
        "this route needs an Authorization: Bearer <token> header"
    } else {
        "the bearer token is not valid"
    };
    ApiError::new(ErrorCode::Unauthorized, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        let t = Secret::new("s3cret-token");
        assert!(authorized(Some(b"Bearer s3cret-token"), &t));
        assert!(authorized(Some(b"bearer s3cret-token"), &t));
        assert!(!authorized(Some(b"Bearer s3cret-tokeN"), &t));
        assert!(!authorized(Some(b"Bearer s3cret"), &t));
        assert!(!authorized(Some(b"Basic s3cret-token"), &t));
        assert!(!authorized(Some(b"Bearer"), &t));
        assert!(!authorized(None, &t));
    }
}
