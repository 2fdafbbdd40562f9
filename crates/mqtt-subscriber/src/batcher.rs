//! The batcher: collects validated messages into batches, writes each batch, then hands its
//! acknowledgements to the acknowledging task, which passes them to the MQTT event loop in the
//! order the messages arrived (MQTT 3.1.1 §4.6.0-2).
//!
//! The two are separate so that the batcher never waits for the event loop. The event loop is
//! driven by the intake task, which waits for room in the batcher's channel: a batcher that
//! waited for room in the event loop's request channel could close a circle where each waits
//! for the other, with the connection's keep-alive lapsing while nothing moves. That happened
//! under a flood from a broker that sent far beyond its in-flight window (docs/operations.md,
//! "Running the broker for this").

use std::sync::Arc;
use std::time::Duration;

use energy_core::invalidation::Dirty;
use energy_core::line_protocol;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::intake::{Ack, Item};
use crate::stats::Stats;
use crate::writer::{Outcome, Writer};

/// A batch is also written as soon as no message has arrived for this long. With
/// acknowledge-after-write the broker sends at most its in-flight window (Mosquitto's
/// `max_inflight_messages`, 20 by default) before waiting for our acks, so waiting out the
/// whole flush interval for a batch that cannot grow would cap throughput at one window per
/// interval.
const IDLE_FLUSH: Duration = Duration::from_millis(2);

pub struct Config {
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Names this subscriber in the entries of the rollup's invalidation log.
    pub writer: String,
}

#[derive(Default)]
struct Batch {
    body: String,
    points: usize,
    acks: Vec<Ack>,
    dirty: Dirty,
}

impl Batch {
    fn push(&mut self, item: Item) {
        if let Some(reading) = &item.reading {
            line_protocol::encode(reading, &mut self.body);
            self.points += 1;
            self.dirty.mark(reading.panel.as_str(), reading.time);
        }
        self.acks.push(item.ack);
    }
}

pub async fn run(
    config: Config,
    mut items: mpsc::Receiver<Item>,
    writer: Writer,
    acks: mpsc::UnboundedSender<Vec<Ack>>,
    stats: Arc<Stats>,
    written: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Wait for the first message of the next batch.
        let first = tokio::select! {
            item = items.recv() => item,
            _ = shutdown.changed() => None,
        };
        let Some(first) = first else { return };
        let mut batch = Batch::default();
        batch.push(first);
        let deadline = Instant::now() + config.flush_interval;

        // Fill it until it is full, old enough, or nothing more is coming right now.
        while batch.points < config.batch_size {
            let wait_until = deadline.min(Instant::now() + IDLE_FLUSH);
            match tokio::time::timeout_at(wait_until, items.recv()).await {
                Ok(Some(item)) => batch.push(item),
                Ok(None) | Err(_) => break,
            }
        }

        if batch.points > 0 {
            stats.batch(batch.points);
            // The rollup's invalidation log travels in the same request as the readings it
            // names (docs/rollup.md): stored with them, or retried with them.
            batch.dirty.encode_log(&config.writer, &mut batch.body);
            if writer.write(&batch.body, batch.points, &mut shutdown).await == Outcome::Abandoned {
                return;
            }
            written.notify_one();
        }
        // Never waits: the queue is unbounded, and holds 4 bytes per message whose points
        // are already stored (docs/operations.md, "Running the broker for this").
        if acks.send(batch.acks).is_err() {
            return;
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// The acknowledging task: passes each batch's acks to the event loop, in arrival order,
/// waiting for room in its request channel as long as it takes. Ends when the batcher has
/// ended and every ack it handed over is queued (or the event loop is gone, in which case
/// the broker redelivers what was not acknowledged).
pub async fn acknowledge(
    client: AsyncClient,
    mut batches: mpsc::UnboundedReceiver<Vec<Ack>>,
    stats: Arc<Stats>,
) {
    let mut event_loop_gone = false;
    while let Some(acks) = batches.recv().await {
        for ack in &acks {
            if ack.qos == QoS::AtMostOnce || event_loop_gone {
                continue;
            }
            if let Err(error) = client.ack(&ack.to_publish()).await {
                tracing::warn!(%error, "could not queue an acknowledgement; the broker will redeliver the unacknowledged messages");
                event_loop_gone = true;
            }
        }
        stats.acknowledged(acks.len());
    }
}
