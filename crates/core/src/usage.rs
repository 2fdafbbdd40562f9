//! Usage maths (docs/accounting.md), the one place it is defined.
//!
//! Every pair of consecutive readings (a, b) has an increase `max(0, b - a)`, or 0 when it
//! implies more than [`MaxPower`] between them (a glitch). The increase is spread evenly over
//! `[a.t, b.t)` ([`crate::apportion`]), and a period's usage is the sum of the shares that fall
//! in it; the share of a pair longer than [`EstimateAfter`] is also counted as estimated.
//! Amounts are kept as whole nano-kWh so that sums are exact: the days of a month add up to the
//! month to the last digit, whatever order they are added in.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::apportion::Spread;
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

    /// This amount `k` times (negative for a difference), saturating like `+` and `-`.
    pub fn times(self, k: i64) -> Usage {
        Usage {
            nano_kwh: self.nano_kwh.saturating_mul(i128::from(k)),
        }
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

/// `MAX_POWER_KW`, the threshold of the glitch rule: an increase implying more power than this
/// on average between two readings is a glitch and counts as 0 (docs/accounting.md).
///
/// The only way to hold the threshold, and the only place it is parsed: [`MaxPower::from_kw`]
/// (and [`str::parse`], which goes through it) accepts finite values > 0 and nothing else, so
/// every `MaxPower` is one. The settings of the api-server and the subscriber parse into it,
/// and so does the value read back from the rollup's state. It displays as the `f64` it holds
/// (`5000`); [`MaxPower::kw`] gives that `f64` for the rollup's state field, which is written
/// with `{:?}` (`5000.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxPower(f64);

/// A value that is not a usable [`MaxPower`]; names the value as it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a power in kW (a finite number > 0)")]
pub struct InvalidMaxPower {
    value: String,
}

impl MaxPower {
    /// The threshold of `kw` kilowatts, if it is finite and > 0.
    pub fn from_kw(kw: f64) -> Result<Self, InvalidMaxPower> {
        if kw.is_finite() && kw > 0.0 {
            Ok(MaxPower(kw))
        } else {
            Err(InvalidMaxPower {
                value: kw.to_string(),
            })
        }
    }

    /// The threshold in kW.
    pub fn kw(self) -> f64 {
        self.0
    }

    /// Whether an increase of `increase_kwh` over `seconds` implies more than this power: the
    /// glitch rule. An increase of exactly the threshold is not a glitch; no time at all is.
    /// InfluxQL queries that apply the rule in the database take their threshold from
    /// [`MaxPower::max_kwh_per_nanosecond`] so both sides agree.
    pub fn is_glitch(self, increase_kwh: f64, seconds: f64) -> bool {
        seconds <= 0.0 || increase_kwh * 3600.0 > self.0 * seconds
    }

    /// The threshold as the largest register increase per nanosecond that is not a glitch.
    pub fn max_kwh_per_nanosecond(self) -> f64 {
        self.0 / 3.6e12
    }
}

impl FromStr for MaxPower {
    type Err = InvalidMaxPower;

    /// A decimal number as Rust reads an `f64` (`5000`, `0.5`, `1e3`), finite and > 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<f64>()
            .ok()
            .and_then(|kw| MaxPower::from_kw(kw).ok())
            .ok_or_else(|| InvalidMaxPower {
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for MaxPower {
    /// The number as `f64` displays it (`5000`, `1234.5`): [`str::parse`] reads it back exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What the pair (a, b) contributes: the increase, or zero for a drop or a glitch.
pub fn pair_contribution(a: EnergyPoint, b: EnergyPoint, max_power_kw: MaxPower) -> Usage {
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
    if max_power_kw.is_glitch(increase, seconds) {
        return Usage::ZERO;
    }
    Usage::from_kwh(increase)
}

/// `ESTIMATE_AFTER_SECS`: a pair of readings further apart than this is a gap, and its share
/// of any period is *estimated* (docs/accounting.md). Whole seconds from 1 to a year; the
/// rollup records the value it was computed with, like [`MaxPower`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstimateAfter(u32);

/// A value that is not a usable [`EstimateAfter`]; names the value as it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a number of seconds from 1 to 31536000")]
pub struct InvalidEstimateAfter {
    value: String,
}

impl EstimateAfter {
    /// The default: a quarter hour.
    pub const DEFAULT: EstimateAfter = EstimateAfter(900);
    const MAX_SECS: u32 = 365 * 86_400;

    pub fn from_secs(secs: u32) -> Result<Self, InvalidEstimateAfter> {
        if (1..=Self::MAX_SECS).contains(&secs) {
            Ok(EstimateAfter(secs))
        } else {
            Err(InvalidEstimateAfter {
                value: secs.to_string(),
            })
        }
    }

    pub fn secs(self) -> u32 {
        self.0
    }

    /// Whether a pair `nanos` long is a gap whose share is estimated: strictly longer than
    /// the threshold.
    pub fn is_gap(self, nanos: i128) -> bool {
        nanos > i128::from(self.0) * 1_000_000_000
    }
}

impl Default for EstimateAfter {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for EstimateAfter {
    type Err = InvalidEstimateAfter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>()
            .ok()
            .and_then(|secs| EstimateAfter::from_secs(secs).ok())
            .ok_or_else(|| InvalidEstimateAfter {
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for EstimateAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The two settings every usage figure depends on. The rollup records both; a reader with
/// other values does not use it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rules {
    pub max_power_kw: MaxPower,
    pub estimate_after: EstimateAfter,
}

impl Rules {
    pub fn new(max_power_kw: MaxPower, estimate_after: EstimateAfter) -> Self {
        Self {
            max_power_kw,
            estimate_after,
        }
    }

    /// The pair (a, b) spread over `[a.t, b.t)`, and whether its shares are estimated; `None`
    /// when b is not later than a.
    pub fn spread(self, a: EnergyPoint, b: EnergyPoint) -> Option<(Spread, bool)> {
        let spread = Spread::new(
            a.time,
            b.time,
            pair_contribution(a, b, self.max_power_kw).nano_kwh(),
        )?;
        let (start, end) = (
            crate::apportion::nanos(a.time),
            crate::apportion::nanos(b.time),
        );
        let estimated = self
            .estimate_after
            .is_gap(i128::from(end) - i128::from(start));
        Some((spread, estimated))
    }
}

/// An amount of energy and the part of it that is estimated (spread over a gap longer than
/// [`EstimateAfter`]); both exact to the nano-kWh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Energy {
    pub usage: Usage,
    pub estimated: Usage,
}

impl Energy {
    pub const ZERO: Energy = Energy {
        usage: Usage::ZERO,
        estimated: Usage::ZERO,
    };

    /// Both amounts `k` times ([`Usage::times`]).
    pub fn times(self, k: i64) -> Energy {
        Energy {
            usage: self.usage.times(k),
            estimated: self.estimated.times(k),
        }
    }

    /// `nano_kwh` of a pair's share, estimated or not.
    pub fn share(nano_kwh: i128, estimated: bool) -> Energy {
        let usage = Usage::from_nano_kwh(nano_kwh);
        Energy {
            usage,
            estimated: if estimated { usage } else { Usage::ZERO },
        }
    }
}

impl Add for Energy {
    type Output = Energy;
    fn add(self, other: Energy) -> Energy {
        Energy {
            usage: self.usage + other.usage,
            estimated: self.estimated + other.estimated,
        }
    }
}

impl AddAssign for Energy {
    fn add_assign(&mut self, other: Energy) {
        *self = *self + other;
    }
}

impl Sub for Energy {
    type Output = Energy;
    fn sub(self, other: Energy) -> Energy {
        Energy {
            usage: self.usage - other.usage,
            estimated: self.estimated - other.estimated,
        }
    }
}

impl SubAssign for Energy {
    fn sub_assign(&mut self, other: Energy) {
        *self = *self - other;
    }
}

impl Sum for Energy {
    fn sum<I: Iterator<Item = Energy>>(iter: I) -> Energy {
        iter.fold(Energy::ZERO, Add::add)
    }
}

/// A period's energy and its largest quarter-hour usage (the quarter hours are UTC's, which are
/// every zone's in use today): the peak's kW is four times its kWh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub energy: Energy,
    pub peak: Usage,
}

impl Load {
    pub const ZERO: Load = Load {
        energy: Energy::ZERO,
        peak: Usage::ZERO,
    };

    /// One quarter hour's (or part of one's) energy.
    pub fn quarter(energy: Energy) -> Load {
        Load {
            energy,
            peak: energy.usage,
        }
    }

    /// This period and `other` (which does not overlap it) together: energies add, the peak is
    /// the larger one.
    pub fn join(self, other: Load) -> Load {
        Load {
            energy: self.energy + other.energy,
            peak: self.peak.max(other.peak),
        }
    }
}

/// `points` in time order, one per instant: sorted by time and then register (a total order,
/// so the input's order never matters), exact repeats dropped.
pub fn in_time_order(points: &[EnergyPoint]) -> Vec<EnergyPoint> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|x, y| {
        x.time
            .cmp(&y.time)
            .then(x.energy_kwh.total_cmp(&y.energy_kwh))
    });
    sorted.dedup_by(|x, y| x.time == y.time && x.energy_kwh.to_bits() == y.energy_kwh.to_bits());
    sorted
}

/// Usage in each of `periods` (sorted, non-overlapping) from `points` in any order: each pair
/// of consecutive readings gives each period its share. Pass the last reading before the first
/// period and the first after the last one along, or the pairs that straddle the ends are lost.
pub fn usage_in_periods(points: &[EnergyPoint], periods: &[Period], rules: Rules) -> Vec<Energy> {
    usage_of_pairs(points, periods, rules, |_, _| true)
}

/// Like [`usage_in_periods`], counting only the pairs (a, b) for which `keep(a, b)` holds.
pub fn usage_of_pairs(
    points: &[EnergyPoint],
    periods: &[Period],
    rules: Rules,
    keep: impl Fn(&EnergyPoint, &EnergyPoint) -> bool,
) -> Vec<Energy> {
    let sorted = in_time_order(points);
    let mut totals = vec![Energy::ZERO; periods.len()];
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if !keep(&a, &b) {
            continue;
        }
        let Some((spread, estimated)) = rules.spread(a, b) else {
            continue;
        };
        if spread.amount() == 0 {
            continue;
        }
        let mut index = periods.partition_point(|p| p.end <= a.time);
        while let Some(period) = periods.get(index) {
            if period.start >= b.time {
                break;
            }
            totals[index] += Energy::share(spread.share(period.start, period.end), estimated);
            index += 1;
        }
    }
    totals
}

/// Usage in one period.
pub fn usage_in(points: &[EnergyPoint], period: Period, rules: Rules) -> Energy {
    usage_in_periods(points, &[period], rules)[0]
}

/// The parts of `period` in each UTC quarter hour it overlaps, in time order (the first and the
/// last may be parts of a quarter hour, when the period's ends are not on quarter hours).
pub fn quarters_of(period: Period) -> Vec<Period> {
    let grid = chrono::Duration::nanoseconds(crate::apportion::GRID_NANOS);
    let mut out = Vec::new();
    let mut start = period.start;
    while start < period.end {
        let next = crate::rollup::bucket_start(start) + grid;
        let end = next.min(period.end);
        out.push(Period { start, end });
        start = end;
    }
    out
}

/// The energy of a period and its largest quarter-hour part, from `points` as for
/// [`usage_in_periods`]; `quarters` are the period's parts from [`quarters_of`] (computed once
/// for many panels).
pub fn load_in(points: &[EnergyPoint], quarters: &[Period], rules: Rules) -> Load {
    usage_in_periods(points, quarters, rules)
        .into_iter()
        .fold(Load::ZERO, |load, energy| load.join(Load::quarter(energy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn max_kw() -> MaxPower {
        "5000".parse().unwrap()
    }

    fn rules() -> Rules {
        Rules::new(max_kw(), EstimateAfter::DEFAULT)
    }

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
            rules(),
        )
        .usage
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

    fn days() -> [Period; 2] {
        [
            Period {
                start: t(-1440),
                end: t(0),
            },
            Period {
                start: t(0),
                end: t(1440),
            },
        ]
    }

    #[test]
    fn a_pair_is_spread_over_the_time_between_its_readings() {
        // 23:58 -> 10, 23:59 -> 11, 00:01 -> 13, 00:02 -> 14: the pair across midnight gives
        // half of its 2 kWh to each day.
        let points = [p(-2, 10.0), p(-1, 11.0), p(1, 13.0), p(2, 14.0)];
        let u = usage_in_periods(&points, &days(), rules());
        assert_eq!((u[0].usage.kwh(), u[1].usage.kwh()), (2.0, 2.0));
        assert_eq!(u[0].estimated + u[1].estimated, Usage::ZERO);
    }

    #[test]
    fn a_reading_at_midnight_ends_the_old_day() {
        let u = usage_in_periods(&[p(-1, 10.0), p(0, 12.0)], &days(), rules());
        assert_eq!((u[0].usage.kwh(), u[1].usage.kwh()), (2.0, 0.0));
    }

    #[test]
    fn the_share_of_a_long_gap_is_estimated() {
        // 15 minutes apart is not a gap; a second more is.
        let u = usage_in(&[p(-15, 10.0), p(0, 12.0)], days()[0], rules());
        assert_eq!((u.usage.kwh(), u.estimated.kwh()), (2.0, 0.0));
        let gap = [
            p(-15, 10.0),
            EnergyPoint {
                time: t(0) + Duration::seconds(1),
                energy_kwh: 12.0,
            },
        ];
        let u = usage_in_periods(&gap, &days(), rules());
        assert_eq!(u[0].usage, u[0].estimated);
        assert_eq!(u[1].usage, u[1].estimated);
        assert_eq!((u[0].usage + u[1].usage).kwh(), 2.0);
        // A dropped register gives no estimate either.
        let u = usage_in(&[p(-600, 10.0), p(-1, 3.0)], days()[0], rules());
        assert_eq!(u, Energy::ZERO);
    }

    #[test]
    fn the_reading_before_and_after_a_period_open_and_close_it() {
        let today = days()[1];
        // 505 minutes, 0.5 kWh: today holds 5 of them.
        let u = usage_in(&[p(-500, 10.0), p(5, 10.5)], today, rules());
        assert_eq!(u.usage.nano_kwh(), 4_950_495);
        assert_eq!(u.estimated, u.usage);
        let u = usage_in(&[p(1435, 10.0), p(1445, 11.0)], today, rules());
        assert_eq!(u.usage.kwh(), 0.5);
        assert_eq!(usage_in(&[p(5, 10.5)], today, rules()), Energy::ZERO);
    }

    #[test]
    fn the_estimate_threshold_is_whole_seconds_from_one_to_a_year() {
        assert_eq!("900".parse(), Ok(EstimateAfter::DEFAULT));
        assert_eq!(
            "31536000".parse::<EstimateAfter>().unwrap().secs(),
            31_536_000
        );
        for bad in ["0", "-1", "31536001", "1.5", "", "15m"] {
            assert_eq!(
                bad.parse::<EstimateAfter>().unwrap_err().to_string(),
                format!("{bad:?} is not a number of seconds from 1 to 31536000")
            );
        }
    }

    #[test]
    fn rounding_is_to_three_decimals_half_away_from_zero() {
        assert_eq!(Usage::from_kwh(42.1245).kwh_rounded(), 42.125);
        assert_eq!(Usage::from_kwh(42.1244).kwh_rounded(), 42.124);
        assert_eq!(Usage::from_kwh(0.0005).kwh_rounded(), 0.001);
    }

    #[test]
    fn times_multiplies_exactly_and_saturates_at_the_ends() {
        let u = Usage::from_nano_kwh(1_500_000_001);
        assert_eq!(u.times(3), Usage::from_nano_kwh(4_500_000_003));
        assert_eq!(u.times(-2), Usage::from_nano_kwh(-3_000_000_002));
        assert_eq!(u.times(0), Usage::ZERO);
        assert_eq!(
            Usage::from_nano_kwh(i128::MAX / 2).times(3),
            Usage::from_nano_kwh(i128::MAX)
        );
        assert_eq!(
            Usage::from_nano_kwh(i128::MAX).times(i64::MIN),
            Usage::from_nano_kwh(i128::MIN)
        );
        let e = Energy {
            usage: Usage::from_nano_kwh(10),
            estimated: Usage::from_nano_kwh(4),
        };
        assert_eq!(
            e.times(-3),
            Energy {
                usage: Usage::from_nano_kwh(-30),
                estimated: Usage::from_nano_kwh(-12),
            }
        );
    }

    #[test]
    fn simultaneous_different_readings_are_a_glitch() {
        let a = p(0, 1.0);
        let b = EnergyPoint {
            time: a.time,
            energy_kwh: 2.0,
        };
        assert_eq!(pair_contribution(a, b, max_kw()), Usage::ZERO);
    }

    #[test]
    fn the_threshold_is_a_finite_power_above_zero() {
        for (text, kw) in [
            ("5000", 5000.0),
            ("5000.0", 5000.0),
            ("1e3", 1000.0),
            ("0.5", 0.5),
            ("+7", 7.0),
            ("1234.5", 1234.5),
        ] {
            let parsed: MaxPower = text.parse().unwrap();
            assert_eq!(parsed.kw(), kw, "{text}");
            assert_eq!(MaxPower::from_kw(kw), Ok(parsed), "{text}");
        }
        for text in [
            "0", "-0", "0.0", "-5", "NaN", "inf", "-inf", "1e400", "abc", "", "5 kW",
        ] {
            let error = text.parse::<MaxPower>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{text:?} is not a power in kW (a finite number > 0)")
            );
        }
        for kw in [0.0, -0.0, -5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let error = MaxPower::from_kw(kw).unwrap_err().to_string();
            assert!(
                error.ends_with(" is not a power in kW (a finite number > 0)")
                    && error.contains(&kw.to_string()),
                "{error}"
            );
        }
    }

    #[test]
    fn the_threshold_displays_as_its_number_and_reads_back_the_same() {
        let max: MaxPower = "5000.0".parse().unwrap();
        assert_eq!(max.to_string(), "5000");
        assert_eq!(max.to_string().parse(), Ok(max));
        // The rollup's state field is written with `{:?}` of the number.
        assert_eq!(format!("{:?}", max.kw()), "5000.0");
        for kw in [1234.5, 0.1 + 0.2, 1e-300, 1.7e308] {
            let max = MaxPower::from_kw(kw).unwrap();
            assert_eq!(max.to_string().parse::<MaxPower>().unwrap().kw(), kw);
        }
    }

    #[test]
    fn the_glitch_rule_is_inclusive_to_the_nanosecond() {
        let max = max_kw();
        // 5000 kWh in one hour is exactly 5000 kW: not a glitch; in a nanosecond less, it is.
        assert!(!max.is_glitch(5000.0, 3600.0));
        assert!(max.is_glitch(5000.0, 3600.0 - 1e-9));
        assert!(max.is_glitch(1e-9, 0.0), "no time at all is a glitch");
        let a = p(0, 0.0);
        let exactly = EnergyPoint {
            time: a.time + Duration::hours(1),
            energy_kwh: 5000.0,
        };
        let sooner = EnergyPoint {
            time: exactly.time - Duration::nanoseconds(1),
            ..exactly
        };
        assert_eq!(pair_contribution(a, exactly, max), Usage::from_kwh(5000.0));
        assert_eq!(pair_contribution(a, sooner, max), Usage::ZERO);
        // InfluxQL's rate (kWh per nanosecond) uses the same threshold.
        assert_eq!(max.max_kwh_per_nanosecond(), 5000.0 / 3.6e12);
        assert!(5000.0 / 3_600_000_000_000.0 <= max.max_kwh_per_nanosecond());
        assert!(5000.0 / 3_599_999_999_999.0 > max.max_kwh_per_nanosecond());
    }
}
