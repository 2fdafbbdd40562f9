//! InfluxQL quoting, the one place it is done. Every value that reaches a query goes through
//! [`string_literal`] or [`time_literal`]; identifiers are constants of ours.

use chrono::{DateTime, SecondsFormat, Utc};

/// A single-quoted InfluxQL string literal, with `\` and `'` escaped.
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' | '\'' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A time literal: RFC 3339 UTC with nanoseconds, quoted.
pub fn time_literal(time: DateTime<Utc>) -> String {
    format!("'{}'", time.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quotes_cannot_end_the_literal_early() {
        assert_eq!(string_literal("a'b"), r"'a\'b'");
        assert_eq!(string_literal(r"a\'; DROP DATABASE x"), r"'a\\\'; DROP DATABASE x'");
    }

    #[test]
    fn times_are_rfc3339_utc_with_nanoseconds() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 17, 0, 0).unwrap();
        assert_eq!(time_literal(t), "'2026-11-26T17:00:00.000000000Z'");
    }
}
