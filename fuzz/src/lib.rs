//! What the `parse_message` fuzz target checks, in one place: the fuzz target runs it on
//! generated inputs, and `crates/core/tests/fuzz_corpus.rs` replays the saved corpus through it
//! as an ordinary test (it includes this file with `#[path]`, so it may only use `std` and
//! `energy_core`).
//!
//! An input is one MQTT message: its first byte is the topic's length `n`, the next `n` bytes
//! (fewer if the input is shorter) are the topic, the rest is the payload. A topic that is not
//! UTF-8 is skipped: the broker refuses such a PUBLISH, and the MQTT client the subscriber uses
//! would not hand it over.

use chrono::{DateTime, TimeZone, Utc};
use energy_core::panel::MAX_PANEL_ID_LEN;
use energy_core::reading::{parse_message, MAX_FUTURE_SKEW, MAX_MAGNITUDE};
use energy_core::{line_protocol, Reading, Rejection};

/// The subscriber's default topic prefix.
pub const PREFIX: &str = "DATA/PM";

/// The fixed "now" every input is validated against, so a run is reproducible.
pub fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0)
        .single()
        .expect("a valid instant")
}

/// Splits an input into topic bytes and payload: first byte = topic length.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&len, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(len).min(rest.len()))
}

/// Builds an input from a topic and a payload (the inverse of [`split`], for seeds).
pub fn join(topic: &str, payload: &[u8]) -> Vec<u8> {
    let len = u8::try_from(topic.len()).expect("a seed topic is at most 255 bytes");
    let mut data = vec![len];
    data.extend_from_slice(topic.as_bytes());
    data.extend_from_slice(payload);
    data
}

/// What became of one input.
#[derive(Debug)]
pub enum Outcome {
    /// The topic is not UTF-8, so the message can never reach the validator.
    Skipped,
    Accepted(Reading),
    Rejected(Rejection),
}

/// Validates one input and checks every invariant, panicking when one does not hold:
/// an accepted reading is within the contract's limits and encodes as exactly one line that
/// ends in `'\n'`; a rejection has a label and a log sentence of bounded length.
pub fn check(data: &[u8]) -> Outcome {
    let (topic, payload) = split(data);
    let Ok(topic) = std::str::from_utf8(topic) else {
        return Outcome::Skipped;
    };
    let now = received_at();
    match parse_message(PREFIX, topic, payload, now) {
        Ok(reading) => {
            check_reading(&reading, now);
            Outcome::Accepted(reading)
        }
        Err(rejection) => {
            assert!(!rejection.reason().is_empty());
            // Hostile input must not flood the log: the sentence quotes little of it.
            let sentence = rejection.to_string();
            assert!(
                sentence.len() < 1024,
                "{} bytes: {sentence}",
                sentence.len()
            );
            Outcome::Rejected(rejection)
        }
    }
}

fn check_reading(reading: &Reading, now: DateTime<Utc>) {
    let panel = reading.panel.as_str();
    assert!(
        !panel.is_empty() && panel.len() <= MAX_PANEL_ID_LEN,
        "{panel:?}"
    );
    assert!(
        panel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        "{panel:?}"
    );
    for value in [reading.power_kw, reading.energy_kwh] {
        assert!(value.is_finite() && value.abs() <= MAX_MAGNITUDE, "{value}");
    }
    assert!(reading.energy_kwh >= 0.0 && reading.energy_kwh.is_sign_positive());
    assert!(reading.time.timestamp() >= 0, "{}", reading.time);
    assert!(reading.time <= now + MAX_FUTURE_SKEW, "{}", reading.time);
    assert!(
        reading.time.timestamp_nanos_opt().is_some(),
        "{}",
        reading.time
    );

    let mut line = String::new();
    line_protocol::encode(reading, &mut line);
    assert!(line.ends_with('\n'), "{line:?}");
    assert_eq!(line.matches('\n').count(), 1, "{line:?}");
    assert!(!line.contains('\r'), "{line:?}");
    // measurement,tag=value fields timestamp: with a valid panel id nothing needs escaping,
    // so the line has exactly two spaces.
    let parts: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    assert_eq!(
        parts[0],
        format!("{},panel={panel}", energy_core::MEASUREMENT)
    );
    let nanos = reading.time.timestamp_nanos_opt().unwrap_or_default();
    assert_eq!(parts[2], nanos.to_string(), "{line:?}");
    let fields: Vec<&str> = parts[1].split(',').collect();
    assert_eq!(fields.len(), 2, "{line:?}");
    for (field, name, value) in [
        (fields[0], "power_kw=", reading.power_kw),
        (fields[1], "energy_kwh=", reading.energy_kwh),
    ] {
        let text = field
            .strip_prefix(name)
            .unwrap_or_else(|| panic!("{line:?}"));
        // A float without exponent or `i` suffix: line protocol reads it as the same float.
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-'),
            "{line:?}"
        );
        assert_eq!(text.parse::<f64>().ok(), Some(value), "{line:?}");
    }
}
