//! An InfluxDB that cuts answers short must not change a figure. influxd runs with
//! `max-row-limit = 500` (an operator's setting; InfluxDB Enterprise and hosted services cap
//! answers too), which truncates every non-chunked answer to 500 rows and only flags it
//! `"partial"`. 3 000 one-second readings of one panel go through Mosquitto and the real
//! mqtt-subscriber (which also rolls them up), and the real api-server's today's usage, monthly
//! usage and latest reading must equal what this test computes from the readings it published.
//! A second api-server reads the same readings written straight into a database without a
//! rollup, so its figures come from raw readings only.
//!
//! Every expected figure is computed here with `test_support::reference` (the usage rule written
//! out independently: each pair's increase spread over the time between its readings, a period
//! summing the UTC quarter hours in it), never with the code under test. Register steps are
//! multiples of 1/64 kWh, exact in binary floating point and in the API's integer nano-kWh.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use serde_json::Value;
use test_support::mqtt::publish_many;
use test_support::reference::{self, Rule, Shares};
use test_support::{start_subscriber, wait_until, ApiServer, Influx, Mosquitto};

const PANEL: &str = "ROW_LIMIT_PANEL";
const READINGS: usize = 3_000;
/// What the test's influxd cuts non-chunked answers to.
const ROW_LIMIT: usize = 500;
/// Register increases per one-second reading, in 1/64 kWh (0 to 168.75 kW: far below the
/// default `MAX_POWER_KW` of 5000, so no increase is a glitch), repeated.
const STEPS: [u32; 7] = [1, 3, 0, 2, 1, 0, 3];

#[derive(Clone, Copy, Debug)]
struct Reading {
    time: DateTime<Utc>,
    power_kw: f64,
    energy_kwh: f64,
}

/// A fixed-offset zone in which it is now between 12:00 and 13:00, so that the readings of the
/// last hour are all "today" and no local midnight passes during the test. The name is the IANA
/// one given to the api-server (`Etc/GMT-7` is UTC+7: POSIX signs are inverted).
fn zone_at_local_noon(now: DateTime<Utc>) -> (String, FixedOffset) {
    // -11..=12 hours, all of which exist as Etc/GMT±N.
    let hours = 12 - now.hour() as i32;
    let name = match hours {
        0 => "Etc/GMT".to_owned(),
        h if h > 0 => format!("Etc/GMT-{h}"),
        h => format!("Etc/GMT+{}", -h),
    };
    let offset = FixedOffset::east_opt(hours * 3600).expect("an offset within a day");
    (name, offset)
}

/// One reading a second, the last two minutes before `now`, register from 1000 kWh.
fn readings(now: DateTime<Utc>) -> Vec<Reading> {
    let last = now - chrono::Duration::seconds(120);
    let first = DateTime::from_timestamp(last.timestamp() - READINGS as i64 + 1, 0)
        .expect("a time in range");
    let mut units: u32 = 64_000;
    (0..READINGS)
        .map(|i| {
            let step = if i == 0 { 0 } else { STEPS[i % STEPS.len()] };
            units += step;
            Reading {
                time: first + chrono::Duration::seconds(i as i64),
                power_kw: f64::from(step) * 3600.0 / 64.0,
                energy_kwh: f64::from(units) / 64.0,
            }
        })
        .collect()
}

/// The UTC instant of local midnight starting `date` in the zone `offset`.
fn midnight(date: NaiveDate, offset: FixedOffset) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(offset).single())
        .expect("local midnight exists in a fixed-offset zone")
        .with_timezone(&Utc)
}

/// The usage of all of `readings` in the local day and in the local month of `now_local`, by the
/// reference rule (whole-hour offsets, so both periods are made of whole UTC quarter hours).
fn expected_usage(readings: &[Reading], now_local: DateTime<FixedOffset>) -> (Shares, Shares) {
    let offset = *now_local.offset();
    let points: Vec<(DateTime<Utc>, f64)> =
        readings.iter().map(|r| (r.time, r.energy_kwh)).collect();
    let today = now_local.date_naive();
    let day = reference::usage(
        &points,
        midnight(today, offset),
        midnight(today.succ_opt().expect("a next day"), offset),
        Rule::default(),
    );
    let month_start = today.with_day(1).expect("a first of the month");
    let next_month = month_start
        .checked_add_months(chrono::Months::new(1))
        .expect("a next month");
    let month = reference::usage(
        &points,
        midnight(month_start, offset),
        midnight(next_month, offset),
        Rule::default(),
    );
    (day, month)
}

