//! Interval data and demand against a real InfluxDB 1.6: `/api/panel/{panel}/intervals` (each
//! quarter hour or hour of a local day), `/api/energy/daily` (each day of a local month) and the
//! `max_demand_kw` of `/api/energy/monthly`, as JSON and as CSV.
//!
//! The rule (docs/accounting.md): the increase of each pair of consecutive readings is spread
//! evenly over the time between them, in whole nano-kWh on the UTC quarter hours (the
//! largest-remainder rule); the share of a pair longer than 900 s is also estimated. A quarter
//! hour's demand is its usage × 4 (kW); a day's or month's `max_demand_kw` is its largest one.
//!
//! Expected figures are worked out by hand in the comments where they can be, and otherwise
//! (and once more where they can) by `test_support::reference`, the rule written out again
//! without the programs' code. Costs are the exact usage × the default tariff (1500 IDR per
//! kWh), rounded once to 2 decimals.
//!
//! The daily and monthly figures come from the subscriber's usage rollup when there is one, and
//! from the api-server's own sums of the raw readings (the ledger) when there is not: the tests
//! that check them run an api-server of each kind over the same readings.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{
    DateTime, Datelike, Duration as Span, DurationRound, NaiveDate, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use test_support::history::{Meter, Schedule};
use test_support::mqtt::publish_many;
use test_support::reference::{self, kwh_3, Rule, Shares};
use test_support::{
    http_request, start_subscriber, wait_until, ApiServer, Influx, Mosquitto, Program,
};

/// A panel's readings as the reference takes them: (time, energy register).
type Points = Vec<(DateTime<Utc>, f64)>;

/// The default `TARIFF_PER_KWH` (IDR).
const TARIFF_IDR: i128 = 1500;

/// A UTC quarter hour in nanoseconds.
const QUARTER_NANOS: i128 = 900_000_000_000;

fn line(panel: &str, power_kw: f64, energy_kwh: f64, time: DateTime<Utc>) -> String {
    format!(
        "energy_data,panel={panel} power_kw={power_kw},energy_kwh={energy_kwh} {}\n",
        time.timestamp_nanos_opt().unwrap()
    )
}

/// The line protocol of `histories`, every reading with a power of 1 kW (no figure here uses
/// it).
fn lines_of<'a>(histories: impl IntoIterator<Item = (&'a str, &'a Points)>) -> String {
    let mut lines = String::new();
    for (panel, points) in histories {
        for &(time, energy) in points {
            lines += &line(panel, 1.0, energy, time);
        }
    }
    lines
}

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("one local time")
        .with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// The local day `date` in `tz` as UTC instants `[start, end)` (the zones here have a local
/// midnight every day).
fn day_span(tz: Tz, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .single()
            .expect("one local midnight")
            .with_timezone(&Utc)
    };
    (midnight(date), midnight(date.succ_opt().unwrap()))
}

/// The local month `month` of `year` in `tz` as UTC instants `[start, end)`.
fn month_span(tz: Tz, year: i32, month: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1).unwrap()
    };
    (day_span(tz, first).0, day_span(tz, next).0)
}

fn days_of_month(year: i32, month: u32) -> Vec<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, 1)
        .unwrap()
        .iter_days()
        .take_while(|d| d.month() == month)
        .collect()
}

fn nanos(time: DateTime<Utc>) -> i128 {
    i128::from(time.timestamp_nanos_opt().unwrap())
}

/// The cost of `nano` nano-kWh at 1500 IDR per kWh, rounded once to 2 decimals, half away from
/// zero: `nano × 1500 / 10⁹` IDR is `nano × 150 000 / 10⁹` cents.
fn cost_idr(nano: i128) -> f64 {
    let scaled = nano * TARIFF_IDR * 100;
    let cents = if scaled >= 0 {
        (scaled + 500_000_000) / 1_000_000_000
    } else {
        (scaled - 500_000_000) / 1_000_000_000
    };
    cents as f64 / 100.0
}

/// A figure of a day, month or year as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Figure {
    usage_kwh: f64,
    estimated_kwh: f64,
    cost: f64,
    max_demand_kw: f64,
}

impl Figure {
    const ZERO: Figure = Figure {
        usage_kwh: 0.0,
        estimated_kwh: 0.0,
        cost: 0.0,
        max_demand_kw: 0.0,
    };

    /// A hand-worked figure: the cost is `usage × 1500`, the demand given.
    fn by_hand(usage_kwh: f64, estimated_kwh: f64, max_demand_kw: f64) -> Figure {
        Figure {
            usage_kwh,
            estimated_kwh,
            cost: usage_kwh * 1500.0,
            max_demand_kw,
        }
    }

    /// A day or a month of a daily or monthly answer.
    fn of(entry: &Value) -> Figure {
        let number = |name: &str| {
            entry[name]
                .as_f64()
                .unwrap_or_else(|| panic!("no number {name} in {entry}"))
        };
        Figure {
            usage_kwh: number("usage_kwh"),
            estimated_kwh: number("estimated_kwh"),
            cost: number("cost"),
            max_demand_kw: number("max_demand_kw"),
        }
    }

    /// A panel's year of a monthly answer.
    fn of_year(panel: &Value) -> Figure {
        let number = |name: &str| {
            panel[name]
                .as_f64()
                .unwrap_or_else(|| panic!("no number {name} in {panel}"))
        };
        Figure {
            usage_kwh: number("total_kwh"),
            estimated_kwh: number("total_estimated_kwh"),
            cost: number("total_cost"),
            max_demand_kw: number("max_demand_kw"),
        }
    }
}

/// One interval as the API shows it: (usage_kwh, estimated_kwh, avg_kw).
type Slot = (f64, f64, f64);

/// The reference's shares of one panel's history, by UTC quarter hour.
struct Expected {
    quarters: BTreeMap<i128, Shares>,
}

impl Expected {
    fn new(points: &[(DateTime<Utc>, f64)]) -> Expected {
        Expected {
            quarters: reference::quarter_shares(points, Rule::default()),
        }
    }

    /// The exact shares in `[start, end)` (both on quarter hours).
    fn shares(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Shares {
        let (start, end) = (nanos(start), nanos(end));
        assert!(start % QUARTER_NANOS == 0 && end % QUARTER_NANOS == 0);
        let mut total = Shares::default();
        for (_, shares) in self.quarters.range(start..end) {
            total += *shares;
        }
        total
    }

    /// The largest quarter-hour usage in `[start, end)`, nano-kWh.
    fn peak(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i128 {
        self.quarters
            .range(nanos(start)..nanos(end))
            .map(|(_, shares)| shares.usage)
            .max()
            .unwrap_or(0)
            .max(0)
    }

    /// The figure of `[start, end)`: its rounded usage and estimated part, the cost of the
    /// exact usage, and four times its largest quarter hour.
    fn figure(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Figure {
        let shares = self.shares(start, end);
        Figure {
            usage_kwh: kwh_3(shares.usage),
            estimated_kwh: kwh_3(shares.estimated),
            cost: cost_idr(shares.usage),
            max_demand_kw: kwh_3(self.peak(start, end) * 4),
        }
    }

    /// The interval `[start, end)` as the API shows it: the average power is the exact energy
    /// over the interval's hours, rounded once.
    fn slot(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Slot {
        let shares = self.shares(start, end);
        let quarters = (nanos(end) - nanos(start)) / QUARTER_NANOS;
        assert!(
            [1, 2, 4].contains(&quarters),
            "quarter hours, half hours or hours only"
        );
        (
            kwh_3(shares.usage),
            kwh_3(shares.estimated),
            kwh_3(shares.usage * 4 / quarters),
        )
    }
}

/// `/api/energy/daily?month=…` as panel -> the month's (date, figure), after checking the
/// answer's frame.
fn daily(api: &ApiServer, month: &str, timezone: &str) -> BTreeMap<String, Vec<(String, Figure)>> {
    let body = api.ok(&format!("/api/energy/daily?month={month}"));
    assert_eq!(body["month"], month, "{body}");
    assert_eq!(body["timezone"], timezone, "{body}");
    assert_eq!(body["tariff_per_kwh"], 1500.0, "{body}");
    assert_eq!(body["currency"], "IDR", "{body}");
    let panels = body["panels"].as_array().unwrap();
    let ids: Vec<&str> = panels
        .iter()
        .map(|p| p["panel"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "panels sorted by id");
    panels
        .iter()
        .map(|p| {
            let days = p["days"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (d["date"].as_str().unwrap().to_owned(), Figure::of(d)))
                .collect();
            (p["panel"].as_str().unwrap().to_owned(), days)
        })
        .collect()
}

/// `/api/energy/monthly?year=…` as panel -> (its twelve months, its year).
fn monthly(api: &ApiServer, year: i32) -> BTreeMap<String, (Vec<Figure>, Figure)> {
    let body = api.ok(&format!("/api/energy/monthly?year={year}"));
    body["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let months: Vec<Figure> = p["months"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    assert_eq!(m["month"], i + 1, "{p}");
                    Figure::of(m)
                })
                .collect();
            assert_eq!(months.len(), 12, "{p}");
            (
                p["panel"].as_str().unwrap().to_owned(),
                (months, Figure::of_year(p)),
            )
        })
        .collect()
}

/// `/api/panel/{panel}/intervals?date=…&step=…`: its intervals as (start, slot), and its
/// (total_kwh, total_estimated_kwh), after checking the answer's frame.
fn intervals(
    api: &ApiServer,
    panel: &str,
    date: &str,
    step: &str,
    timezone: &str,
) -> (Vec<(String, Slot)>, (f64, f64)) {
    let body = api.ok(&format!(
        "/api/panel/{panel}/intervals?date={date}&step={step}"
    ));
    assert_eq!(body["panel"], panel, "{body}");
    assert_eq!(body["date"], date, "{body}");
    assert_eq!(body["timezone"], timezone, "{body}");
    assert_eq!(body["step"], step, "{body}");
    let slots = body["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let number = |name: &str| {
                i[name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no number {name} in {i}"))
            };
            (
                i["start"].as_str().unwrap().to_owned(),
                (
                    number("usage_kwh"),
                    number("estimated_kwh"),
                    number("avg_kw"),
                ),
            )
        })
        .collect();
    let totals = (
        body["total_kwh"].as_f64().unwrap(),
        body["total_estimated_kwh"].as_f64().unwrap(),
    );
    (slots, totals)
}

/// The starts of the intervals of `step` of the local day `[start, end)`, in RFC 3339 with the
/// zone's offset at each.
fn starts(tz: Tz, (start, end): (DateTime<Utc>, DateTime<Utc>), step: Span) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        out.push(
            at.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        );
        at += step;
    }
    out
}

/// `count` slots, zero but for `runs` of (index range, usage, estimated), whose average power
/// is `usage × per_hour` (4 for quarter hours, 1 for hours).
fn slots(count: usize, per_hour: f64, runs: &[(std::ops::Range<usize>, f64, f64)]) -> Vec<Slot> {
    let mut out = vec![(0.0, 0.0, 0.0); count];
    for (range, usage, estimated) in runs {
        for slot in &mut out[range.clone()] {
            *slot = (*usage, *estimated, usage * per_hour);
        }
    }
    out
}

