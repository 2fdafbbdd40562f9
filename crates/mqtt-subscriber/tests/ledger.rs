//! The usage rollup equals the raw maths whatever interrupts the subscriber (docs/rollup.md):
//! a SIGKILL the instant a late backlog is stored, SIGKILLs while it catches up and while it
//! rebuilds, a SIGTERM while InfluxDB is down, and three replicas of a shared group writing one
//! panel at once. Everything runs for real: Mosquitto, influxd, mqtt-subscriber, api-server.
//!
//! Every expected figure is computed here from the readings the test published, by the rule of
//! docs/accounting.md written out again: a pair of consecutive readings adds its increase to the
//! period of its later reading, unless the register dropped or the increase implies more than
//! `MAX_POWER_KW` (5000 kW, the default; no test here comes near it).

use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, TimeZone, Timelike, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::{start_subscriber, wait_until, ApiServer, Influx, Mosquitto, Program};

const DB: &str = "energy";

/// A reading as published: time and register.
type Point = (DateTime<Utc>, f64);

fn payload(point: &Point) -> Vec<u8> {
    serde_json::json!({
        "power_kw": 1.0,
        "energy_kwh": point.1,
        "timestamp": point.0.timestamp_millis(),
    })
    .to_string()
    .into_bytes()
}

fn publish(broker: &Mosquitto, panel: &str, points: &[Point]) {
    let topic = format!("DATA/PM/{panel}");
    let payloads: Vec<Vec<u8>> = points.iter().map(payload).collect();
    publish_many(
        broker.port,
        payloads.iter().map(|p| (topic.as_str(), p.as_slice())),
    )
    .expect("publish");
}

/// Usage in nano-kWh of the pairs (in time order) whose later reading lies in `[start, end)`:
/// each increase rounded to the nano-kWh, as the API's figures are exact to it.
fn usage_nkwh(points: &[Point], start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|point| point.0);
    sorted
        .windows(2)
        .filter(|pair| pair[1].0 >= start && pair[1].0 < end)
        .map(|pair| {
            let increase = pair[1].1 - pair[0].1;
            let hours = (pair[1].0 - pair[0].0).num_milliseconds() as f64 / 3.6e6;
            if increase > 0.0 && increase <= 5000.0 * hours {
                (increase * 1e9).round() as i64
            } else {
                0
            }
        })
        .sum()
}

