//! Whole answers, rendered once and served to every request for them: the answer cache of the
//! endpoints that price many panels (`/api/panel/realtime`, `/api/panel/today-usage`,
//! `/api/panel/summary`, `/api/energy/monthly`, `/api/energy/daily`, `/api/bill`).
//!
//! At 1 000 panels, making one of these answers costs milliseconds to seconds of CPU (pricing
//! every panel's days or months, writing up to a few megabytes of JSON or CSV) on top of
//! InfluxDB's time. Made per request, sixteen pollers queue behind each other. Here an answer
//! is made once per `QUERY_CACHE_MS` and every request in between gets the same bytes; when it
//! is older than that, the request still gets it at once and a task of its own makes the next
//! one ([`QueryCache::get_or_refresh`]). So an answer is at most about two `QUERY_CACHE_MS`
//! old (plus the time its refresh takes); the polled endpoints' `generated_at` says when it
//! was made, and statuses and ages are as of then. `QUERY_CACHE_MS=0` makes every answer per
//! request. Only successful answers are kept; a bad parameter is refused before anything is
//! looked up. See docs/operations.md, "The answer caches".

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::cache::QueryCache;
use crate::error::ApiError;
use crate::state::AppState;

/// Rendered answers by endpoint and parameters.
pub type Answers = QueryCache<Rendered>;

/// A successful answer as sent: its type, its download name (CSV), its bytes.
pub struct Rendered {
    content_type: Option<HeaderValue>,
    disposition: Option<HeaderValue>,
    body: Bytes,
}

impl Rendered {
    /// `response` with its body read, or why it cannot be kept (it is no success).
    async fn of(response: Response) -> Result<Rendered, ApiError> {
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::Internal(format!("the answer was {status}")));
        }
        let (parts, body) = response.into_parts();
        let header = |name| parts.headers.get(name).cloned();
        Ok(Rendered {
            content_type: header(header::CONTENT_TYPE),
            disposition: header(header::CONTENT_DISPOSITION),
            body: axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|error| ApiError::Internal(error.to_string()))?,
        })
    }

    fn response(&self) -> Response {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (header::CONTENT_TYPE, &self.content_type),
            (header::CONTENT_DISPOSITION, &self.disposition),
        ] {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
        (headers, Bytes::clone(&self.body)).into_response()
    }
}

/// The answer `make` gives, from the cache under `key`, which must name everything the answer
/// depends on besides the time: the endpoint and its validated parameters.
pub(crate) async fn response<F, Fut>(
    state: &Arc<AppState>,
    key: String,
    make: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<AppState>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    let owned = Arc::clone(state);
    let rendered = state
        .answers
        .get_or_refresh(&key, move || async move {
            Rendered::of(make(owned).await?).await
        })
        .await?;
    Ok(rendered.response())
}

/// [`response`] for an answer that is always JSON.
pub(crate) async fn json<T, F, Fut>(
    state: &Arc<AppState>,
    key: &str,
    make: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: FnOnce(Arc<AppState>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    response(state, key.to_owned(), move |state| async move {
        Ok(Json(make(state).await?).into_response())
    })
    .await
}