/// The latest `complete_until` of the usage rollup in `energy`, nanoseconds.
fn rollup_complete_until(influx: &Influx) -> Option<i64> {
    influx.query(
        "energy",
        "SELECT last(complete_until) FROM energy_rollup_state",
    )["results"][0]["series"][0]["values"][0][1]
        .as_i64()
}

/// A subscriber keeping the usage rollup of database `energy` (on a broker of its own), once it
/// has rolled up every reading stored before it started.
fn keep_rollup(influx: &Influx) -> (Mosquitto, Program) {
    let broker = Mosquitto::start();
    let started = Utc::now().timestamp_nanos_opt().unwrap();
    let writer = start_subscriber(&broker, influx, "intervals-rollup-writer", &[]);
    wait_until(Duration::from_secs(120), "the rollup to be built", || {
        rollup_complete_until(influx).is_some_and(|until| until > started)
    });
    (broker, writer)
}

/// Fails if `api` said it answers from raw readings because of the rollup.
fn assert_answered_from_the_rollup(api: &mut ApiServer) {
    let said = api.program().output();
    assert!(
        !said.contains("reading raw points instead") && !said.contains("is not being kept"),
        "the api-server did not use the rollup:\n{said}"
    );
}

/// The issue's worked examples (docs/accounting.md), in Asia/Jakarta (UTC+7, every local
/// quarter hour a UTC one), in 2026, and one of a quarter hour that takes shares of three
/// pairs. Each day's and each quarter hour's figures are worked out by hand below.
fn worked_examples() -> Vec<(&'static str, Points)> {
    let tz = chrono_tz::Asia::Jakarta;
    let at = |mo: u32, d: u32, h: u32, mi: u32| local(tz, 2026, mo, d, h, mi);
    vec![
        // 30 April 23:50 -> 1000.0, 1 May 00:10 -> 1002.0: +2 over 20 minutes (1200 s > 900 s:
        // estimated). [23:45, 24:00) overlaps 10 minutes: 2 × 10/20 = 1.0 kWh to 30 April;
        // [00:00, 00:15) 10 minutes: 1.0 to 1 May. Each quarter hour's demand 1.0 × 4 = 4 kW.
        (
            "MIDNIGHT",
            vec![(at(4, 30, 23, 50), 1000.0), (at(5, 1, 0, 10), 1002.0)],
        ),
        // 1 March 22:00 -> 1000, 3 March 06:00 -> 1320: +320 over 32 hours (10 kW), estimated.
        // 128 whole quarter hours of 320/128 = 2.5 kWh (10 kW) each: 1 March 8 of them = 20,
        // 2 March 96 = 240, 3 March 24 = 60.
        (
            "OUTAGE",
            vec![(at(3, 1, 22, 0), 1000.0), (at(3, 3, 6, 0), 1320.0)],
        ),
        // 31 May 23:59 -> 500.0, 1 June 00:00 -> 500.5: the pair lies in [23:59, 24:00), so its
        // 0.5 is all 31 May's, in the quarter hour [23:45, 24:00) (2 kW); 60 s: not estimated.
        // 1 June gets nothing.
        (
            "LAST_MINUTE",
            vec![(at(5, 31, 23, 59), 500.0), (at(6, 1, 0, 0), 500.5)],
        ),
        // 10 March, around 07:00 (UTC midnight): 06:55 -> 50, 07:05 -> 52 (+2 over 10 minutes,
        // 12 kW), 07:10 -> 53 (+1 in 5 minutes, 12 kW), 07:15 -> 53.5, 08:15 -> 54.5 (+1 over an
        // hour: estimated). [06:45, 07:00) gets 2 × 5/10 = 1.0; [07:00, 07:15) gets the other
        // 1.0 of the first pair, 1.0 and 0.5: 2.5 kWh, a demand of 10 kW (the quarter hour's
        // energy, not the pairs' rates of 12, 12 and 6 kW), and, from UTC midnight on, shares
        // of pairs on both sides of it. [07:15, 08:15): four quarter hours of 0.25 (1 kW),
        // estimated. The day: 1.0 + 2.5 + 1.0 = 4.5 kWh, 1.0 of it estimated, max demand 10 kW.
        (
            "BURST",
            vec![
                (at(3, 10, 6, 55), 50.0),
                (at(3, 10, 7, 5), 52.0),
                (at(3, 10, 7, 10), 53.0),
                (at(3, 10, 7, 15), 53.5),
                (at(3, 10, 8, 15), 54.5),
            ],
        ),
    ]
}

/// The days of the worked examples with usage, by hand: (panel, date, usage, estimated,
/// max demand); every other day of every panel is zero.
const WORKED_DAYS: [(&str, &str, f64, f64, f64); 9] = [
    ("BURST", "2026-03-10", 4.5, 1.0, 10.0),
    ("LAST_MINUTE", "2026-05-31", 0.5, 0.0, 2.0),
    ("MIDNIGHT", "2026-04-30", 1.0, 1.0, 4.0),
    ("MIDNIGHT", "2026-05-01", 1.0, 1.0, 4.0),
    ("OUTAGE", "2026-03-01", 20.0, 20.0, 10.0),
    ("OUTAGE", "2026-03-02", 240.0, 240.0, 10.0),
    ("OUTAGE", "2026-03-03", 60.0, 60.0, 10.0),
    // The days after a pair's last reading, with no share of it.
    ("LAST_MINUTE", "2026-06-01", 0.0, 0.0, 0.0),
    ("OUTAGE", "2026-03-04", 0.0, 0.0, 0.0),
];

/// The worked examples' daily and monthly figures from `api`, against the hand figures.
fn assert_worked_days_and_months(api: &ApiServer, what: &str) {
    for month in 3..=6 {
        assert_worked_month(api, month, what);
    }
    assert_worked_year(api, what);
}

/// The worked examples' days of 2026-`month` from `api`, against the hand figures.
fn assert_worked_month(api: &ApiServer, month: u32, what: &str) {
    let panels = ["BURST", "LAST_MINUTE", "MIDNIGHT", "OUTAGE"];
    let answer = daily(api, &format!("2026-{month:02}"), "Asia/Jakarta");
    assert_eq!(answer.keys().collect::<Vec<_>>(), panels, "{what}");
    for (panel, days) in &answer {
        let dates: Vec<String> = days.iter().map(|d| d.0.clone()).collect();
        let all: Vec<String> = days_of_month(2026, month)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            dates, all,
            "{what}: {panel} has every day of 2026-{month:02}"
        );
        for (date, figure) in days {
            let expected = WORKED_DAYS
                .iter()
                .find(|w| w.0 == panel && w.1 == date)
                .map_or(Figure::ZERO, |w| Figure::by_hand(w.2, w.3, w.4));
            assert_eq!(*figure, expected, "{what}: daily {panel} {date}");
        }
    }
}

/// The worked examples' months and year of 2026 from `api`, against the hand figures.
fn assert_worked_year(api: &ApiServer, what: &str) {
    // The months and the year: sums of the days, the largest quarter hour of each. Costs:
    // 320 × 1500 = 480 000, 4.5 × 1500 = 6750, 1.0 × 1500 = 1500, 0.5 × 1500 = 750.
    let year = monthly(api, 2026);
    let twelve = |figures: &[(usize, Figure)]| {
        let mut months = vec![Figure::ZERO; 12];
        for &(month, figure) in figures {
            months[month - 1] = figure;
        }
        months
    };
    let expected: BTreeMap<&str, (Vec<Figure>, Figure)> = [
        (
            "BURST",
            (
                twelve(&[(3, Figure::by_hand(4.5, 1.0, 10.0))]),
                Figure::by_hand(4.5, 1.0, 10.0),
            ),
        ),
        (
            "LAST_MINUTE",
            (
                twelve(&[(5, Figure::by_hand(0.5, 0.0, 2.0))]),
                Figure::by_hand(0.5, 0.0, 2.0),
            ),
        ),
        (
            "MIDNIGHT",
            (
                twelve(&[
                    (4, Figure::by_hand(1.0, 1.0, 4.0)),
                    (5, Figure::by_hand(1.0, 1.0, 4.0)),
                ]),
                Figure::by_hand(2.0, 2.0, 4.0),
            ),
        ),
        (
            "OUTAGE",
            (
                twelve(&[(3, Figure::by_hand(320.0, 320.0, 10.0))]),
                Figure::by_hand(320.0, 320.0, 10.0),
            ),
        ),
    ]
    .into_iter()
    .collect();
    for (panel, want) in &expected {
        assert_eq!(year.get(*panel), Some(want), "{what}: monthly {panel}");
    }
    assert_eq!(year.len(), expected.len(), "{what}: {year:?}");
}

