//! Errors as the API answers them: a status and `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A refusal or failure, answered as its status with a JSON body naming it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<flow_core::Error> for ApiError {
    fn from(e: flow_core::Error) -> Self {
        use flow_core::Error;
        let status = match &e {
            Error::InvalidEvent(_)
            | Error::InvalidSignal(_)
            | Error::Limit { .. }
            | Error::TooMany { .. }
            | Error::Serde(_) => StatusCode::BAD_REQUEST,
            Error::RunNotFound(_) | Error::FunctionNotFound(_) | Error::NoSignalWaiter { .. } => {
                StatusCode::NOT_FOUND
            }
            Error::AlreadyEnded { .. } | Error::NotBlocked { .. } | Error::NotEnded { .. } => {
                StatusCode::CONFLICT
            }
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "a request failed");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// A route the server does not have.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route `{}`", uri.path()))
}
