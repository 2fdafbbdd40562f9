//! The HTTP routes of the README's "REST API", and `/health` and `/metrics`. Handlers read from
//! the [`Store`](crate::store::Store), apply the core's rules (status, usage, cost, rounding)
//! and answer JSON.
//!
//! Each handler's `#[utoipa::path]` attribute is where its method and path are written down:
//! `openapi::api` registers it with `utoipa_axum::routes!`, which puts it in the router and in
//! the OpenAPI document together, so the two cannot disagree. The answers are typed structs
//! deriving `ToSchema`, so the document describes exactly what is serialized.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, NaiveDate, Utc};
use energy_core::{period, Status, Usage};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::{rfc3339, status_schema, Kind, RealtimePanel};
use crate::csv::{Csv, Format, PeriodRow};
use crate::error::{ApiError, ErrorBody};
use crate::intervals::demand_kw;
use crate::metrics;
use crate::pricing::{
    self, flat_rate, load_of, CutPeriods, Selection, Tally, UsageFigure, WindowCost,
};
use crate::rendered;
use crate::state::AppState;
use crate::virtual_meters;

type Shared = State<Arc<AppState>>;

/// The answer of `GET /api/panel/realtime`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Realtime {
    /// When this answer was made: statuses and ages are as of then (see `QUERY_CACHE_MS`).
    #[schema(format = DateTime)]
    generated_at: String,
    /// A panel is ONLINE while its latest reading is at most this many seconds old.
    offline_after_secs: u64,
    /// Every panel that has ever written a reading, and every virtual meter one of whose
    /// members has, sorted by id.
    panels: Vec<RealtimePanel>,
}

/// The latest reading of each panel and whether it is ONLINE.
#[utoipa::path(
    get,
    path = "/api/panel/realtime",
    tag = "panels",
    responses(
        (status = 200, description = "The latest reading of every panel", body = Realtime),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn realtime(State(state): Shared) -> Result<Response, ApiError> {
    rendered::json(&state, "realtime", make_realtime).await
}

async fn make_realtime(state: Arc<AppState>) -> Result<Realtime, ApiError> {
    let latest = state.store.latest().await?;
    let now = Utc::now();
    let panels: Vec<_> =
        virtual_meters::realtime(&state.meters, &latest, now, state.offline_after_secs)
            .into_values()
            .collect();
    Ok(Realtime {
        generated_at: rfc3339(now),
        offline_after_secs: state.offline_after_secs,
        panels,
    })
}

/// The 503 of every route that reads InfluxDB.
pub(crate) const UNAVAILABLE: &str =
    "InfluxDB failed or did not answer within `INFLUX_TIMEOUT_MS` \
     (`influxdb_unavailable`), or the whole request took longer than that plus 1 s (`timeout`)";

#[derive(Serialize, ToSchema)]
struct PanelUsage {
    panel: String,
    kind: Kind,
    /// The tariff the panel pays (`flat` for `TARIFF_PER_KWH`).
    tariff: String,
    #[serde(flatten)]
    figure: UsageFigure,
}

/// A window's rate.
#[derive(Serialize, ToSchema)]
struct WindowRate {
    window: String,
    rate: f64,
}

/// The next dated version of a tariff.
#[derive(Serialize, ToSchema)]
struct NextVersion {
    #[schema(format = Date)]
    valid_from: String,
    windows: Vec<WindowRate>,
}

/// What a tariff charges now, and its next change.
#[derive(Serialize, ToSchema)]
pub(crate) struct TariffNow {
    tariff: String,
    /// The version in force (its `valid_from`; `always` for `TARIFF_PER_KWH`).
    version: String,
    /// The window in force now.
    window: String,
    /// Its price of one kWh.
    rate: f64,
    /// When the price next changes (another window or version), within the week ahead;
    /// null when it does not.
    #[schema(format = DateTime)]
    window_until: Option<String>,
    /// The next dated version, if the file has one.
    next_version: Option<NextVersion>,
}

/// What every tariff charges at `now`.
pub(crate) fn tariffs_now(state: &AppState, now: chrono::DateTime<Utc>) -> Vec<TariffNow> {
    let tariffs = &state.tariffs;
    tariffs
        .plans
        .iter()
        .enumerate()
        .map(|(plan, p)| {
            let current = tariffs.now(plan, now, state.timezone);
            let version = &p.versions[current.version];
            let window = &version.windows[current.window];
            TariffNow {
                tariff: p.name.clone(),
                version: version.label(),
                window: window.name.clone(),
                rate: window.rate.to_f64(),
                window_until: current.until.map(rfc3339),
                next_version: current.next_version.map(|next| {
                    let next = &p.versions[next];
                    NextVersion {
                        valid_from: next.label(),
                        windows: next
                            .windows
                            .iter()
                            .map(|w| WindowRate {
                                window: w.name.clone(),
                                rate: w.rate.to_f64(),
                            })
                            .collect(),
                    }
                }),
            }
        })
        .collect()
}

/// The answer of `GET /api/panel/today-usage`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TodayUsage {
    /// When this answer was made: "today" and the tariffs in force are as of then (see
    /// `QUERY_CACHE_MS`).
    #[schema(format = DateTime)]
    generated_at: String,
    /// Today in `timezone`.
    #[schema(format = Date)]
    date: String,
    /// The IANA time zone that defines "today".
    timezone: &'static str,
    /// The price of one kWh when every panel pays one price at all times
    /// (`TARIFF_PER_KWH`); null under time-of-use or several tariffs (see `tariffs`).
    tariff_per_kwh: Option<f64>,
    currency: String,
    /// What each tariff charges now and its next change.
    tariffs: Vec<TariffNow>,
    /// Every panel that has ever written a reading, sorted by id; 0 for one without a reading
    /// today. With them, each virtual meter one of whose members has (`kind`: `virtual`).
    panels: Vec<PanelUsage>,
    /// All panels together (virtual meters are not added: their members are already counted):
    /// each window's cost is that of the panels' exact total usage in it, so it can differ by
    /// a cent from the sum of the panels' rounded costs.
    total: UsageFigure,
}

