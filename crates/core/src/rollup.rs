//! The usage rollup: the usage of docs/accounting.md, pre-summed per panel per 15-minute bucket and per UTC
//! day, so that a month is read from a few thousand sums instead of every raw reading.
//!
//! A bucket's usage is the sum of the shares of the pairs that overlap it — exactly what
//! [`crate::usage::usage_in`] gives for the bucket as a period. Because every pair's shares
//! are fixed per bucket ([`crate::apportion`]), the usage of any period made of whole buckets is
//! the sum of its buckets' usages, to the nano-kWh ([`Usage`] is an integer, and so is the
//! stored field), and so is its estimated part. A day sum is the sum of the day's 96 buckets.
//!
//! Why 15 minutes: every time zone in use today is a whole number of quarter hours from UTC
//! (India +5:30, Nepal +5:45, Chatham +12:45), so every local day and month starts and ends on a
//! bucket boundary. A period that does not (historical offsets such as Liberia's -0:44:30 until
//! 1972) is still answered exactly: [`split`] hands its unaligned ends to the raw path.
//!
//! Which buckets are up to date is recorded as one instant, the rollup's `complete_until`:
//! everything stored before it has been rolled up. [`split`] uses the rollup only before that
//! instant and leaves the rest of a period (normally the last few seconds) to the raw path.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};

use crate::line_protocol::escape_tag_value;
use crate::period::Period;
use crate::usage::{Energy, EnergyPoint, Rules, Usage};

/// Usage per panel per 15-minute bucket; timestamp = the bucket's start.
pub const QUARTER_MEASUREMENT: &str = "energy_usage_15m";
/// Usage per panel per UTC hour (the sum of its 4 buckets); timestamp = the hour's start. A
/// month cut at local hours (time-of-use windows) is read from a quarter of the rows.
pub const HOUR_MEASUREMENT: &str = "energy_usage_1h";
/// Usage per panel per UTC day (the sum of its 96 buckets); timestamp = midnight UTC.
pub const DAY_MEASUREMENT: &str = "energy_usage_1d";
/// Usage per panel per UTC calendar month (the sum of its days); timestamp = the month's first
/// midnight UTC.
pub const MONTH_MEASUREMENT: &str = "energy_usage_1mo";
/// The rollup's progress: fields [`COMPLETE_UNTIL`] and [`MAX_POWER_FIELD`].
pub const STATE_MEASUREMENT: &str = "energy_rollup_state";
/// Integer field of the rollup points: usage in nano-kWh.
pub const USAGE_FIELD: &str = "usage_nkwh";
/// Integer field of the rollup points: the estimated part of the usage, in nano-kWh.
pub const ESTIMATED_FIELD: &str = "estimated_nkwh";
/// Integer field of the rollup points: the largest usage of one bucket in nano-kWh (a bucket's
/// own usage; a day's or month's largest bucket), for the maximum 15-minute demand.
pub const PEAK_FIELD: &str = "peak_nkwh";
/// Integer field of the rollup points: how many readings the bucket or day holds.
pub const READINGS_FIELD: &str = "readings";
/// Integer field of the state: nanoseconds since the epoch before which the rollup is complete.
pub const COMPLETE_UNTIL: &str = "complete_until";
/// Float field of the state: the `MAX_POWER_KW` the rollup was computed with. A reader whose
/// glitch threshold differs must not use it.
pub const MAX_POWER_FIELD: &str = "max_power_kw";
/// Integer field of the state: the `ESTIMATE_AFTER_SECS` the rollup was computed with.
pub const ESTIMATE_AFTER_FIELD: &str = "estimate_after_secs";
/// Integer field of the state: which measurements the rollup keeps, and by which rule. Absent
/// (a rollup written before month sums existed): buckets and days. [`FORMAT_WITH_MONTHS`]: also
/// months. [`FORMAT_SPREAD`]: every pair spread over its time, with the estimated part.
/// [`FORMAT_PEAKS`]: also each point's largest bucket. [`FORMAT_HOURS`]: also hours.
pub const FORMAT_FIELD: &str = "format";
/// Integer field of the state: nanoseconds since the epoch (InfluxDB's clock) before which every
/// entry of the invalidation log (`crate::invalidation`) is rolled up.
pub const LOG_UNTIL_FIELD: &str = "log_until";
/// The [`FORMAT_FIELD`] of a rollup that also keeps [`MONTH_MEASUREMENT`] (each pair in the
/// bucket of its later reading: no longer used, rebuilt at start).
pub const FORMAT_WITH_MONTHS: i64 = 2;
/// The [`FORMAT_FIELD`] of a rollup whose pairs are spread over their time (the rule of
/// docs/accounting.md), with months and the estimated part, but no largest bucket (rebuilt at
/// start).
pub const FORMAT_SPREAD: i64 = 3;
/// The [`FORMAT_FIELD`] of a rollup as [`FORMAT_SPREAD`] with [`PEAK_FIELD`] in every point:
/// the oldest one readers use.
pub const FORMAT_PEAKS: i64 = 4;
/// The [`FORMAT_FIELD`] of a rollup as [`FORMAT_PEAKS`] that also keeps [`HOUR_MEASUREMENT`]
/// for its whole history: the one the writer keeps (a [`FORMAT_PEAKS`] rollup gains its hours
/// from its buckets at start).
pub const FORMAT_HOURS: i64 = 5;