#[test]
fn the_issues_worked_examples_by_day_quarter_hour_and_month_from_the_rollup_and_the_ledger() {
    let tz = chrono_tz::Asia::Jakarta;
    let histories = worked_examples();
    // The reference agrees with every hand-worked day (and the days around them).
    for (panel, points) in &histories {
        let expected = Expected::new(points);
        for month in 3..=6 {
            for day in days_of_month(2026, month) {
                let (start, end) = day_span(tz, day);
                let want = WORKED_DAYS
                    .iter()
                    .find(|w| w.0 == *panel && w.1 == day.to_string())
                    .map_or(Figure::ZERO, |w| Figure::by_hand(w.2, w.3, w.4));
                assert_eq!(
                    expected.figure(start, end),
                    want,
                    "{panel} {day}: the reference agrees with the hand figure"
                );
            }
        }
    }

    // The same readings in two databases: `energy`, whose rollup a subscriber keeps, and
    // `plain`, which has none (its api-server keeps the ledger).
    let influx = Influx::start();
    let lines = lines_of(histories.iter().map(|(p, points)| (*p, points)));
    for db in ["energy", "plain"] {
        influx.create_database(db);
        influx.write(db, &lines);
    }
    let (_broker, _writer) = keep_rollup(&influx);
    let settings = [("QUERY_CACHE_MS", "0")];
    let mut from_rollup = ApiServer::start(&influx.url(), "energy", &settings);
    let from_ledger = ApiServer::start(&influx.url(), "plain", &settings);
    assert_worked_days_and_months(&from_rollup, "from the rollup");
    assert_worked_days_and_months(&from_ledger, "from the ledger");
    assert_answered_from_the_rollup(&mut from_rollup);
    // A ledger starts at the first period it is asked about, and grows backwards from there:
    // each month asked first of a fresh server, so that the pairs across its start (30 April
    // to 1 May, 31 May to 1 June at midnight) are closed by the readings before the ledger.
    for month in 3..=6 {
        let fresh = ApiServer::start(&influx.url(), "plain", &settings);
        let what = format!("a ledger begun with 2026-{month:02}");
        assert_worked_month(&fresh, month, &what);
        assert_worked_days_and_months(&fresh, &what);
    }

    // The quarter hours and hours of each day, by hand (avg_kw = usage × 4 for a quarter
    // hour, the usage itself for an hour). Intervals are read from raw readings by both
    // servers.
    type Case = (&'static str, &'static str, Vec<Slot>, Vec<Slot>);
    let cases: Vec<Case> = vec![
        // 22:00 is quarter hour 88 and hour 22: 8 quarter hours, 2 hours of 2.5 and 10 kWh.
        (
            "OUTAGE",
            "2026-03-01",
            slots(96, 4.0, &[(88..96, 2.5, 2.5)]),
            slots(24, 1.0, &[(22..24, 10.0, 10.0)]),
        ),
        // The whole day: 96 quarter hours of 2.5 kWh (10 kW), 24 hours of 10 kWh.
        (
            "OUTAGE",
            "2026-03-02",
            slots(96, 4.0, &[(0..96, 2.5, 2.5)]),
            slots(24, 1.0, &[(0..24, 10.0, 10.0)]),
        ),
        // Until 06:00: 24 quarter hours, 6 hours.
        (
            "OUTAGE",
            "2026-03-03",
            slots(96, 4.0, &[(0..24, 2.5, 2.5)]),
            slots(24, 1.0, &[(0..6, 10.0, 10.0)]),
        ),
        (
            "MIDNIGHT",
            "2026-04-30",
            slots(96, 4.0, &[(95..96, 1.0, 1.0)]),
            slots(24, 1.0, &[(23..24, 1.0, 1.0)]),
        ),
        (
            "MIDNIGHT",
            "2026-05-01",
            slots(96, 4.0, &[(0..1, 1.0, 1.0)]),
            slots(24, 1.0, &[(0..1, 1.0, 1.0)]),
        ),
        (
            "LAST_MINUTE",
            "2026-05-31",
            slots(96, 4.0, &[(95..96, 0.5, 0.0)]),
            slots(24, 1.0, &[(23..24, 0.5, 0.0)]),
        ),
        (
            "LAST_MINUTE",
            "2026-06-01",
            slots(96, 4.0, &[]),
            slots(24, 1.0, &[]),
        ),
        // 06:45 is quarter hour 27: 1.0; 07:00 (28): 2.5; 07:15 to 08:15 (29..33): 0.25,
        // estimated. Hour 6: 1.0; hour 7: 2.5 + 3 × 0.25 = 3.25 (0.75 estimated); hour 8: 0.25.
        (
            "BURST",
            "2026-03-10",
            slots(
                96,
                4.0,
                &[(27..28, 1.0, 0.0), (28..29, 2.5, 0.0), (29..33, 0.25, 0.25)],
            ),
            slots(
                24,
                1.0,
                &[(6..7, 1.0, 0.0), (7..8, 3.25, 0.75), (8..9, 0.25, 0.25)],
            ),
        ),
    ];
    for (panel, day, quarters, hours) in &cases {
        let span = day_span(tz, date(day));
        let (_, points) = histories.iter().find(|h| h.0 == *panel).unwrap();
        let expected = Expected::new(points);
        let total: (f64, f64) = {
            let shares = expected.shares(span.0, span.1);
            (kwh_3(shares.usage), kwh_3(shares.estimated))
        };
        for (step, want, length) in [
            ("15m", quarters, Span::minutes(15)),
            ("1h", hours, Span::hours(1)),
        ] {
            // The reference agrees with the hand figures.
            let by_reference: Vec<Slot> = (0..want.len() as i32)
                .map(|i| {
                    let start = span.0 + length * i;
                    expected.slot(start, start + length)
                })
                .collect();
            assert_eq!(&by_reference, want, "{panel} {day} {step}: the reference");
            for (api, what) in [(&from_ledger, "ledger"), (&from_rollup, "rollup")] {
                let (got, totals) = intervals(api, panel, day, step, "Asia/Jakarta");
                let got_starts: Vec<&String> = got.iter().map(|g| &g.0).collect();
                let want_starts = starts(tz, span, length);
                assert_eq!(
                    got_starts,
                    want_starts.iter().collect::<Vec<_>>(),
                    "{what}: {panel} {day} {step}"
                );
                let got_slots: Vec<Slot> = got.iter().map(|g| g.1).collect();
                assert_eq!(&got_slots, want, "{what}: {panel} {day} {step}");
                assert_eq!(totals, total, "{what}: {panel} {day} {step} totals");
            }
        }
    }
    // Jakarta's days start at +07:00 midnight.
    let (got, _) = intervals(&from_ledger, "OUTAGE", "2026-03-02", "15m", "Asia/Jakarta");
    assert_eq!(got[0].0, "2026-03-02T00:00:00+07:00");
    assert_eq!(got[95].0, "2026-03-02T23:45:00+07:00");
    assert_answered_from_the_rollup(&mut from_rollup);
}

