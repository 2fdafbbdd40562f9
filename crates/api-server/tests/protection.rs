//! The api-server binary's defences, against a real InfluxDB 1.6: the bearer token
//! (`API_TOKEN`), CORS (`CORS_ORIGINS`), body and header limits, and secrets kept out of
//! everything the program prints.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::{
    free_port, http_request, try_http_get, try_http_request, Headers, Influx, Program,
};

const API_TOKEN: &str = "tok-SECRET-123";
const INFLUX_TOKEN: &str = "influx-SECRET-456";

/// A running api-server and its base URL.
struct Api {
    program: Program,
    base: String,
}

impl Api {
    fn start(influx_url: &str, extra: &[(&str, &str)]) -> Api {
        let port = free_port();
        let mut envs = vec![
            ("INFLUX_URL", influx_url.to_owned()),
            ("INFLUX_DATABASE", "energy".to_owned()),
            ("INFLUX_TIMEOUT_MS", "1000".to_owned()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ];
        envs.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let program = Program::start("api-server", &envs);
        let base = format!("http://127.0.0.1:{port}");
        // /health answers without the token; any answer (even 503) means it is listening.
        test_support::wait_until(Duration::from_secs(20), "api-server to listen", || {
            try_http_get(&format!("{base}/health")).is_ok()
        });
        Api { program, base }
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value, Headers) {
        let (status, body, _, headers) =
            http_request(method, &format!("{}{path}", self.base), headers, None);
        (status, body, headers)
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value, Headers) {
        self.request("GET", path, headers)
    }
}

/// An InfluxDB holding one reading of panel A.
fn influx_with_a_reading() -> Influx {
    let influx = Influx::start();
    influx.create_database("energy");
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    influx.write(
        "energy",
        &format!("energy_data,panel=A power_kw=1.5,energy_kwh=10.25 {now}\n"),
    );
    influx
}

const BEARER: (&str, &str) = ("authorization", "Bearer tok-SECRET-123");

#[test]
fn with_api_token_every_api_request_needs_the_bearer_token() {
    let influx = influx_with_a_reading();
    let api = Api::start(&influx.url(), &[("API_TOKEN", API_TOKEN)]);

    let (status, body, headers) = api.get("/api/panel/realtime", &[]);
    assert_eq!(status, 401, "no token: {body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(headers["content-type"], "application/json");

    for wrong in [
        "Bearer tok-SECRET-124",
        "Bearer tok-SECRET-12",
        "Bearer tok-SECRET-1234",
        "Token tok-SECRET-123",
    ] {
        let (status, body, headers) = api.get("/api/panel/realtime", &[("authorization", wrong)]);
        assert_eq!(status, 401, "{wrong}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{wrong}");
        assert!(headers["www-authenticate"].starts_with("Bearer"), "{wrong}");
    }

    let (status, body, _) = api.get("/api/panel/realtime", &[BEARER]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["panels"][0]["panel"], "A");
    let (status, _, _) = api.get("/api/energy/monthly?year=2025", &[BEARER]);
    assert_eq!(status, 200);
}

#[test]
fn with_api_token_health_stays_open_for_load_balancers() {
    let influx = Influx::start();
    let api = Api::start(&influx.url(), &[("API_TOKEN", API_TOKEN)]);
    let (status, body, _) = api.get("/health", &[]);
    assert_eq!(
        (status, body),
        (200, json!({"status": "ok", "influxdb": "ok"}))
    );
}

#[test]
fn with_api_token_the_dashboard_loads_without_it_but_its_data_needs_it() {
    let influx = influx_with_a_reading();
    let api = Api::start(&influx.url(), &[("API_TOKEN", API_TOKEN)]);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let (status, _, headers) = api.get(path, &[]);
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
    }
    for path in ["/api/panel/realtime", "/api/panel/stream"] {
        let (status, _, _) = api.get(path, &[]);
        assert_eq!(status, 401, "{path}");
    }
}

#[test]
fn with_api_token_unknown_paths_answer_401_so_routes_stay_hidden() {
    let influx = Influx::start();
    let api = Api::start(&influx.url(), &[("API_TOKEN", API_TOKEN)]);
    for path in [
        "/api/nope",
        "/index.html",
        "/admin",
        "/health/extra",
        "/assets/x.js",
    ] {
        let (status, body, _) = api.get(path, &[]);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
    }
    // A wrong method on a real route gives nothing away either.
    let (status, _, _) = api.request("POST", "/api/panel/realtime", &[]);
    assert_eq!(status, 401);
    // With the token, the honest answers.
    let (status, body, _) = api.get("/api/nope", &[BEARER]);
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, body, _) = api.request("POST", "/api/panel/realtime", &[BEARER]);
    assert_eq!(
        (status, &body["error"]["code"]),
        (405, &json!("method_not_allowed"))
    );
}

