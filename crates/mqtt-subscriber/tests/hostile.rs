//! Malformed and malicious MQTT messages against the real subscriber, a real Mosquitto and a
//! real InfluxDB 1.6. Each hostile message must be rejected with its reason in the log, counted
//! in the summary, and not stored; a good reading published after all of them must still be
//! stored. A few edge cases are valid on purpose and must be stored exactly as documented.
//!
//! Decisions these tests pin down:
//! - `-0.0` is a valid zero (it is not below 0); it is stored as a plain `0`.
//! - Of duplicate keys the last one wins (serde_json, like JavaScript's and Python's parsers).
//! - `1e308` is finite but absurd: values beyond ±1e12 are rejected as `out_of_range`, because
//!   InfluxDB's `mean()` of two such readings overflows to infinity and InfluxDB 1.x then cannot
//!   answer the query at all. `1e309` is not a valid JSON number for serde_json: `invalid_json`.
//! - JSON nesting stops at serde_json's 128 levels (`invalid_json`): no stack overflow.
//! - A UTF-8 byte order mark is not JSON whitespace: `invalid_json`.
//!
//! Mosquitto itself refuses some topics in a PUBLISH (see
//! `topics_the_broker_refuses_never_reach_the_subscriber`); those never reach the subscriber.

use std::collections::BTreeMap;
use std::time::Duration;

use test_support::{mqtt, now_ms, start_subscriber, wait_until, Influx, Mosquitto};

const DB: &str = "energy";

/// What must become of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Rejected, logged and counted with this reason.
    Rejected(&'static str),
    /// Valid: stored as one point of the topic's panel with this `energy_kwh`.
    Stored(f64),
}

struct Case {
    what: &'static str,
    topic: String,
    payload: Vec<u8>,
    expect: Expect,
}

/// The log lines of rejected messages, in order, as (reason, line).
fn rejections(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter(|line| line.contains("rejected message"))
        .map(|line| {
            // Fields come last; topic and sentence are escaped, so they cannot fake this one.
            let at = line.rfind(" reason=\"").expect("a reason field") + " reason=\"".len();
            let reason = line[at..].split('"').next().unwrap_or_default();
            (reason.to_owned(), line.to_owned())
        })
        .collect()
}

/// The last summary line's `rejected_by_reason`, parsed.
fn summary_reasons(output: &str) -> BTreeMap<String, u64> {
    let line = output
        .lines()
        .rfind(|line| line.contains("rejected_by_reason="))
        .expect("a summary line");
    let start = line.find("rejected_by_reason=").unwrap() + "rejected_by_reason=".len();
    let end = line[start..]
        .find(" retries=")
        .map_or(line.len(), |e| start + e);
    line[start..end]
        .split_whitespace()
        .map(|pair| {
            let (reason, n) = pair.rsplit_once('=').expect("reason=n");
            (reason.to_owned(), n.parse().expect("a count"))
        })
        .collect()
}

