//! Usage maths (docs/accounting.md), the one place it is defined.
//!
//! Every pair of consecutive readings (a, b) contributes `max(0, b - a)` to the period that
//! holds `b`, unless the increase implies more than `max_power_kw` between them (a glitch).
//! Contributions are kept as whole nano-kWh so that sums are exact: the days of a month add up
//! to the month to the last digit, whatever order they are added in.

use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use chrono::{DateTime, Utc};

use crate::period::Period;

/// A register value at an instant: what usage is computed from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyPoint {
    pub time: DateTime<Utc>,
    pub energy_kwh: f64,
}

/// An amount of energy used, exact to the nano-kWh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usage {
    nano_kwh: i128,
}

const NANO_PER_KWH: f64 = 1e9;

impl Usage {
    pub const ZERO: Usage = Usage { nano_kwh: 0 };

    /// From a kWh figure (an increase, or a sum InfluxDB computed), rounded to the nano-kWh.
    pub fn from_kwh(kwh: f64) -> Self {
        if !kwh.is_finite() {
            return Self::ZERO;
        }
        Usage {
            // `as` saturates on overflow; a register increase that large is a glitch anyway.
            nano_kwh: (kwh * NANO_PER_KWH).round() as i128,
        }
    }

    /// The exact value in kWh, as near as an `f64` gets.
    pub fn kwh(self) -> f64 {
        self.nano_kwh as f64 / NANO_PER_KWH
    }

    /// The value rounded to 3 decimals (half away from zero), as reported.
    pub fn kwh_rounded(self) -> f64 {
        let micro = 1_000_000_i128;
        let half = micro / 2;
        let milli = if self.nano_kwh >= 0 {
            (self.nano_kwh + half) / micro
        } else {
            (self.nano_kwh - half) / micro
        };
        milli as f64 / 1000.0
    }

    /// The exact value in nano-kWh, as stored in the rollup.
    pub fn nano_kwh(self) -> i128 {
        self.nano_kwh
    }

    pub fn from_nano_kwh(nano_kwh: i128) -> Self {
        Usage { nano_kwh }
    }

    pub fn is_zero(self) -> bool {
        self.nano_kwh == 0
    }
}

impl Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            nano_kwh: self.nano_kwh.saturating_add(other.nano_kwh),
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        *self = *self + other;
    }
}

impl Sub for Usage {
    type Output = Usage;

    fn sub(self, other: Usage) -> Usage {
        Usage {
            nano_kwh: self.nano_kwh.saturating_sub(other.nano_kwh),
        }
    }
}

impl SubAssign for Usage {
    fn sub_assign(&mut self, other: Usage) {
        *self = *self - other;
    }
}

impl Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::ZERO, Add::add)
    }
}

/// Whether an increase of `increase_kwh` over `seconds` implies more than `max_power_kw`.
/// This is the glitch rule; InfluxQL queries that apply it in the database take their
/// threshold from [`max_kwh_per_nanosecond`] so both sides agree.
pub fn is_glitch(increase_kwh: f64, seconds: f64, max_power_kw: f64) -> bool {
    seconds <= 0.0 || increase_kwh * 3600.0 > max_power_kw * seconds
}

/// `max_power_kw` as the largest register increase per nanosecond that is not a glitch.
pub fn max_kwh_per_nanosecond(max_power_kw: f64) -> f64 {
    max_power_kw / 3.6e12
}

/// What the pair (a, b) contributes: the increase, or zero for a drop or a glitch.
pub fn pair_contribution(a: EnergyPoint, b: EnergyPoint, max_power_kw: f64) -> Usage {
    let increase = b.energy_kwh - a.energy_kwh;
    // Also catches NaN, which compares false with everything.
    if increase.is_nan() || increase <= 0.0 {
        return Usage::ZERO;
    }
    let elapsed = b.time - a.time;
    // Nanoseconds, as InfluxDB's `elapsed(…, 1ns)` counts them; beyond 292 years, milliseconds.
    let seconds = elapsed
        .num_nanoseconds()
        .map_or(elapsed.num_milliseconds() as f64 / 1e3, |ns| {
            ns as f64 / 1e9
        });
    if is_glitch(increase, seconds, max_power_kw) {
        return Usage::ZERO;
    }
    Usage::from_kwh(increase)
}