/// Today's usage and cost per panel and in total.
#[utoipa::path(
    get,
    path = "/api/panel/today-usage",
    tag = "energy",
    responses(
        (status = 200, description = "Today's usage and cost", body = TodayUsage),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn today_usage(State(state): Shared) -> Result<Response, ApiError> {
    rendered::json(&state, "today-usage", make_today_usage).await
}

async fn make_today_usage(state: Arc<AppState>) -> Result<TodayUsage, ApiError> {
    let now = Utc::now();
    let (date, today) = period::today(now, state.timezone);
    let tariffs = &state.tariffs;
    let parts = pricing::parts(
        &state.store,
        tariffs,
        &virtual_meters::all(&state.meters),
        state.timezone,
        &[today],
        false,
    )
    .await?;
    let mut total = Tally::default();
    let panels: Vec<_> = parts
        .into_iter()
        .map(|(panel, parts)| {
            let plan = tariffs.plan_of(&panel);
            let kind = Kind::of(&state.meters, &panel);
            if kind == Kind::Panel {
                total.add(plan, &parts[0]);
            }
            PanelUsage {
                kind,
                tariff: tariffs.plans[plan].name.clone(),
                figure: UsageFigure::new(tariffs, plan, &parts[0]),
                panel,
            }
        })
        .collect();
    Ok(TodayUsage {
        generated_at: rfc3339(now),
        date: date.to_string(),
        timezone: state.timezone.name(),
        tariff_per_kwh: flat_rate(tariffs),
        currency: tariffs.currency.clone(),
        tariffs: tariffs_now(&state, now),
        panels,
        total: total.figure(tariffs),
    })
}

#[derive(Serialize, ToSchema)]
struct MonthUsage {
    #[schema(minimum = 1, maximum = 12)]
    month: u32,
    #[serde(flatten)]
    figure: UsageFigure,
    /// The month's largest quarter-hour usage × 4 (kW), rounded to 3 decimals.
    max_demand_kw: f64,
}

#[derive(Serialize, ToSchema)]
struct PanelYear {
    panel: String,
    kind: Kind,
    /// The tariff the panel pays.
    tariff: String,
    /// The year's usage, rounded to 3 decimals.
    total_kwh: f64,
    /// The estimated part of the year's usage, rounded to 3 decimals.
    total_estimated_kwh: f64,
    /// The cost of the year's exact usage in each window, each rounded once (not the sum of
    /// the months' rounded costs).
    total_cost: f64,
    /// The estimated part of `total_cost`.
    total_estimated_cost: f64,
    /// The year's cost per window.
    by_window: Vec<WindowCost>,
    /// The year's largest quarter-hour usage × 4 (kW), rounded to 3 decimals.
    max_demand_kw: f64,
    /// January to December, 0 for a month without data.
    #[schema(min_items = 12, max_items = 12)]
    months: Vec<MonthUsage>,
}

/// The answer of `GET /api/energy/monthly`.
#[derive(Serialize, ToSchema)]
pub(crate) struct MonthlyUsage {
    #[schema(minimum = 1970, maximum = 9999)]
    year: i32,
    /// The IANA time zone whose calendar months these are.
    timezone: &'static str,
    /// The price of one kWh when every panel pays one price at all times; null otherwise.
    tariff_per_kwh: Option<f64>,
    currency: String,
    /// Every panel that has ever written a reading, and every virtual meter one of whose
    /// members has, sorted by id.
    panels: Vec<PanelYear>,
}

/// Each panel's usage, cost and largest 15-minute demand per calendar month of a year.
#[utoipa::path(
    get,
    path = "/api/energy/monthly",
    tag = "energy",
    params(
        ("year" = Option<i32>, Query, minimum = 1970, maximum = 9999,
            description = "The year, in `TIMEZONE`; the current one when absent"),
        ("panel" = Option<String>, Query, description = "One panel's or virtual meter's \
            months; every one's when absent"),
        ("format" = Option<String>, Query, pattern = "^(json|csv)$",
            description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "Twelve months per panel", content(
            (MonthlyUsage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`year` is not an integer between 1970 and 9999, or \
            `format` not json or csv (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No panel or virtual meter with this id has a reading \
            (`not_found`)", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn monthly(
    State(state): Shared,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let year = match query_param(query.as_deref(), "year") {
        None => Utc::now().with_timezone(&state.timezone).year(),
        Some(raw) => parse_year(&raw)?,
    };
    let format = Format::parse(query_param(query.as_deref(), "format").as_deref())?;
    let months = period::months_of_year(year, state.timezone)
        .ok_or_else(|| ApiError::BadRequest(format!("year {year} has no calendar")))?;
    let only = Selection::from_query(query.as_deref())?;
    let key = format!("monthly?year={year}&format={format:?}&panel={}", only.key());
    rendered::response(&state, key, move |state| {
        make_monthly(state, year, months, format, only)
    })
    .await
}

/// The answer of [`monthly`] for `year`, whose calendar months are `months`, of one panel or
/// virtual meter (`only`) or all.
async fn make_monthly(
    state: Arc<AppState>,
    year: i32,
    months: Vec<energy_core::Period>,
    format: Format,
    only: Selection,
) -> Result<Response, ApiError> {
    let tariffs = &state.tariffs;
    let parts = pricing::parts(
        &state.store,
        tariffs,
        &only.meters(&state.meters),
        state.timezone,
        &months,
        true,
    )
    .await?;
    let panels: Vec<_> = only
        .select(parts)?
        .into_iter()
        .map(|(panel, months)| {
            let plan = tariffs.plan_of(&panel);
            let mut tally = Tally::default();
            let mut peak = Usage::ZERO;
            for month in &months {
                tally.add(plan, month);
                peak = peak.max(load_of(month).peak);
            }
            let year = tally.figure(tariffs);
            PanelYear {
                kind: Kind::of(&state.meters, &panel),
                tariff: tariffs.plans[plan].name.clone(),
                panel,
                total_kwh: year.usage_kwh,
                total_estimated_kwh: year.estimated_kwh,
                total_cost: year.cost,
                total_estimated_cost: year.estimated_cost,
                by_window: year.by_window,
                max_demand_kw: demand_kw(peak),
                months: months
                    .iter()
                    .zip(1..)
                    .map(|(parts, month)| MonthUsage {
                        month,
                        figure: UsageFigure::new(tariffs, plan, parts),
                        max_demand_kw: demand_kw(load_of(parts).peak),
                    })
                    .collect(),
            }
        })
        .collect();
    let answer = MonthlyUsage {
        year,
        timezone: state.timezone.name(),
        tariff_per_kwh: flat_rate(tariffs),
        currency: tariffs.currency.clone(),
        panels,
    };
    Ok(match format {
        Format::Json => Json(answer).into_response(),
        Format::Csv => {
            let labels: Vec<String> = (1..=12).map(|m| format!("{year:04}-{m:02}")).collect();
            let rows = answer.panels.iter().flat_map(|panel| {
                panel
                    .months
                    .iter()
                    .zip(&labels)
                    .map(|(month, label)| PeriodRow {
                        panel: &panel.panel,
                        period: label,
                        usage_kwh: month.figure.usage_kwh,
                        estimated_kwh: month.figure.estimated_kwh,
                        cost: month.figure.cost,
                        currency: &answer.currency,
                        max_demand_kw: month.max_demand_kw,
                    })
            });
            Csv::of_periods("month", rows)
                .into_response(&only.file_name(&format!("monthly-{year:04}")))
        }
    })
}

/// The last value of `name` in a query string, percent-decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .last()
}

fn parse_year(raw: &str) -> Result<i32, ApiError> {
    match raw.parse::<i32>() {
        Ok(year) if (1970..=9999).contains(&year) => Ok(year),
        _ => Err(ApiError::BadRequest(
            "year must be an integer between 1970 and 9999".into(),
        )),
    }
}

#[derive(Serialize, ToSchema)]
struct SummaryPanel {
    panel: String,
    kind: Kind,
    #[schema(schema_with = status_schema)]
    status: Status,
    /// The latest reading's power.
    power_kw: f64,
    /// The latest reading's energy register.
    energy_kwh: f64,
    #[schema(format = DateTime)]
    last_seen: String,
    today_usage_kwh: f64,
    /// The estimated part of today's usage (spread over gaps), rounded to 3 decimals.
    today_estimated_kwh: f64,
    /// Today's cost: the sum of `today_by_window`'s costs.
    today_cost: f64,
    /// The estimated part of `today_cost`.
    today_estimated_cost: f64,
    /// Today's cost per tariff window.
    today_by_window: Vec<WindowCost>,
    /// The largest `power_kw` of today's readings; null for a virtual meter (its members'
    /// peaks need not coincide).
    today_peak_power_kw: Option<f64>,
    /// The mean `power_kw` of today's readings, rounded to 3 decimals; null for a virtual
    /// meter.
    today_avg_power_kw: Option<f64>,
}

impl SummaryPanel {
    /// A summary entry from a live state and today's figures (`power`: the peak and mean of
    /// today's readings, for a panel).
    fn new(
        live: RealtimePanel,
        figure: UsageFigure,
        used: energy_core::Energy,
        (peak, avg): (Option<f64>, Option<f64>),
    ) -> SummaryPanel {
        SummaryPanel {
            panel: live.panel,
            kind: live.kind,
            status: live.status,
            power_kw: live.power_kw,
            energy_kwh: live.energy_kwh,
            last_seen: live.last_seen,
            today_usage_kwh: used.usage.kwh_rounded(),
            today_estimated_kwh: used.estimated.kwh_rounded(),
            today_cost: figure.cost,
            today_estimated_cost: figure.estimated_cost,
            today_by_window: figure.by_window,
            today_peak_power_kw: peak,
            today_avg_power_kw: avg,
        }
    }
}

/// The answer of `GET /api/panel/summary`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Summary {
    /// When this answer was made: statuses are as of then (see `QUERY_CACHE_MS`).
    #[schema(format = DateTime)]
    generated_at: String,
    /// Today in `timezone`.
    #[schema(format = Date)]
    date: String,
    timezone: &'static str,
    currency: String,
    /// The panels with at least one reading today, and the virtual meters with such a
    /// member, sorted by id.
    panels: Vec<SummaryPanel>,
}

/// The latest reading of each panel that reported today, with today's figures.
#[utoipa::path(
    get,
    path = "/api/panel/summary",
    tag = "panels",
    responses(
        (status = 200, description = "Today's figures of the panels that reported today",
            body = Summary),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn summary(State(state): Shared) -> Result<Response, ApiError> {
    rendered::json(&state, "summary", make_summary).await
}

async fn make_summary(state: Arc<AppState>) -> Result<Summary, ApiError> {
    let now = Utc::now();
    let (date, today): (NaiveDate, _) = period::today(now, state.timezone);
    let tariffs = &state.tariffs;
    let cut = CutPeriods::new(tariffs, &[today], state.timezone);
    let (stats, mut usage) = state.store.day_summary(today, cut.pieces()).await?;
    let meters = virtual_meters::all(&state.meters);
    virtual_meters::add_loads(&meters, &state.store, cut.pieces(), false, &mut usage).await?;
    let figures = |panel: &str| {
        let plan = tariffs.plan_of(panel);
        let parts = cut.parts(plan, usage.get(panel)).remove(0);
        (
            UsageFigure::new(tariffs, plan, &parts),
            load_of(&parts).energy,
        )
    };
    let mut panels: BTreeMap<String, SummaryPanel> = BTreeMap::new();
    for (panel, day) in &stats {
        let (figure, used) = figures(panel);
        let entry = RealtimePanel::new(panel.clone(), &day.latest, now, state.offline_after_secs);
        let power = (
            Some(day.peak_power_kw),
            Some(energy_core::cost::round_to(day.avg_power_kw, 3)),
        );
        panels.insert(panel.clone(), SummaryPanel::new(entry, figure, used, power));
    }
    for meter in state.meters.virtual_meters() {
        if !virtual_meters::has_member_in(meter, &stats) {
            continue;
        }
        let latest = |p: &str| stats.get(p).map(|day| &day.latest);
        let Some(entry) = virtual_meters::realtime_of(meter, latest, now, state.offline_after_secs)
        else {
            continue;
        };
        let (figure, used) = figures(&meter.name);
        panels.insert(
            meter.name.clone(),
            SummaryPanel::new(entry, figure, used, (None, None)),
        );
    }
    let panels: Vec<SummaryPanel> = panels.into_values().collect();
    Ok(Summary {
        generated_at: rfc3339(now),
        date: date.to_string(),
        timezone: state.timezone.name(),
        currency: tariffs.currency.clone(),
        panels,
    })
}

/// The answer of `GET /health`.
#[derive(Serialize, ToSchema)]
struct Health {
    status: HealthStatus,
    /// `ok`, or why InfluxDB did not answer.
    influxdb: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Ok,
    Degraded,
}

/// Whether the server can reach InfluxDB.
///
/// The probe for load balancers: open even when `API_TOKEN` is set.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "InfluxDB answers", body = Health,
            example = json!({"status": "ok", "influxdb": "ok"})),
        (status = 503, description = "InfluxDB does not answer", body = Health,
            example = json!({"status": "degraded", "influxdb": "connection refused"})),
    )
)]
pub(crate) async fn health(State(state): Shared) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
                influxdb: "ok".into(),
            }),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Degraded,
                influxdb: error.to_string(),
            }),
        ),
    }
}

