//! `sensor-publisher --backfill`: the real binary against a real private influxd (`--direct`)
//! and a real private Mosquitto.
//!
//! The period is `(end - count x interval, end]` with `count = floor(DAYS x 86400 / interval)`:
//! one day at 60 s is exactly 1440 readings per panel, the last at the backfill's end ("now").

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use test_support::reference::{quarter_shares, Rule};
use test_support::{free_port, run_to_exit, start_subscriber, Influx, Mosquitto};

const DATABASE: &str = "energy";

#[derive(Clone, Debug)]
struct Point {
    time: DateTime<Utc>,
    power_kw: f64,
    energy_kwh: f64,
}

fn backfill_direct(influx: &Influx, state_file: &Path, args: &[&str]) -> String {
    let mut all = vec!["--backfill", "1", "--direct"];
    all.extend_from_slice(args);
    let (code, output) = run_to_exit(
        "sensor-publisher",
        &all,
        &[
            // Never used by --direct; a closed port, never a public broker.
            ("MQTT_URL", format!("mqtt://127.0.0.1:{}", free_port())),
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DATABASE.to_owned()),
            ("PANELS", "A,B".to_owned()),
            ("PUBLISH_INTERVAL_SECS", "60".to_owned()),
            ("STATE_FILE", state_file.display().to_string()),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("backfill done"), "{output}");
    assert!(output.contains("readings=2880"), "{output}");
    output
}

/// Every stored point of `panel`, in time order.
fn points(influx: &Influx, panel: &str) -> Vec<Point> {
    let json = influx.query(
        DATABASE,
        &format!("SELECT power_kw, energy_kwh FROM energy_data WHERE panel = '{panel}'"),
    );
    let rows = json["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no points for {panel}: {json}"));
    rows.iter()
        .map(|row| Point {
            time: DateTime::parse_from_rfc3339(row[0].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc),
            power_kw: row[1].as_f64().unwrap(),
            energy_kwh: row[2].as_f64().unwrap(),
        })
        .collect()
}

/// Checks the 1440 points of a day at 60 s and returns the indices where the register drops.
fn check_day(points: &[Point], panel: &str) -> Vec<usize> {
    assert_eq!(points.len(), 1440, "{panel}");
    let mut drops = Vec::new();
    for (i, pair) in points.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!((b.time - a.time).num_seconds(), 60, "{panel}: {a:?} {b:?}");
        assert!(b.power_kw > 0.0, "{panel}: {b:?}");
        if b.energy_kwh < a.energy_kwh {
            drops.push(i + 1);
        }
    }
    drops
}

fn saved_registers(state_file: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(state_file).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["panels"].clone()
}

