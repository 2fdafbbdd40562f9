//! Random meter histories: readings at irregular steps, with gaps of hours, meter resets, zero
//! glitches and spikes, for tests that check usage figures against the readings they wrote.
//!
//! This only makes readings. What they add up to is for each test to work out by hand, by the
//! rule it checks: a generator that also computed the usage would only check the code against
//! itself.
//!
//! A [`Meter`] says how the register moves from one reading to the next, a [`Schedule`] when it
//! is read; [`Meter::readings`] draws a history from a random number generator the test seeds.
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use rand::{rngs::StdRng, SeedableRng};
//! use test_support::history::{Meter, Schedule};
//!
//! let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
//! let meter = Meter {
//!     register: 0.0..=1000.0,
//!     increase: 0.0..=2.0,
//!     unit: Some(1.0 / 64.0),
//!     reset: 0.01,
//!     spike: 0.01,
//!     spike_kwh: 1e6,
//!     ..Meter::default()
//! };
//! let day = Schedule::new(start, start + Duration::days(1), Duration::seconds(60)..=Duration::minutes(15))
//!     .with_gaps(0.01, Duration::hours(1)..=Duration::hours(3));
//! let readings = meter.readings(&mut StdRng::seed_from_u64(1), &[day]);
//! assert!(readings.iter().all(|r| (r.energy_kwh * 64.0).fract() == 0.0));
//! ```

use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

/// One reading as a meter sends it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub time: DateTime<Utc>,
    pub energy_kwh: f64,
}

/// How a meter's register moves. Before every reading it grows by a draw from `increase`;
/// then, with the chances given, the reading finds the meter reset, shows a zero glitch or a
/// spike, or else (the rest of the time) shows the register. The chances add up to at most 1.
///
/// [`Meter::default`] is a meter that stays at 0 and never misbehaves: set what a test needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    /// The register before the first reading's increase, in kWh.
    pub register: RangeInclusive<f64>,
    /// What the register grows by before each reading, in kWh.
    pub increase: RangeInclusive<f64>,
    /// When set, a power of two of a kWh (e.g. `1.0 / 64.0`): every register, increase, reset
    /// value and so every reading is a whole multiple of it, so sums of readings and of their
    /// differences are exact in `f64`. The ranges above are then cut to the multiples inside
    /// them. `None`: any value.
    pub unit: Option<f64>,
    /// The chance that a reading finds the meter reset: its register set to a draw from
    /// `reset_to`, which the reading shows and from which it counts on.
    pub reset: f64,
    /// Where a reset sets the register, in kWh.
    pub reset_to: RangeInclusive<f64>,
    /// The chance that a reading shows 0 while the register counts on (a zero glitch).
    pub zero: f64,
    /// The chance that a reading shows the register plus `spike_kwh` while the register counts
    /// on, so the next reading comes back down (a spike).
    pub spike: f64,
    /// How far a spike is above the register, in kWh.
    pub spike_kwh: f64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            register: 0.0..=0.0,
            increase: 0.0..=0.0,
            unit: None,
            reset: 0.0,
            reset_to: 0.0..=0.0,
            zero: 0.0,
            spike: 0.0,
            spike_kwh: 0.0,
        }
    }
}

/// When a meter is read: first at `from`, then after each step, as long as it is before
/// `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The first reading.
    pub from: DateTime<Utc>,
    /// Every reading is before it.
    pub until: DateTime<Utc>,
    /// The time from one reading to the next, usually.
    pub step: RangeInclusive<Duration>,
    /// The chance that a step is a gap instead, drawn from `gap_step`.
    pub gap: f64,
    /// The time from one reading to the next across a gap.
    pub gap_step: RangeInclusive<Duration>,
    /// Steps are whole multiples of it (1 ms unless set): with whole seconds and a `from` on a
    /// whole second, every reading is on a whole second.
    pub resolution: Duration,
}

impl Schedule {
    /// Readings from `from` until before `until`, a draw from `step` apart; no gaps; steps in
    /// whole milliseconds.
    pub fn new(from: DateTime<Utc>, until: DateTime<Utc>, step: RangeInclusive<Duration>) -> Self {
        Schedule {
            from,
            until,
            gap_step: step.clone(),
            step,
            gap: 0.0,
            resolution: Duration::milliseconds(1),
        }
    }

    /// Readings from `from` until before `until`, exactly `step` apart.
    pub fn every(from: DateTime<Utc>, until: DateTime<Utc>, step: Duration) -> Self {
        Self::new(from, until, step..=step)
    }

