//! A reference model of the usage rule (docs/accounting.md), written for the tests without
//! any of `energy_core`'s code: registers are whole 1/256 kWh (so every `f64` the library
//! sees is exact, and every increase is a whole number of nano-kWh), the glitch rule is an
//! integer comparison, the largest-remainder rule sorts the remainders, and a quarter hour cut
//! by a period is split by direct division. Every helper here is used by some test files and
//! not others.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use energy_core::usage::{EstimateAfter, Rules};
use energy_core::{Energy, EnergyPoint, Period, Usage};
use proptest::prelude::*;

/// A UTC quarter hour, in nanoseconds.
pub const GRID: i64 = 900_000_000_000;
pub const SECOND: i64 = 1_000_000_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// Register units per kWh: a power of two, so that registers are exact `f64`s.
pub const UNITS_PER_KWH: i64 = 256;
/// Nano-kWh per register unit (10^9 / 256).
pub const NANO_PER_UNIT: i128 = 3_906_250;
pub const MAX_POWER_KW: i128 = 5000;
/// `ESTIMATE_AFTER_SECS` by default, in nanoseconds.
pub const ESTIMATE_AFTER: i64 = 900 * SECOND;
/// A glitch: the register jumps by 10^8 kWh, more than 5000 kW for any gap below 2 years.
pub const GLITCH_UNITS: i64 = 100_000_000 * UNITS_PER_KWH;

pub fn rules() -> Rules {
    Rules::new("5000".parse().unwrap(), EstimateAfter::DEFAULT)
}

/// One reading: nanoseconds since the epoch and the register in 1/256 kWh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub t: i64,
    pub units: i64,
}

impl Reading {
    pub fn point(self) -> EnergyPoint {
        EnergyPoint {
            time: Utc.timestamp_nanos(self.t),
            energy_kwh: self.units as f64 / UNITS_PER_KWH as f64,
        }
    }
}

pub fn points(readings: &[Reading]) -> Vec<EnergyPoint> {
    readings.iter().map(|r| r.point()).collect()
}

pub fn ns(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt().expect("within i64 nanoseconds")
}

pub fn utc(nanos: i64) -> DateTime<Utc> {
    Utc.timestamp_nanos(nanos)
}

pub fn period(from: i64, to: i64) -> Period {
    Period {
        start: utc(from),
        end: utc(to),
    }
}

pub fn span(p: Period) -> (i64, i64) {
    (ns(p.start), ns(p.end))
}

pub fn energy(usage: i128, estimated: i128) -> Energy {
    Energy {
        usage: Usage::from_nano_kwh(usage),
        estimated: Usage::from_nano_kwh(estimated),
    }
}

/// What the pair (a, b) contributes, in nano-kWh: the increase, or 0 for a drop, for no time
/// at all, or for more than `MAX_POWER_KW` on average (units/256 kWh × 3600 s/h × 10^9 ns/s >
/// 5000 kW × len ns).
pub fn increase(a: Reading, b: Reading) -> i128 {
    let d = i128::from(b.units - a.units);
    let len = i128::from(b.t) - i128::from(a.t);
    if d <= 0 || len <= 0 {
        return 0;
    }
    if d * 3_600_000_000_000 > MAX_POWER_KW * i128::from(UNITS_PER_KWH) * len {
        return 0;
    }
    d * NANO_PER_UNIT
}

/// The part of a pair in one UTC quarter hour: `[lo, hi)` and its share in nano-kWh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub lo: i64,
    pub hi: i64,
    pub share: i128,
}

impl Part {
    /// The share of the part before `at`: proportional to time, rounded down.
    fn before(&self, at: i64) -> i128 {
        if at <= self.lo {
            0
        } else if at >= self.hi {
            self.share
        } else {
            self.share * i128::from(at - self.lo) / i128::from(self.hi - self.lo)
        }
    }
}

/// `amount` nano-kWh over `[start, end)`, per UTC quarter hour, by the largest-remainder rule
/// (ties to the earlier quarter hour).
pub fn quarter_shares(start: i64, end: i64, amount: i128) -> Vec<Part> {
    assert!(start < end && amount >= 0);
    let len = i128::from(end) - i128::from(start);
    let mut parts = Vec::new();
    let mut q = start.div_euclid(GRID);
    while q * GRID < end {
        let lo = start.max(q * GRID);
        let hi = end.min((q + 1) * GRID);
        parts.push(Part { lo, hi, share: 0 });
        q += 1;
    }
    let mut remainders = Vec::with_capacity(parts.len());
    let mut given = 0;
    for (i, part) in parts.iter_mut().enumerate() {
        let exact = amount * i128::from(part.hi - part.lo);
        part.share = exact / len;
        given += part.share;
        remainders.push((exact % len, i));
    }
    // Largest remainder first, then the earlier quarter hour.
    remainders.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    let left = amount - given;
    assert!(left >= 0 && left <= parts.len() as i128);
    for &(_, i) in remainders.iter().take(left as usize) {
        parts[i].share += 1;
    }
    parts
}

/// One pair of consecutive readings in the model.
#[derive(Clone, Debug)]
pub struct Pair {
    pub start: i64,
    pub end: i64,
    pub amount: i128,
    pub estimated: bool,
    pub parts: Vec<Part>,
}

impl Pair {
    /// The pair's share of `[from, to)`.
    pub fn share(&self, from: i64, to: i64) -> i128 {
        if to <= from || to <= self.start || from >= self.end {
            return 0;
        }
        let first = self.parts.partition_point(|p| p.hi <= from);
        self.parts[first..]
            .iter()
            .take_while(|p| p.lo < to)
            .map(|p| p.before(to) - p.before(from))
            .sum()
    }
}

