//! No panel id or value can change a statement: whatever string reaches line-protocol escaping
//! or InfluxQL quoting comes back, read by a tokenizer that follows InfluxDB's own rules, as
//! exactly one token equal to it, and the rest of the line or statement is untouched.
//!
//! Valid panel ids (`[A-Za-z0-9_.-]{1,64}`) need no escaping at all; these tests feed the
//! escaping functions everything else too, because data written by other tools can hold any
//! tag value, and safety must not rest on validation alone.

use chrono::{TimeZone, Utc};
use energy_core::{influxql, line_protocol, PanelId, Reading};
use proptest::prelude::*;

/// Strings that would change a line or a statement if they were not escaped.
const HOSTILE: &[&str] = &[
    "",
    " ",
    ",",
    "=",
    "\\",
    "\\\\",
    "\\ ",
    "\\,",
    "\\=",
    "trailing\\",
    "a b",
    "a,b=c",
    "a=b c,d",
    "panel=x",
    "x,panel=y",
    "x power_kw=1e308",
    "x power_kw=1,energy_kwh=2 0\nenergy_data,panel=evil power_kw=9,energy_kwh=9 1",
    "\n",
    "\r\n",
    "\r",
    "line\nbreak",
    "'",
    "\"",
    "\\'",
    "\\\"",
    "''",
    "x'; DROP DATABASE energy; --",
    "x\"; DROP DATABASE \"energy\"; --",
    "x\\'; DROP DATABASE energy; --",
    "x' OR '1'='1",
    "x' OR panel =~ /.*/ --",
    "/.*/",
    "# comment",
    "\t",
    "\0",
    "é🙂",
    "\u{2028}\u{2029}",
    "\u{feff}BOM",
    "\u{1b}[31mred",
    "$SYS/#",
    "+",
];

// ---------------------------------------------------------------------------------------------
// Line protocol
// ---------------------------------------------------------------------------------------------

/// One line of line protocol, as a parser reads it.
#[derive(Debug, PartialEq)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    timestamp: String,
}

/// How a parser treats a backslash.
#[derive(Clone, Copy, Debug)]
enum Escapes {
    /// The line-protocol reference: a backslash escapes the next character, so `\\` is one
    /// backslash and `\,`, `\=`, `\ ` are literal.
    Reference,
    /// InfluxDB 1.x (`models/points.go`), checked against influxd 1.6: a `,` `=` or space is a
    /// delimiter unless the byte before it is a backslash, and only `\,` `\=` `\ ` are
    /// unescaped in tags — `a\\b` is stored as `a\\b`, and `x\\` before a space makes that
    /// space part of the value (the line then fails to parse).
    InfluxV1,
}

/// Splits `text` at the first delimiter from `stops` that is not escaped; returns the raw token,
/// the delimiter found (if any) and the rest after it.
fn take_raw<'a>(
    text: &'a str,
    stops: &[char],
    escapes: Escapes,
) -> (&'a str, Option<char>, &'a str) {
    let mut previous_backslash = false;
    for (i, c) in text.char_indices() {
        if stops.contains(&c) && !previous_backslash {
            return (&text[..i], Some(c), &text[i + c.len_utf8()..]);
        }
        previous_backslash = match escapes {
            // In the reference grammar a backslash that is itself escaped escapes nothing.
            Escapes::Reference => c == '\\' && !previous_backslash,
            Escapes::InfluxV1 => c == '\\',
        };
    }
    (text, None, "")
}

/// The value of a raw key or tag value token.
fn unescape(raw: &str, escapes: Escapes) -> String {
    match escapes {
        Escapes::Reference => {
            let mut out = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                        continue;
                    }
                }
                out.push(c);
            }
            out
        }
        Escapes::InfluxV1 => raw
            .replace("\\,", ",")
            .replace("\\ ", " ")
            .replace("\\=", "="),
    }
}