#[test]
fn days_of_23_25_and_24_5_hours_have_92_100_and_98_quarter_hours_from_local_midnight_in_any_offset()
{
    let berlin = chrono_tz::Europe::Berlin;
    let kathmandu = chrono_tz::Asia::Kathmandu;
    let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let quarter = Span::minutes(15);

    // SPRING: every UTC quarter hour from 28 March 22:00 UTC (23:00 CET) to 29 March 23:00 UTC
    // (01:00 CEST on the 30th) the register is 1 kWh higher (4 kW), but for the readings from
    // 00:15 to 01:15 UTC, which are missing: 29 March is 23:00 UTC to 22:00 UTC, 23 hours, 92
    // quarter hours of 1.0 kWh = 92 kWh. The pair 00:00 -> 01:30 UTC (01:00 CET -> 03:30 CEST,
    // the clock jumps from 02:00 to 03:00) is 90 minutes (+6), so the six quarter hours from
    // 01:00 CET to 03:15 CEST (indices 4 to 9) are estimated: 6.0 kWh. 28 and 30 March get one
    // hour each: 4.0.
    let spring: Points = (0..=100)
        .map(|k| {
            (
                utc("2026-03-28T22:00:00Z") + quarter * k,
                100.0 + f64::from(k),
            )
        })
        .filter(|&(t, _)| !(utc("2026-03-29T00:15:00Z")..=utc("2026-03-29T01:15:00Z")).contains(&t))
        .collect();
    // AUTUMN: every UTC quarter hour from 24 October 21:00 UTC (23:00 CEST) to 26 October 00:00
    // UTC (01:00 CET on the 26th): +1 kWh each, but +2 in the second 02:00-03:00 (CET, 01:00 to
    // 02:00 UTC). 25 October is 22:00 UTC to 23:00 UTC, 25 hours, 100 quarter hours: 100 + 4 =
    // 104 kWh, none estimated. The first 02:00 hour (CEST, index 8 to 11) has 1.0 per quarter
    // hour, the second (CET, 12 to 15) 2.0 (8 kW, the day's max demand).
    let mut register = 500.0;
    let autumn: Points = (0..=108)
        .map(|k| {
            let time = utc("2026-10-24T21:00:00Z") + quarter * k;
            if k > 0 {
                let second_two_oclock =
                    (utc("2026-10-25T01:15:00Z")..=utc("2026-10-25T02:00:00Z")).contains(&time);
                register += if second_two_oclock { 2.0 } else { 1.0 };
            }
            (time, register)
        })
        .collect();
    // KATHMANDU (+05:45, so local midnight is 18:15 UTC): 1 March 23:50 -> 1000 and 2 March
    // 00:10 -> 1002 (18:05 and 18:25 UTC): 1.0 kWh to each day (estimated, 20 minutes). Then
    // 00:10 -> 00:17:30 (+0.7 kWh over 450 s): [00:00, 00:15) local overlaps 300 s: 0.7 ×
    // 300/450 = 0.4666…, [00:15, 00:30) 150 s: 0.2333…; in nano-kWh 466 666 666.67 and
    // 233 333 333.33, floors 466 666 666 and 233 333 333, and the one left over to the larger
    // remainder (0.67): 466 666 667. The first quarter hour of 2 March: 1.0 + 0.466666667 =
    // 1.467 (1.0 estimated, 5.867 kW), the second 0.233 (0.933 kW); the day 1.7, 1.0
    // estimated; its max demand 1.466666667 × 4 = 5.866666668 -> 5.867 kW.
    let ktm: Points = vec![
        (utc("2026-03-01T18:05:00Z"), 1000.0),
        (utc("2026-03-01T18:25:00Z"), 1002.0),
        (utc("2026-03-01T18:32:30Z"), 1002.7),
    ];
    // LORD_HOWE: 5 April 2026 has 24.5 hours on Lord Howe Island (02:00 +11:00 is followed by
    // 01:30 +10:30), 13:00 UTC to 13:30 UTC the next day: 98 quarter hours, 24 whole hours and
    // a last half hour. Every UTC quarter hour from 12:00 UTC on the 4th to 14:30 UTC on the 5th
    // the register is 1 kWh higher, but 3 kWh in the last half hour of the day (13:00 to 13:30
    // UTC): 96 + 6 = 102 kWh; the last "hour" has 6.0 kWh in 0.5 h, 12 kW on average and the
    // day's max demand (3.0 × 4 = 12 kW).
    let mut register = 20.0;
    let lord_howe: Points = (0..=106)
        .map(|k| {
            let time = utc("2026-04-04T12:00:00Z") + quarter * k;
            if k > 0 {
                let last_half_hour =
                    (utc("2026-04-05T13:15:00Z")..=utc("2026-04-05T13:30:00Z")).contains(&time);
                register += if last_half_hour { 3.0 } else { 1.0 };
            }
            (time, register)
        })
        .collect();
    assert_eq!(lord_howe.last().unwrap().0, utc("2026-04-05T14:30:00Z"));
    let influx = Influx::start();
    let lines = lines_of([
        ("AUTUMN", &autumn),
        ("KTM", &ktm),
        ("LORD_HOWE", &lord_howe),
        ("SPRING", &spring),
    ]);
    for db in ["energy", "plain"] {
        influx.create_database(db);
        influx.write(db, &lines);
    }
    let (_broker, _writer) = keep_rollup(&influx);
    let zone = |tz: &'static str| [("TIMEZONE", tz), ("QUERY_CACHE_MS", "0")];
    let in_berlin = ApiServer::start(&influx.url(), "plain", &zone("Europe/Berlin"));
    let mut in_berlin_from_rollup =
        ApiServer::start(&influx.url(), "energy", &zone("Europe/Berlin"));
    let in_kathmandu = ApiServer::start(&influx.url(), "plain", &zone("Asia/Kathmandu"));
    let in_lord_howe = ApiServer::start(&influx.url(), "plain", &zone("Australia/Lord_Howe"));

    // 29 March: 92 quarter hours, from midnight CET; 01:45 CET is followed by 03:00 CEST.
    let (got, totals) = intervals(&in_berlin, "SPRING", "2026-03-29", "15m", "Europe/Berlin");
    assert_eq!(got.len(), 92);
    assert_eq!(got[0].0, "2026-03-29T00:00:00+01:00");
    assert_eq!(got[7].0, "2026-03-29T01:45:00+01:00");
    assert_eq!(got[8].0, "2026-03-29T03:00:00+02:00");
    assert_eq!(got[91].0, "2026-03-29T23:45:00+02:00");
    let want = slots(
        92,
        4.0,
        &[(0..4, 1.0, 0.0), (4..10, 1.0, 1.0), (10..92, 1.0, 0.0)],
    );
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), want);
    assert_eq!(totals, (92.0, 6.0));
    let span = day_span(berlin, date("2026-03-29"));
    assert_eq!(
        got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        starts(berlin, span, quarter)
    );
    // 23 hours of 4.0; the gap's six quarter hours are all of hour 1 (01:00 CET, 00:00 UTC)
    // and the first two of hour 2 (03:00 CEST, 01:00 UTC): 4.0 and 2.0 estimated.
    let (hours, _) = intervals(&in_berlin, "SPRING", "2026-03-29", "1h", "Europe/Berlin");
    assert_eq!(hours.len(), 23);
    assert_eq!(hours[1].0, "2026-03-29T01:00:00+01:00");
    assert_eq!(hours[2].0, "2026-03-29T03:00:00+02:00");
    let want = slots(
        23,
        1.0,
        &[
            (0..1, 4.0, 0.0),
            (1..2, 4.0, 4.0),
            (2..3, 4.0, 2.0),
            (3..23, 4.0, 0.0),
        ],
    );
    assert_eq!(hours.iter().map(|g| g.1).collect::<Vec<_>>(), want);

    // 25 October: 100 quarter hours, from midnight CEST; 02:45 CEST is followed by 02:00 CET.
    let (got, totals) = intervals(&in_berlin, "AUTUMN", "2026-10-25", "15m", "Europe/Berlin");
    assert_eq!(got.len(), 100);
    assert_eq!(got[0].0, "2026-10-25T00:00:00+02:00");
    assert_eq!(got[11].0, "2026-10-25T02:45:00+02:00");
    assert_eq!(got[12].0, "2026-10-25T02:00:00+01:00");
    assert_eq!(got[99].0, "2026-10-25T23:45:00+01:00");
    let want = slots(
        100,
        4.0,
        &[(0..12, 1.0, 0.0), (12..16, 2.0, 0.0), (16..100, 1.0, 0.0)],
    );
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), want);
    assert_eq!(totals, (104.0, 0.0));
    let span = day_span(berlin, date("2026-10-25"));
    assert_eq!(
        got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        starts(berlin, span, quarter)
    );
    // 25 hours, the 02:00 hour twice: 4.0 kWh in the first, 8.0 in the second.
    let (hours, _) = intervals(&in_berlin, "AUTUMN", "2026-10-25", "1h", "Europe/Berlin");
    assert_eq!(hours.len(), 25);
    assert_eq!(hours[2].0, "2026-10-25T02:00:00+02:00");
    assert_eq!(hours[3].0, "2026-10-25T02:00:00+01:00");
    let want = slots(
        25,
        1.0,
        &[(0..3, 4.0, 0.0), (3..4, 8.0, 0.0), (4..25, 4.0, 0.0)],
    );
    assert_eq!(hours.iter().map(|g| g.1).collect::<Vec<_>>(), want);

    // The days and months in Berlin: 28 March 4.0, 29 March 92.0 (6.0 estimated), 30 March
    // 4.0, each at 4 kW; 24 October 4.0, 25 October 104.0 at 8 kW, 26 October 4.0.
    for (panel, month, figures) in [
        (
            "SPRING",
            "2026-03",
            [
                ("2026-03-28", Figure::by_hand(4.0, 0.0, 4.0)),
                ("2026-03-29", Figure::by_hand(92.0, 6.0, 4.0)),
                ("2026-03-30", Figure::by_hand(4.0, 0.0, 4.0)),
            ],
        ),
        (
            "AUTUMN",
            "2026-10",
            [
                ("2026-10-24", Figure::by_hand(4.0, 0.0, 4.0)),
                ("2026-10-25", Figure::by_hand(104.0, 0.0, 8.0)),
                ("2026-10-26", Figure::by_hand(4.0, 0.0, 4.0)),
            ],
        ),
    ] {
        for (api, what) in [(&in_berlin, "ledger"), (&in_berlin_from_rollup, "rollup")] {
            let answer = daily(api, month, "Europe/Berlin");
            for (day, figure) in &answer[panel] {
                let want = figures
                    .iter()
                    .find(|f| f.0 == day)
                    .map_or(Figure::ZERO, |f| f.1);
                assert_eq!(*figure, want, "{what}: {panel} {day}");
            }
        }
    }
    for (api, what) in [(&in_berlin, "ledger"), (&in_berlin_from_rollup, "rollup")] {
        let year = monthly(api, 2026);
        assert_eq!(
            year["SPRING"].0[2],
            Figure::by_hand(100.0, 6.0, 4.0),
            "{what}"
        );
        assert_eq!(
            year["AUTUMN"].0[9],
            Figure::by_hand(112.0, 0.0, 8.0),
            "{what}"
        );
        assert_eq!(year["AUTUMN"].1, Figure::by_hand(112.0, 0.0, 8.0), "{what}");
    }
    assert_answered_from_the_rollup(&mut in_berlin_from_rollup);

    // Lord Howe's day of 24.5 hours.
    let lord_howe_tz = chrono_tz::Australia::Lord_Howe;
    let span = day_span(lord_howe_tz, date("2026-04-05"));
    assert_eq!(
        span,
        (utc("2026-04-04T13:00:00Z"), utc("2026-04-05T13:30:00Z"))
    );
    let (got, totals) = intervals(
        &in_lord_howe,
        "LORD_HOWE",
        "2026-04-05",
        "15m",
        "Australia/Lord_Howe",
    );
    assert_eq!(got.len(), 98);
    assert_eq!(got[0].0, "2026-04-05T00:00:00+11:00");
    assert_eq!(got[7].0, "2026-04-05T01:45:00+11:00");
    assert_eq!(got[8].0, "2026-04-05T01:30:00+10:30");
    assert_eq!(got[97].0, "2026-04-05T23:45:00+10:30");
    let want = slots(98, 4.0, &[(0..96, 1.0, 0.0), (96..98, 3.0, 0.0)]);
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), want);
    assert_eq!(totals, (102.0, 0.0));
    // Hours from midnight: the third starts at 01:30 +10:30 (15:00 UTC), the last at 23:30.
    let (hours, _) = intervals(
        &in_lord_howe,
        "LORD_HOWE",
        "2026-04-05",
        "1h",
        "Australia/Lord_Howe",
    );
    assert_eq!(hours.len(), 25);
    assert_eq!(hours[2].0, "2026-04-05T01:30:00+10:30");
    assert_eq!(
        hours[24],
        ("2026-04-05T23:30:00+10:30".into(), (6.0, 0.0, 12.0))
    );
    assert!(
        hours[..24].iter().all(|h| h.1 == (4.0, 0.0, 4.0)),
        "{hours:?}"
    );
    let expected = Expected::new(&lord_howe);
    assert_eq!(
        expected.figure(span.0, span.1),
        Figure::by_hand(102.0, 0.0, 12.0)
    );
    assert_eq!(
        expected.slot(utc("2026-04-05T13:00:00Z"), span.1),
        (6.0, 0.0, 12.0),
        "the reference agrees"
    );
    let answer = daily(&in_lord_howe, "2026-04", "Australia/Lord_Howe");
    let days = &answer["LORD_HOWE"];
    // 4 April: 12:00 to 13:00 UTC; 6 April: 13:30 to 14:30 UTC.
    assert_eq!(days[3].1, Figure::by_hand(4.0, 0.0, 4.0));
    assert_eq!(days[4].1, Figure::by_hand(102.0, 0.0, 12.0));
    assert_eq!(days[5].1, Figure::by_hand(4.0, 0.0, 4.0));

    // Kathmandu: the day starts at 00:00+05:45 (18:15 UTC the day before).
    let expected = Expected::new(&ktm);
    let span = day_span(kathmandu, date("2026-03-02"));
    assert_eq!(span.0, utc("2026-03-01T18:15:00Z"));
    let (got, totals) = intervals(&in_kathmandu, "KTM", "2026-03-02", "15m", "Asia/Kathmandu");
    assert_eq!(got.len(), 96);
    assert_eq!(got[0].0, "2026-03-02T00:00:00+05:45");
    assert_eq!(got[1].0, "2026-03-02T00:15:00+05:45");
    assert_eq!(
        got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        starts(kathmandu, span, quarter)
    );
    let by_reference: Vec<Slot> = (0..96)
        .map(|i| {
            let start = span.0 + quarter * i;
            expected.slot(start, start + quarter)
        })
        .collect();
    let by_hand = slots(96, 4.0, &[]);
    let by_hand: Vec<Slot> = [(1.467, 1.0, 5.867), (0.233, 0.0, 0.933)]
        .into_iter()
        .chain(by_hand.into_iter().skip(2))
        .collect();
    assert_eq!(
        by_reference, by_hand,
        "the reference agrees with the hand figures"
    );
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), by_hand);
    assert_eq!(totals, (1.7, 1.0));
    let (hours, _) = intervals(&in_kathmandu, "KTM", "2026-03-02", "1h", "Asia/Kathmandu");
    assert_eq!(hours.len(), 24);
    assert_eq!(
        hours[0],
        ("2026-03-02T00:00:00+05:45".into(), (1.7, 1.0, 1.7))
    );
    let answer = daily(&in_kathmandu, "2026-03", "Asia/Kathmandu");
    let days = &answer["KTM"];
    assert_eq!(
        days[0],
        ("2026-03-01".into(), Figure::by_hand(1.0, 1.0, 4.0))
    );
    // 1.7 × 1500 = 2550; the demand of the exact 1.466666667 kWh.
    assert_eq!(
        days[1],
        (
            "2026-03-02".into(),
            Figure {
                usage_kwh: 1.7,
                estimated_kwh: 1.0,
                cost: 2550.0,
                max_demand_kw: 5.867
            }
        )
    );
    assert_eq!(days[1].1, expected.figure(span.0, span.1));
    assert!(days[2..].iter().all(|d| d.1 == Figure::ZERO), "{days:?}");
}

/// Random meter histories of three panels around August 2026, with gaps of hours, a silence of
/// two weeks, meter resets, zero glitches and spikes, and of a fourth from six days ago until a
/// minute ago; registers in steps of 1/1024 kWh (exact in `f64`, so every increase is a whole
/// number of nano-kWh).
fn random_histories(seed: u64, now: DateTime<Utc>) -> BTreeMap<&'static str, Points> {
    let rng = &mut StdRng::seed_from_u64(seed);
    let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let minutes = Span::minutes;
    let second = Span::seconds(1);
    let misbehaving = Meter {
        register: 0.0..=4000.0,
        increase: 0.0..=2.0,
        unit: Some(1.0 / 1024.0),
        reset: 0.005,
        zero: 0.005,
        spike: 0.005,
        spike_kwh: 1e6,
        ..Meter::default()
    };
    let (from, until) = (utc("2026-07-30T00:00:00Z"), utc("2026-09-02T00:00:00Z"));
    let mut histories = BTreeMap::new();
    // R_A: every 1 to 15 minutes, now and then a gap of 1 to 6 hours.
    let schedule = Schedule::new(from, until, minutes(1)..=minutes(15))
        .with_gaps(0.004, Span::hours(1)..=Span::hours(6))
        .in_whole(second);
    histories.insert("R_A", misbehaving.readings(rng, &[schedule]));
    // R_B: every 10 minutes to 2 hours (most pairs estimated), larger steps.
    let meter = Meter {
        increase: 0.0..=8.0,
        ..misbehaving.clone()
    };
    let schedule = Schedule::new(from, until, minutes(10)..=minutes(120)).in_whole(second);
    histories.insert("R_B", meter.readings(rng, &[schedule]));
    // R_C: silent from 4 to 19 August, whose pair spreads over every day between.
    let meter = Meter {
        increase: 0.0..=64.0,
        ..misbehaving.clone()
    };
    let schedules = [
        Schedule::new(from, utc("2026-08-04T09:00:00Z"), minutes(5)..=minutes(60)).in_whole(second),
        Schedule::new(utc("2026-08-19T07:31:17Z"), until, minutes(5)..=minutes(60))
            .in_whole(second),
    ];
    histories.insert("R_C", meter.readings(rng, &schedules));
    // R_NOW: up to a minute ago, so today's figures end in the part after the rollup's end.
    let start = now.duration_trunc(Span::seconds(1)).unwrap() - Span::days(6);
    let schedule = Schedule::new(start, now - minutes(1), Span::seconds(30)..=minutes(10))
        .with_gaps(0.01, Span::minutes(20)..=Span::hours(3))
        .in_whole(second);
    histories.insert("R_NOW", misbehaving.readings(rng, &[schedule]));
    histories
        .into_iter()
        .map(|(panel, readings)| {
            let points = readings
                .into_iter()
                .map(|r| (r.time, r.energy_kwh))
                .collect();
            (panel, points)
        })
        .collect()
}