/// `GET /metrics`: the page of [`crate::metrics`].
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics of this server",
    responses(
        (status = 200, content_type = "text/plain", body = String,
            description = "The Prometheus text format, version 0.0.4: `http_requests_total`, \
                `http_request_duration_seconds`, `influxdb_errors_total`"),
    )
)]
pub(crate) async fn render(State(state): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use tower::ServiceExt;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    use crate::state::tests::offline_state;

    /// The route of [`monthly`] alone, whose InfluxDB is never reached by the requests below
    /// (the whole router is tested in `openapi`).
    fn offline_app() -> Router {
        Router::from(OpenApiRouter::new().routes(routes!(monthly))).with_state(offline_state())
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = offline_app().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_bad_year_is_refused_before_influxdb_is_asked() {
        let (status, body) = call("GET", "/api/energy/monthly?year=twenty").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"]["message"],
            "year must be an integer between 1970 and 9999"
        );
    }

    #[test]
    fn year_must_be_an_integer_in_range() {
        assert_eq!(parse_year("2026").unwrap(), 2026);
        assert_eq!(parse_year("1970").unwrap(), 1970);
        assert_eq!(parse_year("9999").unwrap(), 9999);
        for bad in [
            "1969",
            "10000",
            "20x6",
            "",
            "2026.0",
            "-2026",
            "99999999999",
        ] {
            assert!(parse_year(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn query_params_are_decoded_and_the_last_wins() {
        assert_eq!(
            query_param(Some("year=2025&x=1"), "year").as_deref(),
            Some("2025")
        );
        assert_eq!(
            query_param(Some("year=1&year=%32"), "year").as_deref(),
            Some("2")
        );
        assert_eq!(query_param(None, "year"), None);
    }
}
