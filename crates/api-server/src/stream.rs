//! `GET /api/panel/stream`: every panel's live state as Server-Sent Events.
//!
//! The stream speaks three events, each with a one-line JSON body:
//!
//! - `panel`: one panel's state, the same object as one entry of `/api/panel/realtime`'s
//!   `panels`. Sent for every panel when the stream opens, then for a panel whenever its
//!   reading (`last_seen`, `power_kw`, `energy_kwh`) or its status changes. A status flips as
//!   time passes too, so an OFFLINE event comes without any new reading.
//! - `sync`: `{"generated_at", "offline_after_secs", "panels": [ids]}`, after a complete set of
//!   `panel` events (on connect, after InfluxDB recovers, after a client fell behind). The
//!   `panel` events since the previous `sync` are then the whole state: a panel not in `panels`
//!   is gone.
//! - `error`: `{"error": {"code": "influxdb_unavailable", "message": …}}`, the shape of every
//!   API error, when reading InfluxDB fails. The stream stays open and goes on once InfluxDB
//!   answers again (starting with a `sync`).
//!
//! Between events, a comment line (`:`) every [`KEEP_ALIVE`] keeps proxies from closing an
//! idle connection and lets a client notice a dead one.
//!
//! However many clients are connected, one poller reads the latest readings from InfluxDB
//! about every [`POLL_INTERVAL`] and broadcasts what changed; it runs only while at least one
//! client is connected. Its reads go through the store's query cache, so they are shared with
//! `/api/panel/realtime`. What to send is decided by [`Shared::apply`], a plain function of the
//! previous state and the new one; it and the feed the poller broadcasts on are in `live`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use chrono::Utc;
use futures_util::Stream;
use tokio::sync::{broadcast, watch};

use crate::live::{events_of, Shared, Snapshot, Update};
use crate::state::AppState;

/// How often the poller reads the latest readings: a new reading is on every screen within
/// about this much (plus the store's cache of up to `QUERY_CACHE_MS`).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often an idle stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client waits before reconnecting after the stream broke (SSE `retry`).
const RECONNECT_AFTER: Duration = Duration::from_secs(3);

/// Subscribes a new client: its first events and its receiver, taken under one lock so that no
/// update falls between them. Starts the poller if none runs.
fn subscribe(state: &Arc<AppState>) -> (Vec<Event>, broadcast::Receiver<Arc<Update>>) {
    let feed = &state.live;
    let mut shared = feed.lock();
    let receiver = feed.updates.subscribe();
    if !shared.polling && !*feed.closed.borrow() {
        shared.polling = true;
        tokio::spawn(poll(state.clone()));
        tracing::debug!("live feed: poller started");
    }
    (shared.current(), receiver)
}

/// The poller: reads, compares, broadcasts, until the last client has gone or the feed closes.
async fn poll(state: Arc<AppState>) {
    let feed = &state.live;
    let mut closed = feed.closed.subscribe();
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let latest = tokio::select! {
            _ = closed.wait_for(|closed| *closed) => break,
            latest = async {
                ticks.tick().await;
                state.store.latest().await
            } => latest,
        };
        let now = Utc::now();
        let polled = match latest {
            Ok(latest) => Ok(Snapshot {
                generated_at: now,
                offline_after_secs: state.offline_after_secs,
                panels: crate::virtual_meters::realtime(
                    &state.meters,
                    &latest,
                    now,
                    state.offline_after_secs,
                ),
            }),
            Err(error) => Err(error.to_string()),
        };
        let mut shared = feed.lock();
        // Checked, and the state reset, under the lock that `subscribe` takes: a client
        // arriving now either is counted here or finds `polling` false and starts a new
        // poller. The state is forgotten so that such a client is not shown a stale snapshot.
        if feed.updates.receiver_count() == 0 {
            *shared = Shared::default();
            tracing::debug!("live feed: poller stopped, no client left");
            return;
        }
        match &polled {
            Err(message) if shared.failure.as_ref() != Some(message) => {
                tracing::warn!(error = %message, "live feed: cannot read the latest readings");
            }
            Ok(_) if shared.failure.is_some() => {
                tracing::info!("live feed: InfluxDB answers again");
            }
            _ => {}
        }
        if let Some(update) = shared.apply(polled) {
            // No receivers is fine: checked above, and the next poll stops.
            let _ = feed.updates.send(Arc::new(update));
        }
    }
    *feed.lock() = Shared::default();
    tracing::debug!("live feed: poller stopped for shutdown");
}

