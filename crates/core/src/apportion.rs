//! How one pair of readings is spread over time (docs/accounting.md, "Usage of a panel in a
//! period"): its increase `d`, in whole nano-kWh, is shared over `[a.t, b.t)` in proportion to
//! time, so that every share is a whole number of nano-kWh and the shares add up to `d` exactly.
//!
//! The shares are fixed once, on a grid every period is cut from: the UTC quarter hours (every
//! zone in use today is a whole number of quarter hours from UTC, so every local interval, day
//! and month is made of them). The pair's part of each quarter hour it overlaps, `d × overlap /
//! (b.t − a.t)`, is rounded down, and the nano-kWh left over go one each to the quarter hours
//! with the largest remainders, the earlier first on a tie (the largest-remainder rule). Any
//! period made of whole quarter hours then gets the sum of its quarter hours' shares, so any
//! partition of time (intervals, days, months, a year) adds up to the pair exactly.
//!
//! A period that cuts a quarter hour (a zone with an offset that is not a whole quarter hour,
//! such as Liberia's −0:44:30 until 1972) splits that quarter hour's share in proportion to
//! time, rounding the running total down: the two parts still add up to the quarter hour's.
//!
//! All of it is integer arithmetic on nanoseconds and nano-kWh: no figure depends on the order
//! in which pairs or periods are visited.

use chrono::{DateTime, TimeZone, Utc};

/// The grid the shares are fixed on: a UTC quarter hour, in nanoseconds.
pub const GRID_NANOS: i64 = 15 * 60 * 1_000_000_000;

/// `a × b / c` rounded down, and its remainder, for `0 ≤ a`, `0 ≤ b ≤ c`, `0 < c < 2^64`,
/// without overflow.
fn mul_div(a: u128, b: u128, c: u128) -> (u128, u128) {
    let (q, r) = (a / c, a % c);
    // r × b < c × c < 2^128.
    let rb = r * b;
    (q * b + rb / c, rb % c)
}

/// One pair's increase, spread over `[start, end)` (nanoseconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    start: i64,
    end: i64,
    /// The increase, in nano-kWh (≥ 0).
    amount: u128,
    /// Grid index of the quarter hour holding `start`.
    first: i64,
    /// How many quarter hours the pair overlaps (≥ 1).
    count: i64,
    /// Rounded-down shares of the first, a middle and the last quarter hour.
    floors: [u128; 3],
    /// Extra nano-kWh given to the first and the last quarter hour (0 or 1 each), and how
    /// many of the middle ones (the earliest) get one.
    bonus_first: u128,
    bonus_last: u128,
    bonus_middle: i64,
}

