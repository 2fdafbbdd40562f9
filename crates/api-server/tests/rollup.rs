//! Months and days answered from the subscriber's usage rollup equal the raw maths of
//! docs/accounting.md, end to end: random histories with resets and glitches go through Mosquitto and
//! mqtt-subscriber late, duplicated and shuffled, and api-server's answers for a half-hour zone
//! (Asia/Kolkata) are compared with `energy_core::usage` over the same readings.
//!
//! Registers move in steps of 1/1024 kWh, so every sum is exact in binary floating point and the
//! raw path (which InfluxDB sums as floats) must agree to the last digit too.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, TimeZone, Utc};
use chrono_tz::Tz;
use energy_core::period::{month, today};
use energy_core::usage::usage_in;
use energy_core::{EnergyPoint, MaxPower};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::{free_port, http_get, try_http_get, wait_until, Influx, Mosquitto, Program};

const ZONE: &str = "Asia/Kolkata";
const YEAR: i32 = 2025;

fn kw(kw: f64) -> MaxPower {
    MaxPower::from_kw(kw).unwrap()
}

/// `MAX_POWER_KW`'s default.
fn max_kw() -> MaxPower {
    kw(5000.0)
}

/// One panel's readings: from late January to early March `YEAR` every 1 to 15 minutes, and, if
/// `today_from` is given, from that long after today's local midnight (negative: before it) up
/// to a minute ago, every 30 s to 400 s; with resets, zero glitches and spikes.
fn history(rng: &mut StdRng, now: DateTime<Utc>, today_from: Option<i64>) -> Vec<EnergyPoint> {
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
    .in_whole(second)];
    if let Some(today_from) = today_from {
        let (_, day) = today(now, ZONE.parse().unwrap());
        schedules.push(
            Schedule::new(
                day.start + Span::minutes(today_from),
                now - Span::minutes(1),
                Span::seconds(30)..=Span::seconds(400),
            )
            .in_whole(second),
        );
    }
    meter
        .readings(rng, &schedules)
        .into_iter()
        .map(|r| EnergyPoint {
            time: r.time,
            energy_kwh: r.energy_kwh,
        })
        .collect()
}

fn payload(point: &EnergyPoint) -> Vec<u8> {
    serde_json::json!({
        "power_kw": 1.5,
        "energy_kwh": point.energy_kwh,
        "timestamp": point.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
    .into_bytes()
}

struct Api {
    base: String,
    _program: Program,
}

impl Api {
    fn start(influx: &Influx, max_power_kw: MaxPower) -> Api {
        let port = free_port();
        let program = Program::start(
            "api-server",
            &[
                ("INFLUX_URL", influx.url()),
                ("API_ADDR", format!("127.0.0.1:{port}")),
                ("TIMEZONE", ZONE.into()),
                ("MAX_POWER_KW", max_power_kw.to_string()),
                ("QUERY_CACHE_MS", "0".into()),
            ],
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "api-server", || {
            try_http_get(&format!("{base}/health")).is_ok()
        });
        Api {
            base,
            _program: program,
        }
    }

    fn get(&self, path: &str) -> Value {
        let (status, body, _) = http_get(&format!("{}{path}", self.base));
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Panel -> usage_kwh of each month of `YEAR`.
    fn months(&self) -> BTreeMap<String, Vec<f64>> {
        self.months_of(YEAR)
    }

    /// Panel -> usage_kwh of each month of `year`.
    fn months_of(&self, year: i32) -> BTreeMap<String, Vec<f64>> {
        let body = self.get(&format!("/api/energy/monthly?year={year}"));
        body["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let months = p["months"].as_array().unwrap();
                let usage = months.iter().map(|m| m["usage_kwh"].as_f64().unwrap());
                (p["panel"].as_str().unwrap().to_owned(), usage.collect())
            })
            .collect()
    }

    fn today(&self) -> BTreeMap<String, f64> {
        let body = self.get("/api/panel/today-usage");
        body["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["panel"].as_str().unwrap().to_owned(),
                    p["usage_kwh"].as_f64().unwrap(),
                )
            })
            .collect()
    }
}

fn expected_months(
    histories: &BTreeMap<String, Vec<EnergyPoint>>,
    max_kw: MaxPower,
) -> BTreeMap<String, Vec<f64>> {
    expected_months_of(histories, YEAR, max_kw)
}

