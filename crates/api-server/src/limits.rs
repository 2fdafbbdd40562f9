//! What one request may cost the server: the size of its body and headers and how long it may
//! take. The header limits are enforced by hyper in `server.rs`; the body and time limits are
//! middleware here, so their refusals are JSON like every other error.

use std::time::Duration;

use axum::body::{Body, BodyDataStream, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::error::ApiError;

/// The largest request body accepted. Every endpoint is a GET and reads no body; this only
/// bounds what a client can make the server buffer.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The largest request head (request line and headers) accepted; hyper answers a larger one
/// with 431 and closes the connection. 16 KiB, as Node.js: far above what a client of this
/// API sends (a bearer token, a few standard headers), and a browser's cookies for a shared
/// domain still fit. Without it hyper would accept about 400 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long a client may take to send a request head before the connection is closed
/// (slow-loris protection; hyper's default, made explicit).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a refused body is still read (and thrown away) after the 413 is sent, and for
/// how long at most. A client usually sends its whole body before it reads the answer; if the
/// server closed the connection with the body unread, the kernel would reset it and the client
/// would see "connection reset" instead of the 413 (nginx's "lingering close" does the same).
const DISCARD_MAX_BYTES: usize = 4 * 1024 * 1024;
const DISCARD_MAX_TIME: Duration = Duration::from_secs(2);

/// Middleware: refuses a request whose body is larger than [`MAX_BODY_BYTES`] with 413. A
/// declared `Content-Length` over the limit is refused without buffering anything; a body of
/// unknown length (chunked) is read up to the limit and refused as soon as it passes it.
pub async fn limit_body(request: Request, next: Next) -> Response {
    let too_large = || {
        ApiError::PayloadTooLarge {
            limit_bytes: MAX_BODY_BYTES,
        }
        .into_response()
    };
    // hyper reports a declared `Content-Length` as the body's exact size.
    let size = request.body().size_hint();
    if size.exact() == Some(0) {
        // The usual GET: nothing to read.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    if size.lower() > MAX_BODY_BYTES as u64 {
        tokio::spawn(discard(chunks));
        return too_large();
    }
    let mut buffered = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return ApiError::BadRequest("the request body could not be read".into())
                .into_response();
        };
        if buffered.len() + chunk.len() > MAX_BODY_BYTES {
            tokio::spawn(discard(chunks));
            return too_large();
        }
        buffered.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(parts, Body::from(buffered)))
        .await
}

/// Reads and drops the rest of a refused body, within [`DISCARD_MAX_BYTES`] and
/// [`DISCARD_MAX_TIME`]; past either, dropping the stream makes hyper close the connection.
async fn discard(mut chunks: BodyDataStream) {
    let drain = async {
        let mut discarded = 0;
        while let Some(Ok(chunk)) = chunks.next().await {
            discarded += chunk.len();
            if discarded > DISCARD_MAX_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_MAX_TIME, drain).await;
}

/// Middleware: answers 503 JSON when a request takes longer than `limit`, dropping (and so
/// cancelling) whatever it was waiting for. Every InfluxDB call has its own, shorter timeout,
/// so this is a safety net. tower-http's `TimeoutLayer` would answer an empty 408, which tells
/// the client it was too slow, not the server.
pub async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis(), "request timed out");
            ApiError::Timeout(limit).into_response()
        }
    }
}