/// Parses one line (with its `'\n'`) the way InfluxDB's parser splits it.
fn parse_line(line: &str, escapes: Escapes) -> Result<Point, String> {
    let body = line.strip_suffix('\n').ok_or("no trailing newline")?;
    if body.contains('\n') || body.contains('\r') {
        return Err("more than one line".into());
    }
    let (measurement, stop, mut rest) = take_raw(body, &[',', ' '], escapes);
    let mut tags = Vec::new();
    if stop == Some(',') {
        loop {
            let (key, stop, after) = take_raw(rest, &['=', ',', ' '], escapes);
            if stop != Some('=') {
                return Err(format!("tag key {key:?} without '='"));
            }
            let (value, stop, after) = take_raw(after, &[',', ' ', '='], escapes);
            match stop {
                Some('=') => return Err(format!("unescaped '=' in tag value after {value:?}")),
                None => return Err("no fields".into()),
                _ => {}
            }
            tags.push((unescape(key, escapes), unescape(value, escapes)));
            rest = after;
            if stop == Some(' ') {
                break;
            }
        }
    } else if stop != Some(' ') {
        return Err("no fields".into());
    }
    let (field_set, stop, timestamp) = take_raw(rest, &[' '], escapes);
    if stop != Some(' ') {
        return Err("no timestamp".into());
    }
    let mut fields = Vec::new();
    let mut rest = field_set;
    loop {
        let (field, stop, after) = take_raw(rest, &[','], escapes);
        let (key, eq, value) = take_raw(field, &['='], escapes);
        if eq != Some('=') || value.is_empty() {
            return Err(format!("bad field {field:?}"));
        }
        fields.push((unescape(key, escapes), value.to_owned()));
        if stop.is_none() {
            break;
        }
        rest = after;
    }
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad timestamp {timestamp:?}"));
    }
    Ok(Point {
        measurement: unescape(measurement, escapes),
        tags,
        fields,
        timestamp: timestamp.to_owned(),
    })
}

/// The line the subscriber would write for a reading whose panel tag were `value`.
fn line_with_tag(value: &str) -> String {
    let mut line = String::from("energy_data,panel=");
    line_protocol::escape_tag_value(value, &mut line);
    line.push_str(" power_kw=1.5,energy_kwh=2 1000\n");
    line
}

fn expected_point(tag: &str) -> Point {
    Point {
        measurement: "energy_data".into(),
        tags: vec![("panel".into(), tag.into())],
        fields: vec![
            ("power_kw".into(), "1.5".into()),
            ("energy_kwh".into(), "2".into()),
        ],
        timestamp: "1000".into(),
    }
}

/// A newline cannot be escaped in line protocol, so escaping drops it.
fn without_line_breaks(value: &str) -> String {
    value.replace(['\n', '\r'], "")
}

/// Every reserved character in the escaped value is escaped: preceded by an odd run of
/// backslashes; and there is no line break.
fn assert_structurally_escaped(value: &str) {
    let mut escaped = String::new();
    line_protocol::escape_tag_value(value, &mut escaped);
    assert!(!escaped.contains(['\n', '\r']), "{value:?} -> {escaped:?}");
    let mut run = 0;
    for c in escaped.chars() {
        if matches!(c, ',' | '=' | ' ') {
            assert!(
                run % 2 == 1,
                "unescaped {c:?} in {escaped:?} (from {value:?})"
            );
        }
        run = if c == '\\' { run + 1 } else { 0 };
    }
}

fn assert_tag_cannot_change_the_line(value: &str) {
    assert_structurally_escaped(value);
    let line = line_with_tag(value);
    let clean = without_line_breaks(value);
    assert_eq!(
        parse_line(&line, Escapes::Reference),
        Ok(expected_point(&clean)),
        "{value:?} -> {line:?}"
    );
    // InfluxDB 1.x: the value round-trips unless it holds a backslash, and whatever it holds,
    // the line is either our point with our fields and timestamp, or rejected as a whole.
    match parse_line(&line, Escapes::InfluxV1) {
        Ok(point) => {
            assert_eq!(point.measurement, "energy_data", "{line:?}");
            assert_eq!(point.tags.len(), 1, "{line:?}");
            assert_eq!(point.tags[0].0, "panel", "{line:?}");
            assert_eq!(point.fields, expected_point("").fields, "{line:?}");
            assert_eq!(point.timestamp, "1000", "{line:?}");
            if !clean.contains('\\') {
                assert_eq!(point.tags[0].1, clean, "{line:?}");
            }
        }
        Err(_) => assert!(
            clean.ends_with('\\'),
            "only a trailing backslash may make InfluxDB 1.x reject {line:?}"
        ),
    }
}

