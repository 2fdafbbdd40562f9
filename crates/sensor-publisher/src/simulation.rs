//! The simulated meters: a believable load curve per panel and the energy register it drives.
//!
//! Everything here is pure. "Now", the time elapsed since the previous reading and the random
//! source are parameters, so the tests can replay any week with a seeded generator.
//!
//! The model: each panel has an always-on base load (lighting, servers, standby HVAC) and an
//! extra working-hours load that fades in from 07:00 to 08:00 and out from 18:00 to 19:00 local
//! time, Monday to Friday. A few percent of random noise sits on top. The register integrates
//! the power over the time that really elapsed, like an energy meter does.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use energy_core::{PanelId, Reading};
use rand::Rng;

/// Smallest and largest base load a panel is given, in kW.
const BASE_KW_RANGE: (f64, f64) = (10.0, 40.0);

/// The working-hours load on top of the base, as a multiple of the base: at full activity a
/// floor draws 2.5 times its night load, which is typical of an office building.
const WORKING_EXTRA_FACTOR: f64 = 1.5;

/// Random variation of each reading around the curve, as a fraction of it.
const NOISE_FRACTION: f64 = 0.05;

/// Range of the register a panel starts at when it has no saved state, in kWh: a meter that was
/// installed before the monitoring began, not a brand-new one.
const INITIAL_REGISTER_KWH_RANGE: (f64, f64) = (1_000.0, 5_000.0);

/// Local hour the working-hours load starts to rise, is at full, starts to fall, and is gone.
const RAMP_UP_START_HOUR: f64 = 7.0;
const WORK_START_HOUR: f64 = 8.0;
const WORK_END_HOUR: f64 = 18.0;
const RAMP_DOWN_END_HOUR: f64 = 19.0;

/// How much one panel draws over the day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadProfile {
    /// Always-on load, in kW.
    pub base_kw: f64,
    /// Extra load at full working-hours activity, in kW.
    pub working_extra_kw: f64,
}

impl LoadProfile {
    /// The profile of `panel`, derived from its id alone, so a panel keeps its profile across
    /// restarts and when the `PANELS` list is reordered.
    pub fn for_panel(panel: &PanelId) -> Self {
        let base_kw = scale(stable_hash(panel.as_str()) as u32, BASE_KW_RANGE);
        Self {
            base_kw,
            working_extra_kw: base_kw * WORKING_EXTRA_FACTOR,
        }
    }

    /// The load the curve expects at `now`, without noise.
    pub fn expected_kw(&self, now: DateTime<Utc>, timezone: Tz) -> f64 {
        self.base_kw + self.working_extra_kw * activity(now, timezone)
    }

    /// One noisy sample of the load at `now`; never negative.
    pub fn power_kw(&self, now: DateTime<Utc>, timezone: Tz, rng: &mut impl Rng) -> f64 {
        let noise = rng.gen_range(-NOISE_FRACTION..=NOISE_FRACTION);
        (self.expected_kw(now, timezone) * (1.0 + noise)).max(0.0)
    }
}

/// How busy the building is at `now`, from 0 (night, weekend) to 1 (working hours), with
/// smooth ramps so the curve has no steps at 08:00 and 18:00.
pub fn activity(now: DateTime<Utc>, timezone: Tz) -> f64 {
    let local = now.with_timezone(&timezone);
    if matches!(local.weekday(), Weekday::Sat | Weekday::Sun) {
        return 0.0;
    }
    let hour = f64::from(local.num_seconds_from_midnight()) / 3600.0;
    if !(RAMP_UP_START_HOUR..RAMP_DOWN_END_HOUR).contains(&hour) {
        0.0
    } else if hour < WORK_START_HOUR {
        smoothstep((hour - RAMP_UP_START_HOUR) / (WORK_START_HOUR - RAMP_UP_START_HOUR))
    } else if hour < WORK_END_HOUR {
        1.0
    } else {
        1.0 - smoothstep((hour - WORK_END_HOUR) / (RAMP_DOWN_END_HOUR - WORK_END_HOUR))
    }
}

/// `energy_kwh` after drawing `power_kw` for `elapsed`.
pub fn integrate(energy_kwh: f64, power_kw: f64, elapsed: Duration) -> f64 {
    energy_kwh + power_kw * elapsed.as_secs_f64() / 3600.0
}