pub const GRAIN_SECS: i64 = 15 * 60;
pub const HOUR_SECS: i64 = 3_600;
pub const DAY_SECS: i64 = 86_400;

fn floor_to(time: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    let floored = time.timestamp().div_euclid(secs) * secs;
    Utc.timestamp_opt(floored, 0).single().unwrap_or(time)
}

fn ceil_to(time: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    let floor = floor_to(time, secs);
    if floor == time {
        time
    } else {
        floor + Duration::seconds(secs)
    }
}

/// The start of the bucket holding `time`.
pub fn bucket_start(time: DateTime<Utc>) -> DateTime<Utc> {
    floor_to(time, GRAIN_SECS)
}

/// The first bucket boundary at or after `time`.
pub fn bucket_ceil(time: DateTime<Utc>) -> DateTime<Utc> {
    ceil_to(time, GRAIN_SECS)
}

/// The bucket holding `time`.
pub fn bucket_of(time: DateTime<Utc>) -> Period {
    let start = bucket_start(time);
    Period {
        start,
        end: start + Duration::seconds(GRAIN_SECS),
    }
}

/// The UTC hour holding `time`.
pub fn hour_of(time: DateTime<Utc>) -> Period {
    let start = floor_to(time, HOUR_SECS);
    Period {
        start,
        end: start + Duration::seconds(HOUR_SECS),
    }
}

/// The UTC day holding `time`.
pub fn day_of(time: DateTime<Utc>) -> Period {
    let start = floor_to(time, DAY_SECS);
    Period {
        start,
        end: start + Duration::seconds(DAY_SECS),
    }
}

/// The UTC calendar month holding `time`.
pub fn month_of(time: DateTime<Utc>) -> Period {
    let date = time.date_naive();
    let start = first_of_month(date.year(), date.month());
    let (year, month) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    Period {
        start,
        end: first_of_month(year, month).max(start),
    }
}

fn first_of_month(year: i32, month: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first UTC month boundary at or after `time`.
fn ceil_month(time: DateTime<Utc>) -> DateTime<Utc> {
    let month = month_of(time);
    if month.start == time {
        time
    } else {
        month.end
    }
}

/// One bucket's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub usage: Usage,
    /// The part of `usage` spread over gaps (estimated).
    pub estimated: Usage,
    /// The largest bucket's usage: the bucket's own, or the day's or month's largest.
    pub peak: Usage,
    pub readings: u64,
}

