//! The sensor-publisher binary against a real private Mosquitto: what it publishes (README, "MQTT messages"),
//! how its registers survive a restart, how it rides out a broker restart, and how it treats bad
//! settings (README, "Settings").

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use test_support::mqtt::Subscriber;
use test_support::{free_port, run_to_exit, Mosquitto, Program};

const PANELS: [&str; 3] = ["A", "B", "C"];

/// Slack for the 6-decimal rounding of `energy_kwh` in the published message.
const ROUNDING_KWH: f64 = 1e-6;

/// One published reading, parsed and checked against the message contract.
#[derive(Clone, Debug)]
struct Published {
    panel: String,
    power_kw: f64,
    energy_kwh: f64,
    time: DateTime<Utc>,
}

fn start_publisher(broker: &Mosquitto, state_file: &Path) -> Program {
    Program::start(
        "sensor-publisher",
        &[
            ("MQTT_URL", broker.url()),
            ("PANELS", PANELS.join(",")),
            ("PUBLISH_INTERVAL_SECS", "1".to_owned()),
            ("STATE_FILE", state_file.display().to_string()),
        ],
    )
}

/// Collects exactly `count` messages within `timeout` and checks each against README's "MQTT messages".
fn receive(subscriber: &mut Subscriber, count: usize, timeout: Duration) -> Vec<Published> {
    let messages = subscriber
        .collect(count, timeout)
        .expect("receive from the broker");
    assert_eq!(
        messages.len(),
        count,
        "only {} of {count} readings within {timeout:?}",
        messages.len()
    );
    messages
        .iter()
        .map(|(topic, payload)| parse(topic, payload))
        .collect()
}

