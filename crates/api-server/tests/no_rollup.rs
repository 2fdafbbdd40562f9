//! Without a rollup, every figure is still the rule of docs/accounting.md. A database holds 40
//! days of readings of three panels written straight into it (as another tool would), with gaps
//! of hours, a panel silent for days, meter resets and glitches, and no usage rollup; the real
//! api-server must answer today's usage, the summary and the monthly usage exactly as the rule
//! gives them for the readings. Then a real mqtt-subscriber that keeps no rollup
//! (`ROLLUP_WRITER=false`, a read-only deployment's ingest) stores late readings into days the
//! api-server has already read (one of them into the silent days), and the figures must follow
//! them.
//!
//! The rule: for each pair of consecutive readings of a panel, the increase counts if it is
//! positive and does not imply more than `MAX_POWER_KW` over the time between them, and it is
//! spread over that time, UTC quarter hour by quarter hour; a pair longer than
//! `ESTIMATE_AFTER_SECS` (900 s here) is estimated too. So a pair that straddles a midnight or
//! spans silent days is shared among all the days it covers. Every expected figure comes from
//! `test_support::reference`, which shares no code with the programs; the api-server answers
//! from its ledger, which holds the pairs whose readings both lie before its end and takes the
//! pair straddling its end from the recent readings.
//!
//! Registers move in steps of 1/64 kWh, so every register is exact in `f64` and every increase a
//! whole number of nano-kWh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::reference::{self, Rule, Shares};
use test_support::{start_subscriber, wait_until, ApiServer, Influx, Mosquitto};

const ZONE: &str = "Asia/Jakarta";
/// The glitch threshold given to the api-server.
const MAX_POWER_KW: i64 = 60;
const PANELS: [&str; 3] = ["NR_A", "NR_B", "NR_C"];
/// The panel that is silent for 2 to 4 days around the start of a local month.
const SILENT: &str = "NR_C";

/// A reading: time in whole seconds, register in 1/64 kWh.
type Reading = (i64, i64);

/// The rule the api-server is given: `MAX_POWER_KW`, and `ESTIMATE_AFTER_SECS`' default.
fn rule() -> Rule {
    Rule {
        max_power_kw: MAX_POWER_KW as f64,
        estimate_after_secs: 900,
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).unwrap()
}

/// The start of the local day `date` in `tz` (Jakarta has no daylight saving: always one).
fn midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    tz.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .expect("one local midnight")
        .with_timezone(&Utc)
}

/// The local month `month` of `year` in `tz`, as UTC instants `[start, end)`.
fn month_span(tz: Tz, year: i32, month: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1).unwrap()
    };
    (midnight(tz, first), midnight(tz, next))
}

/// The silence of [`SILENT`], in seconds `[from, until)`: 1 to 2 days either side of the
/// latest local month start at least 6 days ago (which is at most 37 days ago, months being at
/// most 31 days long), so the pair across it is shared by two months and 2 to 4 days.
fn silence(rng: &mut StdRng, now: i64, tz: Tz) -> (i64, i64) {
    let mut date = at(now - 6 * 86_400).with_timezone(&tz).date_naive();
    while date.day() != 1 {
        date = date.pred_opt().unwrap();
    }
    let month_start = midnight(tz, date).timestamp();
    (
        month_start - rng.gen_range(86_400..=2 * 86_400),
        month_start + rng.gen_range(86_400..=2 * 86_400),
    )
}

/// Whether the pair (a, b) counts under [`rule`]: a positive increase within `MAX_POWER_KW`.
fn counts(a: Reading, b: Reading) -> bool {
    let increase = b.1 - a.1;
    // increase/64 kWh over (b.0 - a.0)/3600 h is at most MAX_POWER_KW kW.
    increase > 0 && increase * 3600 <= MAX_POWER_KW * 64 * (b.0 - a.0)
}

