//! Without a rollup, every figure is still the raw maths. A database holds 40 days of readings
//! of three panels written straight into it (as another tool would), with gaps, meter resets
//! and glitches, and no usage rollup; the real api-server must answer today's usage, the
//! summary and the year's monthly usage exactly as this test computes them from the readings.
//! Then a real mqtt-subscriber that keeps no rollup (`ROLLUP_WRITER=false`, a read-only
//! deployment's ingest) stores late readings into days the api-server has already read, and the
//! figures must follow them.
//!
//! Every expected figure is computed here by hand: for each pair of consecutive readings of a
//! panel, the increase counts if it is positive and does not imply more than `MAX_POWER_KW`
//! over the time between them, and it goes to the period of the later reading. Registers move
//! in steps of 1/64 kWh, so sums in those units are exact integers.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::{start_subscriber, wait_until, ApiServer, Influx, Mosquitto};

const ZONE: &str = "Asia/Jakarta";
/// The glitch threshold given to the api-server.
const MAX_POWER_KW: i64 = 60;
const PANELS: [&str; 3] = ["NR_A", "NR_B", "NR_C"];

/// A reading: time in whole seconds, register in 1/64 kWh.
type Reading = (i64, i64);

/// 40 days of readings per panel, one every 1 to 30 minutes (in whole seconds), with a few gaps
/// of hours, resets to a low register and glitches (a jump of 10 MWh that comes back down).
fn history(rng: &mut StdRng, now: i64) -> BTreeMap<&'static str, Vec<Reading>> {
    let meter = Meter {
        register: 1000.0..=1000.0,
        increase: 0.0..=4.0,
        unit: Some(1.0 / 64.0),
        reset: 1.0 / 400.0,
        reset_to: 0.0..=4.0,
        spike: 1.0 / 400.0,
        spike_kwh: 10_000.0,
        ..Meter::default()
    };
    let at = |seconds: i64| Utc.timestamp_opt(seconds, 0).unwrap();
    let mut all = BTreeMap::new();
    for panel in PANELS {
        let from = now - 40 * 86_400 + rng.gen_range(0..3600);
        let schedule = Schedule::new(
            at(from),
            at(now - 600),
            chrono::Duration::minutes(1)..=chrono::Duration::minutes(30),
        )
        .with_gaps(
            1.0 / 200.0,
            chrono::Duration::hours(1)..=chrono::Duration::hours(8),
        )
        .in_whole(chrono::Duration::seconds(1));
        let readings = meter
            .readings(rng, &[schedule])
            .into_iter()
            // Exact: whole seconds, and registers in whole 1/64 kWh.
            .map(|r| (r.time.timestamp(), (r.energy_kwh * 64.0) as i64))
            .collect();
        all.insert(panel, readings);
    }
    all
}

/// What a pair of readings adds, in 1/64 kWh: a positive increase within `MAX_POWER_KW`.
fn pair(a: Reading, b: Reading) -> i64 {
    let increase = b.1 - a.1;
    let seconds = b.0 - a.0;
    // increase/64 kWh over seconds/3600 h is at most MAX_POWER_KW kW.
    if increase > 0 && increase * 3600 <= MAX_POWER_KW * 64 * seconds {
        increase
    } else {
        0
    }
}

/// Each panel's usage per local day, in 1/64 kWh, and whether it had a reading that day.
fn usage_by_day(all: &BTreeMap<&str, Vec<Reading>>, tz: Tz) -> BTreeMap<(String, NaiveDate), i64> {
    let mut out = BTreeMap::new();
    for (panel, readings) in all {
        for (i, &reading) in readings.iter().enumerate() {
            let day = tz
                .timestamp_opt(reading.0, 0)
                .single()
                .expect("a valid time")
                .date_naive();
            let added = if i == 0 {
                0
            } else {
                pair(readings[i - 1], reading)
            };
            *out.entry((panel.to_string(), day)).or_insert(0) += added;
        }
    }
    out
}

/// kWh rounded half away from zero to the 3 decimals the API shows.
fn kwh(units: i64) -> f64 {
    // units/64 kWh has at most 6 decimals: exact in f64 before rounding.
    let thousandths = (units as f64) * 1000.0 / 64.0;
    thousandths.round() / 1000.0
}

fn line(panel: &str, reading: Reading) -> String {
    format!(
        "energy_data,panel={panel} power_kw=1,energy_kwh={:?} {}000000000\n",
        reading.1 as f64 / 64.0,
        reading.0
    )
}

