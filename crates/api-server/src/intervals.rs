//! Interval data: one panel's quarter hours or hours of a local day
//! (`/api/panel/{panel}/intervals`) and every panel's days of a local month
//! (`/api/energy/daily`), with the estimated part and the largest 15-minute demand
//! (docs/accounting.md, "Intervals and demand"). Both answer JSON, or CSV with `format=csv`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;
use energy_core::tariff::PriceKey;
use energy_core::{period, Load, PanelId, Period, Usage};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::Kind;
use crate::csv::{number, Csv, Format, PeriodRow};
use crate::error::{ApiError, ErrorBody};
use crate::pricing::{self, load_of, Parts, Selection, UsageFigure};
use crate::rendered;
use crate::routes::query_param;
use crate::state::AppState;
use crate::virtual_meters;

type Shared = State<Arc<AppState>>;

/// An interval's length (`step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Quarter,
    Hour,
}

impl Step {
    fn parse(raw: Option<&str>) -> Result<Step, ApiError> {
        match raw {
            None | Some("15m") => Ok(Step::Quarter),
            Some("1h") => Ok(Step::Hour),
            Some(_) => Err(ApiError::BadRequest("step must be 15m or 1h".into())),
        }
    }

    fn duration(self) -> Duration {
        match self {
            Step::Quarter => Duration::minutes(15),
            Step::Hour => Duration::hours(1),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Step::Quarter => "15m",
            Step::Hour => "1h",
        }
    }
}

/// One interval of `/api/panel/{panel}/intervals`.
#[derive(Serialize, ToSchema)]
struct Interval {
    /// The interval's start, RFC 3339 in the local offset.
    #[schema(format = DateTime)]
    start: String,
    /// kWh, rounded to 3 decimals.
    usage_kwh: f64,
    /// The interval's energy over its length in hours (kW), rounded to 3 decimals.
    avg_kw: f64,
    /// The part of `usage_kwh` spread over gaps longer than `ESTIMATE_AFTER_SECS`.
    estimated_kwh: f64,
    /// The tariff window(s) the interval lies in, joined by `+` when it spans several.
    window: String,
    /// The interval's cost: its usage in each window × the window's rate, each rounded once.
    cost: f64,
    /// The estimated part of `cost`.
    estimated_cost: f64,
    /// Whether the usage is below zero: a virtual meter's difference whose subtracted members
    /// used more than the rest in the interval (shown as it is, never clamped).
    negative: bool,
}

/// The answer of `GET /api/panel/{panel}/intervals`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Intervals {
    panel: String,
    kind: Kind,
    /// The local day.
    #[schema(format = Date)]
    date: String,
    timezone: &'static str,
    /// `15m` or `1h`.
    #[schema(pattern = "^(15m|1h)$")]
    step: &'static str,
    /// The day's intervals that have started, from local midnight (a day of 23 or 25 hours has
    /// 92 or 100 quarter hours).
    intervals: Vec<Interval>,
    /// The sum of the intervals, rounded once to 3 decimals.
    total_kwh: f64,
    total_estimated_kwh: f64,
    /// The tariff the panel pays.
    tariff: String,
    currency: String,
    /// The day so far priced window by window (each window's exact usage × its rate, rounded
    /// once).
    total: UsageFigure,
}