impl Spread {
    /// `amount` nano-kWh spread over `[start, end)`; `None` for an empty or reversed interval.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, amount: i128) -> Option<Spread> {
        Spread::from_nanos(nanos(start), nanos(end), amount)
    }

    /// Like [`Spread::new`], in nanoseconds since the epoch.
    pub fn from_nanos(start: i64, end: i64, amount: i128) -> Option<Spread> {
        if end <= start {
            return None;
        }
        let amount = amount.max(0) as u128;
        let length = (end as i128 - start as i128) as u128;
        let first = start.div_euclid(GRID_NANOS);
        let last = (end - 1).div_euclid(GRID_NANOS);
        let count = last - first + 1;
        if count == 1 {
            return Some(Spread {
                start,
                end,
                amount,
                first,
                count,
                floors: [amount, 0, 0],
                bonus_first: 0,
                bonus_last: 0,
                bonus_middle: 0,
            });
        }
        let grid = GRID_NANOS as u128;
        let first_len = ((first + 1) as i128 * GRID_NANOS as i128 - start as i128) as u128;
        let last_len = (end as i128 - last as i128 * GRID_NANOS as i128) as u128;
        let middles = (count - 2) as u128;
        let (f0, r0) = mul_div(amount, first_len, length);
        let (fm, rm) = mul_div(amount, grid, length);
        let (fz, rz) = mul_div(amount, last_len, length);
        let mut left = amount - f0 - fz - fm * middles;
        // Largest remainder first; on a tie the earlier quarter hour: first, middles, last.
        let mut groups = [(r0, 0u8, 1u128), (rm, 1, middles), (rz, 2, 1)];
        groups.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        let (mut bonus_first, mut bonus_last, mut bonus_middle) = (0, 0, 0);
        for (_, group, size) in groups {
            let given = left.min(size);
            left -= given;
            match group {
                0 => bonus_first = given,
                1 => bonus_middle = given as i64,
                _ => bonus_last = given,
            }
        }
        Some(Spread {
            start,
            end,
            amount,
            first,
            count,
            floors: [f0, fm, fz],
            bonus_first,
            bonus_last,
            bonus_middle,
        })
    }

    /// The whole increase, in nano-kWh.
    pub fn amount(&self) -> i128 {
        self.amount as i128
    }

    /// The share of the `i`-th quarter hour the pair overlaps (0-based).
    fn quarter(&self, i: i64) -> u128 {
        if self.count == 1 {
            return self.amount;
        }
        if i == 0 {
            self.floors[0] + self.bonus_first
        } else if i == self.count - 1 {
            self.floors[2] + self.bonus_last
        } else {
            self.floors[1] + u128::from(i - 1 < self.bonus_middle)
        }
    }

    /// The sum of the shares of quarter hours `from..to` (0-based, within `0..count`).
    fn quarters(&self, from: i64, to: i64) -> u128 {
        if from >= to {
            return 0;
        }
        if self.count == 1 {
            return self.amount;
        }
        let mut sum = 0;
        let mut from = from;
        let mut to = to;
        if from == 0 {
            sum += self.quarter(0);
            from = 1;
        }
        if to == self.count && to > from {
            sum += self.quarter(self.count - 1);
            to = self.count - 1;
        }
        if from < to {
            // Middle quarter hours: from..to within 1..count-1.
            let n = (to - from) as u128;
            let bonus = (to - 1).min(self.bonus_middle) - (from - 1).min(self.bonus_middle);
            sum += self.floors[1] * n + bonus.max(0) as u128;
        }
        sum
    }

    /// The pair's part of quarter hour `i` as an interval `[lo, hi)` in nanoseconds.
    fn quarter_bounds(&self, i: i64) -> (i64, i64) {
        let grid_start = (self.first + i).saturating_mul(GRID_NANOS);
        let lo = grid_start.max(self.start);
        let hi = grid_start.saturating_add(GRID_NANOS).min(self.end);
        (lo, hi)
    }

    /// The share of quarter hour `i` that falls before `at` (within its bounds): the quarter
    /// hour's share × the time before `at` / its time, rounded down.
    fn quarter_before(&self, i: i64, at: i64) -> u128 {
        let (lo, hi) = self.quarter_bounds(i);
        let at = at.clamp(lo, hi);
        if at == hi {
            return self.quarter(i);
        }
        let part = (at - lo) as u128;
        let whole = (hi - lo) as u128;
        mul_div(self.quarter(i), part, whole).0
    }

    /// The share of everything before `at` (nanoseconds).
    fn before(&self, at: i64) -> u128 {
        if at <= self.start {
            return 0;
        }
        if at >= self.end {
            return self.amount;
        }
        let i = at.div_euclid(GRID_NANOS) - self.first;
        self.quarters(0, i) + self.quarter_before(i, at)
    }

    /// The pair's share of `[from, to)`, in nano-kWh.
    pub fn share(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
        self.share_nanos(nanos(from), nanos(to))
    }

    /// Like [`Spread::share`], in nanoseconds since the epoch.
    pub fn share_nanos(&self, from: i64, to: i64) -> i128 {
        if to <= from || to <= self.start || from >= self.end {
            return 0;
        }
        (self.before(to) - self.before(from)) as i128
    }

    /// Every quarter hour the pair overlaps, in time order, as (its start, the share).
    pub fn by_quarter(&self) -> impl Iterator<Item = (DateTime<Utc>, i128)> + '_ {
        self.by_quarter_within(i64::MIN, i64::MAX)
    }

    /// The quarter hours the pair overlaps that start in `[from, to)` (nanoseconds), in time
    /// order, as (their start, the share).
    pub fn by_quarter_within(
        &self,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (DateTime<Utc>, i128)> + '_ {
        let first = from.div_euclid(GRID_NANOS) + i64::from(from.rem_euclid(GRID_NANOS) != 0);
        let lo = (first.saturating_sub(self.first)).clamp(0, self.count);
        let last = to.div_euclid(GRID_NANOS) + i64::from(to.rem_euclid(GRID_NANOS) != 0);
        let hi = (last.saturating_sub(self.first)).clamp(lo, self.count);
        (lo..hi).map(move |i| {
            let start = (self.first + i).saturating_mul(GRID_NANOS);
            (Utc.timestamp_nanos(start), self.quarter(i) as i128)
        })
    }

    /// When the pair starts and ends.
    pub fn interval(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            Utc.timestamp_nanos(self.start),
            Utc.timestamp_nanos(self.end),
        )
    }
}