/// Usage in each of `periods` (sorted, non-overlapping) from `points` in any order, which should
/// include the last reading before the first period so that the first pair is not lost.
/// Readings outside every period only serve as the `a` of a pair.
pub fn usage_in_periods(
    points: &[EnergyPoint],
    periods: &[Period],
    max_power_kw: f64,
) -> Vec<Usage> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.time);
    let mut totals = vec![Usage::ZERO; periods.len()];
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let index = periods.partition_point(|p| p.end <= b.time);
        if let Some(period) = periods.get(index) {
            if period.contains(b.time) {
                totals[index] += pair_contribution(a, b, max_power_kw);
            }
        }
    }
    totals
}

/// Usage in one period.
pub fn usage_in(points: &[EnergyPoint], period: Period, max_power_kw: f64) -> Usage {
    usage_in_periods(points, &[period], max_power_kw)[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    const MAX_KW: f64 = 5000.0;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 17, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn p(minutes: i64, energy_kwh: f64) -> EnergyPoint {
        EnergyPoint {
            time: t(minutes),
            energy_kwh,
        }
    }

    fn whole(points: &[EnergyPoint]) -> f64 {
        usage_in(
            points,
            Period {
                start: t(-10_000),
                end: t(10_000),
            },
            MAX_KW,
        )
        .kwh()
    }

    #[test]
    fn increases_add_up() {
        assert_eq!(whole(&[p(0, 100.0), p(1, 100.5), p(2, 101.25)]), 1.25);
    }

    #[test]
    fn drop_in_energy_counts_as_zero_and_increases_after_it_count_again() {
        // 100 -> 101 (+1), reset to 0 (0), 0 -> 2 (+2): 3 kWh.
        assert_eq!(
            whole(&[p(0, 100.0), p(60, 101.0), p(120, 0.0), p(180, 2.0)]),
            3.0
        );
    }

    #[test]
    fn a_zero_glitch_does_not_bill_the_register_twice() {
        // The meter reports 0 for one minute and then its true register again: the jump back
        // to 1000 kWh in one minute would be 60 000 kW.
        let points = [p(0, 1000.0), p(1, 0.0), p(2, 1000.5), p(3, 1001.0)];
        assert_eq!(whole(&points), 0.5);
    }

    #[test]
    fn the_glitch_limit_is_inclusive() {
        // 5000 kW for one hour is exactly 5000 kWh: allowed; a hair more is not.
        assert_eq!(whole(&[p(0, 0.0), p(60, 5000.0)]), 5000.0);
        assert_eq!(whole(&[p(0, 0.0), p(60, 5000.001)]), 0.0);
    }

    #[test]
    fn a_pair_belongs_to_the_period_of_its_later_reading() {
        let day1 = Period {
            start: t(-1440),
            end: t(0),
        };
        let day2 = Period {
            start: t(0),
            end: t(1440),
        };
        let points = [p(-2, 10.0), p(-1, 11.0), p(1, 13.0), p(2, 14.0)];
        let u = usage_in_periods(&points, &[day1, day2], MAX_KW);
        assert_eq!(u[0].kwh(), 1.0);
        assert_eq!(
            u[1].kwh(),
            3.0,
            "the pair straddling midnight counts for the new day"
        );
    }

    #[test]
    fn reading_at_local_midnight_belongs_to_the_new_day() {
        let day1 = Period {
            start: t(-1440),
            end: t(0),
        };
        let day2 = Period {
            start: t(0),
            end: t(1440),
        };
        let u = usage_in_periods(&[p(-1, 10.0), p(0, 12.0)], &[day1, day2], MAX_KW);
        assert_eq!((u[0].kwh(), u[1].kwh()), (0.0, 2.0));
    }

    #[test]
    fn the_last_reading_before_the_period_opens_the_first_pair() {
        let today = Period {
            start: t(0),
            end: t(1440),
        };
        assert_eq!(
            usage_in(&[p(-500, 10.0), p(5, 10.5)], today, MAX_KW).kwh(),
            0.5
        );
        assert_eq!(usage_in(&[p(5, 10.5)], today, MAX_KW), Usage::ZERO);
    }

    #[test]
    fn rounding_is_to_three_decimals_half_away_from_zero() {
        assert_eq!(Usage::from_kwh(42.1245).kwh_rounded(), 42.125);
        assert_eq!(Usage::from_kwh(42.1244).kwh_rounded(), 42.124);
        assert_eq!(Usage::from_kwh(0.0005).kwh_rounded(), 0.001);
    }

    #[test]
    fn simultaneous_different_readings_are_a_glitch() {
        let a = p(0, 1.0);
        let b = EnergyPoint {
            time: a.time,
            energy_kwh: 2.0,
        };
        assert_eq!(pair_contribution(a, b, MAX_KW), Usage::ZERO);
    }
}
