//! Property tests of how one pair's increase is spread over its time ([`Spread`]): the shares
//! per UTC quarter hour are the largest-remainder rule's, each within a nano-kWh of the exact
//! proportional share, and however the time is cut the shares add up to the increase. The
//! figures are recomputed here with plain `i128` arithmetic (the model of `common`), never
//! taken from the code under test.

mod common;

use chrono::{TimeZone, Utc};
use common::{
    energy, pairs, period, points, quarter_shares, rules, Part, Reading, DAY, GRID, MINUTE,
    NANO_PER_UNIT, SECOND, UNITS_PER_KWH,
};
use energy_core::apportion::Spread;
use energy_core::usage::usage_in_periods;
use energy_core::Period;
use proptest::prelude::*;

/// 2026-01-01T00:00:00Z in nanoseconds.
const Y2026: i64 = 1_767_225_600 * SECOND;

/// Up to 10^12 kWh in nano-kWh, with small amounts (many ties) as often as large ones.
fn amount() -> impl Strategy<Value = i128> {
    prop_oneof![0i128..50, 0i128..=1_000_000_000_000_000_000_000]
}

/// A start on whole minutes or seconds near 2026 (many quarter hours cut alike, so many tied
/// remainders), or any nanosecond within three years of 1970 on either side.
fn start() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-100_000i64..100_000).prop_map(|m| Y2026 + m * MINUTE),
        (-100_000i64..100_000).prop_map(|s| Y2026 + s * 7 * SECOND),
        -100_000_000_000_000_000i64..100_000_000_000_000_000,
    ]
}

/// From a nanosecond to three days, often whole minutes or whole quarter hours.
fn length() -> impl Strategy<Value = i64> {
    prop_oneof![
        1i64..=2 * GRID,
        (1i64..=3 * 24 * 60).prop_map(|m| m * MINUTE),
        (1i64..=3 * 96).prop_map(|q| q * GRID),
        1i64..=3 * DAY,
    ]
}

/// `amount × part / length` rounded down and up.
fn bounds(amount: i128, part: i64, length: i64) -> (i128, i128) {
    let (part, length) = (i128::from(part), i128::from(length));
    let floor = amount * part / length;
    let ceil = (amount * part + length - 1) / length;
    (floor, ceil)
}

/// The nanosecond start of each quarter hour the spread reports, and its share.
fn reported(spread: &Spread) -> Vec<(i64, i128)> {
    spread
        .by_quarter()
        .map(|(start, share)| (common::ns(start), share))
        .collect()
}

