//! The intake task: owns the MQTT event loop, (re)subscribes after every clean connect,
//! validates each message and passes the outcome to the batcher in arrival order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use energy_core::reading::{is_alert_topic, parse_message};
use energy_core::Reading;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Publish, QoS};
use tokio::sync::{mpsc, watch};

use crate::panels::PanelRegistry;
use crate::stats::Stats;

/// Largest MQTT packet accepted: the protocol's own maximum (MQTT 3.1.1 §2.2.3), so that
/// whatever the broker delivers is received and rejected with a reason. A smaller limit turns
/// an oversized message into a connection error, and at QoS 1 on a persistent session the
/// broker sends it again after every reconnect: one stranger's message would stop all ingest.
/// The payload is dropped as soon as it is validated; brokers should still set
/// `message_size_limit` so such messages never travel at all.
pub const MAX_PACKET_BYTES: usize = 268_435_455;

/// One received message: its validated reading (or `None` when it was rejected) and what
/// acknowledging it takes.
#[derive(Debug)]
pub struct Item {
    pub reading: Option<Reading>,
    pub ack: Ack,
}

/// What [`AsyncClient::ack`] needs of a message, without its payload.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub qos: QoS,
    pub pkid: u16,
}

impl Ack {
    pub fn to_publish(self) -> Publish {
        let mut publish = Publish::new("", self.qos, Vec::<u8>::new());
        publish.pkid = self.pkid;
        publish
    }
}

/// What the intake listens to and admits.
pub struct Source {
    /// The topic prefix panel ids are read after.
    pub prefix: String,
    /// The filter subscribed: `<prefix>/#`, or a shared subscription of it.
    pub filter: String,
    pub panels: PanelRegistry,
}

pub async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    mut source: Source,
    items: mpsc::Sender<Item>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let filter = source.filter.clone();
    let mut outage: Option<Outage> = None;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            // After shutdown we keep polling so the batcher's last acks and the DISCONNECT
            // go out; main stops us with a timeout.
            _ = shutdown.changed(), if !*shutdown.borrow() => continue,
        };
        match event {
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                stats.received();
                let item = validate(&mut source, publish, &stats);
                // Blocks while the batcher is full (InfluxDB down): the event loop stops, the
                // socket fills, and the broker holds the rest. Memory stays bounded.
                if items.send(item).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Incoming::ConnAck(connack))) => {
                if let Some(outage) = outage.take() {
                    tracing::info!(
                        after_secs = outage.since.elapsed().as_secs(),
                        "reconnected to the broker"
                    );
                } else {
                    tracing::info!(
                        session_present = connack.session_present,
                        "connected to the broker"
                    );
                }
                // A persistent session remembers the subscription; subscribe again only
                // when the broker has none for us.
                if connack.session_present {
                    tracing::info!(topic = %filter, "subscribed (kept by the persistent session)");
                } else if let Err(error) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    tracing::error!(%error, "cannot queue the subscription");
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(suback))) => {
                tracing::info!(topic = %filter, return_codes = ?suback.return_codes, "subscribed");
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                tracing::info!("disconnected from the broker");
                return;
            }
            Ok(_) => {}
            Err(error) if energy_service::mqtt::credentials_refused(&error) => {
                tracing::error!(%error, "the broker refused our credentials: check MQTT_USERNAME and MQTT_PASSWORD");
                // A wrong password does not fix itself: stop (exit 1) rather than retry quietly.
                // Nothing is lost: unacknowledged messages stay with the broker.
                std::process::exit(1);
            }
            Err(error) => {
                if *shutdown.borrow() {
                    return;
                }
                let outage = outage.get_or_insert_with(Outage::new);
                outage.report(&error);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn validate(source: &mut Source, publish: Publish, stats: &Stats) -> Item {
    let ack = Ack {
        qos: publish.qos,
        pkid: publish.pkid,
    };
    let topic = &publish.topic;
    // The api-server's alerts share the prefix: acknowledged, neither stored nor rejected.
    if is_alert_topic(&source.prefix, topic) {
        tracing::debug!(%topic, "an alert notification, not a reading: skipped");
        return Item { reading: None, ack };
    }
    let outcome = parse_message(&source.prefix, topic, &publish.payload, Utc::now())
        .and_then(|reading| source.panels.admit(&reading.panel).map(|()| reading));
    match outcome {
        Ok(reading) => Item {
            reading: Some(reading),
            ack,
        },
        Err(rejection) => {
            let shown: String = topic.chars().take(200).collect();
            tracing::warn!(topic = %shown.escape_debug(), reason = rejection.reason(), "rejected message: {rejection}");
            stats.reject(rejection.reason());
            Item { reading: None, ack }
        }
    }
}

/// A broker outage: logged when it starts and then every 30 s, not on every retry.
struct Outage {
    since: Instant,
    last_report: Option<Instant>,
}

impl Outage {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            last_report: None,
        }
    }

    fn report(&mut self, error: &rumqttc::ConnectionError) {
        if self
            .last_report
            .is_some_and(|t| t.elapsed() < Duration::from_secs(30))
        {
            return;
        }
        self.last_report = Some(Instant::now());
        let down_secs = self.since.elapsed().as_secs();
        tracing::warn!(%error, down_secs, "broker connection lost; reconnecting every second");
    }
}