/// The register a panel without saved state starts at, derived from its id.
pub fn initial_register_kwh(panel: &PanelId) -> f64 {
    scale(
        (stable_hash(panel.as_str()) >> 32) as u32,
        INITIAL_REGISTER_KWH_RANGE,
    )
}

/// One simulated power meter.
#[derive(Clone, Debug)]
pub struct Meter {
    pub panel: PanelId,
    pub profile: LoadProfile,
    /// The register, in kWh, kept at full precision; only the published message is rounded.
    pub energy_kwh: f64,
}

impl Meter {
    pub fn new(panel: PanelId, energy_kwh: f64) -> Self {
        Self {
            profile: LoadProfile::for_panel(&panel),
            panel,
            energy_kwh,
        }
    }

    /// Samples the power at `now`, advances the register by that power over `elapsed` (the time
    /// since the previous reading) and returns the reading.
    pub fn read(
        &mut self,
        now: DateTime<Utc>,
        elapsed: Duration,
        timezone: Tz,
        rng: &mut impl Rng,
    ) -> Reading {
        let power_kw = self.profile.power_kw(now, timezone, rng);
        self.energy_kwh = integrate(self.energy_kwh, power_kw, elapsed);
        Reading {
            panel: self.panel.clone(),
            power_kw,
            energy_kwh: self.energy_kwh,
            time: now,
        }
    }
}

