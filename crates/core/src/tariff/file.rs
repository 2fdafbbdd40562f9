//! The tariff file (`TARIFF_FILE`, TOML; docs/tariffs.md): read as a tree that keeps where each
//! value was written, so that every error names the line and the field, and checked whole
//! before the server starts: a day type with a gap or an overlap, a version without windows, an
//! unknown key, a negative rate or a malformed date stop it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use toml::de::DeValue;

use super::{DayType, Minimum, PanelTerms, Plan, Span, Tariffs, Tax, Version, Window, DAY_MINUTES};
use crate::cost::{Price, MINOR_UNIT_DECIMALS};
use crate::toml_file::{self, get, join, LocatedError, Value};

/// Why a tariff file was refused: where, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path} line {line}, {field}: {message}")]
pub struct TariffFileError {
    pub path: String,
    pub line: usize,
    /// The field's path in the file, as `tariffs.B-3.versions[1].windows[0].rate`.
    pub field: String,
    pub message: String,
}

/// Usage is kept per quarter hour, so every window starts and ends on one.
const WINDOW_GRAIN_MINUTES: u16 = 15;

impl LocatedError for TariffFileError {
    fn located(path: String, line: usize, field: String, message: String) -> Self {
        TariffFileError {
            path,
            line,
            field,
            message,
        }
    }
}

type Reader<'a> = toml_file::Reader<'a, TariffFileError>;

/// The values only the tariff file has.
impl Reader<'_> {
    /// A rate or charge: [`toml_file::Reader::decimal`].
    fn price(&self, value: &Value<'_>, field: &str) -> Result<Price, TariffFileError> {
        self.decimal(value, field, "rates and charges must be 0 or more")
    }

    fn date(&self, value: &Value<'_>, field: &str) -> Result<NaiveDate, TariffFileError> {
        let text = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
            other => {
                return Err(self.error(
                    value.span().start,
                    field,
                    format!("must be a date YYYY-MM-DD, not {}", other.type_str()),
                ))
            }
        };
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
            self.error(
                value.span().start,
                field,
                format!("{text:?} is not a date YYYY-MM-DD"),
            )
        })
    }
}

