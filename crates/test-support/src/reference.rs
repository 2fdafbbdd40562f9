//! The usage rule of docs/accounting.md written out again, the plain way, for tests to check the
//! programs' figures against. It shares no code with the programs: where they compute a pair's
//! shares in closed form, this lists every quarter hour the pair overlaps, divides, sorts the
//! remainders and hands out what is left, exactly as the rule reads.
//!
//! The rule: a pair of consecutive readings (a, b) has the increase `b − a` in nano-kWh
//! (rounded), or 0 when the register dropped or the increase implies more than `MAX_POWER_KW`
//! between them. It is spread over `[a.t, b.t)`: each UTC quarter hour it overlaps gets the
//! increase × overlap / (b.t − a.t) rounded down, and the nano-kWh left over go one each to the
//! quarter hours with the largest remainders, the earlier first. The shares of a pair longer
//! than `ESTIMATE_AFTER_SECS` are also estimated.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A UTC quarter hour in nanoseconds.
const QUARTER: i128 = 900_000_000_000;

/// The settings the rule depends on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub max_power_kw: f64,
    pub estimate_after_secs: i64,
}

impl Default for Rule {
    /// The programs' defaults: 5000 kW, 900 s.
    fn default() -> Self {
        Rule {
            max_power_kw: 5000.0,
            estimate_after_secs: 900,
        }
    }
}

/// Usage and its estimated part, in nano-kWh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shares {
    pub usage: i128,
    pub estimated: i128,
}

impl std::ops::AddAssign for Shares {
    fn add_assign(&mut self, other: Shares) {
        self.usage += other.usage;
        self.estimated += other.estimated;
    }
}

impl Shares {
    /// The usage in kWh as the API shows it: rounded to 3 decimals, half away from zero.
    pub fn usage_kwh(&self) -> f64 {
        kwh_3(self.usage)
    }

    /// The estimated part in kWh, rounded like [`Shares::usage_kwh`].
    pub fn estimated_kwh(&self) -> f64 {
        kwh_3(self.estimated)
    }
}

/// Nano-kWh as kWh rounded to 3 decimals, half away from zero.
pub fn kwh_3(nano: i128) -> f64 {
    let micro = 1_000_000;
    let milli = if nano >= 0 {
        (nano + micro / 2) / micro
    } else {
        (nano - micro / 2) / micro
    };
    milli as f64 / 1000.0
}

fn nanos(time: DateTime<Utc>) -> i128 {
    i128::from(
        time.timestamp_nanos_opt()
            .expect("a time InfluxDB can hold"),
    )
}

/// Each UTC quarter hour's shares (keyed by its start, nanoseconds since the epoch) of the
/// history `points` (time, register), in any order.
pub fn quarter_shares(points: &[(DateTime<Utc>, f64)], rule: Rule) -> BTreeMap<i128, Shares> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    sorted.dedup();
    let mut out: BTreeMap<i128, Shares> = BTreeMap::new();
    for pair in sorted.windows(2) {
        let ((ta, a), (tb, b)) = (pair[0], pair[1]);
        let (start, end) = (nanos(ta), nanos(tb));
        if end <= start {
            continue;
        }
        let increase = b - a;
        let seconds = (end - start) as f64 / 1e9;
        let d: i128 = if increase > 0.0 && increase * 3600.0 <= rule.max_power_kw * seconds {
            (increase * 1e9).round() as i128
        } else {
            0
        };
        if d == 0 {
            continue;
        }
        let length = end - start;
        let estimated = length > i128::from(rule.estimate_after_secs) * 1_000_000_000;
        // (quarter start, share so far, remainder)
        let mut parts: Vec<(i128, i128, i128)> = Vec::new();
        let mut quarter = start.div_euclid(QUARTER) * QUARTER;
        while quarter < end {
            let overlap = (quarter + QUARTER).min(end) - quarter.max(start);
            parts.push((quarter, d * overlap / length, d * overlap % length));
            quarter += QUARTER;
        }
        let given: i128 = parts.iter().map(|p| p.1).sum();
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&i, &j| parts[j].2.cmp(&parts[i].2).then(i.cmp(&j)));
        for &i in order.iter().take((d - given) as usize) {
            parts[i].1 += 1;
        }
        for (quarter, share, _) in parts {
            let entry = out.entry(quarter).or_default();
            entry.usage += share;
            if estimated {
                entry.estimated += share;
            }
        }
    }
    out
}

/// The shares of the history in `[start, end)`, which must start and end on UTC quarter hours
/// (every period of the zones the tests use does).
pub fn usage(
    points: &[(DateTime<Utc>, f64)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    rule: Rule,
) -> Shares {
    let (start, end) = (nanos(start), nanos(end));
    assert!(
        start % QUARTER == 0 && end % QUARTER == 0,
        "the reference sums whole quarter hours only"
    );
    let mut total = Shares::default();
    for (_, shares) in quarter_shares(points, rule).range(start..end) {
        total += *shares;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_worked_examples() {
        let rule = Rule::default();
        // 23:50 -> 1000, 00:10 -> 1002 (UTC here): 1 kWh each side of midnight.
        let points = [
            (at("2026-03-01T23:50:00Z"), 1000.0),
            (at("2026-03-02T00:10:00Z"), 1002.0),
        ];
        let day1 = usage(
            &points,
            at("2026-03-01T00:00:00Z"),
            at("2026-03-02T00:00:00Z"),
            rule,
        );
        let day2 = usage(
            &points,
            at("2026-03-02T00:00:00Z"),
            at("2026-03-03T00:00:00Z"),
            rule,
        );
        assert_eq!((day1.usage, day2.usage), (1_000_000_000, 1_000_000_000));
        assert_eq!(
            day1.estimated + day2.estimated,
            2_000_000_000,
            "20 minutes > 900 s"
        );
        // Three nano-kWh over three quarter hours of 10, 15 and 5 minutes: 1.0, 1.5, 0.5 →
        // floors 1, 1, 0 and the one left to the largest remainder (the middle one).
        let points = [
            (at("2026-03-01T10:05:00Z"), 0.0),
            (at("2026-03-01T10:35:00Z"), 3e-9),
        ];
        let shares: Vec<i128> = quarter_shares(&points, rule)
            .values()
            .map(|s| s.usage)
            .collect();
        assert_eq!(shares, vec![1, 2, 0]);
    }
}