/// What [`differences_from_reference`] asks for, in this order.
struct Questions {
    /// Monthly before daily.
    monthly_first: bool,
    /// The months of `/api/energy/daily`, in the order asked.
    months: Vec<(i32, u32)>,
    /// The years of `/api/energy/monthly`.
    years: Vec<i32>,
    /// The days whose intervals are asked for (quarter hours and hours), of every panel.
    days: Vec<NaiveDate>,
}

/// The answers of `api` in `tz` to `questions` against the reference's figures for the panels
/// of `expected`: every day and month with its usage, estimated part, cost and max demand, and
/// every interval with its usage, estimated part and average power. Returns the differences.
/// Days and intervals are those that have started (today's, so far).
fn differences_from_reference(
    api: &ApiServer,
    tz: Tz,
    expected: &BTreeMap<&str, Expected>,
    questions: &Questions,
) -> Vec<String> {
    let zone = tz.name();
    let mut wrong = Vec::new();
    let mut expect = |what: String, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        let (got, want) = (format!("{got:?}"), format!("{want:?}"));
        if got != want {
            wrong.push(format!("{what}: got {got}, expected {want}"));
        }
    };
    // The days that had started by `before` must be there, and those that started by `after`
    // may be.
    let count_range = |starts: &[DateTime<Utc>], before: DateTime<Utc>, after: DateTime<Utc>| {
        let started = |by: DateTime<Utc>| starts.iter().filter(|s| **s <= by).count();
        started(before)..=started(after)
    };
    let ask_monthly =
        |expect: &mut dyn FnMut(String, &dyn std::fmt::Debug, &dyn std::fmt::Debug)| {
            for &year in &questions.years {
                let answer = monthly(api, year);
                for (panel, reference) in expected {
                    let months: Vec<Figure> = (1..=12)
                        .map(|m| {
                            let (start, end) = month_span(tz, year, m);
                            reference.figure(start, end)
                        })
                        .collect();
                    let (start, end) = (month_span(tz, year, 1).0, month_span(tz, year, 12).1);
                    let want = (months, reference.figure(start, end));
                    expect(
                        format!("monthly {year} {panel}"),
                        &answer.get(*panel),
                        &Some(&want),
                    );
                }
            }
        };
    if questions.monthly_first {
        ask_monthly(&mut expect);
    }
    let mut days_asked: BTreeMap<NaiveDate, BTreeMap<String, Figure>> = BTreeMap::new();
    for &(year, month) in &questions.months {
        let before = Utc::now();
        let answer = daily(api, &format!("{year:04}-{month:02}"), zone);
        let after = Utc::now();
        expect(
            format!("daily {year}-{month:02} panels"),
            &answer.keys().collect::<Vec<_>>(),
            &expected.keys().collect::<Vec<_>>(),
        );
        let days = days_of_month(year, month);
        let day_starts: Vec<DateTime<Utc>> = days.iter().map(|d| day_span(tz, *d).0).collect();
        for (panel, reference) in expected {
            let got = answer.get(*panel).cloned().unwrap_or_default();
            for ((got, day), _) in got.iter().zip(&days).zip(&day_starts) {
                let (start, end) = day_span(tz, *day);
                let want = (day.to_string(), reference.figure(start, end));
                expect(format!("daily {panel} {day}"), got, &want);
                days_asked
                    .entry(*day)
                    .or_default()
                    .insert(panel.to_string(), got.1);
            }
            let range = count_range(&day_starts, before, after);
            expect(
                format!("daily {panel} {year}-{month:02}: days within {range:?}"),
                &range.contains(&got.len()),
                &true,
            );
        }
    }
    if !questions.monthly_first {
        ask_monthly(&mut expect);
    }
    for (panel, reference) in expected {
        for day in &questions.days {
            let span = day_span(tz, *day);
            let shares = reference.shares(span.0, span.1);
            for (step, length) in [("15m", Span::minutes(15)), ("1h", Span::hours(1))] {
                let before = Utc::now();
                let (got, totals) = intervals(api, panel, &day.to_string(), step, zone);
                let after = Utc::now();
                let interval_starts: Vec<DateTime<Utc>> = (0..)
                    .map(|i| span.0 + length * i)
                    .take_while(|start| *start < span.1)
                    .collect();
                let want: Vec<(String, Slot)> = starts(tz, span, length)
                    .into_iter()
                    .zip(&interval_starts)
                    .map(|(text, start)| (text, reference.slot(*start, *start + length)))
                    .collect();
                for (got, want) in got.iter().zip(&want) {
                    expect(
                        format!("intervals {panel} {day} {step} {}", want.0),
                        got,
                        want,
                    );
                }
                let range = count_range(&interval_starts, before, after);
                expect(
                    format!("intervals {panel} {day} {step}: count within {range:?}"),
                    &range.contains(&got.len()),
                    &true,
                );
                // The intervals add up to the day: their exact sum is the day's usage, shown
                // as the total and as the day of the daily answer; their rounded figures are
                // within half a milli-kWh each of it.
                expect(
                    format!("intervals {panel} {day} {step} totals"),
                    &totals,
                    &(kwh_3(shares.usage), kwh_3(shares.estimated)),
                );
                if let Some(figure) = days_asked.get(day).and_then(|d| d.get(*panel)) {
                    expect(
                        format!("intervals {panel} {day} {step}: total = daily"),
                        &totals,
                        &(figure.usage_kwh, figure.estimated_kwh),
                    );
                }
                let rounded_sum: f64 = got.iter().map(|g| g.1 .0).sum();
                let slack = 0.0005 * got.len() as f64 + 1e-9;
                expect(
                    format!(
                        "intervals {panel} {day} {step}: the rounded intervals' sum {rounded_sum} \
                         within {slack} of the day's {}",
                        totals.0
                    ),
                    &((rounded_sum - totals.0).abs() <= slack),
                    &true,
                );
            }
        }
    }
    wrong
}

#[test]
fn random_histories_give_the_reference_figures_for_every_interval_day_and_month_with_and_without_the_rollup(
) {
    let now = Utc::now();
    let histories = random_histories(0x1a7e_2026, now);
    let expected: BTreeMap<&str, Expected> = histories
        .iter()
        .map(|(panel, points)| (*panel, Expected::new(points)))
        .collect();
    // The histories hold what the test is about.
    let august = month_span(chrono_tz::UTC, 2026, 8);
    for (panel, reference) in &expected {
        let (start, end) = if *panel == "R_NOW" {
            (now - Span::days(7), now + Span::days(1))
        } else {
            august
        };
        let start = start.duration_trunc(Span::minutes(15)).unwrap();
        let end = end.duration_trunc(Span::minutes(15)).unwrap();
        let shares = reference.shares(start, end);
        assert!(
            shares.usage > 0 && shares.estimated > 0 && shares.estimated < shares.usage,
            "{panel}: usage, part of it estimated: {shares:?}"
        );
    }
    let glitches = histories
        .values()
        .flat_map(|points| points.windows(2))
        .filter(|w| w[1].1 - w[0].1 > 5000.0 * (w[1].0 - w[0].0).num_seconds() as f64 / 3600.0)
        .count();
    let drops = histories
        .values()
        .flat_map(|points| points.windows(2))
        .filter(|w| w[1].1 < w[0].1)
        .count();
    assert!(
        glitches > 5 && drops > 5,
        "{glitches} glitches, {drops} drops"
    );

    let influx = Influx::start();
    let lines = lines_of(histories.iter().map(|(p, points)| (*p, points)));
    for db in ["energy", "plain"] {
        influx.create_database(db);
        influx.write(db, &lines);
    }
    let (_broker, _writer) = keep_rollup(&influx);
    // Kathmandu's days and months are not UTC's (their ends are a quarter hour off the hour);
    // UTC's days are the rollup's own days, whose stored largest quarter hour (`peak_nkwh`)
    // they use.
    let mut servers = Vec::new();
    for zone in ["Asia/Kathmandu", "UTC"] {
        let tz: Tz = zone.parse().unwrap();
        for (db, source) in [("energy", "rollup"), ("plain", "ledger")] {
            let settings = [("TIMEZONE", zone), ("QUERY_CACHE_MS", "0")];
            let api = ApiServer::start(&influx.url(), db, &settings);
            servers.push((tz, source, api));
        }
    }
    for (tz, source, api) in &servers {
        let today = Utc::now().with_timezone(tz).date_naive();
        let this_month = (today.year(), today.month());
        let mut months = vec![(2026, 7), (2026, 8), (2026, 9)];
        if !months.contains(&this_month) {
            months.push(this_month);
        }
        let mut days = days_of_month(2026, 8);
        days.extend([today.pred_opt().unwrap(), today]);
        // The ledgers are asked in two orders: from the oldest month on, and from this month
        // back (so each request grows the ledger backwards over the pairs at its start).
        let kathmandu = tz.name() == "Asia/Kathmandu";
        if kathmandu {
            months.reverse();
        }
        let questions = Questions {
            monthly_first: !kathmandu,
            months,
            years: if today.year() == 2026 {
                vec![2026]
            } else {
                vec![2026, today.year()]
            },
            // Intervals are read from the raw readings whatever the source: once per zone.
            days: if *source == "ledger" {
                days
            } else {
                Vec::new()
            },
        };
        let wrong = differences_from_reference(api, *tz, &expected, &questions);
        assert!(
            wrong.is_empty(),
            "{} from the {source}: {} differences from the reference:\n  {}",
            tz.name(),
            wrong.len(),
            wrong
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    for (_, source, api) in &mut servers {
        if *source == "rollup" {
            assert_answered_from_the_rollup(api);
        }
    }

    // The figures of the servers over `energy` really come from the rollup's sums: raise the
    // stored largest quarter hour of R_A's UTC month of August by 1000 kWh. Both servers'
    // August (read from that month sum, with the hours before or after it as buckets) shows its
    // demand; 10 August (the daily answer reads each local day's quarter hours) and the
    // ledgers' figures do not move.
    let month = Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap();
    let month_end = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    let ns = month.timestamp_nanos_opt().unwrap();
    let stored = influx.query(
        "energy",
        &format!(
            "SELECT usage_nkwh, estimated_nkwh, peak_nkwh, readings FROM energy_usage_1mo \
             WHERE panel = 'R_A' AND time = {ns}"
        ),
    );
    let row = &stored["results"][0]["series"][0]["values"][0];
    let field = |i: usize| {
        row[i]
            .as_i64()
            .unwrap_or_else(|| panic!("R_A's rollup month August: {stored}"))
    };
    let (usage, estimated, peak, readings) = (field(1), field(2), field(3), field(4));
    assert_eq!(
        i128::from(peak),
        expected["R_A"].peak(month, month_end),
        "the rollup's month holds its largest quarter hour"
    );
    let raised = peak + 1_000_000_000_000;
    influx.write(
        "energy",
        &format!(
            "energy_usage_1mo,panel=R_A usage_nkwh={usage}i,estimated_nkwh={estimated}i,\
             peak_nkwh={raised}i,readings={readings}i {ns}\n"
        ),
    );
    let raised_kw = kwh_3(i128::from(raised) * 4);
    let reference = &expected["R_A"];
    for (tz, source, api) in &servers {
        let tenth = daily(api, "2026-08", tz.name())["R_A"][9].1.max_demand_kw;
        let august = monthly(api, 2026)["R_A"].0[7].max_demand_kw;
        let (day_start, day_end) = day_span(*tz, date("2026-08-10"));
        let (month_start, month_end) = month_span(*tz, 2026, 8);
        let mut want = (
            reference.figure(day_start, day_end).max_demand_kw,
            reference.figure(month_start, month_end).max_demand_kw,
        );
        if *source == "rollup" {
            want.1 = raised_kw;
        }
        assert_eq!(
            (tenth, august),
            want,
            "{} from the {source}: R_A's max demand of 10 August and of August after the \
             rollup's month was raised",
            tz.name()
        );
    }
}

/// GET `path` from `api`: status, headers and body text.
fn get_text(api: &ApiServer, path: &str) -> (u16, test_support::Headers, String) {
    let (status, _, text, headers) = http_request("GET", &api.url(path), &[], None);
    (status, headers, text)
}

/// The records of an RFC 4180 document whose every line ends in CRLF: fields split at commas,
/// a quoted field unquoted (a doubled quote in it stands for one). Panics on a line ending in a
/// bare LF or CR, a quote inside an unquoted field, anything between a closing quote and the
/// next separator, and a last line without its CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    // Inside a quoted field; just after one's closing quote.
    let (mut quoted, mut closed) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => (quoted, closed) = (false, true),
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !closed => quoted = true,
            ',' => {
                record.push(std::mem::take(&mut field));
                closed = false;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "a CR without LF in {text:?}");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                closed = false;
            }
            '\n' => panic!("a line ends in a bare LF in {text:?}"),
            _ if closed => panic!("{c:?} after a closing quote in {text:?}"),
            '"' => panic!("a quote inside an unquoted field in {text:?}"),
            _ => field.push(c),
        }
    }
    assert!(!quoted, "an unterminated quote in {text:?}");
    assert!(
        field.is_empty() && record.is_empty(),
        "the last line does not end in CRLF: {text:?}"
    );
    records
}

