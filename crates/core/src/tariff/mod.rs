//! Tariffs as the utility writes them (docs/tariffs.md): named tariffs, each a list of dated
//! versions; a version prices every quarter hour by the time-of-use window it falls in (by
//! local time and day type: weekday, Saturday, Sunday, listed public holiday) and may add a
//! demand charge, a fixed monthly charge, a minimum charge and percentage taxes. Panels get the
//! default tariff unless the file assigns them another.
//!
//! A period is priced by cutting it where the price can change ([`Tariffs::cut`]): at every
//! window boundary and at every version's first local midnight. Each piece lies in one window
//! of one version, so its energy times that window's rate is exact; [`crate::bill`] adds them
//! up per window and rounds each line once.
//!
//! `TARIFF_PER_KWH` alone is the flat shortcut: one tariff, one version for all time, one
//! window all day ([`Tariffs::flat`]).

mod file;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::cost::Price;
use crate::period::{self, Period};

pub use file::TariffFileError;

/// Minutes in a day: a window's end may be 24:00.
pub const DAY_MINUTES: u16 = 24 * 60;

/// The kinds of day a schedule distinguishes. A listed public holiday is a holiday whatever
/// weekday it falls on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DayType {
    Weekday,
    Saturday,
    Sunday,
    Holiday,
}

impl DayType {
    pub const ALL: [DayType; 4] = [
        DayType::Weekday,
        DayType::Saturday,
        DayType::Sunday,
        DayType::Holiday,
    ];

    /// The key of the day type in the tariff file.
    pub fn key(self) -> &'static str {
        match self {
            DayType::Weekday => "weekdays",
            DayType::Saturday => "saturdays",
            DayType::Sunday => "sundays",
            DayType::Holiday => "holidays",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A named price of one kWh, in force in some minutes of some day types.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub name: String,
    pub rate: Price,
}

/// Minutes `[from, to)` of a local day that are in window `window` (an index into
/// [`Version::windows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub from: u16,
    pub to: u16,
    pub window: usize,
}

/// A minimum charge per month: `hours × the panel's contracted kVA × rate`; when the month's
/// energy lines come to less, a top-up line makes up the difference.
#[derive(Clone, Debug, PartialEq)]
pub struct Minimum {
    pub hours: Price,
    pub rate: Price,
}

/// A percentage tax or levy, applied in the order listed: on the subtotal, or (`compound`) on
/// the subtotal plus the taxes listed before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tax {
    pub name: String,
    pub percent: Price,
    pub compound: bool,
}

/// A tariff's prices from `valid_from` (a local date) until the next version's.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    /// `None` only for the flat shortcut, which has no date.
    pub valid_from: Option<NaiveDate>,
    pub windows: Vec<Window>,
    /// Per [`DayType`], sorted spans covering every minute of the day exactly once.
    schedule: [Vec<Span>; 4],
    /// Per kW of the month's largest 15-minute demand.
    pub demand_per_kw: Option<Price>,
    pub fixed_monthly: Option<Price>,
    pub minimum: Option<Minimum>,
    pub taxes: Vec<Tax>,
}

impl Version {
    /// The spans of `day_type`, sorted, covering the whole day.
    pub fn spans(&self, day_type: DayType) -> &[Span] {
        &self.schedule[day_type.index()]
    }

    /// The window in force at `minute` of a day of `day_type`.
    pub fn window_at(&self, day_type: DayType, minute: u16) -> usize {
        self.spans(day_type)
            .iter()
            .find(|span| span.from <= minute && minute < span.to)
            .map_or(0, |span| span.window)
    }

    /// `valid_from` as written, or `"always"` for the flat shortcut.
    pub fn label(&self) -> String {
        self.valid_from
            .map_or_else(|| "always".to_owned(), |d| d.to_string())
    }
}

/// A named tariff: its versions, sorted by `valid_from`. The first version also prices
/// anything before its date.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub versions: Vec<Version>,
}

impl Plan {
    /// The index of the version in force on local date `date`.
    pub fn version_on(&self, date: NaiveDate) -> usize {
        self.versions
            .iter()
            .rposition(|v| v.valid_from.is_none_or(|from| from <= date))
            .unwrap_or(0)
    }

    /// Whether every kWh costs the same at all times: one version with one window.
    pub fn is_flat(&self) -> bool {
        self.versions.len() == 1 && self.versions[0].windows.len() == 1
    }
}