proptest! {
    /// The shares per quarter hour are the largest-remainder rule's (ties to the earlier
    /// quarter hour), each within a nano-kWh of `d × overlap / length`, and they add up to `d`.
    #[test]
    fn by_quarter_is_the_largest_remainder_rule(start in start(), length in length(), amount in amount()) {
        let end = start + length;
        let spread = Spread::from_nanos(start, end, amount).unwrap();
        prop_assert_eq!(spread.amount(), amount);
        let got = reported(&spread);
        let model = quarter_shares(start, end, amount);
        let expected: Vec<(i64, i128)> = model
            .iter()
            .map(|p| (p.lo.div_euclid(GRID) * GRID, p.share))
            .collect();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(got.iter().map(|q| q.1).sum::<i128>(), amount);
        for (q, share) in &got {
            let overlap = end.min(q + GRID) - start.max(*q);
            let (floor, ceil) = bounds(amount, overlap, length);
            prop_assert!(floor <= *share && *share <= ceil, "quarter {}: {} not in [{}, {}]", q, share, floor, ceil);
        }
        let (a, b) = spread.interval();
        prop_assert_eq!((common::ns(a), common::ns(b)), (start, end));
    }

    /// However `[start, end)` and the time around it are cut (to the nanosecond), the shares
    /// add up to the increase; each is the model's (a quarter hour cut by a period splits its
    /// share in proportion to time, the running total rounded down).
    #[test]
    fn the_shares_over_any_cuts_add_up_to_the_increase(
        start in start(),
        length in length(),
        amount in amount(),
        cuts in prop::collection::vec(0i64..=1_000_000, 0..30),
    ) {
        let end = start + length;
        let spread = Spread::from_nanos(start, end, amount).unwrap();
        let model = common::Pair {
            start,
            end,
            amount,
            estimated: false,
            parts: quarter_shares(start, end, amount),
        };
        // Cuts spread over [start − a quarter hour, end + a quarter hour].
        let reach = i128::from(length) + 2 * i128::from(GRID);
        let mut at: Vec<i64> = cuts
            .iter()
            .map(|c| (i128::from(start - GRID) + reach * i128::from(*c) / 1_000_000) as i64)
            .collect();
        at.push(start - GRID);
        at.push(end + GRID);
        at.sort_unstable();
        at.dedup();
        let mut total = 0;
        for w in at.windows(2) {
            let share = spread.share_nanos(w[0], w[1]);
            prop_assert_eq!(share, model.share(w[0], w[1]), "[{}, {})", w[0], w[1]);
            prop_assert_eq!(share, spread.share(Utc.timestamp_nanos(w[0]), Utc.timestamp_nanos(w[1])));
            total += share;
        }
        prop_assert_eq!(total, amount);
        // An empty or reversed period has nothing.
        prop_assert_eq!(spread.share_nanos(end, start), 0);
        prop_assert_eq!(spread.share_nanos(start, start), 0);
    }

    /// A quarter hour cut in two at any instant: the part before it is the quarter hour's
    /// share × the time before / the pair's time in it, rounded down; the two parts add up.
    #[test]
    fn a_cut_quarter_hour_keeps_its_share(
        start in start(),
        length in length(),
        amount in amount(),
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let end = start + length;
        let spread = Spread::from_nanos(start, end, amount).unwrap();
        let parts = quarter_shares(start, end, amount);
        let Part { lo, hi, share } = parts[pick.index(parts.len())];
        let at = lo + cut.index((hi - lo) as usize + 1) as i64;
        let before = share * i128::from(at - lo) / i128::from(hi - lo);
        prop_assert_eq!(spread.share_nanos(lo, at), before);
        prop_assert_eq!(spread.share_nanos(at, hi), share - before);
        // The grid quarter hour around the part holds just the part's share.
        let q = lo.div_euclid(GRID) * GRID;
        prop_assert_eq!(spread.share_nanos(q, q + GRID), share);
    }

    /// Anywhere in InfluxDB's range, over up to all of it, with up to 10^15 kWh: the shares
    /// over any cuts add up, and any quarter hour (first, last or any between) is within a
    /// nano-kWh of its exact share. Too many quarter hours to list: cuts and samples only.
    #[test]
    fn huge_spreads_add_up_and_stay_within_a_nano_kwh(
        ends in (any::<i64>(), any::<i64>()),
        amount in 0i128..=1_000_000_000_000_000_000_000_000,
        cuts in prop::collection::vec(any::<i64>(), 0..20),
        samples in prop::collection::vec(any::<prop::sample::Index>(), 1..10),
    ) {
        let (start, end) = (ends.0.min(ends.1), ends.0.max(ends.1));
        prop_assume!(start < end);
        let spread = Spread::from_nanos(start, end, amount).unwrap();
        let mut at = cuts;
        at.push(i64::MIN);
        at.push(i64::MAX);
        at.sort_unstable();
        at.dedup();
        let total: i128 = at.windows(2).map(|w| spread.share_nanos(w[0], w[1])).sum();
        prop_assert_eq!(total, amount);

        let length = i128::from(end) - i128::from(start);
        let first = i128::from(start.div_euclid(GRID));
        let last = i128::from((end - 1).div_euclid(GRID));
        let count = last - first + 1;
        let mut picks: Vec<i128> = samples
            .iter()
            .map(|s| first + (s.index(usize::MAX) as i128) % count)
            .collect();
        picks.extend([first, last, (first + 1).min(last), (last - 1).max(first)]);
        for q in picks {
            let lo = (q * i128::from(GRID)).max(i128::from(start));
            let hi = ((q + 1) * i128::from(GRID)).min(i128::from(end));
            let share = spread.share_nanos(lo as i64, hi as i64);
            // The bounds in i128: the overlap is at most a quarter hour.
            let exact = amount * (hi - lo);
            let (floor, ceil) = (exact / length, (exact + length - 1) / length);
            prop_assert!(floor <= share && share <= ceil, "quarter {}: {} not in [{}, {}]", q, share, floor, ceil);
            let listed: Vec<i128> = spread
                .by_quarter_within(lo as i64, hi as i64)
                .map(|(_, s)| s)
                .collect();
            if lo.rem_euclid(i128::from(GRID)) == 0 {
                prop_assert_eq!(listed, vec![share]);
            }
        }
    }

    /// The same through the usage maths: one pair of readings, its usage in each quarter hour
    /// it overlaps within a nano-kWh of `d × overlap / length`, the quarters adding up to `d`,
    /// all estimated when the pair is longer than 15 minutes and none otherwise.
    #[test]
    fn every_quarter_hour_of_a_pair_is_within_a_nano_kwh_of_its_share(
        start in start().prop_filter("after 1970", |s| *s > 0),
        length in length(),
        kw in 0i64..=4000,
    ) {
        let end = start + length;
        // Up to `kw` on average, in whole 1/256 kWh.
        let units = (i128::from(length) * i128::from(kw) * i128::from(UNITS_PER_KWH) / 3_600_000_000_000) as i64;
        let readings = [Reading { t: start, units: 1000 }, Reading { t: end, units: 1000 + units }];
        let d = i128::from(units) * NANO_PER_UNIT;
        let first = start.div_euclid(GRID) * GRID;
        let quarters: Vec<Period> = (first..end)
            .step_by(GRID as usize)
            .map(|q| period(q, q + GRID))
            .collect();
        let got = usage_in_periods(&points(&readings), &quarters, rules());
        let estimated = length > 15 * MINUTE;
        let mut total = 0;
        for (q, e) in quarters.iter().zip(&got) {
            let (from, to) = common::span(*q);
            let overlap = end.min(to) - start.max(from);
            let (floor, ceil) = bounds(d, overlap, length);
            let share = e.usage.nano_kwh();
            prop_assert!(floor <= share && share <= ceil, "{:?}: {} not in [{}, {}]", q, share, floor, ceil);
            prop_assert_eq!(*e, energy(share, if estimated { share } else { 0 }));
            total += share;
        }
        prop_assert_eq!(total, d);
        let model = pairs(&readings);
        prop_assert_eq!(got, quarters.iter().map(|q| common::energy_in(&model, *q)).collect::<Vec<_>>());
    }
}

#[test]
fn no_time_is_no_spread() {
    assert!(Spread::from_nanos(5, 5, 1).is_none());
    assert!(Spread::from_nanos(6, 5, 1).is_none());
    // A negative amount (never asked for) spreads nothing.
    let s = Spread::from_nanos(0, GRID, -7).unwrap();
    assert_eq!(s.amount(), 0);
}
