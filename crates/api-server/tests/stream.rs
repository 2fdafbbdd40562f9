//! `GET /api/panel/stream` of the api-server binary against a real InfluxDB 1.6: the first
//! events are the state `/api/panel/realtime` reports, a reading written to InfluxDB arrives as
//! an event within seconds, a status flips by itself as time passes, an outage is an `error`
//! event the stream survives, the token is required, and shutdown is not held up by a stream.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{json, Value};
use test_support::{ApiServer, EventStream, Influx, Next, SseEvent};

const DB: &str = "energy";
/// A reading must be on the stream this soon after it was written: one poll (1 s), the query
/// cache (1 s) and slack for a busy 2-core machine.
const DELIVERY: Duration = Duration::from_secs(5);

fn write(influx: &Influx, panel: &str, power_kw: f64, energy_kwh: f64, time: DateTime<Utc>) {
    influx.write(
        DB,
        &format!(
            "energy_data,panel={panel} power_kw={power_kw},energy_kwh={energy_kwh} {}\n",
            time.timestamp_nanos_opt().unwrap()
        ),
    );
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Now, to whole seconds, so that `last_seen` is predictable.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

fn open(api: &ApiServer, headers: &[(&str, &str)]) -> EventStream {
    let stream = EventStream::open(&api.url("/api/panel/stream"), headers);
    assert_eq!(stream.status(), 200, "{}", stream.body());
    stream
}

/// The `panel` events up to the next `sync`, and the `sync` event's body.
fn full_state(stream: &EventStream) -> (Vec<Value>, Value) {
    let mut panels = Vec::new();
    loop {
        let event = stream.next_event(DELIVERY);
        match event.event.as_str() {
            "panel" => panels.push(event.json()),
            "sync" => return (panels, event.json()),
            other => panic!("unexpected {other} event before sync: {}", event.data),
        }
    }
}

/// `panel` with `seconds_since_last_seen` taken out (it ticks on between two answers).
fn without_age(panel: &Value) -> Value {
    let mut panel = panel.clone();
    panel
        .as_object_mut()
        .unwrap()
        .remove("seconds_since_last_seen")
        .expect("seconds_since_last_seen");
    panel
}

fn is_panel(id: &str) -> impl Fn(&SseEvent) -> bool + '_ {
    move |event| event.event == "panel" && event.json()["panel"] == id
}

#[test]
fn the_stream_starts_with_the_realtime_state_and_sends_a_new_reading_within_seconds() {
    let influx = Influx::start();
    influx.create_database(DB);
    let t0 = now();
    write(&influx, "A", 1.5, 10.25, t0 - chrono::Duration::seconds(10));
    write(&influx, "B", 2.0, 20.0, t0 - chrono::Duration::hours(1));
    let api = ApiServer::start(&influx.url(), DB, &[]);

    let realtime = api.ok("/api/panel/realtime");
    let stream = open(&api, &[]);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(stream.headers()["cache-control"], "no-store");

    let (panels, sync) = full_state(&stream);
    let expected = realtime["panels"].as_array().unwrap();
    assert_eq!(
        panels.iter().map(without_age).collect::<Vec<_>>(),
        expected.iter().map(without_age).collect::<Vec<_>>(),
        "the first events are the state /api/panel/realtime reports"
    );
    for (streamed, answered) in panels.iter().zip(expected) {
        let (s, a) = (
            streamed["seconds_since_last_seen"].as_i64().unwrap(),
            answered["seconds_since_last_seen"].as_i64().unwrap(),
        );
        assert!(
            (s - a).abs() <= 3,
            "ages {s} and {a} differ by more than 3 s"
        );
    }
    assert_eq!(panels[0]["status"], "ONLINE");
    assert_eq!(panels[1]["status"], "OFFLINE");
    assert_eq!(sync["panels"], json!(["A", "B"]));
    assert_eq!(sync["offline_after_secs"], 300);

    let t1 = now();
    write(&influx, "A", 3.25, 10.5, t1);
    let written = Instant::now();
    let event = stream.next_event(DELIVERY);
    let latency = written.elapsed();
    assert_eq!(event.event, "panel", "only A changed: {}", event.data);
    let a = event.json();
    assert_eq!(
        without_age(&a),
        json!({"panel": "A", "kind": "panel", "status": "ONLINE", "power_kw": 3.25, "energy_kwh": 10.5,
               "last_seen": rfc3339(t1)})
    );
    assert!(latency < DELIVERY, "{latency:?}");

    // A new panel appears without reconnecting.
    write(&influx, "C", 0.5, 1.0, now());
    let c = stream
        .wait_for(DELIVERY, "the new panel C", is_panel("C"))
        .json();
    assert_eq!(c["power_kw"], 0.5);
    assert_eq!(c["status"], "ONLINE");
}