impl Bucket {
    pub fn energy(&self) -> Energy {
        Energy {
            usage: self.usage,
            estimated: self.estimated,
        }
    }
}

/// The buckets that start in `window` (bucket boundaries), each with the shares of the pairs
/// of `points` (sorted by time, distinct times) that overlap it and its count of readings: every
/// bucket a pair overlaps or a reading lies in, in time order. The buckets are exact when
/// `points` hold every reading of `window` plus the last reading before it and the first at or
/// after its end (a pair that straddles an end then counts with its share inside).
pub fn buckets(points: &[EnergyPoint], window: Period, rules: Rules) -> Vec<Bucket> {
    let (from, to) = (
        crate::apportion::nanos(window.start),
        crate::apportion::nanos(window.end),
    );
    let mut out: std::collections::BTreeMap<DateTime<Utc>, Bucket> = Default::default();
    fn entry(
        out: &mut std::collections::BTreeMap<DateTime<Utc>, Bucket>,
        start: DateTime<Utc>,
    ) -> &mut Bucket {
        out.entry(start).or_insert(Bucket {
            start,
            usage: Usage::ZERO,
            estimated: Usage::ZERO,
            peak: Usage::ZERO,
            readings: 0,
        })
    }
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.time <= window.start || a.time >= window.end {
            continue;
        }
        let Some((spread, estimated)) = rules.spread(a, b) else {
            continue;
        };
        for (start, share) in spread.by_quarter_within(from, to) {
            let bucket = entry(&mut out, start);
            let share = Energy::share(share, estimated);
            bucket.usage += share.usage;
            bucket.estimated += share.estimated;
        }
    }
    for point in points {
        if window.contains(point.time) {
            entry(&mut out, bucket_start(point.time)).readings += 1;
        }
    }
    out.into_values()
        .map(|bucket| Bucket {
            peak: bucket.usage,
            ..bucket
        })
        .collect()
}

/// Appends a rollup point (bucket or day) as line protocol with a nanosecond timestamp.
pub fn encode(measurement: &str, panel: &str, bucket: &Bucket, out: &mut String) {
    out.push_str(measurement);
    out.push_str(",panel=");
    escape_tag_value(panel, out);
    let _ = writeln!(
        out,
        " {USAGE_FIELD}={}i,{ESTIMATED_FIELD}={}i,{PEAK_FIELD}={}i,{READINGS_FIELD}={}i {}",
        bucket.usage.nano_kwh(),
        bucket.estimated.nano_kwh(),
        bucket.peak.nano_kwh(),
        bucket.readings,
        nanos(bucket.start)
    );
}

/// Line protocol for the rollup's state, stamped with the current hour so that at most one
/// point per hour accumulates.
pub fn encode_state(
    complete_until: DateTime<Utc>,
    rules: Rules,
    log_until: i64,
    now: DateTime<Utc>,
) -> String {
    // `{:?}` of the number, as always (`5000.0`): the field stays a float to InfluxDB.
    let max_power_kw = rules.max_power_kw.kw();
    let estimate_after = rules.estimate_after.secs();
    format!(
        "{STATE_MEASUREMENT} {COMPLETE_UNTIL}={}i,{MAX_POWER_FIELD}={max_power_kw:?},\
         {ESTIMATE_AFTER_FIELD}={estimate_after}i,{FORMAT_FIELD}={FORMAT_HOURS}i,\
         {LOG_UNTIL_FIELD}={log_until}i {}\n",
        nanos(complete_until),
        nanos(floor_to(now, 3600))
    )
}

fn nanos(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Where each part of a period's usage comes from: the period's usage is the sum of the added
/// pieces minus the sum of [`Pieces::less_quarters`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pieces {
    /// Computed from raw readings (each with the pair that straddles its start).
    pub raw: Vec<Period>,
    /// Summed from 15-minute buckets.
    pub quarters: Vec<Period>,
    /// Summed from UTC days.
    pub days: Vec<Period>,
    /// Summed from UTC months.
    pub months: Option<Period>,
    /// Summed from 15-minute buckets and subtracted: the bit of a whole UTC month outside the
    /// period (less than a day).
    pub less_quarters: Vec<Period>,
}