fn payload(reading: &Reading) -> Vec<u8> {
    serde_json::json!({
        "power_kw": reading.power_kw,
        "energy_kwh": reading.energy_kwh,
        "timestamp": reading.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
    .into_bytes()
}

/// The readings as [`Influx::readings`] returns them.
fn as_stored(readings: &[Reading]) -> Vec<(String, i64, f64, f64)> {
    readings
        .iter()
        .map(|r| {
            (
                PANEL.to_owned(),
                r.time.timestamp_millis(),
                r.power_kw,
                r.energy_kwh,
            )
        })
        .collect()
}

/// The one entry of `body["panels"]`, which must be [`PANEL`]'s.
fn only_panel<'a>(body: &'a Value, what: &str) -> &'a Value {
    let panels = body["panels"].as_array().map(Vec::as_slice);
    let [panel] = panels.unwrap_or_default() else {
        panic!("{what}: expected exactly one panel: {body}");
    };
    assert_eq!(panel["panel"], PANEL, "{what}: {body}");
    panel
}

/// Compares one api-server's today's usage, this month's usage and latest reading with the
/// figures computed from `readings`; returns what differs.
fn check_api(
    api: &ApiServer,
    label: &str,
    readings: &[Reading],
    offset: FixedOffset,
) -> Vec<String> {
    let last = readings.last().expect("readings were published");
    let now_local = Utc::now().with_timezone(&offset);
    let (today_usage, month_usage) = expected_usage(readings, now_local);
    let (expected, expected_estimated) = (today_usage.usage_kwh(), today_usage.estimated_kwh());
    let mut wrong = Vec::new();
    let mut expect = |what: &str, got: Option<f64>, want: f64| {
        if got != Some(want) {
            wrong.push(format!("{label}: {what} is {got:?}, expected {want}"));
        }
    };

    let today = api.ok("/api/panel/today-usage");
    assert_eq!(
        today["date"],
        now_local.date_naive().to_string(),
        "{label}: the local day: {today}"
    );
    let panel = only_panel(&today, "today-usage");
    expect("today's usage_kwh", panel["usage_kwh"].as_f64(), expected);
    expect(
        "today's estimated_kwh",
        panel["estimated_kwh"].as_f64(),
        expected_estimated,
    );
    expect(
        "today's total",
        today["total"]["usage_kwh"].as_f64(),
        expected,
    );
    expect(
        "today's total estimated_kwh",
        today["total"]["estimated_kwh"].as_f64(),
        expected_estimated,
    );

    let year = now_local.year();
    let monthly = api.ok(&format!("/api/energy/monthly?year={year}"));
    let panel = only_panel(&monthly, "monthly");
    let this_month = now_local.month() as usize;
    let months = panel["months"].as_array().map(Vec::as_slice);
    let months = months.unwrap_or_default();
    assert_eq!(months.len(), 12, "{label}: twelve months: {monthly}");
    for (index, month) in months.iter().enumerate() {
        let want = if index + 1 == this_month {
            month_usage
        } else {
            Shares::default()
        };
        expect(
            &format!("month {}'s usage_kwh", index + 1),
            month["usage_kwh"].as_f64(),
            want.usage_kwh(),
        );
        expect(
            &format!("month {}'s estimated_kwh", index + 1),
            month["estimated_kwh"].as_f64(),
            want.estimated_kwh(),
        );
    }
    expect(
        "the year's total_kwh",
        panel["total_kwh"].as_f64(),
        month_usage.usage_kwh(),
    );
    expect(
        "the year's total_estimated_kwh",
        panel["total_estimated_kwh"].as_f64(),
        month_usage.estimated_kwh(),
    );

    let realtime = api.ok("/api/panel/realtime");
    let panel = only_panel(&realtime, "realtime");
    expect(
        "the latest energy_kwh",
        panel["energy_kwh"].as_f64(),
        last.energy_kwh,
    );
    let last_seen = panel["last_seen"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
    if last_seen != Some(last.time) {
        wrong.push(format!(
            "{label}: last_seen is {last_seen:?}, expected {}",
            last.time
        ));
    }
    wrong
}

/// [`check_api`] until it finds nothing wrong, for up to 15 s: the rollup writer may be a round
/// behind (a pair's share before its `complete_until` can be missing for a few seconds, and only
/// ever grows). Returns what was still wrong at the end.
fn check_api_settled(
    api: &ApiServer,
    label: &str,
    readings: &[Reading],
    offset: FixedOffset,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let wrong = check_api(api, label, readings, offset);
        if wrong.is_empty() || Instant::now() >= deadline {
            return wrong;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The instant the rollup in `db` records as complete, in nanoseconds.
fn rollup_complete_until(influx: &Influx, db: &str) -> Option<i64> {
    let answer = influx.query(db, "SELECT last(complete_until) FROM energy_rollup_state");
    answer["results"][0]["series"][0]["values"][0][1].as_i64()
}

#[test]
fn figures_are_whole_under_an_influxdb_row_limit() {
    let now = Utc::now();
    let (zone, offset) = zone_at_local_noon(now);
    let readings = readings(now);
    let local_midnight = now
        .with_timezone(&offset)
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(offset).single())
        .expect("local midnight exists in a fixed-offset zone");
    assert!(
        readings[0].time >= local_midnight,
        "the readings must all be today's in {zone}"
    );
    let (today_usage, month_usage) = expected_usage(&readings, now.with_timezone(&offset));
    // All 3 000 readings are today's, one second apart: every pair lies in today, none is
    // estimated, and the month holds exactly the day.
    assert_eq!(today_usage, month_usage, "the month is the day");
    assert_eq!(
        today_usage.estimated, 0,
        "one-second pairs are not estimated"
    );
    let expected = today_usage.usage_kwh();
    assert!(
        expected > (ROW_LIMIT as f64) * 3.0 / 64.0,
        "the usage ({expected} kWh) must exceed what any {ROW_LIMIT} readings can hold, so that a \
         cut answer shows"
    );

    let influx = Influx::start_with_http(&format!("max-row-limit = {ROW_LIMIT}\n"));
    let broker = Mosquitto::start_with("max_queued_messages 0\n");
    let mut subscriber = start_subscriber(&broker, &influx, "row-limit-sub", &[]);

    let topic = format!("DATA/PM/{PANEL}");
    let payloads: Vec<Vec<u8>> = readings.iter().map(payload).collect();
    publish_many(
        broker.port,
        payloads.iter().map(|p| (topic.as_str(), p.as_slice())),
    )
    .expect("publish the readings");
    wait_until(Duration::from_secs(120), "all readings stored", || {
        influx.count_points("energy") >= READINGS as u64
    });
    assert_eq!(
        influx.readings("energy"),
        as_stored(&readings),
        "the subscriber stored exactly the published readings"
    );

    // The limit is really in force: a plain, non-chunked query is cut to it and says so.
    let cut = influx.query("energy", "SELECT energy_kwh FROM energy_data");
    let series = &cut["results"][0]["series"][0];
    assert_eq!(
        series["values"].as_array().map(Vec::len),
        Some(ROW_LIMIT),
        "influxd cuts at {ROW_LIMIT} rows"
    );
    assert_eq!(series["partial"], true, "influxd flags the cut answer");

    // Let the subscriber's rollup cover every reading, so the API reads them from it (and the
    // rollup itself was computed from raw readings read under the limit).
    let stored_at = Utc::now()
        .timestamp_nanos_opt()
        .expect("now fits in i64 ns");
    wait_until(Duration::from_secs(60), "the rollup to catch up", || {
        rollup_complete_until(&influx, "energy").is_some_and(|until| until > stored_at)
    });

    let settings = [("TIMEZONE", zone.as_str()), ("QUERY_CACHE_MS", "0")];
    let mut wrong = Vec::new();
    {
        let api = ApiServer::start(&influx.url(), "energy", &settings);
        wrong.extend(check_api_settled(
            &api,
            "with the rollup",
            &readings,
            offset,
        ));
    }

    // The same readings written straight into a database nobody rolls up: the raw path.
    influx.create_database("plain");
    let lines: String = readings
        .iter()
        .map(|r| {
            format!(
                "energy_data,panel={PANEL} power_kw={:?},energy_kwh={:?} {}\n",
                r.power_kw,
                r.energy_kwh,
                r.time.timestamp_nanos_opt().expect("a time in range")
            )
        })
        .collect();
    influx.write("plain", &lines);
    assert_eq!(
        influx.readings("plain"),
        as_stored(&readings),
        "the directly written readings"
    );
    assert_eq!(
        rollup_complete_until(&influx, "plain"),
        None,
        "no rollup in the plain database"
    );
    {
        let api = ApiServer::start(&influx.url(), "plain", &settings);
        wrong.extend(check_api_settled(
            &api,
            "from raw readings",
            &readings,
            offset,
        ));
    }

    assert!(
        wrong.is_empty(),
        "figures differ from the {READINGS} published readings ({expected} kWh in {zone}):\n  {}",
        wrong.join("\n  ")
    );
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
}