/// Compares today's usage, the summary and the year's monthly usage with `all`; returns what
/// differs.
fn differences(api: &ApiServer, all: &BTreeMap<&str, Vec<Reading>>, tz: Tz) -> Vec<String> {
    let by_day = usage_by_day(all, tz);
    let today = Utc::now().with_timezone(&tz).date_naive();
    let mut wrong = Vec::new();
    let find = |body: &Value, panel: &str, field: &str| -> Option<f64> {
        body["panels"]
            .as_array()?
            .iter()
            .find(|p| p["panel"] == panel)?[field]
            .as_f64()
    };

    let today_usage = api.ok("/api/panel/today-usage");
    let summary = api.ok("/api/panel/summary");
    let monthly = api.ok(&format!("/api/energy/monthly?year={}", today.year()));
    for panel in PANELS {
        let want = by_day.get(&(panel.to_owned(), today)).copied();
        for (what, body, field) in [
            ("today-usage", &today_usage, "usage_kwh"),
            ("summary", &summary, "today_usage_kwh"),
        ] {
            let got = find(body, panel, field);
            if got != want.map(kwh) {
                wrong.push(format!(
                    "{what} {panel}: {got:?}, expected {:?}",
                    want.map(kwh)
                ));
            }
        }
        let months = monthly["panels"]
            .as_array()
            .and_then(|panels| panels.iter().find(|p| p["panel"] == panel))
            .and_then(|p| p["months"].as_array().cloned())
            .unwrap_or_default();
        for month in 1..=12u32 {
            let want: i64 = by_day
                .iter()
                .filter(|((p, day), _)| {
                    p == panel && day.year() == today.year() && day.month() == month
                })
                .map(|(_, units)| units)
                .sum();
            let got = months
                .get(month as usize - 1)
                .and_then(|m| m["usage_kwh"].as_f64());
            if got != Some(kwh(want)) {
                wrong.push(format!(
                    "monthly {panel} month {month}: {got:?}, expected {}",
                    kwh(want)
                ));
            }
        }
    }
    wrong
}

#[test]
fn without_a_rollup_figures_are_the_raw_maths_and_follow_late_readings() {
    let tz: Tz = ZONE.parse().unwrap();
    let now = Utc::now().timestamp();
    let rng = &mut StdRng::seed_from_u64(now as u64);
    let mut all = history(rng, now);
    // The history must hold what the test is about.
    let glitches = all
        .values()
        .flat_map(|r| r.windows(2))
        .filter(|w| w[1].1 - w[0].1 > 64 * 5_000)
        .count();
    assert!(glitches > 0, "the history holds glitches");

    let influx = influx_holding(&all);

    let api = start_api(&influx, &[]);
    let wrong = differences(&api, &all, tz);
    assert!(
        wrong.is_empty(),
        "from raw readings:\n  {}",
        wrong.join("\n  ")
    );

    // Late readings through the real subscriber, which keeps no rollup but writes the
    // invalidation log with them, into days the api-server has read.
    let broker = Mosquitto::start();
    let _replica = replica_publishes_late(&broker, &influx, &mut all, now);
    wait_until(
        Duration::from_secs(30),
        "the figures to follow the late readings",
        || differences(&api, &all, tz).is_empty(),
    );
    let state = influx.query("energy", "SELECT * FROM energy_rollup_state");
    assert!(
        state["results"][0]["series"].is_null(),
        "no rollup was written, so the figures came from the ledger: {state}"
    );
}

/// The rollup's writer dies; a replica that keeps no rollup goes on storing readings, late ones
/// among them, for days the rollup covers. Those are in no rollup sum, so once the rollup has
/// not moved for `ROLLUP_STALE_SECS` the api-server must answer from the raw readings (and say
/// so in its log), and its figures must follow the late readings.
#[test]
fn a_rollup_whose_writer_stopped_is_not_trusted_with_late_readings() {
    let tz: Tz = ZONE.parse().unwrap();
    let now = Utc::now().timestamp();
    let rng = &mut StdRng::seed_from_u64(now as u64 ^ 0x5eed);
    let mut all = history(rng, now);
    let influx = influx_holding(&all);

    // The writer rolls up the history it finds.
    let broker = Mosquitto::start();
    let mut writer = start_subscriber(
        &broker,
        &influx,
        "stale-writer",
        &[("MAX_POWER_KW", MAX_POWER_KW.to_string())],
    );
    let complete_until = || {
        influx.query(
            "energy",
            "SELECT last(complete_until) FROM energy_rollup_state",
        )["results"][0]["series"][0]["values"][0][1]
            .as_i64()
    };
    let started_ns = now * 1_000_000_000;
    wait_until(Duration::from_secs(60), "the rollup to be built", || {
        complete_until().is_some_and(|until| until > started_ns)
    });
    let mut api = start_api(&influx, &[("ROLLUP_STALE_SECS", "5")]);
    let wrong = differences(&api, &all, tz);
    assert!(
        wrong.is_empty(),
        "from the rollup:\n  {}",
        wrong.join("\n  ")
    );

    writer.kill();
    let _replica = replica_publishes_late(&broker, &influx, &mut all, now);
    wait_until(
        Duration::from_secs(30),
        "the figures to follow the late readings",
        || differences(&api, &all, tz).is_empty(),
    );
    assert!(
        api.program()
            .output()
            .contains("the usage rollup is not being kept"),
        "the api-server says why it left the rollup:\n{}",
        api.program().output()
    );
}

