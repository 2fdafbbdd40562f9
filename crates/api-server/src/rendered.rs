//! Whole answers, rendered once and served to every poller: the answer cache of the
//! endpoints a dashboard polls (`/api/panel/realtime`, `/api/panel/today-usage`,
//! `/api/panel/summary`).
//!
//! At 1 000 panels, making one of these answers costs milliseconds of CPU (pricing every
//! panel's day, writing up to half a megabyte of JSON) on top of InfluxDB's time. Made per
//! request, sixteen pollers then queue behind each other. Here the JSON is made once per
//! `QUERY_CACHE_MS` and every request in between gets the same bytes; when it is older than
//! that, the request still gets it at once and a task of its own makes the next one
//! ([`QueryCache::get_or_refresh`]). So an answer is at most about two `QUERY_CACHE_MS` old
//! (plus the time its refresh takes); its `generated_at` says when it was made, and status and
//! "seconds since" are as of then. `QUERY_CACHE_MS=0` makes every answer per request. See
//! docs/operations.md, "The answer caches".

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cache::QueryCache;
use crate::error::ApiError;
use crate::state::AppState;

/// Rendered JSON answers by endpoint.
pub type Answers = QueryCache<Bytes>;

/// The answer `make` renders, from the cache under `key`: `key` must name everything the
/// answer depends on besides the time (these endpoints take no parameters, so their path).
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
    let owned = Arc::clone(state);
    let body = state
        .answers
        .get_or_refresh(key, move || async move {
            let answer = make(owned).await?;
            serde_json::to_vec(&answer)
                .map(Bytes::from)
                .map_err(|error| ApiError::Internal(error.to_string()))
        })
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::clone(&body),
    )
        .into_response())
}
