//! The admin API's error responses: a status and `{"error": "<what went wrong and how to fix it>"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use meshd_controller::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// An error a handler returns: the status and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: this daemon does not run the controller.
    pub fn controller_disabled() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this meshd does not run the controller; set `[controller] enabled = true` in its \
             configuration file and restart it (`meshd up`)",
        )
    }

    /// 500: something broke inside the daemon; the operator cannot fix the request.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::Token(_) | StoreError::Alloc(_) | StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::NetworkExists(_) | StoreError::NetworkHasMembers { .. } => StatusCode::CONFLICT,
            StoreError::NoSuchNetwork(_) | StoreError::NoSuchMember { .. } | StoreError::NoSuchToken(_) => {
                StatusCode::NOT_FOUND
            }
            StoreError::NewerSchema { .. }
            | StoreError::Corrupt(_)
            | StoreError::Damaged { .. }
            | StoreError::Sqlite(_)
            | StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!("admin API: controller store: {e}");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