/// Nanoseconds since the epoch, saturating at the ends of what an `i64` holds (InfluxDB's range).
pub fn nanos(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt()
        .unwrap_or(if time.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn quarters(spread: &Spread) -> Vec<i128> {
        spread.by_quarter().map(|(_, share)| share).collect()
    }

    #[test]
    fn a_pair_inside_one_quarter_hour_is_all_there() {
        let s = Spread::new(at("2026-03-01T10:01:00Z"), at("2026-03-01T10:02:00Z"), 7).unwrap();
        assert_eq!(quarters(&s), vec![7]);
        assert_eq!(
            s.share(at("2026-03-01T10:00:00Z"), at("2026-03-01T10:15:00Z")),
            7
        );
        assert_eq!(
            s.share(at("2026-03-01T10:02:00Z"), at("2026-03-01T10:15:00Z")),
            0
        );
    }

    #[test]
    fn the_largest_remainders_get_the_nano_kwh_left_over() {
        // 10 nano-kWh over 10:10–10:40: 5, 15 and 10 minutes of 30, exactly 1.666…, 5 and
        // 3.333…: floors 1, 5, 3 (9); the one left goes to the largest remainder (0.666…).
        let s = Spread::new(at("2026-03-01T10:10:00Z"), at("2026-03-01T10:40:00Z"), 10).unwrap();
        assert_eq!(quarters(&s), vec![2, 5, 3]);
        // 2 nano-kWh over three equal quarter hours: 0.666… each, the two earliest get one.
        let s = Spread::new(at("2026-03-01T10:00:00Z"), at("2026-03-01T10:45:00Z"), 2).unwrap();
        assert_eq!(quarters(&s), vec![1, 1, 0]);
        // Ties between a middle and the last: the middle (earlier) first.
        let s = Spread::new(at("2026-03-01T10:00:00Z"), at("2026-03-01T11:00:00Z"), 3).unwrap();
        assert_eq!(quarters(&s), vec![1, 1, 1, 0]);
    }

    #[test]
    fn the_worked_example_of_a_32_hour_outage() {
        // 22:00 on 1 March to 06:00 on 3 March in Asia/Jakarta (UTC+7), 320 kWh: 20 / 240 / 60.
        let kwh = 1_000_000_000_i128;
        let s = Spread::new(
            at("2026-03-01T15:00:00Z"),
            at("2026-03-02T23:00:00Z"),
            320 * kwh,
        )
        .unwrap();
        let day1 = s.share(at("2026-02-28T17:00:00Z"), at("2026-03-01T17:00:00Z"));
        let day2 = s.share(at("2026-03-01T17:00:00Z"), at("2026-03-02T17:00:00Z"));
        let day3 = s.share(at("2026-03-02T17:00:00Z"), at("2026-03-03T17:00:00Z"));
        assert_eq!((day1, day2, day3), (20 * kwh, 240 * kwh, 60 * kwh));
        assert_eq!(quarters(&s).len(), 32 * 4);
        assert!(quarters(&s).iter().all(|&q| q == 2_500_000_000));
    }

    #[test]
    fn any_cut_adds_up_to_the_pair() {
        let s = Spread::from_nanos(123_456_789, 7_777_777_777_777, 1_000_000_007).unwrap();
        let cuts = [
            0,
            123_456_789,
            900_000_000_000,
            1_000_000_000_001,
            1_800_000_000_000,
            5_555_555_555_555,
            7_777_777_777_777,
            9_000_000_000_000,
        ];
        let total: i128 = cuts.windows(2).map(|w| s.share_nanos(w[0], w[1])).sum();
        assert_eq!(total, 1_000_000_007);
        let by_quarter: i128 = quarters(&s).iter().sum();
        assert_eq!(by_quarter, 1_000_000_007);
        // A quarter hour cut in two keeps its share.
        let q = 900_000_000_000;
        assert_eq!(
            s.share_nanos(q, q + 450_000_000_000) + s.share_nanos(q + 450_000_000_000, 2 * q),
            s.share_nanos(q, 2 * q)
        );
    }

    #[test]
    fn huge_amounts_and_gaps_do_not_overflow() {
        let kwh = 1_000_000_000_i128;
        let s = Spread::from_nanos(0, i64::MAX, 1_000_000_000_000 * kwh).unwrap();
        assert_eq!(s.share_nanos(0, i64::MAX), 1_000_000_000_000 * kwh);
        assert_eq!(s.share_nanos(i64::MIN, 0), 0);
        assert!(Spread::from_nanos(5, 5, 1).is_none());
    }
}
