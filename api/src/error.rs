//! API errors: every failure is `{"error": code, "message": text}` with a fitting status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_inventory::StoreError;
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`not_found`, `forbidden`, …).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Extra structured detail (e.g. a lease's shortfall).
    pub detail: Option<serde_json::Value>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// What went wrong.
    pub message: String,
    /// Extra detail, when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub detail: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// 404, worded the same whether the thing is missing or hidden from the caller.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {}", what.into()),
        )
    }

    /// 400 for a request that cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl From<crate::report::ReportError> for ApiError {
    fn from(err: crate::report::ReportError) -> Self {
        match err {
            crate::report::ReportError::Store(err) => err.into(),
            other => {
                tracing::error!(error = %other, "building an acceptance report");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
            detail: self.detail,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match &err {
            StoreError::NodeNotFound(_)
            | StoreError::HallNotFound(_)
            | StoreError::LeaseNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            StoreError::TransitionNotAllowed { .. }
            | StoreError::StateChanged { .. }
            | StoreError::HallAlreadyLeased { .. }
            | StoreError::LeaseNotActive(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::LeaseRefused {
                verified,
                total,
                required,
                shortfall,
                ..
            } => ApiError {
                detail: Some(serde_json::json!({
                    "verified": verified, "total": total, "required": required, "shortfall": shortfall,
                })),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "acceptance_rule_not_met",
                    message,
                )
            },
            StoreError::Manifest(errors) => ApiError {
                detail: Some(serde_json::json!(
                    errors
                        .0
                        .iter()
                        .map(|e| serde_json::json!({"line": e.line, "message": e.message}))
                        .collect::<Vec<_>>()
                )),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_manifest",
                    message,
                )
            },
            StoreError::Invalid(_) => ApiError::bad_request(message),
            _ => {
                // Internal detail goes to the log, not to the caller.
                tracing::error!(error = %err, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}