#[test]
fn a_day_goes_straight_to_influxdb_and_the_state_file_continues_it() {
    let influx = Influx::start();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    // A saved register for A; B is new and starts at a plausible value.
    std::fs::write(
        &state_file,
        r#"{"version": 1, "panels": {"A": {"energy_kwh": 500.0, "timestamp": "2026-01-01T00:00:00Z"}}}"#,
    )
    .unwrap();

    let before = Utc::now();
    backfill_direct(&influx, &state_file, &[]);
    let after = Utc::now();

    assert_eq!(influx.count_points(DATABASE), 2 * 1440);
    let saved = saved_registers(&state_file);
    let mut last_times = BTreeMap::new();
    for panel in ["A", "B"] {
        let points = points(&influx, panel);
        assert_eq!(check_day(&points, panel), Vec::<usize>::new(), "{panel}");
        let last = points.last().unwrap();
        // The period ends at the start of the run, whole seconds.
        assert!(
            last.time >= before - chrono::Duration::seconds(1) && last.time <= after,
            "{panel}: last point at {}",
            last.time
        );
        assert_eq!(last.time.timestamp_subsec_nanos(), 0);
        assert_eq!(
            (last.time - points[0].time).num_seconds(),
            1439 * 60,
            "{panel}"
        );
        // The state file holds the last register, so a live run continues from it.
        assert_eq!(saved[panel]["energy_kwh"].as_f64(), Some(last.energy_kwh));
        let saved_at: DateTime<Utc> = saved[panel]["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(saved_at, last.time, "{panel}");
        last_times.insert(panel, last.time);
    }
    // A continued its saved register: one interval of power on top of 500 kWh.
    let a = points(&influx, "A");
    let grown = a[0].energy_kwh - 500.0;
    assert!(
        (grown - a[0].power_kw * 60.0 / 3600.0).abs() < 1e-9,
        "{:?}",
        a[0]
    );
    assert_eq!(last_times["A"], last_times["B"]);
}

#[test]
fn resets_drop_each_register_exactly_as_often_as_asked() {
    let influx = Influx::start();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    backfill_direct(&influx, &state_file, &["--resets", "2"]);

    let saved = saved_registers(&state_file);
    for panel in ["A", "B"] {
        let points = points(&influx, panel);
        let drops = check_day(&points, panel);
        assert_eq!(drops.len(), 2, "{panel}: drops at {drops:?}");
        for &i in &drops {
            // Down to 0, then counting up again.
            assert_eq!(points[i].energy_kwh, 0.0, "{panel}: {:?}", points[i]);
            assert!(points[i + 1].energy_kwh > 0.0, "{panel}");
        }
        assert_eq!(
            saved[panel]["energy_kwh"].as_f64(),
            Some(points.last().unwrap().energy_kwh)
        );
    }
}

#[test]
fn a_backfill_through_the_broker_arrives_complete() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let mut subscriber = broker.subscribe("DATA/PM/#");
    let (code, output) = run_to_exit(
        "sensor-publisher",
        &["--backfill", "1"],
        &[
            ("MQTT_URL", broker.url()),
            ("PANELS", "A,B".to_owned()),
            ("PUBLISH_INTERVAL_SECS", "600".to_owned()),
            ("STATE_FILE", state_file.display().to_string()),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("readings=288"), "{output}");

    // Everything was acknowledged before the exit; ask for one more to see there is no extra.
    let messages = subscriber
        .collect(289, Duration::from_secs(5))
        .expect("receive from the broker");
    assert_eq!(messages.len(), 288);
    let mut by_panel = BTreeMap::<String, Vec<Point>>::new();
    for (topic, payload) in &messages {
        let panel = topic.strip_prefix("DATA/PM/").unwrap();
        let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["power_kw", "energy_kwh", "timestamp"], "{json}");
        by_panel.entry(panel.to_owned()).or_default().push(Point {
            time: json["timestamp"].as_str().unwrap().parse().unwrap(),
            power_kw: json["power_kw"].as_f64().unwrap(),
            energy_kwh: json["energy_kwh"].as_f64().unwrap(),
        });
    }
    assert_eq!(by_panel.keys().collect::<Vec<_>>(), ["A", "B"]);
    let saved = saved_registers(&state_file);
    for (panel, points) in &mut by_panel {
        points.sort_by_key(|p| p.time);
        assert_eq!(points.len(), 144, "{panel}");
        for pair in points.windows(2) {
            assert_eq!((pair[1].time - pair[0].time).num_seconds(), 600, "{panel}");
            assert!(
                pair[1].energy_kwh >= pair[0].energy_kwh,
                "{panel}: {pair:?}"
            );
            assert!(pair[1].power_kw > 0.0);
        }
        // The message rounds the register to 6 decimals.
        let saved = saved[panel.as_str()]["energy_kwh"].as_f64().unwrap();
        assert!((saved - points[143].energy_kwh).abs() <= 1e-6, "{panel}");
    }
}

/// The rollup's 15-minute buckets of `panel` as stored: start -> (usage nano-kWh, estimated
/// nano-kWh, readings).
fn stored_buckets(influx: &Influx, panel: &str) -> BTreeMap<DateTime<Utc>, (i64, i64, u64)> {
    influx
        .usage_rollup_figures(DATABASE, "energy_usage_15m")
        .remove(panel)
        .unwrap_or_default()
}

