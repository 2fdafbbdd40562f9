//! InfluxQL quoting, the one place it is done. Every value that reaches a statement goes through
//! [`string_literal`], [`identifier`] or [`time_literal`].

use chrono::{DateTime, SecondsFormat, Utc};

/// A single-quoted InfluxQL string literal (a tag value).
pub fn string_literal(value: &str) -> String {
    quoted(value, '\'')
}

/// A double-quoted InfluxQL identifier (a database name).
pub fn identifier(name: &str) -> String {
    quoted(name, '"')
}

/// Wraps `value` in `quote`, escaping backslashes, the quote itself and newlines, so nothing in
/// `value` can end the literal early and change the statement.
fn quoted(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push(quote);
    for c in value.chars() {
        if c == '\\' || c == quote {
            out.push('\\');
            out.push(c);
        } else if c == '\n' {
            out.push_str("\\n");
        } else {
            out.push(c);
        }
    }
    out.push(quote);
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
        assert_eq!(
            string_literal(r"a\'; DROP DATABASE x"),
            r"'a\\\'; DROP DATABASE x'"
        );
    }

    #[test]
    fn identifiers_cannot_end_early() {
        assert_eq!(identifier("energy"), "\"energy\"");
        assert_eq!(identifier("a\"; DROP"), "\"a\\\"; DROP\"");
    }

    #[test]
    fn times_are_rfc3339_utc_with_nanoseconds() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 17, 0, 0).unwrap();
        assert_eq!(time_literal(t), "'2026-11-26T17:00:00.000000000Z'");
    }
}
