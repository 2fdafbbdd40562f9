//! The rollup answers exactly what the raw maths answers (docs/accounting.md), for random histories,
//! zones with non-whole-hour offsets and DST, and any progress of the rollup.
//!
//! The reading side is modelled as the API does it: [`split`] a local day or month into pieces,
//! sum 15-minute buckets, UTC days and UTC months for the rolled-up pieces (subtracting the
//! buckets a month sum holds beyond the period), and compute the raw pieces from the readings
//! (with the pairs that straddle each piece's ends). Usage and its estimated part; rollups
//! with and without month sums. Last, `buckets` itself against `usage_in` and the model of
//! `common`.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use energy_core::period::{day, month};
use energy_core::rollup::{buckets, day_of, month_of, split, Bucket, Coverage};
use energy_core::usage::{usage_in, Energy, EstimateAfter, Rules};
use energy_core::{EnergyPoint, Period, Usage};
use proptest::prelude::*;

use common::{Reading, DAY, GRID};

fn rules() -> Rules {
    Rules::new("5000".parse().unwrap(), EstimateAfter::DEFAULT)
}

const ZONES: [&str; 6] = [
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Jakarta",
];

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap()
}

/// Readings at random seconds over ~40 days around March 2026 (DST starts in New York and ends
/// on Lord Howe and Chatham in that span), a register that mostly rises, with resets and spikes.
fn history() -> impl Strategy<Value = Vec<EnergyPoint>> {
    prop::collection::vec((0i64..40 * 86_400, 0u8..100, 0.0f64..40.0), 0..300).prop_map(|steps| {
        let mut steps = steps;
        steps.sort_by_key(|s| s.0);
        steps.dedup_by_key(|s| s.0);
        let mut register = 500.0;
        steps
            .into_iter()
            .map(|(second, event, step)| {
                let energy_kwh = match event {
                    0..=3 => 0.0,
                    4..=6 => register + 1e6,
                    _ => {
                        register += step;
                        register
                    }
                };
                EnergyPoint {
                    time: base() + Duration::seconds(second),
                    energy_kwh,
                }
            })
            .collect()
    })
}

type Sums = BTreeMap<DateTime<Utc>, Energy>;

/// Every bucket the rollup may hold for a history of [`history`] (which lies in
/// `[base, base + 40 days)`): from the UTC month before it to well after it.
fn window() -> Period {
    Period {
        start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
    }
}

/// The rollup of `points`: buckets by start, and UTC days and months summed from them.
fn rollup(points: &[EnergyPoint]) -> (Vec<Bucket>, Sums, Sums) {
    let quarters = buckets(points, window(), rules());
    let mut days = Sums::new();
    let mut months = Sums::new();
    for bucket in &quarters {
        *days.entry(day_of(bucket.start).start).or_default() += bucket.energy();
        *months.entry(month_of(bucket.start).start).or_default() += bucket.energy();
    }
    (quarters, days, months)
}

fn in_periods<'a>(
    sums: &'a Sums,
    periods: impl IntoIterator<Item = &'a Period> + 'a,
) -> impl Iterator<Item = Energy> + 'a {
    periods
        .into_iter()
        .flat_map(move |p| sums.range(p.start..p.end))
        .map(|(_, usage)| *usage)
}