#[rustfmt::skip] // A table: one case per line.
fn cases() -> Vec<Case> {
    let ok_topic = |name: &str| format!("DATA/PM/{name}");
    let t = now_ms() - 60_000;
    let good = |energy: &str| {
        format!(r#"{{"power_kw": 2, "energy_kwh": {energy}, "timestamp": {t}}}"#).into_bytes()
    };
    let with_timestamp = |timestamp: &str| {
        format!(r#"{{"power_kw": 1, "energy_kwh": 1, "timestamp": {timestamp}}}"#).into_bytes()
    };
    let with_power = |power: &str| format!(r#"{{"power_kw": {power}, "energy_kwh": 1}}"#);
    let with_panel = |panel: &str| {
        format!(r#"{{"power_kw": 1, "energy_kwh": 1, "panel": {panel}}}"#).into_bytes()
    };
    let padded_to = |size: usize| {
        let head = br#"{"power_kw": 1, "energy_kwh": 4096, "pad": ""#;
        let mut payload = head.to_vec();
        payload.resize(size - 2, b'x');
        payload.extend_from_slice(b"\"}");
        payload
    };
    let rejected = |what, topic: String, payload: Vec<u8>, reason| Case {
        what,
        topic,
        payload,
        expect: Expect::Rejected(reason),
    };
    let p = || ok_topic("P1");
    let future_ms = now_ms() + 6 * 60_000;
    let mut cases = vec![
        // The payload's encoding.
        rejected("invalid UTF-8 byte", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1, \"x\": \"\xff\"}".to_vec(), "invalid_utf8"),
        rejected("overlong UTF-8 for '/'", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1, \"x\": \"\xc0\xaf\"}".to_vec(), "invalid_utf8"),
        rejected("UTF-16 surrogate encoded in UTF-8", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1, \"x\": \"\xed\xa0\x80\"}".to_vec(), "invalid_utf8"),
        rejected("truncated UTF-8 sequence", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1, \"x\": \"\xe2\x82\"}".to_vec(), "invalid_utf8"),
        rejected("UTF-8 byte order mark first", p(), [b"\xef\xbb\xbf".as_slice(), &good("1")].concat(), "invalid_json"),
        rejected("NUL byte after the object", p(), [good("1").as_slice(), b"\0"].concat(), "invalid_json"),
        rejected("raw control character in a string", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1, \"x\": \"\x1b[2J\"}".to_vec(), "invalid_json"),
        rejected("raw newline in a string", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1, \"x\": \"a\nb\"}".to_vec(), "invalid_json"),
        // Size and shape.
        rejected("10 000 levels of '['", p(), vec![b'['; 10_000], "payload_too_large"),
        rejected("4 000 levels of '[' (within 4 KiB)", p(), vec![b'['; 4000], "invalid_json"),
        rejected("129 levels inside the object", p(), format!(r#"{{"power_kw": 1, "energy_kwh": 1, "x": {}{}}}"#, "[".repeat(129), "]".repeat(129)).into_bytes(), "invalid_json"),
        rejected("4097 bytes", p(), padded_to(4097), "payload_too_large"),
        rejected("64 KiB", p(), padded_to(65_536), "payload_too_large"),
        rejected("trailing garbage", p(), [good("1").as_slice(), b" x"].concat(), "invalid_json"),
        rejected("two objects", p(), [good("1"), good("2")].concat(), "invalid_json"),
        rejected("a comment", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1} // x".to_vec(), "invalid_json"),
        rejected("single quotes", p(), b"{'power_kw': 1, 'energy_kwh': 1}".to_vec(), "invalid_json"),
        rejected("trailing comma", p(), b"{\"power_kw\": 1, \"energy_kwh\": 1,}".to_vec(), "invalid_json"),
        rejected("only whitespace", p(), b" \n\t ".to_vec(), "invalid_json"),
        rejected("a JSON string", p(), b"\"{\\\"power_kw\\\": 1, \\\"energy_kwh\\\": 1}\"".to_vec(), "not_an_object"),
        rejected("a JSON array", p(), b"[{\"power_kw\": 1, \"energy_kwh\": 1}]".to_vec(), "not_an_object"),
        rejected("a JSON number", p(), b"1043.25".to_vec(), "not_an_object"),
        rejected("JSON null", p(), b"null".to_vec(), "not_an_object"),
        rejected("JSON true", p(), b"true".to_vec(), "not_an_object"),
        rejected("an empty object", p(), b"{}".to_vec(), "missing_field"),
        rejected("an empty payload", p(), vec![], "empty_payload"),
        // Numbers.
        rejected("power as a string", p(), with_power("\"12.5\"").into_bytes(), "not_a_number"),
        rejected("energy as a string", p(), br#"{"power_kw": 1, "energy_kwh": "1043.25"}"#.to_vec(), "not_a_number"),
        rejected("\"NaN\" as a string", p(), with_power("\"NaN\"").into_bytes(), "not_a_number"),
        rejected("power a boolean", p(), with_power("true").into_bytes(), "not_a_number"),
        rejected("power an array", p(), with_power("[1]").into_bytes(), "not_a_number"),
        rejected("power an object", p(), with_power(r#"{"value": 1}"#).into_bytes(), "not_a_number"),
        rejected("NaN literal", p(), with_power("NaN").into_bytes(), "invalid_json"),
        rejected("Infinity literal", p(), with_power("Infinity").into_bytes(), "invalid_json"),
        rejected("-Infinity literal", p(), with_power("-Infinity").into_bytes(), "invalid_json"),
        rejected("1e309", p(), with_power("1e309").into_bytes(), "invalid_json"),
        rejected("-1e309", p(), with_power("-1e309").into_bytes(), "invalid_json"),
        rejected("1e308 (finite, absurd)", p(), with_power("1e308").into_bytes(), "out_of_range"),
        rejected("energy 1e13", p(), good("1e13"), "out_of_range"),
        rejected("hexadecimal 0x10", p(), with_power("0x10").into_bytes(), "invalid_json"),
        rejected("leading zero 012", p(), with_power("012").into_bytes(), "invalid_json"),
        rejected("leading plus +1", p(), with_power("+1").into_bytes(), "invalid_json"),
        rejected("negative energy", p(), good("-0.001"), "negative_energy"),
        rejected("tiny negative energy -1e-300", p(), good("-1e-300"), "negative_energy"),
        rejected("duplicate key, the last negative", p(), br#"{"power_kw": 1, "energy_kwh": 7, "energy_kwh": -5}"#.to_vec(), "negative_energy"),
        // Timestamps.
        rejected("year 9999", p(), with_timestamp("\"9999-12-31T23:59:59Z\""), "future_timestamp"),
        rejected("year 9999 in epoch ms", p(), with_timestamp("253402300799999"), "future_timestamp"),
        rejected("6 minutes ahead", p(), with_timestamp(&future_ms.to_string()), "future_timestamp"),
        rejected("one second before 1970", p(), with_timestamp("\"1969-12-31T23:59:59Z\""), "bad_timestamp"),
        rejected("-1 ms", p(), with_timestamp("-1"), "bad_timestamp"),
        rejected("epoch ms with a fraction", p(), with_timestamp("1795748400000.5"), "bad_timestamp"),
        rejected("epoch ms in exponent notation", p(), with_timestamp("1.7e12"), "bad_timestamp"),
        rejected("integer beyond u64", p(), with_timestamp("99999999999999999999"), "bad_timestamp"),
        rejected("i64::MAX ms", p(), with_timestamp(&i64::MAX.to_string()), "bad_timestamp"),
        rejected("timestamp a boolean", p(), with_timestamp("true"), "bad_timestamp"),
        rejected("timestamp null", p(), with_timestamp("null"), "bad_timestamp"),
        rejected("no UTC offset", p(), with_timestamp("\"2026-01-01T00:00:00\""), "bad_timestamp"),
        rejected("epoch ms as a string", p(), with_timestamp("\"1795748400000\""), "bad_timestamp"),
        rejected("year 10000", p(), with_timestamp("\"+10000-01-01T00:00:00Z\""), "bad_timestamp"),
        rejected("log forgery in a timestamp", p(), with_timestamp(r#""\u001b[2J\nWARN forged reason=\"stored\"""#), "bad_timestamp"),
        // The payload's panel field.
        rejected("panel field differs", p(), with_panel("\"P2\""), "panel_mismatch"),
        rejected("panel field differs in case", p(), with_panel("\"p1\""), "panel_mismatch"),
        rejected("panel field a number", p(), with_panel("1"), "panel_mismatch"),
        rejected("panel field null", p(), with_panel("null"), "panel_mismatch"),
        rejected("log forgery in the panel field", p(), with_panel(r#""P1\nWARN forged reason=\"stored\"""#), "panel_mismatch"),
        rejected("InfluxQL injection in the panel field", p(), with_panel(r#""x'; DROP DATABASE energy; --""#), "panel_mismatch"),
        // Topics.
        rejected("space in the panel", ok_topic("PANEL 1"), good("1"), "bad_panel_id"),
        rejected("comma in the panel", ok_topic("PANEL,1"), good("1"), "bad_panel_id"),
        rejected("'=' in the panel", ok_topic("panel=x"), good("1"), "bad_panel_id"),
        rejected("double quote in the panel", ok_topic("P\"1"), good("1"), "bad_panel_id"),
        rejected("InfluxQL injection in the panel", ok_topic("x'; DROP DATABASE energy; --"), good("1"), "bad_panel_id"),
        rejected("line-protocol injection in the panel", ok_topic("x power_kw=9,energy_kwh=9 1"), good("1"), "bad_panel_id"),
        rejected("backslash in the panel", ok_topic("P\\1"), good("1"), "bad_panel_id"),
        rejected("trailing backslash in the panel", ok_topic("P1\\"), good("1"), "bad_panel_id"),
        rejected("semicolon in the panel", ok_topic("P;1"), good("1"), "bad_panel_id"),
        rejected("non-ASCII letter", ok_topic("PANEL_É"), good("1"), "bad_panel_id"),
        rejected("zero-width space", ok_topic("PANEL\u{200b}1"), good("1"), "bad_panel_id"),
        rejected("fullwidth digit", ok_topic("PANEL_１"), good("1"), "bad_panel_id"),
        rejected("'$' in the panel", ok_topic("$SYS"), good("1"), "bad_panel_id"),
        rejected("65-character panel", ok_topic(&"A".repeat(65)), good("1"), "bad_panel_id"),
        rejected("10 000-character panel", ok_topic(&"A".repeat(10_000)), good("1"), "bad_panel_id"),
        rejected("log forgery in the topic", ok_topic("x reason=\"stored\""), good("1"), "bad_panel_id"),
        rejected("an extra level", ok_topic("P1/extra"), good("1"), "extra_topic_levels"),
        rejected("an empty level before the panel", ok_topic("/P1"), good("1"), "extra_topic_levels"),
        rejected("a trailing slash", ok_topic("P1/"), good("1"), "extra_topic_levels"),
        rejected("the prefix alone", "DATA/PM".to_owned(), good("1"), "missing_panel"),
        rejected("an empty panel level", ok_topic(""), good("1"), "missing_panel"),
    ];
    // Valid on purpose: each on a panel of its own, so what is stored can be checked.
    let stored = |what, panel: &str, payload: Vec<u8>, energy| Case {
        what,
        topic: ok_topic(panel),
        payload,
        expect: Expect::Stored(energy),
    };
    cases.extend([
        stored("-0.0 energy is a zero", "NEG_ZERO", good("-0.0"), 0.0),
        stored("duplicate key: the last wins", "DUP_KEYS", format!(r#"{{"power_kw": 1, "energy_kwh": -5, "energy_kwh": 7, "timestamp": {t}}}"#).into_bytes(), 7.0),
        stored("the magnitude limit itself", "LIMIT", format!(r#"{{"power_kw": -1e12, "energy_kwh": 1e12, "timestamp": {t}}}"#).into_bytes(), 1e12),
        stored("exactly 4096 bytes", "SIZE_4096", padded_to(4096), 4096.0),
        stored("escaped key name", "KEY_ESCAPE", format!(r#"{{"power_kw": 1, "energy\u005fkwh": 3, "timestamp": {t}}}"#).into_bytes(), 3.0),
        stored("1e-400 underflows to zero", "UNDERFLOW", good("1e-400"), 0.0),
        stored("whitespace around the object", "WHITESPACE", [b"\n\t ".as_slice(), &good("5"), b"\r\n"].concat(), 5.0),
        stored("epoch 0 (1970-01-01)", "EPOCH_ZERO", br#"{"power_kw": 1, "energy_kwh": 6, "timestamp": 0}"#.to_vec(), 6.0),
        stored("127 levels in an unknown field", "NESTED_127", format!(r#"{{"power_kw": 1, "energy_kwh": 8, "x": {}{}}}"#, "[".repeat(126), "]".repeat(126)).into_bytes(), 8.0),
    ]);
    assert_eq!(padded_to(4096).len(), 4096);
    cases
}

#[test]
fn hostile_messages_are_rejected_counted_and_not_stored_and_ingest_goes_on() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let subscriber = start_subscriber(&broker, &influx, "hostile-test", &[]);
    let cases = cases();
    for case in &cases {
        broker.publish(&case.topic, &case.payload, 1);
    }
    let last = now_ms();
    publish_good_reading(&broker, last);

    let expected_stored = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Stored(_)))
        .count()
        + 1;
    wait_until(
        Duration::from_secs(20),
        "the good reading after the hostile ones",
        || {
            influx
                .readings_by_panel(DB)
                .get("P1")
                .is_some_and(|points| points.iter().any(|p| p.2 == 42.5))
        },
    );
    // The good reading is the last message: everything before it has been handled.
    let points = influx.readings_by_panel(DB);
    assert_eq!(
        points.values().map(Vec::len).sum::<usize>(),
        expected_stored,
        "{points:?}"
    );
    assert_eq!(influx.count_points(DB) as usize, expected_stored);
    assert_eq!(points["P1"], vec![(last, 2.0, 42.5)]);
    for case in &cases {
        if let Expect::Stored(energy) = case.expect {
            let panel = case.topic.strip_prefix("DATA/PM/").unwrap();
            let got = points
                .get(panel)
                .unwrap_or_else(|| panic!("{}: not stored", case.what));
            assert_eq!(got.len(), 1, "{}", case.what);
            assert_eq!(got[0].2, energy, "{}", case.what);
            assert!(
                got[0].2.is_sign_positive(),
                "{}: stored {}",
                case.what,
                got[0].2
            );
        }
    }
    assert_eq!(points["EPOCH_ZERO"][0].0, 0);
    assert_eq!(points["LIMIT"][0].1, -1e12);

    // One log line per rejection, in publishing order, each naming its reason.
    let output = subscriber.output();
    let expected: Vec<(&str, &str)> = cases
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Rejected(reason) => Some((c.what, reason)),
            Expect::Stored(_) => None,
        })
        .collect();
    let logged = rejections(&output);
    assert_eq!(logged.len(), expected.len(), "{logged:#?}");
    for ((what, reason), (logged_reason, line)) in expected.iter().zip(&logged) {
        assert_eq!(logged_reason, reason, "{what}: {line}");
        // The topic is quoted, shortened to 200 characters: hostile text cannot flood the log.
        assert!(line.len() < 1200, "{what}: a {} byte log line", line.len());
    }
    // Nothing hostile forged a line or reached the terminal raw.
    assert!(
        !output.lines().any(|l| l.starts_with("WARN forged")),
        "{output}"
    );
    assert!(
        !output.contains('\u{1b}'),
        "a raw escape character reached the log"
    );
    assert!(!output.contains("panicked"), "{output}");

    // The summary counts each rejection by its reason.
    let total = expected.len();
    wait_until(
        Duration::from_secs(10),
        "a summary counting every rejection",
        || subscriber.output().contains(&format!("rejected={total} ")),
    );
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for (_, reason) in &expected {
        *by_reason.entry((*reason).to_owned()).or_default() += 1;
    }
    let output = subscriber.output();
    assert_eq!(summary_reasons(&output), by_reason, "{output}");
    assert!(
        output.contains(&format!("received={} ", cases.len() + 1)),
        "{output}"
    );
    eprintln!("{:<45} outcome", "case");
    for case in &cases {
        eprintln!("{:<45} {:?}", case.what, case.expect);
    }
}

/// A PUBLISH topic the broker may refuse, and whether MQTT 3.1.1 says it must.
struct BrokerCase {
    what: &'static str,
    topic: &'static [u8],
    must_refuse: bool,
}

#[test]
fn topics_the_broker_refuses_never_reach_the_subscriber() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let subscriber = start_subscriber(&broker, &influx, "broker-refuses-test", &[]);
    let payload = format!(
        r#"{{"power_kw": 1, "energy_kwh": 1, "timestamp": {}}}"#,
        now_ms()
    );
    let refuse = |what: &'static str, topic: &'static [u8], must_refuse: bool| BrokerCase {
        what,
        topic,
        must_refuse,
    };
    // MQTT 3.1.1 §4.7.1 and §1.5.3: a PUBLISH topic has no wildcards, is non-empty, valid UTF-8
    // without U+0000 and without surrogates; the broker must close the connection otherwise.
    // Control characters and non-characters are only "SHOULD NOT"; Mosquitto 2 refuses them too.
    let cases = [
        refuse("'+' wildcard", b"DATA/PM/+", true),
        refuse("'#' wildcard", b"DATA/PM/#", true),
        refuse("'+' wildcard mid-topic", b"DATA/+/P1", true),
        refuse("'+' inside a level", b"DATA/PM/P+1", true),
        refuse("empty topic", b"", true),
        refuse("NUL", b"DATA/PM/P1\0x", true),
        refuse("invalid UTF-8", b"DATA/PM/\xff", true),
        refuse("overlong UTF-8", b"DATA/PM/\xc0\xaf", true),
        refuse("UTF-16 surrogate", b"DATA/PM/\xed\xa0\x80", true),
        refuse("newline", b"DATA/PM/P1\nQ", false),
        refuse("carriage return", b"DATA/PM/P1\r", false),
        refuse("tab", b"DATA/PM/P\t1", false),
        refuse("escape (ANSI)", b"DATA/PM/\x1b[31mP1", false),
        refuse("DEL", b"DATA/PM/P1\x7f", false),
        refuse("C1 control U+0085", b"DATA/PM/P1\xc2\x85", false),
        refuse("non-character U+FFFF", b"DATA/PM/P1\xef\xbf\xbf", false),
    ];
    let mut accepted = 0;
    let mut table = Vec::new();
    for case in &cases {
        let refused = mqtt::publish(broker.port, case.topic, payload.as_bytes(), 1, false).is_err();
        if case.must_refuse {
            assert!(refused, "the broker accepted a PUBLISH with {}", case.what);
        }
        if !refused {
            accepted += 1;
        }
        table.push((case.what, refused));
    }
    publish_good_reading(&broker, now_ms());
    wait_until(
        Duration::from_secs(20),
        "a good reading after the refused ones",
        || influx.count_points(DB) == 1,
    );
    // Whatever the broker let through was rejected by the subscriber, not stored.
    if accepted > 0 {
        wait_until(
            Duration::from_secs(10),
            "the accepted ones rejected",
            || {
                subscriber
                    .output()
                    .contains(&format!("rejected={accepted} "))
            },
        );
    }
    assert_eq!(rejections(&subscriber.output()).len(), accepted);
    assert!(!subscriber.output().contains("panicked"));
    assert!(
        !subscriber.output().contains("reconnect"),
        "{}",
        subscriber.output()
    );
    eprintln!("{:<30} broker", "topic");
    for (what, refused) in table {
        eprintln!(
            "{what:<30} {}",
            if refused { "refused" } else { "accepted" }
        );
    }
}

/// The good reading published after the hostile ones: P1, 42.5 kWh.
fn publish_good_reading(broker: &Mosquitto, time_ms: i64) {
    broker.publish(
        "DATA/PM/P1",
        format!(r#"{{"power_kw": 2, "energy_kwh": 42.5, "timestamp": {time_ms}}}"#).as_bytes(),
        1,
    );
}

/// A payload larger than the subscriber's MQTT packet limit (`MAX_PACKET_BYTES`, 260 KiB).
fn oversized_payload() -> Vec<u8> {
    vec![b'x'; 300 * 1024]
}

#[test]
fn a_broker_with_the_shipped_size_limit_drops_an_oversized_message_and_ingest_goes_on() {
    // As docker/mosquitto.conf: the broker drops the message, so it never reaches a client.
    let broker = Mosquitto::start_with("message_size_limit 65536");
    let influx = Influx::start();
    let subscriber = start_subscriber(&broker, &influx, "oversize-limited-test", &[]);
    let _ = mqtt::publish(broker.port, b"DATA/PM/P1", &oversized_payload(), 1, false);
    publish_good_reading(&broker, now_ms());
    wait_until(Duration::from_secs(20), "the good reading", || {
        influx.count_points(DB) == 1
    });
    let output = subscriber.output();
    assert!(!output.contains("connection lost"), "{output}");
}

/// Without a broker-side size limit, a QoS 1 message larger than the client's packet limit
/// used to wedge the subscriber: rumqttc refused the packet, dropped the connection,
/// reconnected on the persistent session, and the broker sent the same message again, every
/// second, forever, while every later message waited behind it. The subscriber now accepts
/// packets up to MQTT's own maximum and rejects the message as `payload_too_large`.
#[test]
fn a_message_larger_than_the_mqtt_packet_limit_does_not_stop_ingest() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let subscriber = start_subscriber(&broker, &influx, "oversize-test", &[]);
    broker.publish("DATA/PM/P1", &oversized_payload(), 1);
    publish_good_reading(&broker, now_ms());
    wait_until(Duration::from_secs(20), "the good reading", || {
        influx.count_points(DB) == 1
    });
    let output = subscriber.output();
    assert!(output.contains("reason=\"payload_too_large\""), "{output}");
    assert!(!output.contains("connection lost"), "{output}");
}
