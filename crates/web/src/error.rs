//! The one small vocabulary that maps errors to HTTP answers: a status, a stable snake_case
//! tag (used in metrics and in the `error_code` field) and a message for a person.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable tag.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// The request field at fault, if any.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header, when the request may be retried later.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            code,
            message,
            field: None,
            retry_after: None,
        }
    }
    /// `400` naming `field`.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            field: Some(field.clone()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{field}: {}", message.into()),
            )
        }
    }
    /// `401`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message.into())
    }
    /// `403`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message.into())
    }
    /// `404`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message.into())
    }
    /// `409`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message.into())
    }
    /// `429` with `Retry-After` (a rate limit).
    pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                message.into(),
            )
        }
    }
    /// `503` with `Retry-After` (a backend failed; the request may be retried).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message.into(),
            )
        }
    }
}

impl From<footfall_store::StoreError> for ApiError {
    fn from(e: footfall_store::StoreError) -> Self {
        match e {
            footfall_store::StoreError::Conflict(what) => {
                ApiError::conflict(format!("{what} already exists"))
            }
            footfall_store::StoreError::NotFound(what) => {
                ApiError::not_found(format!("{what} does not exist"))
            }
            other => {
                tracing::error!(error = %other, "store failed");
                ApiError::unavailable("the store is unavailable; retry later")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "error_code": self.code});
        if let Some(f) = &self.field {
            body["field"] = json!(f);
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}