fn expected_months_of(
    histories: &BTreeMap<String, Vec<EnergyPoint>>,
    year: i32,
    max_kw: MaxPower,
) -> BTreeMap<String, Vec<f64>> {
    let tz: Tz = ZONE.parse().unwrap();
    histories
        .iter()
        .map(|(panel, points)| {
            let months = (1..=12)
                .map(|m| usage_in(points, month(year, m, tz).unwrap(), max_kw).kwh_rounded())
                .collect();
            (panel.clone(), months)
        })
        .collect()
}

fn expected_today(
    histories: &BTreeMap<String, Vec<EnergyPoint>>,
    now: DateTime<Utc>,
    max_kw: MaxPower,
) -> BTreeMap<String, f64> {
    let (_, day) = today(now, ZONE.parse().unwrap());
    histories
        .iter()
        .map(|(panel, points)| (panel.clone(), usage_in(points, day, max_kw).kwh_rounded()))
        .collect()
}

/// The instant the rollup records as complete, in nanoseconds.
fn complete_until(influx: &Influx) -> Option<i64> {
    let answer = influx.query(
        "energy",
        "SELECT last(complete_until) FROM energy_rollup_state",
    );
    answer["results"][0]["series"][0]["values"][0][1].as_i64()
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
    let histories: BTreeMap<String, Vec<EnergyPoint>> = [
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
                point.time.timestamp(),
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
    let mut seen = std::collections::BTreeSet::new();
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
            complete_until(&influx).is_some_and(|until| until > stored_at)
        });
    }
    assert_eq!(seen.len(), distinct);

    let api = Api::start(&influx, max_kw());
    let months = api.months();
    assert_eq!(
        months,
        expected_months(&histories, max_kw()),
        "monthly from the rollup"
    );
    assert!(
        months.values().all(|m| m[1] > 0.0),
        "February has usage: {months:?}"
    );
    // This year: the rollup, this month's rest from the recent readings, and months still to
    // come with no statement at all.
    let this_year = energy_core::period::today(Utc::now(), ZONE.parse().unwrap())
        .0
        .year();
    assert_eq!(
        api.months_of(this_year),
        expected_months_of(&histories, this_year, max_kw()),
        "this year's months from the rollup"
    );
    // The day may have turned meanwhile; then "today" is a new, empty day for both.
    let today = api.today();
    let answered_at = Utc::now();
    assert_eq!(
        today,
        expected_today(&histories, answered_at, max_kw()),
        "today from the rollup"
    );

    // The months really come from the rollup: add 1000 kWh to P_B's stored sum of (UTC)
    // February, and 7 kWh to one bucket of the 5.5 hours that end it, which are Kolkata's March:
    // February moves by 1000 - 7, March by 7.
    let tamper = |measurement: &str, time: DateTime<Utc>, kwh: i64| {
        let answer = influx.query(
            "energy",
            &format!(
                "SELECT usage_nkwh, readings FROM {measurement} WHERE panel = 'P_B' AND time = {}",
                time.timestamp_nanos_opt().unwrap()
            ),
        );
        let row = &answer["results"][0]["series"][0]["values"][0];
        let (usage, readings) = (row[1].as_i64().unwrap(), row[2].as_i64().unwrap());
        influx.write(
            "energy",
            &format!(
                "{measurement},panel=P_B usage_nkwh={}i,readings={readings}i {}\n",
                usage + kwh * 1_000_000_000,
                time.timestamp_nanos_opt().unwrap()
            ),
        );
    };
    tamper(
        "energy_usage_1mo",
        Utc.with_ymd_and_hms(YEAR, 2, 1, 0, 0, 0).unwrap(),
        1000,
    );
    // Readings come at most 15 minutes apart: every bucket holds one.
    tamper(
        "energy_usage_15m",
        Utc.with_ymd_and_hms(YEAR, 2, 28, 20, 0, 0).unwrap(),
        7,
    );
    let tampered = api.months();
    let moved = |month: usize| tampered["P_B"][month] - months["P_B"][month];
    assert!(
        (moved(1) - 993.0).abs() < 1e-6,
        "February moved by {}",
        moved(1)
    );
    assert!((moved(2) - 7.0).abs() < 1e-6, "March moved by {}", moved(2));

    // A server with another glitch threshold cannot use this rollup: it reads raw points, and
    // agrees with the raw maths at its own threshold (the tampered sums play no part).
    let other = Api::start(&influx, kw(50.0));
    assert_eq!(
        other.months(),
        expected_months(&histories, kw(50.0)),
        "monthly from raw points"
    );
    let today = other.today();
    assert_eq!(
        today,
        expected_today(&histories, Utc::now(), kw(50.0)),
        "today from raw points"
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
            let last = points.last().unwrap().time;
            (
                panel.clone(),
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .collect();
    assert_eq!(last_seen, expected_last_seen);
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
}
