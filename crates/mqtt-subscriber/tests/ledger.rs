//! The usage rollup equals the raw maths whatever interrupts the subscriber (docs/rollup.md):
//! a SIGKILL the instant a late backlog is stored, SIGKILLs while it catches up and while it
//! rebuilds, a SIGTERM while InfluxDB is down, and three replicas of a shared group writing one
//! panel at once; and `--check-rollup` finds a tampered sum, which `--repair` and the writer's
//! own background check put right. Everything runs for real: Mosquitto, influxd,
//! mqtt-subscriber, api-server.
//!
//! Every expected figure is computed here from the readings the test published, with
//! `test_support::reference` (the rule of docs/accounting.md written out again, sharing no code
//! with the programs), or by hand in a comment. The rule: each pair of consecutive readings has
//! its increase (0 when the register dropped, or when the increase implies more than
//! `MAX_POWER_KW`, 5000 kW by default, as the zero glitches of the long histories do) spread
//! over the time between the two readings: each UTC quarter hour the pair overlaps gets its
//! share by overlap, the nano-kWh left over going to the largest remainders. A period's usage
//! is the sum of its quarter hours' shares; the shares of a pair longer than
//! `ESTIMATE_AFTER_SECS` (900 s by default) are its estimated part too.
//!
//! So the sum of ALL the rollup's buckets (or of all its days, or months) of a panel is the sum
//! of all its pairs' increases, whatever the pairs straddle: spreading loses nothing and the
//! check stays exact. Today's and this month's figures are the reference's over those periods
//! of the API's zone, computed from every reading of the panel (also those outside the period)
//! so that pairs straddling a period's ends are shared out.

use std::time::{Duration, Instant};

