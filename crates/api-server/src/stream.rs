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
//! previous state and the new one.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{rfc3339, AppState, RealtimePanel};

/// How often the poller reads the latest readings: a new reading is on every screen within
/// about this much (plus the store's cache of up to `QUERY_CACHE_MS`).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often an idle stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client waits before reconnecting after the stream broke (SSE `retry`).
const RECONNECT_AFTER: Duration = Duration::from_secs(3);
/// Updates held for a slow client. One update is at most one poll's changes, so this is about a
/// minute of changes; a client further behind gets a fresh full state instead.
const BACKLOG: usize = 64;

/// The panels' state as of one poll, by panel id.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    generated_at: DateTime<Utc>,
    offline_after_secs: u64,
    panels: BTreeMap<String, RealtimePanel>,
}

/// What the poller broadcasts to every client.
#[derive(Debug, PartialEq)]
enum Update {
    /// The whole state: a `panel` event per panel, then `sync`.
    Full(Snapshot),
    /// Only these panels changed.
    Changed(Vec<RealtimePanel>),
    /// Reading InfluxDB failed with this message.
    Failed(String),
}

/// The live state, shared by the poller and the clients; only ever locked briefly.
#[derive(Debug, Default)]
struct Shared {
    /// Whether a poller task is running.
    polling: bool,
    /// The last successful poll; `None` before the first one.
    snapshot: Option<Snapshot>,
    /// Why the last poll failed, while it keeps failing.
    failure: Option<String>,
}

impl Shared {
    /// Takes in one poll's result; returns what the clients need to hear, if anything.
    fn apply(&mut self, polled: Result<Snapshot, String>) -> Option<Update> {
        match polled {
            Ok(snapshot) => {
                let recovered = self.failure.take().is_some();
                let update = match &self.snapshot {
                    Some(previous) if !recovered => changes(previous, &snapshot),
                    _ => Some(Update::Full(snapshot.clone())),
                };
                self.snapshot = Some(snapshot);
                update
            }
            // Said once per outage (or when the reason changes), not once per poll.
            Err(message) if self.failure.as_ref() != Some(&message) => {
                self.failure = Some(message.clone());
                Some(Update::Failed(message))
            }
            Err(_) => None,
        }
    }

    /// What a client that connects now is sent first.
    fn current(&self) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(snapshot) = &self.snapshot {
            events.extend(full_events(snapshot));
        }
        if let Some(message) = &self.failure {
            events.push(error_event(message));
        }
        events
    }
}

/// The panels of `current` whose state differs from `previous`, or the whole state when a
/// panel disappeared (its data was deleted), since `panel` events cannot say that.
fn changes(previous: &Snapshot, current: &Snapshot) -> Option<Update> {
    if previous
        .panels
        .keys()
        .any(|id| !current.panels.contains_key(id))
    {
        return Some(Update::Full(current.clone()));
    }
    let changed: Vec<RealtimePanel> = current
        .panels
        .iter()
        .filter(|(id, now)| {
            previous
                .panels
                .get(*id)
                .is_none_or(|before| !same_state(before, now))
        })
        .map(|(_, panel)| panel.clone())
        .collect();
    (!changed.is_empty()).then_some(Update::Changed(changed))
}

/// The same reading and status; the age alone ticking on is not a change.
fn same_state(a: &RealtimePanel, b: &RealtimePanel) -> bool {
    a.status == b.status
        && a.last_seen == b.last_seen
        && a.power_kw.to_bits() == b.power_kw.to_bits()
        && a.energy_kwh.to_bits() == b.energy_kwh.to_bits()
}

fn panel_event(panel: &RealtimePanel) -> Event {
    Event::default()
        .event("panel")
        .json_data(panel)
        .unwrap_or_else(|_| error_event("a panel could not be encoded"))
}

/// The data of a `sync` event.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamSync<'a> {
    #[schema(format = DateTime)]
    generated_at: String,
    offline_after_secs: u64,
    /// Every panel there is: the `panel` events since the previous `sync` are the whole state.
    panels: Vec<&'a str>,
}