/// One panel's usage per quarter hour or hour of a local day.
#[utoipa::path(
    get,
    path = "/api/panel/{panel}/intervals",
    tag = "energy",
    params(
        ("panel" = String, Path, description = "The panel's id"),
        ("date" = Option<String>, Query, format = Date, 
            pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
            description = "The day (YYYY-MM-DD, 1970 to 9999) in `TIMEZONE`; today when absent"),
        ("step" = Option<String>, Query, pattern = "^(15m|1h)$",
            description = "`15m` (the default) or `1h`"),
        ("format" = Option<String>, Query, pattern = "^(json|csv)$",
            description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The day's intervals", content(
            (Intervals = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`date`, `step` or `format` is not one this answers \
            (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No panel with this id has written a reading \
            (`not_found`)", body = ErrorBody),
        (status = 503, description = crate::routes::UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn intervals(
    State(state): Shared,
    Path(panel): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.as_deref();
    let now = Utc::now();
    let date = match query_param(query, "date") {
        None => now.with_timezone(&state.timezone).date_naive(),
        Some(raw) => parse_date(&raw)?,
    };
    let step = Step::parse(query_param(query, "step").as_deref())?;
    let format = Format::parse(query_param(query, "format").as_deref())?;
    let unknown = || ApiError::UnknownPanel(panel.clone());
    PanelId::parse(&panel).map_err(|_| unknown())?;
    let day = period::day(date, state.timezone);
    let cut: Vec<Period> = period::intervals(day, step.duration())
        .into_iter()
        .filter(|interval| interval.start <= now)
        .collect();
    // The intervals cut again where the panel's price changes (an hour can straddle a
    // window's quarter-hour boundary): each piece lies in one interval and one window.
    let tariffs = &state.tariffs;
    let plan = tariffs.plan_of(&panel);
    let prices = tariffs.cut(day, state.timezone, &[plan]);
    let pieces = refine(&cut, &prices.pieces, &prices.keys[0]);
    let piece_periods: Vec<Period> = pieces.iter().map(|p| p.period).collect();
    let energies = match state.meters.get(&panel) {
        Some(meter) => virtual_meters::intervals(&state.store, meter, day, &piece_periods).await?,
        None => {
            state
                .store
                .panel_intervals(&panel, day, &piece_periods)
                .await?
        }
    }
    .ok_or_else(unknown)?;
    let mut per_interval: Vec<Parts> = vec![Vec::new(); cut.len()];
    for (piece, energy) in pieces.iter().zip(&energies) {
        per_interval[piece.interval].push((piece.key, Load::quarter(*energy)));
    }
    let all: Parts = per_interval.iter().flatten().copied().collect();
    let total = load_of(&all).energy;
    let plan_ref = &tariffs.plans[plan];
    let answer = Intervals {
        date: date.to_string(),
        timezone: state.timezone.name(),
        step: step.name(),
        intervals: cut
            .iter()
            .zip(&per_interval)
            .map(|(interval, parts)| {
                let energy = load_of(parts).energy;
                let figure = UsageFigure::new(tariffs, plan, parts);
                let mut windows: Vec<&str> = Vec::new();
                for (key, _) in parts {
                    let name = plan_ref.versions[key.version].windows[key.window]
                        .name
                        .as_str();
                    if !windows.contains(&name) {
                        windows.push(name);
                    }
                }
                Interval {
                    start: local_rfc3339(interval.start, state.timezone),
                    usage_kwh: energy.usage.kwh_rounded(),
                    avg_kw: average_kw(energy.usage, *interval),
                    estimated_kwh: energy.estimated.kwh_rounded(),
                    window: windows.join("+"),
                    cost: figure.cost,
                    estimated_cost: figure.estimated_cost,
                    negative: energy.usage < Usage::ZERO,
                }
            })
            .collect(),
        total_kwh: total.usage.kwh_rounded(),
        total_estimated_kwh: total.estimated.kwh_rounded(),
        tariff: plan_ref.name.clone(),
        currency: tariffs.currency.clone(),
        total: UsageFigure::new(tariffs, plan, &all),
        kind: Kind::of(&state.meters, &panel),
        panel,
    };
    Ok(match format {
        Format::Json => Json(answer).into_response(),
        Format::Csv => {
            let mut csv = Csv::new(&[
                "panel",
                "start",
                "usage_kwh",
                "avg_kw",
                "estimated_kwh",
                "window",
                "cost",
                "estimated_cost",
                "currency",
            ]);
            for interval in &answer.intervals {
                csv.row([
                    answer.panel.as_str(),
                    &interval.start,
                    &number(interval.usage_kwh),
                    &number(interval.avg_kw),
                    &number(interval.estimated_kwh),
                    &interval.window,
                    &number(interval.cost),
                    &number(interval.estimated_cost),
                    &answer.currency,
                ]);
            }
            csv.into_response(&format!(
                "intervals-{}-{}-{}.csv",
                answer.panel,
                answer.date,
                step.name()
            ))
        }
    })
}

/// One day of `/api/energy/daily`.
#[derive(Serialize, ToSchema)]
struct DayUsage {
    #[schema(format = Date)]
    date: String,
    #[serde(flatten)]
    figure: UsageFigure,
    /// The day's largest quarter-hour usage × 4 (kW), rounded to 3 decimals.
    max_demand_kw: f64,
}

#[derive(Serialize, ToSchema)]
struct PanelDays {
    panel: String,
    kind: Kind,
    /// The tariff the panel pays.
    tariff: String,
    /// The month's days that have started, in order.
    days: Vec<DayUsage>,
}

/// The answer of `GET /api/energy/daily`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Daily {
    /// The month, `YYYY-MM`, in `timezone`.
    month: String,
    timezone: &'static str,
    /// The price of one kWh when every panel pays one price at all times; null otherwise.
    tariff_per_kwh: Option<f64>,
    currency: String,
    /// Every panel that has ever written a reading, and every virtual meter one of whose
    /// members has, sorted by id.
    panels: Vec<PanelDays>,
}

/// Every panel's usage, cost and largest 15-minute demand per local day of a month.
#[utoipa::path(
    get,
    path = "/api/energy/daily",
    tag = "energy",
    params(
        ("month" = Option<String>, Query, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
            description = "The month (YYYY-MM, 1970-01 to 9999-12) in `TIMEZONE`; the current \
                one when absent"),
        ("panel" = Option<String>, Query, description = "One panel's or virtual meter's \
            days; every one's when absent"),
        ("format" = Option<String>, Query, pattern = "^(json|csv)$",
            description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The month's days per panel", content(
            (Daily = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`month` or `format` is not one this answers \
            (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No panel or virtual meter with this id has a reading \
            (`not_found`)", body = ErrorBody),
        (status = 503, description = crate::routes::UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn daily(
    State(state): Shared,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.as_deref();
    let now = Utc::now();
    let (year, month) = match query_param(query, "month") {
        None => {
            let today = now.with_timezone(&state.timezone);
            (today.year(), today.month())
        }
        Some(raw) => parse_month(&raw)?,
    };
    let format = Format::parse(query_param(query, "format").as_deref())?;
    let first = NaiveDate::from_ymd_opt(year, month, 1)
        .ok_or_else(|| ApiError::BadRequest(format!("{year}-{month:02} is not a month")))?;
    let only = Selection::from_query(query)?;
    let key = format!(
        "daily?month={year:04}-{month:02}&format={format:?}&panel={}",
        only.key()
    );
    rendered::response(&state, key, move |state| {
        make_daily(state, first, format, only)
    })
    .await
}

/// The answer of [`daily`] for the month that starts on `first`, of one panel or virtual
/// meter (`only`) or all.
async fn make_daily(
    state: Arc<AppState>,
    first: NaiveDate,
    format: Format,
    only: Selection,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (year, month) = (first.year(), first.month());
    let days: Vec<(NaiveDate, Period)> = first
        .iter_days()
        .take_while(|date| date.month() == month)
        .map(|date| (date, period::day(date, state.timezone)))
        .filter(|(_, day)| day.start <= now)
        .collect();
    let periods: Vec<Period> = days.iter().map(|(_, day)| *day).collect();
    let tariffs = &state.tariffs;
    let parts = pricing::parts(
        &state.store,
        tariffs,
        &only.meters(&state.meters),
        state.timezone,
        &periods,
        true,
    )
    .await?;
    let panels: Vec<PanelDays> = only
        .select(parts)?
        .into_iter()
        .map(|(panel, per_day)| {
            let plan = tariffs.plan_of(&panel);
            PanelDays {
                kind: Kind::of(&state.meters, &panel),
                days: days
                    .iter()
                    .zip(&per_day)
                    .map(|((date, _), parts)| DayUsage {
                        date: date.to_string(),
                        figure: UsageFigure::new(tariffs, plan, parts),
                        max_demand_kw: demand_kw(load_of(parts).peak),
                    })
                    .collect(),
                tariff: tariffs.plans[plan].name.clone(),
                panel,
            }
        })
        .collect();
    let answer = Daily {
        month: format!("{year:04}-{month:02}"),
        timezone: state.timezone.name(),
        tariff_per_kwh: pricing::flat_rate(tariffs),
        currency: tariffs.currency.clone(),
        panels,
    };
    Ok(match format {
        Format::Json => Json(answer).into_response(),
        Format::Csv => {
            let rows = answer.panels.iter().flat_map(|panel| {
                panel.days.iter().map(|day| PeriodRow {
                    panel: &panel.panel,
                    period: &day.date,
                    usage_kwh: day.figure.usage_kwh,
                    estimated_kwh: day.figure.estimated_kwh,
                    cost: day.figure.cost,
                    currency: &answer.currency,
                    max_demand_kw: day.max_demand_kw,
                })
            });
            Csv::of_periods("date", rows)
                .into_response(&only.file_name(&format!("daily-{}", answer.month)))
        }
    })
}

/// A piece of a day that lies in one interval (an index into the intervals) and one price.
struct IntervalPiece {
    period: Period,
    interval: usize,
    key: PriceKey,
}

/// `intervals` (consecutive) cut again at every start of `prices` (consecutive pieces, with
/// their keys, covering at least the intervals).
fn refine(intervals: &[Period], prices: &[Period], keys: &[PriceKey]) -> Vec<IntervalPiece> {
    let mut out = Vec::with_capacity(intervals.len() + prices.len());
    let mut price = 0;
    for (index, interval) in intervals.iter().enumerate() {
        let mut start = interval.start;
        while start < interval.end {
            while price + 1 < prices.len() && prices[price].end <= start {
                price += 1;
            }
            let end = match prices.get(price) {
                Some(p) if p.end > start => p.end.min(interval.end),
                _ => interval.end,
            };
            out.push(IntervalPiece {
                period: Period { start, end },
                interval: index,
                key: keys.get(price).copied().unwrap_or_default(),
            });
            start = end;
        }
    }
    out
}

/// The kW of a quarter hour's usage: four times its kWh, rounded to 3 decimals.
pub(crate) fn demand_kw(peak: Usage) -> f64 {
    Usage::from_nano_kwh(peak.nano_kwh() * 4).kwh_rounded()
}

/// An interval's average power: its energy over its length in hours, rounded to 3 decimals.
fn average_kw(usage: Usage, interval: Period) -> f64 {
    let seconds = (interval.end - interval.start).num_seconds();
    if seconds <= 0 {
        return 0.0;
    }
    energy_core::cost::round_to(usage.kwh() * 3600.0 / seconds as f64, 3)
}

/// `time` in RFC 3339 with `tz`'s offset at that instant.
fn local_rfc3339(time: DateTime<Utc>, tz: Tz) -> String {
    time.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A `YYYY-MM-DD` date between 1970 and 9999.
fn parse_date(raw: &str) -> Result<NaiveDate, ApiError> {
    let bad =
        || ApiError::BadRequest("date must be a date YYYY-MM-DD between 1970 and 9999".into());
    if raw.len() != 10 {
        return Err(bad());
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad())?;
    if !(1970..=9999).contains(&date.year()) {
        return Err(bad());
    }
    Ok(date)
}

/// A `YYYY-MM` month between 1970 and 9999.
pub(crate) fn parse_month(raw: &str) -> Result<(i32, u32), ApiError> {
    let bad = || ApiError::BadRequest("month must be YYYY-MM between 1970-01 and 9999-12".into());
    let (year, month) = raw.split_once('-').ok_or_else(bad)?;
    if year.len() != 4
        || month.len() != 2
        || !(year.chars().chain(month.chars())).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let (year, month): (i32, u32) = (
        year.parse().map_err(|_| bad())?,
        month.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return Err(bad());
    }
    Ok((year, month))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_months_and_steps_are_checked() {
        assert_eq!(
            parse_date("2026-03-01").unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        for bad in [
            "2026-3-1",
            "2026-02-30",
            "1969-12-31",
            "20260301",
            "",
            "2026-03-01T00",
        ] {
            assert!(parse_date(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_month("2026-03").unwrap(), (2026, 3));
        assert_eq!(parse_month("9999-12").unwrap(), (9999, 12));
        for bad in [
            "2026-13", "2026-00", "1969-12", "2026-3", "202603", "+026-03", "2026-0a",
        ] {
            assert!(parse_month(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Step::parse(None).unwrap(), Step::Quarter);
        assert_eq!(Step::parse(Some("1h")).unwrap(), Step::Hour);
        assert!(Step::parse(Some("30m")).is_err());
    }

    #[test]
    fn demand_is_four_times_the_quarter_hour_and_average_power_its_rate() {
        // 2.5 kWh in a quarter hour is 10 kW.
        assert_eq!(demand_kw(Usage::from_kwh(2.5)), 10.0);
        let hour = Period {
            start: "2026-03-01T00:00:00Z".parse().unwrap(),
            end: "2026-03-01T01:00:00Z".parse().unwrap(),
        };
        assert_eq!(average_kw(Usage::from_kwh(7.25), hour), 7.25);
        let quarter = Period {
            end: "2026-03-01T00:15:00Z".parse().unwrap(),
            ..hour
        };
        assert_eq!(average_kw(Usage::from_kwh(0.5), quarter), 2.0);
    }

    #[test]
    fn starts_carry_the_local_offset() {
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        let at: DateTime<Utc> = "2026-03-01T18:15:00Z".parse().unwrap();
        assert_eq!(local_rfc3339(at, kathmandu), "2026-03-02T00:00:00+05:45");
    }
}
