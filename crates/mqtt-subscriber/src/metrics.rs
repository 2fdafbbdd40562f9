//! Prometheus metrics at `http://<METRICS_ADDR>/metrics`, when `METRICS_ADDR` is set.
//!
//! The counts are made in one place, [`crate::stats::Stats`], which feeds both the summary in
//! the log and these series through the `metrics` facade. Without `METRICS_ADDR` no recorder is
//! installed and the facade drops every record.
//!
//! The listener is the exporter crate's own small HTTP server: it binds exactly the given
//! address, answers any path with the text format (and `/health` with `OK`), and ends with the
//! program's runtime. It has no authentication: keep it on loopback or a private network.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tokio::task::JoinHandle;

pub const RECEIVED: &str = "subscriber_messages_received_total";
pub const REJECTED: &str = "subscriber_messages_rejected_total";
pub const WRITTEN: &str = "subscriber_points_written_total";
pub const RETRIES: &str = "subscriber_write_retries_total";
pub const BATCH_POINTS: &str = "subscriber_batch_points";
pub const BUFFERED: &str = "subscriber_messages_buffered";
pub const ROLLUP_REPAIRS: &str = "subscriber_rollup_repairs_total";

/// Points per written batch: from single readings to the largest `BATCH_SIZE` (100 000).
const BATCH_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0,
    20_000.0, 50_000.0, 100_000.0,
];

/// Installs the recorder and starts the listener on `addr`. Must run inside the Tokio runtime;
/// the returned task serves scrapes until it is aborted or the runtime stops.
pub fn serve(addr: SocketAddr) -> Result<JoinHandle<()>, BuildError> {
    let (recorder, listener) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(BATCH_POINTS.to_owned()), &BATCH_BUCKETS)?
        .build()?;
    ::metrics::set_global_recorder(recorder)?;
    describe();
    Ok(tokio::spawn(async move {
        if let Err(error) = listener.await {
            tracing::error!(?error, "the metrics listener stopped");
        }
    }))
}

/// HELP lines, and the unlabelled series at zero so that they exist before the first message.
fn describe() {
    use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
    describe_counter!(RECEIVED, "MQTT messages received (valid or not)");
    describe_counter!(
        REJECTED,
        "Messages rejected and not stored, by reason (as in the log's summary)"
    );
    describe_counter!(WRITTEN, "Points stored in InfluxDB");
    describe_counter!(RETRIES, "InfluxDB writes that failed and were tried again");
    describe_histogram!(BATCH_POINTS, "Points per batch written to InfluxDB");
    describe_counter!(
        ROLLUP_REPAIRS,
        "Sums of the usage rollup the background check found different from the raw maths and \
         had recomputed (a bug if ever above 0)"
    );
    describe_gauge!(
        BUFFERED,
        "Messages received but not yet acknowledged (waiting for InfluxDB, or written and waiting for their acknowledgement to be sent)"
    );
    counter!(RECEIVED).absolute(0);
    counter!(WRITTEN).absolute(0);
    counter!(RETRIES).absolute(0);
    counter!(ROLLUP_REPAIRS).absolute(0);
    gauge!(BUFFERED).set(0.0);
}