/// `path` with `format=csv` from `api`: 200, a CSV content type, offered as a download; its
/// records.
fn csv_of(api: &ApiServer, path: &str) -> (Vec<Vec<String>>, String) {
    let (status, headers, text) = get_text(api, &format!("{path}&format=csv"));
    assert_eq!(status, 200, "{path}: {text}");
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    assert!(
        content_type.starts_with("text/csv"),
        "{path}: content type {content_type:?}"
    );
    let disposition = headers
        .get("content-disposition")
        .cloned()
        .unwrap_or_default();
    assert!(
        disposition.starts_with("attachment"),
        "{path}: {disposition:?}"
    );
    (parse_csv(&text), text)
}

/// A JSON value as a CSV field shows it: a string as it is, a number as JSON writes it.
fn field(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a string or number: {other}"),
    }
}

#[test]
fn csv_answers_hold_the_json_figures_row_by_row() {
    let influx = Influx::start();
    influx.create_database("energy");
    let histories = worked_examples();
    influx.write(
        "energy",
        &lines_of(histories.iter().map(|(p, points)| (*p, points))),
    );
    // A currency label with a comma and quotes, which a CSV field must quote (RFC 4180 2.6,
    // 2.7), and a tariff that gives fractions of a unit.
    let currency = "Rp, \"lama\"";
    let api = ApiServer::start(
        &influx.url(),
        "energy",
        &[
            ("TARIFF_PER_KWH", "0.25"),
            ("CURRENCY", currency),
            ("QUERY_CACHE_MS", "0"),
        ],
    );

    for (panel, day, step) in [
        ("OUTAGE", "2026-03-01", "15m"),
        ("BURST", "2026-03-10", "15m"),
        ("BURST", "2026-03-10", "1h"),
    ] {
        let path = format!("/api/panel/{panel}/intervals?date={day}&step={step}");
        let json = api.ok(&path);
        let (records, _) = csv_of(&api, &path);
        assert_eq!(
            records[0],
            [
                "panel",
                "start",
                "usage_kwh",
                "avg_kw",
                "estimated_kwh",
                "window",
                "cost",
                "estimated_cost",
                "currency"
            ],
            "{path}"
        );
        let rows: Vec<Vec<String>> = json["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                vec![
                    panel.to_owned(),
                    field(&i["start"]),
                    field(&i["usage_kwh"]),
                    field(&i["avg_kw"]),
                    field(&i["estimated_kwh"]),
                    field(&i["window"]),
                    field(&i["cost"]),
                    field(&i["estimated_cost"]),
                    field(&json["currency"]),
                ]
            })
            .collect();
        assert_eq!(rows.len(), if step == "15m" { 96 } else { 24 });
        assert_eq!(records[1..], rows, "{path}");
    }
    // By hand: BURST's quarter hour from 07:00 on 10 March, 2.5 kWh at 10 kW, which cost
    // 2.5 × 0.25 = 0.625 → 0.63 in the flat tariff's one window.
    let (records, text) = csv_of(&api, "/api/panel/BURST/intervals?date=2026-03-10");
    assert_eq!(
        records[1 + 28],
        [
            "BURST",
            "2026-03-10T07:00:00+07:00",
            "2.5",
            "10.0",
            "0.0",
            "all day",
            "0.63",
            "0.0",
            currency
        ]
    );
    assert!(text.starts_with(
        "panel,start,usage_kwh,avg_kw,estimated_kwh,window,cost,estimated_cost,currency\r\n"
    ));

    for month in ["2026-03", "2026-05"] {
        let path = format!("/api/energy/daily?month={month}");
        let json = api.ok(&path);
        let (records, _) = csv_of(&api, &path);
        assert_eq!(
            records[0],
            [
                "panel",
                "date",
                "usage_kwh",
                "estimated_kwh",
                "cost",
                "currency",
                "max_demand_kw"
            ],
            "{path}"
        );
        let mut rows = Vec::new();
        for panel in json["panels"].as_array().unwrap() {
            for day in panel["days"].as_array().unwrap() {
                rows.push(vec![
                    field(&panel["panel"]),
                    field(&day["date"]),
                    field(&day["usage_kwh"]),
                    field(&day["estimated_kwh"]),
                    field(&day["cost"]),
                    currency.to_owned(),
                    field(&day["max_demand_kw"]),
                ]);
            }
        }
        assert_eq!(rows.len(), 4 * 31, "four panels, 31 days");
        assert_eq!(records[1..], rows, "{path}");
    }
    // By hand: 2 March of the outage, 240 kWh × 0.25 = 60.00, at 10 kW; the currency quoted
    // with its quotes doubled.
    let (_, text) = csv_of(&api, "/api/energy/daily?month=2026-03");
    assert!(
        text.contains("\r\nOUTAGE,2026-03-02,240.0,240.0,60.0,\"Rp, \"\"lama\"\"\",10.0\r\n"),
        "{text}"
    );

    let path = "/api/energy/monthly?year=2026";
    let json = api.ok(path);
    let (records, text) = csv_of(&api, path);
    assert_eq!(
        records[0],
        [
            "panel",
            "month",
            "usage_kwh",
            "estimated_kwh",
            "cost",
            "currency",
            "max_demand_kw"
        ]
    );
    let mut rows = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for month in panel["months"].as_array().unwrap() {
            rows.push(vec![
                field(&panel["panel"]),
                format!("2026-{:02}", month["month"].as_u64().unwrap()),
                field(&month["usage_kwh"]),
                field(&month["estimated_kwh"]),
                field(&month["cost"]),
                currency.to_owned(),
                field(&month["max_demand_kw"]),
            ]);
        }
    }
    assert_eq!(rows.len(), 4 * 12);
    assert_eq!(records[1..], rows);
    // By hand: the outage's March, 320 kWh × 0.25 = 80.00 at 10 kW; BURST's, 4.5 × 0.25 =
    // 1.125, half a cent up: 1.13.
    assert!(
        text.contains("\r\nOUTAGE,2026-03,320.0,320.0,80.0,\"Rp, \"\"lama\"\"\",10.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nBURST,2026-03,4.5,1.0,1.13,\"Rp, \"\"lama\"\"\",10.0\r\n"),
        "{text}"
    );

    // No panel at all (a database never written): the header row alone.
    let empty = ApiServer::start(&influx.url(), "never_written", &[]);
    let (records, text) = csv_of(&empty, "/api/energy/daily?month=2026-03");
    assert_eq!(records.len(), 1, "{text}");
    assert_eq!(
        text,
        "panel,date,usage_kwh,estimated_kwh,cost,currency,max_demand_kw\r\n"
    );
    let (records, text) = csv_of(&empty, "/api/energy/monthly?year=2026");
    assert_eq!(records.len(), 1, "{text}");
    let (status, body) = empty.get("/api/panel/OUTAGE/intervals?date=2026-03-01&format=csv");
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
}

