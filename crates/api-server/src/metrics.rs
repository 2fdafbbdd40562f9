//! Prometheus metrics at `GET /metrics`, in the text exposition format (version 0.0.4):
//!
//! - `http_requests_total{route, status}` — answered requests;
//! - `http_request_duration_seconds{route}` — a histogram of the time to the response head;
//! - `influxdb_errors_total{kind}` — InfluxDB queries that failed (`timeout`, `unreachable`,
//!   `status`, `bad_response`, `partial`; see `InfluxError::kind`);
//! - `alerts_events_total{rule, transition}` — firings and resolutions recorded by this server;
//! - `alerts_firing{rule}` — 1 while the rule fires, 0 when not (on the evaluating server);
//! - `alert_notifications_total{target, outcome}` — notifications `delivered` or `given_up`;
//! - `alert_notification_failures_total{target}` — attempts that failed and were retried.
//!
//! `route` is the route template that matched (`/api/energy/monthly`), never the raw path, so a
//! client requesting made-up paths cannot grow the number of series; a request that reached no
//! route (an unknown path, or one refused before routing: 401, 413, a CORS preflight) counts as
//! [`UNMATCHED`]. `status` is the numeric status code.
//!
//! When `API_TOKEN` is set, `/metrics` needs it like every route but `/health` and the
//! dashboard's files (see `auth`): traffic and error rates are nobody else's business, and
//! Prometheus can send a bearer token with its scrapes.
//!
//! The code records through the `metrics` facade's global recorder, installed once per
//! process by [`install`]; its [`PrometheusHandle`] is kept in the app state, from which the
//! route (`routes::render`) renders the page. Tests that build the router in-process call
//! [`install`] as often as they like.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use energy_influx::InfluxError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "http_requests_total";
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const INFLUX_ERRORS: &str = "influxdb_errors_total";
pub const ALERT_EVENTS: &str = "alerts_events_total";
pub const ALERTS_FIRING: &str = "alerts_firing";
pub const ALERT_NOTIFICATIONS: &str = "alert_notifications_total";
pub const ALERT_FAILURES: &str = "alert_notification_failures_total";
/// The `route` of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// 1 ms to 10 s: a cached answer takes about a millisecond, an uncached monthly one seconds,
/// and the request timeout ends everything at `INFLUX_TIMEOUT_MS` + 1 s (10 s by default).
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Prometheus' text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets when nobody scrapes (they are
/// kept one by one until then).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs this process's recorder as the global one, on the first call; every call returns
/// the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION.to_owned()),
                    &DURATION_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if let Err(error) = ::metrics::set_global_recorder(recorder) {
                tracing::warn!(%error, "another metrics recorder is installed: /metrics stays empty");
            }
            ::metrics::describe_counter!(REQUESTS, "HTTP requests answered, by route and status");
            ::metrics::describe_histogram!(
                REQUEST_DURATION,
                ::metrics::Unit::Seconds,
                "Time from a request's arrival to its response head, by route"
            );
            ::metrics::describe_counter!(INFLUX_ERRORS, "InfluxDB queries that failed, by kind");
            ::metrics::describe_counter!(ALERT_EVENTS, "Alert firings and resolutions, by rule");
            ::metrics::describe_gauge!(ALERTS_FIRING, "1 while an alert rule fires, by rule");
            ::metrics::describe_counter!(
                ALERT_NOTIFICATIONS,
                "Alert notifications delivered or given up, by target"
            );
            ::metrics::describe_counter!(
                ALERT_FAILURES,
                "Alert notification attempts that failed and are retried, by target"
            );
            handle
        })
        .clone()
}

/// Folds histogram samples into buckets every few seconds; runs until the runtime stops.
pub async fn upkeep(handle: PrometheusHandle) {
    loop {
        tokio::time::sleep(UPKEEP_INTERVAL).await;
        handle.run_upkeep();
    }
}

/// Counts a failed InfluxDB query by its kind, and hands the error on.
pub fn influx_failed(error: InfluxError) -> InfluxError {
    ::metrics::counter!(INFLUX_ERRORS, "kind" => error.kind()).increment(1);
    error
}

/// Counts a firing or resolution of `rule` and sets its gauge.
pub fn alert_event(rule: &str, transition: energy_core::alerts::Transition) {
    let fired = transition == energy_core::alerts::Transition::Fired;
    let name = transition.name();
    ::metrics::counter!(ALERT_EVENTS, "rule" => rule.to_owned(), "transition" => name).increment(1);
    alert_firing(rule, fired);
}

/// Sets whether `rule` fires.
pub fn alert_firing(rule: &str, firing: bool) {
    ::metrics::gauge!(ALERTS_FIRING, "rule" => rule.to_owned()).set(f64::from(u8::from(firing)));
}

