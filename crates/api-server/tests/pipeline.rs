//! The whole pipeline with real processes: sensor-publisher → Mosquitto → mqtt-subscriber →
//! InfluxDB → api-server, checked against figures computed here from the raw stored points
//! (usage with `test_support::reference`, the rule written out independently).

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};
use test_support::reference::{self, Rule, Shares};
use test_support::{free_port, http_get, try_http_get, wait_until, Influx, Mosquitto, Program};

const PANELS: [&str; 3] = ["PANEL_LANTAI_1", "PANEL_LANTAI_2", "PANEL_LANTAI_3"];

/// Raw points of one panel: (time, power_kw, energy_kwh), oldest first.
fn raw_points(influx: &Influx, panel: &str) -> Vec<(DateTime<Utc>, f64, f64)> {
    let q = format!("SELECT power_kw, energy_kwh FROM energy_data WHERE panel = '{panel}'");
    let json = influx.query("energy", &q);
    json["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r[0].as_str().unwrap().parse().unwrap(),
                        r[1].as_f64().unwrap(),
                        r[2].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[test]
fn three_simulated_panels_flow_from_publisher_to_api() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let _subscriber = Program::start(
        "mqtt-subscriber",
        &[
            ("MQTT_URL", broker.url()),
            ("INFLUX_URL", influx.url()),
            ("MQTT_CLIENT_ID", "pipeline-sub".into()),
        ],
    );
    let api_port = free_port();
    let _api = Program::start(
        "api-server",
        &[
            ("INFLUX_URL", influx.url()),
            ("API_ADDR", format!("127.0.0.1:{api_port}")),
        ],
    );
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until(Duration::from_secs(20), "api-server", || {
        try_http_get(&format!("{api}/health")).is_ok()
    });
    let mut publisher = Program::start(
        "sensor-publisher",
        &[
            ("MQTT_URL", broker.url()),
            ("PUBLISH_INTERVAL_SECS", "1".into()),
        ],
    );

    // Three ONLINE panels on the realtime endpoint, within seconds.
    wait_until(Duration::from_secs(20), "three ONLINE panels", || {
        let (status, body, _) = http_get(&format!("{api}/api/panel/realtime"));
        status == 200
            && body["panels"]
                .as_array()
                .is_some_and(|p| p.len() == 3 && p.iter().all(|p| p["status"] == "ONLINE"))
    });
    wait_until(Duration::from_secs(30), "five readings per panel", || {
        PANELS.iter().all(|p| raw_points(&influx, p).len() >= 5)
    });
    assert_eq!(publisher.terminate(), Some(0), "{}", publisher.output());
    // Let the last readings arrive.
    let mut last = 0;
    wait_until(Duration::from_secs(10), "the point count to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = influx.count_points("energy");
        std::mem::replace(&mut last, now) == now
    });

    // The figures computed here from the stored points: today's usage by the rule (each pair's
    // increase spread over the time between its readings, today's local period summing the
    // quarter hours in it) with the independent reference, every reading of the panel given so
    // that a pair straddling midnight is shared correctly.
    let (_, first, _) = http_get(&format!("{api}/api/panel/today-usage"));
    let date: NaiveDate = first["date"].as_str().unwrap().parse().unwrap();
    let tz = chrono_tz::Asia::Jakarta;
    let start = tz
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let end = start + chrono::Duration::days(1);
    let stored: Vec<Vec<(DateTime<Utc>, f64, f64)>> =
        PANELS.iter().map(|p| raw_points(&influx, p)).collect();
    let mut total = Shares::default();
    let mut expected = Vec::new();
    for (panel, points) in PANELS.iter().zip(&stored) {
        let energy: Vec<(DateTime<Utc>, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
        let usage = reference::usage(&energy, start, end, Rule::default());
        assert!(usage.usage > 0, "{panel} used nothing");
        total += usage;
        expected.push(usage);
    }

    // The rollup writer may still be a round behind the last readings (the share of the newest
    // pair can be missing for up to a few seconds, and only ever grows): poll until the
    // figures settle, then report what still differs.
    let check = || -> Vec<String> {
        let (_, today, _) = http_get(&format!("{api}/api/panel/today-usage"));
        let (_, summary, _) = http_get(&format!("{api}/api/panel/summary"));
        let (_, realtime, _) = http_get(&format!("{api}/api/panel/realtime"));
        for body in [&today, &summary] {
            assert_eq!(
                body["date"],
                date.to_string(),
                "the local day changed during the test; run it again"
            );
        }
        let mut wrong = Vec::new();
        let mut expect = |what: String, got: &Value, want: Value| {
            if *got != want {
                wrong.push(format!("{what}: got {got}, expected {want}"));
            }
        };
        for (i, ((panel, points), usage)) in PANELS.iter().zip(&stored).zip(&expected).enumerate() {
            let today_panel = &today["panels"][i];
            expect(
                format!("today-usage {i} panel"),
                &today_panel["panel"],
                json!(panel),
            );
            expect(
                format!("today-usage {panel} usage_kwh"),
                &today_panel["usage_kwh"],
                json!(usage.usage_kwh()),
            );
            expect(
                format!("today-usage {panel} estimated_kwh"),
                &today_panel["estimated_kwh"],
                json!(usage.estimated_kwh()),
            );

            let todays: Vec<_> = points
                .iter()
                .filter(|p| p.0 >= start && p.0 < end)
                .collect();
            let latest = points.last().unwrap();
            let s: &Value = &summary["panels"][i];
            expect(format!("summary {i} panel"), &s["panel"], json!(panel));
            expect(
                format!("summary {panel} energy_kwh"),
                &s["energy_kwh"],
                json!(latest.2),
            );
            expect(
                format!("summary {panel} power_kw"),
                &s["power_kw"],
                json!(latest.1),
            );
            let peak = todays.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            let mean = todays.iter().map(|p| p.1).sum::<f64>() / todays.len() as f64;
            expect(
                format!("summary {panel} today_peak_power_kw"),
                &s["today_peak_power_kw"],
                json!(peak),
            );
            expect(
                format!("summary {panel} today_avg_power_kw"),
                &s["today_avg_power_kw"],
                json!(round3(mean)),
            );
            expect(
                format!("summary {panel} today_usage_kwh"),
                &s["today_usage_kwh"],
                json!(usage.usage_kwh()),
            );
            expect(
                format!("summary {panel} today_estimated_kwh"),
                &s["today_estimated_kwh"],
                json!(usage.estimated_kwh()),
            );

            let r = &realtime["panels"][i];
            expect(format!("realtime {i} panel"), &r["panel"], json!(panel));
            expect(
                format!("realtime {panel} energy_kwh"),
                &r["energy_kwh"],
                json!(latest.2),
            );
        }
        expect(
            "today-usage total usage_kwh".into(),
            &today["total"]["usage_kwh"],
            json!(total.usage_kwh()),
        );
        expect(
            "today-usage total estimated_kwh".into(),
            &today["total"]["estimated_kwh"],
            json!(total.estimated_kwh()),
        );
        wrong
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let wrong = loop {
        let wrong = check();
        if wrong.is_empty() || Instant::now() >= deadline {
            break wrong;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        wrong.is_empty(),
        "the API's figures differ from the stored points':\n  {}",
        wrong.join("\n  ")
    );
}
