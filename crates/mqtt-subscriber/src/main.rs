//! `mqtt-subscriber`: MQTT → validation → InfluxDB, at least once and in order.
//!
//! Three tasks share the work. The intake task owns the MQTT event loop: it validates each
//! message as it arrives and hands the outcome down a bounded channel. The batcher collects
//! outcomes into batches, writes each batch to InfluxDB (retrying with backoff while InfluxDB
//! is down) and only then hands the batch's acknowledgements to the acknowledging task, which
//! queues them for the event loop in the order the messages arrived. A crash or an outage
//! therefore loses nothing the broker delivered: unacknowledged messages are delivered again
//! on the persistent session, and rewriting a point is harmless.

mod batcher;
mod check;
mod intake;
mod metrics;
mod panels;
mod rollup;
mod settings;
mod stats;
mod writer;

use std::sync::Arc;

use clap::Parser;
use energy_influx::InfluxClient;
use tokio::sync::{mpsc, watch};

use crate::settings::Settings;
use crate::stats::Stats;

const PROGRAM: &str = "mqtt-subscriber";

// jemalloc, not glibc's malloc: see `energy_service::allocator`.
energy_service::use_jemalloc!();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    energy_service::load_dotenv();
    let settings = Settings::parse();
    if let Err(message) = settings.check() {
        use clap::CommandFactory;
        Settings::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    energy_service::logging::init(settings.log_format);

    let influx = match InfluxClient::new(&settings.influx) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the InfluxDB client");
            return std::process::ExitCode::FAILURE;
        }
    };
    let metrics = match settings.metrics_addr {
        None => None,
        Some(addr) => match crate::metrics::serve(addr) {
            Ok(listener) => {
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
                Some(listener)
            }
            Err(error) => {
                tracing::error!(%error, %addr, "cannot serve metrics on METRICS_ADDR");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    if let Some(range) = settings.check_rollup {
        return check::run(&influx, settings.rules(), range, settings.repair).await;
    }
    run(settings, influx).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    std::process::ExitCode::SUCCESS
}

async fn run(settings: Settings, influx: InfluxClient) {
    let stats = Arc::new(Stats::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (rollup_stop_tx, rollup_stop_rx) = watch::channel(false);
    let written = Arc::new(tokio::sync::Notify::new());

    let mut options = settings.mqtt.options(PROGRAM);
    // A persistent session keeps what arrives while we are away; manual acks let us hold
    // the acknowledgement until the point is stored.
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(intake::MAX_PACKET_BYTES, intake::MAX_PACKET_BYTES);
    // The request channel carries our acks to the event loop. The acknowledging task may wait
    // for room in it without holding anything else up (see batcher.rs); its size only sets how
    // many acks travel at once.
    let request_capacity = settings.max_buffered + settings.batch_size + 64;
    let (client, eventloop) = rumqttc::AsyncClient::new(options, request_capacity);

    tracing::info!(
        broker = %format!("{}:{}", settings.mqtt.mqtt_url.host, settings.mqtt.mqtt_url.port),
        tls = settings.mqtt.mqtt_url.tls,
        client_id = %settings.mqtt.client_id(PROGRAM),
        topic = %settings.topic_filter(),
        influx = %influx.base_url(),
        database = %influx.database(),
        "starting"
    );
    writer::ensure_database(&influx).await;

    let (items_tx, items_rx) = mpsc::channel(settings.max_buffered);
    let source = intake::Source {
        prefix: settings.mqtt.mqtt_topic_prefix.clone(),
        filter: settings.topic_filter(),
        panels: panels::PanelRegistry::load(&influx, settings.max_panels).await,
    };
    let intake = tokio::spawn(intake::run(
        eventloop,
        client.clone(),
        source,
        items_tx,
        stats.clone(),
        shutdown_rx.clone(),
    ));
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let acknowledging = tokio::spawn(batcher::acknowledge(client.clone(), acks_rx, stats.clone()));
    let batcher = tokio::spawn(batcher::run(
        batcher::Config {
            batch_size: settings.batch_size,
            flush_interval: settings.flush_interval(),
            writer: settings.mqtt.client_id(PROGRAM),
        },
        items_rx,
        writer::Writer::new(influx.clone(), stats.clone()),
        acks_tx,
        stats.clone(),
        written.clone(),
        shutdown_rx.clone(),
    ));
    let rollup = settings.is_rollup_writer().then(|| {
        tokio::spawn(rollup::run(
            energy_rollup::Rollup::new(influx, settings.rules()),
            written,
            rollup::Config {
                rebuild: settings.rebuild_rollup,
                check_every: settings.rollup_check_interval(),
                write_timeout: std::time::Duration::from_millis(settings.influx.influx_timeout_ms),
            },
            stats.clone(),
            rollup_stop_rx,
        ))
    });
    if rollup.is_none() {
        tracing::info!("ROLLUP_WRITER=false: another subscriber keeps the usage rollup");
    }
    let summary = tokio::spawn(stats::log_every(
        stats.clone(),
        settings.summary_interval(),
        shutdown_rx,
    ));

    energy_service::shutdown::signal().await;
    tracing::info!("shutting down: flushing the current batch, then disconnecting");
    let _ = shutdown_tx.send(true);
    // The batcher flushes what it holds and the acknowledging task queues the last acks, then
    // we ask the broker to disconnect; the intake task keeps the event loop turning until that
    // is done. What is not acknowledged by then is delivered again on the next connection.
    let _ = batcher.await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), acknowledging).await;
    let _ = client.disconnect().await;
    // The rollup does a last round for what the batcher wrote.
    let _ = rollup_stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), intake).await;
    if let Some(rollup) = rollup {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), rollup).await;
    }
    summary.abort();
    stats.log_summary("final summary");
}