use chrono::{
    DateTime, Datelike, Duration as Span, Months, NaiveDate, NaiveTime, TimeZone, Timelike, Utc,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::reference::{self, Rule, Shares};
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

/// The reference's shares of every quarter hour of `points` added up: the usage of the whole
/// history (every pair's increase) and its estimated part, in nano-kWh.
fn whole(points: &[Point]) -> Shares {
    let mut total = Shares::default();
    for shares in reference::quarter_shares(points, Rule::default()).values() {
        total += *shares;
    }
    total
}

/// Today and the current month of `zone` at `now`, each as `[start, end)` in UTC, and the
/// month's year and number.
struct Local {
    day: (DateTime<Utc>, DateTime<Utc>),
    month: (DateTime<Utc>, DateTime<Utc>),
    year_month: (i32, u32),
}

fn local_periods(zone: &str, now: DateTime<Utc>) -> Local {
    let tz: chrono_tz::Tz = zone.parse().expect("a time zone");
    let midnight = |date: NaiveDate| {
        tz.from_local_datetime(&date.and_time(NaiveTime::MIN))
            .single()
            .expect("the zones of these tests have no daylight saving time")
            .with_timezone(&Utc)
    };
    let today = now.with_timezone(&tz).date_naive();
    let first = today.with_day(1).expect("the first of the month");
    Local {
        day: (midnight(today), midnight(today + Span::days(1))),
        month: (midnight(first), midnight(first + Months::new(1))),
        year_month: (today.year(), today.month()),
    }
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

/// The sums of the rollup's 15-minute buckets of `panel`, and of its UTC hours, days and
/// months: (`usage_nkwh`, `estimated_nkwh`) of each. All four must equal the reference's shares
/// of the whole history ([`whole`]).
fn rollup_sums(influx: &Influx, panel: &str) -> [(i64, i64); 4] {
    [
        "energy_usage_15m",
        "energy_usage_1h",
        "energy_usage_1d",
        "energy_usage_1mo",
    ]
    .map(|measurement| {
        let json = influx.query(
            DB,
            &format!(
                "SELECT sum(usage_nkwh), sum(estimated_nkwh) FROM {measurement} \
                 WHERE panel = '{panel}'"
            ),
        );
        let row = &json["results"][0]["series"][0]["values"][0];
        (row[1].as_i64().unwrap_or(0), row[2].as_i64().unwrap_or(0))
    })
}

/// `field` of `panel` in an answer of `/api/panel/today-usage`.
fn panel_figure(answer: &serde_json::Value, panel: &str, field: &str) -> Option<f64> {
    answer["panels"]
        .as_array()?
        .iter()
        .find(|p| p["panel"] == panel)?[field]
        .as_f64()
}

/// What the rollup holds of a panel and what the API answers for it, or what they should.
#[derive(Debug, PartialEq)]
struct Figures {
    /// [`rollup_sums`].
    rollup: [(i64, i64); 4],
    /// `usage_kwh` and `estimated_kwh` today, in the API's zone.
    today: (f64, f64),
    /// `usage_kwh` and `estimated_kwh` of the current month, in the API's zone.
    month: (f64, f64),
}

/// The figures the rollup and the API must show for `points` at `now` in `zone`, by the
/// reference.
fn expected(points: &[Point], zone: &str, now: DateTime<Utc>) -> Figures {
    let all = whole(points);
    let local = local_periods(zone, now);
    let today = reference::usage(points, local.day.0, local.day.1, Rule::default());
    let month = reference::usage(points, local.month.0, local.month.1, Rule::default());
    let sums = (
        i64::try_from(all.usage).unwrap(),
        i64::try_from(all.estimated).unwrap(),
    );
    Figures {
        rollup: [sums; 4],
        today: (today.usage_kwh(), today.estimated_kwh()),
        month: (month.usage_kwh(), month.estimated_kwh()),
    }
}

/// The figures the rollup holds of `panel` and the API answers for it now (NaN for a figure
/// the API does not show).
fn observed(influx: &Influx, api: &ApiServer, zone: &str, panel: &str) -> Figures {
    let rollup = rollup_sums(influx, panel);
    let (year, month) = local_periods(zone, Utc::now()).year_month;
    let today = api.ok("/api/panel/today-usage");
    let monthly = api.ok(&format!("/api/energy/monthly?year={year}"));
    let this_month = monthly["panels"]
        .as_array()
        .and_then(|panels| panels.iter().find(|p| p["panel"] == panel))
        .map(|p| &p["months"][month as usize - 1]);
    let month_figure = |field: &str| {
        this_month
            .and_then(|m| m[field].as_f64())
            .unwrap_or(f64::NAN)
    };
    Figures {
        rollup,
        today: (
            panel_figure(&today, panel, "usage_kwh").unwrap_or(f64::NAN),
            panel_figure(&today, panel, "estimated_kwh").unwrap_or(f64::NAN),
        ),
        month: (month_figure("usage_kwh"), month_figure("estimated_kwh")),
    }
}

/// Waits until the rollup's buckets, days and months of `panel` all hold the whole usage of
/// `points` and its estimated part, and the API answers the reference's usage and estimated
/// part (to its 3 decimals) for today and this month in `zone`. Polled: the writer catches up
/// in rounds, and until its next round the API may lack the share of the newest pair that lies
/// before the rollup's complete_until. Then requires that the writer's own check ran and never
/// found a difference.
fn assert_rolled_up(
    influx: &Influx,
    api: &ApiServer,
    zone: &str,
    panel: &str,
    points: &[Point],
    subscriber: &Program,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Expected from the clock before asking, so a local midnight passing in between only
        // costs another round.
        let want = expected(points, zone, Utc::now());
        let got = observed(influx, api, zone, panel);
        if got == want {
            println!("panel {panel}: {got:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panel {panel} in {zone}: expected {want:?}, got {got:?}\n{}",
            subscriber.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
        // A reading 3 h old, one 2 h 10 min old, then the 120 a meter queued during an
        // outage: from 2 h ago, a minute apart, +1 kWh each. By hand: the first pair spans
        // 50 min (a gap longer than 900 s, so estimated) and adds 10 kWh (12 kW); the second
        // spans 10 min (not estimated) and adds 1 kWh (6 kW); the other 119 add 1 kWh each.
        // Spread over the quarter hours they overlap, they all add up to 130 kWh, 10 of them
        // estimated.
        let mut points: Vec<Point> = vec![
            (now - Span::minutes(180), 990.0),
            (now - Span::minutes(130), 1000.0),
        ];
        for k in 0..120 {
            points.push((now - Span::minutes(120 - k), 1001.0 + k as f64));
        }
        assert_eq!(
            whole(&points),
            Shares {
                usage: 130_000_000_000,
                estimated: 10_000_000_000
            }
        );
        let before = influx.count_points(DB);
        publish(&broker, &panel, &points);
        // Killed the moment InfluxDB holds all 122 (they were acknowledged).
        wait_until(Duration::from_secs(30), "the backlog stored", || {
            influx.count_points(DB) == before + points.len() as u64
        });
        subscriber.kill();
        println!(
            "round {round}: rollup held {:?} nano-kWh when the subscriber was killed",
            rollup_sums(&influx, &panel)
        );
        subscriber = start_subscriber(&broker, &influx, "writer", &checking());
        assert_rolled_up(&influx, &api, &zone, &panel, &points, &subscriber);
    }
}

/// `days` days of readings a minute apart up to a minute ago, +0.01 to +0.2 kWh each, with a
/// meter reset and a zero glitch in every 500 readings or so, and a gap of 16 minutes to 3
/// hours (longer than 900 s: its pair is estimated, spread over buckets that hold no reading)
/// in every 300 steps or so.
fn history(rng: &mut StdRng, now: DateTime<Utc>, days: i64) -> Vec<Point> {
    let meter = Meter {
        register: 0.0..=1000.0,
        increase: 0.01..=0.2,
        reset: 0.002,
        zero: 0.002,
        ..Meter::default()
    };
    let schedule = Schedule::every(now - Span::days(days), now, Span::minutes(1))
        .with_gaps(0.003, Span::minutes(16)..=Span::hours(3));
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

    // Buckets, days and months hold everything, and the API's today and this month (UTC) are
    // the reference's.
    let api = ApiServer::start(&influx.url(), DB, &[("TIMEZONE", "UTC")]);
    for (panel, points) in &panels {
        let all = whole(points);
        println!("{panel}: {} readings, {all:?}", points.len());
        assert!(
            all.estimated > 0,
            "{panel}: the history has gaps longer than 900 s: {all:?}"
        );
        assert_rolled_up(&influx, &api, "UTC", panel, points, &writer);
    }
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
    // 200 late readings spread over the last three hours, 54 s apart, +0.5 kWh each: by hand,
    // 199 pairs of 0.5 kWh spread over the quarter hours they overlap, 99.5 kWh in all, none
    // of it estimated (no pair is longer than 900 s).
    let points: Vec<Point> = (0..200)
        .map(|k| {
            (
                now - Span::minutes(180) + Span::seconds(54 * k),
                500.0 + 0.5 * k as f64,
            )
        })
        .collect();
    assert_eq!(
        whole(&points),
        Shares {
            usage: 99_500_000_000,
            estimated: 0
        }
    );
    publish(&broker, "DOWN", &points);
    subscriber.wait_for_output("write failed", Duration::from_secs(30));
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());

    influx.restart();
    let subscriber = start_subscriber(&broker, &influx, "writer", &checking());
    wait_until(Duration::from_secs(60), "every reading stored", || {
        influx.count_points(DB) == 200
    });
    let api = ApiServer::start(&influx.url(), DB, &[("TIMEZONE", &zone)]);
    assert_rolled_up(&influx, &api, &zone, "DOWN", &points, &subscriber);
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
        assert_rolled_up(&influx, &api, &zone, &panel, &points, &replicas[0]);
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
    // Whole milliseconds, as the payload carries them: the reference then sees the stored times.
    let now = Utc
        .timestamp_millis_opt(Utc::now().timestamp_millis())
        .unwrap();
    // 60 readings a minute apart up to a minute ago, +0.25 kWh each: by hand, 59 pairs of
    // 0.25 kWh spread over the quarter hours they overlap, 14.75 kWh in all, none estimated.
    let points: Vec<Point> = (0..60)
        .map(|k| (now - Span::minutes(60 - k), 10.0 + 0.25 * k as f64))
        .collect();
    let all = whole(&points);
    assert_eq!(
        all,
        Shares {
            usage: 14_750_000_000,
            estimated: 0
        }
    );
    let sums = [(14_750_000_000, 0); 4];
    publish(&broker, "CHECKED", &points);
    wait_until(Duration::from_secs(30), "the rollup", || {
        rollup_sums(&influx, "CHECKED") == sums
    });
    let range = format!(
        "{}..{}",
        (now - Span::days(1)).date_naive(),
        now.date_naive()
    );
    let (code, output) = check_rollup(&influx, &range, false);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(": 0 difference(s)"), "{output}");

    // Tamper with one bucket, one hour sum and the month sum. The writer's own check looks at
    // whole hours ending a quarter of an hour or more before now: the hour is one that ends
    // 20 minutes ago or earlier (it may hold the first readings, or none).
    let bucket_secs = (now - Span::minutes(40)).timestamp() / 900 * 900;
    let bucket = Utc.timestamp_opt(bucket_secs, 0).unwrap();
    let hour_secs = (now - Span::minutes(80)).timestamp() / 3600 * 3600;
    let hour = Utc.timestamp_opt(hour_secs, 0).unwrap();
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let tamper = |influx: &Influx| {
        influx.write(
            DB,
            &format!(
                "energy_usage_15m,panel=CHECKED usage_nkwh=123i,readings=1i {}\n\
                 energy_usage_1h,panel=CHECKED usage_nkwh=77i,readings=1i {}\n\
                 energy_usage_1mo,panel=CHECKED usage_nkwh=5i,readings=1i {}\n",
                bucket.timestamp_nanos_opt().unwrap(),
                hour.timestamp_nanos_opt().unwrap(),
                month.timestamp_nanos_opt().unwrap()
            ),
        )
    };
    tamper(&influx);
    // The month's sum should be that of its days: the reference's usage of the UTC month (all
    // 14.75 kWh, unless this hour straddles the month's start).
    let month_kwh = reference::usage(&points, month, month + Months::new(1), Rule::default()).usage
        as f64
        / 1e9;
    // The hour's should be the reference's usage of that hour.
    let hour_kwh =
        reference::usage(&points, hour, hour + Span::hours(1), Rule::default()).usage as f64 / 1e9;
    let (code, output) = check_rollup(&influx, &range, false);
    println!("{output}");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains(": 3 difference(s)"), "{output}");
    assert!(
        output.contains(&format!(
            "difference panel=CHECKED level=hour start={} rollup_kwh=0.000000077 raw_kwh={hour_kwh}",
            hour.to_rfc3339()
        )),
        "{output}\nthe hour by the reference: {hour_kwh} kWh"
    );
    assert!(
        output.contains(&format!(
            "difference panel=CHECKED level=bucket start={} rollup_kwh=0.000000123",
            bucket.to_rfc3339()
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "difference panel=CHECKED level=month start={} rollup_kwh=0.000000005 raw_kwh={month_kwh}",
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
    assert_eq!(rollup_sums(&influx, "CHECKED"), sums);

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
        rollup_repairs(&subscriber.output()) == Some(3)
    });
    wait_until(Duration::from_secs(30), "the repair", || {
        rollup_sums(&influx, "CHECKED") == sums
    });
    assert!(
        subscriber
            .output()
            .contains("the usage rollup differs from the raw maths"),
        "{}",
        subscriber.output()
    );
}
