//! The rollup answers exactly what the raw maths answers (docs/accounting.md), for random histories,
//! zones with non-whole-hour offsets and DST, and any progress of the rollup.
//!
//! The reading side is modelled as the API does it: [`split`] a local day or month into pieces,
//! sum 15-minute buckets, UTC days and UTC months for the rolled-up pieces (subtracting the
//! buckets a month sum holds beyond the period), and compute the raw pieces from the readings
//! (with the pair that straddles each piece's start). Rollups with and without month sums.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use energy_core::period::{day, month};
use energy_core::rollup::{buckets, day_of, month_of, split, Bucket, Coverage};
use energy_core::usage::usage_in;
use energy_core::{EnergyPoint, MaxPower, Period, Usage};
use proptest::prelude::*;

fn max_kw() -> MaxPower {
    "5000".parse().unwrap()
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

type Sums = BTreeMap<DateTime<Utc>, Usage>;

/// The rollup of `points`: buckets by start, and UTC days and months summed from them.
fn rollup(points: &[EnergyPoint]) -> (Vec<Bucket>, Sums, Sums) {
    let quarters = buckets(points, DateTime::<Utc>::MIN_UTC, max_kw());
    let mut days = Sums::new();
    let mut months = Sums::new();
    for bucket in &quarters {
        *days
            .entry(day_of(bucket.start).start)
            .or_insert(Usage::ZERO) += bucket.usage;
        *months
            .entry(month_of(bucket.start).start)
            .or_insert(Usage::ZERO) += bucket.usage;
    }
    (quarters, days, months)
}

fn in_periods<'a>(
    sums: &'a Sums,
    periods: impl IntoIterator<Item = &'a Period> + 'a,
) -> impl Iterator<Item = Usage> + 'a {
    periods
        .into_iter()
        .flat_map(move |p| sums.iter().filter(move |(start, _)| p.contains(**start)))
        .map(|(_, usage)| *usage)
}

fn from_rollup(
    points: &[EnergyPoint],
    period: Period,
    until: Option<DateTime<Utc>>,
    months: bool,
) -> Usage {
    let (quarters, days, month_sums) = rollup(points);
    let quarter_sums: Sums = quarters.iter().map(|b| (b.start, b.usage)).collect();
    let coverage = until.map(|complete_until| Coverage {
        complete_until,
        months,
    });
    let pieces = split(period, coverage);
    let raw: Usage = pieces
        .raw
        .iter()
        .map(|r| usage_in(points, *r, max_kw()))
        .sum();
    let quarter: Usage = in_periods(&quarter_sums, &pieces.quarters).sum();
    let day: Usage = in_periods(&days, &pieces.days).sum();
    let month: Usage = in_periods(&month_sums, &pieces.months).sum();
    let less: Usage = in_periods(&quarter_sums, &pieces.less_quarters).sum();
    raw + quarter + day + month - less
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
            usage_in(&points, march, max_kw())
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
            usage_in(&points, local_day, max_kw())
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
            usage_in(&points, period, max_kw())
        );
    }
}