#[test]
fn hostile_tag_values_stay_one_tag_value() {
    for value in HOSTILE {
        assert_tag_cannot_change_the_line(value);
    }
}

#[test]
fn the_tokenizer_sees_an_unescaped_tag_value_change_the_line() {
    // The tests above mean something only if the tokenizer notices an injection.
    let raw = "energy_data,panel=x power_kw=9,energy_kwh=9 1 power_kw=1.5,energy_kwh=2 1000\n";
    assert_ne!(
        parse_line(raw, Escapes::Reference),
        Ok(expected_point("x power_kw=9,energy_kwh=9 1"))
    );
    let injected = "energy_data,panel=a,b=c power_kw=1.5,energy_kwh=2 1000\n";
    assert_eq!(
        parse_line(injected, Escapes::Reference).unwrap().tags.len(),
        2
    );
}

#[test]
fn influxdb_1x_rejects_a_value_ending_in_a_backslash_as_a_whole() {
    // Verified against influxd 1.6: `m,panel=trail\\ f=2 2` is "invalid tag format". Panel ids
    // cannot contain a backslash, so the subscriber never writes one.
    assert!(parse_line(&line_with_tag("trail\\"), Escapes::InfluxV1).is_err());
    assert!(PanelId::parse("trail\\").is_err());
}

fn reading(panel: &str, power_kw: f64, energy_kwh: f64, nanos: i64) -> Reading {
    Reading {
        panel: PanelId::parse(panel).expect("a valid panel id"),
        power_kw,
        energy_kwh,
        time: Utc.timestamp_nanos(nanos),
    }
}

fn assert_one_line_that_reads_back(reading: &Reading) {
    let mut line = String::new();
    line_protocol::encode(reading, &mut line);
    assert!(line.ends_with('\n'), "{line:?}");
    assert_eq!(line.lines().count(), 1, "{line:?}");
    for escapes in [Escapes::Reference, Escapes::InfluxV1] {
        let point = parse_line(&line, escapes).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(point.measurement, "energy_data");
        assert_eq!(
            point.tags,
            vec![("panel".to_owned(), reading.panel.to_string())]
        );
        let numbers: Vec<(String, f64)> = point
            .fields
            .iter()
            .map(|(key, value)| {
                // Floats: no `i` suffix, no exponent, read back to the very same f64.
                assert!(!value.ends_with('i') && !value.contains('e'), "{line:?}");
                (key.clone(), value.parse().expect("a float field"))
            })
            .collect();
        assert_eq!(
            numbers,
            vec![
                ("power_kw".to_owned(), reading.power_kw),
                ("energy_kwh".to_owned(), reading.energy_kwh)
            ],
            "{line:?}"
        );
        assert_eq!(
            point.timestamp,
            reading.time.timestamp_nanos_opt().unwrap().to_string()
        );
    }
}

#[test]
fn readings_at_the_edges_encode_as_one_line() {
    for r in [
        reading("a", 0.0, 0.0, 0),
        reading(&"Z".repeat(64), -1e12, 1e12, 4_102_444_800_000_000_000),
        reading("x.y-z_0", 5e-324, f64::MIN_POSITIVE, 1),
        reading("P", -0.0, 1e-7, 1_795_748_400_123_456_789),
    ] {
        assert_one_line_that_reads_back(&r);
    }
}

// ---------------------------------------------------------------------------------------------
// InfluxQL
// ---------------------------------------------------------------------------------------------

