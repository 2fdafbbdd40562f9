//! The whole pipeline with real processes: sensor-publisher → Mosquitto → mqtt-subscriber →
//! InfluxDB → api-server, checked against figures computed here from the raw stored points.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;
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

    let (_, today, _) = http_get(&format!("{api}/api/panel/today-usage"));
    let (_, summary, _) = http_get(&format!("{api}/api/panel/summary"));
    let (_, realtime, _) = http_get(&format!("{api}/api/panel/realtime"));
    let date: NaiveDate = today["date"].as_str().unwrap().parse().unwrap();
    let tz = chrono_tz::Asia::Jakarta;
    let start = tz
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let end = start + chrono::Duration::days(1);

    let mut total = 0.0;
    for (i, panel) in PANELS.iter().enumerate() {
        let points = raw_points(&influx, panel);
        // Today's usage by hand: positive increases whose later reading is today.
        let usage: f64 = points
            .windows(2)
            .filter(|w| w[1].0 >= start && w[1].0 < end)
            .map(|w| (w[1].2 - w[0].2).max(0.0))
            .sum();
        total += usage;
        let today_panel = &today["panels"][i];
        assert_eq!(today_panel["panel"], *panel);
        assert_eq!(
            today_panel["usage_kwh"],
            round3(usage),
            "{panel}: {today_panel}"
        );
        assert!(usage > 0.0, "{panel} used nothing");

        let todays: Vec<_> = points
            .iter()
            .filter(|p| p.0 >= start && p.0 < end)
            .collect();
        let latest = points.last().unwrap();
        let s: &Value = &summary["panels"][i];
        assert_eq!(s["panel"], *panel);
        assert_eq!(s["energy_kwh"], latest.2);
        assert_eq!(s["power_kw"], latest.1);
        let peak = todays.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        let mean = todays.iter().map(|p| p.1).sum::<f64>() / todays.len() as f64;
        assert_eq!(s["today_peak_power_kw"], peak);
        assert_eq!(s["today_avg_power_kw"], round3(mean));
        assert_eq!(s["today_usage_kwh"], round3(usage));

        let r = &realtime["panels"][i];
        assert_eq!(
            (r["panel"].as_str(), r["energy_kwh"].as_f64()),
            (Some(*panel), Some(latest.2))
        );
    }
    assert_eq!(today["total"]["usage_kwh"], round3(total));
}