#[test]
fn a_panel_that_stops_reporting_turns_offline_on_the_stream_by_itself() {
    let influx = Influx::start();
    influx.create_database(DB);
    write(&influx, "A", 1.0, 5.0, now());
    let api = ApiServer::start(&influx.url(), DB, &[("OFFLINE_AFTER_SECS", "2")]);
    let stream = open(&api, &[]);
    let (panels, _) = full_state(&stream);
    assert_eq!(panels[0]["status"], "ONLINE");
    let offline = stream
        .wait_for(Duration::from_secs(10), "A to turn OFFLINE", is_panel("A"))
        .json();
    assert_eq!(offline["status"], "OFFLINE");
    assert!(offline["seconds_since_last_seen"].as_i64().unwrap() > 2);
    assert_eq!(offline["energy_kwh"], 5.0, "the reading is unchanged");
}

#[test]
fn an_influxdb_outage_is_an_error_event_and_the_stream_carries_on() {
    let mut influx = Influx::start();
    influx.create_database(DB);
    write(&influx, "A", 1.0, 5.0, now());
    let api = ApiServer::start(&influx.url(), DB, &[("INFLUX_TIMEOUT_MS", "1000")]);
    let stream = open(&api, &[]);
    full_state(&stream);

    influx.stop();
    let error = stream
        .wait_for(Duration::from_secs(10), "an error event", |e| {
            e.event == "error"
        })
        .json();
    assert_eq!(error["error"]["code"], "influxdb_unavailable", "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    // Said once, not every second.
    assert_eq!(stream.next(Duration::from_secs(3)), Next::TimedOut);

    influx.restart();
    let (panels, _) = full_state(&stream);
    assert_eq!(
        panels.len(),
        1,
        "the whole state again once InfluxDB is back"
    );
    assert_eq!(panels[0]["panel"], "A");
}

#[test]
fn with_api_token_the_stream_needs_the_bearer_token() {
    let influx = Influx::start();
    influx.create_database(DB);
    write(&influx, "A", 1.0, 5.0, now());
    let api = ApiServer::start(&influx.url(), DB, &[("API_TOKEN", "tok-stream-1")]);

    for headers in [&[][..], &[("authorization", "Bearer tok-stream-2")][..]] {
        let refused = EventStream::open(&api.url("/api/panel/stream"), headers);
        assert_eq!(refused.status(), 401, "{headers:?}");
        let body: Value = serde_json::from_str(refused.body()).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let stream = open(&api, &[("authorization", "Bearer tok-stream-1")]);
    let (panels, _) = full_state(&stream);
    assert_eq!(panels[0]["panel"], "A");
}

#[test]
fn sigterm_ends_open_streams_and_the_server_exits_promptly() {
    let influx = Influx::start();
    influx.create_database(DB);
    let mut api = ApiServer::start(&influx.url(), DB, &[]);
    let streams = [open(&api, &[]), open(&api, &[])];
    for stream in &streams {
        let (panels, _) = full_state(stream);
        assert!(panels.is_empty(), "an empty database is an empty state");
    }

    let started = Instant::now();
    assert_eq!(api.program().terminate(), Some(0));
    let took = started.elapsed();
    // The shutdown grace period is 5 s: a stream left open would use all of it.
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for stream in &streams {
        assert_eq!(stream.next(Duration::from_secs(2)), Next::Ended);
    }
    let output = api.program().output();
    assert!(output.contains("stopped"), "{output}");
    assert!(!output.contains("cut off"), "{output}");
}