/// What the file says of one panel.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelTerms {
    /// An index into [`Tariffs::plans`].
    pub plan: usize,
    /// For the minimum charge.
    pub contracted_kva: Option<Price>,
}

/// Where a piece of a cut period is priced, for one plan: its version and window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriceKey {
    pub version: usize,
    pub window: usize,
}

/// A period cut where any of the plans' prices change: `pieces` are consecutive and cover the
/// period; `keys[plan][piece]` is where that plan prices the piece.
#[derive(Clone, Debug, PartialEq)]
pub struct Cut {
    pub pieces: Vec<Period>,
    pub keys: Vec<Vec<PriceKey>>,
}

/// Every tariff in use: the tariff file, or the flat shortcut.
#[derive(Clone, Debug, PartialEq)]
pub struct Tariffs {
    pub currency: String,
    /// Money is rounded to this many decimals (0, 1 or 2), each line once.
    pub decimals: u32,
    pub holidays: BTreeSet<NaiveDate>,
    /// Sorted by name.
    pub plans: Vec<Plan>,
    /// The index of the plan of every panel the file does not name.
    pub default_plan: usize,
    pub panels: BTreeMap<String, PanelTerms>,
}

impl Tariffs {
    /// One price for every kWh at all times: `TARIFF_PER_KWH` without a tariff file.
    pub fn flat(per_kwh: Price, currency: &str) -> Tariffs {
        let all_day = vec![Span {
            from: 0,
            to: DAY_MINUTES,
            window: 0,
        }];
        Tariffs {
            currency: currency.to_owned(),
            decimals: crate::cost::MINOR_UNIT_DECIMALS,
            holidays: BTreeSet::new(),
            plans: vec![Plan {
                name: "flat".into(),
                versions: vec![Version {
                    valid_from: None,
                    windows: vec![Window {
                        name: "all day".into(),
                        rate: per_kwh,
                    }],
                    schedule: std::array::from_fn(|_| all_day.clone()),
                    demand_per_kw: None,
                    fixed_monthly: None,
                    minimum: None,
                    taxes: Vec::new(),
                }],
            }],
            default_plan: 0,
            panels: BTreeMap::new(),
        }
    }