/// A fixed-offset zone in which it is now between 11:00 and 13:00, so that the last few hours
/// are all "today".
fn noon_zone(now: DateTime<Utc>) -> String {
    let offset = 12 - now.hour() as i32;
    match offset {
        0 => "UTC".to_owned(),
        // Etc/GMT-5 is five hours *ahead* of UTC.
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// The sum of the rollup's 15-minute buckets of `panel` (nano-kWh), and of its UTC days and
/// months: all three must equal the readings' usage.
fn rollup_sums(influx: &Influx, panel: &str) -> [i64; 3] {
    ["energy_usage_15m", "energy_usage_1d", "energy_usage_1mo"].map(|measurement| {
        let json = influx.query(
            DB,
            &format!("SELECT sum(usage_nkwh) FROM {measurement} WHERE panel = '{panel}'"),
        );
        json["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    })
}

fn panel_figure(answer: &serde_json::Value, panel: &str, field: &str) -> Option<f64> {
    answer["panels"]
        .as_array()?
        .iter()
        .find(|p| p["panel"] == panel)?[field]
        .as_f64()
}

/// The API's usage of `panel` today and in the current month of its zone, in kWh.
fn api_figures(api: &ApiServer, panel: &str, now_local_month: (i32, u32)) -> (f64, f64) {
    let today = api.ok("/api/panel/today-usage");
    let (year, month) = now_local_month;
    let monthly = api.ok(&format!("/api/energy/monthly?year={year}"));
    let month_usage = monthly["panels"]
        .as_array()
        .and_then(|panels| panels.iter().find(|p| p["panel"] == panel))
        .and_then(|p| p["months"][month as usize - 1]["usage_kwh"].as_f64());
    (
        panel_figure(&today, panel, "usage_kwh").unwrap_or(f64::NAN),
        month_usage.unwrap_or(f64::NAN),
    )
}

/// Waits until the rollup's buckets, days and months of `panel` all hold `expected` nano-kWh
/// and the API answers `expected` (to its 3 decimals) for today and this month.
fn assert_rolled_up(
    influx: &Influx,
    api: &ApiServer,
    zone: &str,
    panel: &str,
    expected: i64,
    subscriber: &Program,
) {
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let local = Utc::now().with_timezone(&tz);
    let expected_kwh = (expected as f64 / 1e6).round() / 1e3;
    let mut last = ([0; 3], (0.0, 0.0));
    let done = (0..200).any(|_| {
        last = (
            rollup_sums(influx, panel),
            api_figures(api, panel, (local.year(), local.month())),
        );
        if last.0 == [expected; 3] && last.1 == (expected_kwh, expected_kwh) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(
        done,
        "panel {panel}: expected {expected} nano-kWh ({expected_kwh} kWh); rollup buckets, days, \
         months {:?}; API today and month {:?}\n{}",
        last.0,
        last.1,
        subscriber.output()
    );
    // The writer's own check ran, and never found the rollup different from the raw maths.
    wait_until(Duration::from_secs(30), "a check of the rollup", || {
        subscriber.output().contains("usage rollup checked")
    });
    assert_eq!(
        rollup_repairs(&subscriber.output()),
        Some(0),
        "{}",
        subscriber.output()
    );
}

/// Settings of every rollup writer in these tests besides the test's own: it checks its rollup
/// against the raw readings every second, and [`assert_rolled_up`] requires that it never
/// found a difference.
fn checking() -> Vec<(&'static str, String)> {
    vec![("ROLLUP_CHECK_INTERVAL_SECS", "1".to_owned())]
}

/// Waits until the rollup writer has recorded its state once.
fn wait_for_state(influx: &Influx) {
    wait_until(Duration::from_secs(30), "the rollup's first state", || {
        let json = influx.query(DB, "SELECT count(complete_until) FROM energy_rollup_state");
        json["results"][0]["series"].is_array()
    });
}

#[test]
fn a_subscriber_killed_the_instant_a_late_backlog_is_stored_rolls_it_all_up_after_restart() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut subscriber = start_subscriber(&broker, &influx, "writer", &checking());
    wait_for_state(&influx);
    let zone = noon_zone(Utc::now());
    let api = ApiServer::start(&influx.url(), DB, &[("TIMEZONE", &zone)]);

    for round in 0..3 {
        let panel = format!("BACKLOG_{round}");
        let now = Utc::now();
        // A reading 2 h 10 min old, then the 120 a meter queued during an outage: from 2 h ago,
        // a minute apart, +1 kWh each. By hand: 120 pairs of +1 kWh (the first spans 10 min,
        // 6 kW), so 120 kWh.
        let mut points: Vec<Point> = vec![(now - Span::minutes(130), 1000.0)];
        for k in 0..120 {
            points.push((now - Span::minutes(120 - k), 1001.0 + k as f64));
        }
        let expected = usage_nkwh(&points, now - Span::days(1), now + Span::days(1));
        assert_eq!(expected, 120_000_000_000);
        let before = influx.count_points(DB);
        publish(&broker, &panel, &points);
        // Killed the moment InfluxDB holds all 121 (they were acknowledged).
        wait_until(Duration::from_secs(30), "the backlog stored", || {
            influx.count_points(DB) == before + 121
        });
        subscriber.kill();
        println!(
            "round {round}: rollup held {:?} nano-kWh when the subscriber was killed",
            rollup_sums(&influx, &panel)
        );
        subscriber = start_subscriber(&broker, &influx, "writer", &checking());
        assert_rolled_up(&influx, &api, &zone, &panel, expected, &subscriber);
    }
}

/// `days` days of readings a minute apart up to a minute ago, +0.01 to +0.2 kWh each, with a
/// meter reset and a zero glitch in every 500 readings or so.
fn history(rng: &mut StdRng, now: DateTime<Utc>, days: i64) -> Vec<Point> {
    let meter = Meter {
        register: 0.0..=1000.0,
        increase: 0.01..=0.2,
        reset: 0.002,
        zero: 0.002,
        ..Meter::default()
    };
    let schedule = Schedule::every(now - Span::days(days), now, Span::minutes(1));
    meter
        .readings(rng, &[schedule])
        .into_iter()
        .map(|r| (r.time, r.energy_kwh))
        .collect()
}

#[test]
fn kills_while_catching_up_and_while_rebuilding_lose_nothing() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    // This subscriber stores readings and writes the log; it keeps no rollup.
    let _ingest = start_subscriber(
        &broker,
        &influx,
        "ingest",
        &[("ROLLUP_WRITER", "false".into())],
    );
    // The writer reads another prefix: it only keeps the rollup.
    let writer_settings = [("MQTT_TOPIC_PREFIX", "NOTHING/HERE".to_owned())];
    let mut writer = start_subscriber(&broker, &influx, "writer", &writer_settings);
    wait_for_state(&influx);
    writer.kill();

    let now = Utc::now();
    let mut rng = StdRng::seed_from_u64(7);
    let panels: Vec<(String, Vec<Point>)> = (0..3)
        .map(|k| (format!("LATE_{k}"), history(&mut rng, now, 3)))
        .collect();
    let total: usize = panels.iter().map(|(_, p)| p.len()).sum();
    for (panel, points) in &panels {
        publish(&broker, panel, points);
    }
    wait_until(Duration::from_secs(60), "the history stored", || {
        influx.count_points(DB) == total as u64
    });

    // Killed at different moments of its catch-up through the log, then of a rebuild.
    for k in 1..=4 {
        let mut catching_up = start_subscriber(&broker, &influx, "writer", &writer_settings);
        std::thread::sleep(Duration::from_millis(150 * k));
        catching_up.kill();
    }
    let mut envs: Vec<(&str, String)> = vec![
        ("MQTT_URL", broker.url()),
        ("MQTT_CLIENT_ID", "writer".to_owned()),
        ("MQTT_TOPIC_PREFIX", "NOTHING/HERE".to_owned()),
        ("INFLUX_URL", influx.url()),
        ("INFLUX_DATABASE", DB.to_owned()),
        ("INFLUX_TIMEOUT_MS", "2000".to_owned()),
    ];
    for k in 1..=2 {
        let mut rebuilding =
            Program::start_with_args("mqtt-subscriber", &["--rebuild-rollup"], &envs);
        rebuilding.wait_for_output("subscribed", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300 * k));
        rebuilding.kill();
    }
    envs.push(("SUMMARY_INTERVAL_SECS", "1".to_owned()));
    envs.push(("ROLLUP_CHECK_INTERVAL_SECS", "1".to_owned()));
    let writer = Program::start("mqtt-subscriber", &envs);

    let api = ApiServer::start(&influx.url(), DB, &[("TIMEZONE", "UTC")]);
    let tz = "UTC";
    let day_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .unwrap();
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    for (panel, points) in &panels {
        let all = usage_nkwh(points, now - Span::days(30), now + Span::days(1));
        // Buckets, days and months hold everything.
        let mut sums = [0; 3];
        let done = (0..300).any(|_| {
            sums = rollup_sums(&influx, panel);
            sums == [all; 3] || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(
            done,
            "{panel}: expected {all}, rollup {sums:?}\n{}",
            writer.output()
        );
        // The API's today and this month, from the rollup.
        let today = usage_nkwh(points, day_start, day_start + Span::days(1));
        let month = usage_nkwh(points, month_start, now + Span::days(1));
        let kwh = |nkwh: i64| (nkwh as f64 / 1e6).round() / 1e3;
        let (api_today, api_month) = api_figures(&api, panel, (now.year(), now.month()));
        assert_eq!(
            (api_today, api_month),
            (kwh(today), kwh(month)),
            "{panel} in {tz}"
        );
    }
    wait_until(Duration::from_secs(30), "a check of the rollup", || {
        writer.output().contains("usage rollup checked")
    });
    assert_eq!(
        rollup_repairs(&writer.output()),
        Some(0),
        "{}",
        writer.output()
    );
}

#[test]
fn a_sigterm_while_influxdb_is_down_loses_nothing_and_the_rollup_catches_up() {
    let broker = Mosquitto::start();
    let mut influx = Influx::start();
    let mut subscriber = start_subscriber(&broker, &influx, "writer", &checking());
    wait_for_state(&influx);
    let zone = noon_zone(Utc::now());

    influx.stop();
    let now = Utc::now();
    // 200 late readings spread over the last three hours, +0.5 kWh each: 199 pairs, 99.5 kWh.
    let points: Vec<Point> = (0..200)
        .map(|k| {
            (
                now - Span::minutes(180) + Span::seconds(54 * k),
                500.0 + 0.5 * k as f64,
            )
        })
        .collect();
    let expected = usage_nkwh(&points, now - Span::days(1), now + Span::days(1));
    assert_eq!(expected, 99_500_000_000);
    publish(&broker, "DOWN", &points);
    subscriber.wait_for_output("write failed", Duration::from_secs(30));
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());

    influx.restart();
    let subscriber = start_subscriber(&broker, &influx, "writer", &checking());
    wait_until(Duration::from_secs(60), "every reading stored", || {
        influx.count_points(DB) == 200
    });
    let api = ApiServer::start(&influx.url(), DB, &[("TIMEZONE", &zone)]);
    assert_rolled_up(&influx, &api, &zone, "DOWN", expected, &subscriber);
}

#[test]
fn three_replicas_writing_one_panel_in_shuffled_chunks_give_exactly_the_raw_maths() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let replicas: Vec<Program> = (1..=3)
        .map(|k| {
            start_subscriber(
                &broker,
                &influx,
                &format!("replica-{k}"),
                &[
                    ("MQTT_SHARED_GROUP", "ingest".to_owned()),
                    ("ROLLUP_WRITER", (k == 1).to_string()),
                    ("ROLLUP_CHECK_INTERVAL_SECS", "1".to_owned()),
                ],
            )
        })
        .collect();
    for replica in &replicas {
        replica.wait_for_output("$share/ingest/DATA/PM/#", Duration::from_secs(30));
    }
    wait_for_state(&influx);
    let zone = noon_zone(Utc::now());
    let api = ApiServer::start(&influx.url(), DB, &[("TIMEZONE", &zone)]);

    // Three times, each with its own shuffle: the replicas interleave differently each time
    // (the broker hands messages round robin to whichever replica has room; the order is not
    // ours to fix, so this repeats it rather than claiming one interleaving).
    let mut stored = 0;
    for round in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(round);
        let panel = format!("SHARED_{round}");
        let now = Utc::now();
        let start = now - Span::seconds(3_000);
        let mut register = 100.0;
        let points: Vec<Point> = (0..3_000)
            .map(|k| {
                register += rng.gen_range(0.001..0.01);
                (start + Span::seconds(k), register)
            })
            .collect();
        let mut chunks: Vec<&[Point]> = points.chunks(50).collect();
        chunks.shuffle(&mut rng);
        let shuffled: Vec<Point> = chunks.concat();
        publish(&broker, &panel, &shuffled);
        stored += 3_000;
        wait_until(Duration::from_secs(60), "every reading stored", || {
            influx.count_points(DB) == stored
        });
        let expected = usage_nkwh(&points, start - Span::days(1), now + Span::days(1));
        assert_rolled_up(&influx, &api, &zone, &panel, expected, &replicas[0]);
    }
}

/// `mqtt-subscriber --check-rollup …` against `influx`: exit code and output.
fn check_rollup(influx: &Influx, range: &str, repair: bool) -> (Option<i32>, String) {
    let mut args = vec!["--check-rollup", range];
    if repair {
        args.push("--repair");
    }
    test_support::run_to_exit(
        "mqtt-subscriber",
        &args,
        &[
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DB.to_owned()),
        ],
        Duration::from_secs(60),
    )
}

/// The `rollup_repairs=` of the subscriber's last summary line.
fn rollup_repairs(output: &str) -> Option<u64> {
    output
        .lines()
        .rev()
        .find_map(|line| {
            line.split_whitespace()
                .find_map(|t| t.strip_prefix("rollup_repairs="))
        })?
        .parse()
        .ok()
}

#[test]
fn the_check_reports_every_tampered_sum_and_the_writer_repairs_it() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut subscriber = start_subscriber(&broker, &influx, "writer", &[]);
    let now = Utc::now();
    // 60 readings a minute apart up to a minute ago, +0.25 kWh each: 59 pairs, 14.75 kWh.
    let points: Vec<Point> = (0..60)
        .map(|k| (now - Span::minutes(60 - k), 10.0 + 0.25 * k as f64))
        .collect();
    let expected = usage_nkwh(&points, now - Span::days(1), now + Span::days(1));
    assert_eq!(expected, 14_750_000_000);
    publish(&broker, "CHECKED", &points);
    wait_until(Duration::from_secs(30), "the rollup", || {
        rollup_sums(&influx, "CHECKED") == [expected; 3]
    });
    let range = format!(
        "{}..{}",
        (now - Span::days(1)).date_naive(),
        now.date_naive()
    );
    let (code, output) = check_rollup(&influx, &range, false);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(": 0 difference(s)"), "{output}");

    // Tamper with one bucket and the month sum.
    let bucket_secs = (now - Span::minutes(40)).timestamp() / 900 * 900;
    let bucket = Utc.timestamp_opt(bucket_secs, 0).unwrap();
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let tamper = |influx: &Influx| {
        influx.write(
            DB,
            &format!(
                "energy_usage_15m,panel=CHECKED usage_nkwh=123i,readings=1i {}\n\
                 energy_usage_1mo,panel=CHECKED usage_nkwh=5i,readings=1i {}\n",
                bucket.timestamp_nanos_opt().unwrap(),
                month.timestamp_nanos_opt().unwrap()
            ),
        )
    };
    tamper(&influx);
    let (code, output) = check_rollup(&influx, &range, false);
    println!("{output}");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains(": 2 difference(s)"), "{output}");
    assert!(
        output.contains(&format!(
            "difference panel=CHECKED level=bucket start={} rollup_kwh=0.000000123",
            bucket.to_rfc3339()
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "difference panel=CHECKED level=month start={} rollup_kwh=0.000000005 raw_kwh=14.75",
            month.to_rfc3339()
        )),
        "{output}"
    );

    // --repair asks the writer to recompute them; then the check finds nothing.
    let (code, output) = check_rollup(&influx, &range, true);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("repair requested"), "{output}");
    wait_until(Duration::from_secs(30), "the repair", || {
        check_rollup(&influx, &range, false).0 == Some(0)
    });
    assert_eq!(rollup_sums(&influx, "CHECKED"), [expected; 3]);

    // The writer's own check finds the same tampering by itself, counts it and repairs it.
    subscriber.kill();
    let subscriber = start_subscriber(
        &broker,
        &influx,
        "writer",
        &[("ROLLUP_CHECK_INTERVAL_SECS", "1".to_owned())],
    );
    wait_until(Duration::from_secs(30), "a first check", || {
        subscriber.output().contains("usage rollup checked")
    });
    // The repair's log entries are read a second time once they settle (INFLUX_TIMEOUT_MS 2 s
    // + 2 s), which would repair the next tampering by itself: wait that out.
    std::thread::sleep(Duration::from_secs(5));
    tamper(&influx);
    wait_until(Duration::from_secs(30), "the background check", || {
        rollup_repairs(&subscriber.output()) == Some(2)
    });
    wait_until(Duration::from_secs(30), "the repair", || {
        rollup_sums(&influx, "CHECKED") == [expected; 3]
    });
    assert!(
        subscriber
            .output()
            .contains("the usage rollup differs from the raw maths"),
        "{}",
        subscriber.output()
    );
}
