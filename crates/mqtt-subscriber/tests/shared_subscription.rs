//! Several subscriber replicas on one MQTT shared subscription (`MQTT_SHARED_GROUP`): the
//! broker splits the stream between them, and together they store every reading exactly once,
//! also when one of them is killed in the middle of a flood.

use std::time::{Duration, Instant};

use test_support::mqtt::Publisher;
use test_support::{now_ms, wait_until, Influx, Mosquitto, Program};

const DB: &str = "energy";
const GROUP: &str = "ingest";

/// One point: panel, time in epoch ms, energy_kwh.
type Row = (String, i64, f64);

/// A replica; the one named `…-1` keeps the usage rollup.
fn start_replica(broker: &Mosquitto, influx: &Influx, client_id: &str) -> Program {
    let program = Program::start(
        "mqtt-subscriber",
        &[
            ("MQTT_URL", broker.url()),
            ("MQTT_CLIENT_ID", client_id.to_owned()),
            ("MQTT_SHARED_GROUP", GROUP.to_owned()),
            ("ROLLUP_WRITER", client_id.ends_with("-1").to_string()),
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DB.to_owned()),
            ("INFLUX_TIMEOUT_MS", "2000".to_owned()),
            ("SUMMARY_INTERVAL_SECS", "1".to_owned()),
        ],
    );
    program.wait_for_output("subscribed", Duration::from_secs(30));
    program
}

fn start_replicas(broker: &Mosquitto, influx: &Influx, prefix: &str) -> Vec<Program> {
    let replicas: Vec<Program> = (1..=3)
        .map(|k| start_replica(broker, influx, &format!("{prefix}-{k}")))
        .collect();
    for replica in &replicas {
        // The subscription itself is confirmed (SUBACK), so nothing published next is missed.
        replica.wait_for_output("$share/ingest/DATA/PM/#", Duration::from_secs(30));
    }
    replicas
}

/// `count` readings over 5 panels: panel `P<i % 5>`, timestamp `base + i` ms, energy `i`.
fn readings(count: usize, base_ms: i64) -> (Vec<(String, Vec<u8>)>, Vec<Row>) {
    (0..count)
        .map(|i| {
            let panel = format!("P{}", i % 5);
            let time = base_ms + i as i64;
            let payload = format!(r#"{{"power_kw": 1.5, "energy_kwh": {i}, "timestamp": {time}}}"#);
            (
                (format!("DATA/PM/{panel}"), payload.into_bytes()),
                (panel, time, i as f64),
            )
        })
        .unzip()
}

fn assert_every_reading_once(influx: &Influx, expected: &[Row]) {
    let mut expected = expected.to_vec();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(influx.count_points(DB), expected.len() as u64);
    let rows: Vec<Row> = influx
        .readings(DB)
        .into_iter()
        .map(|(panel, time_ms, _, energy_kwh)| (panel, time_ms, energy_kwh))
        .collect();
    let missing = expected.iter().filter(|r| !rows.contains(r)).count();
    assert!(
        rows == expected,
        "{} stored, {} expected, {missing} missing",
        rows.len(),
        expected.len()
    );
}

/// `received=N` of the last summary line matching `message` (e.g. "final summary").
fn received(output: &str, message: &str) -> Option<u64> {
    output
        .lines()
        .rev()
        .find(|line| line.contains(&format!("{message} received=")))?
        .split_whitespace()
        .find_map(|token| token.strip_prefix("received="))?
        .parse()
        .ok()
}

#[test]
fn three_replicas_on_a_shared_group_store_every_reading_once() {
    const N: usize = 3_000;
    let broker = Mosquitto::start();
    let influx = Influx::start();
    influx.create_database(DB);
    let mut replicas = start_replicas(&broker, &influx, "replica");

    let (messages, expected) = readings(N, now_ms() - 3_600_000);
    test_support::mqtt::publish_many(
        broker.port,
        messages.iter().map(|(t, p)| (t.as_str(), p.as_slice())),
    )
    .expect("publish");
    wait_until(Duration::from_secs(60), "every reading stored", || {
        influx.count_points(DB) == N as u64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_every_reading_once(&influx, &expected);

    let mut shares = Vec::new();
    for replica in &mut replicas {
        assert_eq!(replica.terminate(), Some(0), "{}", replica.output());
        shares.push(received(&replica.output(), "final summary").expect("a final summary"));
    }
    println!("shares of {N} readings received by the three replicas: {shares:?}");
    assert!(
        shares.iter().all(|&n| n > 0),
        "a replica got nothing: {shares:?}"
    );
    // Each message went to exactly one member of the group.
    assert_eq!(shares.iter().sum::<u64>(), N as u64, "{shares:?}");
}

#[test]
fn a_replica_killed_mid_run_loses_nothing() {
    const N: usize = 6_000;
    const RATE: f64 = 1_000.0;
    let broker = Mosquitto::start();
    let influx = Influx::start();
    influx.create_database(DB);
    let mut replicas = start_replicas(&broker, &influx, "member");

    let (messages, expected) = readings(N, now_ms() - 3_600_000);
    let port = broker.port;
    let flood = std::thread::spawn(move || {
        let mut publisher = Publisher::connect(port).expect("connect");
        let start = Instant::now();
        for (i, (topic, payload)) in messages.iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / RATE);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            publisher.publish(topic, payload).expect("publish");
        }
        publisher.flush().expect("flush");
    });
    wait_until(
        Duration::from_secs(30),
        "a third of the flood stored",
        || influx.count_points(DB) >= N as u64 / 3,
    );
    let at_kill = influx.count_points(DB);
    replicas[1].kill();
    let killed_at = Instant::now();
    println!("killed member-2 (SIGKILL) with {at_kill} of {N} stored");
    flood.join().expect("flood thread");

    // The two survivors take over the group's new messages; what the broker had already handed
    // to member-2 (in flight, unacknowledged) stays with member-2's persistent session.
    let mut last = 0;
    wait_until(Duration::from_secs(30), "the survivors to settle", || {
        std::thread::sleep(Duration::from_secs(2));
        let now = influx.count_points(DB);
        std::mem::replace(&mut last, now) == now
    });
    let by_survivors = influx.count_points(DB);
    println!(
        "{:.1} s after the kill the survivors have stored {by_survivors} of {N}; {} wait for member-2's session",
        killed_at.elapsed().as_secs_f64(),
        N as u64 - by_survivors
    );

    // member-2 comes back on the same client id (same session) and delivers the rest.
    let back = Instant::now();
    replicas[1] = start_replica(&broker, &influx, "member-2");
    wait_until(Duration::from_secs(60), "every reading stored", || {
        influx.count_points(DB) == N as u64
    });
    println!(
        "all {N} stored {:.1} s after member-2 restarted",
        back.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_every_reading_once(&influx, &expected);
}