#[test]
fn cors_answers_only_the_listed_origin() {
    let influx = Influx::start();
    let api = Api::start(&influx.url(), &[("CORS_ORIGINS", "http://dash.example")]);

    let (status, _, headers) = api.get("/api/panel/realtime", &[("origin", "http://dash.example")]);
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("http://dash.example")
    );
    assert!(headers["vary"].contains("origin"), "{headers:?}");

    let (status, _, headers) = api.get("/api/panel/realtime", &[("origin", "http://evil.example")]);
    assert_eq!(
        status, 200,
        "CORS is the browser's business; the answer itself is the same"
    );
    assert_eq!(
        headers.get("access-control-allow-origin"),
        None,
        "{headers:?}"
    );

    let (status, _, headers) = api.request(
        "OPTIONS",
        "/api/panel/realtime",
        &[
            ("origin", "http://dash.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
    );
    assert_eq!(status, 200, "preflight: {headers:?}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://dash.example"
    );
    assert_eq!(headers["access-control-allow-methods"], "GET");
    assert_eq!(headers["access-control-allow-headers"], "authorization");
    assert!(
        headers.contains_key("access-control-max-age"),
        "{headers:?}"
    );
}

#[test]
fn cors_preflight_needs_no_token_but_the_request_does() {
    let influx = Influx::start();
    let api = Api::start(
        &influx.url(),
        &[
            ("CORS_ORIGINS", "http://dash.example"),
            ("API_TOKEN", API_TOKEN),
        ],
    );
    let origin = ("origin", "http://dash.example");
    let (status, _, headers) = api.request(
        "OPTIONS",
        "/api/panel/realtime",
        &[origin, ("access-control-request-method", "GET")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://dash.example"
    );
    // The refusal carries the CORS headers, so the dashboard can read why.
    let (status, _, headers) = api.get("/api/panel/realtime", &[origin]);
    assert_eq!(status, 401);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://dash.example"
    );
    let (status, _, _) = api.get("/api/panel/realtime", &[origin, BEARER]);
    assert_eq!(status, 200);
}

#[test]
fn without_cors_origins_no_cors_headers_are_sent() {
    let influx = Influx::start();
    let api = Api::start(&influx.url(), &[]);
    let (status, _, headers) = api.get("/api/panel/realtime", &[("origin", "http://dash.example")]);
    assert_eq!(status, 200);
    assert!(
        !headers
            .keys()
            .any(|name| name.starts_with("access-control-")),
        "{headers:?}"
    );
}

#[test]
fn a_request_body_over_16_kib_is_refused_with_413_json() {
    let influx = Influx::start();
    let api = Api::start(&influx.url(), &[]);
    let url = format!("{}/api/panel/realtime", api.base);
    let (status, body, _, _) = http_request("GET", &url, &[], Some(vec![b'x'; 1 << 20]));
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // A small body is harmless: the endpoint ignores it.
    let (status, _, _, _) = http_request("GET", &url, &[], Some(b"{}".to_vec()));
    assert_eq!(status, 200);
}

#[test]
fn a_huge_header_is_refused_and_the_server_keeps_answering() {
    let influx = Influx::start();
    let api = Api::start(&influx.url(), &[]);
    let url = format!("{}/api/panel/realtime", api.base);

    // A header well within the limit is fine.
    let fine = "x".repeat(8 * 1024);
    let (status, _, _, _) = http_request("GET", &url, &[("x-padding", &fine)], None);
    assert_eq!(status, 200);

    // 200 KiB: hyper answers 431, or the connection is closed before the client reads it.
    let huge = "x".repeat(200 * 1024);
    match try_http_request("GET", &url, &[("x-padding", &huge)], None) {
        Ok((status, ..)) => assert_eq!(status, 431),
        Err(error) => assert!(
            error.contains("reset") || error.contains("closed") || error.contains("Incomplete"),
            "not a refusal: {error}"
        ),
    }
    // Many headers that add up to the same are refused as well.
    let chunk = "y".repeat(1000);
    let many: Vec<(String, &str)> = (0..50)
        .map(|i| (format!("x-pad-{i}"), chunk.as_str()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    if let Ok((status, ..)) = try_http_request("GET", &url, &many, None) {
        assert_eq!(status, 431);
    }

    let (status, body, _) = api.get("/health", &[]);
    assert_eq!(status, 200, "the server still answers: {body}");
    assert!(
        !api.program.output().contains("panicked"),
        "{}",
        api.program.output()
    );
}

#[test]
fn secrets_never_appear_in_the_output() {
    let mut influx = influx_with_a_reading();
    let mut api = Api::start(
        &influx.url(),
        &[
            ("API_TOKEN", API_TOKEN),
            ("INFLUX_TOKEN", INFLUX_TOKEN),
            ("RUST_LOG", "debug"),
            // Every request reaches InfluxDB (its error paths below must run, not the cache).
            ("QUERY_CACHE_MS", "0"),
        ],
    );
    let (status, _, _) = api.get("/api/panel/realtime?api_key=tok-SECRET-123", &[BEARER]);
    assert_eq!(status, 200, "InfluxDB 1.x without auth ignores the token");
    let (status, _, _) = api.get("/api/panel/summary", &[BEARER]);
    assert_eq!(status, 200);
    let (status, _, _) = api.get(
        "/api/panel/realtime",
        &[("authorization", "Bearer tok-SECRET-1234")],
    );
    assert_eq!(status, 401);
    let (status, _, _) = api.get("/api/panel/realtime", &[]);
    assert_eq!(status, 401);
    // InfluxDB down: the error paths log too.
    influx.stop();
    let (status, body, _) = api.get("/api/panel/today-usage", &[BEARER]);
    assert_eq!(status, 503, "{body}");
    let (status, _, _) = api.get("/health", &[]);
    assert_eq!(status, 503);
    assert_eq!(api.program.terminate(), Some(0));

    let output = api.program.output();
    // The log really is verbose: one line per request, the failure with its reason.
    for expected in [
        "status=200",
        "status=401",
        "status=503",
        "InfluxDB call failed",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
    for secret in [API_TOKEN, INFLUX_TOKEN, "SECRET"] {
        assert!(!output.contains(secret), "{secret} leaked:\n{output}");
    }

    let (code, help) = test_support::run_to_exit(
        "api-server",
        &["--help"],
        &[
            ("API_TOKEN", API_TOKEN.to_owned()),
            ("INFLUX_TOKEN", INFLUX_TOKEN.to_owned()),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0));
    assert!(help.contains("[env: API_TOKEN]"), "{help}");
    assert!(help.contains("[env: INFLUX_TOKEN]"), "{help}");
    assert!(!help.contains("SECRET"), "{help}");
}

#[test]
fn a_bad_api_token_stops_the_program_without_printing_it() {
    for bad in ["two words", "tok\tSECRET", ""] {
        let (code, output) = test_support::run_to_exit(
            "api-server",
            &[],
            &[("API_TOKEN", bad.to_owned())],
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(2), "{bad:?}: {output}");
        assert!(output.contains("--api-token"), "{bad:?}: {output}");
        if !bad.is_empty() {
            assert!(!output.contains(bad), "{bad:?} printed: {output}");
        }
    }
}