#[test]
fn unknown_panels_and_bad_parameters_get_json_errors() {
    let tz = chrono_tz::Asia::Jakarta;
    let influx = Influx::start();
    influx.create_database("energy");
    let now = Utc::now();
    let a: Points = vec![
        (local(tz, 2026, 3, 1, 12, 0), 10.0),
        (local(tz, 2026, 3, 1, 13, 0), 11.0),
        (now - Span::minutes(2), 12.0),
    ];
    influx.write("energy", &lines_of([("A", &a)]));
    let api = ApiServer::start(&influx.url(), "energy", &[]);

    for path in [
        "/api/panel/NOPE/intervals?date=2026-03-01",
        "/api/panel/NOPE/intervals",
        "/api/panel/NOPE/intervals?format=csv",
        // Not a panel id at all (a space, too long).
        "/api/panel/A%20B/intervals?date=2026-03-01",
        &format!("/api/panel/{}/intervals?date=2026-03-01", "A".repeat(65)),
    ] {
        let (status, headers, text) = get_text(&api, path);
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 404, "{path}: {text}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {text}");
        assert!(body["error"]["message"].is_string(), "{path}: {text}");
        assert!(
            headers["content-type"].starts_with("application/json"),
            "{path}: {headers:?}"
        );
    }
    let (_, body) = api.get("/api/panel/NOPE/intervals?date=2026-03-01");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("NOPE"),
        "the message names the panel: {body}"
    );

    for (path, parameter) in [
        ("/api/panel/A/intervals?date=2026-02-30", "date"),
        ("/api/panel/A/intervals?date=yesterday", "date"),
        ("/api/panel/A/intervals?date=", "date"),
        ("/api/panel/A/intervals?date=2026-3-1", "date"),
        ("/api/panel/A/intervals?date=1969-12-31", "date"),
        ("/api/panel/A/intervals?date=2026-03-01&step=5m", "step"),
        ("/api/panel/A/intervals?date=2026-03-01&step=", "step"),
        ("/api/panel/A/intervals?date=2026-03-01&step=1d", "step"),
        (
            "/api/panel/A/intervals?date=2026-03-01&format=xml",
            "format",
        ),
        (
            "/api/panel/A/intervals?date=2026-03-01&format=CSV",
            "format",
        ),
        ("/api/energy/daily?month=2026-13", "month"),
        ("/api/energy/daily?month=2026-00", "month"),
        ("/api/energy/daily?month=2026-1", "month"),
        ("/api/energy/daily?month=yesterday", "month"),
        ("/api/energy/daily?month=", "month"),
        ("/api/energy/daily?month=2026-03&format=xml", "format"),
        ("/api/energy/daily?format=xml", "format"),
        ("/api/energy/monthly?year=2026&format=xml", "format"),
    ] {
        let (status, headers, text) = get_text(&api, path);
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 400, "{path}: {text}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {text}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(parameter),
            "{path}: the message names {parameter}: {text}"
        );
        assert!(
            headers["content-type"].starts_with("application/json"),
            "{path}: {headers:?}"
        );
    }

    // A known panel on a day before its first reading: 96 quarter hours of nothing, not 404.
    let (got, totals) = intervals(&api, "A", "2026-01-15", "15m", "Asia/Jakarta");
    assert_eq!(got.len(), 96);
    assert!(got.iter().all(|g| g.1 == (0.0, 0.0, 0.0)), "{got:?}");
    assert_eq!(totals, (0.0, 0.0));
    // A day to come has no interval that has started yet; a month to come no day.
    let (got, totals) = intervals(&api, "A", "2030-01-01", "15m", "Asia/Jakarta");
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(totals, (0.0, 0.0));
    let future = api.ok("/api/energy/daily?month=2030-01");
    assert_eq!(
        future["panels"],
        json!([{"panel": "A", "kind": "panel", "tariff": "flat", "days": []}])
    );
    // Days past what InfluxDB can store (its last instant is in April 2262) as well.
    for day in ["2262-04-11", "2262-04-12", "9999-12-31"] {
        let (got, totals) = intervals(&api, "A", day, "1h", "Asia/Jakarta");
        assert!(got.is_empty() && totals == (0.0, 0.0), "{day}: {got:?}");
    }
    let (status, body) = api.get("/api/panel/NOPE/intervals?date=9999-12-31");
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let future = api.ok("/api/energy/daily?month=9999-12");
    assert_eq!(
        future["panels"],
        json!([{"panel": "A", "kind": "panel", "tariff": "flat", "days": []}])
    );
    // The earliest month there is: 31 days of nothing (the ledger reaches back that far).
    let past = daily(&api, "1970-01", "Asia/Jakarta");
    assert_eq!(past["A"].len(), 31);
    assert!(past["A"].iter().all(|d| d.1 == Figure::ZERO), "{past:?}");
    // And the month of the readings: 1 March 12:00 -> 13:00, +1 kWh in an hour (estimated),
    // 0.25 kWh (1 kW) in each of its quarter hours; the pair from 13:00 to two minutes ago
    // spreads its +1 over every day since.
    let march = daily(&api, "2026-03", "Asia/Jakarta");
    assert_eq!(march["A"][0].1.max_demand_kw, 1.0, "{march:?}");
    assert_eq!(march["A"][0].1.estimated_kwh, march["A"][0].1.usage_kwh);

    // Without a date: today, its quarter hours that have started.
    let started = |at: DateTime<Utc>| {
        let today = at.with_timezone(&tz).date_naive();
        let (midnight, _) = day_span(tz, today);
        (today, (at - midnight).num_seconds() / 900 + 1)
    };
    let before = started(Utc::now());
    let body = api.ok("/api/panel/A/intervals");
    let after = started(Utc::now());
    assert_eq!(body["step"], "15m", "{body}");
    let count = body["intervals"].as_array().unwrap().len() as i64;
    assert!(
        [before, after].contains(&(date(body["date"].as_str().unwrap()), count)),
        "{count} intervals on {}, between {before:?} and {after:?}",
        body["date"]
    );
    // And without a month: this month's days that have started, today the last.
    let before = Utc::now().with_timezone(&tz).date_naive();
    let body = api.ok("/api/energy/daily");
    let after = Utc::now().with_timezone(&tz).date_naive();
    let days = body["panels"][0]["days"].as_array().unwrap();
    assert!(
        [before, after].iter().any(|today| {
            body["month"] == format!("{:04}-{:02}", today.year(), today.month())
                && days.len() == today.day() as usize
                && days.last().unwrap()["date"] == today.to_string()
        }),
        "{body}"
    );
}

fn payload(time: DateTime<Utc>, energy_kwh: f64) -> Vec<u8> {
    json!({
        "power_kw": 10.0,
        "energy_kwh": energy_kwh,
        "timestamp": time.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
    .to_string()
    .into_bytes()
}

/// The whole way in: the worked examples published to Mosquitto, stored by mqtt-subscriber,
/// which keeps the usage rollup (its days carrying their largest quarter hour), and answered
/// by the api-server from it.
#[test]
fn the_worked_examples_sent_over_mqtt_give_the_hand_figures_from_the_rollup() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut subscriber = start_subscriber(&broker, &influx, "intervals-pipeline", &[]);
    let mut api = ApiServer::start(&influx.url(), "energy", &[("QUERY_CACHE_MS", "0")]);
    // UTC's days are the rollup's own: its day sums' peak_nkwh make their demand.
    let mut in_utc = ApiServer::start(
        &influx.url(),
        "energy",
        &[("QUERY_CACHE_MS", "0"), ("TIMEZONE", "UTC")],
    );

    let histories = worked_examples();
    let messages: Vec<(String, Vec<u8>)> = histories
        .iter()
        .flat_map(|(panel, points)| {
            points
                .iter()
                .map(move |&(time, energy)| (format!("DATA/PM/{panel}"), payload(time, energy)))
        })
        .collect();
    publish_many(
        broker.port,
        messages.iter().map(|(t, p)| (t.as_str(), p.as_slice())),
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the readings stored", || {
        influx.count_points("energy") as usize >= messages.len()
    });
    let stored_at = Utc::now().timestamp_nanos_opt().unwrap();
    wait_until(Duration::from_secs(60), "the rollup to cover them", || {
        rollup_complete_until(&influx).is_some_and(|until| until > stored_at)
    });

    // The rollup's share of the newest readings may be a round late: wait for the outage's
    // days (its 2.5 kWh quarter hours: 10 kW), then check everything.
    let outage_days = || {
        daily(&api, "2026-03", "Asia/Jakarta")
            .get("OUTAGE")
            .map(|days| days[..3].iter().map(|d| d.1).collect::<Vec<_>>())
    };
    let want = vec![
        Figure::by_hand(20.0, 20.0, 10.0),
        Figure::by_hand(240.0, 240.0, 10.0),
        Figure::by_hand(60.0, 60.0, 10.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while outage_days().as_ref() != Some(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(outage_days(), Some(want));
    assert_worked_days_and_months(&api, "through MQTT");
    let (got, totals) = intervals(&api, "OUTAGE", "2026-03-02", "15m", "Asia/Jakarta");
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        slots(96, 4.0, &[(0..96, 2.5, 2.5)])
    );
    assert_eq!(totals, (240.0, 240.0));
    let (got, _) = intervals(&api, "BURST", "2026-03-10", "15m", "Asia/Jakarta");
    assert_eq!(
        got[28],
        ("2026-03-10T07:00:00+07:00".into(), (2.5, 0.0, 10.0))
    );
    assert_answered_from_the_rollup(&mut api);

    // The rollup's UTC days of the outage (15:00 to 24:00 on 1 March, 00:00 to 23:00 on 2
    // March) each hold their largest quarter hour, 2.5 kWh; BURST's 10 March (UTC) holds its
    // quarter hour from 00:00 UTC, 2.5 kWh too, 1.0 of it the share of the pair from 9 March.
    let peaks = influx.query(
        "energy",
        "SELECT peak_nkwh FROM energy_usage_1d WHERE panel = 'OUTAGE' OR panel = 'BURST' \
         GROUP BY panel",
    );
    let mut by_panel: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for series in peaks["results"][0]["series"].as_array().unwrap() {
        let rows = series["values"].as_array().unwrap().iter().map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_i64().unwrap(),
            )
        });
        by_panel.insert(
            series["tags"]["panel"].as_str().unwrap().to_owned(),
            rows.collect(),
        );
    }
    assert_eq!(
        by_panel["OUTAGE"],
        [
            ("2026-03-01T00:00:00Z".to_owned(), 2_500_000_000),
            ("2026-03-02T00:00:00Z".to_owned(), 2_500_000_000)
        ]
    );
    assert!(
        by_panel["BURST"].contains(&("2026-03-10T00:00:00Z".to_owned(), 2_500_000_000)),
        "{by_panel:?}"
    );

    // A late reading in the middle of the outage, 2 March 12:00 (05:00 UTC) -> 1020: the pair
    // from 1 March 22:00 now has +20 over 14 hours (56 quarter hours), the one to 3 March 06:00
    // +300 over 18 hours (72 quarter hours). In nano-kWh: 20e9 / 56 = 357 142 857 (the 8 left
    // over to the 8 earliest: the remainders are all equal), and 300e9 / 72 = 4 166 666 666
    // (the 48 left over to the 48 earliest, which are 2 March's from 12:00). So
    //  - 1 March (Jakarta), 22:00 to 24:00: 8 × 357 142 858 = 2.857142864 kWh, max demand
    //    357 142 858 × 4 -> 1.429 kW (it was 10: the day's largest quarter hour shrank);
    //  - 2 March: 48 × 357 142 857 + 48 × 4 166 666 667 = 217.142857152 kWh, 16.667 kW;
    //  - 3 March, to 06:00: 24 × 4 166 666 666 = 99.999999984 kWh (100.0), 16.667 kW;
    //  all estimated. Costs: 4285.71, 325 714.29, 150 000.00 IDR.
    //  In UTC, 1 March holds 36 quarter hours of the first pair (15:00 to 24:00): 12.857 kWh,
    //  1.429 kW — the rollup's day sum whose stored peak shrank from 2.5 kWh.
    let late = local(chrono_tz::Asia::Jakarta, 2026, 3, 2, 12, 0);
    publish_many(
        broker.port,
        [("DATA/PM/OUTAGE", payload(late, 1020.0).as_slice())],
    )
    .unwrap();
    let mut outage = histories
        .iter()
        .find(|h| h.0 == "OUTAGE")
        .unwrap()
        .1
        .clone();
    outage.push((late, 1020.0));
    let reference = Expected::new(&outage);
    let jakarta = [
        Figure {
            usage_kwh: 2.857,
            estimated_kwh: 2.857,
            cost: 4285.71,
            max_demand_kw: 1.429,
        },
        Figure {
            usage_kwh: 217.143,
            estimated_kwh: 217.143,
            cost: 325714.29,
            max_demand_kw: 16.667,
        },
        Figure::by_hand(100.0, 100.0, 16.667),
    ];
    for (i, want) in jakarta.iter().enumerate() {
        let (start, end) = day_span(
            chrono_tz::Asia::Jakarta,
            date("2026-03-01") + Span::days(i as i64),
        );
        assert_eq!(reference.figure(start, end), *want, "the reference agrees");
    }
    let utc_first = day_span(chrono_tz::UTC, date("2026-03-01"));
    let utc_want = reference.figure(utc_first.0, utc_first.1);
    assert_eq!(
        (utc_want.usage_kwh, utc_want.max_demand_kw),
        (12.857, 1.429)
    );
    let figures = || {
        let days = |api: &ApiServer, zone: &str| {
            daily(api, "2026-03", zone)["OUTAGE"][..3]
                .iter()
                .map(|d| d.1)
                .collect::<Vec<_>>()
        };
        (days(&api, "Asia/Jakarta"), days(&in_utc, "UTC")[0])
    };
    let want = (jakarta.to_vec(), utc_want);
    let deadline = Instant::now() + Duration::from_secs(30);
    while figures() != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        figures(),
        want,
        "after the late reading (Jakarta's days, UTC's 1 March)"
    );
    assert_eq!(
        monthly(&api, 2026)["OUTAGE"].0[2],
        Figure::by_hand(320.0, 320.0, 16.667)
    );
    assert_eq!(
        monthly(&in_utc, 2026)["OUTAGE"].0[2],
        Figure::by_hand(320.0, 320.0, 16.667)
    );
    assert_answered_from_the_rollup(&mut api);
    assert_answered_from_the_rollup(&mut in_utc);
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
}

