//! Readings and the validation of MQTT messages into them (README, "MQTT messages").

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::panel::{PanelId, PanelIdError};

/// Largest accepted payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// How far in the future a reading's timestamp may be (clock skew between meter and server).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// Largest magnitude accepted for `power_kw` and `energy_kwh`: 10^12 kW is a terawatt, far
/// beyond any panel. A finite but absurd value is not harmless: InfluxDB sums a day's
/// `power_kw` for `mean()`, two readings of 1e308 overflow that sum to infinity, and InfluxDB
/// 1.x then cannot serialise its answer at all ("json: unsupported value: +Inf") — one message
/// would break the summary of every panel.
pub const MAX_MAGNITUDE: f64 = 1e12;

/// One meter reading, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub panel: PanelId,
    pub power_kw: f64,
    pub energy_kwh: f64,
    pub time: DateTime<Utc>,
}

/// Why a message was rejected. [`Rejection::reason`] is a stable label for counters;
/// `Display` is the sentence that goes into the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("topic is not under the prefix {prefix:?}")]
    TopicOutsidePrefix { prefix: String },
    #[error("topic has no panel level")]
    MissingPanel,
    #[error("topic has more than one level after the prefix")]
    ExtraTopicLevels,
    #[error("bad panel id: {0}")]
    BadPanelId(PanelIdError),
    #[error("payload is {0} bytes, more than {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge(usize),
    #[error("payload is empty")]
    EmptyPayload,
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is JSON but not an object")]
    NotAnObject,
    #[error("field {0:?} is missing")]
    MissingField(&'static str),
    #[error("field {field:?} must be a number, got {got}")]
    NotANumber {
        field: &'static str,
        got: &'static str,
    },
    #[error("field {0:?} is not a finite number")]
    NotFinite(&'static str),
    #[error("field {field:?} is {value:e}, beyond the plausible ±{MAX_MAGNITUDE:e}")]
    OutOfRange { field: &'static str, value: f64 },
    #[error("energy_kwh is negative ({0})")]
    NegativeEnergy(f64),
    #[error("timestamp is unreadable: {0}")]
    BadTimestamp(String),
    #[error("timestamp {0} is more than 5 minutes in the future")]
    FutureTimestamp(String),
    #[error("field \"panel\" is {payload:?} but the topic names {topic:?}")]
    PanelMismatch { payload: String, topic: String },
    #[error("panel {panel} would be new, but {max} panels are known already (MAX_PANELS)")]
    TooManyPanels { panel: String, max: usize },
}

impl Rejection {
    /// A short stable label, used as the counter key in the subscriber's summary.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TopicOutsidePrefix { .. } => "topic_outside_prefix",
            Rejection::MissingPanel => "missing_panel",
            Rejection::ExtraTopicLevels => "extra_topic_levels",
            Rejection::BadPanelId(_) => "bad_panel_id",
            Rejection::PayloadTooLarge(_) => "payload_too_large",
            Rejection::EmptyPayload => "empty_payload",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingField(_) => "missing_field",
            Rejection::NotANumber { .. } => "not_a_number",
            Rejection::NotFinite(_) => "not_finite",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::NegativeEnergy(_) => "negative_energy",
            Rejection::BadTimestamp(_) => "bad_timestamp",
            Rejection::FutureTimestamp(_) => "future_timestamp",
            Rejection::PanelMismatch { .. } => "panel_mismatch",
            Rejection::TooManyPanels { .. } => "too_many_panels",
        }
    }
}

/// The panel named by `topic`, which must be exactly `<prefix>/<PANEL_ID>`.
pub fn panel_from_topic(prefix: &str, topic: &str) -> Result<PanelId, Rejection> {
    let outside = || Rejection::TopicOutsidePrefix {
        prefix: prefix.to_owned(),
    };
    let rest = topic.strip_prefix(prefix).ok_or_else(outside)?;
    // `<prefix>/#` also matches `<prefix>` itself (MQTT 3.1.1 §4.7.1.2).
    if rest.is_empty() {
        return Err(Rejection::MissingPanel);
    }
    let level = rest.strip_prefix('/').ok_or_else(outside)?;
    if level.contains('/') {
        return Err(Rejection::ExtraTopicLevels);
    }
    if level.is_empty() {
        return Err(Rejection::MissingPanel);
    }
    PanelId::parse(level).map_err(Rejection::BadPanelId)
}