/// `HH:MM` as minutes; `24:00` is the end of the day.
fn minute_of(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

pub(super) fn parse(text: &str, path: &str) -> Result<Tariffs, TariffFileError> {
    let reader = Reader::new(text, path);
    let root_value = reader.document()?;
    let top = reader.table(
        &root_value,
        "",
        &[
            "currency",
            "decimals",
            "holidays",
            "default_tariff",
            "tariffs",
            "panels",
        ],
        "key",
    )?;
    let currency = match get(top, "currency") {
        Some(v) => reader.string(v, "currency")?,
        None => return Err(reader.error(0, "currency", "is missing (e.g. currency = \"IDR\")")),
    };
    let decimals = match get(top, "decimals") {
        None => MINOR_UNIT_DECIMALS,
        Some(v) => match v.get_ref().as_integer().map(|i| i.as_str().parse::<u32>()) {
            Some(Ok(d)) if d <= MINOR_UNIT_DECIMALS => d,
            _ => {
                return Err(reader.error(
                    v.span().start,
                    "decimals",
                    "must be 0, 1 or 2 (the decimals money is rounded to)",
                ))
            }
        },
    };
    let mut holidays = BTreeSet::new();
    if let Some(v) = get(top, "holidays") {
        for (i, day) in reader.array(v, "holidays")?.iter().enumerate() {
            holidays.insert(reader.date(day, &format!("holidays[{i}]"))?);
        }
    }
    let Some(tariffs_value) = get(top, "tariffs") else {
        return Err(reader.error(
            text.len(),
            "tariffs",
            "is missing: define at least one tariff, as [[tariffs.NAME.versions]]",
        ));
    };
    let Some(tariff_table) = tariffs_value.get_ref().as_table() else {
        return Err(reader.error(tariffs_value.span().start, "tariffs", "must be a table"));
    };
    let mut plans = Vec::new();
    for (name, value) in tariff_table {
        let name_text = name.get_ref().to_string();
        plans.push(read_plan(&reader, &name_text, value)?);
    }
    if plans.is_empty() {
        return Err(reader.error(
            tariffs_value.span().start,
            "tariffs",
            "is empty: define at least one tariff",
        ));
    }
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    let index_of = |name: &str| plans.iter().position(|p| p.name == name);
    let default_plan = match get(top, "default_tariff") {
        Some(v) => {
            let name = reader.string(v, "default_tariff")?;
            index_of(&name).ok_or_else(|| {
                reader.error(
                    v.span().start,
                    "default_tariff",
                    format!("names no tariff: {name:?} is not under [tariffs]"),
                )
            })?
        }
        None if plans.len() == 1 => 0,
        None => {
            return Err(reader.error(
                0,
                "default_tariff",
                "is missing: with several tariffs, say which one panels get by default",
            ))
        }
    };
    let mut panels = BTreeMap::new();
    if let Some(v) = get(top, "panels") {
        let Some(table) = v.get_ref().as_table() else {
            return Err(reader.error(v.span().start, "panels", "must be a table"));
        };
        for (panel, terms) in table {
            let field = format!("panels.{}", panel.get_ref());
            crate::panel::PanelId::parse(panel.get_ref()).map_err(|e| {
                reader.error(panel.span().start, &field, format!("not a panel id: {e}"))
            })?;
            let terms_table = reader.table(terms, &field, &["tariff", "contracted_kva"], "key")?;
            let plan = match get(terms_table, "tariff") {
                None => default_plan,
                Some(t) => {
                    let name = reader.string(t, &join(&field, "tariff"))?;
                    index_of(&name).ok_or_else(|| {
                        reader.error(
                            t.span().start,
                            &join(&field, "tariff"),
                            format!("names no tariff: {name:?} is not under [tariffs]"),
                        )
                    })?
                }
            };
            let contracted_kva = match get(terms_table, "contracted_kva") {
                None => None,
                Some(k) => Some(reader.price(k, &join(&field, "contracted_kva"))?),
            };
            panels.insert(
                panel.get_ref().to_string(),
                PanelTerms {
                    plan,
                    contracted_kva,
                },
            );
        }
    }
    Ok(Tariffs {
        currency,
        decimals,
        holidays,
        plans,
        default_plan,
        panels,
    })
}

fn read_plan(reader: &Reader<'_>, name: &str, value: &Value<'_>) -> Result<Plan, TariffFileError> {
    let field = format!("tariffs.{name}");
    let table = reader.table(value, &field, &["versions"], "key")?;
    let Some(versions_value) = get(table, "versions") else {
        return Err(reader.error(
            value.span().start,
            &join(&field, "versions"),
            "is missing: a tariff needs at least one version, as [[tariffs.NAME.versions]]",
        ));
    };
    let mut versions = Vec::new();
    for (i, version) in reader
        .array(versions_value, &join(&field, "versions"))?
        .iter()
        .enumerate()
    {
        versions.push((
            version.span().start,
            read_version(reader, &format!("{field}.versions[{i}]"), version)?,
        ));
    }
    if versions.is_empty() {
        return Err(reader.error(
            versions_value.span().start,
            &join(&field, "versions"),
            "is empty: a tariff needs at least one version",
        ));
    }
    versions.sort_by_key(|(_, v)| v.valid_from);
    for pair in versions.windows(2) {
        if pair[0].1.valid_from == pair[1].1.valid_from {
            return Err(reader.error(
                pair[1].0,
                &join(&field, "versions"),
                format!(
                    "two versions are valid from {}: each needs a date of its own",
                    pair[1].1.label()
                ),
            ));
        }
    }
    Ok(Plan {
        name: name.to_owned(),
        versions: versions.into_iter().map(|(_, v)| v).collect(),
    })
}

const VERSION_KEYS: &[&str] = &[
    "valid_from",
    "windows",
    "demand_charge_per_kw",
    "fixed_monthly",
    "minimum",
    "taxes",
];

const WINDOW_KEYS: &[&str] = &[
    "name",
    "rate",
    "every_day",
    "weekdays",
    "saturdays",
    "sundays",
    "holidays",
];

fn read_version(
    reader: &Reader<'_>,
    field: &str,
    value: &Value<'_>,
) -> Result<Version, TariffFileError> {
    let table = reader.table(value, field, VERSION_KEYS, "key")?;
    let valid_from = match get(table, "valid_from") {
        Some(v) => reader.date(v, &join(field, "valid_from"))?,
        None => {
            return Err(reader.error(
                value.span().start,
                &join(field, "valid_from"),
                "is missing: the local date this version takes effect (YYYY-MM-DD)",
            ))
        }
    };
    let windows_value = match get(table, "windows") {
        Some(w) => w,
        None => {
            return Err(reader.error(
                value.span().start,
                &join(field, "windows"),
                "is missing: a version needs its rates, as windows with a name, a rate and \
                 the hours of each day type",
            ))
        }
    };
    let window_values = reader.array(windows_value, &join(field, "windows"))?;
    if window_values.is_empty() {
        return Err(reader.error(
            windows_value.span().start,
            &join(field, "windows"),
            "is empty: a version needs at least one window with a rate",
        ));
    }
    let mut windows: Vec<Window> = Vec::new();
    // Per day type, per minute: the window that holds it (and where it was said).
    let mut minutes: [Vec<Option<usize>>; 4] =
        std::array::from_fn(|_| vec![None; usize::from(DAY_MINUTES)]);
    let mut boundaries: Vec<(u16, usize, String)> = Vec::new();
    for (i, window) in window_values.iter().enumerate() {
        let field = format!("{field}.windows[{i}]");
        let table = reader.table(window, &field, WINDOW_KEYS, "day type or key")?;
        let name = match get(table, "name") {
            Some(n) => reader.string(n, &join(&field, "name"))?,
            None => {
                return Err(reader.error(window.span().start, &join(&field, "name"), "is missing"))
            }
        };
        if windows.iter().any(|w| w.name == name) {
            return Err(reader.error(
                window.span().start,
                &join(&field, "name"),
                format!("{name:?} is used twice in this version"),
            ));
        }
        let rate = match get(table, "rate") {
            Some(r) => reader.price(r, &join(&field, "rate"))?,
            None => {
                return Err(reader.error(
                    window.span().start,
                    &join(&field, "rate"),
                    "is missing: the price of one kWh in this window",
                ))
            }
        };
        let mut said_any = false;
        for key in ["every_day", "weekdays", "saturdays", "sundays", "holidays"] {
            let Some(ranges) = get(table, key) else {
                continue;
            };
            said_any = true;
            let key_field = join(&field, key);
            let day_types: Vec<DayType> = match key {
                "every_day" => DayType::ALL.to_vec(),
                other => DayType::ALL
                    .into_iter()
                    .filter(|d| d.key() == other)
                    .collect(),
            };
            for (r, range) in reader.array(ranges, &key_field)?.iter().enumerate() {
                let range_field = format!("{key_field}[{r}]");
                let text = reader.string(range, &range_field)?;
                let parsed = text
                    .split_once('-')
                    .and_then(|(a, b)| Some((minute_of(a)?, minute_of(b)?)));
                let Some((from, to)) = parsed.filter(|(from, to)| from < to) else {
                    return Err(reader.error(
                        range.span().start,
                        &range_field,
                        format!(
                            "{text:?} is not a range of local times HH:MM-HH:MM from 00:00 \
                             to 24:00, its start before its end"
                        ),
                    ));
                };
                for day_type in &day_types {
                    let day = &mut minutes[day_type.index()];
                    for minute in from..to {
                        if let Some(other) = day[usize::from(minute)] {
                            let end = (minute..to)
                                .find(|m| day[usize::from(*m)] != Some(other))
                                .unwrap_or(to);
                            let other_name = if other == i {
                                "itself".to_owned()
                            } else {
                                format!("window {:?}", windows[other].name)
                            };
                            return Err(reader.error(
                                range.span().start,
                                &range_field,
                                format!(
                                    "{text} overlaps {other_name} on {}: {}–{} is in both \
                                     (every minute of every day type must be in exactly \
                                     one window)",
                                    day_type.key(),
                                    clock(minute),
                                    clock(end)
                                ),
                            ));
                        }
                        day[usize::from(minute)] = Some(i);
                    }
                }
                boundaries.push((from, range.span().start, range_field.clone()));
                boundaries.push((to, range.span().start, range_field));
            }
        }
        if !said_any {
            return Err(reader.error(
                window.span().start,
                &field,
                "says no hours: give every_day, weekdays, saturdays, sundays or holidays",
            ));
        }
        windows.push(Window { name, rate });
    }
    for day_type in DayType::ALL {
        let day = &minutes[day_type.index()];
        if let Some(start) = day.iter().position(Option::is_none) {
            let end = (start..usize::from(DAY_MINUTES))
                .find(|m| day[*m].is_some())
                .unwrap_or(usize::from(DAY_MINUTES));
            return Err(reader.error(
                windows_value.span().start,
                &join(field, "windows"),
                format!(
                    "{} {}–{} is in no window (every minute of every day type must be in \
                     exactly one window)",
                    day_type.key(),
                    clock(start as u16),
                    clock(end as u16)
                ),
            ));
        }
    }
    if let Some((minute, at, range_field)) = boundaries
        .iter()
        .find(|(minute, _, _)| minute % WINDOW_GRAIN_MINUTES != 0)
    {
        return Err(reader.error(
            *at,
            range_field,
            format!(
                "{} is not on a quarter hour: usage is kept per quarter hour, so windows \
                 start and end on :00, :15, :30 or :45",
                clock(*minute)
            ),
        ));
    }
    let schedule = std::array::from_fn(|d| spans_of(&minutes[d]));
    let optional_price = |key: &str| -> Result<Option<Price>, TariffFileError> {
        get(table, key)
            .map(|v| reader.price(v, &join(field, key)))
            .transpose()
    };
    let demand_per_kw = optional_price("demand_charge_per_kw")?;
    let fixed_monthly = optional_price("fixed_monthly")?;
    let minimum = match get(table, "minimum") {
        None => None,
        Some(v) => {
            let mfield = join(field, "minimum");
            let m = reader.table(v, &mfield, &["hours", "rate"], "key")?;
            let part = |key: &str| -> Result<Price, TariffFileError> {
                match get(m, key) {
                    Some(p) => reader.price(p, &join(&mfield, key)),
                    None => Err(reader.error(v.span().start, &join(&mfield, key), "is missing")),
                }
            };
            Some(Minimum {
                hours: part("hours")?,
                rate: part("rate")?,
            })
        }
    };
    let mut taxes = Vec::new();
    if let Some(v) = get(table, "taxes") {
        for (i, tax) in reader.array(v, &join(field, "taxes"))?.iter().enumerate() {
            let tfield = format!("{field}.taxes[{i}]");
            let t = reader.table(tax, &tfield, &["name", "percent", "compound"], "key")?;
            let name = match get(t, "name") {
                Some(n) => reader.string(n, &join(&tfield, "name"))?,
                None => {
                    return Err(reader.error(
                        tax.span().start,
                        &join(&tfield, "name"),
                        "is missing",
                    ))
                }
            };
            let percent = match get(t, "percent") {
                Some(p) => reader.price(p, &join(&tfield, "percent"))?,
                None => {
                    return Err(reader.error(
                        tax.span().start,
                        &join(&tfield, "percent"),
                        "is missing",
                    ))
                }
            };
            let compound = match get(t, "compound") {
                None => false,
                Some(c) => c.get_ref().as_bool().ok_or_else(|| {
                    reader.error(
                        c.span().start,
                        &join(&tfield, "compound"),
                        "must be true or false",
                    )
                })?,
            };
            taxes.push(Tax {
                name,
                percent,
                compound,
            });
        }
    }
    Ok(Version {
        valid_from: Some(valid_from),
        windows,
        schedule,
        demand_per_kw,
        fixed_monthly,
        minimum,
        taxes,
    })
}

/// A day's minutes (each in a window) as sorted spans of one window each.
fn spans_of(minutes: &[Option<usize>]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (minute, window) in minutes.iter().enumerate() {
        let window = window.unwrap_or(0);
        match spans.last_mut() {
            Some(last) if last.window == window => last.to = minute as u16 + 1,
            _ => spans.push(Span {
                from: minute as u16,
                to: minute as u16 + 1,
                window,
            }),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"currency = "IDR"
[[tariffs.flat.versions]]
valid_from = "2026-01-01"
windows = [{ name = "all day", rate = 1444.70, every_day = ["00:00-24:00"] }]
"#;

    fn error(text: &str) -> TariffFileError {
        parse(text, "t.toml").expect_err("the file was accepted")
    }

    /// The good file with its version's `windows = …` line replaced by `windows`.
    fn with_windows(windows: &str) -> String {
        GOOD.replace(
            r#"windows = [{ name = "all day", rate = 1444.70, every_day = ["00:00-24:00"] }]"#,
            windows,
        )
    }

    #[test]
    fn the_example_files_are_valid() {
        let pln = parse(
            include_str!("../../../../docs/tariffs/pln-example.toml"),
            "pln",
        )
        .unwrap();
        assert_eq!(pln.decimals, 0);
        assert_eq!(pln.plans[0].versions.len(), 2);
        assert_eq!(
            pln.plans[0].versions[0].windows[1].rate,
            Price::new(155367, -2)
        );
        assert_eq!(
            pln.panels["PANEL_LANTAI_1"].contracted_kva,
            Some(Price::new(197, 0))
        );
        let flat = parse(
            include_str!("../../../../docs/tariffs/flat-example.toml"),
            "f",
        )
        .unwrap();
        assert!(flat.is_flat());
    }

    #[test]
    fn a_good_file_is_read_exactly() {
        let t = parse(GOOD, "t.toml").unwrap();
        assert_eq!(t.currency, "IDR");
        assert_eq!(
            t.plans[0].versions[0].windows[0].rate,
            Price::new(14447, -1)
        );
        assert!(t.is_flat());
    }

    #[test]
    fn overlapping_windows_are_refused_naming_both_and_the_minutes() {
        let e = error(&with_windows(
            r#"windows = [
  { name = "LWBP", rate = 1, every_day = ["00:00-17:00", "22:00-24:00"] },
  { name = "WBP", rate = 2, every_day = ["16:00-22:00"] },
]"#,
        ));
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.field, "tariffs.flat.versions[0].windows[1].every_day[0]");
        assert!(e.message.contains("overlaps window \"LWBP\""), "{e}");
        assert!(e.message.contains("16:00–17:00"), "{e}");
    }

    #[test]
    fn a_gap_of_one_minute_is_refused() {
        let e = error(&with_windows(
            r#"windows = [
  { name = "LWBP", rate = 1, every_day = ["00:00-16:59", "22:00-24:00"] },
  { name = "WBP", rate = 2, every_day = ["17:00-22:00"] },
]"#,
        ));
        assert_eq!(e.line, 4);
        assert!(
            e.message.contains("weekdays 16:59–17:00 is in no window"),
            "{e}"
        );
    }

    #[test]
    fn every_bad_file_names_its_line_and_field() {
        for (text, line, field, says) in [
            (
                with_windows("windows = []"),
                4,
                "tariffs.flat.versions[0].windows",
                "at least one window",
            ),
            (
                GOOD.replace("windows = [", "#\n"),
                5,
                "(syntax)",
                "",
            ),
            (
                "currency = \"IDR\"\n[[tariffs.flat.versions]]\nvalid_from = \"2026-01-01\"\n"
                    .to_owned(),
                2,
                "tariffs.flat.versions[0].windows",
                "needs its rates",
            ),
            (
                GOOD.replace("every_day", "fridays"),
                4,
                "tariffs.flat.versions[0].windows[0].fridays",
                "unknown day type",
            ),
            (
                GOOD.replace("1444.70", "-1444.70"),
                4,
                "tariffs.flat.versions[0].windows[0].rate",
                "negative",
            ),
            (
                GOOD.replace("2026-01-01", "2026-02-30"),
                3,
                "tariffs.flat.versions[0].valid_from",
                "not a date",
            ),
            (
                GOOD.replace("\"2026-01-01\"", "\"1/1/2026\""),
                3,
                "tariffs.flat.versions[0].valid_from",
                "not a date",
            ),
            (
                GOOD.replace("00:00-24:00", "00:00-25:00"),
                4,
                "tariffs.flat.versions[0].windows[0].every_day[0]",
                "HH:MM-HH:MM",
            ),
            (
                GOOD.replace("currency = \"IDR\"", "currency = \"IDR\"\ndecimals = 3"),
                2,
                "decimals",
                "0, 1 or 2",
            ),
            (
                with_windows(
                    r#"windows = [
  { name = "A", rate = 1, every_day = ["00:00-17:05"] },
  { name = "B", rate = 2, every_day = ["17:05-24:00"] },
]"#,
                ),
                5,
                "tariffs.flat.versions[0].windows[0].every_day[0]",
                "not on a quarter hour",
            ),
            (
                GOOD.to_owned() + "[panels.PANEL_9]\ntariff = \"nope\"\n",
                6,
                "panels.PANEL_9.tariff",
                "names no tariff",
            ),
            (
                GOOD.to_owned() + "[[tariffs.flat.versions]]\nvalid_from = 2026-01-01\nwindows = [{ name = \"x\", rate = 1, every_day = [\"00:00-24:00\"] }]\n",
                5,
                "tariffs.flat.versions",
                "two versions are valid from 2026-01-01",
            ),
        ] {
            let e = error(&text);
            assert_eq!((e.line, e.field.as_str()), (line, field), "{e}\n{text}");
            assert!(e.message.contains(says), "{e}");
            assert!(e.to_string().starts_with(&format!("t.toml line {line}, {field}: ")));
        }
    }
}
