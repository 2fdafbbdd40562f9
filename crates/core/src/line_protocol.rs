//! InfluxDB line protocol for readings, the one place it is encoded (README, "Which InfluxDB versions, and why").

use std::fmt::Write;

use crate::reading::Reading;
use crate::MEASUREMENT;

/// Appends one reading as a line (with trailing `\n`) to `out`, timestamp in nanoseconds.
///
/// Fields are always written as floats: Rust prints an `f64` without an `i` suffix, which line
/// protocol reads as a float even when it has no fraction (`5` is the float 5.0), so a field's
/// type never changes between writes.
pub fn encode(reading: &Reading, out: &mut String) {
    out.push_str(MEASUREMENT);
    out.push_str(",panel=");
    escape_tag_value(reading.panel.as_str(), out);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        " power_kw={},energy_kwh={} {}",
        reading.power_kw,
        reading.energy_kwh,
        nanos(reading)
    );
}

fn nanos(reading: &Reading) -> i64 {
    // Validation bounds timestamps to 1970..now+5min, well inside i64 nanoseconds (to 2262).
    reading.time.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Tag keys and values escape commas, equals signs and spaces with a backslash; a newline
/// cannot be escaped at all, so it is dropped (panel ids never contain one).
pub fn escape_tag_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            ',' | '=' | ' ' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => {}
            _ => out.push(c),
        }
    }
}

/// A string field value, quoted: double quotes and backslashes are escaped with a backslash;
/// a newline is kept (line protocol allows it inside a quoted string).
pub fn quote_field_string(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::PanelId;
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_reading_is_one_line_with_float_fields_and_nanoseconds() {
        let reading = Reading {
            panel: PanelId::parse("PANEL_LANTAI_1").unwrap(),
            power_kw: 12.5,
            energy_kwh: 1043.0,
            time: Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap(),
        };
        let mut line = String::new();
        encode(&reading, &mut line);
        assert_eq!(
            line,
            "energy_data,panel=PANEL_LANTAI_1 power_kw=12.5,energy_kwh=1043 1795748400000000000\n"
        );
    }

    #[test]
    fn tag_values_escape_what_line_protocol_reserves() {
        let mut out = String::new();
        escape_tag_value("a b,c=d\\e\nf", &mut out);
        assert_eq!(out, "a\\ b\\,c\\=d\\\\ef");
    }

    #[test]
    fn tiny_and_huge_floats_print_without_exponent() {
        assert_eq!(format!("{}", 1e-7_f64), "0.0000001");
        assert!(!format!("{}", 1e300_f64).contains('e'));
    }

    #[test]
    fn a_string_field_escapes_quotes_and_backslashes() {
        let mut out = String::new();
        quote_field_string(r#"say "hi" \ bye"#, &mut out);
        assert_eq!(out, r#""say \"hi\" \\ bye""#);
    }
}
