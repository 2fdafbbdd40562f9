//! The panels' live state behind `/api/panel/stream` (see `stream`, which polls InfluxDB and
//! serves the clients): what one poll changed, decided by [`Shared::apply`], a plain function of
//! the previous state and the new one; the events that say so (`panel`, `sync`, `error`); and
//! the [`LiveFeed`] that holds the state, broadcasts the updates and tells when to close.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::response::sse::Event;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;

use crate::answers::{rfc3339, RealtimePanel};
use crate::error::{ErrorBody, ErrorCode, ErrorDetail};

/// Updates held for a slow client. One update is at most one poll's changes, so this is about a
/// minute of changes; a client further behind gets a fresh full state instead.
const BACKLOG: usize = 64;

/// The panels' state as of one poll, by panel id.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) generated_at: DateTime<Utc>,
    pub(crate) offline_after_secs: u64,
    pub(crate) panels: BTreeMap<String, RealtimePanel>,
}

/// What the poller broadcasts to every client.
#[derive(Debug, PartialEq)]
pub(crate) enum Update {
    /// The whole state: a `panel` event per panel, then `sync`.
    Full(Snapshot),
    /// Only these panels changed.
    Changed(Vec<RealtimePanel>),
    /// Reading InfluxDB failed with this message.
    Failed(String),
}

/// The live state, shared by the poller and the clients; only ever locked briefly.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Whether a poller task is running.
    pub(crate) polling: bool,
    /// The last successful poll; `None` before the first one.
    snapshot: Option<Snapshot>,
    /// Why the last poll failed, while it keeps failing.
    pub(crate) failure: Option<String>,
}

impl Shared {
    /// Takes in one poll's result; returns what the clients need to hear, if anything.
    pub(crate) fn apply(&mut self, polled: Result<Snapshot, String>) -> Option<Update> {
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
    pub(crate) fn current(&self) -> Vec<Event> {
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
        && a.offline_members == b.offline_members
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

pub(crate) fn events_of(update: &Update) -> Vec<Event> {
    match update {
        Update::Full(snapshot) => full_events(snapshot).collect(),
        Update::Changed(panels) => panels.iter().map(panel_event).collect(),
        Update::Failed(message) => vec![error_event(message)],
    }
}

/// The poller's output and the clients' subscriptions to it. The poller and the clients (in
/// `stream`) use its parts directly, under the rules written there.
pub struct LiveFeed {
    shared: Mutex<Shared>,
    pub(crate) updates: broadcast::Sender<Arc<Update>>,
    pub(crate) closed: watch::Sender<bool>,
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

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave `Shared` half-updated in a way that
        // matters more than stopping the stream would; carry on with it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use axum::response::sse::Sse;
    use axum::response::IntoResponse;
    use energy_core::Status;

    fn panel(id: &str, power_kw: f64, last_seen: &str, status: Status) -> RealtimePanel {
        RealtimePanel {
            panel: id.into(),
            kind: crate::answers::Kind::Panel,
            status,
            power_kw,
            energy_kwh: 10.0,
            last_seen: last_seen.into(),
            seconds_since_last_seen: 1,
            offline_members: None,
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
             data: {\"panel\":\"A\\nB \\\"x\\\"\",\"kind\":\"panel\",\"status\":\"ONLINE\",\"power_kw\":1.5,\
             \"energy_kwh\":1043.25,\"last_seen\":\"2026-11-27T03:00:00Z\",\"seconds_since_last_seen\":1}\n\n\
             event: panel\n\
             data: {\"panel\":\"B\",\"kind\":\"panel\",\"status\":\"OFFLINE\",\"power_kw\":2.0,\"energy_kwh\":10.0,\
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
}
