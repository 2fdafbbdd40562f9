//! Delivery of alert notifications (docs/alerts.md): each journal entry to each of its
//! pending targets, on tasks of their own, so a slow or dead target holds up neither the
//! evaluator, nor the other targets, nor any answer of the API (ingest is another program).
//!
//! - A webhook gets the event as JSON by `POST`, with `X-Energy-Alert-Id` (the idempotency key)
//!   and, when the webhook has a secret, `X-Energy-Signature: sha256=<hex>`, the HMAC-SHA256 of
//!   the body under the secret. Any 2xx is delivered; anything else (a 500, a refused
//!   signature, no answer within 10 s, no connection) is retried after 1 s, 2 s, 4 s … up to
//!   5 min between attempts, for a day; then the target is given up and that is logged.
//! - MQTT gets it on `<prefix>/alerts/<rule>`, QoS 1, retained (so the topic always holds the
//!   rule's last event), delivered once the broker acknowledges it.
//!
//! Each delivered target is taken off the entry's `pending` in the journal: after a restart
//! only what was not delivered is sent again. A crash between a receiver's 2xx and that record
//! sends the event once more, with the same `id`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use energy_core::alerts::{Webhook, MQTT_TARGET};
use energy_influx::InfluxClient;
use energy_rollup::alerts::{self as journal, Entry};
use energy_service::mqtt::MqttSettings;
use energy_service::Secret;
use rumqttc::{AsyncClient, Event, Incoming, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};

use crate::answers::rfc3339;

/// First pause between two attempts; doubled after each failure.
const FIRST_RETRY: StdDuration = StdDuration::from_secs(1);
/// Longest pause between two attempts.
const LONGEST_RETRY: StdDuration = StdDuration::from_secs(300);
/// A target is given up this long after the event.
const GIVE_UP_AFTER_HOURS: i64 = 24;
/// One attempt's limit (connect, send, answer).
const ATTEMPT_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Entries waiting for a delivery task: a burst of every rule firing at once fits many times.
pub(crate) const QUEUE: usize = 1024;

/// A webhook as configured: its address and its signing key.
pub(crate) struct HookTarget {
    url: String,
    secret: Option<Secret>,
}

/// Where notifications go.
pub(crate) struct Targets {
    hooks: BTreeMap<String, HookTarget>,
    mqtt: Option<MqttTarget>,
    http: reqwest::Client,
}

