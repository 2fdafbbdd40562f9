//! The one error type of the HTTP layer: every failure becomes a JSON body
//! `{"error": {"code": …, "message": …}}` with a fitting status, never a panic or a trace.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use energy_influx::InfluxError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    /// `API_TOKEN` is set and the request carries no bearer token (`token_given: false`) or
    /// a different one.
    Unauthorized {
        token_given: bool,
    },
    NotFound,
    /// A path names a panel that never wrote a reading (or is no panel id).
    UnknownPanel(String),
    MethodNotAllowed,
    /// The request body is larger than the API accepts (it only answers GET).
    PayloadTooLarge {
        limit_bytes: usize,
    },
    /// InfluxDB failed or did not answer in time.
    Unavailable(String),
    /// The request as a whole outlived the safety-net timeout.
    Timeout(Duration),
    /// An answer could not be written (a bug, not bad input).
    Internal(String),
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "bad_request", "message": "year must be an integer between 1970 and 9999"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What was wrong, for a person to read.
    pub message: String,
}

/// What kind of error, for a program to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    InfluxdbUnavailable,
    Timeout,
    Internal,
}

impl From<InfluxError> for ApiError {
    fn from(error: InfluxError) -> Self {
        tracing::warn!(%error, "InfluxDB call failed");
        ApiError::Unavailable(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // RFC 6750 §3: a 401 names the scheme, and says why when a token was given.
        let challenge = match &self {
            ApiError::Unauthorized { token_given: false } => Some("Bearer"),
            ApiError::Unauthorized { token_given: true } => Some("Bearer error=\"invalid_token\""),
            _ => None,
        };
        let (status, code, message) = match self {
            ApiError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
            }
            ApiError::Unauthorized { token_given } => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                if token_given {
                    "the bearer token is not valid".into()
                } else {
                    "this API needs an `Authorization: Bearer <token>` header".into()
                },
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint".into(),
            ),
            ApiError::UnknownPanel(panel) => (
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no panel {panel:?} has written a reading"),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this endpoint only answers GET".into(),
            ),
            ApiError::PayloadTooLarge { limit_bytes } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {limit_bytes} bytes"),
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::InfluxdbUnavailable,
                message,
            ),
            ApiError::Timeout(limit) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Timeout,
                format!("the request took longer than {} ms", limit.as_millis()),
            ),
            ApiError::Internal(message) => {
                tracing::error!(%message, "an answer could not be written");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "the answer could not be written; the server's log says why".into(),
                )
            }
        };
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
