//! Local-time periods: a day or a month in an IANA zone, as explicit UTC bounds.
//!
//! InfluxDB Cloud Serverless has no `tz()` clause and `GROUP BY time(1d, offset)` breaks on
//! daylight saving, so every local boundary is computed here and sent as a UTC instant.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A half-open interval `[start, end)` of UTC instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, time: DateTime<Utc>) -> bool {
        self.start <= time && time < self.end
    }
}

/// The first instant of `date` in `tz`. Where midnight does not exist (a daylight-saving gap
/// starting at 00:00, as in America/Santiago or Asia/Beirut), it is the first local time that
/// does; where it exists twice, the earlier. A date a zone skipped entirely (Pacific/Apia,
/// 2011-12-30) gets the next day's start, so its period is empty.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("00:00:00 is a valid time");
    // Gaps are at most a day long; step by minutes, which every real offset is made of.
    for minutes in 0..=(48 * 60) {
        let local = midnight + Duration::minutes(minutes);
        if let Some(instant) = tz.from_local_datetime(&local).earliest() {
            return instant.with_timezone(&Utc);
        }
    }
    // Unreachable for real zones; fall back to reading the wall clock as UTC.
    midnight.and_utc()
}

/// The calendar day `date` in `tz`.
pub fn day(date: NaiveDate, tz: Tz) -> Period {
    let next = date.succ_opt().unwrap_or(date);
    Period {
        start: local_midnight(date, tz),
        end: local_midnight(next, tz),
    }
}

/// `period` cut into consecutive intervals of `step` from its start, the last one cut short at
/// the period's end (a day of 23 or 25 hours has 92 or 100 quarter hours).
pub fn intervals(period: Period, step: Duration) -> Vec<Period> {
    let mut out = Vec::new();
    if step <= Duration::zero() {
        return out;
    }
    let mut start = period.start;
    while start < period.end {
        let end = (start + step).min(period.end);
        out.push(Period { start, end });
        start = end;
    }
    out
}

/// The local date of `now` in `tz` and that day's period: "today".
pub fn today(now: DateTime<Utc>, tz: Tz) -> (NaiveDate, Period) {
    let date = now.with_timezone(&tz).date_naive();
    (date, day(date, tz))
}

/// The calendar month `month` (1–12) of `year` in `tz`; `None` for a month that is not one.
pub fn month(year: i32, month: u32, tz: Tz) -> Option<Period> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some(Period {
        start: local_midnight(first, tz),
        end: local_midnight(next, tz),
    })
}

/// The twelve months of `year` in `tz`, contiguous: each ends where the next starts.
pub fn months_of_year(year: i32, tz: Tz) -> Option<Vec<Period>> {
    (1..=12).map(|m| month(year, m, tz)).collect()
}

/// Every day of one month in `tz`, contiguous, covering exactly [`month`]'s period.
pub fn days_of_month(year: i32, month_number: u32, tz: Tz) -> Option<Vec<Period>> {
    let mut date = NaiveDate::from_ymd_opt(year, month_number, 1)?;
    let mut days = Vec::with_capacity(31);
    while date.month() == month_number {
        days.push(day(date, tz));
        date = date.succ_opt()?;
    }
    Some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_day_is_cut_into_quarter_hours_or_hours_however_long_it_is() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let quarter = Duration::minutes(15);
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // 29 March 2026 has 23 hours in Berlin, 25 October 2026 has 25.
        assert_eq!(
            intervals(day(date("2026-03-29"), berlin), quarter).len(),
            92
        );
        assert_eq!(
            intervals(day(date("2026-10-25"), berlin), quarter).len(),
            100
        );
        assert_eq!(
            intervals(day(date("2026-10-25"), berlin), Duration::hours(1)).len(),
            25
        );
        // Kathmandu (+05:45): quarter hours from local midnight, 18:15 UTC.
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        let cut = intervals(day(date("2026-03-02"), kathmandu), quarter);
        assert_eq!(cut.len(), 96);
        assert_eq!(cut[0].start, utc("2026-03-01T18:15:00Z"));
        assert_eq!(cut[95].end, utc("2026-03-02T18:15:00Z"));
        // Lord Howe's half-hour change leaves a day of 24.5 hours: the last hour is half one.
        let lord_howe: Tz = "Australia/Lord_Howe".parse().unwrap();
        let long = day(date("2026-04-05"), lord_howe);
        let hours = intervals(long, Duration::hours(1));
        assert_eq!(hours.len(), 25);
        assert_eq!(hours[24].end - hours[24].start, Duration::minutes(30));
        assert!(intervals(long, Duration::zero()).is_empty());
    }

    #[test]
    fn jakarta_days_start_at_17_utc() {
        let (date, p) = today(utc("2026-11-27T03:00:00Z"), chrono_tz::Asia::Jakarta);
        assert_eq!(date, NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert_eq!(p.start, utc("2026-11-26T17:00:00Z"));
        assert_eq!(p.end, utc("2026-11-27T17:00:00Z"));
    }

    #[test]
    fn reading_at_local_midnight_belongs_to_the_new_day() {
        let midnight = utc("2026-11-26T17:00:00Z");
        let (date, p) = today(midnight, chrono_tz::Asia::Jakarta);
        assert_eq!(date.day(), 27);
        assert!(p.contains(midnight));
        assert!(!day(date.pred_opt().unwrap(), chrono_tz::Asia::Jakarta).contains(midnight));
    }

    #[test]
    fn daylight_saving_days_are_23_and_25_hours_long() {
        let tz = chrono_tz::Europe::Berlin;
        let spring = day(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(), tz);
        assert_eq!(spring.end - spring.start, Duration::hours(23));
        let autumn = day(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap(), tz);
        assert_eq!(autumn.end - autumn.start, Duration::hours(25));
    }

    #[test]
    fn a_missing_midnight_starts_the_day_at_the_first_real_instant() {
        // Chile springs forward at 24:00 -> 01:00 local (2026-09-06).
        let tz = chrono_tz::America::Santiago;
        let d = day(NaiveDate::from_ymd_opt(2026, 9, 6).unwrap(), tz);
        assert_eq!(d.start, utc("2026-09-06T04:00:00Z"));
        assert_eq!(
            d.start.with_timezone(&tz).format("%H:%M").to_string(),
            "01:00"
        );
        assert_eq!(d.end - d.start, Duration::hours(23));
    }

    #[test]
    fn a_skipped_date_is_an_empty_period() {
        let tz = chrono_tz::Pacific::Apia;
        let d = day(NaiveDate::from_ymd_opt(2011, 12, 30).unwrap(), tz);
        assert_eq!(d.start, d.end);
    }

    #[test]
    fn half_hour_zones_and_months_are_contiguous() {
        let tz = chrono_tz::Asia::Kolkata;
        let months = months_of_year(2026, tz).unwrap();
        assert_eq!(months[0].start, utc("2025-12-31T18:30:00Z"));
        for pair in months.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        let days = days_of_month(2026, 2, tz).unwrap();
        assert_eq!(days.len(), 28);
        assert_eq!(days[0].start, months[1].start);
        assert_eq!(days[27].end, months[1].end);
    }

    #[test]
    fn the_last_supported_year_has_twelve_months() {
        let months = months_of_year(9999, chrono_tz::Asia::Jakarta).unwrap();
        assert_eq!(months.len(), 12);
        assert!(months[11].end > months[11].start);
    }
}