/// Counts how a notification to `target` ended.
pub fn alert_delivery(target: &str, outcome: crate::alerts::delivery::Outcome) {
    let outcome = match outcome {
        crate::alerts::delivery::Outcome::Delivered => "delivered",
        crate::alerts::delivery::Outcome::GivenUp => "given_up",
    };
    ::metrics::counter!(ALERT_NOTIFICATIONS, "target" => target.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Counts a failed attempt to notify `target` (retried).
pub fn alert_delivery_failed(target: &str) {
    ::metrics::counter!(ALERT_FAILURES, "target" => target.to_owned()).increment(1);
}

/// Where [`note_route`], inside the router, leaves the matched route for [`count_request`],
/// outside it. Shared rather than returned with the response, so that a request cut off by
/// the timeout layer still counts under its route.
#[derive(Clone, Default)]
struct RouteSlot(Arc<OnceLock<MatchedPath>>);

/// Middleware, outermost: counts every request and times it, including those answered by the
/// layers in front of the routes (401, 413, timeouts).
pub async fn count_request(mut request: Request, next: Next) -> Response {
    let slot = RouteSlot::default();
    request.extensions_mut().insert(slot.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let route = slot
        .0
        .get()
        .map_or_else(|| UNMATCHED.to_owned(), |path| path.as_str().to_owned());
    ::metrics::histogram!(REQUEST_DURATION, "route" => route.clone()).record(elapsed);
    let status = response.status().as_str().to_owned();
    ::metrics::counter!(REQUESTS, "route" => route, "status" => status).increment(1);
    response
}

/// Middleware on each route (`Router::layer`, where axum has matched the route): tells
/// [`count_request`] which route it was.
pub async fn note_route(request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    if let (Some(slot), Some(path)) = (
        extensions.get::<RouteSlot>(),
        extensions.get::<MatchedPath>(),
    ) {
        let _ = slot.0.set(path.clone());
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, StatusCode};
    use tower::ServiceExt;

    use crate::cors::CorsOrigins;
    use crate::server::{protect, Policy};

    fn policy(api_token: Option<&str>) -> Policy {
        Policy {
            api_token: api_token.map(energy_service::Secret::new),
            cors_origins: CorsOrigins::None,
            request_timeout: Duration::from_secs(10),
        }
    }

    async fn get(policy: &Policy, uri: &str, token: Option<&str>) -> (StatusCode, String, String) {
        let app = protect(
            crate::openapi::app(crate::state::tests::offline_state()),
            policy,
        );
        let mut request = axum::http::Request::get(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// The value of the sample `series` (name and labels exactly as rendered), if present.
    fn sample(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    // Other tests of this binary record into the same process-wide recorder, so these use
    // routes and statuses no other test requests, and compare before with after.
    #[tokio::test]
    async fn requests_are_counted_and_timed_by_route_template_and_status() {
        let open = policy(None);
        let counted = r#"http_requests_total{route="/api/energy/monthly",status="400"}"#;
        let unmatched = r#"http_requests_total{route="unmatched",status="404"}"#;
        let (_, _, before) = get(&open, "/metrics", None).await;
        let count_before = sample(&before, counted).unwrap_or(0.0);
        let unmatched_before = sample(&before, unmatched).unwrap_or(0.0);

        get(&open, "/api/energy/monthly?year=1", None).await;
        get(&open, "/api/energy/monthly?year=abc", None).await;
        get(&open, "/no/such/path/1", None).await;
        let (status, content_type, page) = get(&open, "/metrics", None).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        // The recorder is the process's own, shared with the other unit tests running at the
        // same time (one of them asks for an unknown path too): at least our requests.
        assert!(
            sample(&page, counted).unwrap_or(0.0) >= count_before + 2.0,
            "{page}"
        );
        // An unknown path counts under one label, not under its own path.
        assert!(
            sample(&page, unmatched).unwrap_or(0.0) >= unmatched_before + 1.0,
            "{page}"
        );
        assert!(!page.contains("/no/such/path"), "{page}");
        // The latency histogram has the buckets from 1 ms to 10 s, per route (how many
        // answers fall under 1 ms depends on the machine's load: only the larger ones must
        // hold both).
        for le in ["0.001", "0.01", "1", "10", "+Inf"] {
            let bucket = format!(
                r#"http_request_duration_seconds_bucket{{route="/api/energy/monthly",le="{le}"}}"#
            );
            let count = sample(&page, &bucket);
            assert!(count.is_some(), "{bucket}: {page}");
            if le != "0.001" && le != "0.01" {
                assert!(count.unwrap() >= 2.0, "{bucket}: {page}");
            }
        }
        assert!(
            sample(
                &page,
                r#"http_request_duration_seconds_count{route="/api/energy/monthly"}"#
            )
            .unwrap()
                >= 2.0
        );
        assert!(
            page.contains("# TYPE http_requests_total counter"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE http_request_duration_seconds histogram"),
            "{page}"
        );
    }

    #[tokio::test]
    async fn a_failed_influxdb_query_is_counted_by_kind() {
        let open = policy(None);
        let series = r#"influxdb_errors_total{kind="unreachable"}"#;
        let (_, _, before) = get(&open, "/metrics", None).await;
        let before = sample(&before, series).unwrap_or(0.0);
        // Nothing listens where offline_state's InfluxDB is.
        let (status, _, _) = get(&open, "/api/panel/summary", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (_, _, page) = get(&open, "/metrics", None).await;
        assert!(sample(&page, series).unwrap() > before, "{page}");
        assert!(
            sample(
                &page,
                r#"http_requests_total{route="/api/panel/summary",status="503"}"#
            )
            .unwrap()
                >= 1.0,
            "{page}"
        );
    }

    #[tokio::test]
    async fn with_a_token_set_metrics_need_it_like_the_api() {
        let guarded = policy(Some("tok-metrics"));
        let (status, _, _) = get(&guarded, "/metrics", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, page) = get(&guarded, "/metrics", Some("tok-metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(r#"route="unmatched",status="401""#), "{page}");
    }
}