    /// Reads a tariff file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Tariffs, TariffFileError> {
        file::parse(text, path)
    }

    /// The plan index of `panel`.
    pub fn plan_of(&self, panel: &str) -> usize {
        self.panels
            .get(panel)
            .map_or(self.default_plan, |terms| terms.plan)
    }

    /// The contracted kVA of `panel`, if the file gives one.
    pub fn contracted_kva(&self, panel: &str) -> Option<Price> {
        self.panels.get(panel).and_then(|t| t.contracted_kva)
    }

    /// Whether every panel pays one price for every kWh at all times (the flat shortcut, or a
    /// file that amounts to it).
    pub fn is_flat(&self) -> bool {
        self.plans.len() == 1 && self.plans[0].is_flat()
    }

    /// The day type of local date `date`.
    pub fn day_type(&self, date: NaiveDate) -> DayType {
        if self.holidays.contains(&date) {
            return DayType::Holiday;
        }
        match date.weekday() {
            Weekday::Sat => DayType::Saturday,
            Weekday::Sun => DayType::Sunday,
            _ => DayType::Weekday,
        }
    }

    /// `period` cut wherever one of `plans` changes price (window boundaries in local time
    /// `tz`, versions' first days), with where each plan prices each piece. Neighbouring pieces
    /// that every plan prices alike are one piece, so a flat tariff leaves the period whole.
    pub fn cut(&self, period: Period, tz: Tz, plans: &[usize]) -> Cut {
        let mut pieces: Vec<Period> = Vec::new();
        let mut keys: Vec<Vec<PriceKey>> = vec![Vec::new(); plans.len()];
        if period.start >= period.end {
            return Cut { pieces, keys };
        }
        let first = period.start.with_timezone(&tz).date_naive();
        let last = (period.end - Duration::nanoseconds(1))
            .with_timezone(&tz)
            .date_naive();
        let mut date = first;
        loop {
            // Every minute at which some plan's price may change on this date.
            let mut cuts: BTreeSet<u16> = BTreeSet::from([0, DAY_MINUTES]);
            let day_type = self.day_type(date);
            let mut versions = Vec::with_capacity(plans.len());
            for &plan in plans {
                let version = self.plans[plan].version_on(date);
                versions.push(version);
                for span in self.plans[plan].versions[version].spans(day_type) {
                    cuts.insert(span.from);
                }
            }
            let cuts: Vec<u16> = cuts.into_iter().collect();
            for pair in cuts.windows(2) {
                let piece = Period {
                    start: local_instant(date, pair[0], tz).max(period.start),
                    end: local_instant(date, pair[1], tz).min(period.end),
                };
                if piece.start >= piece.end {
                    continue;
                }
                let piece_keys: Vec<PriceKey> = plans
                    .iter()
                    .zip(&versions)
                    .map(|(&plan, &version)| PriceKey {
                        version,
                        window: self.plans[plan].versions[version].window_at(day_type, pair[0]),
                    })
                    .collect();
                let joins = pieces.last().is_some_and(|p| p.end == piece.start)
                    && keys
                        .iter()
                        .zip(&piece_keys)
                        .all(|(k, key)| k.last() == Some(key));
                if joins {
                    pieces.last_mut().expect("a piece").end = piece.end;
                } else {
                    pieces.push(piece);
                    for (k, key) in keys.iter_mut().zip(piece_keys) {
                        k.push(key);
                    }
                }
            }
            if date >= last {
                break;
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        Cut { pieces, keys }
    }

    /// What `plan` charges at `now`, in local time `tz`: its version, window, until when that
    /// window lasts, and its next dated version, if any.
    pub fn now(&self, plan: usize, now: DateTime<Utc>, tz: Tz) -> Current {
        let local = now.with_timezone(&tz);
        let date = local.date_naive();
        let plan_ref = &self.plans[plan];
        let version = plan_ref.version_on(date);
        let minute = (local.hour_minute()) as u16;
        let day_type = self.day_type(date);
        let v = &plan_ref.versions[version];
        let window = v.window_at(day_type, minute);
        // The window lasts until the next instant the price changes, looked for in the week
        // ahead (a window that never ends has `until` = None).
        let horizon = Period {
            start: now,
            end: now + Duration::days(7),
        };
        let cut = self.cut(horizon, tz, &[plan]);
        let until = cut.pieces.get(1).map(|p| p.start);
        let next_version = plan_ref
            .versions
            .get(version + 1)
            .filter(|next| next.valid_from.is_some_and(|from| from > date))
            .map(|_| version + 1);
        Current {
            version,
            window,
            until,
            next_version,
        }
    }
}

/// What a plan charges now: see [`Tariffs::now`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    pub version: usize,
    pub window: usize,
    pub until: Option<DateTime<Utc>>,
    pub next_version: Option<usize>,
}

trait HourMinute {
    fn hour_minute(&self) -> u32;
}

impl<T: chrono::Timelike> HourMinute for T {
    fn hour_minute(&self) -> u32 {
        self.hour() * 60 + self.minute()
    }
}

