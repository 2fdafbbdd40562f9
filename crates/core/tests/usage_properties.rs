//! Property tests of the usage maths (docs/accounting.md) on random histories.

use chrono::{DateTime, Duration, TimeZone, Utc};
use energy_core::period::{days_of_month, month};
use energy_core::usage::{usage_in, usage_in_periods};
use energy_core::{EnergyPoint, MaxPower, Usage};
use proptest::prelude::*;

fn max_kw() -> MaxPower {
    "5000".parse().unwrap()
}

fn base() -> DateTime<Utc> {
    // 2026-02-01 00:00 in Asia/Kolkata (UTC+05:30), a zone with a half-hour offset.
    Utc.with_ymd_and_hms(2026, 1, 31, 18, 30, 0).unwrap()
}

/// A random history around February 2026: readings at random minutes (some before the month,
/// some after), a register that mostly rises, with resets to 0 and glitches mixed in.
fn history() -> impl Strategy<Value = Vec<EnergyPoint>> {
    prop::collection::vec((-3_000i64..43_000, 0u8..100, 0.0f64..50.0), 0..120).prop_map(|steps| {
        let mut minutes: Vec<(i64, u8, f64)> = steps;
        minutes.sort_by_key(|s| s.0);
        minutes.dedup_by_key(|s| s.0);
        let mut register = 1_000.0;
        minutes
            .into_iter()
            .map(|(minute, event, step)| {
                let energy_kwh = match event {
                    0..=4 => 0.0,            // meter reset or a zero glitch
                    5..=7 => register + 1e6, // a spike far above what any panel draws
                    _ => {
                        register += step;
                        register
                    }
                };
                EnergyPoint {
                    time: base() + Duration::minutes(minute),
                    energy_kwh,
                }
            })
            .collect()
    })
}

fn february() -> energy_core::Period {
    month(2026, 2, chrono_tz::Asia::Kolkata).unwrap()
}

proptest! {
    #[test]
    fn usage_is_never_negative(points in history()) {
        prop_assert!(usage_in(&points, february(), max_kw()) >= Usage::ZERO);
    }

    #[test]
    fn the_days_of_a_month_add_up_exactly_to_the_month(points in history()) {
        let days = days_of_month(2026, 2, chrono_tz::Asia::Kolkata).unwrap();
        let by_day: Usage = usage_in_periods(&points, &days, max_kw()).into_iter().sum();
        prop_assert_eq!(by_day, usage_in(&points, february(), max_kw()));
    }

    #[test]
    fn a_duplicated_reading_changes_nothing(points in history(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!points.is_empty());
        let mut doubled = points.clone();
        doubled.push(points[pick.index(points.len())]);
        prop_assert_eq!(usage_in(&doubled, february(), max_kw()), usage_in(&points, february(), max_kw()));
    }

    #[test]
    fn reordering_the_input_gives_the_same_answer(points in history(), seed in any::<u64>()) {
        let mut shuffled = points.clone();
        // A deterministic shuffle from the seed (no RNG crate needed).
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        prop_assert_eq!(usage_in(&shuffled, february(), max_kw()), usage_in(&points, february(), max_kw()));
    }

    #[test]
    fn a_reset_contributes_zero_and_counting_resumes(before in 1.0f64..10_000.0, after in 0.0f64..10.0) {
        let p = |minute: i64, energy_kwh: f64| EnergyPoint { time: base() + Duration::minutes(minute), energy_kwh };
        let points = [p(10, before), p(20, 0.0), p(30, after)];
        prop_assert_eq!(usage_in(&points, february(), max_kw()), Usage::from_kwh(after));
    }
}
