//! The api-server binary against a real InfluxDB 1.6 holding hand-made histories. Expected
//! figures are worked out by hand in each test (the arithmetic is in the comments), not computed
//! with the core crate, and checked once more against `test_support::reference`, the rule written
//! out independently.
//!
//! The rule (issue "Interval-exact accounting"): the increase of a pair of consecutive readings
//! is spread over the time between them, so a pair straddling local midnight (or a month
//! boundary) is split in proportion to the minutes on each side, and a reading exactly at
//! midnight ends the old day. The share of a pair longer than 900 s is also `estimated_kwh`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use test_support::reference::{self, Rule, Shares};
use test_support::{free_port, http_get, http_request, try_http_get, ApiServer, Influx, Program};

/// A panel's readings as the reference takes them: (time, energy register).
type Points = Vec<(DateTime<Utc>, f64)>;

fn line(panel: &str, power_kw: f64, energy_kwh: f64, time: DateTime<Utc>) -> String {
    format!(
        "energy_data,panel={panel} power_kw={power_kw},energy_kwh={energy_kwh} {}\n",
        time.timestamp_nanos_opt().unwrap()
    )
}

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// The reference's usage and estimated kWh of `points` in `[start, end)`, with the default rule
/// (5000 kW, 900 s).
fn reference_kwh(
    points: &[(DateTime<Utc>, f64)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (f64, f64) {
    let shares: Shares = reference::usage(points, start, end, Rule::default());
    (shares.usage_kwh(), shares.estimated_kwh())
}

/// The reference's (usage, estimated) kWh of `points` in each calendar month of `year` in `tz`.
fn reference_months(points: &[(DateTime<Utc>, f64)], tz: Tz, year: i32) -> Vec<(f64, f64)> {
    (1..=12)
        .map(|month| {
            let start = local(tz, year, month, 1, 0, 0);
            let end = if month == 12 {
                local(tz, year + 1, 1, 1, 0, 0)
            } else {
                local(tz, year, month + 1, 1, 0, 0)
            };
            reference_kwh(points, start, end)
        })
        .collect()
}

/// (usage, estimated) kWh in twelve months: `figures` at the (1-based) months named, 0 elsewhere.
fn twelve(figures: &[(u32, f64, f64)]) -> Vec<(f64, f64)> {
    let mut months = vec![(0.0, 0.0); 12];
    for &(month, usage, estimated) in figures {
        months[month as usize - 1] = (usage, estimated);
    }
    months
}

/// Panel `id`'s months in a monthly answer as (usage_kwh, estimated_kwh), after checking their
/// numbers, costs (at `tariff`) and that the year's totals are their sums.
fn months_of(body: &Value, id: &str, tariff: f64) -> Vec<(f64, f64)> {
    let p = panel(body, id);
    let months = p["months"].as_array().unwrap().clone();
    assert_eq!(months.len(), 12, "{id}: {p}");
    let mut figures = Vec::new();
    for (i, m) in months.iter().enumerate() {
        assert_eq!(m["month"], i + 1, "{id}: {p}");
        let usage = m["usage_kwh"].as_f64().unwrap();
        let estimated = m["estimated_kwh"]
            .as_f64()
            .unwrap_or_else(|| panic!("{id}: month {} has no estimated_kwh: {m}", i + 1));
        assert_eq!(m["cost"].as_f64().unwrap(), usage * tariff, "{id}: {m}");
        figures.push((usage, estimated));
    }
    // Every figure here is a whole number of milli-kWh, so the rounded months add up exactly
    // (the sums are compared rounded to 3 decimals only to shed the f64 noise of adding).
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let usage: f64 = figures.iter().map(|f| f.0).sum();
    let estimated: f64 = figures.iter().map(|f| f.1).sum();
    assert_eq!(p["total_kwh"], round3(usage), "{id}: {p}");
    assert_eq!(p["total_estimated_kwh"], round3(estimated), "{id}: {p}");
    assert_eq!(p["total_cost"], round3(usage) * tariff, "{id}: {p}");
    figures
}

fn panel<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["panel"] == id)
        .unwrap_or_else(|| panic!("panel {id} missing from {body}"))
}