fn full_events(snapshot: &Snapshot) -> impl Iterator<Item = Event> + '_ {
    let sync = StreamSync {
        generated_at: rfc3339(snapshot.generated_at),
        offline_after_secs: snapshot.offline_after_secs,
        panels: snapshot.panels.keys().map(String::as_str).collect(),
    };
    let sync = Event::default()
        .event("sync")
        .json_data(sync)
        .unwrap_or_else(|_| error_event("the panel list could not be encoded"));
    snapshot
        .panels
        .values()
        .map(panel_event)
        .chain(std::iter::once(sync))
}

fn error_event(message: &str) -> Event {
    let body = ErrorBody {
        error: ErrorDetail {
            code: ErrorCode::InfluxdbUnavailable,
            message: message.to_owned(),
        },
    };
    // An `ErrorBody` is strings only: serializing it cannot fail.
    Event::default()
        .event("error")
        .json_data(body)
        .expect("an error body serializes")
}

fn events_of(update: &Update) -> Vec<Event> {
    match update {
        Update::Full(snapshot) => full_events(snapshot).collect(),
        Update::Changed(panels) => panels.iter().map(panel_event).collect(),
        Update::Failed(message) => vec![error_event(message)],
    }
}

/// The poller's output and the clients' subscriptions to it.
pub struct LiveFeed {
    shared: Mutex<Shared>,
    updates: broadcast::Sender<Arc<Update>>,
    closed: watch::Sender<bool>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    pub fn new() -> Self {
        LiveFeed {
            shared: Mutex::new(Shared::default()),
            updates: broadcast::channel(BACKLOG).0,
            closed: watch::Sender::new(false),
        }
    }

    /// Ends every stream and the poller, for shutdown: an open stream would otherwise keep its
    /// connection busy until the shutdown grace period runs out.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave `Shared` half-updated in a way that
        // matters more than stopping the stream would; carry on with it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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
                panels: latest
                    .into_iter()
                    .map(|(id, latest)| {
                        let panel =
                            RealtimePanel::new(id.clone(), &latest, now, state.offline_after_secs);
                        (id, panel)
                    })
                    .collect(),
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
    use energy_core::Status;

    fn panel(id: &str, power_kw: f64, last_seen: &str, status: Status) -> RealtimePanel {
        RealtimePanel {
            panel: id.into(),
            status,
            power_kw,
            energy_kwh: 10.0,
            last_seen: last_seen.into(),
            seconds_since_last_seen: 1,
        }
    }

    fn snapshot(panels: &[RealtimePanel]) -> Snapshot {
        Snapshot {
            generated_at: "2026-11-27T03:00:05Z".parse().unwrap(),
            offline_after_secs: 300,
            panels: panels
                .iter()
                .map(|p| (p.panel.clone(), p.clone()))
                .collect(),
        }
    }

    const T0: &str = "2026-11-27T03:00:00Z";
    const T1: &str = "2026-11-27T03:01:00Z";

    #[test]
    fn the_first_poll_sends_the_whole_state() {
        let mut shared = Shared::default();
        let first = snapshot(&[panel("A", 1.0, T0, Status::Online)]);
        assert_eq!(
            shared.apply(Ok(first.clone())),
            Some(Update::Full(first.clone()))
        );
        assert_eq!(shared.current().len(), 2, "one panel event and sync");
    }