/// 40 days of readings per panel, one every 1 to 30 minutes (in whole seconds), with a few gaps
/// of hours, resets to a low register and glitches (a jump of 10 MWh that comes back down);
/// [`SILENT`] has no reading during its [`silence`], whose pair counts.
fn history(rng: &mut StdRng, now: i64, tz: Tz) -> BTreeMap<&'static str, Vec<Reading>> {
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
    let mut all = BTreeMap::new();
    for panel in PANELS {
        let from = now - 40 * 86_400 + rng.gen_range(0..3600);
        let schedule = |from: i64, until: i64| {
            Schedule::new(at(from), at(until), Span::minutes(1)..=Span::minutes(30))
                .with_gaps(1.0 / 200.0, Span::hours(1)..=Span::hours(8))
                .in_whole(Span::seconds(1))
        };
        let schedules = if panel == SILENT {
            let (quiet_from, quiet_until) = silence(rng, now, tz);
            vec![schedule(from, quiet_from), schedule(quiet_until, now - 600)]
        } else {
            vec![schedule(from, now - 600)]
        };
        let mut readings: Vec<Reading> = meter
            .readings(rng, &schedules)
            .into_iter()
            // Exact: whole seconds, and registers in whole 1/64 kWh.
            .map(|r| (r.time.timestamp(), (r.energy_kwh * 64.0) as i64))
            .collect();
        if panel == SILENT {
            // The pair across the silence counts (else 3 kWh over at least 2 days, well within
            // MAX_POWER_KW, replace the register after it).
            let (i, _) = longest_pair(&readings);
            if !counts(readings[i - 1], readings[i]) {
                readings[i].1 = readings[i - 1].1 + 3 * 64;
            }
        }
        all.insert(panel, readings);
    }
    all
}

/// The index of the later reading of the longest pair of `readings`, and its length in seconds.
fn longest_pair(readings: &[Reading]) -> (usize, i64) {
    (1..readings.len())
        .map(|i| (i, readings[i].0 - readings[i - 1].0))
        .max_by_key(|&(_, length)| length)
        .expect("a pair")
}

/// `readings` as the reference takes them: (time, register in kWh).
fn points(readings: &[Reading]) -> Vec<(DateTime<Utc>, f64)> {
    readings
        .iter()
        .map(|&(t, units)| (at(t), units as f64 / 64.0))
        .collect()
}

/// The shares of `[start, end)` (on quarter hours) from the reference's quarter-hour shares.
fn sum(quarters: &BTreeMap<i128, Shares>, start: DateTime<Utc>, end: DateTime<Utc>) -> Shares {
    let nanos = |t: DateTime<Utc>| i128::from(t.timestamp_nanos_opt().unwrap());
    assert!(nanos(start) % 900_000_000_000 == 0 && nanos(end) % 900_000_000_000 == 0);
    let mut total = Shares::default();
    for (_, shares) in quarters.range(nanos(start)..nanos(end)) {
        total += *shares;
    }
    total
}

fn line(panel: &str, reading: Reading) -> String {
    format!(
        "energy_data,panel={panel} power_kw=1,energy_kwh={:?} {}000000000\n",
        reading.1 as f64 / 64.0,
        reading.0
    )
}

