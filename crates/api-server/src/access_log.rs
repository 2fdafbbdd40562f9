//! One debug line per request: method, path, status and latency. Only the path is logged —
//! never the query string (where a careless client might put a secret) nor any header (the
//! `Authorization` header carries `API_TOKEN`).

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: logs each request once its response is ready.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        latency = ?started.elapsed(),
        "request"
    );
    response
}