    /// With the chance `gap` that a step is drawn from `gap_step` instead.
    pub fn with_gaps(mut self, gap: f64, gap_step: RangeInclusive<Duration>) -> Self {
        self.gap = gap;
        self.gap_step = gap_step;
        self
    }

    /// With steps in whole multiples of `resolution` (e.g. `Duration::seconds(1)`).
    pub fn in_whole(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }

    fn draw_step<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let range = if self.gap > 0.0 && rng.gen_bool(self.gap) {
            &self.gap_step
        } else {
            &self.step
        };
        let resolution = self.resolution.num_milliseconds();
        assert!(resolution > 0, "a resolution of at least 1 ms: {self:?}");
        // The whole multiples of the resolution inside the range.
        let low = range.start().num_milliseconds().div_euclid(resolution)
            + i64::from(range.start().num_milliseconds().rem_euclid(resolution) != 0);
        let high = range.end().num_milliseconds().div_euclid(resolution);
        assert!(
            low >= 1 && low <= high,
            "steps of {range:?} hold no positive multiple of {:?}",
            self.resolution
        );
        Duration::milliseconds(rng.gen_range(low..=high) * resolution)
    }
}

impl Meter {
    /// The readings of this meter on each of `schedules` in turn, the register counting on from
    /// one to the next; in time order when the schedules are.
    pub fn readings<R: Rng + ?Sized>(&self, rng: &mut R, schedules: &[Schedule]) -> Vec<Reading> {
        let chances = [self.reset, self.zero, self.spike];
        assert!(
            chances.iter().all(|c| (0.0..=1.0).contains(c)) && chances.iter().sum::<f64>() <= 1.0,
            "chances between 0 and 1 that add up to at most 1: {self:?}"
        );
        if let Some(unit) = self.unit {
            assert!(
                unit > 0.0 && unit.log2().fract() == 0.0,
                "a unit that is a power of two of a kWh, not {unit}"
            );
            assert!(
                (self.spike_kwh / unit).fract() == 0.0,
                "a spike of a whole number of units, not {}",
                self.spike_kwh
            );
        }
        let mut register = self.draw_kwh(rng, &self.register);
        let mut readings = Vec::new();
        for schedule in schedules {
            let mut time = schedule.from;
            while time < schedule.until {
                let event: f64 = rng.gen();
                register += self.draw_kwh(rng, &self.increase);
                let energy_kwh = if event < self.reset {
                    register = self.draw_kwh(rng, &self.reset_to);
                    register
                } else if event < self.reset + self.zero {
                    0.0
                } else if event < self.reset + self.zero + self.spike {
                    register + self.spike_kwh
                } else {
                    register
                };
                readings.push(Reading { time, energy_kwh });
                time += schedule.draw_step(rng);
            }
        }
        readings
    }