impl Targets {
    /// The targets of the alerts file: each webhook's secret from its environment variable
    /// (`secrets`: read at start, where a missing one stops the server), the MQTT connection
    /// when there is an `[mqtt]` table.
    pub(crate) fn new(
        webhooks: &[Webhook],
        secrets: &BTreeMap<String, Secret>,
        mqtt: Option<(MqttSettings, String)>,
    ) -> Targets {
        Targets {
            hooks: webhooks
                .iter()
                .map(|hook| {
                    let target = HookTarget {
                        url: hook.url.clone(),
                        secret: secrets.get(&hook.name).cloned(),
                    };
                    (hook.name.clone(), target)
                })
                .collect(),
            mqtt: mqtt.map(|(settings, prefix)| MqttTarget::connect(&settings, prefix)),
            http: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .connect_timeout(ATTEMPT_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }
}

/// The JSON of a notification: the journal entry as `GET /api/alerts` shows it.
#[derive(Serialize)]
struct Notification<'a> {
    id: &'a str,
    rule: &'a str,
    meter: &'a str,
    transition: &'static str,
    /// `firing` or `resolved`: the rule's state after this event.
    state: &'static str,
    at: String,
    fired_at: String,
    value: f64,
    threshold: f64,
    message: &'a str,
}

fn body_of(entry: &Entry) -> String {
    let fired = entry.transition == energy_core::alerts::Transition::Fired;
    let notification = Notification {
        id: &entry.id,
        rule: &entry.rule,
        meter: &entry.meter,
        transition: entry.transition.name(),
        state: if fired { "firing" } else { "resolved" },
        at: rfc3339(entry.at),
        fired_at: rfc3339(entry.fired_at),
        value: entry.value,
        threshold: entry.threshold,
        message: &entry.message,
    };
    serde_json::to_string(&notification).unwrap_or_default()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub(crate) fn signature(secret: &Secret, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    let mut out = String::from("sha256=");
    for byte in tag.as_ref() {
        out += &format!("{byte:02x}");
    }
    out
}

/// Delivers every entry it is handed, until the channel closes.
pub(crate) async fn run(
    targets: Targets,
    journal: InfluxClient,
    mut entries: mpsc::Receiver<Entry>,
) {
    let shared = Arc::new((targets, journal));
    while let Some(entry) = entries.recv().await {
        let pending = Arc::new(Mutex::new(entry.pending.clone()));
        let entry = Arc::new(entry);
        for target in entry.pending.clone() {
            let (shared, entry, pending) = (shared.clone(), entry.clone(), pending.clone());
            tokio::spawn(async move {
                let (targets, journal) = &*shared;
                let outcome = deliver(targets, &entry, &target).await;
                crate::metrics::alert_delivery(&target, outcome);
                // Delivered or given up: no longer owed.
                let mut left = pending.lock().await;
                left.retain(|t| *t != target);
                record_pending(journal, &entry, &left).await;
            });
        }
    }
}

/// How a target's delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    GivenUp,
}

/// Tries `target` until it takes `entry` or the day is over.
async fn deliver(targets: &Targets, entry: &Entry, target: &str) -> Outcome {
    let body = body_of(entry);
    let give_up = entry.at + Duration::hours(GIVE_UP_AFTER_HOURS);
    let mut pause = FIRST_RETRY;
    let mut attempt = 1u32;
    loop {
        let result = match (target, targets.hooks.get(target), &targets.mqtt) {
            (_, Some(hook), _) => post(&targets.http, hook, entry, &body).await,
            (MQTT_TARGET, None, Some(mqtt)) => mqtt.publish(&entry.rule, &body).await,
            _ => Err("no such target is configured (the alerts file changed?)".to_owned()),
        };
        match result {
            Ok(()) => {
                tracing::info!(rule = %entry.rule, id = %entry.id, target, attempt,
                    "alerts: notification delivered");
                return Outcome::Delivered;
            }
            Err(reason) if Utc::now() + Duration::from_std(pause).unwrap_or_default() > give_up => {
                tracing::error!(rule = %entry.rule, id = %entry.id, target, attempt, %reason,
                    "alerts: giving up on this notification a day after the event");
                return Outcome::GivenUp;
            }
            Err(reason) => {
                crate::metrics::alert_delivery_failed(target);
                tracing::warn!(rule = %entry.rule, id = %entry.id, target, attempt, %reason,
                    retry_in_secs = pause.as_secs(), "alerts: notification not delivered; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_RETRY);
        attempt += 1;
    }
}

async fn post(
    http: &reqwest::Client,
    hook: &HookTarget,
    entry: &Entry,
    body: &str,
) -> Result<(), String> {
    let mut request = http
        .post(&hook.url)
        .header("Content-Type", "application/json")
        .header("X-Energy-Alert-Id", &entry.id)
        .body(body.to_owned());
    if let Some(secret) = &hook.secret {
        request = request.header("X-Energy-Signature", signature(secret, body));
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("answered {}", response.status())),
        // Without the URL: it may carry a token in its query.
        Err(error) => Err(error.without_url().to_string()),
    }
}

/// Records what `entry` still owes, a few times if InfluxDB does not take it (if it never
/// does, a restart sends the delivered targets once more, with the same `id`).
async fn record_pending(journal: &InfluxClient, entry: &Entry, left: &[String]) {
    let line = journal::pending_line(&entry.rule, entry.at, left);
    for pause in [1, 5, 30] {
        match journal.write(line.clone()).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(rule = %entry.rule, id = %entry.id, %error,
                    "alerts: cannot record the delivery in the journal; trying again");
                tokio::time::sleep(StdDuration::from_secs(pause)).await;
            }
        }
    }
}

/// The MQTT side: one connection, one publish in flight at a time, each waited on until the
/// broker acknowledges it.
struct MqttTarget {
    client: AsyncClient,
    prefix: String,
    acknowledged: watch::Receiver<u64>,
    one_at_a_time: Mutex<()>,
}

impl MqttTarget {
    fn connect(settings: &MqttSettings, prefix: String) -> MqttTarget {
        let (client, mut event_loop) = AsyncClient::new(settings.options("api-server-alerts"), 64);
        let (acks, acknowledged) = watch::channel(0u64);
        let broker = format!("{}:{}", settings.mqtt_url.host, settings.mqtt_url.port);
        tokio::spawn(async move {
            let mut down = false;
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        tracing::info!(broker, "alerts: connected to the MQTT broker");
                        down = false;
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => acks.send_modify(|n| *n += 1),
                    Ok(_) => {}
                    Err(error) => {
                        if !down {
                            tracing::warn!(broker, %error, "alerts: MQTT broker unreachable; retrying");
                            down = true;
                        }
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        });
        MqttTarget {
            client,
            prefix,
            acknowledged,
            one_at_a_time: Mutex::new(()),
        }
    }

    async fn publish(&self, rule: &str, body: &str) -> Result<(), String> {
        let _turn = self.one_at_a_time.lock().await;
        let mut acknowledged = self.acknowledged.clone();
        let before = *acknowledged.borrow_and_update();
        let topic = format!("{}/alerts/{rule}", self.prefix);
        self.client
            .publish(topic, QoS::AtLeastOnce, true, body.as_bytes().to_vec())
            .await
            .map_err(|e| e.to_string())?;
        let acked = tokio::time::timeout(ATTEMPT_TIMEOUT, acknowledged.wait_for(|n| *n > before))
            .await
            .is_ok_and(|waited| waited.is_ok());
        if acked {
            Ok(())
        } else {
            Err("the broker did not acknowledge it within 10 s".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(&Secret::new("Jefe"), "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