/// Checks one message: topic `DATA/PM/<configured panel>`, payload a JSON object with finite
/// `power_kw` >= 0, `energy_kwh` >= 0 and an RFC 3339 `timestamp` close to now.
fn parse(topic: &str, payload: &[u8]) -> Published {
    let panel = topic
        .strip_prefix("DATA/PM/")
        .unwrap_or_else(|| panic!("topic {topic:?} is not under DATA/PM/"));
    assert!(PANELS.contains(&panel), "unconfigured panel in {topic:?}");
    let json: serde_json::Value = serde_json::from_slice(payload).unwrap_or_else(|e| {
        panic!(
            "{topic}: payload is not JSON ({e}): {}",
            String::from_utf8_lossy(payload)
        )
    });
    assert!(
        json.is_object(),
        "{topic}: payload is not an object: {json}"
    );
    let number = |field: &str| {
        let value = json[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{topic}: {field} is not a number: {json}"));
        assert!(
            value.is_finite() && value >= 0.0,
            "{topic}: {field}: {json}"
        );
        value
    };
    let timestamp = json["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("{topic}: timestamp is not a string: {json}"));
    let time = DateTime::parse_from_rfc3339(timestamp)
        .unwrap_or_else(|e| panic!("{topic}: timestamp {timestamp:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc);
    let age = Utc::now() - time;
    assert!(
        age.num_milliseconds().abs() <= 5_000,
        "{topic}: timestamp {timestamp} is {age} away from now"
    );
    Published {
        panel: panel.to_owned(),
        power_kw: number("power_kw"),
        energy_kwh: number("energy_kwh"),
        time,
    }
}

/// Readings grouped by panel, each panel's in the order received.
fn by_panel(readings: &[Published]) -> BTreeMap<String, Vec<Published>> {
    let mut panels = BTreeMap::<String, Vec<Published>>::new();
    for reading in readings {
        panels
            .entry(reading.panel.clone())
            .or_default()
            .push(reading.clone());
    }
    panels
}

/// The last reading of each panel.
fn last_per_panel(readings: &[Published]) -> BTreeMap<String, Published> {
    readings
        .iter()
        .map(|r| (r.panel.clone(), r.clone()))
        .collect()
}

fn seconds_between(a: &Published, b: &Published) -> f64 {
    (b.time - a.time).num_milliseconds() as f64 / 1000.0
}

#[test]
fn publishes_one_contract_reading_per_panel_per_interval() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut subscriber = broker.subscribe("DATA/PM/#");
    let mut publisher = start_publisher(&broker, &dir.path().join("state.json"));

    // Three rounds: the first goes out at start, then one a second.
    let readings = receive(&mut subscriber, 9, Duration::from_secs(15));
    let panels = by_panel(&readings);
    assert_eq!(panels.keys().collect::<Vec<_>>(), PANELS);
    for (panel, readings) in &panels {
        assert_eq!(readings.len(), 3, "{panel}: {readings:?}");
        let max_power = readings.iter().map(|r| r.power_kw).fold(0.0, f64::max);
        let min_power = readings.iter().map(|r| r.power_kw).fold(f64::MAX, f64::min);
        assert!(
            min_power > 0.0,
            "{panel}: a meter with no load: {readings:?}"
        );
        for pair in readings.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let elapsed = seconds_between(a, b);
            assert!(
                (0.5..=3.0).contains(&elapsed),
                "{panel}: {elapsed} s between readings, interval is 1 s: {pair:?}"
            );
            // The register integrates power over elapsed time, so it grows by about
            // power x elapsed / 3600 kWh; the bounds allow for noise and rounding.
            let increase = b.energy_kwh - a.energy_kwh;
            let most = max_power * elapsed / 3600.0 * 1.5 + ROUNDING_KWH;
            let least = min_power * elapsed / 3600.0 * 0.5 - ROUNDING_KWH;
            assert!(
                increase > 0.0 && (least..=most).contains(&increase),
                "{panel}: energy rose by {increase} kWh in {elapsed} s, expected {least}..{most}: \
                 {pair:?}"
            );
        }
    }
    assert!(
        publisher.output().contains("published"),
        "{}",
        publisher.output()
    );

    // Not retained: a subscriber arriving after the publisher has stopped gets nothing.
    assert_eq!(publisher.terminate(), Some(0));
    let late = broker.subscribe_collect("DATA/PM/#", 1, Duration::from_millis(1500));
    assert!(late.is_empty(), "retained readings: {late:?}");
}

#[test]
fn a_restart_continues_each_register_where_it_stopped() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let mut subscriber = broker.subscribe("DATA/PM/#");

    let mut publisher = start_publisher(&broker, &state_file);
    let mut before = receive(&mut subscriber, 6, Duration::from_secs(15));
    let first_ever = by_panel(&before);
    assert_eq!(publisher.terminate(), Some(0), "{}", publisher.output());
    // A round may have gone out between the collect and the SIGTERM; the publisher waits for the
    // broker's acknowledgements before it exits, so they are all on their way to us now.
    let late = subscriber
        .collect(100, Duration::from_millis(1500))
        .expect("receive from the broker");
    before.extend(late.iter().map(|(topic, payload)| parse(topic, payload)));
    let last = last_per_panel(&before);
    assert_eq!(last.keys().collect::<Vec<_>>(), PANELS);

    let text = std::fs::read_to_string(&state_file)
        .unwrap_or_else(|e| panic!("state file {}: {e}", state_file.display()));
    let saved: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("state file is not JSON ({e}): {text}"));
    for (panel, reading) in &last {
        let energy = saved["panels"][panel]["energy_kwh"]
            .as_f64()
            .unwrap_or_else(|| panic!("no register for {panel} in the state file: {text}"));
        assert!(
            (energy - reading.energy_kwh).abs() <= ROUNDING_KWH,
            "{panel}: saved {energy}, last published {}",
            reading.energy_kwh
        );
    }

    let _publisher = start_publisher(&broker, &state_file);
    let after = receive(&mut subscriber, 3, Duration::from_secs(15));
    let first_after = last_per_panel(&after);
    assert_eq!(first_after.keys().collect::<Vec<_>>(), PANELS, "{after:?}");
    for (panel, resumed) in &first_after {
        let stopped = &last[panel];
        let started = &first_ever[panel][0];
        assert!(
            stopped.energy_kwh > started.energy_kwh,
            "{panel}: the register did not grow before the restart"
        );
        // At most one interval's worth of energy on top of where it stopped (the first reading
        // after a start carries the saved register).
        let most = stopped.energy_kwh + resumed.power_kw.max(stopped.power_kw) * 1.5 / 3600.0;
        assert!(
            resumed.energy_kwh >= stopped.energy_kwh - ROUNDING_KWH && resumed.energy_kwh <= most,
            "{panel}: stopped at {} kWh, resumed at {} kWh (new registers start at {} kWh)",
            stopped.energy_kwh,
            resumed.energy_kwh,
            started.energy_kwh
        );
        assert!(
            resumed.time > stopped.time,
            "{panel}: {stopped:?} {resumed:?}"
        );
    }
}

