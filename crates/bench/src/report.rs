//! How results are printed: aligned tables for people, a list of checks (figure, value, target,
//! PASS/FAIL), and at the very end one line `JSON {…}` with every figure for scripts
//! (`… | grep '^JSON ' | cut -c6-`).
//!
//! Progress goes to stderr, results to stdout, so stdout holds only the tables and the JSON line.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

/// A target a figure is held against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtMost(f64),
    Below(f64),
    AtLeast(f64),
    Exactly(f64),
}

impl Bound {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtMost(limit) => value <= limit,
            Bound::Below(limit) => value < limit,
            Bound::AtLeast(limit) => value >= limit,
            Bound::Exactly(wanted) => value == wanted,
        }
    }

    /// `<= 250 ms`, `< 15 MiB`, `>= 70 %`, `= 0`.
    pub fn describe(self, unit: &str) -> String {
        let (op, limit) = match self {
            Bound::AtMost(limit) => ("<=", limit),
            Bound::Below(limit) => ("<", limit),
            Bound::AtLeast(limit) => (">=", limit),
            Bound::Exactly(limit) => ("=", limit),
        };
        format!(
            "{op} {}{}{unit}",
            number(limit),
            if unit.is_empty() { "" } else { " " }
        )
    }
}

/// One checked figure.
#[derive(Clone, Debug)]
pub struct Check {
    pub figure: String,
    pub value: String,
    pub target: String,
    pub pass: bool,
}

/// The figures held against targets, in the order they were measured.
#[derive(Debug, Default)]
pub struct Checks {
    checks: Vec<Check>,
}

impl Checks {
    /// Checks `measured` against `bound`; `value` is how the figure is shown. Returns whether it
    /// passed.
    pub fn check(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        measured: f64,
        bound: Bound,
        unit: &str,
    ) -> bool {
        let pass = measured.is_finite() && bound.holds(measured);
        self.checks.push(Check {
            figure: figure.into(),
            value: value.into(),
            target: bound.describe(unit),
            pass,
        });
        pass
    }

    /// A check whose outcome is decided by the caller (e.g. "the rollup was ready in time").
    pub fn record(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        pass: bool,
    ) -> bool {
        self.checks.push(Check {
            figure: figure.into(),
            value: value.into(),
            target: target.into(),
            pass,
        });
        pass
    }

    pub fn all_pass(&self) -> bool {
        self.checks.iter().all(|check| check.pass)
    }

    /// 0 when every check passed, 1 otherwise.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.all_pass() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }

    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|check| !check.pass).count()
    }

    /// The table of checks, with a last line saying how many passed.
    pub fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|check| {
                vec![
                    check.figure.clone(),
                    check.value.clone(),
                    check.target.clone(),
                    if check.pass { "PASS" } else { "FAIL" }.to_owned(),
                ]
            })
            .collect();
        let mut out = columns(&["check", "value", "target", "result"], &rows);
        let _ = writeln!(
            out,
            "{} of {} checks passed{}",
            self.checks.len() - self.failed(),
            self.checks.len(),
            if self.all_pass() { "" } else { "  <-- FAIL" }
        );
        out
    }

    /// The checks as JSON: `[{"check", "value", "target", "pass"}]`.
    pub fn to_json(&self) -> Value {
        self.checks
            .iter()
            .map(|check| {
                serde_json::json!({
                    "check": check.figure,
                    "value": check.value,
                    "target": check.target,
                    "pass": check.pass,
                })
            })
            .collect()
    }
}

/// A table with a header row: the first column left-aligned, the others right-aligned, every
/// column as wide as its widest cell.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index == 0 {
                let _ = write!(line, "{cell:<width$}");
            } else {
                let _ = write!(line, "  {cell:>width$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints the one machine-readable line: `JSON ` and `value` on a single line.
pub fn print_json(value: &Value) {
    println!("JSON {value}");
}

/// Milliseconds with one decimal (three below 1 ms): `12.3 ms`, `0.412 ms`.
pub fn ms(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis < 1.0 {
        format!("{millis:.3} ms")
    } else {
        format!("{millis:.1} ms")
    }
}

/// Seconds with two decimals: `3.14 s`.
pub fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// Milliseconds as a JSON number, rounded to microseconds.
pub fn ms_json(duration: Duration) -> f64 {
    round(duration.as_secs_f64() * 1000.0, 3)
}

/// KiB as MiB, rounded to 0.1.
pub fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 1)
}

/// An optional KiB figure as `12.3` MiB text, `?` when the process could not be read.
pub fn mib_text(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |kib| format!("{:.1}", mib(kib)))
}

/// A count or rate with thin grouping: `33 512`, `1 576 800`; fractions below 100 keep one
/// decimal.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() < 100.0 && value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_and_describe_themselves() {
        assert!(Bound::AtMost(250.0).holds(250.0));
        assert!(!Bound::Below(15.0).holds(15.0));
        assert!(Bound::AtLeast(70.0).holds(70.5));
        assert!(Bound::Exactly(0.0).holds(0.0));
        assert_eq!(Bound::AtMost(250.0).describe("ms"), "<= 250 ms");
        assert_eq!(Bound::Exactly(0.0).describe(""), "= 0");
    }

    #[test]
    fn a_nan_figure_never_passes() {
        let mut checks = Checks::default();
        assert!(!checks.check("ratio", "?", f64::NAN, Bound::AtMost(2.0), ""));
        assert!(!checks.all_pass());
        assert!(checks.render().contains("FAIL"));
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(number(1_576_800.0), "1 576 800");
        assert_eq!(number(999.0), "999");
        assert_eq!(number(33_512.4), "33 512");
        assert_eq!(number(12.25), "12.2");
        assert_eq!(number(-1000.0), "-1 000");
    }

    #[test]
    fn columns_are_aligned() {
        let table = columns(
            &["a", "bb"],
            &[
                vec!["long name".into(), "1".into()],
                vec!["x".into(), "22".into()],
            ],
        );
        assert_eq!(table, "a          bb\nlong name   1\nx          22\n");
    }
}