/// Compares today's usage, the summary and the monthly usage of this year and of the year 40 days
/// ago (usage and its estimated part) with what [`reference`] gives for `all`; returns what
/// differs.
fn differences(api: &ApiServer, all: &BTreeMap<&str, Vec<Reading>>, tz: Tz) -> Vec<String> {
    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let (day_start, day_end) = (midnight(tz, today), midnight(tz, today.succ_opt().unwrap()));
    let mut years = vec![
        (now - Span::days(41)).with_timezone(&tz).year(),
        today.year(),
    ];
    years.dedup();
    let mut wrong = Vec::new();
    let find = |body: &Value, panel: &str, fields: [&str; 2]| -> Option<(f64, f64)> {
        let entry = body["panels"]
            .as_array()?
            .iter()
            .find(|p| p["panel"] == panel)?;
        Some((entry[fields[0]].as_f64()?, entry[fields[1]].as_f64()?))
    };
    let figures = |shares: Shares| (shares.usage_kwh(), shares.estimated_kwh());

    let today_usage = api.ok("/api/panel/today-usage");
    let summary = api.ok("/api/panel/summary");
    let monthly: Vec<(i32, Value)> = years
        .iter()
        .map(|&year| (year, api.ok(&format!("/api/energy/monthly?year={year}"))))
        .collect();
    for panel in PANELS {
        let quarters = reference::quarter_shares(&points(&all[panel]), rule());
        let want = Some(figures(sum(&quarters, day_start, day_end)));
        // Every panel is in today-usage; the summary lists those with a reading today.
        let read_today = all[panel]
            .iter()
            .any(|&(t, _)| at(t) >= day_start && at(t) < day_end);
        let fields = ["usage_kwh", "estimated_kwh"];
        let got = find(&today_usage, panel, fields);
        if got != want {
            wrong.push(format!("today-usage {panel}: {got:?}, expected {want:?}"));
        }
        let got = find(&summary, panel, ["today_usage_kwh", "today_estimated_kwh"]);
        let want = want.filter(|_| read_today);
        if got != want {
            wrong.push(format!("summary {panel}: {got:?}, expected {want:?}"));
        }
        for (year, body) in &monthly {
            let entry = body["panels"]
                .as_array()
                .and_then(|panels| panels.iter().find(|p| p["panel"] == panel));
            let months = entry
                .and_then(|p| p["months"].as_array().cloned())
                .unwrap_or_default();
            let mut whole_year = Shares::default();
            for month in 1..=12u32 {
                let (start, end) = month_span(tz, *year, month);
                let shares = sum(&quarters, start, end);
                whole_year += shares;
                let want = Some(figures(shares));
                let got = months
                    .get(month as usize - 1)
                    .and_then(|m| Some((m["usage_kwh"].as_f64()?, m["estimated_kwh"].as_f64()?)));
                if got != want {
                    wrong.push(format!(
                        "monthly {panel} {year}-{month:02}: {got:?}, expected {want:?}"
                    ));
                }
            }
            let want = Some(figures(whole_year));
            let got = entry.and_then(find_total);
            if got != want {
                wrong.push(format!(
                    "monthly {panel} {year} total: {got:?}, expected {want:?}"
                ));
            }
        }
    }
    wrong
}

/// A panel's year total in the monthly answer: (`total_kwh`, `total_estimated_kwh`).
fn find_total(panel: &Value) -> Option<(f64, f64)> {
    Some((
        panel["total_kwh"].as_f64()?,
        panel["total_estimated_kwh"].as_f64()?,
    ))
}

