//! The MQTT message of one reading (README, "MQTT messages").

use chrono::SecondsFormat;
use energy_core::Reading;
use serde::Serialize;

/// The JSON payload: `{"power_kw": …, "energy_kwh": …, "timestamp": "…Z"}`.
///
/// Values are rounded for readability only: 3 decimals of kW is a watt, 6 decimals of kWh a
/// milliwatt-hour, finer than any real meter reports. Rounding never makes the register go
/// back, because it maps a rising sequence to a rising (or equal) one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub power_kw: f64,
    pub energy_kwh: f64,
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T03:00:00.000Z`.
    pub timestamp: String,
}

impl Message {
    pub fn from_reading(reading: &Reading) -> Self {
        Self {
            power_kw: round(reading.power_kw, 1e3),
            energy_kwh: round(reading.energy_kwh, 1e6),
            timestamp: reading.time.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of two floats and a string always serializes")
    }
}

fn round(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use energy_core::PanelId;

    fn reading() -> Reading {
        Reading {
            panel: PanelId::parse("PANEL_LANTAI_1").unwrap(),
            power_kw: 12.345_678_9,
            energy_kwh: 1_043.250_000_4,
            time: Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap()
                + chrono::Duration::microseconds(123_456),
        }
    }

    #[test]
    fn the_payload_is_the_contract_object_with_rounded_values() {
        let payload = Message::from_reading(&reading()).to_payload();
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            r#"{"power_kw":12.346,"energy_kwh":1043.25,"timestamp":"2026-11-27T03:00:00.123Z"}"#
        );
    }

    #[test]
    fn the_subscriber_accepts_what_the_publisher_sends() {
        let reading = reading();
        let payload = Message::from_reading(&reading).to_payload();
        let parsed = energy_core::reading::parse_message(
            "DATA/PM",
            "DATA/PM/PANEL_LANTAI_1",
            &payload,
            reading.time,
        )
        .unwrap();
        assert_eq!(parsed.panel, reading.panel);
        assert_eq!(parsed.power_kw, 12.346);
        assert_eq!(parsed.energy_kwh, 1_043.25);
        assert_eq!(
            parsed.time.timestamp_millis(),
            reading.time.timestamp_millis()
        );
    }
}
