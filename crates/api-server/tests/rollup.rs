//! Months and days answered from the subscriber's usage rollup follow the rule of
//! docs/accounting.md, end to end: random histories with gaps of hours, resets and glitches go
//! through Mosquitto and mqtt-subscriber late, duplicated and shuffled, and api-server's answers
//! for a half-hour zone (Asia/Kolkata), usage and its estimated part, are compared with
//! `test_support::reference` over the same readings (each pair's increase spread over the time
//! between its readings, quarter hour by quarter hour; the share of a pair longer than
//! `ESTIMATE_AFTER_SECS` estimated). The reference shares no code with the programs.
//!
//! A server whose settings differ from the rollup's (`MAX_POWER_KW`, `ESTIMATE_AFTER_SECS`), or
//! that finds a rollup of an older format, must not use it: it answers from the raw readings,
//! by its own settings.
//!
//! Registers move in steps of 1/1024 kWh, so every register is exact in `f64` and every
//! increase a whole number of nano-kWh.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::reference::{self, Rule, Shares};
use test_support::{free_port, http_get, try_http_get, wait_until, Influx, Mosquitto, Program};

const ZONE: &str = "Asia/Kolkata";
const YEAR: i32 = 2025;

/// A reading: time and register in kWh.
type Point = (DateTime<Utc>, f64);

/// A figure as the API shows it: (`usage_kwh`, `estimated_kwh`).
type Figure = (f64, f64);

fn zone() -> Tz {
    ZONE.parse().unwrap()
}

/// The start of the local day `date` (Kolkata has no daylight saving: always one).
fn midnight(date: NaiveDate) -> DateTime<Utc> {
    zone()
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .expect("one local midnight")
        .with_timezone(&Utc)
}

/// The local day of `now`, as UTC instants `[start, end)`.
fn today_span(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = now.with_timezone(&zone()).date_naive();
    (midnight(date), midnight(date.succ_opt().unwrap()))
}

/// The local month `month` of `year`, as UTC instants `[start, end)`.
fn month_span(year: i32, month: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1).unwrap()
    };
    (midnight(first), midnight(next))
}

/// The current year in `ZONE`.
fn this_year() -> i32 {
    Utc::now().with_timezone(&zone()).year()
}