#[test]
fn without_a_rollup_figures_are_the_raw_maths_and_follow_late_readings() {
    let tz: Tz = ZONE.parse().unwrap();
    let now = Utc::now().timestamp();
    let rng = &mut StdRng::seed_from_u64(now as u64);
    let mut all = history(rng, now, tz);
    assert_history_holds_its_cases(&all, tz);

    let influx = influx_holding(&all);

    let api = start_api(&influx, &[]);
    assert_figures(&api, &all, tz, Duration::from_secs(5), "from raw readings");

    // Late readings through the real subscriber, which keeps no rollup but writes the
    // invalidation log with them, into days the api-server has read.
    let broker = Mosquitto::start();
    let _replica = replica_publishes_late(&broker, &influx, &mut all, now);
    assert_figures(
        &api,
        &all,
        tz,
        Duration::from_secs(30),
        "the figures follow the late readings",
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
    let mut all = history(rng, now, tz);
    assert_history_holds_its_cases(&all, tz);
    let influx = influx_holding(&all);

    // The writer rolls up the history it finds.
    let broker = Mosquitto::start();
    let mut writer = start_subscriber(
        &broker,
        &influx,
        "stale-writer",
        &[("MAX_POWER_KW", MAX_POWER_KW.to_string())],
    );
    let complete_until = || influx.rollup_complete_until("energy");
    let started_ns = now * 1_000_000_000;
    wait_until(Duration::from_secs(60), "the rollup to be built", || {
        complete_until().is_some_and(|until| until > started_ns)
    });
    let mut api = start_api(&influx, &[("ROLLUP_STALE_SECS", "5")]);
    // Polled: the share of the newest pair may reach the rollup a round late.
    assert_figures(&api, &all, tz, Duration::from_secs(10), "from the rollup");

    writer.kill();
    let _replica = replica_publishes_late(&broker, &influx, &mut all, now);
    assert_figures(
        &api,
        &all,
        tz,
        Duration::from_secs(30),
        "the figures follow the late readings",
    );
    assert!(
        api.program()
            .output()
            .contains("the usage rollup is not being kept"),
        "the api-server says why it left the rollup:\n{}",
        api.program().output()
    );
}

/// Polls [`differences`] until there are none; panics with them, saying `what`, after
/// `timeout`.
fn assert_figures(
    api: &ApiServer,
    all: &BTreeMap<&str, Vec<Reading>>,
    tz: Tz,
    timeout: Duration,
    what: &str,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let wrong = differences(api, all, tz);
        if wrong.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what}:\n  {}", wrong.join("\n  "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The history holds what the tests are about: glitches, and [`SILENT`]'s silence of at least
/// two days, whose pair counts and gives each whole day of the silence (at least two, in two
/// months) a share, all of it estimated.
fn assert_history_holds_its_cases(all: &BTreeMap<&str, Vec<Reading>>, tz: Tz) {
    let glitches = all
        .values()
        .flat_map(|r| r.windows(2))
        .filter(|w| w[1].1 - w[0].1 > 64 * 5_000)
        .count();
    assert!(glitches > 0, "the history holds glitches");

    let readings = &all[SILENT];
    let (i, length) = longest_pair(readings);
    let (a, b) = (readings[i - 1], readings[i]);
    assert!(
        length >= 2 * 86_400,
        "{SILENT} is silent for 2 days: {a:?} {b:?}"
    );
    assert!(
        counts(a, b),
        "the pair across the silence counts: {a:?} {b:?}"
    );
    let quarters = reference::quarter_shares(&points(readings), rule());
    let mut day = at(a.0).with_timezone(&tz).date_naive().succ_opt().unwrap();
    let mut months = std::collections::BTreeSet::new();
    while midnight(tz, day.succ_opt().unwrap()) <= at(b.0) {
        let shares = sum(
            &quarters,
            midnight(tz, day),
            midnight(tz, day.succ_opt().unwrap()),
        );
        assert!(
            shares.usage > 0 && shares.estimated == shares.usage,
            "{day}, a whole day of {SILENT}'s silence, has a share of its pair, all estimated: \
             {shares:?}"
        );
        months.insert((day.year(), day.month()));
        day = day.succ_opt().unwrap();
    }
    assert!(
        months.len() >= 2,
        "the silence spans two months: {months:?}"
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
/// days ago, one in the middle of [`SILENT`]'s silence, a reading before `NR_C`'s first one,
/// one in yesterday) and adds them to `all`.
fn publish_late(broker: &Mosquitto, all: &mut BTreeMap<&'static str, Vec<Reading>>, now: i64) {
    let mut late: Vec<(&str, Reading)> = Vec::new();
    let silent = &all[SILENT];
    let (i, _) = longest_pair(silent);
    let silence_middle = (silent[i - 1].0 + silent[i].0) / 2;
    for (panel, at) in [
        ("NR_A", now - 10 * 86_400),
        ("NR_B", now - 86_400),
        // The days-long pair becomes two pairs of a day or more each: the shares of every
        // silent day change, not only those of the day the reading lands in.
        (SILENT, silence_middle),
    ] {
        let readings = &all[panel];
        let i = readings
            .iter()
            .position(|r| r.0 > at)
            .expect("a reading after it");
        let (a, b) = (readings[i - 1], readings[i]);
        if b.0 - a.0 >= 2 {
            // Halfway in time, at the top of the increase plus 1 kWh: the pair (a, new) counts
            // more (unless that is more than MAX_POWER_KW), (new, b) goes down and counts
            // nothing.
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