/// What of the rollup a reader may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// Every reading stored before this instant is rolled up.
    pub complete_until: DateTime<Utc>,
    /// Whether month sums are kept ([`FORMAT_WITH_MONTHS`]).
    pub months: bool,
    /// Whether hour sums are kept ([`FORMAT_HOURS`]).
    pub hours: bool,
}

/// Cuts `period` into pieces whose usages add up to the period's: from the rollup before
/// `coverage.complete_until` (whole UTC months, days and buckets), the rest raw.
///
/// A local month is not made of whole UTC months (Jakarta's March starts at 17:00 UTC on
/// 28 February), but it is a whole UTC month plus or minus less than a day at each end. So when
/// month sums are kept, the period is read as the UTC months between the month boundaries
/// nearest its ends, plus the buckets between each end and its boundary (or minus them, when
/// the boundary lies inside the period): a year of months is then a dozen month sums and one
/// run of buckets per boundary, however long the history.
pub fn split(period: Period, coverage: Option<Coverage>) -> Pieces {
    let mut pieces = Pieces::default();
    let covered_start = ceil_to(period.start, GRAIN_SECS);
    let limit = coverage.map(|c| floor_to(c.complete_until, GRAIN_SECS));
    let covered_end = match limit {
        Some(limit) => floor_to(period.end, GRAIN_SECS).min(limit),
        None => covered_start,
    };
    if covered_start >= covered_end {
        if period.start < period.end {
            pieces.raw.push(period);
        }
        return pieces;
    }
    if period.start < covered_start {
        pieces.raw.push(Period {
            start: period.start,
            end: covered_start,
        });
    }
    let day = Duration::seconds(DAY_SECS);
    let months = match (coverage, limit) {
        (Some(coverage), Some(limit)) if coverage.months => {
            let first = ceil_month(covered_start - day);
            let mut last = month_of(covered_end + day).start;
            if last > covered_end && last > limit {
                last = month_of(covered_end).start;
            }
            Some((first, last)).filter(|(first, last)| first < last)
        }
        _ => None,
    };
    match months {
        Some((first, last)) => {
            pieces.months = Some(Period {
                start: first,
                end: last,
            });
            if first < covered_start {
                pieces.less_quarters.push(Period {
                    start: first,
                    end: covered_start,
                });
            } else {
                add_span(&mut pieces, covered_start, first);
            }
            if covered_end < last {
                pieces.less_quarters.push(Period {
                    start: covered_end,
                    end: last,
                });
            } else {
                add_span(&mut pieces, last, covered_end);
            }
        }
        None => add_span(&mut pieces, covered_start, covered_end),
    }
    if covered_end < period.end {
        pieces.raw.push(Period {
            start: covered_end,
            end: period.end,
        });
    }
    pieces
}

