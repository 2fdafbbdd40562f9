//! The subscriber's Prometheus metrics (`METRICS_ADDR`) between a real Mosquitto and a real
//! InfluxDB 1.6.

use std::time::{Duration, Instant};

use test_support::{
    free_port, http_get, run_to_exit, try_http_get, wait_until, Influx, Mosquitto, Program,
};

const DB: &str = "energy";

/// A valid reading, its timestamp `energy_kwh` ms after a fixed start (distinct readings must
/// have distinct timestamps, or InfluxDB keeps one point for them).
fn reading(energy_kwh: u32) -> Vec<u8> {
    let time =
        chrono::Utc::now().timestamp_millis() / 60_000 * 60_000 - 60_000 + i64::from(energy_kwh);
    format!(r#"{{"power_kw": 2, "energy_kwh": {energy_kwh}, "timestamp": {time}}}"#).into_bytes()
}

/// The value of `series` (name and labels exactly as rendered) on the metrics page, if there.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

struct Metrics(String);

impl Metrics {
    fn page(&self) -> String {
        let (status, _, page) = http_get(&self.0);
        assert_eq!(status, 200, "{page}");
        page
    }

    fn value(&self, series: &str) -> Option<f64> {
        sample(&self.page(), series)
    }

    /// Waits until `series` has `value`.
    fn wait_for(&self, series: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.page();
            if sample(&page, series) == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} did not reach {value}:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn counts_what_is_received_written_rejected_retried_and_held() {
    let broker = Mosquitto::start();
    let mut influx = Influx::start();
    influx.create_database(DB);
    let port = free_port();
    let mut subscriber = Program::start(
        "mqtt-subscriber",
        &[
            ("MQTT_URL", broker.url()),
            ("MQTT_CLIENT_ID", "metrics-test".to_owned()),
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DB.to_owned()),
            ("INFLUX_TIMEOUT_MS", "2000".to_owned()),
            ("SUMMARY_INTERVAL_SECS", "1".to_owned()),
            ("METRICS_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    subscriber.wait_for_output("subscribed", Duration::from_secs(20));
    let metrics = Metrics(format!("http://127.0.0.1:{port}/metrics"));

    // Before the first message the unlabelled series are there, at zero.
    let page = metrics.page();
    for series in [
        "subscriber_messages_received_total",
        "subscriber_points_written_total",
        "subscriber_write_retries_total",
        "subscriber_messages_buffered",
    ] {
        assert_eq!(sample(&page, series), Some(0.0), "{series}:\n{page}");
    }
    assert!(
        page.contains("# TYPE subscriber_messages_buffered gauge"),
        "{page}"
    );
    // Only the given address is bound: the same port on another loopback address is closed.
    assert!(try_http_get(&format!("http://127.0.0.2:{port}/metrics")).is_err());

    for energy in [1, 2, 3] {
        broker.publish("DATA/PM/P1", &reading(energy), 1);
    }
    broker.publish("DATA/PM/P1", b"not json", 1);
    broker.publish("DATA/PM/P1", br#"{"power_kw": 1, "energy_kwh": -3}"#, 1);
    broker.publish("DATA/PM/bad panel", &reading(4), 1);
    wait_until(Duration::from_secs(15), "3 points in InfluxDB", || {
        influx.count_points(DB) == 3
    });
    metrics.wait_for("subscriber_messages_received_total", 6.0);
    metrics.wait_for("subscriber_points_written_total", 3.0);
    metrics.wait_for("subscriber_messages_buffered", 0.0);
    let page = metrics.page();
    for reason in ["invalid_json", "negative_energy", "bad_panel_id"] {
        let series = format!(r#"subscriber_messages_rejected_total{{reason="{reason}"}}"#);
        assert_eq!(sample(&page, &series), Some(1.0), "{series}:\n{page}");
    }
    // Every point went out in some batch: the batch sizes add up to the points written.
    assert_eq!(
        sample(&page, "subscriber_batch_points_sum"),
        Some(3.0),
        "{page}"
    );
    let batches = sample(&page, "subscriber_batch_points_count").unwrap();
    assert!((1.0..=3.0).contains(&batches), "{page}");
    assert_eq!(
        sample(&page, r#"subscriber_batch_points_bucket{le="+Inf"}"#),
        Some(batches),
        "{page}"
    );
    assert_eq!(sample(&page, "subscriber_write_retries_total"), Some(0.0));

    // While InfluxDB is down, the messages wait in memory unacknowledged and writes are retried.
    influx.stop();
    for energy in [10, 11, 12, 13] {
        broker.publish("DATA/PM/P1", &reading(energy), 1);
    }
    subscriber.wait_for_output("write failed; retrying", Duration::from_secs(15));
    metrics.wait_for("subscriber_messages_buffered", 4.0);
    assert!(metrics.value("subscriber_write_retries_total").unwrap() >= 1.0);
    assert_eq!(metrics.value("subscriber_points_written_total"), Some(3.0));

    influx.restart();
    wait_until(Duration::from_secs(30), "7 points in InfluxDB", || {
        influx.count_points(DB) == 7
    });
    metrics.wait_for("subscriber_points_written_total", 7.0);
    metrics.wait_for("subscriber_messages_buffered", 0.0);
    metrics.wait_for("subscriber_messages_received_total", 10.0);

    // The summary in the log counts the same.
    wait_until(Duration::from_secs(5), "a summary with written=7", || {
        subscriber.output().contains("written=7")
    });
    // The listener ends with the program.
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
    assert!(try_http_get(&metrics.0).is_err());
}

#[test]
fn a_bad_metrics_addr_stops_the_program_naming_it() {
    let (code, output) = run_to_exit(
        "mqtt-subscriber",
        &[],
        &[("METRICS_ADDR", "localhost".to_owned())],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("--metrics-addr") && output.contains("localhost"),
        "{output}"
    );

    // An address that parses but cannot be bound stops it too, at start, naming the setting.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, output) = run_to_exit(
        "mqtt-subscriber",
        &[],
        &[("METRICS_ADDR", addr.clone())],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("METRICS_ADDR") && output.contains(&addr),
        "{output}"
    );
}

/// The subscriber allocates with jemalloc as the api-server does (`energy_service::allocator`):
/// its background thread, which hands freed memory back to the system after a catch-up, runs;
/// an operator's `_RJEM_MALLOC_CONF` still overrides the options.
#[test]
fn the_subscriber_runs_jemalloc_with_its_background_purge() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let start = |extra: &[(&str, String)]| {
        let mut envs = vec![
            ("MQTT_URL", broker.url()),
            ("MQTT_CLIENT_ID", "allocator-check".to_owned()),
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DB.to_owned()),
        ];
        envs.extend(extra.iter().cloned());
        let program = Program::start("mqtt-subscriber", &envs);
        program.wait_for_output("subscribed", Duration::from_secs(30));
        program
    };
    let names = start(&[]).thread_names();
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "threads: {names:?}"
    );
    let names =
        start(&[("_RJEM_MALLOC_CONF", "background_thread:false".to_owned())]).thread_names();
    assert!(
        !names.iter().any(|n| n == "jemalloc_bg_thd"),
        "threads: {names:?}"
    );
}