/// Upgrading: the version before `max_demand_kw` (commit d4a4e4b) kept a rollup of the same
/// `format` (3) whose points have no `peak_nkwh`. After the upgrade the subscriber goes on
/// keeping it and the api-server reads it; the demand of the days it covers must still be
/// their largest quarter hour, not a missing field read as 0.
#[test]
fn max_demand_is_right_over_a_rollup_kept_before_peaks_were_recorded() {
    let influx = Influx::start();
    influx.create_database("energy");
    let histories = worked_examples();
    let (_, outage) = histories.iter().find(|h| h.0 == "OUTAGE").unwrap();
    influx.write("energy", &lines_of([("OUTAGE", outage)]));
    // The rollup as the earlier version wrote it (usage, estimated part and readings of each
    // UTC quarter hour, day and month; no peak_nkwh): 128 quarter hours of 2.5 kWh, from 15:00
    // UTC on 1 March to 23:00 UTC on 2 March, all estimated; a reading in the first quarter
    // hour and in the one from 23:00 UTC on 2 March.
    let quarters = reference::quarter_shares(outage, Rule::default());
    let mut buckets: BTreeMap<i128, (i128, i128, u64)> = quarters
        .iter()
        .map(|(start, shares)| (*start, (shares.usage, shares.estimated, 0)))
        .collect();
    for (time, _) in outage {
        let start = nanos(*time) / QUARTER_NANOS * QUARTER_NANOS;
        buckets.entry(start).or_default().2 += 1;
    }
    assert_eq!(buckets.len(), 129);
    let mut lines = String::new();
    let mut days: BTreeMap<i128, (i128, i128, u64)> = BTreeMap::new();
    for (start, (usage, estimated, readings)) in &buckets {
        lines += &format!(
            "energy_usage_15m,panel=OUTAGE usage_nkwh={usage}i,estimated_nkwh={estimated}i,\
             readings={readings}i {start}\n"
        );
        let day = days
            .entry(start / 86_400_000_000_000 * 86_400_000_000_000)
            .or_default();
        (day.0, day.1, day.2) = (day.0 + usage, day.1 + estimated, day.2 + readings);
    }
    // 1 March (UTC): 36 quarter hours, 90 kWh; 2 March: 92 quarter hours, 230 kWh.
    assert_eq!(
        days.values().map(|d| d.0).collect::<Vec<_>>(),
        [90_000_000_000, 230_000_000_000]
    );
    for (start, (usage, estimated, readings)) in &days {
        lines += &format!(
            "energy_usage_1d,panel=OUTAGE usage_nkwh={usage}i,estimated_nkwh={estimated}i,\
             readings={readings}i {start}\n"
        );
    }
    let march = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    lines += &format!(
        "energy_usage_1mo,panel=OUTAGE usage_nkwh=320000000000i,estimated_nkwh=320000000000i,\
         readings=2i {}\n",
        nanos(march)
    );
    let now = Utc::now();
    let hour = now.duration_trunc(Span::hours(1)).unwrap();
    lines += &format!(
        "energy_rollup_state complete_until={}i,max_power_kw=5000.0,estimate_after_secs=900i,\
         format=3i,log_until={}i {}\n",
        nanos(now),
        nanos(now),
        nanos(hour)
    );
    influx.write("energy", &lines);

    // The new subscriber takes the rollup over (same rule, same settings: nothing to rebuild).
    let (_broker, _writer) = keep_rollup(&influx);
    let mut api = ApiServer::start(&influx.url(), "energy", &[("QUERY_CACHE_MS", "0")]);
    let days = &daily(&api, "2026-03", "Asia/Jakarta")["OUTAGE"];
    assert_answered_from_the_rollup(&mut api);
    assert_eq!(
        days[..4].iter().map(|d| d.1).collect::<Vec<_>>(),
        [
            Figure::by_hand(20.0, 20.0, 10.0),
            Figure::by_hand(240.0, 240.0, 10.0),
            Figure::by_hand(60.0, 60.0, 10.0),
            Figure::ZERO,
        ],
        "the outage's days: 2.5 kWh in every quarter hour, 10 kW"
    );
    let year = monthly(&api, 2026);
    assert_eq!(
        year["OUTAGE"].0[2],
        Figure::by_hand(320.0, 320.0, 10.0),
        "March"
    );
}

/// An InfluxDB that answers at most 500 rows per statement (`max-row-limit`, an operator's
/// setting): a day of 2 880 readings (one every 30 s) still gives every interval its whole
/// usage, never a day cut short.
#[test]
fn intervals_of_a_day_with_more_readings_than_influxdbs_row_limit_are_whole() {
    let influx = Influx::start_with_http("max-row-limit = 500\n");
    influx.create_database("energy");
    let tz = chrono_tz::Asia::Jakarta;
    let (start, end) = day_span(tz, date("2026-06-10"));
    // +1/64 kWh every 30 s (1.875 kW): 30/64 = 0.46875 kWh in every quarter hour (shown as
    // 0.469; 0.46875 × 4 = 1.875 kW), 96 × 0.46875 = 45 kWh in the day; from 30 s before
    // midnight to 30 s after the next.
    let points: Points = (-1..=2881)
        .map(|k| {
            (
                start + Span::seconds(30 * k),
                100.0 + f64::from(k as i32) / 64.0,
            )
        })
        .collect();
    influx.write("energy", &lines_of([("DENSE", &points)]));
    let api = ApiServer::start(&influx.url(), "energy", &[]);
    let (got, totals) = intervals(&api, "DENSE", "2026-06-10", "15m", "Asia/Jakarta");
    assert_eq!(got.len(), 96);
    assert!(
        got.iter().all(|g| g.1 == (0.469, 0.0, 1.875)),
        "every quarter hour 0.46875 kWh: {got:?}"
    );
    assert_eq!(totals, (45.0, 0.0));
    let expected = Expected::new(&points);
    assert_eq!(
        expected.figure(start, end),
        Figure::by_hand(45.0, 0.0, 1.875)
    );
    let days = &daily(&api, "2026-06", "Asia/Jakarta")["DENSE"];
    assert_eq!(days[9].1, Figure::by_hand(45.0, 0.0, 1.875));
}

/// A month read from its UTC month sum takes away the buckets outside it (Jakarta's March ends
/// at 17:00 UTC on 31 March, so UTC March's last seven hours are April's). When the UTC
/// month's largest quarter hour lies in those hours, it is not the local month's: the local
/// month's largest is read again from its days and buckets.
#[test]
fn a_months_largest_quarter_hour_in_the_hours_it_gives_away_is_not_its_own() {
    let influx = Influx::start();
    influx.create_database("energy");
    // A reading every quarter hour from 30 March 00:00 to 2 April 00:00 UTC, +1 kWh a quarter
    // hour (4 kW), except [30 March 10:00, 10:15) UTC: +3 kWh (12 kW, Jakarta's 30 March
    // 17:00) and [31 March 20:00, 20:15) UTC: +5 kWh (20 kW, Jakarta's 1 April 03:00, still in
    // UTC March). Every pair lies in one quarter hour, 900 s long: nothing estimated.
    let start = Utc.with_ymd_and_hms(2026, 3, 30, 0, 0, 0).unwrap();
    let bump_march = Utc.with_ymd_and_hms(2026, 3, 30, 10, 0, 0).unwrap();
    let bump_april = Utc.with_ymd_and_hms(2026, 3, 31, 20, 0, 0).unwrap();
    let mut points: Points = Vec::new();
    let mut energy = 1000.0;
    for k in 0..=(3 * 96) {
        let time = start + Span::minutes(15 * k);
        points.push((time, energy));
        energy += if time == bump_march {
            3.0
        } else if time == bump_april {
            5.0
        } else {
            1.0
        };
    }
    influx.write("energy", &lines_of([("EVENING", &points)]));
    // Jakarta's March holds the pairs starting from 30 March 00:00 to 31 March 17:00 UTC:
    // 41 h = 164 quarter hours, + 2 for its bump: 166 kWh, largest 3 kWh = 12 kW. April holds
    // the rest to 2 April 00:00: 31 h = 124 quarter hours, + 4: 128 kWh, largest 5 kWh = 20 kW.
    let march = Figure::by_hand(166.0, 0.0, 12.0);
    let april = Figure::by_hand(128.0, 0.0, 20.0);
    let (_broker, _writer) = keep_rollup(&influx);
    let mut from_rollup = ApiServer::start(&influx.url(), "energy", &[]);
    // Another estimate threshold: this server cannot use the rollup and reads its ledger.
    let from_ledger = ApiServer::start(&influx.url(), "energy", &[("ESTIMATE_AFTER_SECS", "1800")]);
    for (source, api) in [("rollup", &from_rollup), ("ledger", &from_ledger)] {
        let months = &monthly(api, 2026)["EVENING"].0;
        assert_eq!((months[2], months[3]), (march, april), "from the {source}");
    }
    assert_answered_from_the_rollup(&mut from_rollup);
    // The rollup's UTC March holds the 20 kW quarter hour, which made this case.
    let stored = influx.query(
        "energy",
        "SELECT peak_nkwh FROM energy_usage_1mo WHERE panel = 'EVENING' \
         AND time = '2026-03-01T00:00:00Z'",
    );
    assert_eq!(
        stored["results"][0]["series"][0]["values"][0][1].as_i64(),
        Some(5_000_000_000),
        "{stored}"
    );
}