/// A private influxd whose database `energy` holds `all`, written straight into it.
fn influx_holding(all: &BTreeMap<&'static str, Vec<Reading>>) -> Influx {
    let influx = Influx::start();
    influx.create_database("energy");
    let lines: String = all
        .iter()
        .flat_map(|(panel, readings)| readings.iter().map(|&r| line(panel, r)))
        .collect();
    influx.write("energy", &lines);
    influx
}

/// The api-server over `influx`, in `ZONE`, without an answer cache, with `extra` settings.
fn start_api(influx: &Influx, extra: &[(&str, &str)]) -> ApiServer {
    let max_power = MAX_POWER_KW.to_string();
    let mut settings = vec![
        ("TIMEZONE", ZONE),
        ("QUERY_CACHE_MS", "0"),
        ("MAX_POWER_KW", max_power.as_str()),
        ("INFLUX_TIMEOUT_MS", "2000"),
    ];
    settings.extend_from_slice(extra);
    ApiServer::start(&influx.url(), "energy", &settings)
}

/// Starts a subscriber that keeps no rollup (`ROLLUP_WRITER=false`) but writes the
/// invalidation log with its readings, and publishes the late readings of [`publish_late`]
/// through it.
fn replica_publishes_late(
    broker: &Mosquitto,
    influx: &Influx,
    all: &mut BTreeMap<&'static str, Vec<Reading>>,
    now: i64,
) -> test_support::Program {
    let replica = start_subscriber(
        broker,
        influx,
        "no-rollup-replica",
        &[
            ("ROLLUP_WRITER", "false".to_owned()),
            ("MAX_POWER_KW", MAX_POWER_KW.to_string()),
        ],
    );
    publish_late(broker, all, now);
    replica
}

/// Publishes late readings into days an api-server has read (a pair in the middle of a day 10
/// days ago, a reading before `NR_C`'s first one, one in yesterday) and adds them to `all`.
fn publish_late(broker: &Mosquitto, all: &mut BTreeMap<&'static str, Vec<Reading>>, now: i64) {
    let mut late: Vec<(&str, Reading)> = Vec::new();
    for (panel, at) in [("NR_A", now - 10 * 86_400), ("NR_B", now - 86_400)] {
        let readings = &all[panel];
        let i = readings
            .iter()
            .position(|r| r.0 > at)
            .expect("a reading after it");
        let (a, b) = (readings[i - 1], readings[i]);
        if b.0 - a.0 >= 2 {
            // Halfway in time, at the top of the increase plus 1 kWh: the pair (a, new) counts
            // more, (new, b) goes down and counts nothing.
            late.push((panel, ((a.0 + b.0) / 2, a.1.max(b.1) + 64)));
        }
    }
    let first_c = all["NR_C"][0];
    late.push(("NR_C", (first_c.0 - 3600, first_c.1 - 64 * 5)));
    let payloads: Vec<(String, Vec<u8>)> = late
        .iter()
        .map(|(panel, (time, units))| {
            let at = Utc.timestamp_opt(*time, 0).unwrap();
            let body = serde_json::json!({
                "power_kw": 1.0,
                "energy_kwh": *units as f64 / 64.0,
                "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            (format!("DATA/PM/{panel}"), body.to_string().into_bytes())
        })
        .collect();
    publish_many(
        broker.port,
        payloads.iter().map(|(t, p)| (t.as_str(), p.as_slice())),
    )
    .expect("publish the late readings");
    for (panel, reading) in &late {
        let readings = all.get_mut(panel).unwrap();
        readings.push(*reading);
        readings.sort();
    }
}
