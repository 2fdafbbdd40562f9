//! The MQTT connection: a task that drives rumqttc's event loop for as long as the program runs,
//! reconnecting by itself, and says what the connection is doing without flooding the log.
//!
//! Publishing never waits for the broker. Readings queue in rumqttc's request channel while
//! the broker is away and go out, oldest first, once it is back; they carry their own
//! timestamps and the subscriber's writes are idempotent, so late or twice is harmless.

use std::time::Duration;

use energy_service::mqtt::MqttSettings;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, Request};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Readings held while the broker is unreachable: 10 000 is about two days of three panels at
/// one reading a minute, and a few megabytes at most. Beyond that new readings are dropped; the
/// registers keep counting, so the energy still shows up in the next delivered reading.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Pause between two connection attempts, so a dead broker is not hammered.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// While the broker stays unreachable, the outage is logged again this often.
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(30);

/// The program's side of the connection.
pub struct Connection {
    pub client: AsyncClient,
    /// How many publishes the broker has acknowledged so far.
    acknowledged: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Connection {
    /// Starts the event-loop task. It connects in the background; nothing here waits for it.
    pub fn start(settings: &MqttSettings, program: &str) -> Self {
        let (client, event_loop) = AsyncClient::new(settings.options(program), QUEUE_CAPACITY);
        let (acknowledged_tx, acknowledged) = watch::channel(0);
        let broker = format!("{}:{}", settings.mqtt_url.host, settings.mqtt_url.port);
        let task = tokio::spawn(drive(event_loop, broker, acknowledged_tx));
        Self {
            client,
            acknowledged,
            task,
        }
    }

    /// Ends the connection cleanly within `grace`: waits for the broker to acknowledge the
    /// `published` readings, then sends DISCONNECT. Returns how many were not acknowledged.
    pub async fn close(mut self, published: u64, grace: Duration) -> u64 {
        let deadline = Instant::now() + grace;
        let _ = tokio::time::timeout_at(
            deadline,
            self.acknowledged.wait_for(|&acked| acked >= published),
        )
        .await;
        let unacknowledged = published.saturating_sub(*self.acknowledged.borrow());
        // try_: a full queue (broker away) must not hold up the shutdown.
        if self.client.try_disconnect().is_ok() {
            // The task ends once DISCONNECT is on the wire; give it a moment even if the
            // acknowledgements used up the grace period.
            let flush_deadline = deadline.max(Instant::now() + Duration::from_millis(500));
            if tokio::time::timeout_at(flush_deadline, &mut self.task)
                .await
                .is_ok()
            {
                return unacknowledged;
            }
        }
        self.task.abort();
        unacknowledged
    }
}

/// Polls the event loop until the program disconnects. Polling again after an error is what
/// makes rumqttc reconnect.
async fn drive(mut event_loop: EventLoop, broker: String, acknowledged: watch::Sender<u64>) {
    let mut outage = Outage::default();
    // Publishes of a broken connection, to send again on the next one (see `keep_unsent`).
    let mut unsent: Vec<Request> = Vec::new();
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                match outage.connected(Instant::now()) {
                    Some(down) => tracing::info!(
                        broker,
                        down_secs = down.as_secs(),
                        to_resend = unsent.len(),
                        "reconnected to the MQTT broker"
                    ),
                    None => tracing::info!(broker, "connected to the MQTT broker"),
                }
                event_loop.pending.extend(unsent.drain(..));
            }
            Ok(Event::Incoming(Incoming::PubAck(_))) => {
                acknowledged.send_modify(|n| *n += 1);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!(broker, "disconnected from the MQTT broker");
                return;
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => return,
            Err(error) if energy_service::mqtt::credentials_refused(&error) => {
                tracing::error!(
                    broker,
                    %error,
                    "the MQTT broker refused the credentials: check MQTT_USERNAME and MQTT_PASSWORD"
                );
                // A wrong password does not fix itself: stop (exit 1) rather than retry quietly.
                std::process::exit(1);
            }
            Err(error) => {
                keep_unsent(&mut event_loop, &mut unsent);
                if let Some(down) = outage.failed(Instant::now()) {
                    report(&broker, &error, down, unsent.len());
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// When a connection breaks, rumqttc moves the publishes the broker has not acknowledged (and
/// those still in the request channel) to `pending`, but it clears `pending` when the broker
/// answers with a new session, which it always does for a clean session and after a broker
/// restart. Those are readings; losing them leaves gaps in the history. So they are taken
/// aside here and handed back after the next CONNACK, with their packet ids cleared so they
/// get fresh ones in the new session.
fn keep_unsent(event_loop: &mut EventLoop, unsent: &mut Vec<Request>) {
    unsent.extend(
        event_loop
            .pending
            .drain(..)
            .filter_map(|request| match request {
                Request::Publish(mut publish) => {
                    publish.pkid = 0;
                    publish.dup = false;
                    Some(Request::Publish(publish))
                }
                // Pings and acknowledgements belong to the old connection.
                _ => None,
            }),
    );
}

fn report(broker: &str, error: &ConnectionError, down: Duration, to_resend: usize) {
    tracing::warn!(
        broker,
        down_secs = down.as_secs(),
        to_resend,
        %error,
        "MQTT broker unreachable; readings are queued and the connection is retried"
    );
}

/// When an outage is worth a log line: its first error, then one every
/// [`OUTAGE_REPORT_EVERY`] while it lasts.
#[derive(Debug, Default)]
struct Outage {
    down_since: Option<Instant>,
    last_report: Option<Instant>,
}

impl Outage {
    /// A connection attempt failed at `now`. Returns how long the broker has been down if this
    /// failure should be logged.
    fn failed(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.down_since.get_or_insert(now);
        let due = self
            .last_report
            .is_none_or(|last| now.duration_since(last) >= OUTAGE_REPORT_EVERY);
        if due {
            self.last_report = Some(now);
            Some(now.duration_since(since))
        } else {
            None
        }
    }

    /// The connection is up at `now`. Returns how long it was down, if it was.
    fn connected(&mut self, now: Instant) -> Option<Duration> {
        self.last_report = None;
        self.down_since
            .take()
            .map(|since| now.duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_outage_is_logged_at_its_start_and_then_every_30_seconds() {
        let mut outage = Outage::default();
        let start = Instant::now();
        let logged: Vec<u64> = (0..95)
            .filter_map(|s| outage.failed(start + Duration::from_secs(s)))
            .map(|down| down.as_secs())
            .collect();
        assert_eq!(logged, [0, 30, 60, 90]);
    }

    #[test]
    fn reconnecting_reports_the_outage_length_and_starts_afresh() {
        let mut outage = Outage::default();
        let start = Instant::now();
        assert_eq!(outage.connected(start), None);
        outage.failed(start);
        outage.failed(start + SECOND * 5);
        assert_eq!(outage.connected(start + SECOND * 7), Some(SECOND * 7));
        assert_eq!(outage.connected(start + SECOND * 8), None);
        // A new outage is logged at once, even soon after the previous report.
        assert_eq!(outage.failed(start + SECOND * 10), Some(Duration::ZERO));
    }
}