/// The pairs of `readings` (distinct times, any order).
pub fn pairs(readings: &[Reading]) -> Vec<Pair> {
    let mut sorted = readings.to_vec();
    sorted.sort_by_key(|r| r.t);
    sorted
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            assert!(a.t < b.t, "the model takes distinct times");
            let amount = increase(a, b);
            Pair {
                start: a.t,
                end: b.t,
                amount,
                estimated: b.t - a.t > ESTIMATE_AFTER,
                parts: if amount == 0 {
                    Vec::new()
                } else {
                    quarter_shares(a.t, b.t, amount)
                },
            }
        })
        .collect()
}

/// Usage and its estimated part in `[from, to)`, in nano-kWh.
pub fn usage(pairs: &[Pair], from: i64, to: i64) -> (i128, i128) {
    let mut total = (0, 0);
    for pair in pairs {
        if pair.end <= from || pair.start >= to {
            continue;
        }
        let share = pair.share(from, to);
        total.0 += share;
        if pair.estimated {
            total.1 += share;
        }
    }
    total
}

/// Like [`usage`], as an [`Energy`].
pub fn energy_in(pairs: &[Pair], p: Period) -> Energy {
    let (from, to) = span(p);
    let (u, e) = usage(pairs, from, to);
    energy(u, e)
}

/// Usage and estimated per UTC quarter hour (by its start, in nanoseconds).
pub fn by_quarter(pairs: &[Pair]) -> BTreeMap<i64, (i128, i128)> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        for part in &pair.parts {
            let entry = out.entry(part.lo.div_euclid(GRID) * GRID).or_insert((0, 0));
            entry.0 += part.share;
            if pair.estimated {
                entry.1 += part.share;
            }
        }
    }
    out
}

/// The UTC quarter hours of `p`, which must start and end on the grid.
pub fn quarters_of(p: Period) -> Vec<Period> {
    let (from, to) = span(p);
    assert_eq!(from.rem_euclid(GRID), 0, "{p:?} starts off the grid");
    assert_eq!(to.rem_euclid(GRID), 0, "{p:?} ends off the grid");
    (from..to)
        .step_by(GRID as usize)
        .map(|q| period(q, q + GRID))
        .collect()
}

/// How far apart readings are: `(percent, min, max)` in nanoseconds, the percents cumulative
/// (the last one 100).
pub type Gaps = &'static [(u8, i64, i64)];

/// Readings a few seconds to 15 minutes apart, some in longer gaps up to 3 days.
pub const MIXED: Gaps = &[
    (60, SECOND, 15 * MINUTE),
    (85, 15 * MINUTE, 3 * HOUR),
    (100, 3 * HOUR, 3 * DAY),
];
/// Never more than 15 minutes apart (exactly 15 minutes included).
pub const CLOSE: Gaps = &[(80, 1, 15 * MINUTE), (100, 15 * MINUTE, 15 * MINUTE)];
/// Always more than 15 minutes apart.
pub const SPARSE: Gaps = &[
    (50, 15 * MINUTE + 1, 15 * MINUTE + 1),
    (90, 15 * MINUTE + 1, 6 * HOUR),
    (100, 6 * HOUR, 2 * DAY),
];
/// Bursts of close readings between gaps of up to three weeks: a year in ~150 readings.
pub const BURSTS: Gaps = &[(80, SECOND, 20 * MINUTE), (100, 2 * DAY, 21 * DAY)];

fn gap(gaps: Gaps, kind: u8, raw: u64) -> i64 {
    let (_, min, max) = gaps
        .iter()
        .find(|(percent, _, _)| kind < *percent)
        .copied()
        .unwrap_or(*gaps.last().unwrap());
    min + (raw % (max - min + 1) as u64) as i64
}

/// A history from `start` until `end` (a reading at or after `end` is kept, so that the last
/// period is closed): a register that rises at up to 1000 kW, and, with `anomalies`, resets to
/// a lower value and glitches (a jump of [`GLITCH_UNITS`] that the register then keeps).
pub fn history(
    start: i64,
    end: i64,
    gaps: Gaps,
    anomalies: bool,
    max_readings: usize,
) -> impl Strategy<Value = Vec<Reading>> {
    (
        0u64..u64::MAX,
        0i64..1000 * UNITS_PER_KWH,
        prop::collection::vec(
            (0u8..100, any::<u64>(), 0u8..100, any::<u64>()),
            1..max_readings,
        ),
    )
        .prop_map(move |(first, register, steps)| {
            let mut t = start - gap(gaps, (first % 100) as u8, first);
            let mut register = register + 1000 * UNITS_PER_KWH;
            let mut out = vec![Reading { t, units: register }];
            for (kind, raw, event, step) in steps {
                if t >= end {
                    break;
                }
                let dt = gap(gaps, kind, raw);
                t += dt;
                match event {
                    0..=3 if anomalies => register = (step % (register as u64 + 1)) as i64,
                    4..=6 if anomalies => register += GLITCH_UNITS,
                    _ => {
                        // Up to 1000 kW: dt ns × 1000 kW / 3.6e12 ns/h × 256 units/kWh.
                        let cap = (i128::from(dt) * 1000 * i128::from(UNITS_PER_KWH)
                            / 3_600_000_000_000) as u64;
                        register += (step % (cap + 1)) as i64;
                    }
                }
                out.push(Reading { t, units: register });
            }
            out
        })
}
