//! The HTTP API's errors: a status and a JSON body with a stable code.
//!
//! ```json
//! {"error": {"code": "not_found", "message": "no value under \"k\""}}
//! ```
//!
//! Every error status the API sends carries this body with
//! `content-type: application/json`, the 408 of an unfinished head (written
//! by the accept loop) included. Clients branch on `code` (the strings of
//! [`ErrorCode::as_str`] never change meaning); `message` is for people and
//! may change. Errors that
//! involve backends also list them under `backends`, each with the stable
//! [`StorageError::code`] of what it answered.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use storage_host::error::{BackendFailure, ManagerError};
use storage_host::storage::StorageError;

/// The stable error codes of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the key is empty, too long, not UTF-8 or holds control characters.
    BadKey,
    /// 400: a malformed request (query parameters, body).
    BadRequest,
    /// 400: a backend refused the key or value (e.g. beyond its size limits).
    InvalidInput,
    /// 401: the bearer token is missing or wrong.
    Unauthorized,
    /// 408: the request's headers or body did not arrive in time
    /// (`header_timeout`, `body_timeout`).
    RequestTimeout,
    /// 414: the request target (path and query) is longer than the API takes.
    UriTooLong,
    /// 431: too many request headers, or too many bytes of them.
    HeadersTooLarge,
    /// 404: no value under the key.
    NotFound,
    /// 404: no such route.
    RouteNotFound,
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 413: the body is larger than `max_body_size`.
    BodyTooLarge,
    /// 501: a backend cannot do this (e.g. list keys).
    Unsupported,
    /// 502: a write reached some backends and not others.
    PartialWrite,
    /// 502: a backend failed in a way retrying will not fix (permission
    /// denied, a missing table, ...).
    BackendError,
    /// 503: every backend tried is unavailable (down, timed out, circuit open).
    Unavailable,
    /// 503: no enabled backend to route to, or the policy's backend is disabled.
    NoBackends,
    /// 500: a fault of the host or its configuration.
    Internal,
}

impl ErrorCode {
    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadKey => "bad_key",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::PartialWrite => "partial_write",
            ErrorCode::BackendError => "backend_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NoBackends => "no_backends",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadKey | ErrorCode::BadRequest | ErrorCode::InvalidInput => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::NotFound | ErrorCode::RouteNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::PartialWrite | ErrorCode::BackendError => StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable | ErrorCode::NoBackends => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered by the HTTP API.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    /// The stable code (and with it the status).
    pub code: ErrorCode,
    /// A message for people.
    pub message: String,
    /// The backends involved and what each answered.
    pub backends: Vec<BackendFailure>,
}

impl ApiError {
    /// An error with no backend details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            backends: Vec::new(),
        }
    }
}

/// The code of one backend's failure when it is the only one.
fn storage_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::InvalidInput(_) => ErrorCode::InvalidInput,
        StorageError::Unsupported(_) => ErrorCode::Unsupported,
        e if e.is_unavailable() => ErrorCode::Unavailable,
        StorageError::InvalidConfig(_) => ErrorCode::Internal,
        _ => ErrorCode::BackendError,
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let backends = e.backend_failures();
        let code = match &e {
            ManagerError::NoBackends | ManagerError::BackendDisabled(_) => ErrorCode::NoBackends,
            ManagerError::StorageOperation { source, .. } => storage_code(source),
            ManagerError::AllBackendsFailed { failures, .. } => {
                if failures.iter().all(|f| f.error.is_unavailable()) {
                    ErrorCode::Unavailable
                } else if let Some(f) = failures.iter().find(|f| !f.error.is_unavailable()) {
                    storage_code(&f.error)
                } else {
                    ErrorCode::BackendError
                }
            }
            ManagerError::PartialWrite { .. } => ErrorCode::PartialWrite,
            ManagerError::InvalidRequest(_) => ErrorCode::InvalidInput,
            // A policy naming a backend that is not there, a plugin fault:
            // nothing the client did.
            _ => ErrorCode::Internal,
        };
        ApiError {
            code,
            message: e.to_string(),
            backends,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backends: Vec<Failure<'a>>,
}

#[derive(Serialize)]
struct Failure<'a> {
    backend: &'a str,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// The JSON body of this error, as sent.
    pub(crate) fn body_bytes(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
                backends: self
                    .backends
                    .iter()
                    .map(|f| Failure {
                        backend: &f.backend,
                        code: f.error.code(),
                        message: f.error.to_string(),
                    })
                    .collect(),
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        // Messages name keys (and backends' messages may quote values): at
        // WARN only the stable codes; the full message at DEBUG.
        if status.is_server_error() {
            let backends: Vec<String> = self
                .backends
                .iter()
                .map(|f| format!("{}={}", f.backend, f.error.code()))
                .collect();
            tracing::warn!(code = self.code.as_str(), status = status.as_u16(), backends = %backends.join(","), "request failed (the message, which may name the key, is logged at debug)");
            tracing::debug!(code = self.code.as_str(), error = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code.as_str(), error = %self.message, "request refused");
        }
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body_bytes(),
        )
            .into_response();
        let headers = response.headers_mut();
        match self.code {
            ErrorCode::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"storage-host\""),
                );
            }
            // Unavailability is usually short (a circuit breaker's cooldown
            // starts at one second): tell well-behaved clients when to retry.
            ErrorCode::Unavailable | ErrorCode::NoBackends => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_host::error::KeyRef;

    #[test]
    fn manager_errors_map_to_codes() {
        let op = |source| ManagerError::StorageOperation {
            backend: "b".into(),
            op: "get",
            key: KeyRef("k".into()),
            source,
        };
        assert_eq!(
            ApiError::from(ManagerError::NoBackends).code,
            ErrorCode::NoBackends
        );
        assert_eq!(
            ApiError::from(op(StorageError::Unavailable("x".into()))).code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            ApiError::from(op(StorageError::InvalidInput("x".into()))).code,
            ErrorCode::InvalidInput
        );
        assert_eq!(
            ApiError::from(op(StorageError::PermissionDenied("x".into()))).code,
            ErrorCode::BackendError
        );
        assert_eq!(
            ApiError::from(op(StorageError::Unsupported("x".into()))).code,
            ErrorCode::Unsupported
        );
        let all = ManagerError::AllBackendsFailed {
            op: "get",
            key: KeyRef("k".into()),
            failures: vec![
                BackendFailure {
                    backend: "a".into(),
                    error: StorageError::Unavailable("down".into()),
                },
                BackendFailure {
                    backend: "b".into(),
                    error: StorageError::Timeout(std::time::Duration::from_secs(1)),
                },
            ],
        };
        let e = ApiError::from(all);
        assert_eq!(
            (e.code, e.code.status().as_u16(), e.backends.len()),
            (ErrorCode::Unavailable, 503, 2)
        );
        assert_eq!(
            ApiError::from(ManagerError::BackendNotFound("x".into()))
                .code
                .status()
                .as_u16(),
            500
        );
    }
}