/// One client's stream: its first events, then the broadcast updates, until the feed closes.
fn client_stream(state: Arc<AppState>) -> impl Stream<Item = Result<Event, Infallible>> {
    let (first, updates) = subscribe(&state);
    let mut pending: VecDeque<Event> = first.into();
    // Tell the browser how soon to come back if the connection breaks.
    pending.push_front(Event::default().retry(RECONNECT_AFTER));
    let closed = state.live.closed.subscribe();
    let client = Client {
        state,
        pending,
        updates,
        closed,
    };
    futures_util::stream::unfold(client, |mut client| async move {
        let event = client.next().await?;
        Some((Ok(event), client))
    })
}

struct Client {
    state: Arc<AppState>,
    pending: VecDeque<Event>,
    updates: broadcast::Receiver<Arc<Update>>,
    closed: watch::Receiver<bool>,
}

impl Client {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let received = tokio::select! {
                biased;
                _ = self.closed.wait_for(|closed| *closed) => return None,
                received = self.updates.recv() => received,
            };
            match received {
                Ok(update) => self.pending.extend(events_of(&update)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "live feed: a slow client gets the full state");
                    self.pending.extend(self.state.live.lock().current());
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The panels' live state as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/panel/stream",
    tag = "panels",
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "An endless stream of [Server-Sent Events]\
(https://html.spec.whatwg.org/multipage/server-sent-events.html). It opens with `retry: 3000`; \
each event's `data` is one line of JSON:\n\n\
- `panel`: a `RealtimePanel` (an entry of `/api/panel/realtime`'s `panels`). Sent for every \
panel on connect, then whenever a panel's reading or status changes (ONLINE turning OFFLINE \
as time passes, too).\n\
- `sync`: a `StreamSync`, after a complete set of `panel` events (on connect, after InfluxDB \
recovers, to a client that fell behind); a panel not in its `panels` is gone.\n\
- `error`: an `ErrorBody` with code `influxdb_unavailable` when reading InfluxDB fails; the \
stream stays open and starts again with a full set once InfluxDB answers.\n\n\
A comment line (`:`) every 15 s keeps an idle connection open.",
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("X-Accel-Buffering" = String, description = "`no`, so nginx does not buffer events"),
            )),
    )
)]
pub async fn stream(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        // A reverse proxy that buffers (nginx does by default) would hold events back.
        [(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Sse::new(client_stream(state)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_influxdb_is_an_error_event_and_the_stream_goes_on_until_closed() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use futures_util::StreamExt;
        use tower::ServiceExt;

        let state = crate::state::tests::offline_state();
        let request = Request::get("/api/panel/stream")
            .body(Body::empty())
            .unwrap();
        // This route alone (the whole router is tested in `openapi`).
        let app = axum::Router::from(
            utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(stream)),
        )
        .with_state(state.clone());
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        let read = async {
            while !text.contains("\n\n") || !text.contains("event: error") {
                let chunk = body.next().await.expect("the stream ended").unwrap();
                text.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("an error event within 10 s");
        assert!(text.starts_with("retry: 3000\n"), "{text}");
        assert!(text.contains("\"code\":\"influxdb_unavailable\""), "{text}");
        assert!(state.live.lock().polling);

        state.live.close();
        let rest = tokio::time::timeout(Duration::from_secs(2), async {
            while body.next().await.is_some() {}
        });
        rest.await.expect("closing the feed ends the stream");
    }

    #[tokio::test]
    async fn the_poller_stops_when_the_last_client_leaves() {
        let state = crate::state::tests::offline_state();
        let stream = client_stream(state.clone());
        assert!(state.live.lock().polling);
        drop(stream);
        let stopped = async {
            while state.live.lock().polling {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), stopped)
            .await
            .expect("the poller stops within a few polls");
        // The next client starts a new one.
        let _stream = client_stream(state.clone());
        assert!(state.live.lock().polling);
    }
}