fn ids(body: &Value) -> Vec<String> {
    body["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["panel"].as_str().unwrap().to_owned())
        .collect()
}

/// Today's local midnight in Jakarta (UTC+7, no daylight saving), and the local date.
fn jakarta_today() -> (NaiveDate, DateTime<Utc>) {
    let tz = chrono_tz::Asia::Jakarta;
    let date = Utc::now().with_timezone(&tz).date_naive();
    let midnight = tz
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    (date, midnight)
}

#[test]
fn today_usage_and_summary_split_pairs_at_local_midnight() {
    let influx = Influx::start();
    influx.create_database("energy");
    let (date, m) = jakarta_today();
    let min = |n: i64| m + Span::minutes(n);
    // Each panel's readings as (minutes from today's local midnight m, power_kw, energy_kwh).
    // Jakarta's midnight is 17:00 UTC, on the quarter-hour grid: the quarter hour [m − 15 min,
    // m) is yesterday's, [m, m + 15 min) today's.
    type History = (&'static str, &'static [(i64, f64, f64)]);
    let histories: [History; 5] = [
        // A: 100 -> 101 yesterday (+1, yesterday's). The pair straddling midnight, 101 at −1 ->
        // 103 at +1: +2 over 2 minutes, 1 minute on each side: 2 × 1/2 = 1.0 yesterday and 1.0
        // today (the old rule gave all 2 to today). Then +1.5 (103 -> 104.5), a reset to 0
        // (counts 0), +2 (0 -> 2). Today: 1.0 + 1.5 + 2.0 = 4.5 kWh; every pair is ≤ 2 minutes
        // long, so none of it is estimated. (Yesterday: 1 + 1.0 = 2.0.)
        (
            "A",
            &[
                (-2, 10.0, 100.0),
                (-1, 12.0, 101.0),
                (1, 20.0, 103.0),
                (2, 30.0, 104.5),
                (3, 5.0, 0.0),
                (4, 7.0, 2.0),
            ],
        ),
        // B: +1 across midnight (49 999 at −1 -> 50 000 at +1): 0.5 yesterday, 0.5 today. Then a
        // zero glitch: 50 000 -> 0 is a drop (0), and 0 -> 50 000.5 in one minute would be
        // 50 000.5 × 60 = 3 000 030 kW > 5000 kW, so it counts 0; then +0.5 (50 000.5 ->
        // 50 001). Today: 0.5 + 0.5 = 1.0 kWh.
        (
            "B",
            &[
                (-1, 1.0, 49_999.0),
                (1, 1.0, 50_000.0),
                (2, 1.0, 0.0),
                (3, 1.0, 50_000.5),
                (4, 1.0, 50_001.0),
            ],
        ),
        // C: a reading exactly at local midnight ENDS the old day: the pair 10 at −1 -> 12 at 0
        // lies in [m − 1 min, m), so its +2 is all yesterday's (the old rule gave it to today).
        // Then 12 -> 12.5 in [m, m + 1 min): today 0.5 kWh. (Yesterday: 1 + 2 = 3.0.)
        (
            "C",
            &[
                (-2, 2.0, 9.0),
                (-1, 2.0, 10.0),
                (0, 2.0, 12.0),
                (1, 2.0, 12.5),
            ],
        ),
        // D: only yesterday (1 -> 2 over 10 minutes): 0 today.
        ("D", &[(-30, 3.0, 1.0), (-20, 3.0, 2.0)]),
        // E: a 30-minute gap across midnight, 500 at −20 -> 503 at +10: +3 kWh over 30 minutes
        // (6 kW), longer than 900 s, so estimated. Per quarter hour: [m − 30, m − 15) overlaps
        // 5 minutes: 3 × 5/30 = 0.5; [m − 15, m) 15 minutes: 3 × 15/30 = 1.5; [m, m + 15) 10
        // minutes: 3 × 10/30 = 1.0 — all exact, no nano-kWh left over to hand out. Then +0.25
        // in a minute (503 -> 503.25, 15 kW, not estimated). Today: 1.0 + 0.25 = 1.25 kWh, 1.0
        // of it estimated. (Yesterday: 0.5 + 1.5 = 2.0, all estimated.)
        (
            "E",
            &[(-20, 6.0, 500.0), (10, 6.0, 503.0), (11, 15.0, 503.25)],
        ),
    ];
    let mut lines = String::new();
    for (id, readings) in histories {
        for &(t, p, e) in readings {
            lines += &line(id, p, e, min(t));
        }
    }
    influx.write("energy", &lines);
    let points = |id: &str| -> Points {
        let (_, readings) = histories.iter().find(|h| h.0 == id).unwrap();
        readings.iter().map(|&(t, _, e)| (min(t), e)).collect()
    };
    let yesterday = (m - Span::days(1), m);
    let today_period = (m, m + Span::days(1));
    // The reference agrees with the hand-worked splits of the old day, which no endpoint shows.
    for (id, usage, estimated) in [
        ("A", 2.0, 0.0),
        ("B", 0.5, 0.0),
        ("C", 3.0, 0.0),
        ("D", 1.0, 0.0),
        ("E", 2.0, 2.0),
    ] {
        assert_eq!(
            reference_kwh(&points(id), yesterday.0, yesterday.1),
            (usage, estimated),
            "{id} yesterday"
        );
    }
    let api = ApiServer::start(&influx.url(), "energy", &[]);

    let today = api.ok("/api/panel/today-usage");
    if today["date"] != date.to_string() {
        panic!("the local day changed during the test; run it again");
    }
    assert_eq!(today["timezone"], "Asia/Jakarta");
    assert_eq!(today["tariff_per_kwh"], 1500.0);
    assert_eq!(today["currency"], "IDR");
    assert_eq!(
        ids(&today),
        ["A", "B", "C", "D", "E"],
        "every panel ever seen, sorted"
    );
    // (panel, usage, estimated, cost = usage × 1500 IDR)
    let expected = [
        ("A", 4.5, 0.0, 6750.0),
        ("B", 1.0, 0.0, 1500.0),
        ("C", 0.5, 0.0, 750.0),
        ("D", 0.0, 0.0, 0.0),
        ("E", 1.25, 1.0, 1875.0),
    ];
    for (id, usage, estimated, cost) in expected {
        assert_eq!(
            reference_kwh(&points(id), today_period.0, today_period.1),
            (usage, estimated),
            "{id}: the reference agrees with the hand figure"
        );
        let p = panel(&today, id);
        assert_eq!(p["usage_kwh"], usage, "{id}: {p}");
        assert_eq!(p["estimated_kwh"], estimated, "{id}: {p}");
        assert_eq!(p["cost"], cost, "{id}: {p}");
    }
    // 4.5 + 1.0 + 0.5 + 0 + 1.25 = 7.25 kWh, 1.0 of it estimated; 7.25 × 1500 = 10 875,
    // 1.0 × 1500 = 1 500 of it estimated; all in the flat tariff's one window.
    let window = json!({"tariff": "flat", "version": "always", "window": "all day",
        "rate": 1500.0, "usage_kwh": 7.25, "estimated_kwh": 1.0, "cost": 10875.0,
        "estimated_cost": 1500.0});
    assert_eq!(
        today["total"],
        json!({"usage_kwh": 7.25, "estimated_kwh": 1.0, "cost": 10875.0,
            "estimated_cost": 1500.0, "by_window": [window]})
    );

    let summary = api.ok("/api/panel/summary");
    assert_eq!(
        ids(&summary),
        ["A", "B", "C", "E"],
        "only panels with a reading today"
    );
    for (id, usage, estimated, cost) in expected {
        if id == "D" {
            continue;
        }
        let p = panel(&summary, id);
        assert_eq!(p["today_usage_kwh"], usage, "{id}: {p}");
        assert_eq!(p["today_estimated_kwh"], estimated, "{id}: {p}");
        assert_eq!(p["today_cost"], cost, "{id}: {p}");
    }
    let a = panel(&summary, "A");
    assert_eq!(a["energy_kwh"], 2.0);
    assert_eq!(a["power_kw"], 7.0);
    assert_eq!(
        a["last_seen"],
        min(4).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(a["today_peak_power_kw"], 30.0);
    assert_eq!(a["today_avg_power_kw"], 15.5, "mean of 20, 30, 5, 7");
    let c = panel(&summary, "C");
    assert_eq!(
        c["today_avg_power_kw"], 2.0,
        "the midnight reading is one of today's readings (its pair is yesterday's usage)"
    );
    let e = panel(&summary, "E");
    assert_eq!(e["today_peak_power_kw"], 15.0, "{e}");
    assert_eq!(e["today_avg_power_kw"], 10.5, "mean of 6 and 15: {e}");
}

/// A cost is the exact usage times the tariff as written, rounded once to 2 decimals, half away
/// from zero, on every endpoint that shows one.
#[test]
fn costs_are_exact_and_round_half_a_cent_away_from_zero() {
    let influx = Influx::start();
    influx.create_database("energy");
    let (date, m) = jakarta_today();
    let min = |n: i64| m + Span::minutes(n);
    let mut lines = String::new();
    // E: 7 -> 7.58 today, 0.58 kWh. At 0.25 per kWh: 0.58 × 0.25 = 0.145 exactly, half a cent
    // up: 0.15. (The f64 product was 0.14499999…, shown as 0.14.)
    let e: Points = vec![(min(1), 7.0), (min(2), 7.58)];
    // F: 3 -> 3.04 across midnight, 1 minute on each side: 0.04 × 1/2 = 0.02 kWh today (and
    // 0.02 yesterday). 0.02 × 0.25 = 0.005, up to 0.01.
    let f: Points = vec![(min(-1), 3.0), (min(1), 3.04)];
    for (id, points) in [("E", &e), ("F", &f)] {
        for &(time, energy) in points {
            lines += &line(id, 35.0, energy, time);
        }
    }
    influx.write("energy", &lines);
    let today_period = (m, m + Span::days(1));
    assert_eq!(
        reference_kwh(&e, today_period.0, today_period.1),
        (0.58, 0.0)
    );
    assert_eq!(
        reference_kwh(&f, today_period.0, today_period.1),
        (0.02, 0.0)
    );
    assert_eq!(reference_kwh(&f, m - Span::days(1), m), (0.02, 0.0));
    let api = ApiServer::start(
        &influx.url(),
        "energy",
        &[("TARIFF_PER_KWH", "0.25"), ("CURRENCY", "EUR")],
    );

    let today = api.ok("/api/panel/today-usage");
    if today["date"] != date.to_string() {
        panic!("the local day changed during the test; run it again");
    }
    assert_eq!(today["tariff_per_kwh"], 0.25);
    assert_eq!(today["currency"], "EUR");
    assert_eq!(panel(&today, "E")["usage_kwh"], 0.58);
    assert_eq!(panel(&today, "E")["estimated_kwh"], 0.0);
    assert_eq!(panel(&today, "E")["cost"], 0.15, "{today}");
    assert_eq!(panel(&today, "F")["usage_kwh"], 0.02);
    assert_eq!(panel(&today, "F")["estimated_kwh"], 0.0);
    assert_eq!(panel(&today, "F")["cost"], 0.01, "{today}");
    // The total is the cost of the total usage: 0.60 × 0.25 = 0.15 (not 0.15 + 0.01).
    let window = json!({"tariff": "flat", "version": "always", "window": "all day",
        "rate": 0.25, "usage_kwh": 0.6, "estimated_kwh": 0.0, "cost": 0.15,
        "estimated_cost": 0.0});
    assert_eq!(
        today["total"],
        json!({"usage_kwh": 0.6, "estimated_kwh": 0.0, "cost": 0.15, "estimated_cost": 0.0,
            "by_window": [window]})
    );

    let summary = api.ok("/api/panel/summary");
    assert_eq!(panel(&summary, "E")["today_cost"], 0.15, "{summary}");
    assert_eq!(panel(&summary, "F")["today_usage_kwh"], 0.02, "{summary}");
    assert_eq!(
        panel(&summary, "F")["today_estimated_kwh"],
        0.0,
        "{summary}"
    );
    assert_eq!(panel(&summary, "F")["today_cost"], 0.01, "{summary}");

    let monthly = api.ok(&format!("/api/energy/monthly?year={}", date.year()));
    assert_eq!(monthly["tariff_per_kwh"], 0.25);
    let e = panel(&monthly, "E");
    let this_month = &e["months"][date.month0() as usize];
    assert_eq!(this_month["usage_kwh"], 0.58, "{monthly}");
    assert_eq!(this_month["estimated_kwh"], 0.0, "{monthly}");
    assert_eq!(this_month["cost"], 0.15, "{monthly}");
    assert_eq!(e["total_cost"], 0.15, "{monthly}");
    assert_eq!(e["total_estimated_kwh"], 0.0, "{monthly}");
}

#[test]
fn monthly_usage_splits_at_local_month_boundaries_with_resets_and_glitches() {
    let influx = Influx::start();
    influx.create_database("energy");
    let tz = chrono_tz::Asia::Jakarta;
    let ny_tz = chrono_tz::America::New_York;
    // A, in Jakarta time (UTC+7; its month boundaries are 17:00 UTC, on the quarter-hour grid):
    //  1. 2024-12-31 23:59  10
    //  2. 2025-01-01 00:00  11  1->2: +1 in [Dec 31 23:59, Jan 1 00:00): the reading at
    //                           midnight ends the old year, so it is December 2024's (the old
    //                           rule gave it to January).
    //  3. 2025-01-01 12:00  11  2->3: nothing used.
    //  4. 2025-01-31 23:59  21  3->4: +10 over 30 days 11 h 59 min, all January; estimated.
    //  5. 2025-02-01 00:01  22  4->5: +1 over 2 minutes, 1 minute on each side of the month
    //                           boundary: 1 × 1/2 = 0.5 January, 0.5 February.
    //  6. 2025-03-15 12:00   0  5->6: a reset: 0.
    //  7. 2025-03-16 12:00   5  6->7: +5 over 24 hours, March; estimated.
    //  8. 2025-12-31 23:50   5  7->8: nothing used in 9½ months: a long pair without an
    //                           increase gives nothing to the months it spans.
    //  9. 2025-12-31 23:59   7  8->9: +2 over 9 minutes (540 s, not estimated), December.
    // 10. 2026-01-01 00:01   8  9->10: +1 over 2 minutes: 0.5 December 2025, 0.5 January 2026.
    // 2025 in Jakarta: January 10 + 0.5 = 10.5 (10 estimated), February 0.5, March 5 (5
    // estimated), December 2 + 0.5 = 2.5; the year 18.5 (15 estimated), 18.5 × 1500 = 27 750.
    let a: Points = [
        ((2024, 12, 31, 23, 59), 10.0),
        ((2025, 1, 1, 0, 0), 11.0),
        ((2025, 1, 1, 12, 0), 11.0),
        ((2025, 1, 31, 23, 59), 21.0),
        ((2025, 2, 1, 0, 1), 22.0),
        ((2025, 3, 15, 12, 0), 0.0),
        ((2025, 3, 16, 12, 0), 5.0),
        ((2025, 12, 31, 23, 50), 5.0),
        ((2025, 12, 31, 23, 59), 7.0),
        ((2026, 1, 1, 0, 1), 8.0),
    ]
    .into_iter()
    .map(|((y, mo, d, h, mi), e)| (local(tz, y, mo, d, h, mi), e))
    .collect();
    // G: a zero glitch on 10 June 10:00–10:03: 50 000 -> 0 (a drop, 0), 0 -> 50 000.25 in a
    // minute (3 000 015 kW: a glitch, 0), then +0.5 (50 000.25 -> 50 000.75): June 0.5.
    let g: Points = [(0, 50_000.0), (1, 0.0), (2, 50_000.25), (3, 50_000.75)]
        .into_iter()
        .map(|(minute, e)| (local(tz, 2025, 6, 10, 10, minute), e))
        .collect();
    // H: a single reading in 2024, so no pair: listed with zeros.
    let h: Points = vec![(local(tz, 2024, 5, 1, 0, 0), 3.0)];
    let mut lines = String::new();
    for (id, points) in [("A", &a), ("G", &g), ("H", &h)] {
        for &(time, energy) in points {
            lines += &line(id, 1.0, energy, time);
        }
    }
    influx.write("energy", &lines);
    let api = ApiServer::start(&influx.url(), "energy", &[]);

    let body = api.ok("/api/energy/monthly?year=2025");
    assert_eq!(body["year"], 2025);
    assert_eq!(ids(&body), ["A", "G", "H"]);
    let a_2025 = twelve(&[
        (1, 10.5, 10.0),
        (2, 0.5, 0.0),
        (3, 5.0, 5.0),
        (12, 2.5, 0.0),
    ]);
    assert_eq!(
        reference_months(&a, tz, 2025),
        a_2025,
        "the reference agrees"
    );
    assert_eq!(months_of(&body, "A", 1500.0), a_2025, "{body}");
    assert_eq!(panel(&body, "A")["total_kwh"], 18.5);
    assert_eq!(panel(&body, "A")["total_estimated_kwh"], 15.0);
    assert_eq!(panel(&body, "A")["total_cost"], 27750.0);
    let g_2025 = twelve(&[(6, 0.5, 0.0)]);
    assert_eq!(
        reference_months(&g, tz, 2025),
        g_2025,
        "the reference agrees"
    );
    assert_eq!(months_of(&body, "G", 1500.0), g_2025, "{body}");
    assert_eq!(months_of(&body, "H", 1500.0), twelve(&[]), "{body}");

    // The years on either side: 1->2 is December 2024's (1.0, 60 s, not estimated), and half of
    // 9->10 is January 2026's (0.5).
    let a_2024 = twelve(&[(12, 1.0, 0.0)]);
    assert_eq!(
        reference_months(&a, tz, 2024),
        a_2024,
        "the reference agrees"
    );
    let body = api.ok("/api/energy/monthly?year=2024");
    assert_eq!(months_of(&body, "A", 1500.0), a_2024, "{body}");
    assert_eq!(months_of(&body, "H", 1500.0), twelve(&[]), "{body}");
    let a_2026 = twelve(&[(1, 0.5, 0.0)]);
    assert_eq!(
        reference_months(&a, tz, 2026),
        a_2026,
        "the reference agrees"
    );
    let body = api.ok("/api/energy/monthly?year=2026");
    assert_eq!(months_of(&body, "A", 1500.0), a_2026, "{body}");

    // The same readings seen from New York (UTC−5 in winter, UTC−4 from 9 March to 2 November
    // 2025: 12 hours behind Jakarta in winter, 11 in summer; its month boundaries are 05:00 or
    // 04:00 UTC, on the grid):
    //  1, 2: 2024-12-31 11:59, 12:00: 1->2 is December 2024's.
    //  3: 2025-01-01 00:00 exactly: 2->3 (no increase) ends at New York's New Year, and the +10
    //     of 3->4 (to 2025-01-31 11:59) is all January's, estimated.
    //  4->5: 2025-01-31 11:59 -> 12:01: +1, all January.
    //  6->7: 2025-03-15 01:00 -> 03-16 01:00 EDT: +5, March, estimated.
    //  8->9->10: 2025-12-31 11:50, 11:59, 12:01 EST: +2 and +1, all December 2025.
    // 2025 in New York: January 10 + 1 = 11 (10 estimated), March 5 (5 estimated), December
    // 2 + 1 = 3; the year 19 (15 estimated). G's glitch (9 June 23:00 EDT) stays in June.
    let ny = ApiServer::start(&influx.url(), "energy", &[("TIMEZONE", "America/New_York")]);
    let body = ny.ok("/api/energy/monthly?year=2025");
    assert_eq!(body["timezone"], "America/New_York");
    let a_2025_ny = twelve(&[(1, 11.0, 10.0), (3, 5.0, 5.0), (12, 3.0, 0.0)]);
    assert_eq!(
        reference_months(&a, ny_tz, 2025),
        a_2025_ny,
        "the reference agrees"
    );
    assert_eq!(months_of(&body, "A", 1500.0), a_2025_ny, "{body}");
    assert_eq!(panel(&body, "A")["total_kwh"], 19.0);
    assert_eq!(panel(&body, "A")["total_estimated_kwh"], 15.0);
    assert_eq!(
        reference_months(&g, ny_tz, 2025),
        g_2025,
        "the reference agrees"
    );
    assert_eq!(months_of(&body, "G", 1500.0), g_2025, "{body}");
    let a_2024_ny = twelve(&[(12, 1.0, 0.0)]);
    assert_eq!(reference_months(&a, ny_tz, 2024), a_2024_ny);
    let body = ny.ok("/api/energy/monthly?year=2024");
    assert_eq!(months_of(&body, "A", 1500.0), a_2024_ny, "{body}");
}

/// The worked examples of the issue ("Interval-exact accounting"), in Asia/Jakarta, each placed
/// at a month boundary of 2025 so that the monthly endpoint shows how it is split; the daily
/// endpoint shows the days (and `tests/intervals.rs` the quarter hours).
#[test]
fn the_issues_worked_examples_split_by_time_between_days_and_months() {
    let influx = Influx::start();
    influx.create_database("energy");
    let tz = chrono_tz::Asia::Jakarta;
    let at = |mo: u32, d: u32, h: u32, mi: u32| local(tz, 2025, mo, d, h, mi);
    let day = |mo: u32, d: u32| (at(mo, d, 0, 0), at(mo, d, 0, 0) + Span::days(1));
    // MIDNIGHT: 30 April 23:50 -> 1000.0, 1 May 00:10 -> 1002.0: +2 over 20 minutes (1200 s >
    // 900 s: estimated). The quarter hour [23:45, 24:00) overlaps 10 minutes: 2 × 10/20 = 1.0;
    // [00:00, 00:15) 10 minutes: 1.0. So 1.0 kWh to 30 April (April) and 1.0 to 1 May (May),
    // both estimated.
    let midnight: Points = vec![(at(4, 30, 23, 50), 1000.0), (at(5, 1, 0, 10), 1002.0)];
    // OUTAGE: 1 March 22:00 -> 1000, 3 March 06:00 -> 1320: +320 over 32 hours (10 kW), all
    // estimated. Both readings are on the grid (15:00 and 23:00 UTC), so the pair covers 128
    // whole quarter hours of 320/128 = 2.5 kWh each: 1 March 2 h = 8 × 2.5 = 20, 2 March 24 h =
    // 96 × 2.5 = 240, 3 March 6 h = 24 × 2.5 = 60. March: 320, 320 estimated.
    let outage: Points = vec![(at(3, 1, 22, 0), 1000.0), (at(3, 3, 6, 0), 1320.0)];
    // OUTAGE_FEB: the same outage across the February/March boundary (2025 is no leap year):
    // 28 February 22:00 -> 2000, 2 March 06:00 -> 2320: 28 February 20, 1 March 240, 2 March
    // 60. February 20, March 240 + 60 = 300, all estimated.
    let outage_feb: Points = vec![(at(2, 28, 22, 0), 2000.0), (at(3, 2, 6, 0), 2320.0)];
    // LAST_MINUTE: 31 May 23:59 -> 500.0, 1 June 00:00 -> 500.5: the pair lies in [23:59,
    // 24:00), so its 0.5 is all 31 May's (May); 1 June (June) gets nothing. 60 s: not estimated.
    let last_minute: Points = vec![(at(5, 31, 23, 59), 500.0), (at(6, 1, 0, 0), 500.5)];
    let mut lines = String::new();
    for (id, points) in [
        ("MIDNIGHT", &midnight),
        ("OUTAGE", &outage),
        ("OUTAGE_FEB", &outage_feb),
        ("LAST_MINUTE", &last_minute),
    ] {
        for &(time, energy) in points {
            lines += &line(id, 1.0, energy, time);
        }
    }
    influx.write("energy", &lines);

    // The days, by the reference.
    let days = |points: &Points, dates: &[(u32, u32)]| -> Vec<(f64, f64)> {
        dates
            .iter()
            .map(|&(mo, d)| {
                let (start, end) = day(mo, d);
                reference_kwh(points, start, end)
            })
            .collect()
    };
    assert_eq!(
        days(&midnight, &[(4, 30), (5, 1)]),
        [(1.0, 1.0), (1.0, 1.0)]
    );
    assert_eq!(
        days(&outage, &[(3, 1), (3, 2), (3, 3)]),
        [(20.0, 20.0), (240.0, 240.0), (60.0, 60.0)]
    );
    assert_eq!(
        days(&outage_feb, &[(2, 28), (3, 1), (3, 2)]),
        [(20.0, 20.0), (240.0, 240.0), (60.0, 60.0)]
    );
    assert_eq!(
        days(&last_minute, &[(5, 31), (6, 1)]),
        [(0.5, 0.0), (0.0, 0.0)]
    );

    let api = ApiServer::start(&influx.url(), "energy", &[]);
    let body = api.ok("/api/energy/monthly?year=2025");
    assert_eq!(body["timezone"], "Asia/Jakarta");
    assert_eq!(
        ids(&body),
        ["LAST_MINUTE", "MIDNIGHT", "OUTAGE", "OUTAGE_FEB"]
    );
    for (id, points, months, total, estimated) in [
        (
            "MIDNIGHT",
            &midnight,
            twelve(&[(4, 1.0, 1.0), (5, 1.0, 1.0)]),
            2.0,
            2.0,
        ),
        (
            "OUTAGE",
            &outage,
            twelve(&[(3, 320.0, 320.0)]),
            320.0,
            320.0,
        ),
        (
            "OUTAGE_FEB",
            &outage_feb,
            twelve(&[(2, 20.0, 20.0), (3, 300.0, 300.0)]),
            320.0,
            320.0,
        ),
        (
            "LAST_MINUTE",
            &last_minute,
            twelve(&[(5, 0.5, 0.0)]),
            0.5,
            0.0,
        ),
    ] {
        assert_eq!(
            reference_months(points, tz, 2025),
            months,
            "{id}: the reference agrees"
        );
        assert_eq!(months_of(&body, id, 1500.0), months, "{id}: {body}");
        let p = panel(&body, id);
        assert_eq!(p["total_kwh"], total, "{id}: {p}");
        assert_eq!(p["total_estimated_kwh"], estimated, "{id}: {p}");
    }

    // Each month's largest quarter hour × 4: 2.5 kWh in every quarter hour of an outage is
    // 10 kW, the 1.0 kWh each side of midnight 4 kW, the 0.5 kWh of the last minute 2 kW.
    for (id, month, demand) in [
        ("MIDNIGHT", 4, 4.0),
        ("MIDNIGHT", 5, 4.0),
        ("OUTAGE", 3, 10.0),
        ("OUTAGE_FEB", 2, 10.0),
        ("OUTAGE_FEB", 3, 10.0),
        ("LAST_MINUTE", 5, 2.0),
        ("LAST_MINUTE", 6, 0.0),
    ] {
        let p = panel(&body, id);
        assert_eq!(p["months"][month - 1]["max_demand_kw"], demand, "{id}: {p}");
    }

    // The days themselves, as the reference split them above: (panel, date, usage, estimated,
    // max demand); every other day is 0. Costs are usage × 1500.
    let by_day = [
        ("MIDNIGHT", "2025-04-30", 1.0, 1.0, 4.0),
        ("MIDNIGHT", "2025-05-01", 1.0, 1.0, 4.0),
        ("OUTAGE", "2025-03-01", 20.0, 20.0, 10.0),
        ("OUTAGE", "2025-03-02", 240.0, 240.0, 10.0),
        ("OUTAGE", "2025-03-03", 60.0, 60.0, 10.0),
        ("OUTAGE_FEB", "2025-02-28", 20.0, 20.0, 10.0),
        ("OUTAGE_FEB", "2025-03-01", 240.0, 240.0, 10.0),
        ("OUTAGE_FEB", "2025-03-02", 60.0, 60.0, 10.0),
        ("LAST_MINUTE", "2025-05-31", 0.5, 0.0, 2.0),
    ];
    for (month, length) in [(2, 28), (3, 31), (4, 30), (5, 31), (6, 30)] {
        let daily = api.ok(&format!("/api/energy/daily?month=2025-{month:02}"));
        assert_eq!(
            ids(&daily),
            ["LAST_MINUTE", "MIDNIGHT", "OUTAGE", "OUTAGE_FEB"]
        );
        for id in ids(&daily) {
            let days = panel(&daily, &id)["days"].as_array().unwrap().clone();
            assert_eq!(days.len(), length, "{id}: {daily}");
            for (day, number) in days.iter().zip(1..) {
                let date = format!("2025-{month:02}-{number:02}");
                let (usage, estimated, demand) = by_day
                    .iter()
                    .find(|d| d.0 == id && d.1 == date)
                    .map_or((0.0, 0.0, 0.0), |d| (d.2, d.3, d.4));
                let got = (
                    day["date"].as_str(),
                    day["usage_kwh"].as_f64(),
                    day["estimated_kwh"].as_f64(),
                    day["cost"].as_f64(),
                    day["max_demand_kw"].as_f64(),
                );
                let want = (
                    Some(date.as_str()),
                    Some(usage),
                    Some(estimated),
                    Some(usage * 1500.0),
                    Some(demand),
                );
                assert_eq!(got, want, "{id}: {day}");
            }
        }
    }
}

#[test]
fn realtime_lists_every_panel_with_its_status() {
    let influx = Influx::start();
    influx.create_database("energy");
    let now = Utc::now();
    let mut lines = line("FRESH", 4.5, 10.25, now - Span::seconds(10));
    lines += &line("STALE", 1.0, 99.0, now - Span::hours(1));
    lines += &line("STALE", 2.0, 98.0, now - Span::hours(2));
    influx.write("energy", &lines);
    let api = ApiServer::start(&influx.url(), "energy", &[("OFFLINE_AFTER_SECS", "300")]);

    let body = api.ok("/api/panel/realtime");
    assert_eq!(body["offline_after_secs"], 300);
    assert_eq!(ids(&body), ["FRESH", "STALE"]);
    let fresh = panel(&body, "FRESH");
    assert_eq!(fresh["status"], "ONLINE");
    assert_eq!(fresh["power_kw"], 4.5);
    assert_eq!(fresh["energy_kwh"], 10.25);
    let age = fresh["seconds_since_last_seen"].as_i64().unwrap();
    assert!((10..=40).contains(&age), "{fresh}");
    let stale = panel(&body, "STALE");
    assert_eq!(stale["status"], "OFFLINE");
    assert_eq!(
        stale["energy_kwh"], 99.0,
        "the latest reading, not the largest or first"
    );
    assert!(stale["seconds_since_last_seen"].as_i64().unwrap() >= 3600);
    let generated: DateTime<Utc> = body["generated_at"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - generated).num_seconds().abs() < 30);
}

/// The polled endpoints serve one rendered answer per `QUERY_CACHE_MS`; past that, the stale
/// answer is served at once and a task of its own makes the next one (docs/operations.md, "The
/// answer caches").
#[test]
fn a_polled_answer_is_reused_then_refreshed_without_a_request_waiting() {
    let influx = Influx::start();
    influx.create_database("energy");
    influx.write(
        "energy",
        &line("P1", 4.5, 10.0, Utc::now() - Span::seconds(5)),
    );
    let api = ApiServer::start(&influx.url(), "energy", &[("QUERY_CACHE_MS", "2000")]);
    let power = |body: &Value| panel(body, "P1")["power_kw"].clone();
    for path in [
        "/api/panel/realtime",
        "/api/panel/today-usage",
        "/api/panel/summary",
    ] {
        let first = api.ok(path);
        assert!(first["generated_at"].is_string(), "{path}: {first}");
        assert_eq!(
            api.ok(path),
            first,
            "{path}: the same answer within QUERY_CACHE_MS"
        );
    }
    let made = Instant::now();
    let first = api.ok("/api/panel/realtime");
    assert_eq!(power(&first), 4.5);
    // A newer reading arrives; within the period the answer stays the one made before it.
    influx.write("energy", &line("P1", 9.25, 10.5, Utc::now()));
    assert_eq!(api.ok("/api/panel/realtime"), first);
    // Past the period (and well before two of them), the request that finds the answer
    // stale still gets it, at once: the refresh runs beside it.
    std::thread::sleep(Duration::from_millis(2300).saturating_sub(made.elapsed()));
    assert_eq!(
        api.ok("/api/panel/realtime"),
        first,
        "the stale answer, not one made for this request"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let refreshed = loop {
        let body = api.ok("/api/panel/realtime");
        if body["generated_at"] != first["generated_at"] {
            break body;
        }
        assert!(Instant::now() < deadline, "never refreshed: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(power(&refreshed), 9.25, "{refreshed}");
    let (before, after): (DateTime<Utc>, DateTime<Utc>) = (
        first["generated_at"].as_str().unwrap().parse().unwrap(),
        refreshed["generated_at"].as_str().unwrap().parse().unwrap(),
    );
    assert!(after > before, "{before} → {after}");
}

/// The answer cache keys monthly, daily and bill answers by their parameters, keeps each
/// answer's type and download name, and keeps no refusal.
#[test]
fn cached_answers_keep_their_parameters_type_and_download_name() {
    let influx = Influx::start();
    influx.create_database("energy");
    let at = |minute| Utc.with_ymd_and_hms(2025, 3, 10, 12, minute, 0).unwrap();
    let mut lines = line("P1", 6.0, 100.0, at(0));
    lines += &line("P1", 6.0, 100.2, at(2));
    lines += &line("P2", 6.0, 50.0, at(0));
    lines += &line("P2", 6.0, 50.5, at(2));
    influx.write("energy", &lines);
    let api = ApiServer::start(
        &influx.url(),
        "energy",
        &[("QUERY_CACHE_MS", "5000"), ("TIMEZONE", "UTC")],
    );
    let get = |path: &str| {
        let (status, _, text, headers) = http_request("GET", &api.url(path), &[], None);
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        (
            status,
            header("content-type"),
            header("content-disposition"),
            text,
        )
    };
    let (year, this_month) = (2025, "2025-03");
    // JSON first, then CSV of the same year: two answers, not one.
    for (json, csv, name) in [
        (
            format!("/api/energy/monthly?year={year}"),
            format!("/api/energy/monthly?year={year}&format=csv"),
            format!("monthly-{year:04}.csv"),
        ),
        (
            format!("/api/energy/daily?month={this_month}"),
            format!("/api/energy/daily?month={this_month}&format=csv"),
            format!("daily-{this_month}.csv"),
        ),
        (
            format!("/api/bill?month={this_month}"),
            format!("/api/bill?month={this_month}&format=csv"),
            format!("bill-{this_month}.csv"),
        ),
        // One panel's (`panel=`): its own answers and file names.
        (
            format!("/api/energy/monthly?year={year}&panel=P1"),
            format!("/api/energy/monthly?year={year}&format=csv&panel=P1"),
            format!("monthly-{year:04}-P1.csv"),
        ),
        (
            format!("/api/energy/daily?month={this_month}&panel=P1"),
            format!("/api/energy/daily?month={this_month}&format=csv&panel=P1"),
            format!("daily-{this_month}-P1.csv"),
        ),
        (
            format!("/api/bill?month={this_month}&panel=P1"),
            format!("/api/bill?month={this_month}&format=csv&panel=P1"),
            format!("bill-{this_month}-P1.csv"),
        ),
    ] {
        let first = get(&json);
        assert_eq!(first.0, 200, "{json}: {}", first.3);
        assert!(first.1.starts_with("application/json"), "{json}: {first:?}");
        assert_eq!(get(&json), first, "{json}: served again as it was");
        let csv_first = get(&csv);
        assert_eq!(csv_first.0, 200, "{csv}: {}", csv_first.3);
        assert!(csv_first.1.starts_with("text/csv"), "{csv}: {csv_first:?}");
        assert_eq!(
            csv_first.2,
            format!("attachment; filename=\"{name}\""),
            "{csv}"
        );
        assert!(csv_first.3.contains("P1"), "{csv}: {}", csv_first.3);
        assert_eq!(
            get(&csv),
            csv_first,
            "{csv}: served again with its type and name"
        );
    }
    // Another year is another answer: in 2024 P1 had no reading.
    let body = |path: &str| serde_json::from_str::<Value>(&get(path).3).unwrap();
    let this_year = body(&format!("/api/energy/monthly?year={year}"));
    let last_year = body(&format!("/api/energy/monthly?year={}", year - 1));
    // 100.0 → 100.2 kWh: 0.2 kWh in 2025 (by hand), none the year before; P2 50.0 → 50.5.
    assert_eq!(panel(&this_year, "P1")["total_kwh"], 0.2);
    assert_eq!(panel(&this_year, "P2")["total_kwh"], 0.5);
    assert_eq!(panel(&last_year, "P1")["total_kwh"], 0.0);
    // One panel's year, month and days hold that panel only, with its figures; the CSV of one
    // panel has no row of the other.
    let p2_year = body(&format!("/api/energy/monthly?year={year}&panel=P2"));
    assert_eq!(ids(&p2_year), ["P2"]);
    assert_eq!(panel(&p2_year, "P2")["total_kwh"], 0.5);
    let p2_days = body(&format!("/api/energy/daily?month={this_month}&panel=P2"));
    assert_eq!(ids(&p2_days), ["P2"]);
    assert_eq!(
        panel(&p2_days, "P2")["days"][9]["usage_kwh"],
        0.5,
        "10 March"
    );
    let p1_csv = get(&format!(
        "/api/energy/daily?month={this_month}&format=csv&panel=P1"
    ))
    .3;
    assert!(!p1_csv.contains("P2"), "{p1_csv}");
    // One panel's bill is its own answer, and a refusal is never kept.
    let one = body(&format!("/api/bill?month={this_month}&panel=P1"));
    assert_eq!(ids(&one), ["P1"]);
    for _ in 0..2 {
        assert_eq!(get("/api/energy/monthly?year=abc").0, 400);
        for path in [
            format!("/api/bill?month={this_month}&panel=NOPE"),
            format!("/api/energy/daily?month={this_month}&panel=NOPE"),
            format!("/api/energy/monthly?year={year}&panel=NOPE"),
        ] {
            assert_eq!(get(&path).0, 404, "{path}");
        }
    }
}

#[test]
fn an_empty_or_missing_database_is_not_an_error() {
    let influx = Influx::start();
    let api = ApiServer::start(&influx.url(), "never_written", &[]);
    for path in [
        "/api/panel/realtime",
        "/api/panel/today-usage",
        "/api/panel/summary",
        "/api/energy/monthly",
    ] {
        let body = api.ok(path);
        assert_eq!(body["panels"], json!([]), "{path}");
    }
    assert_eq!(
        api.ok("/api/panel/today-usage")["total"],
        json!({"usage_kwh": 0.0, "estimated_kwh": 0.0, "cost": 0.0, "estimated_cost": 0.0,
            "by_window": []})
    );
}

/// The allocator's options (`energy_service::allocator`) are the ones in force: jemalloc's
/// background thread, which hands freed memory back to the system, runs; an operator's
/// `_RJEM_MALLOC_CONF` still overrides them.
#[test]
fn the_server_runs_jemalloc_with_its_background_purge() {
    let influx = Influx::start();
    let thread_names = |api: &mut ApiServer| api.program().thread_names();
    let mut api = ApiServer::start(&influx.url(), "energy", &[]);
    assert_eq!(api.ok("/api/energy/monthly")["panels"], json!([]));
    let names = thread_names(&mut api);
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "threads: {names:?}"
    );
    let mut overridden = ApiServer::start(
        &influx.url(),
        "energy",
        &[("_RJEM_MALLOC_CONF", "background_thread:false")],
    );
    let names = thread_names(&mut overridden);
    assert!(
        !names.iter().any(|n| n == "jemalloc_bg_thd"),
        "threads: {names:?}"
    );
}

#[test]
fn bad_requests_and_unknown_paths_get_json_errors() {
    let influx = Influx::start();
    influx.create_database("energy");
    influx.write("energy", &line("A", 1.0, 1.0, Utc::now()));
    let api = ApiServer::start(&influx.url(), "energy", &[]);
    let year_error = json!({"error": {"code": "bad_request", "message": "year must be an integer between 1970 and 9999"}});
    for year in ["abc", "1969", "10000", "2025.5", "", "%00", "2026;DROP"] {
        let (status, body) = api.get(&format!("/api/energy/monthly?year={year}"));
        assert_eq!((status, &body), (400, &year_error), "year={year}");
    }
    // The edges of the range are fine, even past what InfluxDB 1.x can store (2262).
    for year in ["1970", "9999"] {
        let body = api.ok(&format!("/api/energy/monthly?year={year}"));
        assert_eq!(panel(&body, "A")["total_kwh"], 0.0);
    }
    let (status, body) = api.get("/api/nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    // `/` is the dashboard; other paths outside the API are unknown.
    let (status, body) = api.get("/index.html");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// Every endpoint answers 503 JSON quickly when InfluxDB is `dead`, and /health says why.
fn assert_unavailable(influx_url: String, expected_message: &str) {
    let port = free_port();
    let _program = Program::start(
        "api-server",
        &[
            ("INFLUX_URL", influx_url),
            ("INFLUX_TIMEOUT_MS", "1000".into()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    test_support::wait_until(Duration::from_secs(20), "api-server to listen", || {
        try_http_get(&format!("{base}/api/nope")).is_ok()
    });
    for path in [
        "/api/panel/realtime",
        "/api/panel/today-usage",
        "/api/panel/summary",
        "/api/energy/monthly?year=2025",
    ] {
        let started = Instant::now();
        let (status, body, _) = http_get(&format!("{base}{path}"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(
            body["error"]["code"], "influxdb_unavailable",
            "{path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected_message), "{path}: {message}");
    }
    let (status, body, _) = http_get(&format!("{base}/health"));
    assert_eq!(status, 503);
    assert_eq!(body["status"], "degraded");
    assert!(
        body["influxdb"]
            .as_str()
            .unwrap()
            .contains(expected_message),
        "{body}"
    );
}

#[test]
fn influxdb_refusing_connections_gives_503_json() {
    // A port nobody listens on.
    assert_unavailable(format!("http://127.0.0.1:{}", free_port()), "unreachable");
}

#[test]
fn influxdb_that_never_answers_gives_503_json_within_the_timeout() {
    // A listener that accepts connections (the kernel completes the handshake) but never
    // answers: without a timeout every request would hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    assert_unavailable(url, "timed out");
    drop(silent);
}

#[test]
fn a_bad_setting_stops_the_program_naming_it() {
    test_support::assert_bad_settings_stop(
        "api-server",
        &[
            ("TIMEZONE", "Mars/Olympus_Mons"),
            ("TARIFF_PER_KWH", "cheap"),
            ("TARIFF_PER_KWH", "-1"),
            ("TARIFF_PER_KWH", "NaN"),
            ("TARIFF_PER_KWH", "inf"),
            ("TARIFF_PER_KWH", "1e400"),
            ("TARIFF_PER_KWH", "0,25"),
            ("OFFLINE_AFTER_SECS", "-5"),
            ("MAX_POWER_KW", "0"),
            ("API_ADDR", "localhost"),
            ("INFLUX_URL", "influx:8086"),
            ("INFLUX_TIMEOUT_MS", "0"),
            ("CORS_ORIGINS", "dash.example"),
            ("CORS_ORIGINS", "http://dash.example/"),
            ("ROLLUP_STALE_SECS", "0"),
            ("ROLLUP_STALE_SECS", "soon"),
        ],
        &[],
    );
}

#[test]
fn help_documents_every_setting() {
    test_support::assert_help_documents(
        "api-server",
        &[
            "INFLUX_URL",
            "INFLUX_DATABASE",
            "INFLUX_TOKEN",
            "INFLUX_TIMEOUT_MS",
            "TIMEZONE",
            "TARIFF_PER_KWH",
            "CURRENCY",
            "OFFLINE_AFTER_SECS",
            "MAX_POWER_KW",
            "API_ADDR",
            "QUERY_CACHE_MS",
            "ROLLUP_STALE_SECS",
            "API_TOKEN",
            "CORS_ORIGINS",
            "LOG_FORMAT",
        ],
    );
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let influx = Influx::start();
    let port = free_port();
    let mut program = Program::start(
        "api-server",
        &[
            ("INFLUX_URL", influx.url()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    test_support::wait_until(Duration::from_secs(20), "api-server to listen", || {
        try_http_get(&format!("http://127.0.0.1:{port}/health")).is_ok()
    });
    assert_eq!(program.terminate(), Some(0), "{}", program.output());
    assert!(program.output().contains("stopped"));
}
