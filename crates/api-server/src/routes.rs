//! The HTTP routes of CONTRACT §6. Handlers read from the [`Store`], apply the core's rules
//! (status, usage, cost, rounding) and answer JSON.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, SubsecRound, Utc};
use chrono_tz::Tz;
use energy_core::status::{seconds_since, status};
use energy_core::{period, Status, Tariff, Usage};
use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::store::{Latest, Store};
use crate::stream::LiveFeed;
use crate::{dashboard, stream};

pub struct AppState {
    pub store: Store,
    pub timezone: Tz,
    pub tariff: Tariff,
    pub offline_after_secs: u64,
    /// The panels' live state for `/api/panel/stream`.
    pub live: LiveFeed,
    /// Renders `/metrics` (see [`crate::metrics`]).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

type Shared = State<Arc<AppState>>;

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/panel/realtime", get(realtime))
        .route("/api/panel/today-usage", get(today_usage))
        .route("/api/panel/summary", get(summary))
        .route("/api/energy/monthly", get(monthly))
        .route("/api/panel/stream", get(stream::stream))
        .route("/health", get(health))
        .route("/metrics", get(crate::metrics::render))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// RFC 3339 UTC: whole seconds when the instant has no fraction, else milliseconds.
pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.trunc_subsecs(3)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One entry of `/api/panel/realtime`'s `panels`, and of `/api/panel/stream`'s `panel` events.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RealtimePanel {
    pub panel: String,
    pub status: Status,
    pub power_kw: f64,
    pub energy_kwh: f64,
    pub last_seen: String,
    pub seconds_since_last_seen: i64,
}

impl RealtimePanel {
    pub fn new(
        panel: String,
        latest: &Latest,
        now: DateTime<Utc>,
        offline_after_secs: u64,
    ) -> Self {
        RealtimePanel {
            panel,
            status: status(latest.time, now, offline_after_secs),
            power_kw: latest.power_kw,
            energy_kwh: latest.energy_kwh,
            last_seen: rfc3339(latest.time),
            seconds_since_last_seen: seconds_since(latest.time, now),
        }
    }
}

async fn realtime(State(state): Shared) -> Result<impl IntoResponse, ApiError> {
    let latest = state.store.latest().await?;
    let now = Utc::now();
    let panels: Vec<_> = latest
        .into_iter()
        .map(|(panel, latest)| RealtimePanel::new(panel, &latest, now, state.offline_after_secs))
        .collect();
    Ok(Json(json!({
        "generated_at": rfc3339(now),
        "offline_after_secs": state.offline_after_secs,
        "panels": panels,
    })))
}

#[derive(Serialize)]
struct UsageFigure {
    usage_kwh: f64,
    cost: f64,
}

impl UsageFigure {
    fn new(usage: Usage, tariff: &Tariff) -> Self {
        Self {
            usage_kwh: usage.kwh_rounded(),
            cost: tariff.cost(usage),
        }
    }
}

#[derive(Serialize)]
struct PanelUsage {
    panel: String,
    #[serde(flatten)]
    figure: UsageFigure,
}

async fn today_usage(State(state): Shared) -> Result<impl IntoResponse, ApiError> {
    let (date, today) = period::today(Utc::now(), state.timezone);
    let (latest, usage) = state.store.latest_and_usage(&[today]).await?;
    let mut total = Usage::ZERO;
    let panels: Vec<_> = latest
        .into_keys()
        .map(|panel| {
            let used = usage.get(&panel).map_or(Usage::ZERO, |u| u[0]);
            total += used;
            PanelUsage {
                panel,
                figure: UsageFigure::new(used, &state.tariff),
            }
        })
        .collect();
    Ok(Json(json!({
        "date": date.to_string(),
        "timezone": state.timezone.name(),
        "tariff_per_kwh": state.tariff.per_kwh,
        "currency": state.tariff.currency,
        "panels": panels,
        "total": UsageFigure::new(total, &state.tariff),
    })))
}

#[derive(Serialize)]
struct MonthUsage {
    month: u32,
    #[serde(flatten)]
    figure: UsageFigure,
}

#[derive(Serialize)]
struct PanelYear {
    panel: String,
    total_kwh: f64,
    total_cost: f64,
    months: Vec<MonthUsage>,
}

async fn monthly(
    State(state): Shared,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let year = match query_param(query.as_deref(), "year") {
        None => Utc::now().with_timezone(&state.timezone).year(),
        Some(raw) => parse_year(&raw)?,
    };
    let months = period::months_of_year(year, state.timezone)
        .ok_or_else(|| ApiError::BadRequest(format!("year {year} has no calendar")))?;
    let (latest, usage) = state.store.latest_and_usage(&months).await?;
    let panels: Vec<_> = latest
        .into_keys()
        .map(|panel| {
            let used = usage
                .get(&panel)
                .cloned()
                .unwrap_or_else(|| vec![Usage::ZERO; 12]);
            let total: Usage = used.iter().copied().sum();
            PanelYear {
                panel,
                total_kwh: total.kwh_rounded(),
                total_cost: state.tariff.cost(total),
                months: used
                    .into_iter()
                    .zip(1..)
                    .map(|(usage, month)| MonthUsage {
                        month,
                        figure: UsageFigure::new(usage, &state.tariff),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(json!({
        "year": year,
        "timezone": state.timezone.name(),
        "tariff_per_kwh": state.tariff.per_kwh,
        "currency": state.tariff.currency,
        "panels": panels,
    })))
}

/// The last value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
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

#[derive(Serialize)]
struct SummaryPanel {
    panel: String,
    status: Status,
    power_kw: f64,
    energy_kwh: f64,
    last_seen: String,
    today_usage_kwh: f64,
    today_cost: f64,
    today_peak_power_kw: f64,
    today_avg_power_kw: f64,
}

async fn summary(State(state): Shared) -> Result<impl IntoResponse, ApiError> {
    let now = Utc::now();
    let (date, today): (NaiveDate, _) = period::today(now, state.timezone);
    let (stats, usage) = state.store.day_summary(today).await?;
    let panels: Vec<_> = stats
        .into_iter()
        .map(|(panel, day)| {
            let used = usage.get(&panel).copied().unwrap_or(Usage::ZERO);
            SummaryPanel {
                status: status(day.latest.time, now, state.offline_after_secs),
                power_kw: day.latest.power_kw,
                energy_kwh: day.latest.energy_kwh,
                last_seen: rfc3339(day.latest.time),
                today_usage_kwh: used.kwh_rounded(),
                today_cost: state.tariff.cost(used),
                today_peak_power_kw: day.peak_power_kw,
                today_avg_power_kw: energy_core::cost::round_to(day.avg_power_kw, 3),
                panel,
            }
        })
        .collect();
    Ok(Json(json!({
        "date": date.to_string(),
        "timezone": state.timezone.name(),
        "currency": state.tariff.currency,
        "panels": panels,
    })))
}

async fn health(State(state): Shared) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "influxdb": "ok"})),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "influxdb": error.to_string()})),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// State whose InfluxDB refuses every connection (nothing listens on port 9).
    pub(crate) fn offline_state() -> Arc<AppState> {
        use clap::Parser;
        let settings = crate::settings::Settings::try_parse_from([
            "api-server",
            "--influx-url",
            "http://127.0.0.1:9",
        ])
        .unwrap();
        let influx = energy_influx::InfluxClient::new(&settings.influx).unwrap();
        Arc::new(AppState {
            store: Store::new(
                influx,
                settings.max_power_kw,
                std::time::Duration::from_millis(settings.query_cache_ms),
            ),
            timezone: settings.timezone,
            tariff: settings.tariff(),
            offline_after_secs: settings.offline_after_secs,
            live: LiveFeed::new(),
            metrics: crate::metrics::install(),
        })
    }

    /// A router whose InfluxDB is never reached by the requests below.
    fn offline_app() -> Router {
        app(offline_state())
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
    async fn wrong_methods_and_unknown_paths_get_json_errors() {
        let (status, body) = call("POST", "/api/panel/realtime").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        let (status, body) = call("GET", "/api/panel").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
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