    /// A draw from `range` in kWh; a whole multiple of the unit when there is one.
    fn draw_kwh<R: Rng + ?Sized>(&self, rng: &mut R, range: &RangeInclusive<f64>) -> f64 {
        match self.unit {
            None => rng.gen_range(range.clone()),
            Some(unit) => {
                let low = (range.start() / unit).ceil() as i64;
                let high = (range.end() / unit).floor() as i64;
                assert!(low <= high, "no multiple of {unit} kWh in {range:?}");
                // Exact: a whole number times a power of two.
                rng.gen_range(low..=high) as f64 * unit
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
    }

    fn steps(readings: &[Reading]) -> Vec<Duration> {
        readings.windows(2).map(|w| w[1].time - w[0].time).collect()
    }

    #[test]
    fn a_fixed_step_gives_every_reading_in_the_schedule() {
        let meter = Meter {
            register: 10.0..=10.0,
            increase: 0.5..=0.5,
            ..Meter::default()
        };
        let schedule = Schedule::every(start(), start() + Duration::hours(1), Duration::minutes(1));
        let readings = meter.readings(&mut StdRng::seed_from_u64(0), &[schedule]);
        assert_eq!(readings.len(), 60);
        assert_eq!(
            readings[0],
            Reading {
                time: start(),
                energy_kwh: 10.5
            }
        );
        assert_eq!(readings[59].time, start() + Duration::minutes(59));
        assert_eq!(readings[59].energy_kwh, 40.0);
        assert!(steps(&readings).iter().all(|s| *s == Duration::minutes(1)));
    }

    #[test]
    fn steps_and_gaps_stay_in_their_ranges_and_resolution() {
        let meter = Meter {
            increase: 0.0..=1.0,
            ..Meter::default()
        };
        let schedule = Schedule::new(
            start(),
            start() + Duration::days(20),
            Duration::seconds(60)..=Duration::seconds(1800),
        )
        .with_gaps(0.05, Duration::hours(1)..=Duration::hours(8))
        .in_whole(Duration::seconds(1));
        let readings = meter.readings(&mut StdRng::seed_from_u64(1), &[schedule]);
        assert_eq!(readings[0].time, start());
        assert!(readings.last().unwrap().time < start() + Duration::days(20));
        let steps = steps(&readings);
        assert!(steps.iter().all(|s| s.num_milliseconds() % 1000 == 0));
        let gaps = steps.iter().filter(|s| **s >= Duration::hours(1)).count();
        assert!(gaps > 0, "some gaps");
        assert!(steps.iter().all(|s| {
            (Duration::seconds(60)..=Duration::seconds(1800)).contains(s)
                || (Duration::hours(1)..=Duration::hours(8)).contains(s)
        }));
        // Without glitches or resets the register never drops.
        assert!(readings
            .windows(2)
            .all(|w| w[1].energy_kwh >= w[0].energy_kwh));
    }

    #[test]
    fn schedules_follow_each_other_and_the_register_counts_on() {
        let meter = Meter {
            register: 5.0..=5.0,
            increase: 1.0..=1.0,
            ..Meter::default()
        };
        let first = Schedule::every(
            start(),
            start() + Duration::minutes(3),
            Duration::minutes(1),
        );
        let later = start() + Duration::days(2);
        let second = Schedule::every(later, later + Duration::minutes(2), Duration::seconds(30));
        let readings = meter.readings(&mut StdRng::seed_from_u64(2), &[first, second]);
        let got: Vec<(Duration, f64)> = readings
            .iter()
            .map(|r| (r.time - start(), r.energy_kwh))
            .collect();
        let day2 = Duration::days(2);
        assert_eq!(
            got,
            [
                (Duration::zero(), 6.0),
                (Duration::minutes(1), 7.0),
                (Duration::minutes(2), 8.0),
                (day2, 9.0),
                (day2 + Duration::seconds(30), 10.0),
                (day2 + Duration::seconds(60), 11.0),
                (day2 + Duration::seconds(90), 12.0),
            ]
        );
    }

    #[test]
    fn resets_zeros_and_spikes_show_as_asked_and_units_stay_whole() {
        let meter = Meter {
            register: 0.0..=4000.0,
            increase: 0.0..=2.0,
            unit: Some(1.0 / 1024.0),
            reset: 0.01,
            reset_to: 0.0..=3.0,
            zero: 0.01,
            spike: 0.01,
            spike_kwh: 1e6,
        };
        let schedule = Schedule::every(start(), start() + Duration::days(10), Duration::minutes(1));
        let readings = meter.readings(&mut StdRng::seed_from_u64(3), &[schedule]);
        assert_eq!(readings.len(), 14_400);
        assert!(readings
            .iter()
            .all(|r| (r.energy_kwh * 1024.0).fract() == 0.0 && r.energy_kwh >= 0.0));
        let zeros = readings.iter().filter(|r| r.energy_kwh == 0.0).count();
        let spikes = readings.iter().filter(|r| r.energy_kwh >= 1e6).count();
        // A drop that is neither into a zero nor out of a zero or a spike: a reset.
        let resets = readings
            .windows(2)
            .filter(|w| w[1].energy_kwh < w[0].energy_kwh && w[1].energy_kwh > 0.0)
            .filter(|w| w[0].energy_kwh != 0.0 && w[0].energy_kwh < 1e6)
            .count();
        // About 144 of each (1 %); far from 0 and from thousands.
        for (what, count) in [("zeros", zeros), ("spikes", spikes), ("resets", resets)] {
            assert!((50..400).contains(&count), "{count} {what}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_history() {
        let meter = Meter {
            register: 50.0..=60.0,
            increase: 0.0..=0.5,
            spike: 0.1,
            spike_kwh: 100.0,
            ..Meter::default()
        };
        let day = Schedule::new(
            start(),
            start() + Duration::days(1),
            Duration::minutes(10)..=Duration::hours(1),
        )
        .with_gaps(0.1, Duration::hours(2)..=Duration::hours(3));
        let days = [day];
        let a = meter.readings(&mut StdRng::seed_from_u64(4), &days);
        let b = meter.readings(&mut StdRng::seed_from_u64(4), &days);
        assert_eq!(a, b);
        assert!(a.len() > 20);
        let c = meter.readings(&mut StdRng::seed_from_u64(5), &days);
        assert_ne!(a, c, "another seed, another history");
    }
}