#[test]
fn reconnects_by_itself_after_a_broker_restart() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut subscriber = broker.subscribe("DATA/PM/#");
    let mut publisher = start_publisher(&broker, &dir.path().join("state.json"));
    let before = receive(&mut subscriber, 3, Duration::from_secs(15));
    let last_before = last_per_panel(&before);
    drop(subscriber);

    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    let restarted_at = Utc::now();
    broker.restart();

    // Readings queued during the outage may come first; wait for one taken after the restart,
    // which proves the publisher is live on the new connection, not just flushing.
    let mut subscriber = broker.subscribe("DATA/PM/#");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let messages = subscriber
            .collect(1, left)
            .expect("receive from the broker");
        let Some((topic, payload)) = messages.first() else {
            panic!(
                "no reading within 30 s of the broker restart; publisher output:\n{}",
                publisher.output()
            );
        };
        // Readings taken during the outage may be older than `parse` accepts; only the topic
        // matters for those.
        let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let time: DateTime<Utc> = json["timestamp"].as_str().unwrap().parse().unwrap();
        if time > restarted_at {
            break parse(topic, payload);
        }
    };
    assert!(
        fresh.energy_kwh > last_before[&fresh.panel].energy_kwh,
        "the register did not go on across the outage: {fresh:?} after {last_before:?}"
    );
    assert_eq!(
        publisher.wait_exit(Duration::ZERO),
        None,
        "the publisher exited"
    );
    assert_eq!(publisher.terminate(), Some(0), "{}", publisher.output());
}

#[test]
fn a_bad_setting_stops_it_naming_the_setting() {
    // Never a public broker, even if a bad value were accepted.
    let nowhere = format!("mqtt://127.0.0.1:{}", free_port());
    test_support::assert_bad_settings_stop(
        "sensor-publisher",
        &[
            ("PUBLISH_INTERVAL_SECS", "abc"),
            ("PUBLISH_INTERVAL_SECS", "0"),
            ("PANELS", "A,bad id"),
            ("TIMEZONE", "Mars/Base"),
            ("MQTT_URL", "http://x"),
            ("LOG_FORMAT", "xml"),
        ],
        &[("MQTT_URL", nowhere)],
    );
}

#[test]
fn a_corrupt_state_file_stops_it_naming_the_file_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, "{not json").unwrap();
    let (code, output) = run_to_exit(
        "sensor-publisher",
        &[],
        &[
            ("MQTT_URL", format!("mqtt://127.0.0.1:{}", free_port())),
            ("STATE_FILE", state_file.display().to_string()),
        ],
        Duration::from_secs(10),
    );
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {output}");
    assert!(
        output.contains(&state_file.display().to_string()),
        "{output}"
    );
    // Starting from zero instead would make every register jump back.
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "{not json");
}

#[test]
fn help_documents_every_setting() {
    test_support::assert_help_documents(
        "sensor-publisher",
        &[
            "MQTT_URL",
            "MQTT_USERNAME",
            "MQTT_PASSWORD",
            "MQTT_TOPIC_PREFIX",
            "MQTT_CLIENT_ID",
            "PANELS",
            "PUBLISH_INTERVAL_SECS",
            "TIMEZONE",
            "STATE_FILE",
            "LOG_FORMAT",
        ],
    );
}