/// Whether `topic` is one the api-server publishes alerts to, `<prefix>/alerts/<rule>`
/// (docs/alerts.md): not a reading, and not a rejected one either (a panel's topic has one
/// level after the prefix, this one two).
pub fn is_alert_topic(prefix: &str, topic: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("/alerts/"))
        .is_some()
}

/// Validates one MQTT message into a [`Reading`]. `received_at` stamps readings that carry no
/// timestamp and is "now" for the future-timestamp check.
pub fn parse_message(
    prefix: &str,
    topic: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Reading, Rejection> {
    let panel = panel_from_topic(prefix, topic)?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::PayloadTooLarge(payload.len()));
    }
    if payload.is_empty() {
        return Err(Rejection::EmptyPayload);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Rejection::InvalidUtf8)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| Rejection::InvalidJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(Rejection::NotAnObject);
    };

    let power_kw = number_field(&object, "power_kw")?;
    let energy_kwh = number_field(&object, "energy_kwh")?;
    if energy_kwh < 0.0 {
        return Err(Rejection::NegativeEnergy(energy_kwh));
    }
    if let Some(named) = object.get("panel") {
        if named.as_str() != Some(panel.as_str()) {
            return Err(Rejection::PanelMismatch {
                payload: truncate_for_log(&named.to_string()),
                topic: panel.to_string(),
            });
        }
    }
    let time = match object.get("timestamp") {
        None => received_at,
        Some(value) => parse_timestamp(value)?,
    };
    if time > received_at + MAX_FUTURE_SKEW {
        return Err(Rejection::FutureTimestamp(time.to_rfc3339()));
    }
    Ok(Reading {
        panel,
        power_kw,
        energy_kwh,
        time,
    })
}

fn number_field(object: &Map<String, Value>, field: &'static str) -> Result<f64, Rejection> {
    let value = object.get(field).ok_or(Rejection::MissingField(field))?;
    let number = match value {
        Value::Number(n) => n.as_f64().ok_or(Rejection::NotFinite(field))?,
        other => {
            return Err(Rejection::NotANumber {
                field,
                got: json_kind(other),
            })
        }
    };
    if !number.is_finite() {
        return Err(Rejection::NotFinite(field));
    }
    if number.abs() > MAX_MAGNITUDE {
        return Err(Rejection::OutOfRange {
            field,
            value: number,
        });
    }
    // -0.0 is a valid zero (it is not below 0), but it would be written as `-0` and read back
    // and shown as `-0`: store the plain zero.
    Ok(number + 0.0)
}

/// A timestamp is an RFC 3339 string or an integer count of Unix epoch milliseconds, from
/// 1970 on (nothing older is a meter reading, and InfluxDB cannot store most of it).
fn parse_timestamp(value: &Value) -> Result<DateTime<Utc>, Rejection> {
    let time = match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Rejection::BadTimestamp(format!("{:?}: {e}", truncate_for_log(s))))?,
        Value::Number(n) => {
            let millis = n.as_i64().ok_or_else(|| {
                Rejection::BadTimestamp(format!("{n} is not an integer of epoch milliseconds"))
            })?;
            Utc.timestamp_millis_opt(millis)
                .single()
                .ok_or_else(|| Rejection::BadTimestamp(format!("{millis} ms is out of range")))?
        }
        other => {
            return Err(Rejection::BadTimestamp(format!(
                "expected a string or an integer, got {}",
                json_kind(other)
            )))
        }
    };
    if time.timestamp() < 0 {
        return Err(Rejection::BadTimestamp(format!(
            "{} is before 1970",
            time.to_rfc3339()
        )));
    }
    Ok(time)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Hostile input must not flood the log: quote at most 64 characters of it.
