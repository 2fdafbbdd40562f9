//! Local periods are made of UTC quarter hours, so their usage is the sum of their quarter
//! hours' (docs/accounting.md): across daylight saving (days of 23 and 25 hours), in zones a
//! half or three quarters of an hour from UTC, and from quarter hours up to a year. Figures are
//! checked against the reference model of `common`.

mod common;

use chrono::{NaiveDate, Timelike};
use chrono_tz::Tz;
use common::{by_quarter, energy, energy_in, history, pairs, points, quarters_of, rules, span};
use common::{Reading, BURSTS, DAY, GRID, HOUR, MIXED};
use energy_core::period::{day, days_of_month, month, months_of_year};
use energy_core::usage::{usage_in, usage_in_periods, Energy};
use energy_core::Period;
use proptest::prelude::*;

const ZONES: [Tz; 6] = [
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Asia::Kathmandu,
    chrono_tz::Asia::Jakarta,
    chrono_tz::Pacific::Chatham,
];

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The quarter hours of a local day: 96, or 92 and 100 on the days daylight saving starts and
/// ends.
fn expected_quarters(tz: Tz, d: NaiveDate) -> usize {
    let dst = |spring: NaiveDate, autumn: NaiveDate| {
        if d == spring {
            92
        } else if d == autumn {
            100
        } else {
            96
        }
    };
    match tz {
        chrono_tz::Europe::Berlin => dst(date(2026, 3, 29), date(2026, 10, 25)),
        chrono_tz::America::New_York => dst(date(2026, 3, 8), date(2026, 11, 1)),
        // Chatham keeps daylight saving 45 minutes apart: 2:45 → 3:45 in September, 3:45 →
        // 2:45 in April.
        chrono_tz::Pacific::Chatham => dst(date(2026, 9, 27), date(2026, 4, 5)),
        _ => 96,
    }
}

/// The sum of `by_quarter` over the quarter hours in `p`, `quarters` starting at `first`.
fn sum_within(by_quarter: &[Energy], first: i64, p: Period) -> Energy {
    let (from, to) = span(p);
    let (i, j) = (
        ((from - first) / GRID) as usize,
        ((to - first) / GRID) as usize,
    );
    by_quarter[i..j].iter().copied().sum()
}

fn model_quarters(readings: &[Reading], quarters: &[Period]) -> Vec<Energy> {
    let model = by_quarter(&pairs(readings));
    quarters
        .iter()
        .map(|q| {
            let (u, e) = model.get(&span(*q).0).copied().unwrap_or((0, 0));
            energy(u, e)
        })
        .collect()
}