fn from_rollup(
    points: &[EnergyPoint],
    period: Period,
    until: Option<DateTime<Utc>>,
    months: bool,
) -> Energy {
    let (quarters, days, month_sums) = rollup(points);
    let quarter_sums: Sums = quarters.iter().map(|b| (b.start, b.energy())).collect();
    let coverage = until.map(|complete_until| Coverage {
        complete_until,
        months,
        hours: false,
    });
    let pieces = split(period, coverage);
    let raw: Energy = pieces
        .raw
        .iter()
        .map(|r| usage_in(points, *r, rules()))
        .sum();
    let quarter: Energy = in_periods(&quarter_sums, &pieces.quarters).sum();
    let day: Energy = in_periods(&days, &pieces.days).sum();
    let month: Energy = in_periods(&month_sums, &pieces.months).sum();
    let less: Energy = in_periods(&quarter_sums, &pieces.less_quarters).sum();
    raw + quarter + day + month - less
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_local_month_from_the_rollup_equals_the_raw_maths(
        points in history(),
        zone in 0usize..ZONES.len(),
        until in prop::option::of(0i64..45 * 86_400),
        months in any::<bool>(),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap();
        let until = until.map(|s| base() + Duration::seconds(s));
        let march = month(2026, 3, tz).unwrap();
        prop_assert_eq!(
            from_rollup(&points, march, until, months),
            usage_in(&points, march, rules())
        );
    }

    #[test]
    fn a_local_day_from_the_rollup_equals_the_raw_maths(
        points in history(),
        zone in 0usize..ZONES.len(),
        date in 0i64..40,
        until in prop::option::of(0i64..45 * 86_400),
        months in any::<bool>(),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap();
        let until = until.map(|s| base() + Duration::seconds(s));
        let date = (base() + Duration::days(date)).date_naive();
        let local_day = day(date, tz);
        prop_assert_eq!(
            from_rollup(&points, local_day, until, months),
            usage_in(&points, local_day, rules())
        );
    }

    #[test]
    fn any_period_from_the_rollup_equals_the_raw_maths(
        points in history(),
        start in 0i64..40 * 86_400,
        length in 0i64..40 * 86_400,
        until in prop::option::of(0i64..45 * 86_400),
        months in any::<bool>(),
    ) {
        // Arbitrary, unaligned bounds: the ends that are not whole buckets go raw.
        let period = Period {
            start: base() + Duration::seconds(start),
            end: base() + Duration::seconds(start + length),
        };
        let until = until.map(|s| base() + Duration::seconds(s));
        prop_assert_eq!(
            from_rollup(&points, period, until, months),
            usage_in(&points, period, rules())
        );
    }
}

/// A window of whole quarter hours from a day before [`base`] to 41 days after it.
fn quarter_window() -> impl Strategy<Value = (i64, i64)> {
    let first = common::ns(base()) / GRID - 96;
    let quarters: i64 = 42 * 96;
    (0..quarters, 0..quarters).prop_map(move |(a, b)| {
        let (a, b) = (a.min(b), a.max(b));
        ((first + a) * GRID, (first + b) * GRID)
    })
}

proptest! {
    /// `buckets` given the readings of a window, the last one before it and the first at or
    /// after its end: its buckets add up to `usage_in` over the window (from every reading),
    /// each is the model's quarter hour, and they are exactly the quarter hours of the window
    /// that a pair overlaps or a reading lies in.
    #[test]
    fn the_buckets_of_a_window_add_up_to_its_usage(
        readings in common::history(
            common::ns(base()),
            common::ns(base()) + 40 * DAY,
            common::MIXED,
            true,
            300,
        ),
        (from, to) in quarter_window(),
    ) {
        let window = common::period(from, to);
        let before = readings.iter().rev().find(|r| r.t < from);
        let after = readings.iter().find(|r| r.t >= to);
        let inside: Vec<Reading> = readings.iter().copied().filter(|r| from <= r.t && r.t < to).collect();
        let given: Vec<Reading> = before.into_iter().copied().chain(inside.iter().copied()).chain(after.copied()).collect();
        let got = buckets(&common::points(&given), window, rules());

        let all = common::points(&readings);
        let total: Energy = got.iter().map(Bucket::energy).sum();
        prop_assert_eq!(total, usage_in(&all, window, rules()));
        let model = common::pairs(&readings);
        prop_assert_eq!(total, common::energy_in(&model, window));

        let quarters = common::by_quarter(&model);
        let mut expected_starts = std::collections::BTreeSet::new();
        if let (Some(first), Some(last)) = (given.first(), given.last()) {
            for q in (from..to).step_by(GRID as usize) {
                if q < last.t && q + GRID > first.t {
                    expected_starts.insert(q);
                }
            }
        }
        for r in &inside {
            expected_starts.insert(r.t.div_euclid(GRID) * GRID);
        }
        let starts: Vec<i64> = got.iter().map(|b| common::ns(b.start)).collect();
        prop_assert_eq!(&starts, &expected_starts.into_iter().collect::<Vec<_>>());
        for bucket in &got {
            let q = common::ns(bucket.start);
            let (usage, estimated) = quarters.get(&q).copied().unwrap_or((0, 0));
            prop_assert_eq!(bucket.energy(), common::energy(usage, estimated), "{}", bucket.start);
            let held = inside.iter().filter(|r| r.t.div_euclid(GRID) * GRID == q).count();
            prop_assert_eq!(bucket.readings, held as u64);
            prop_assert!(bucket.estimated <= bucket.usage && bucket.estimated >= Usage::ZERO);
        }
    }
}
