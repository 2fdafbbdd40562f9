//! The mqtt-subscriber binary between a real Mosquitto and a real InfluxDB 1.6.

use std::time::Duration;

use test_support::{now_ms, start_subscriber, wait_until, Influx, Mosquitto, Program};

const DB: &str = "energy";

fn reading(energy_kwh: &str, epoch_ms: i64) -> Vec<u8> {
    format!(r#"{{"power_kw": 2, "energy_kwh": {energy_kwh}, "timestamp": {epoch_ms}}}"#)
        .into_bytes()
}

#[test]
fn ingests_several_panels_including_one_never_configured() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let subscriber = start_subscriber(&broker, &influx, "ingest-test", &[]);
    let t = now_ms() - 60_000;
    broker.publish("DATA/PM/PANEL_LANTAI_1", &reading("1043.25", t), 1);
    broker.publish("DATA/PM/PANEL_LANTAI_2", &reading("7", t + 1), 1);
    broker.publish(
        "DATA/PM/BRAND_NEW.panel-9",
        br#"{"power_kw": 12.5, "energy_kwh": 5, "timestamp": "2026-01-02T03:04:05.678Z", "voltage": 230}"#,
        1,
    );
    // An integer register first, then a fraction: both must be floats in InfluxDB, or the
    // second write would be a field type conflict.
    broker.publish("DATA/PM/PANEL_LANTAI_2", &reading("7.5", t + 2), 1);
    wait_until(Duration::from_secs(15), "4 points in InfluxDB", || {
        influx.count_points(DB) == 4
    });
    let new_panel_time = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        influx.readings(DB),
        vec![
            ("BRAND_NEW.panel-9".to_owned(), new_panel_time, 12.5, 5.0),
            ("PANEL_LANTAI_1".to_owned(), t, 2.0, 1043.25),
            ("PANEL_LANTAI_2".to_owned(), t + 1, 2.0, 7.0),
            ("PANEL_LANTAI_2".to_owned(), t + 2, 2.0, 7.5),
        ]
    );
    let types = influx.query(DB, "SHOW FIELD KEYS FROM energy_data");
    for row in types["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
    {
        assert_eq!(row[1], "float", "{row}");
    }
    wait_until(Duration::from_secs(5), "a summary with written=4", || {
        subscriber.output().contains("written=4")
    });
}

#[test]
fn every_bad_input_class_is_rejected_and_ingest_goes_on() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let subscriber = start_subscriber(&broker, &influx, "reject-test", &[]);
    let future = now_ms() + 10 * 60_000;
    let ok = |e: &str| reading(e, now_ms());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("DATA/PM", ok("1"), "missing_panel"),
        ("DATA/PM/", ok("1"), "missing_panel"),
        ("DATA/PM/P1/extra", ok("1"), "extra_topic_levels"),
        ("DATA/PM/bad panel", ok("1"), "bad_panel_id"),
        ("DATA/PM/a,b=c", ok("1"), "bad_panel_id"),
        (
            "DATA/PM/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ok("1"),
            "bad_panel_id",
        ),
        ("DATA/PM/P1", vec![], "empty_payload"),
        (
            "DATA/PM/P1",
            b"{\"power_kw\": 1, \"energy_kwh\": \xff}".to_vec(),
            "invalid_utf8",
        ),
        ("DATA/PM/P1", b"not json".to_vec(), "invalid_json"),
        (
            "DATA/PM/P1",
            br#"{"power_kw": NaN, "energy_kwh": 1}"#.to_vec(),
            "invalid_json",
        ),
        ("DATA/PM/P1", b"[1, 2]".to_vec(), "not_an_object"),
        (
            "DATA/PM/P1",
            br#"{"energy_kwh": 1}"#.to_vec(),
            "missing_field",
        ),
        (
            "DATA/PM/P1",
            br#"{"power_kw": 1}"#.to_vec(),
            "missing_field",
        ),
        (
            "DATA/PM/P1",
            br#"{"power_kw": "1", "energy_kwh": 1}"#.to_vec(),
            "not_a_number",
        ),
        (
            "DATA/PM/P1",
            br#"{"power_kw": 1, "energy_kwh": null}"#.to_vec(),
            "not_a_number",
        ),
        (
            "DATA/PM/P1",
            br#"{"power_kw": 1, "energy_kwh": -3}"#.to_vec(),
            "negative_energy",
        ),
        (
            "DATA/PM/P1",
            br#"{"power_kw": 1, "energy_kwh": 1, "timestamp": "soon"}"#.to_vec(),
            "bad_timestamp",
        ),
        ("DATA/PM/P1", reading("1", future), "future_timestamp"),
        (
            "DATA/PM/P1",
            br#"{"power_kw": 1, "energy_kwh": 1, "panel": "P2"}"#.to_vec(),
            "panel_mismatch",
        ),
        (
            "DATA/PM/P1",
            [
                b"{\"power_kw\": 1, \"energy_kwh\": 1, \"pad\": \"".to_vec(),
                vec![b'x'; 5000],
                b"\"}".to_vec(),
            ]
            .concat(),
            "payload_too_large",
        ),
    ];
    for (topic, payload, _) in &cases {
        broker.publish(topic, payload, 1);
    }
    broker.publish("DATA/PM/P1", &ok("42.5"), 1);
    wait_until(
        Duration::from_secs(15),
        "the good reading after the bad ones",
        || influx.count_points(DB) == 1,
    );
    assert_eq!(influx.readings(DB)[0].3, 42.5);

    let output = subscriber.output();
    let mut expected = std::collections::BTreeMap::<&str, usize>::new();
    for (topic, _, reason) in &cases {
        *expected.entry(reason).or_default() += 1;
        assert!(
            output.contains(&format!("reason=\"{reason}\""))
                || output.contains(&format!("reason={reason}")),
            "no log line for {topic}: {reason}"
        );
    }
    let rejected = cases.len();
    wait_until(
        Duration::from_secs(5),
        "a summary counting every rejection",
        || {
            subscriber
                .output()
                .contains(&format!("rejected={rejected}"))
        },
    );
    let summary = subscriber.output();
    for (reason, n) in expected {
        assert!(
            summary.contains(&format!("{reason}={n}")),
            "summary lacks {reason}={n}:\n{summary}"
        );
    }
    // Rejected messages were acknowledged: a restarted subscriber on the same session gets none
    // of them again.
    drop(subscriber);
    let again = start_subscriber(&broker, &influx, "reject-test", &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !again.output().contains("rejected message"),
        "{}",
        again.output()
    );
}