/// 64-bit FNV-1a followed by the SplitMix64 finalizer. Rust's own hasher may change between
/// releases; this one never does, so a panel's profile stays the same across builds. The
/// finalizer matters: FNV alone barely moves the high bits when ids differ only in their last
/// character (`PANEL_LANTAI_1`, `PANEL_LANTAI_2`), which gave every floor the same load.
fn stable_hash(s: &str) -> u64 {
    let fnv = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut x = fnv;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Maps 32 bits of hash evenly onto `[low, high]`.
fn scale(bits: u32, (low, high): (f64, f64)) -> f64 {
    low + (high - low) * f64::from(bits) / f64::from(u32::MAX)
}

/// 0 at 0, 1 at 1, with zero slope at both ends.
fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Asia::Jakarta;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn panel(id: &str) -> PanelId {
        PanelId::parse(id).unwrap()
    }

    /// Local time in Jakarta as UTC. 2026-11-25 is a Wednesday, 2026-11-28 a Saturday.
    fn jakarta(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Jakarta
            .with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn mean_power(profile: &LoadProfile, at: DateTime<Utc>, rng: &mut StdRng) -> f64 {
        let samples = 1_000;
        (0..samples)
            .map(|_| profile.power_kw(at, Jakarta, rng))
            .sum::<f64>()
            / f64::from(samples)
    }

    #[test]
    fn each_panel_gets_its_own_stable_base_load_in_range() {
        let ids = [
            "PANEL_LANTAI_1",
            "PANEL_LANTAI_2",
            "PANEL_LANTAI_3",
            "a",
            "x.y-z",
        ];
        let bases: Vec<f64> = ids
            .iter()
            .map(|id| LoadProfile::for_panel(&panel(id)).base_kw)
            .collect();
        for base in &bases {
            assert!((10.0..=40.0).contains(base), "{base}");
        }
        // Ids that differ in one character still get different floors, not one shared load.
        let floors = &bases[..3];
        let spread = floors.iter().fold(f64::MIN, |a, &b| a.max(b))
            - floors.iter().fold(f64::MAX, |a, &b| a.min(b));
        assert!(spread > 5.0, "{floors:?}");
        assert!(floors[0] != floors[1] && floors[1] != floors[2] && floors[0] != floors[2]);
        assert_eq!(LoadProfile::for_panel(&panel(ids[0])).base_kw, bases[0]);
    }

    #[test]
    fn power_is_never_negative_over_a_whole_week() {
        let mut rng = StdRng::seed_from_u64(1);
        for id in ["PANEL_LANTAI_1", "PANEL_LANTAI_2", "Q"] {
            let profile = LoadProfile::for_panel(&panel(id));
            let start = jakarta(23, 0, 0);
            for minute in 0..7 * 24 * 60 {
                let at = start + chrono::Duration::minutes(minute);
                let power = profile.power_kw(at, Jakarta, &mut rng);
                assert!(power >= 0.0 && power.is_finite(), "{id} at {at}: {power}");
            }
        }
    }

    #[test]
    fn working_hours_draw_more_than_night_and_weekend_on_average() {
        let mut rng = StdRng::seed_from_u64(2);
        let profile = LoadProfile::for_panel(&panel("PANEL_LANTAI_1"));
        let office = mean_power(&profile, jakarta(25, 10, 0), &mut rng);
        let night = mean_power(&profile, jakarta(25, 2, 0), &mut rng);
        let saturday = mean_power(&profile, jakarta(28, 10, 0), &mut rng);
        assert!(office > 2.0 * night, "office {office}, night {night}");
        assert!(
            office > 2.0 * saturday,
            "office {office}, saturday {saturday}"
        );
        // The noise averages out around the curve.
        assert!((night - profile.base_kw).abs() < 0.01 * profile.base_kw);
    }

    #[test]
    fn working_hours_follow_the_configured_timezone() {
        // 10:00 in Jakarta is 03:00 UTC; in UTC that instant is night.
        let at = jakarta(25, 10, 0);
        assert_eq!(activity(at, Jakarta), 1.0);
        assert_eq!(activity(at, chrono_tz::UTC), 0.0);
    }

    #[test]
    fn load_ramps_smoothly_at_the_edges_of_the_working_day() {
        assert_eq!(activity(jakarta(25, 7, 0), Jakarta), 0.0);
        assert_eq!(activity(jakarta(25, 7, 30), Jakarta), 0.5);
        assert_eq!(activity(jakarta(25, 8, 0), Jakarta), 1.0);
        assert_eq!(activity(jakarta(25, 18, 30), Jakarta), 0.5);
        assert_eq!(activity(jakarta(25, 19, 0), Jakarta), 0.0);
        // No step anywhere in a week: one minute never changes activity by more than 3 %.
        let start = jakarta(23, 0, 0);
        let mut previous = activity(start, Jakarta);
        for minute in 1..7 * 24 * 60 {
            let now = activity(start + chrono::Duration::minutes(minute), Jakarta);
            assert!((now - previous).abs() < 0.03, "step at minute {minute}");
            previous = now;
        }
    }

    #[test]
    fn constant_power_integrates_exactly() {
        assert_eq!(integrate(100.0, 36.0, Duration::from_secs(100)), 101.0);
        assert_eq!(integrate(0.0, 12.0, Duration::from_secs(3600)), 12.0);
        assert_eq!(integrate(5.0, 12.0, Duration::ZERO), 5.0);
        assert_eq!(integrate(0.0, 7.2, Duration::from_millis(500)), 0.001);
    }

    #[test]
    fn the_register_advances_by_each_reading_over_its_elapsed_time() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut meter = Meter::new(panel("P"), 1_000.0);
        let mut expected = 1_000.0;
        let mut now = jakarta(25, 0, 0);
        for _ in 0..24 * 60 {
            now += chrono::Duration::minutes(1);
            let reading = meter.read(now, Duration::from_secs(60), Jakarta, &mut rng);
            expected += reading.power_kw * 60.0 / 3600.0;
            assert_eq!(reading.energy_kwh, expected);
            assert_eq!(reading.time, now);
        }
        // A day of a 10-40 kW base load with office hours: hundreds of kWh, not thousands.
        let day = meter.energy_kwh - 1_000.0;
        assert!((240.0..2_000.0).contains(&day), "{day}");
    }

    #[test]
    fn the_first_reading_after_a_restart_keeps_the_saved_register() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut meter = Meter::new(panel("P"), 1_234.5);
        let reading = meter.read(jakarta(25, 9, 0), Duration::ZERO, Jakarta, &mut rng);
        assert_eq!(reading.energy_kwh, 1_234.5);
        assert!(reading.power_kw > 0.0);
    }

    #[test]
    fn new_registers_start_at_a_plausible_stable_value() {
        let starts: Vec<f64> = ["PANEL_LANTAI_1", "PANEL_LANTAI_2", "PANEL_LANTAI_3"]
            .iter()
            .map(|id| initial_register_kwh(&panel(id)))
            .collect();
        for start in &starts {
            assert!((1_000.0..=5_000.0).contains(start), "{start}");
        }
        assert!((starts[0] - starts[1]).abs() > 100.0, "{starts:?}");
        assert_eq!(initial_register_kwh(&panel("PANEL_LANTAI_1")), starts[0]);
    }
}
