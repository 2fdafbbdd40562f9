//! The api-server's Prometheus metrics (`GET /metrics`) against a real InfluxDB 1.6 that goes
//! down, and against one that never answers.

use test_support::{http_request, ApiServer, Influx};

const DB: &str = "energy";

/// The value of `series` (name and labels exactly as rendered) on the page, if there.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// `GET /metrics`: the page, after checking it is Prometheus' text format.
fn metrics(api: &ApiServer) -> String {
    let (status, _, page, headers) = http_request("GET", &api.url("/metrics"), &[], None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    page
}

#[test]
fn influxdb_errors_are_counted_by_kind_while_influxdb_is_down() {
    let mut influx = Influx::start();
    influx.create_database(DB);
    influx.write(
        DB,
        "energy_data,panel=P1 power_kw=1,energy_kwh=5 1700000000000000000\n",
    );
    // No cache, so every request asks InfluxDB.
    let api = ApiServer::start(&influx.url(), DB, &[("QUERY_CACHE_MS", "0")]);
    api.ok("/api/panel/realtime");
    api.ok("/api/energy/monthly?year=2023");
    let page = metrics(&api);
    assert_eq!(
        sample(
            &page,
            r#"http_requests_total{route="/api/panel/realtime",status="200"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert!(!page.contains("influxdb_errors_total{"), "{page}");

    influx.stop();
    for path in [
        "/api/panel/realtime",
        "/api/panel/summary",
        "/api/panel/today-usage",
    ] {
        let (status, body) = api.get(path);
        assert_eq!(status, 503, "{path}: {body}");
    }
    let page = metrics(&api);
    let unreachable = sample(&page, r#"influxdb_errors_total{kind="unreachable"}"#);
    assert!(unreachable.unwrap_or(0.0) >= 3.0, "{page}");
    for route in [
        "/api/panel/realtime",
        "/api/panel/summary",
        "/api/panel/today-usage",
    ] {
        let series = format!(r#"http_requests_total{{route="{route}",status="503"}}"#);
        assert_eq!(sample(&page, &series), Some(1.0), "{series}:\n{page}");
    }
    // The year is part of the query string, not of the route.
    assert_eq!(
        sample(
            &page,
            r#"http_requests_total{route="/api/energy/monthly",status="200"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            r#"http_request_duration_seconds_count{route="/api/panel/realtime"}"#
        )
        .unwrap()
            >= 2.0,
        "{page}"
    );
    // /health reports InfluxDB's state itself, and is counted like any route.
    assert_eq!(api.get("/health").0, 503);
    let page = metrics(&api);
    assert_eq!(
        sample(
            &page,
            r#"http_requests_total{route="/health",status="503"}"#
        ),
        Some(1.0),
        "{page}"
    );
}

#[test]
fn an_influxdb_that_never_answers_counts_as_timeouts() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let api = ApiServer::start(&url, DB, &[("INFLUX_TIMEOUT_MS", "300")]);
    assert_eq!(api.get("/api/panel/realtime").0, 503);
    let page = metrics(&api);
    assert!(
        sample(&page, r#"influxdb_errors_total{kind="timeout"}"#).unwrap_or(0.0) >= 1.0,
        "{page}"
    );
    drop(silent);
}
