//! Property tests of the usage maths (docs/accounting.md) on random histories: every pair of
//! consecutive readings spread over its time per UTC quarter hour, its estimated part, drops
//! and glitches. Where a test checks figures they come from the reference model of `common`
//! (integer registers, the largest-remainder rule by sorting); the tests on `float_history`
//! check relations only (order, repeats, days against their month).

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{
    energy, energy_in, history, pairs, period, points, rules, Reading, CLOSE, DAY, GLITCH_UNITS,
    HOUR, MINUTE, MIXED, NANO_PER_UNIT, SECOND, SPARSE, UNITS_PER_KWH,
};
use energy_core::period::{days_of_month, month};
use energy_core::usage::{usage_in, usage_in_periods, Energy};
use energy_core::{EnergyPoint, Period, Usage};
use proptest::prelude::*;

fn base() -> DateTime<Utc> {
    // 2026-02-01 00:00 in Asia/Kolkata (UTC+05:30), a zone with a half-hour offset.
    Utc.with_ymd_and_hms(2026, 1, 31, 18, 30, 0).unwrap()
}

/// A random history around February 2026: readings at random minutes (some before the month,
/// some after), a register that mostly rises, with resets to 0 and glitches mixed in.
fn float_history() -> impl Strategy<Value = Vec<EnergyPoint>> {
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

fn february() -> Period {
    month(2026, 2, chrono_tz::Asia::Kolkata).unwrap()
}

fn february_days() -> Vec<Period> {
    days_of_month(2026, 2, chrono_tz::Asia::Kolkata).unwrap()
}

/// A history in integer units around February 2026 (Kolkata), from a day before to a day after.
fn model_history(gaps: common::Gaps, anomalies: bool) -> impl Strategy<Value = Vec<Reading>> {
    let (start, end) = common::span(february());
    history(start - DAY, end + DAY, gaps, anomalies, 400)
}

/// An instant from a day before February (Kolkata) to a day after it.
fn around_february() -> impl Strategy<Value = i64> {
    let (start, end) = common::span(february());
    (start - DAY)..(end + DAY)
}

fn sum(energies: &[Energy]) -> Energy {
    energies.iter().copied().sum()
}

proptest! {
    #[test]
    fn usage_is_never_negative_and_the_estimate_never_exceeds_it(points in float_history()) {
        for e in usage_in_periods(&points, &february_days(), rules()) {
            prop_assert!(e.usage >= Usage::ZERO);
            prop_assert!(e.estimated >= Usage::ZERO && e.estimated <= e.usage, "{:?}", e);
        }
    }

    #[test]
    fn the_days_of_a_month_add_up_exactly_to_the_month(points in float_history()) {
        let by_day = sum(&usage_in_periods(&points, &february_days(), rules()));
        prop_assert_eq!(by_day, usage_in(&points, february(), rules()));
    }

    #[test]
    fn a_duplicated_reading_changes_nothing(points in float_history(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!points.is_empty());
        let mut doubled = points.clone();
        doubled.push(points[pick.index(points.len())]);
        prop_assert_eq!(
            usage_in_periods(&doubled, &february_days(), rules()),
            usage_in_periods(&points, &february_days(), rules())
        );
    }

    #[test]
    fn reordering_the_input_gives_the_same_answer(points in float_history(), seed in any::<u64>()) {
        let mut shuffled = points.clone();
        // A deterministic shuffle from the seed (no RNG crate needed).
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        prop_assert_eq!(
            usage_in_periods(&shuffled, &february_days(), rules()),
            usage_in_periods(&points, &february_days(), rules())
        );
    }

    #[test]
    fn a_reset_contributes_zero_and_counting_resumes(before in 1.0f64..10_000.0, after in 0.0f64..10.0) {
        let p = |minute: i64, energy_kwh: f64| EnergyPoint { time: base() + Duration::minutes(minute), energy_kwh };
        let points = [p(10, before), p(20, 0.0), p(30, after)];
        let e = usage_in(&points, february(), rules());
        prop_assert_eq!(e.usage, Usage::from_kwh(after));
        prop_assert_eq!(e.estimated, Usage::ZERO, "readings 10 minutes apart are not a gap");
    }

    /// The library against the model, for the days of the month, the month, and any period.
    #[test]
    fn usage_in_any_period_is_the_sum_of_the_models_shares(
        readings in model_history(MIXED, true),
        ends in (around_february(), around_february()),
    ) {
        let model = pairs(&readings);
        let pts = points(&readings);
        let days = february_days();
        let by_day = usage_in_periods(&pts, &days, rules());
        for (day, e) in days.iter().zip(&by_day) {
            prop_assert_eq!(*e, energy_in(&model, *day), "{:?}", day);
        }
        prop_assert_eq!(usage_in(&pts, february(), rules()), energy_in(&model, february()));
        let any = period(ends.0.min(ends.1), ends.0.max(ends.1));
        prop_assert_eq!(usage_in(&pts, any, rules()), energy_in(&model, any));
    }

    /// Cut a period anywhere (to the nanosecond, off the quarter-hour grid): the pieces add up
    /// to the period, for usage and for the estimated part, and each is the model's.
    #[test]
    fn any_partition_of_a_period_adds_up_exactly(
        readings in model_history(MIXED, true),
        ends in (around_february(), around_february()),
        cuts in prop::collection::vec(around_february(), 0..40),
    ) {
        let (from, to) = (ends.0.min(ends.1), ends.0.max(ends.1));
        let mut bounds: Vec<i64> = cuts.into_iter().filter(|c| from < *c && *c < to).collect();
        bounds.push(from);
        bounds.push(to);
        bounds.sort_unstable();
        bounds.dedup();
        let pieces: Vec<Period> = bounds.windows(2).map(|w| period(w[0], w[1])).collect();
        let pts = points(&readings);
        let by_piece = usage_in_periods(&pts, &pieces, rules());
        let whole = usage_in(&pts, period(from, to), rules());
        prop_assert_eq!(sum(&by_piece), whole);
        let model = pairs(&readings);
        prop_assert_eq!(whole, energy_in(&model, period(from, to)));
        for (piece, e) in pieces.iter().zip(&by_piece) {
            prop_assert_eq!(*e, energy_in(&model, *piece));
        }
    }

    /// Shuffled, with some readings repeated any number of times: the same figures.
    #[test]
    fn the_order_of_readings_and_repeated_readings_change_nothing(
        (readings, shuffled) in model_history(MIXED, true).prop_flat_map(|readings| {
            let n = readings.len();
            (Just(readings), prop::collection::vec((0..n, 1usize..4), 0..20))
        }).prop_flat_map(|(readings, repeats)| {
            let mut all = readings.clone();
            for (i, times) in repeats {
                all.extend(std::iter::repeat_n(readings[i], times));
            }
            (Just(readings), Just(all).prop_shuffle())
        }),
    ) {
        let days = february_days();
        let model = pairs(&readings);
        let expected: Vec<Energy> = days.iter().map(|d| energy_in(&model, *d)).collect();
        prop_assert_eq!(usage_in_periods(&points(&readings), &days, rules()), expected.clone());
        prop_assert_eq!(usage_in_periods(&points(&shuffled), &days, rules()), expected);
    }

    /// A drop of the register, or a jump of a glitch, in one pair: the figures are those of the
    /// same history with that pair flat (the later readings shifted by the same amount), and
    /// the total is the sum of the other pairs' increases.
    #[test]
    fn a_reset_or_a_glitch_contributes_zero(
        readings in model_history(MIXED, false),
        pick in any::<prop::sample::Index>(),
        drop in any::<u64>(),
        glitch in any::<bool>(),
    ) {
        prop_assume!(readings.len() >= 2);
        let k = 1 + pick.index(readings.len() - 1);
        let rise = readings[k].units - readings[k - 1].units;
        // The flat history: pair k has no increase; every reading from k on is lower by `rise`.
        let flat: Vec<Reading> = readings.iter().enumerate().map(|(i, r)| Reading {
            t: r.t,
            units: if i >= k { r.units - rise } else { r.units },
        }).collect();
        let before = flat[k - 1].units;
        // Pair k drops (to anything from 0 to a unit below) or jumps by a glitch instead.
        let shift = if glitch { GLITCH_UNITS } else { -(1 + (drop % before as u64) as i64) };
        let changed: Vec<Reading> = flat.iter().enumerate().map(|(i, r)| Reading {
            t: r.t,
            units: if i >= k { r.units + shift } else { r.units },
        }).collect();
        let days = february_days();
        prop_assert_eq!(
            usage_in_periods(&points(&changed), &days, rules()),
            usage_in_periods(&points(&flat), &days, rules())
        );
        // Over all of it: the other pairs' increases, summed here from the registers.
        let all = period(readings[0].t, readings[readings.len() - 1].t);
        let others: i128 = readings
            .windows(2)
            .enumerate()
            .filter(|(i, _)| i + 1 != k)
            .map(|(_, w)| i128::from(w[1].units - w[0].units) * NANO_PER_UNIT)
            .sum();
        let total = usage_in(&points(&changed), all, rules());
        prop_assert_eq!(total.usage, Usage::from_nano_kwh(others));
        // And the original history has that pair's increase on top.
        let original = usage_in(&points(&readings), all, rules());
        prop_assert_eq!(original.usage - total.usage, Usage::from_nano_kwh(i128::from(rise) * NANO_PER_UNIT));
    }

    #[test]
    fn the_estimate_never_exceeds_the_usage(
        readings in model_history(MIXED, true),
        ends in prop::collection::vec(around_february(), 2..20),
    ) {
        let mut bounds = ends;
        bounds.sort_unstable();
        bounds.dedup();
        let pieces: Vec<Period> = bounds.windows(2).map(|w| period(w[0], w[1])).collect();
        let mut periods = february_days();
        periods.push(february());
        let pts = points(&readings);
        for p in pieces.iter().chain(&periods) {
            let e = usage_in(&pts, *p, rules());
            prop_assert!(Usage::ZERO <= e.estimated && e.estimated <= e.usage, "{:?}: {:?}", p, e);
        }
    }

    /// Readings over the first two days of February, never more than 15 minutes apart: nothing
    /// is estimated, in the days, their quarter hours or any period.
    #[test]
    fn readings_at_most_15_minutes_apart_estimate_nothing(
        (readings, ends) in {
            let start = common::span(february()).0;
            let window = (start - HOUR)..(start + 2 * DAY);
            (
                history(start - HOUR, start + 2 * DAY, CLOSE, true, 600),
                (window.clone(), window),
            )
        },
    ) {
        let any = period(ends.0.min(ends.1), ends.0.max(ends.1));
        let pts = points(&readings);
        let model = pairs(&readings);
        let days = &february_days()[..2];
        let quarters = common::quarters_of(Period { start: days[0].start, end: days[1].end });
        let by_quarter = usage_in_periods(&pts, &quarters, rules());
        for (q, e) in quarters.iter().zip(&by_quarter) {
            prop_assert_eq!(e.estimated, Usage::ZERO);
            prop_assert_eq!(*e, energy_in(&model, *q));
        }
        for p in days.iter().copied().chain([any]) {
            let e = usage_in(&pts, p, rules());
            prop_assert_eq!(e.estimated, Usage::ZERO);
            prop_assert_eq!(e, energy_in(&model, p));
        }
    }

    #[test]
    fn readings_more_than_15_minutes_apart_are_all_estimated(
        readings in model_history(SPARSE, true),
        ends in (around_february(), around_february()),
    ) {
        let any = period(ends.0.min(ends.1), ends.0.max(ends.1));
        let pts = points(&readings);
        let model = pairs(&readings);
        for p in february_days().into_iter().chain([february(), any]) {
            let e = usage_in(&pts, p, rules());
            prop_assert_eq!(e.estimated, e.usage);
            prop_assert_eq!(e, energy_in(&model, p));
        }
    }
}

#[test]
fn a_pair_of_exactly_15_minutes_is_not_estimated_and_a_nanosecond_more_is() {
    let start = common::ns(base());
    let units = 1000 * UNITS_PER_KWH;
    let pair = |len: i64| {
        points(&[
            Reading { t: start, units },
            Reading {
                t: start + len,
                units: units + UNITS_PER_KWH,
            },
        ])
    };
    let whole = period(start - HOUR, start + HOUR);
    let kwh = 1_000_000_000;
    assert_eq!(usage_in(&pair(15 * MINUTE), whole, rules()), energy(kwh, 0));
    assert_eq!(
        usage_in(&pair(15 * MINUTE + 1), whole, rules()),
        energy(kwh, kwh)
    );
    assert_eq!(
        usage_in(&pair(15 * MINUTE - SECOND), whole, rules()),
        energy(kwh, 0)
    );
    // Estimated in every period the pair overlaps, and nowhere else.
    let after = period(start + 15 * MINUTE + 1, start + HOUR);
    assert_eq!(
        usage_in(&pair(15 * MINUTE + 1), after, rules()),
        Energy::ZERO
    );
}