/// One panel's readings: from late January to early March `YEAR` every 1 to 15 minutes, with
/// a few gaps of 1 to 6 hours, and, if `today_from` is given, from that long after today's
/// local midnight (negative: before it) up to a minute ago, every 30 s to 400 s; with resets,
/// zero glitches and spikes. (The pair from early March `YEAR` to today's first reading spans
/// every day between: the months since get shares of it.)
fn history(rng: &mut StdRng, now: DateTime<Utc>, today_from: Option<i64>) -> Vec<Point> {
    let meter = Meter {
        register: 0.0..=4000.0,
        increase: 0.0..=2.0,
        unit: Some(1.0 / 1024.0),
        reset: 0.005,
        zero: 0.005,
        spike: 0.005,
        spike_kwh: 1e6,
        ..Meter::default()
    };
    let second = Span::seconds(1);
    let mut schedules = vec![Schedule::new(
        Utc.with_ymd_and_hms(YEAR, 1, 29, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(YEAR, 3, 3, 0, 0, 0).unwrap(),
        Span::minutes(1)..=Span::minutes(15),
    )
    .with_gaps(0.003, Span::hours(1)..=Span::hours(6))
    .in_whole(second)];
    if let Some(today_from) = today_from {
        let (day_start, _) = today_span(now);
        schedules.push(
            Schedule::new(
                day_start + Span::minutes(today_from),
                now - Span::minutes(1),
                Span::seconds(30)..=Span::seconds(400),
            )
            .in_whole(second),
        );
    }
    meter
        .readings(rng, &schedules)
        .into_iter()
        .map(|r| (r.time, r.energy_kwh))
        .collect()
}

fn payload(point: &Point) -> Vec<u8> {
    serde_json::json!({
        "power_kw": 1.5,
        "energy_kwh": point.1,
        "timestamp": point.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
    .into_bytes()
}

struct Api {
    base: String,
    program: Program,
}

impl Api {
    /// An api-server in `ZONE` without an answer cache, with `extra` settings (e.g.
    /// `MAX_POWER_KW`); the others at their defaults.
    fn start(influx: &Influx, extra: &[(&str, &str)]) -> Api {
        let port = free_port();
        let mut envs = vec![
            ("INFLUX_URL", influx.url()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("TIMEZONE", ZONE.into()),
            ("QUERY_CACHE_MS", "0".into()),
        ];
        envs.extend(extra.iter().map(|&(name, value)| (name, value.to_owned())));
        let program = Program::start("api-server", &envs);
        let base = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "api-server", || {
            try_http_get(&format!("{base}/health")).is_ok()
        });
        Api { base, program }
    }

    fn get(&self, path: &str) -> Value {
        let (status, body, _) = http_get(&format!("{}{path}", self.base));
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Panel -> (usage_kwh, estimated_kwh) of each month of `year`.
    fn months_of(&self, year: i32) -> BTreeMap<String, Vec<Figure>> {
        let body = self.get(&format!("/api/energy/monthly?year={year}"));
        body["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let months = p["months"].as_array().unwrap();
                let figures = months.iter().map(figure);
                (p["panel"].as_str().unwrap().to_owned(), figures.collect())
            })
            .collect()
    }

    /// Panel -> today's (usage_kwh, estimated_kwh).
    fn today(&self) -> BTreeMap<String, Figure> {
        let body = self.get("/api/panel/today-usage");
        body["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["panel"].as_str().unwrap().to_owned(), figure(p)))
            .collect()
    }
}

fn figure(entry: &Value) -> Figure {
    (
        entry["usage_kwh"].as_f64().unwrap(),
        entry["estimated_kwh"].as_f64().unwrap(),
    )
}

fn figure_of(shares: Shares) -> Figure {
    (shares.usage_kwh(), shares.estimated_kwh())
}

/// The figures the reference gives for the histories, by one rule.
struct Expected {
    /// Panel -> quarter-hour start (ns) -> shares.
    quarters: BTreeMap<String, BTreeMap<i128, Shares>>,
}

impl Expected {
    fn new(histories: &BTreeMap<String, Vec<Point>>, rule: Rule) -> Expected {
        let quarters = histories
            .iter()
            .map(|(panel, points)| (panel.clone(), reference::quarter_shares(points, rule)))
            .collect();
        Expected { quarters }
    }

    /// The shares of `panel` in `[start, end)` (both on quarter hours).
    fn shares(&self, panel: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Shares {
        let nanos = |t: DateTime<Utc>| i128::from(t.timestamp_nanos_opt().unwrap());
        let (start, end) = (nanos(start), nanos(end));
        assert!(start % 900_000_000_000 == 0 && end % 900_000_000_000 == 0);
        let mut total = Shares::default();
        for (_, shares) in self.quarters[panel].range(start..end) {
            total += *shares;
        }
        total
    }

    fn months_of(&self, year: i32) -> BTreeMap<String, Vec<Figure>> {
        self.quarters
            .keys()
            .map(|panel| {
                let months = (1..=12)
                    .map(|m| {
                        let (start, end) = month_span(year, m);
                        figure_of(self.shares(panel, start, end))
                    })
                    .collect();
                (panel.clone(), months)
            })
            .collect()
    }

    fn today(&self, now: DateTime<Utc>) -> BTreeMap<String, Figure> {
        let (start, end) = today_span(now);
        self.quarters
            .keys()
            .map(|panel| (panel.clone(), figure_of(self.shares(panel, start, end))))
            .collect()
    }
}

/// Polls until `got()` equals `want()` (asked after it, so a day that turned meanwhile is
/// today for both), for at most 20 s: the share of the newest pair may reach the rollup a round
/// late. Returns the figures; fails with both if they never agree.
fn settled<T: PartialEq + Debug>(what: &str, got: impl Fn() -> T, want: impl Fn() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, want) = (got(), want());
        if got == want {
            return got;
        }
        if Instant::now() >= deadline {
            assert_eq!(got, want, "{what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether the months of YEAR, this year's and today's figures of `api` are the reference's by
/// `expected`, polled until they are; `what` names the server.
fn assert_figures(api: &Api, expected: &Expected, what: &str) {
    settled(
        &format!("{what}: monthly {YEAR}"),
        || api.months_of(YEAR),
        || expected.months_of(YEAR),
    );
    let year = this_year();
    settled(
        &format!("{what}: this year's months"),
        || api.months_of(year),
        || expected.months_of(year),
    );
    settled(
        &format!("{what}: today"),
        || api.today(),
        || expected.today(Utc::now()),
    );
}

/// The rollup's latest state: (`complete_until`, `log_until`), in nanoseconds.
fn rollup_state(influx: &Influx) -> Option<(i64, i64)> {
    let answer = influx.query(
        "energy",
        "SELECT last(complete_until), last(log_until) FROM energy_rollup_state",
    );
    let row = &answer["results"][0]["series"][0]["values"][0];
    Some((row[1].as_i64()?, row[2].as_i64()?))
}

/// The stamp of the newest entry of the invalidation log, in nanoseconds.
fn newest_log_entry(influx: &Influx) -> Option<i64> {
    let answer = influx.query("energy", "SELECT last(buckets) FROM energy_rollup_log");
    let time = answer["results"][0]["series"][0]["values"][0][0].as_str()?;
    DateTime::parse_from_rfc3339(time)
        .ok()?
        .timestamp_nanos_opt()
}

#[test]
fn months_and_today_from_the_rollup_equal_the_raw_maths_after_late_duplicated_shuffled_delivery() {
    let broker = Mosquitto::start_with("max_queued_messages 0\n");
    let influx = Influx::start();
    let mut subscriber = Program::start(
        "mqtt-subscriber",
        &[
            ("MQTT_URL", broker.url()),
            ("INFLUX_URL", influx.url()),
            ("MQTT_CLIENT_ID", "rollup-sub".into()),
        ],
    );
    subscriber.wait_for_output("subscribed", Duration::from_secs(20));

    let now = Utc::now();
    let mut rng = StdRng::seed_from_u64(now.timestamp() as u64);
    // P_C's first reading today follows one from 2025, P_D has been silent since 2025: the
    // raw path must look further back than its usual one-day window for both.
    let histories: BTreeMap<String, Vec<Point>> = [
        ("P_A", Some(-20)),
        ("P_B", Some(-20)),
        ("P_C", Some(5)),
        ("P_D", None),
    ]
    .into_iter()
    .map(|(p, today_from)| (p.to_string(), history(&mut rng, now, today_from)))
    .collect();
    let distinct: usize = histories.values().map(Vec::len).sum();

    // Delivery: chunks in time order but shuffled inside, 3 % of readings again later, and
    // 2 % of them only at the very end (hours to weeks late).
    let mut messages: Vec<(String, Vec<u8>, i64)> = Vec::new();
    let mut late = Vec::new();
    for (panel, points) in &histories {
        for point in points {
            let message = (
                format!("DATA/PM/{panel}"),
                payload(point),
                point.0.timestamp(),
            );
            match rng.gen_range(0..100) {
                0..=1 => late.push(message),
                2..=4 => {
                    messages.push(message.clone());
                    let again = (message.0, message.1, message.2 + rng.gen_range(0..86_400));
                    messages.push(again);
                }
                _ => messages.push(message),
            }
        }
    }
    messages.sort_by_key(|m| m.2);
    for chunk in messages.chunks_mut(500) {
        chunk.shuffle(&mut rng);
    }
    late.shuffle(&mut rng);
    messages.extend(late);
    // Two deliveries, so the late ones arrive after the rollup has covered their buckets.
    let (first, second) = messages.split_at(messages.len() * 9 / 10);
    let mut seen = BTreeSet::new();
    for part in [first, second] {
        publish_many(
            broker.port,
            part.iter().map(|(t, p, _)| (t.as_str(), p.as_slice())),
        )
        .unwrap();
        seen.extend(
            part.iter()
                .map(|(topic, payload, _)| (topic.clone(), payload.clone())),
        );
        wait_until(Duration::from_secs(120), "the readings stored", || {
            influx.count_points("energy") as usize >= seen.len()
        });
        let stored_at = Utc::now().timestamp_nanos_opt().unwrap();
        wait_until(Duration::from_secs(60), "the rollup to catch up", || {
            rollup_state(&influx).is_some_and(|(until, _)| until > stored_at)
        });
    }
    assert_eq!(seen.len(), distinct);
    // The writer reads each log entry twice, the second time once it is old enough to be read
    // for good, and recomputes its buckets again then: wait for that, so that nothing it
    // recomputes later undoes the tampering below.
    wait_until(Duration::from_secs(60), "the rollup to settle", || {
        let newest = newest_log_entry(&influx).expect("log entries");
        rollup_state(&influx).is_some_and(|(_, log_until)| log_until > newest)
    });

    let expected = Expected::new(&histories, Rule::default());
    let api = Api::start(&influx, &[]);
    let months = settled(
        "monthly from the rollup",
        || api.months_of(YEAR),
        || expected.months_of(YEAR),
    );
    assert!(
        months.values().all(|m| m[1].0 > 0.0 && m[1].1 > 0.0),
        "February has usage, some of it estimated (gaps of hours): {months:?}"
    );
    // This year: the rollup, this month's rest from the recent readings, and months still to
    // come with no statement at all.
    let this_year = this_year();
    settled(
        "this year's months from the rollup",
        || api.months_of(this_year),
        || expected.months_of(this_year),
    );
    // The day may have turned meanwhile; then "today" is a new, empty day for both.
    settled(
        "today from the rollup",
        || api.today(),
        || expected.today(Utc::now()),
    );

    // The months really come from the rollup: add 1000 kWh (100 of them estimated) to P_B's
    // stored sum of (UTC) February, and 7 kWh (3 estimated) to one bucket of the 5.5 hours that
    // end it, which are Kolkata's March: February moves by 1000 - 7 (100 - 3 estimated), March
    // by 7 (3).
    let tamper = |measurement: &str, time: DateTime<Utc>, kwh: i64, estimated_kwh: i64| {
        let ns = time.timestamp_nanos_opt().unwrap();
        let answer = influx.query(
            "energy",
            &format!(
                "SELECT usage_nkwh, estimated_nkwh, readings FROM {measurement} \
                 WHERE panel = 'P_B' AND time = {ns}"
            ),
        );
        // A bucket without a reading and without usage (inside a gap whose pair counts
        // nothing) may have no point: it is then 0.
        let row = &answer["results"][0]["series"][0]["values"][0];
        let field = |i: usize| row[i].as_i64().unwrap_or(0);
        let (usage, estimated, readings) = (field(1), field(2), field(3));
        influx.write(
            "energy",
            &format!(
                "{measurement},panel=P_B usage_nkwh={}i,estimated_nkwh={}i,readings={readings}i \
                 {ns}\n",
                usage + kwh * 1_000_000_000,
                estimated + estimated_kwh * 1_000_000_000,
            ),
        );
    };
    tamper(
        "energy_usage_1mo",
        Utc.with_ymd_and_hms(YEAR, 2, 1, 0, 0, 0).unwrap(),
        1000,
        100,
    );
    tamper(
        "energy_usage_15m",
        Utc.with_ymd_and_hms(YEAR, 2, 28, 20, 0, 0).unwrap(),
        7,
        3,
    );
    let tampered = api.months_of(YEAR);
    let moved = |month: usize| {
        let (now, before) = (tampered["P_B"][month], months["P_B"][month]);
        (now.0 - before.0, now.1 - before.1)
    };
    let close = |(usage, estimated): Figure, want: Figure| {
        (usage - want.0).abs() < 1e-6 && (estimated - want.1).abs() < 1e-6
    };
    assert!(
        close(moved(1), (993.0, 97.0)),
        "February moved by {:?}",
        moved(1)
    );
    assert!(close(moved(2), (7.0, 3.0)), "March moved by {:?}", moved(2));

    // A server with another glitch threshold cannot use this rollup: it reads raw points, and
    // agrees with the reference at its own threshold (the tampered sums play no part).
    let other_max = Rule {
        max_power_kw: 50.0,
        ..Rule::default()
    };
    let other = Api::start(&influx, &[("MAX_POWER_KW", "50")]);
    assert_figures(
        &other,
        &Expected::new(&histories, other_max),
        "MAX_POWER_KW=50 from raw points",
    );

    // Nor can a server with another estimate threshold: its estimated parts follow its own
    // threshold (pairs of 5 to 15 minutes become estimates), from raw points too.
    let other_estimate = Rule {
        estimate_after_secs: 300,
        ..Rule::default()
    };
    let by_300 = Expected::new(&histories, other_estimate);
    assert_ne!(
        by_300.months_of(YEAR),
        expected.months_of(YEAR),
        "the history has pairs between 300 s and 900 s long"
    );
    let estimating = Api::start(&influx, &[("ESTIMATE_AFTER_SECS", "300")]);
    assert_figures(
        &estimating,
        &by_300,
        "ESTIMATE_AFTER_SECS=300 from raw points",
    );

    // Every panel is listed, also the one silent for more than a day, with its last reading.
    let realtime = other.get("/api/panel/realtime");
    let last_seen: BTreeMap<String, String> = realtime["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["panel"].as_str().unwrap().to_owned(),
                p["last_seen"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected_last_seen: BTreeMap<String, String> = histories
        .iter()
        .map(|(panel, points)| {
            let last = points.iter().map(|p| p.0).max().unwrap();
            (
                panel.clone(),
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .collect();
    assert_eq!(last_seen, expected_last_seen);

    // A rollup recorded in the old format (each pair in the bucket of its later reading) is
    // not used either: a state of format 2, newer than the writer's (stamped a day ahead, so the
    // writer's own hourly state does not replace it), and the server that answered the tampered
    // sums above answers the reference again, from raw points, and says why.
    let (complete_until, log_until) = rollup_state(&influx).expect("a rollup state");
    let stamp = (Utc::now().timestamp() / 3600 + 24) * 3600 * 1_000_000_000;
    influx.write(
        "energy",
        &format!(
            "energy_rollup_state complete_until={complete_until}i,max_power_kw=5000.0,\
             format=2i,log_until={log_until}i {stamp}\n"
        ),
    );
    assert_figures(&api, &expected, "an old-format rollup: from raw points");
    let said = api.program.output();
    assert!(
        said.contains("or by an earlier rule") && said.contains("rollup_format=2"),
        "the api-server says why it left the rollup:\n{said}"
    );

    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
}
