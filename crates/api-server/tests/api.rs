//! The api-server binary against a real InfluxDB 1.6 holding hand-made histories. Expected
//! figures are worked out by hand in each test, not computed with the core crate.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use test_support::{free_port, http_get, try_http_get, ApiServer, Influx, Program};

fn line(panel: &str, power_kw: f64, energy_kwh: f64, time: DateTime<Utc>) -> String {
    format!(
        "energy_data,panel={panel} power_kw={power_kw},energy_kwh={energy_kwh} {}\n",
        time.timestamp_nanos_opt().unwrap()
    )
}

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn panel<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["panel"] == id)
        .unwrap_or_else(|| panic!("panel {id} missing from {body}"))
}

fn ids(body: &Value) -> Vec<String> {
    body["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["panel"].as_str().unwrap().to_owned())
        .collect()
}

/// Today's local midnight in Jakarta (UTC+7, no daylight saving), and the local date.
fn jakarta_today() -> (NaiveDate, DateTime<Utc>) {
    let tz = chrono_tz::Asia::Jakarta;
    let date = Utc::now().with_timezone(&tz).date_naive();
    let midnight = tz
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    (date, midnight)
}

#[test]
fn today_usage_and_summary_follow_the_pair_rule_across_local_midnight() {
    let influx = Influx::start();
    influx.create_database("energy");
    let (date, m) = jakarta_today();
    let min = |n: i64| m + Span::minutes(n);
    let mut lines = String::new();
    // A: yesterday 100 -> 101; the pair straddling midnight (101 -> 103) counts for today
    // (+2; InfluxDB 1.6 drops it from a bounded subquery), +1.5, a reset to 0 (0), +2.
    for (t, p, e) in [
        (-2, 10.0, 100.0),
        (-1, 12.0, 101.0),
        (1, 20.0, 103.0),
        (2, 30.0, 104.5),
        (3, 5.0, 0.0),
        (4, 7.0, 2.0),
    ] {
        lines += &line("A", p, e, min(t));
    }
    // B: +1 across midnight, then a zero glitch: 50 000 -> 0 -> 50 000.5 in a minute would be
    // 3 000 000 kW, so it counts 0; then +0.5.
    for (t, e) in [
        (-1, 49_999.0),
        (1, 50_000.0),
        (2, 0.0),
        (3, 50_000.5),
        (4, 50_001.0),
    ] {
        lines += &line("B", 1.0, e, min(t));
    }
    // C: a reading exactly at local midnight belongs to the new day: +2, then +0.5.
    for (t, e) in [(-2, 9.0), (-1, 10.0), (0, 12.0), (1, 12.5)] {
        lines += &line("C", 2.0, e, min(t));
    }
    // D: only yesterday.
    for (t, e) in [(-30, 1.0), (-20, 2.0)] {
        lines += &line("D", 3.0, e, min(t));
    }
    influx.write("energy", &lines);
    let api = ApiServer::start(&influx.url(), "energy", &[]);

    let today = api.ok("/api/panel/today-usage");
    if today["date"] != date.to_string() {
        panic!("the local day changed during the test; run it again");
    }
    assert_eq!(today["timezone"], "Asia/Jakarta");
    assert_eq!(today["tariff_per_kwh"], 1500.0);
    assert_eq!(today["currency"], "IDR");
    assert_eq!(
        ids(&today),
        ["A", "B", "C", "D"],
        "every panel ever seen, sorted"
    );
    for (id, kwh) in [("A", 5.5), ("B", 1.5), ("C", 2.5), ("D", 0.0)] {
        let p = panel(&today, id);
        assert_eq!(p["usage_kwh"], kwh, "{id}: {p}");
        assert_eq!(p["cost"], kwh * 1500.0, "{id}: {p}");
    }
    assert_eq!(today["total"], json!({"usage_kwh": 9.5, "cost": 14250.0}));

    let summary = api.ok("/api/panel/summary");
    assert_eq!(
        ids(&summary),
        ["A", "B", "C"],
        "only panels with a reading today"
    );
    let a = panel(&summary, "A");
    assert_eq!(a["energy_kwh"], 2.0);
    assert_eq!(a["power_kw"], 7.0);
    assert_eq!(
        a["last_seen"],
        min(4).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(a["today_usage_kwh"], 5.5);
    assert_eq!(a["today_cost"], 8250.0);
    assert_eq!(a["today_peak_power_kw"], 30.0);
    assert_eq!(a["today_avg_power_kw"], 15.5, "mean of 20, 30, 5, 7");
    let c = panel(&summary, "C");
    assert_eq!(
        c["today_avg_power_kw"], 2.0,
        "the midnight reading is today's"
    );
}

/// A cost is the exact usage times the tariff as written, rounded once to 2 decimals, half away
/// from zero, on every endpoint that shows one.
#[test]
fn costs_are_exact_and_round_half_a_cent_away_from_zero() {
    let influx = Influx::start();
    influx.create_database("energy");
    let (date, m) = jakarta_today();
    let min = |n: i64| m + Span::minutes(n);
    let mut lines = String::new();
    // E: 7 -> 7.58 today, 0.58 kWh. At 0.25 per kWh: 0.58 × 0.25 = 0.145 exactly, half a cent
    // up: 0.15. (The f64 product was 0.14499999…, shown as 0.14.)
    lines += &line("E", 35.0, 7.0, min(1));
    lines += &line("E", 35.0, 7.58, min(2));
    // F: 3 -> 3.02 across midnight, 0.02 kWh today: 0.02 × 0.25 = 0.005, up to 0.01.
    lines += &line("F", 1.0, 3.0, min(-1));
    lines += &line("F", 1.0, 3.02, min(1));
    influx.write("energy", &lines);
    let api = ApiServer::start(
        &influx.url(),
        "energy",
        &[("TARIFF_PER_KWH", "0.25"), ("CURRENCY", "EUR")],
    );

    let today = api.ok("/api/panel/today-usage");
    if today["date"] != date.to_string() {
        panic!("the local day changed during the test; run it again");
    }
    assert_eq!(today["tariff_per_kwh"], 0.25);
    assert_eq!(today["currency"], "EUR");
    assert_eq!(panel(&today, "E")["usage_kwh"], 0.58);
    assert_eq!(panel(&today, "E")["cost"], 0.15, "{today}");
    assert_eq!(panel(&today, "F")["usage_kwh"], 0.02);
    assert_eq!(panel(&today, "F")["cost"], 0.01, "{today}");
    // The total is the cost of the total usage: 0.60 × 0.25 = 0.15 (not 0.15 + 0.01).
    assert_eq!(today["total"], json!({"usage_kwh": 0.6, "cost": 0.15}));

    let summary = api.ok("/api/panel/summary");
    assert_eq!(panel(&summary, "E")["today_cost"], 0.15, "{summary}");
    assert_eq!(panel(&summary, "F")["today_cost"], 0.01, "{summary}");

    let monthly = api.ok(&format!("/api/energy/monthly?year={}", date.year()));
    assert_eq!(monthly["tariff_per_kwh"], 0.25);
    let e = panel(&monthly, "E");
    let this_month = &e["months"][date.month0() as usize];
    assert_eq!(this_month["usage_kwh"], 0.58, "{monthly}");
    assert_eq!(this_month["cost"], 0.15, "{monthly}");
    assert_eq!(e["total_cost"], 0.15, "{monthly}");
}

#[test]
fn monthly_usage_splits_at_local_month_boundaries_with_resets_and_glitches() {
    let influx = Influx::start();
    influx.create_database("energy");
    let tz = chrono_tz::Asia::Jakarta;
    let mut lines = String::new();
    // A: the pair across New Year counts for January (+1), +10 in January, +1 across the
    // February boundary, a reset in March then +5, +2 in December; 2026 is not 2025.
    for (t, e) in [
        (local(tz, 2024, 12, 31, 23, 59), 10.0),
        (local(tz, 2025, 1, 1, 0, 0), 11.0),
        (local(tz, 2025, 1, 31, 23, 59), 21.0),
        (local(tz, 2025, 2, 1, 0, 1), 22.0),
        (local(tz, 2025, 3, 15, 12, 0), 0.0),
        (local(tz, 2025, 3, 16, 12, 0), 5.0),
        (local(tz, 2025, 12, 31, 23, 59), 7.0),
        (local(tz, 2026, 1, 1, 0, 1), 8.0),
    ] {
        lines += &line("A", 1.0, e, t);
    }
    // G: a zero glitch in June counts 0, then +0.5.
    for (minute, e) in [(0, 50_000.0), (1, 0.0), (2, 50_000.25), (3, 50_000.75)] {
        lines += &line("G", 1.0, e, local(tz, 2025, 6, 10, 10, minute));
    }
    // H: only 2024 data: listed with zeros.
    lines += &line("H", 1.0, 3.0, local(tz, 2024, 5, 1, 0, 0));
    influx.write("energy", &lines);
    let api = ApiServer::start(&influx.url(), "energy", &[]);

    let body = api.ok("/api/energy/monthly?year=2025");
    assert_eq!(body["year"], 2025);
    assert_eq!(ids(&body), ["A", "G", "H"]);
    let months = |id: &str| -> Vec<f64> {
        let months = panel(&body, id)["months"].as_array().unwrap().clone();
        assert_eq!(months.len(), 12);
        for (i, m) in months.iter().enumerate() {
            assert_eq!(m["month"], i + 1);
            assert_eq!(
                m["cost"].as_f64().unwrap(),
                m["usage_kwh"].as_f64().unwrap() * 1500.0
            );
        }
        months
            .iter()
            .map(|m| m["usage_kwh"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(
        months("A"),
        [11.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]
    );
    assert_eq!(panel(&body, "A")["total_kwh"], 19.0);
    assert_eq!(panel(&body, "A")["total_cost"], 28500.0);
    let mut june = [0.0; 12];
    june[5] = 0.5;
    assert_eq!(months("G"), june);
    assert_eq!(months("H"), [0.0; 12]);

    // The same data seen from a zone with daylight saving, 12 hours behind Jakarta in winter:
    // A's New Year pair (2024-12-31 12:00 there) belongs to December 2024, the February
    // boundary pair (2025-01-31 12:01) to January, and the pair of 2026-01-01 00:01 Jakarta
    // (2025-12-31 12:01) to December 2025.
    let ny = ApiServer::start(&influx.url(), "energy", &[("TIMEZONE", "America/New_York")]);
    let body = ny.ok("/api/energy/monthly?year=2025");
    let a: Vec<f64> = panel(&body, "A")["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["usage_kwh"].as_f64().unwrap())
        .collect();
    assert_eq!(
        a,
        [11.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]
    );
    assert_eq!(body["timezone"], "America/New_York");
}

#[test]
fn realtime_lists_every_panel_with_its_status() {
    let influx = Influx::start();
    influx.create_database("energy");
    let now = Utc::now();
    let mut lines = line("FRESH", 4.5, 10.25, now - Span::seconds(10));
    lines += &line("STALE", 1.0, 99.0, now - Span::hours(1));
    lines += &line("STALE", 2.0, 98.0, now - Span::hours(2));
    influx.write("energy", &lines);
    let api = ApiServer::start(&influx.url(), "energy", &[("OFFLINE_AFTER_SECS", "300")]);

    let body = api.ok("/api/panel/realtime");
    assert_eq!(body["offline_after_secs"], 300);
    assert_eq!(ids(&body), ["FRESH", "STALE"]);
    let fresh = panel(&body, "FRESH");
    assert_eq!(fresh["status"], "ONLINE");
    assert_eq!(fresh["power_kw"], 4.5);
    assert_eq!(fresh["energy_kwh"], 10.25);
    let age = fresh["seconds_since_last_seen"].as_i64().unwrap();
    assert!((10..=40).contains(&age), "{fresh}");
    let stale = panel(&body, "STALE");
    assert_eq!(stale["status"], "OFFLINE");
    assert_eq!(
        stale["energy_kwh"], 99.0,
        "the latest reading, not the largest or first"
    );
    assert!(stale["seconds_since_last_seen"].as_i64().unwrap() >= 3600);
    let generated: DateTime<Utc> = body["generated_at"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - generated).num_seconds().abs() < 30);
}

#[test]
fn an_empty_or_missing_database_is_not_an_error() {
    let influx = Influx::start();
    let api = ApiServer::start(&influx.url(), "never_written", &[]);
    for path in [
        "/api/panel/realtime",
        "/api/panel/today-usage",
        "/api/panel/summary",
        "/api/energy/monthly",
    ] {
        let body = api.ok(path);
        assert_eq!(body["panels"], json!([]), "{path}");
    }
    assert_eq!(
        api.ok("/api/panel/today-usage")["total"],
        json!({"usage_kwh": 0.0, "cost": 0.0})
    );
}

/// The allocator's options (see `malloc_conf` in main.rs) are the ones in force: jemalloc's
/// background thread, which hands freed memory back to the system, runs; an operator's
/// `_RJEM_MALLOC_CONF` still overrides them.
#[test]
fn the_server_runs_jemalloc_with_its_background_purge() {
    let influx = Influx::start();
    let thread_names = |api: &mut ApiServer| -> Vec<String> {
        let pid = api.program().pid();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    };
    let mut api = ApiServer::start(&influx.url(), "energy", &[]);
    assert_eq!(api.ok("/api/energy/monthly")["panels"], json!([]));
    let names = thread_names(&mut api);
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "threads: {names:?}"
    );
    let mut overridden = ApiServer::start(
        &influx.url(),
        "energy",
        &[("_RJEM_MALLOC_CONF", "background_thread:false")],
    );
    let names = thread_names(&mut overridden);
    assert!(
        !names.iter().any(|n| n == "jemalloc_bg_thd"),
        "threads: {names:?}"
    );
}

#[test]
fn bad_requests_and_unknown_paths_get_json_errors() {
    let influx = Influx::start();
    influx.create_database("energy");
    influx.write("energy", &line("A", 1.0, 1.0, Utc::now()));
    let api = ApiServer::start(&influx.url(), "energy", &[]);
    let year_error = json!({"error": {"code": "bad_request", "message": "year must be an integer between 1970 and 9999"}});
    for year in ["abc", "1969", "10000", "2025.5", "", "%00", "2026;DROP"] {
        let (status, body) = api.get(&format!("/api/energy/monthly?year={year}"));
        assert_eq!((status, &body), (400, &year_error), "year={year}");
    }
    // The edges of the range are fine, even past what InfluxDB 1.x can store (2262).
    for year in ["1970", "9999"] {
        let body = api.ok(&format!("/api/energy/monthly?year={year}"));
        assert_eq!(panel(&body, "A")["total_kwh"], 0.0);
    }
    let (status, body) = api.get("/api/nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    // `/` is the dashboard; other paths outside the API are unknown.
    let (status, body) = api.get("/index.html");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// Every endpoint answers 503 JSON quickly when InfluxDB is `dead`, and /health says why.
fn assert_unavailable(influx_url: String, expected_message: &str) {
    let port = free_port();
    let _program = Program::start(
        "api-server",
        &[
            ("INFLUX_URL", influx_url),
            ("INFLUX_TIMEOUT_MS", "1000".into()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    test_support::wait_until(Duration::from_secs(20), "api-server to listen", || {
        try_http_get(&format!("{base}/api/nope")).is_ok()
    });
    for path in [
        "/api/panel/realtime",
        "/api/panel/today-usage",
        "/api/panel/summary",
        "/api/energy/monthly?year=2025",
    ] {
        let started = Instant::now();
        let (status, body, _) = http_get(&format!("{base}{path}"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(
            body["error"]["code"], "influxdb_unavailable",
            "{path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected_message), "{path}: {message}");
    }
    let (status, body, _) = http_get(&format!("{base}/health"));
    assert_eq!(status, 503);
    assert_eq!(body["status"], "degraded");
    assert!(
        body["influxdb"]
            .as_str()
            .unwrap()
            .contains(expected_message),
        "{body}"
    );
}

#[test]
fn influxdb_refusing_connections_gives_503_json() {
    // A port nobody listens on.
    assert_unavailable(format!("http://127.0.0.1:{}", free_port()), "unreachable");
}

#[test]
fn influxdb_that_never_answers_gives_503_json_within_the_timeout() {
    // A listener that accepts connections (the kernel completes the handshake) but never
    // answers: without a timeout every request would hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    assert_unavailable(url, "timed out");
    drop(silent);
}

#[test]
fn a_bad_setting_stops_the_program_naming_it() {
    test_support::assert_bad_settings_stop(
        "api-server",
        &[
            ("TIMEZONE", "Mars/Olympus_Mons"),
            ("TARIFF_PER_KWH", "cheap"),
            ("TARIFF_PER_KWH", "-1"),
            ("TARIFF_PER_KWH", "NaN"),
            ("TARIFF_PER_KWH", "inf"),
            ("TARIFF_PER_KWH", "1e400"),
            ("TARIFF_PER_KWH", "0,25"),
            ("OFFLINE_AFTER_SECS", "-5"),
            ("MAX_POWER_KW", "0"),
            ("API_ADDR", "localhost"),
            ("INFLUX_URL", "influx:8086"),
            ("INFLUX_TIMEOUT_MS", "0"),
            ("CORS_ORIGINS", "dash.example"),
            ("CORS_ORIGINS", "http://dash.example/"),
            ("ROLLUP_STALE_SECS", "0"),
            ("ROLLUP_STALE_SECS", "soon"),
        ],
        &[],
    );
}

#[test]
fn help_documents_every_setting() {
    test_support::assert_help_documents(
        "api-server",
        &[
            "INFLUX_URL",
            "INFLUX_DATABASE",
            "INFLUX_TOKEN",
            "INFLUX_TIMEOUT_MS",
            "TIMEZONE",
            "TARIFF_PER_KWH",
            "CURRENCY",
            "OFFLINE_AFTER_SECS",
            "MAX_POWER_KW",
            "API_ADDR",
            "QUERY_CACHE_MS",
            "ROLLUP_STALE_SECS",
            "API_TOKEN",
            "CORS_ORIGINS",
            "LOG_FORMAT",
        ],
    );
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let influx = Influx::start();
    let port = free_port();
    let mut program = Program::start(
        "api-server",
        &[
            ("INFLUX_URL", influx.url()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    test_support::wait_until(Duration::from_secs(20), "api-server to listen", || {
        try_http_get(&format!("http://127.0.0.1:{port}/health")).is_ok()
    });
    assert_eq!(program.terminate(), Some(0), "{}", program.output());
    assert!(program.output().contains("stopped"));
}