/// Each 15-minute bucket's usage and estimated part (nano-kWh, by the reference rule: every
/// pair's increase spread over its time, 0 where the register dropped or the increase implies
/// more than 5000 kW) and reading count, computed here from the stored points. The readings are
/// a minute apart, so every quarter hour from the first to the last holds some.
fn expected_buckets(points: &[Point]) -> BTreeMap<DateTime<Utc>, (i64, i64, u64)> {
    let mut out: BTreeMap<DateTime<Utc>, (i64, i64, u64)> = BTreeMap::new();
    for point in points {
        let seconds = point.time.timestamp();
        let start = DateTime::from_timestamp(seconds - seconds.rem_euclid(900), 0).unwrap();
        out.entry(start).or_default().2 += 1;
    }
    let readings: Vec<(DateTime<Utc>, f64)> =
        points.iter().map(|p| (p.time, p.energy_kwh)).collect();
    for (start, shares) in quarter_shares(&readings, Rule::default()) {
        let start = DateTime::from_timestamp_nanos(i64::try_from(start).unwrap());
        let entry = out
            .get_mut(&start)
            .unwrap_or_else(|| panic!("a share in {start}, a quarter hour without a reading"));
        entry.0 += i64::try_from(shares.usage).unwrap();
        entry.1 += i64::try_from(shares.estimated).unwrap();
    }
    out
}

#[test]
fn a_direct_backfill_is_rolled_up_by_the_subscriber_that_keeps_the_rollup() {
    for rollup_recorded in [true, false] {
        let influx = Influx::start();
        influx.create_database(DATABASE);
        if rollup_recorded {
            // A rollup recorded by a subscriber of this version (format 4, with the default
            // thresholds) that read the log up to now. (A rollup of an earlier format would be
            // rebuilt from the earliest reading instead, like no rollup at all.)
            let now = Utc::now().timestamp_nanos_opt().unwrap();
            influx.write(
                DATABASE,
                &format!(
                    "energy_rollup_state complete_until={now}i,max_power_kw=5000.0,estimate_after_secs=900i,format=4i,log_until={now}i\n"
                ),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        backfill_direct(&influx, &dir.path().join("state.json"), &["--resets", "2"]);
        // The backfill wrote the log's entries beside its readings, and no sum itself.
        let logged = influx.query(
            DATABASE,
            "SELECT count(buckets) FROM energy_rollup_log GROUP BY panel",
        );
        assert_eq!(
            logged["results"][0]["series"].as_array().map(Vec::len),
            Some(2),
            "{logged}"
        );
        assert!(stored_buckets(&influx, "A").is_empty());

        // The subscriber that keeps the rollup rolls them up: from the log when a rollup was
        // recorded, by a rebuild from the earliest reading when none was.
        let broker = Mosquitto::start();
        let subscriber = start_subscriber(&broker, &influx, "rollup-writer", &[]);
        for panel in ["A", "B"] {
            let expected = expected_buckets(&points(&influx, panel));
            // 1440 minutes span 96 or 97 quarter hours, depending on where they start.
            assert!((96..=97).contains(&expected.len()), "{}", expected.len());
            // A reading a minute: no gap, nothing estimated; two resets: nothing negative.
            assert!(expected.values().all(|b| b.1 == 0 && b.0 >= 0));
            assert!(expected.values().any(|b| b.0 > 0));
            let mut stored = BTreeMap::new();
            let arrived = (0..300).any(|_| {
                stored = stored_buckets(&influx, panel);
                if stored == expected {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
                false
            });
            assert!(
                arrived,
                "rollup recorded: {rollup_recorded}, panel {panel}: stored {stored:?}\nexpected {expected:?}\n{}",
                subscriber.output()
            );
        }
    }
}