fn truncate_for_log(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "DATA/PM";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap()
    }

    fn parse(topic: &str, payload: &str) -> Result<Reading, Rejection> {
        parse_message(PREFIX, topic, payload.as_bytes(), now())
    }

    #[test]
    fn a_contract_message_becomes_a_reading() {
        let r = parse(
            "DATA/PM/PANEL_LANTAI_1",
            r#"{"power_kw": 12.5, "energy_kwh": 1043.25, "timestamp": "2026-11-27T03:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(r.panel.as_str(), "PANEL_LANTAI_1");
        assert_eq!(r.power_kw, 12.5);
        assert_eq!(r.energy_kwh, 1043.25);
        assert_eq!(r.time, now());
    }

    #[test]
    fn timestamp_may_be_epoch_millis_or_absent() {
        let r = parse(
            "DATA/PM/P",
            r#"{"power_kw": 1, "energy_kwh": 2, "timestamp": 1795748400123}"#,
        )
        .unwrap();
        assert_eq!(r.time.timestamp_millis(), 1_795_748_400_123);
        let r = parse("DATA/PM/P", r#"{"power_kw": 1, "energy_kwh": 2}"#).unwrap();
        assert_eq!(r.time, now());
    }

    #[test]
    fn extra_fields_are_ignored_and_a_matching_panel_field_is_fine() {
        let r = parse(
            "DATA/PM/P1",
            r#"{"power_kw": 1, "energy_kwh": 2, "voltage": 230, "panel": "P1"}"#,
        );
        assert!(r.is_ok());
    }

    #[test]
    fn every_bad_input_class_is_rejected_with_its_reason() {
        let ok = r#"{"power_kw": 1, "energy_kwh": 2}"#;
        let cases: Vec<(&str, String, &str)> = vec![
            ("OTHER/P", ok.into(), "topic_outside_prefix"),
            ("DATA/PMX/P", ok.into(), "topic_outside_prefix"),
            ("DATA/PM", ok.into(), "missing_panel"),
            ("DATA/PM/", ok.into(), "missing_panel"),
            ("DATA/PM/P/extra", ok.into(), "extra_topic_levels"),
            ("DATA/PM/a b", ok.into(), "bad_panel_id"),
            ("DATA/PM/a,b=c", ok.into(), "bad_panel_id"),
            ("DATA/PM/+", ok.into(), "bad_panel_id"),
            ("DATA/PM/P", "".into(), "empty_payload"),
            ("DATA/PM/P", "x".repeat(4097), "payload_too_large"),
            ("DATA/PM/P", "{".into(), "invalid_json"),
            (
                "DATA/PM/P",
                r#"{"power_kw": NaN, "energy_kwh": 1}"#.into(),
                "invalid_json",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1e999, "energy_kwh": 1}"#.into(),
                "invalid_json",
            ),
            ("DATA/PM/P", "[1,2]".into(), "not_an_object"),
            ("DATA/PM/P", "42".into(), "not_an_object"),
            ("DATA/PM/P", r#"{"energy_kwh": 1}"#.into(), "missing_field"),
            ("DATA/PM/P", r#"{"power_kw": 1}"#.into(), "missing_field"),
            (
                "DATA/PM/P",
                r#"{"power_kw": "1", "energy_kwh": 1}"#.into(),
                "not_a_number",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": null, "energy_kwh": 1}"#.into(),
                "not_a_number",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1, "energy_kwh": -0.5}"#.into(),
                "negative_energy",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1, "energy_kwh": 1, "timestamp": "yesterday"}"#.into(),
                "bad_timestamp",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1, "energy_kwh": 1, "timestamp": 1.5}"#.into(),
                "bad_timestamp",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1, "energy_kwh": 1, "timestamp": -1000}"#.into(),
                "bad_timestamp",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1, "energy_kwh": 1, "timestamp": "2026-11-27T03:05:01Z"}"#.into(),
                "future_timestamp",
            ),
            (
                "DATA/PM/P",
                r#"{"power_kw": 1, "energy_kwh": 1, "panel": "Q"}"#.into(),
                "panel_mismatch",
            ),
        ];
        for (topic, payload, reason) in cases {
            let err = parse(topic, &payload).expect_err(&format!("{topic} {payload:.60} accepted"));
            assert_eq!(err.reason(), reason, "{topic} {payload:.60}: {err}");
        }
        let err = parse_message(PREFIX, "DATA/PM/P", b"{\"power_kw\":\xff}", now()).unwrap_err();
        assert_eq!(err.reason(), "invalid_utf8");
    }

    #[test]
    fn absurd_magnitudes_are_out_of_range_but_the_limit_itself_is_accepted() {
        for payload in [
            r#"{"power_kw": 1e308, "energy_kwh": 1}"#,
            r#"{"power_kw": -1e13, "energy_kwh": 1}"#,
            r#"{"power_kw": 1, "energy_kwh": 1.0000001e12}"#,
            r#"{"power_kw": 1, "energy_kwh": -1e308}"#,
        ] {
            let err = parse("DATA/PM/P", payload).unwrap_err();
            assert_eq!(err.reason(), "out_of_range", "{payload}");
            assert!(err.to_string().len() < 100, "{err}");
        }
        let r = parse("DATA/PM/P", r#"{"power_kw": -1e12, "energy_kwh": 1e12}"#).unwrap();
        assert_eq!((r.power_kw, r.energy_kwh), (-1e12, 1e12));
    }

    #[test]
    fn negative_zero_is_a_zero_and_is_stored_as_plain_zero() {
        let r = parse("DATA/PM/P", r#"{"power_kw": -0.0, "energy_kwh": -0.0}"#).unwrap();
        assert_eq!(r.energy_kwh, 0.0);
        assert!(r.energy_kwh.is_sign_positive() && r.power_kw.is_sign_positive());
    }

    #[test]
    fn of_duplicate_keys_the_last_one_wins() {
        // serde_json keeps the last value, as JavaScript's and Python's parsers do, so a
        // publisher's own JSON library reads the message the way we do.
        let r = parse(
            "DATA/PM/P",
            r#"{"power_kw": 1, "energy_kwh": -5, "energy_kwh": 7}"#,
        );
        assert_eq!(r.unwrap().energy_kwh, 7.0);
        let err = parse(
            "DATA/PM/P",
            r#"{"power_kw": 1, "energy_kwh": 7, "energy_kwh": -5}"#,
        );
        assert_eq!(err.unwrap_err().reason(), "negative_energy");
    }

    #[test]
    fn deep_nesting_is_invalid_json_not_a_stack_overflow() {
        // serde_json stops at 128 levels; within 4 KiB that is reached long before the stack.
        let deep = format!(
            r#"{{"power_kw": 1, "energy_kwh": 1, "x": {}{}}}"#,
            "[".repeat(4000),
            "]".repeat(4000)
        );
        assert!(deep.len() > MAX_PAYLOAD_BYTES);
        let deep = &deep[..MAX_PAYLOAD_BYTES];
        assert_eq!(
            parse("DATA/PM/P", deep).unwrap_err().reason(),
            "invalid_json"
        );
        let nested = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
        assert_eq!(
            parse("DATA/PM/P", &nested).unwrap_err().reason(),
            "invalid_json"
        );
    }

    #[test]
    fn a_timestamp_exactly_five_minutes_ahead_is_accepted() {
        let r = parse(
            "DATA/PM/P",
            r#"{"power_kw": 1, "energy_kwh": 1, "timestamp": "2026-11-27T03:05:00Z"}"#,
        );
        assert!(r.is_ok());
    }

    #[test]
    fn hostile_text_is_truncated_in_the_reason() {
        let long = "y".repeat(3000);
        let payload = format!(r#"{{"power_kw": 1, "energy_kwh": 1, "timestamp": "{long}"}}"#);
        let err = parse("DATA/PM/P", &payload).unwrap_err();
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
    }

    #[test]
    fn the_alert_topics_are_told_apart_from_readings() {
        assert!(is_alert_topic(PREFIX, "DATA/PM/alerts/main-offline"));
        assert!(!is_alert_topic(PREFIX, "DATA/PM/alerts"));
        assert!(!is_alert_topic(PREFIX, "DATA/PM/P"));
        assert!(!is_alert_topic(PREFIX, "OTHER/alerts/x"));
    }
}