/// A year of readings around 2026 in `tz`: bursts of close readings between gaps of days.
fn year_history() -> impl Strategy<Value = (Tz, Vec<Reading>)> {
    (0..ZONES.len()).prop_flat_map(|zone| {
        let tz = ZONES[zone];
        let months = months_of_year(2026, tz).unwrap();
        let (start, end) = (span(months[0]).0, span(months[11]).1);
        (Just(tz), history(start - DAY, end + DAY, BURSTS, true, 400))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Quarter hours → local days → months → the year, for usage and the estimated part: each
    /// level is exactly the sum of the one below, and every figure is the model's.
    #[test]
    fn a_year_is_its_months_its_days_and_its_quarter_hours((tz, readings) in year_history()) {
        let pts = points(&readings);
        let months = months_of_year(2026, tz).unwrap();
        let year = Period { start: months[0].start, end: months[11].end };
        let quarters = quarters_of(year);
        let first = span(year).0;
        let by_quarter = usage_in_periods(&pts, &quarters, rules());
        prop_assert_eq!(&by_quarter, &model_quarters(&readings, &quarters));

        let model = pairs(&readings);
        let by_month = usage_in_periods(&pts, &months, rules());
        for (m, month_period) in months.iter().enumerate() {
            let days = days_of_month(2026, m as u32 + 1, tz).unwrap();
            let by_day = usage_in_periods(&pts, &days, rules());
            for (d, (day_period, e)) in days.iter().zip(&by_day).enumerate() {
                let date = date(2026, m as u32 + 1, d as u32 + 1);
                prop_assert_eq!(quarters_of(*day_period).len(), expected_quarters(tz, date), "{} {}", tz, date);
                prop_assert_eq!(*e, sum_within(&by_quarter, first, *day_period), "{} {}", tz, date);
            }
            prop_assert_eq!(by_day.iter().copied().sum::<Energy>(), by_month[m]);
            prop_assert_eq!(by_month[m], sum_within(&by_quarter, first, *month_period));
            prop_assert_eq!(by_month[m], energy_in(&model, *month_period));
        }
        let whole = usage_in(&pts, year, rules());
        prop_assert_eq!(by_month.iter().copied().sum::<Energy>(), whole);
        prop_assert_eq!(whole, energy_in(&model, year));
        prop_assert!(whole.estimated <= whole.usage);
    }
}

/// The days around a change of daylight saving in `tz`, from two days before to two after.
fn around(tz: Tz, d: NaiveDate) -> (Vec<Period>, Vec<Period>) {
    let days: Vec<Period> = (-2..=2)
        .map(|k| day(d + chrono::Duration::days(k), tz))
        .collect();
    let quarters = quarters_of(Period {
        start: days[0].start,
        end: days[4].end,
    });
    (days, quarters)
}

/// A zone, the date its clocks change, the day's quarter hours and its hours.
type DstDay = (Tz, (i32, u32, u32), usize, i64);

const DST_DAYS: [DstDay; 4] = [
    (chrono_tz::Europe::Berlin, (2026, 3, 29), 92, 23),
    (chrono_tz::Europe::Berlin, (2026, 10, 25), 100, 25),
    (chrono_tz::America::New_York, (2026, 3, 8), 92, 23),
    (chrono_tz::America::New_York, (2026, 11, 1), 100, 25),
];

fn dst_history() -> impl Strategy<Value = (usize, Vec<Reading>)> {
    (0..DST_DAYS.len()).prop_flat_map(|i| {
        let (tz, (y, m, d), _, _) = DST_DAYS[i];
        let (days, _) = around(tz, date(y, m, d));
        let (start, end) = (span(days[0]).0, span(days[4]).1);
        (Just(i), history(start, end, MIXED, true, 400))
    })
}

proptest! {
    /// A day of 23 hours has 92 quarter hours and one of 25 hours 100, in Berlin and New York;
    /// the day's usage (and estimated part) is the sum of its quarter hours', and the model's.
    #[test]
    fn a_daylight_saving_day_is_the_sum_of_its_quarter_hours((i, readings) in dst_history()) {
        let (tz, (y, m, d), count, hours) = DST_DAYS[i];
        let (days, quarters) = around(tz, date(y, m, d));
        let dst_day = days[2];
        prop_assert_eq!(dst_day.end - dst_day.start, chrono::Duration::hours(hours));
        prop_assert_eq!(quarters_of(dst_day).len(), count);
        let pts = points(&readings);
        let by_quarter = usage_in_periods(&pts, &quarters, rules());
        prop_assert_eq!(&by_quarter, &model_quarters(&readings, &quarters));
        let first = span(days[0]).0;
        let by_day = usage_in_periods(&pts, &days, rules());
        let model = pairs(&readings);
        for (p, e) in days.iter().zip(&by_day) {
            prop_assert_eq!(*e, sum_within(&by_quarter, first, *p), "{:?}", p);
            prop_assert_eq!(*e, energy_in(&model, *p));
        }
        let all = Period { start: days[0].start, end: days[4].end };
        prop_assert_eq!(by_day.iter().copied().sum::<Energy>(), usage_in(&pts, all, rules()));
    }
}

fn offset_history() -> impl Strategy<Value = (Tz, u32, Vec<Reading>)> {
    (any::<bool>(), 1u32..=12).prop_flat_map(|(nepal, m)| {
        let tz = if nepal {
            chrono_tz::Asia::Kathmandu
        } else {
            chrono_tz::Asia::Kolkata
        };
        let (start, end) = span(month(2026, m, tz).unwrap());
        (
            Just(tz),
            Just(m),
            history(start - HOUR, end + HOUR, MIXED, true, 1000),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// In Kolkata (+5:30) and Kathmandu (+5:45) every local day starts on a UTC quarter hour
    /// (18:30 and 18:15 UTC), has 96 of them, and its usage is the sum of theirs; the days add
    /// up to the month, and each is the model's.
    #[test]
    fn days_off_the_hour_are_the_sum_of_their_utc_quarter_hours((tz, m, readings) in offset_history()) {
        let pts = points(&readings);
        let month_period = month(2026, m, tz).unwrap();
        let quarters = quarters_of(month_period);
        let first = span(month_period).0;
        let by_quarter = usage_in_periods(&pts, &quarters, rules());
        prop_assert_eq!(&by_quarter, &model_quarters(&readings, &quarters));
        let days = days_of_month(2026, m, tz).unwrap();
        let by_day = usage_in_periods(&pts, &days, rules());
        let model = pairs(&readings);
        let minute = if tz == chrono_tz::Asia::Kathmandu { 15 } else { 30 };
        for (p, e) in days.iter().zip(&by_day) {
            prop_assert_eq!((p.start.hour(), p.start.minute()), (18, minute));
            prop_assert_eq!(quarters_of(*p).len(), 96);
            prop_assert_eq!(*e, sum_within(&by_quarter, first, *p), "{:?}", p);
            prop_assert_eq!(*e, energy_in(&model, *p));
        }
        prop_assert_eq!(by_day.iter().copied().sum::<Energy>(), usage_in(&pts, month_period, rules()));
    }
}