    #[test]
    fn only_panels_with_a_new_reading_or_status_are_sent() {
        let mut shared = Shared::default();
        let a = panel("A", 1.0, T0, Status::Online);
        let b = panel("B", 2.0, T0, Status::Online);
        shared.apply(Ok(snapshot(&[a.clone(), b.clone()])));
        // The age ticking on is no change.
        let mut a_older = a.clone();
        a_older.seconds_since_last_seen = 2;
        assert_eq!(
            shared.apply(Ok(snapshot(&[a_older.clone(), b.clone()]))),
            None
        );
        let b_new = panel("B", 3.0, T1, Status::Online);
        assert_eq!(
            shared.apply(Ok(snapshot(&[a_older.clone(), b_new.clone()]))),
            Some(Update::Changed(vec![b_new.clone()]))
        );
        let a_offline = panel("A", 1.0, T0, Status::Offline);
        assert_eq!(
            shared.apply(Ok(snapshot(&[a_offline.clone(), b_new.clone()]))),
            Some(Update::Changed(vec![a_offline.clone()]))
        );
        let c = panel("C", 0.5, T1, Status::Online);
        assert_eq!(
            shared.apply(Ok(snapshot(&[a_offline, b_new.clone(), c.clone()]))),
            Some(Update::Changed(vec![c.clone()])),
            "a new panel is a change"
        );
        let gone = snapshot(&[b_new, c]);
        assert_eq!(
            shared.apply(Ok(gone.clone())),
            Some(Update::Full(gone)),
            "a panel that disappeared needs the whole state"
        );
    }

    #[test]
    fn a_failure_is_said_once_and_recovery_resends_the_whole_state() {
        let mut shared = Shared::default();
        let state = snapshot(&[panel("A", 1.0, T0, Status::Online)]);
        shared.apply(Ok(state.clone()));
        assert_eq!(
            shared.apply(Err("timed out".into())),
            Some(Update::Failed("timed out".into()))
        );
        assert_eq!(shared.apply(Err("timed out".into())), None);
        assert_eq!(
            shared.apply(Err("refused".into())),
            Some(Update::Failed("refused".into())),
            "a new reason is said"
        );
        // A client connecting during the outage gets the last state and the error.
        assert_eq!(shared.current().len(), 3);
        assert_eq!(
            shared.apply(Ok(state.clone())),
            Some(Update::Full(state)),
            "even with nothing changed, clients learn the outage is over"
        );
        assert_eq!(shared.failure, None);
    }

    /// The bytes an SSE response sends for `events`.
    async fn wire(events: Vec<Event>) -> String {
        let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        let body = Sse::new(stream).into_response().into_body();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_whole_state_is_one_panel_event_per_panel_then_sync() {
        let mut odd = panel("A\nB \"x\"", 1.5, T0, Status::Online);
        odd.energy_kwh = 1043.25;
        let state = snapshot(&[odd, panel("B", 2.0, T1, Status::Offline)]);
        let text = wire(full_events(&state).collect()).await;
        assert_eq!(
            text,
            "event: panel\n\
             data: {\"panel\":\"A\\nB \\\"x\\\"\",\"status\":\"ONLINE\",\"power_kw\":1.5,\
             \"energy_kwh\":1043.25,\"last_seen\":\"2026-11-27T03:00:00Z\",\"seconds_since_last_seen\":1}\n\n\
             event: panel\n\
             data: {\"panel\":\"B\",\"status\":\"OFFLINE\",\"power_kw\":2.0,\"energy_kwh\":10.0,\
             \"last_seen\":\"2026-11-27T03:01:00Z\",\"seconds_since_last_seen\":1}\n\n\
             event: sync\n\
             data: {\"generated_at\":\"2026-11-27T03:00:05Z\",\"offline_after_secs\":300,\
             \"panels\":[\"A\\nB \\\"x\\\"\",\"B\"]}\n\n"
        );
    }

    #[tokio::test]
    async fn an_error_event_has_the_shape_of_every_api_error() {
        assert_eq!(
            wire(vec![error_event("connection refused")]).await,
            "event: error\n\
             data: {\"error\":{\"code\":\"influxdb_unavailable\",\"message\":\"connection refused\"}}\n\n"
        );
    }

    #[tokio::test]
    async fn an_unreachable_influxdb_is_an_error_event_and_the_stream_goes_on_until_closed() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use futures_util::StreamExt;
        use tower::ServiceExt;

        let state = crate::routes::tests::offline_state();
        let request = Request::get("/api/panel/stream")
            .body(Body::empty())
            .unwrap();
        let response = crate::routes::app(state.clone())
            .oneshot(request)
            .await
            .unwrap();
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
        let state = crate::routes::tests::offline_state();
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