/// The instant of local time `minute` (0–1440) on `date` in `tz`. A local time that does not
/// exist (a daylight-saving gap) is the first one after it that does; one that exists twice is
/// the earlier, as for midnights ([`period::local_midnight`]).
pub fn local_instant(date: NaiveDate, minute: u16, tz: Tz) -> DateTime<Utc> {
    if minute == 0 {
        return period::local_midnight(date, tz);
    }
    if minute >= DAY_MINUTES {
        return period::local_midnight(date.succ_opt().unwrap_or(date), tz);
    }
    let start = date.and_hms_opt(0, 0, 0).expect("00:00:00 is a valid time")
        + Duration::minutes(i64::from(minute));
    for step in 0..=(24 * 60) {
        let local = start + Duration::minutes(step);
        if let Some(instant) = tz.from_local_datetime(&local).earliest() {
            return instant.with_timezone(&Utc);
        }
    }
    start.and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLN: &str = r#"
currency = "IDR"
decimals = 0
holidays = ["2026-08-17"]

[tariffs.B-3]
[[tariffs.B-3.versions]]
valid_from = "2026-01-01"
windows = [
  { name = "LWBP", rate = 1035.78, weekdays = ["00:00-17:00", "22:00-24:00"], saturdays = ["00:00-17:00", "22:00-24:00"], sundays = ["00:00-17:00", "22:00-24:00"], holidays = ["00:00-24:00"] },
  { name = "WBP", rate = "1553.67", weekdays = ["17:00-22:00"], saturdays = ["17:00-22:00"], sundays = ["17:00-22:00"] },
]
[[tariffs.B-3.versions]]
valid_from = "2026-08-15"
windows = [
  { name = "LWBP", rate = 1100, weekdays = ["00:00-17:00", "22:00-24:00"], saturdays = ["00:00-17:00", "22:00-24:00"], sundays = ["00:00-17:00", "22:00-24:00"], holidays = ["00:00-24:00"] },
  { name = "WBP", rate = 1650, weekdays = ["17:00-22:00"], saturdays = ["17:00-22:00"], sundays = ["17:00-22:00"] },
]
"#;

    fn jakarta() -> Tz {
        "Asia/Jakarta".parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_flat_tariff_leaves_a_period_whole() {
        let flat = Tariffs::flat(Price::new(1500, 0), "IDR");
        let month = period::month(2026, 3, jakarta()).unwrap();
        let cut = flat.cut(month, jakarta(), &[0]);
        assert_eq!(cut.pieces, vec![month]);
        assert_eq!(cut.keys, vec![vec![PriceKey::default()]]);
        assert!(flat.is_flat());
    }

    #[test]
    fn a_day_is_cut_at_its_windows_and_a_holiday_is_not() {
        let tariffs = Tariffs::parse(PLN, "pln.toml").unwrap();
        let tz = jakarta();
        // 2026-08-14 (Friday, version 1): LWBP until 17:00 (10:00 UTC), WBP until 22:00, LWBP.
        let day = period::day(date("2026-08-14"), tz);
        let cut = tariffs.cut(day, tz, &[0]);
        let starts: Vec<_> = cut.pieces.iter().map(|p| p.start).collect();
        assert_eq!(
            starts,
            [
                at("2026-08-13T17:00:00Z"),
                at("2026-08-14T10:00:00Z"),
                at("2026-08-14T15:00:00Z")
            ]
        );
        let windows: Vec<_> = cut.keys[0].iter().map(|k| (k.version, k.window)).collect();
        assert_eq!(windows, [(0, 0), (0, 1), (0, 0)]);
        // The 15th starts version 2 (LWBP at another rate): a cut at midnight. The 17th is a
        // holiday, LWBP all day, so the 16th's last LWBP runs on into the 18th's first.
        let days = Period {
            start: day.start,
            end: period::day(date("2026-08-18"), tz).end,
        };
        let cut = tariffs.cut(days, tz, &[0]);
        let keys: Vec<_> = cut.keys[0].iter().map(|k| (k.version, k.window)).collect();
        assert_eq!(
            keys,
            [
                (0, 0),
                (0, 1),
                (0, 0),
                (1, 0), // the 15th from midnight
                (1, 1),
                (1, 0),
                (1, 1), // the 16th's WBP
                (1, 0), // 16th 22:00 → 18th 17:00 (the 17th is a holiday)
                (1, 1),
                (1, 0),
            ]
        );
        assert_eq!(cut.pieces[3].start, at("2026-08-14T17:00:00Z"));
        assert_eq!(cut.pieces[7].start, at("2026-08-16T15:00:00Z"));
        assert_eq!(cut.pieces[7].end, at("2026-08-18T10:00:00Z"));
        // The pieces cover the period exactly.
        assert_eq!(cut.pieces.first().unwrap().start, days.start);
        assert_eq!(cut.pieces.last().unwrap().end, days.end);
        assert!(cut.pieces.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn what_is_charged_now_and_until_when() {
        let tariffs = Tariffs::parse(PLN, "pln.toml").unwrap();
        // 2026-08-14 12:00 Jakarta: LWBP of version 1 until 17:00; version 2 from the 15th.
        let now = tariffs.now(0, at("2026-08-14T05:00:00Z"), jakarta());
        assert_eq!(
            now,
            Current {
                version: 0,
                window: 0,
                until: Some(at("2026-08-14T10:00:00Z")),
                next_version: Some(1),
            }
        );
        let later = tariffs.now(0, at("2026-08-20T12:00:00Z"), jakarta());
        assert_eq!((later.version, later.window), (1, 1));
        assert_eq!(later.next_version, None);
        assert_eq!(later.until, Some(at("2026-08-20T15:00:00Z")));
    }

    #[test]
    fn window_times_in_a_daylight_saving_gap_move_to_the_first_that_exists() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: 02:00–03:00 does not exist; 02:30 is 03:00 CEST = 01:00 UTC.
        assert_eq!(
            local_instant(date("2026-03-29"), 150, berlin),
            at("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            local_instant(date("2026-03-29"), 1440, berlin),
            at("2026-03-29T22:00:00Z")
        );
    }
}