#[test]
fn nothing_is_lost_when_influxdb_is_down_and_the_subscriber_is_killed() {
    let broker = Mosquitto::start();
    let mut influx = Influx::start();
    influx.create_database(DB);
    let mut subscriber = start_subscriber(&broker, &influx, "outage-test", &[]);
    influx.stop();
    let t = now_ms() - 10_000;
    for i in 0..20 {
        broker.publish("DATA/PM/P1", &reading(&format!("{}", 100 + i), t + i), 1);
    }
    subscriber.wait_for_output("write failed; retrying", Duration::from_secs(10));
    // Killed while holding unwritten readings: had it acknowledged them on receipt, the broker
    // would have forgotten them and they would be lost now.
    subscriber.kill();
    influx.restart();
    let _subscriber = start_subscriber(&broker, &influx, "outage-test", &[]);
    wait_until(
        Duration::from_secs(20),
        "all 20 readings after the outage",
        || influx.count_points(DB) == 20,
    );
    let energies: Vec<f64> = influx.readings(DB).iter().map(|r| r.3).collect();
    assert_eq!(energies, (100..120).map(f64::from).collect::<Vec<_>>());
}

#[test]
fn a_bad_setting_stops_the_program_naming_it() {
    test_support::assert_bad_settings_stop(
        "mqtt-subscriber",
        &[
            ("BATCH_SIZE", "abc"),
            ("MQTT_URL", "http://broker"),
            ("INFLUX_URL", "not a url"),
            ("MQTT_TOPIC_PREFIX", "DATA/#"),
            ("LOG_FORMAT", "xml"),
            ("METRICS_ADDR", "localhost"),
        ],
        &[],
    );
}

#[test]
fn help_documents_every_setting() {
    test_support::assert_help_documents(
        "mqtt-subscriber",
        &[
            "MQTT_URL",
            "MQTT_USERNAME",
            "MQTT_PASSWORD",
            "MQTT_TOPIC_PREFIX",
            "MQTT_CLIENT_ID",
            "INFLUX_URL",
            "INFLUX_DATABASE",
            "INFLUX_TOKEN",
            "INFLUX_TIMEOUT_MS",
            "BATCH_SIZE",
            "FLUSH_INTERVAL_MS",
            "MAX_BUFFERED",
            "SUMMARY_INTERVAL_SECS",
            "MAX_PANELS",
            "MQTT_SHARED_GROUP",
            "ROLLUP_WRITER",
            "MQTT_CA_FILE",
            "METRICS_ADDR",
            "LOG_FORMAT",
        ],
    );
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut subscriber = start_subscriber(&broker, &influx, "sigterm-test", &[]);
    broker.publish("DATA/PM/P1", &reading("5", now_ms()), 1);
    wait_until(Duration::from_secs(10), "the reading", || {
        influx.count_points(DB) == 1
    });
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
    let output = subscriber.output();
    assert!(
        output.contains("final summary") && output.contains("written=1"),
        "{output}"
    );
}

#[test]
fn new_panels_beyond_max_panels_are_rejected_and_known_ones_still_stored() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    influx.create_database(DB);
    // A panel InfluxDB already holds counts towards the cap after a restart.
    influx.write(
        DB,
        "energy_data,panel=OLD power_kw=1,energy_kwh=1 1000000000\n",
    );
    let subscriber = Program::start(
        "mqtt-subscriber",
        &[
            ("MQTT_URL", broker.url()),
            ("INFLUX_URL", influx.url()),
            ("MAX_PANELS", "2".to_owned()),
            ("SUMMARY_INTERVAL_SECS", "1".to_owned()),
        ],
    );
    subscriber.wait_for_output("subscribed", Duration::from_secs(20));
    let t = now_ms();
    broker.publish("DATA/PM/NEW_1", &reading("1", t), 1);
    broker.publish("DATA/PM/NEW_2", &reading("1", t), 1);
    broker.publish("DATA/PM/NEW_3", &reading("1", t), 1);
    broker.publish("DATA/PM/OLD", &reading("2", t), 1);
    broker.publish("DATA/PM/NEW_1", &reading("2", t + 1), 1);
    wait_until(Duration::from_secs(10), "3 new points", || {
        influx.count_points(DB) == 4
    });
    wait_until(
        Duration::from_secs(5),
        "the rejections in the summary",
        || subscriber.output().contains("too_many_panels=2"),
    );
    let panels: Vec<String> = influx.readings(DB).into_iter().map(|r| r.0).collect();
    assert_eq!(panels, ["NEW_1", "NEW_1", "OLD", "OLD"]);
    assert!(
        subscriber.output().contains("MAX_PANELS"),
        "the log says which setting refused it"
    );
}
