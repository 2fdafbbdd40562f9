//! Hostile panel names against the api-server and a real InfluxDB 1.6. Valid MQTT panel ids
//! cannot hold quotes, semicolons or backslashes, but data written by other tools can: every
//! endpoint must still answer 200 with those panels listed exactly as stored, and no name may
//! change a statement — the database is still there afterwards, with every point.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Asia::Jakarta;
use energy_core::{influxql, line_protocol};
use serde_json::Value;
use test_support::{ApiServer, Influx};

const DB: &str = "energy";

/// Panel names that would change an InfluxQL statement or a line of line protocol if they
/// were pasted in unquoted.
const HOSTILE_PANELS: &[&str] = &[
    "x'; DROP DATABASE energy; --",
    "x\"; DROP DATABASE \"energy\"; --",
    "x' OR '1'='1",
    "x\\'; DROP MEASUREMENT energy_data; --",
    "back\\slash",
    "semi;colon",
    "comma,equals=space s",
    "'",
    "\"",
    "--",
    "/.*/",
    "$SYS/#",
    "é🙂",
    "PANEL_OK",
];

/// A tag value escaped for InfluxDB 1.x. Without a backslash that is exactly what the
/// subscriber does (`line_protocol::escape_tag_value`); InfluxDB 1.x reads a backslash before
/// any other character literally (`a\\b` would be stored as two backslashes), so a value with
/// one is written with only `,` `=` and space escaped.
fn tag_value(value: &str) -> String {
    assert!(!value.ends_with('\\') && !value.contains('\n'), "{value:?}");
    let mut out = String::new();
    if value.contains('\\') {
        for c in value.chars() {
            if matches!(c, ',' | '=' | ' ') {
                out.push('\\');
            }
            out.push(c);
        }
    } else {
        line_protocol::escape_tag_value(value, &mut out);
    }
    out
}

fn ids(body: &Value) -> Vec<String> {
    body["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("no panels list in {body}"))
        .iter()
        .map(|p| p["panel"].as_str().expect("a panel id").to_owned())
        .collect()
}

fn nanos(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt()
        .expect("a time InfluxDB can store")
}

fn databases(influx: &Influx) -> Vec<String> {
    let json = influx.query(DB, "SHOW DATABASES");
    json["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn hostile_panel_names_are_listed_by_every_endpoint_and_change_no_statement() {
    let influx = Influx::start();
    influx.create_database(DB);
    // Two readings per panel in the last minute, both today in Jakarta (so every panel is in
    // today's summary): 10 -> 10.5 kWh, 0.5 kWh of usage, all of it today's. (A pair's increase
    // is spread over the time between its readings: one straddling local midnight would give
    // part of it to yesterday, so in the first minute of a day the test waits for the second.)
    let mut now = Utc::now();
    while (now - chrono::Duration::seconds(60))
        .with_timezone(&Jakarta)
        .date_naive()
        != now.with_timezone(&Jakarta).date_naive()
    {
        std::thread::sleep(std::time::Duration::from_secs(1));
        now = Utc::now();
    }
    let (earlier, later) = (
        now - chrono::Duration::seconds(60),
        now - chrono::Duration::seconds(1),
    );
    let mut lines = String::new();
    for panel in HOSTILE_PANELS {
        let tag = tag_value(panel);
        lines.push_str(&format!(
            "energy_data,panel={tag} power_kw=30,energy_kwh=10 {}\n",
            nanos(earlier)
        ));
        lines.push_str(&format!(
            "energy_data,panel={tag} power_kw=30,energy_kwh=10.5 {}\n",
            nanos(later)
        ));
    }
    influx.write(DB, &lines);
    let points = 2 * HOSTILE_PANELS.len() as u64;
    assert_eq!(influx.count_points(DB), points);

    // Each name was stored exactly, and quoting it as an InfluxQL string literal selects it.
    for panel in HOSTILE_PANELS {
        let q = format!(
            "SELECT count(energy_kwh) FROM energy_data WHERE panel = {}",
            influxql::string_literal(panel)
        );
        let json = influx.query(DB, &q);
        assert_eq!(
            json["results"][0]["series"][0]["values"][0][1], 2,
            "{q}: {json}"
        );
    }

    let mut expected: Vec<String> = HOSTILE_PANELS.iter().map(|p| (*p).to_owned()).collect();
    expected.sort();
    let api = ApiServer::start(&influx.url(), DB, &[]);
    assert_eq!(api.get("/health").0, 200);

    let realtime = api.ok("/api/panel/realtime");
    assert_eq!(ids(&realtime), expected, "{realtime}");
    for panel in realtime["panels"].as_array().unwrap() {
        assert_eq!(panel["energy_kwh"], 10.5, "{panel}");
        assert_eq!(panel["status"], "ONLINE", "{panel}");
    }

    let today = api.ok("/api/panel/today-usage");
    assert_eq!(ids(&today), expected, "{today}");
    for panel in today["panels"].as_array().unwrap() {
        assert_eq!(panel["usage_kwh"], 0.5, "{panel}");
    }
    assert_eq!(
        today["total"]["usage_kwh"].as_f64(),
        Some(0.5 * HOSTILE_PANELS.len() as f64),
        "{today}"
    );

    let summary = api.ok("/api/panel/summary");
    assert_eq!(ids(&summary), expected, "{summary}");
    for panel in summary["panels"].as_array().unwrap() {
        assert_eq!(panel["today_usage_kwh"], 0.5, "{panel}");
        assert_eq!(panel["today_peak_power_kw"], 30.0, "{panel}");
    }

    let year = later.with_timezone(&Jakarta).year();
    let monthly = api.ok(&format!("/api/energy/monthly?year={year}"));
    assert_eq!(ids(&monthly), expected, "{monthly}");
    for panel in monthly["panels"].as_array().unwrap() {
        assert_eq!(panel["total_kwh"], 0.5, "{panel}");
        assert_eq!(
            panel["months"].as_array().map(Vec::len),
            Some(12),
            "{panel}"
        );
    }

    // Hostile query strings and paths are refused, not run.
    for path in [
        "/api/energy/monthly?year=2026%27%3B%20DROP%20DATABASE%20energy%3B%20--",
        "/api/energy/monthly?year=2026;DROP",
        "/api/energy/monthly?year=2026%22",
        "/api/energy/monthly?year=%00",
    ] {
        let (status, body) = api.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    }
    let (status, body) = api.get("/api/panel/x'%3B%20DROP%20DATABASE%20energy%3B%20--");
    assert_eq!(status, 404, "{body}");

    // Nothing was dropped or deleted.
    assert!(databases(&influx).contains(&DB.to_owned()));
    assert_eq!(influx.count_points(DB), points);
    assert_eq!(ids(&api.ok("/api/panel/realtime")), expected);
}