/// Reads the quoted string or identifier at the start of `text` the way InfluxQL's scanner does
/// (`ScanString` in influxql/scanner.go): it ends at the first unescaped opening quote
/// character; `\n`, `\\`, `\'` and `\"` are the only escapes; a raw newline, any other escape or
/// the end of input is an error. Returns the value and what follows the closing quote.
fn scan_quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('\'' | '"'))) => q,
        other => return Err(format!("not a quoted token: {other:?}")),
    };
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, &text[i + c.len_utf8()..])),
            '\n' => return Err("newline in string".into()),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, e @ ('\\' | '\'' | '"'))) => value.push(e),
                other => return Err(format!("bad escape {other:?}")),
            },
            c => value.push(c),
        }
    }
    Err("unterminated string".into())
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Symbol(char),
}

/// A small InfluxQL lexer: words, quoted strings and identifiers, single symbols, and `--`
/// comments to the end of the line (skipped).
fn lex(statement: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = statement;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("--") {
            rest = rest.find('\n').map_or("", |end| &rest[end..]);
        } else if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if c == '\'' || c == '"' {
            let (value, after) = scan_quoted(rest)?;
            tokens.push(Token::Quoted(value));
            rest = after;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            tokens.push(Token::Word(rest[..end].to_owned()));
            rest = &rest[end..];
        } else {
            tokens.push(Token::Symbol(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(tokens)
}

fn assert_quoting_yields_one_token(value: &str) {
    for quoted in [influxql::string_literal(value), influxql::identifier(value)] {
        assert_eq!(
            scan_quoted(&quoted),
            Ok((value.to_owned(), "")),
            "{value:?} -> {quoted}"
        );
    }
    let statement = format!(
        "SELECT count(energy_kwh) FROM {} WHERE panel = {}",
        influxql::identifier(value),
        influxql::string_literal(value)
    );
    let word = |w: &str| Token::Word(w.to_owned());
    assert_eq!(
        lex(&statement),
        Ok(vec![
            word("SELECT"),
            word("count"),
            Token::Symbol('('),
            word("energy_kwh"),
            Token::Symbol(')'),
            word("FROM"),
            Token::Quoted(value.to_owned()),
            word("WHERE"),
            word("panel"),
            Token::Symbol('='),
            Token::Quoted(value.to_owned()),
        ]),
        "{statement}"
    );
}

#[test]
fn hostile_strings_stay_one_influxql_token() {
    for value in HOSTILE {
        assert_quoting_yields_one_token(value);
    }
}

#[test]
fn the_lexer_sees_an_unquoted_injection() {
    let tokens = lex("SELECT * FROM m WHERE panel = 'x'; DROP DATABASE energy; --'").unwrap();
    assert!(tokens.contains(&Token::Symbol(';')));
    assert_eq!(
        scan_quoted(r"'x\'; DROP'"),
        Ok(("x'; DROP".to_owned(), "")),
        "the scanner honours escapes"
    );
    assert!(scan_quoted(r"'bad \q escape'").is_err());
}

/// Characters that matter to line protocol and InfluxQL, mixed with anything at all.
fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec![
                '\\', '\'', '"', '\n', '\r', ' ', ',', '=', ';', '\t', '\0', '/', '#', '+'
            ]),
            1 => any::<char>(),
        ],
        0..48,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_tag_value_changes_the_line(value in tricky_string()) {
        assert_tag_cannot_change_the_line(&value);
    }

    #[test]
    fn no_arbitrary_tag_value_changes_the_line(value in any::<String>()) {
        assert_tag_cannot_change_the_line(&value);
    }

    #[test]
    fn no_string_escapes_its_influxql_quotes(value in tricky_string()) {
        assert_quoting_yields_one_token(&value);
    }

    #[test]
    fn no_arbitrary_string_escapes_its_influxql_quotes(value in any::<String>()) {
        assert_quoting_yields_one_token(&value);
    }

    #[test]
    fn every_valid_reading_is_exactly_one_line(
        panel in "[A-Za-z0-9_.-]{1,64}",
        power_kw in -1e12f64..=1e12,
        energy_kwh in 0f64..=1e12,
        nanos in 0i64..=i64::MAX,
    ) {
        assert_one_line_that_reads_back(&reading(&panel, power_kw, energy_kwh, nanos));
    }
}
