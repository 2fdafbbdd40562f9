//! The rollup answers exactly what the raw maths answers (CONTRACT §5), for random histories,
//! zones with non-whole-hour offsets and DST, and any progress of the rollup.
//!
//! The reading side is modelled as the API does it: [`split`] a local day or month into pieces,
//! sum 15-minute buckets and UTC days for the rolled-up pieces, and compute the raw pieces from
//! the readings (with the pair that straddles each piece's start).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use energy_core::period::{day, month};
use energy_core::rollup::{buckets, day_of, split, Bucket};
use energy_core::usage::usage_in;
use energy_core::{EnergyPoint, Period, Usage};
use proptest::prelude::*;

const MAX_KW: f64 = 5000.0;

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

/// The rollup of `points`: buckets by start, and UTC days summed from them.
fn rollup(points: &[EnergyPoint]) -> (Vec<Bucket>, BTreeMap<DateTime<Utc>, Usage>) {
    let quarters = buckets(points, DateTime::<Utc>::MIN_UTC, MAX_KW);
    let mut days = BTreeMap::new();
    for bucket in &quarters {
        *days
            .entry(day_of(bucket.start).start)
            .or_insert(Usage::ZERO) += bucket.usage;
    }
    (quarters, days)
}

fn from_rollup(points: &[EnergyPoint], period: Period, until: Option<DateTime<Utc>>) -> Usage {
    let (quarters, days) = rollup(points);
    let pieces = split(period, until);
    let raw: Usage = pieces
        .raw
        .iter()
        .map(|r| usage_in(points, *r, MAX_KW))
        .sum();
    let quarter: Usage = pieces
        .quarters
        .iter()
        .flat_map(|q| quarters.iter().filter(move |b| q.contains(b.start)))
        .map(|b| b.usage)
        .sum();
    let day: Usage = pieces
        .days
        .iter()
        .flat_map(|d| days.iter().filter(move |(start, _)| d.contains(**start)))
        .map(|(_, usage)| *usage)
        .sum();
    raw + quarter + day
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_local_month_from_the_rollup_equals_the_raw_maths(
        points in history(),
        zone in 0usize..ZONES.len(),
        until in prop::option::of(0i64..45 * 86_400),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap();
        let until = until.map(|s| base() + Duration::seconds(s));
        let march = month(2026, 3, tz).unwrap();
        prop_assert_eq!(from_rollup(&points, march, until), usage_in(&points, march, MAX_KW));
    }

    #[test]
    fn a_local_day_from_the_rollup_equals_the_raw_maths(
        points in history(),
        zone in 0usize..ZONES.len(),
        date in 0i64..40,
        until in prop::option::of(0i64..45 * 86_400),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap();
        let until = until.map(|s| base() + Duration::seconds(s));
        let date = (base() + Duration::days(date)).date_naive();
        let local_day = day(date, tz);
        prop_assert_eq!(from_rollup(&points, local_day, until), usage_in(&points, local_day, MAX_KW));
    }

    #[test]
    fn any_period_from_the_rollup_equals_the_raw_maths(
        points in history(),
        start in 0i64..40 * 86_400,
        length in 0i64..20 * 86_400,
        until in prop::option::of(0i64..45 * 86_400),
    ) {
        // Arbitrary, unaligned bounds: the ends that are not whole buckets go raw.
        let period = Period {
            start: base() + Duration::seconds(start),
            end: base() + Duration::seconds(start + length),
        };
        let until = until.map(|s| base() + Duration::seconds(s));
        prop_assert_eq!(from_rollup(&points, period, until), usage_in(&points, period, MAX_KW));
    }
}
