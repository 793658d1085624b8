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
}

impl ApiError {
    /// `400` naming `field`.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: format!("{field}: {}", message.into()),
            field: Some(field),
        }
    }
    /// `401`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            field: None,
        }
    }
    /// `404`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
        }
    }
    /// `409`.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }
    /// `503` with `Retry-After` (a backend failed; the request may be retried).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            field: None,
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        r
    }
}
