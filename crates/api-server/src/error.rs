//! The one error type of the HTTP layer: every failure becomes a JSON body
//! `{"error": {"code": …, "message": …}}` with a fitting status, never a panic or a trace.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use energy_influx::InfluxError;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    /// InfluxDB failed or did not answer in time.
    Unavailable(String),
}

impl From<InfluxError> for ApiError {
    fn from(error: InfluxError) -> Self {
        tracing::warn!(%error, "InfluxDB call failed");
        ApiError::Unavailable(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint only answers GET".into(),
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "influxdb_unavailable",
                message,
            ),
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}