/// Adds `[start, end)` (bucket boundaries, rolled up) as whole UTC days and the buckets at
/// either end.
fn add_span(pieces: &mut Pieces, start: DateTime<Utc>, end: DateTime<Utc>) {
    if start >= end {
        return;
    }
    let first_day = ceil_to(start, DAY_SECS);
    let last_day = floor_to(end, DAY_SECS);
    if first_day < last_day {
        if start < first_day {
            pieces.quarters.push(Period {
                start,
                end: first_day,
            });
        }
        pieces.days.push(Period {
            start: first_day,
            end: last_day,
        });
        if last_day < end {
            pieces.quarters.push(Period {
                start: last_day,
                end,
            });
        }
    } else {
        pieces.quarters.push(Period { start, end });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period;
    use chrono_tz::Tz;

    fn rules() -> Rules {
        Rules::new("5000".parse().unwrap(), crate::EstimateAfter::DEFAULT)
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn coverage(until: &str, months: bool) -> Option<Coverage> {
        Some(Coverage {
            complete_until: at(until),
            months,
            hours: false,
        })
    }

    fn days_only(until: &str) -> Option<Coverage> {
        coverage(until, false)
    }

    fn with_months(until: &str) -> Option<Coverage> {
        coverage(until, true)
    }

    #[test]
    fn utc_months_and_their_boundaries() {
        assert_eq!(
            month_of(at("2026-12-31T23:59:59Z")),
            Period {
                start: at("2026-12-01T00:00:00Z"),
                end: at("2027-01-01T00:00:00Z")
            }
        );
        assert_eq!(
            month_of(at("2028-02-29T12:00:00Z")).end,
            at("2028-03-01T00:00:00Z")
        );
        assert_eq!(
            ceil_month(at("2026-03-01T00:00:00Z")),
            at("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            ceil_month(at("2026-03-01T00:00:01Z")),
            at("2026-04-01T00:00:00Z")
        );
    }

    fn p(s: &str, energy_kwh: f64) -> EnergyPoint {
        EnergyPoint {
            time: at(s),
            energy_kwh,
        }
    }

    #[test]
    fn buckets_are_quarter_hours_from_the_epoch() {
        assert_eq!(
            bucket_of(at("2026-11-27T03:14:59.999Z")),
            Period {
                start: at("2026-11-27T03:00:00Z"),
                end: at("2026-11-27T03:15:00Z")
            }
        );
        assert_eq!(
            bucket_start(at("2026-11-27T03:15:00Z")),
            at("2026-11-27T03:15:00Z")
        );
        assert_eq!(
            bucket_start(at("1969-12-31T23:59:59Z")),
            at("1969-12-31T23:45:00Z")
        );
        assert_eq!(
            day_of(at("2026-11-27T23:59:59Z")).start,
            at("2026-11-27T00:00:00Z")
        );
    }

    #[test]
    fn a_bucket_holds_the_shares_of_the_pairs_over_it() {
        let points = [
            p("2026-11-27T02:50:00Z", 10.0),
            p("2026-11-27T03:05:00Z", 11.0), // 15 minutes, 10 of them before 03:00
            p("2026-11-27T03:10:00Z", 10.0), // drop: 0
            p("2026-11-27T03:20:00Z", 12.0), // 10 minutes, +2: half in each bucket
            p("2026-11-27T04:20:00Z", 12.6), // an hour: a gap, estimated
        ];
        let window = Period {
            start: at("2026-11-27T03:00:00Z"),
            end: at("2026-11-27T04:15:00Z"),
        };
        let b = buckets(&points, window, rules());
        let figures: Vec<(DateTime<Utc>, i128, i128, u64)> = b
            .iter()
            .map(|b| {
                (
                    b.start,
                    b.usage.nano_kwh(),
                    b.estimated.nano_kwh(),
                    b.readings,
                )
            })
            .collect();
        let nano = 1_000_000_000_i128;
        assert_eq!(
            figures,
            vec![
                // 1/3 of the first pair (the larger remainder, 2/3, went to 02:45) and half of 2.
                (at("2026-11-27T03:00:00Z"), nano / 3 + nano, 0, 2),
                (at("2026-11-27T03:15:00Z"), nano + nano / 10, nano / 10, 1),
                (at("2026-11-27T03:30:00Z"), 150_000_000, 150_000_000, 0),
                (at("2026-11-27T03:45:00Z"), 150_000_000, 150_000_000, 0),
                (at("2026-11-27T04:00:00Z"), 150_000_000, 150_000_000, 0),
            ]
        );
    }

    #[test]
    fn rollup_lines_carry_integer_nano_kwh() {
        let mut out = String::new();
        let bucket = Bucket {
            start: at("2026-11-27T03:00:00Z"),
            usage: Usage::from_kwh(1.5),
            estimated: Usage::from_kwh(0.25),
            peak: Usage::from_kwh(1.5),
            readings: 15,
        };
        encode(QUARTER_MEASUREMENT, "P 1", &bucket, &mut out);
        assert_eq!(
            out,
            "energy_usage_15m,panel=P\\ 1 usage_nkwh=1500000000i,estimated_nkwh=250000000i,peak_nkwh=1500000000i,readings=15i 1795748400000000000\n"
        );
        let state = encode_state(
            at("2026-11-27T03:20:05Z"),
            rules(),
            1795749604000000123,
            at("2026-11-27T03:20:06Z"),
        );
        assert_eq!(
            state,
            "energy_rollup_state complete_until=1795749605000000000i,max_power_kw=5000.0,\
             estimate_after_secs=900i,format=5i,log_until=1795749604000000123i 1795748400000000000\n"
        );
    }

    #[test]
    fn a_jakarta_month_is_days_plus_two_runs_of_quarters() {
        let tz: Tz = "Asia/Jakarta".parse().unwrap();
        let month = period::month(2026, 10, tz).unwrap();
        let pieces = split(month, days_only("2027-01-01T00:00:00Z"));
        assert!(pieces.raw.is_empty());
        assert_eq!(
            pieces.quarters,
            vec![
                Period {
                    start: at("2026-09-30T17:00:00Z"),
                    end: at("2026-10-01T00:00:00Z")
                },
                Period {
                    start: at("2026-10-31T00:00:00Z"),
                    end: at("2026-10-31T17:00:00Z")
                },
            ]
        );
        assert_eq!(
            pieces.days,
            vec![Period {
                start: at("2026-10-01T00:00:00Z"),
                end: at("2026-10-31T00:00:00Z")
            }]
        );
        assert_eq!(pieces.months, None);
        assert!(pieces.less_quarters.is_empty());
    }

    #[test]
    fn with_month_sums_a_jakarta_month_is_a_utc_month_give_or_take_seven_hours() {
        let tz: Tz = "Asia/Jakarta".parse().unwrap();
        let month = period::month(2026, 10, tz).unwrap();
        let pieces = split(month, with_months("2027-01-01T00:00:00Z"));
        assert!(pieces.raw.is_empty());
        assert!(pieces.days.is_empty());
        let october = Period {
            start: at("2026-10-01T00:00:00Z"),
            end: at("2026-11-01T00:00:00Z"),
        };
        assert_eq!(pieces.months, Some(october));
        assert_eq!(
            pieces.quarters,
            vec![Period {
                start: at("2026-09-30T17:00:00Z"),
                end: october.start
            }]
        );
        assert_eq!(
            pieces.less_quarters,
            vec![Period {
                start: at("2026-10-31T17:00:00Z"),
                end: october.end
            }]
        );
        // The next month adds the bit this one subtracts: the same statement serves both.
        let next = split(
            period::month(2026, 11, tz).unwrap(),
            with_months("2027-01-01T00:00:00Z"),
        );
        assert_eq!(next.quarters, pieces.less_quarters);
    }

    #[test]
    fn with_month_sums_a_new_york_month_subtracts_at_its_start_and_adds_at_its_end() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // March 2026: EST at the start (-5), EDT at the end (-4).
        let month = period::month(2026, 3, tz).unwrap();
        let pieces = split(month, with_months("2027-01-01T00:00:00Z"));
        assert_eq!(
            pieces.months,
            Some(Period {
                start: at("2026-03-01T00:00:00Z"),
                end: at("2026-04-01T00:00:00Z")
            })
        );
        assert_eq!(
            pieces.less_quarters,
            vec![Period {
                start: at("2026-03-01T00:00:00Z"),
                end: at("2026-03-01T05:00:00Z")
            }]
        );
        assert_eq!(
            pieces.quarters,
            vec![Period {
                start: at("2026-04-01T00:00:00Z"),
                end: at("2026-04-01T04:00:00Z")
            }]
        );
        assert!(pieces.days.is_empty() && pieces.raw.is_empty());
    }

    #[test]
    fn a_month_sum_is_used_only_when_the_rollup_covers_it() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        // Kolkata's October: 18:30 UTC on 30 September to 18:30 UTC on 31 October.
        let october = period::month(2026, 10, tz).unwrap();
        let utc_october = Period {
            start: at("2026-10-01T00:00:00Z"),
            end: at("2026-11-01T00:00:00Z"),
        };
        let tail = Period {
            start: at("2026-10-31T18:30:00Z"),
            end: utc_october.end,
        };
        // Rolled up past the end of the UTC month: October minus its last 5.5 hours.
        let pieces = split(october, with_months("2026-11-01T02:00:00Z"));
        assert_eq!(pieces.months, Some(utc_october));
        assert_eq!(pieces.less_quarters, vec![tail]);
        // Not yet: October's days and buckets.
        let pieces = split(october, with_months("2026-10-31T23:00:00Z"));
        assert_eq!(pieces.months, None);
        assert!(pieces.less_quarters.is_empty());
        assert_eq!(
            pieces.days,
            vec![Period {
                start: utc_october.start,
                end: at("2026-10-31T00:00:00Z")
            }]
        );
        // The current month never holds a whole UTC month.
        let november = period::month(2026, 11, tz).unwrap();
        let pieces = split(november, with_months("2026-11-27T05:20:07Z"));
        assert_eq!(pieces.months, None);
        assert_eq!(
            pieces.raw,
            vec![Period {
                start: at("2026-11-27T05:15:00Z"),
                end: november.end
            }]
        );
    }

    #[test]
    fn a_day_uses_no_month_sum() {
        let today = Period {
            start: at("2026-11-26T17:00:00Z"),
            end: at("2026-11-27T17:00:00Z"),
        };
        let pieces = split(today, with_months("2027-01-01T00:00:00Z"));
        assert_eq!(pieces.months, None);
        assert_eq!(pieces.quarters, vec![today]);
    }

    #[test]
    fn the_part_after_complete_until_is_raw() {
        let today = Period {
            start: at("2026-11-26T17:00:00Z"),
            end: at("2026-11-27T17:00:00Z"),
        };
        let pieces = split(today, days_only("2026-11-27T03:20:05Z"));
        assert_eq!(
            pieces.quarters,
            vec![Period {
                start: at("2026-11-26T17:00:00Z"),
                end: at("2026-11-27T03:15:00Z")
            }]
        );
        assert!(pieces.days.is_empty());
        assert_eq!(
            pieces.raw,
            vec![Period {
                start: at("2026-11-27T03:15:00Z"),
                end: at("2026-11-27T17:00:00Z")
            }]
        );
        // Without a rollup, or before it starts, everything is raw.
        assert_eq!(split(today, None).raw, vec![today]);
        assert_eq!(
            split(today, with_months("2026-11-26T17:10:00Z")).raw,
            vec![today]
        );
    }

    #[test]
    fn unaligned_ends_of_a_historical_offset_are_raw() {
        // Monrovia kept -0:44:30 until 1972.
        let tz: Tz = "Africa/Monrovia".parse().unwrap();
        let month = period::month(1971, 6, tz).unwrap();
        let pieces = split(month, with_months("2000-01-01T00:00:00Z"));
        assert_eq!(pieces.raw.len(), 2);
        assert_eq!(pieces.raw[0].start, month.start);
        assert_eq!(pieces.raw[1].end, month.end);
        let raw: i64 = pieces
            .raw
            .iter()
            .map(|r| (r.end - r.start).num_seconds())
            .sum();
        assert_eq!(raw, 15 * 60, "two ends of 7.5 minutes each");
    }
}
