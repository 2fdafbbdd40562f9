//! The alert journal (docs/alerts.md): every firing and resolution the api-server's evaluator
//! records, each with the targets it has still to reach. It is the alerts' durable state: a
//! rule is firing while its last entry is a firing, a notification is owed while an entry's
//! `pending` names a target, and any api-server answers `GET /api/alerts` from it.
//!
//! One point per event: measurement [`MEASUREMENT`], tag `rule`, stamped with the event's
//! instant. Delivering to a target rewrites the same point's `pending` field (same series,
//! same time), which InfluxDB merges into the point.

use std::fmt::Write;

use chrono::{DateTime, TimeZone, Utc};
use energy_core::alerts::Transition;
use energy_core::influxql::time_literal;
use energy_core::line_protocol::{escape_tag_value, quote_field_string};
use energy_influx::StatementResult;

/// The measurement of the journal.
pub const MEASUREMENT: &str = "alert_events";

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub rule: String,
    pub meter: String,
    pub transition: Transition,
    pub at: DateTime<Utc>,
    /// When the firing this entry belongs to began (its own instant for a firing).
    pub fired_at: DateTime<Utc>,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    /// The idempotency key receivers deduplicate on.
    pub id: String,
    /// The targets not reached yet (webhook names, `mqtt`).
    pub pending: Vec<String>,
}

fn nanos(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The entry as one line of line protocol (with its trailing newline).
pub fn line(entry: &Entry) -> String {
    let mut out = String::from(MEASUREMENT);
    out.push_str(",rule=");
    escape_tag_value(&entry.rule, &mut out);
    out.push_str(" meter=");
    quote_field_string(&entry.meter, &mut out);
    out.push_str(",transition=");
    quote_field_string(entry.transition.name(), &mut out);
    let _ = write!(
        out,
        ",fired_at={}i,value={},threshold={},message=",
        nanos(entry.fired_at),
        finite(entry.value),
        finite(entry.threshold)
    );
    quote_field_string(&entry.message, &mut out);
    out.push_str(",id=");
    quote_field_string(&entry.id, &mut out);
    out.push_str(",pending=");
    quote_field_string(&entry.pending.join(" "), &mut out);
    let _ = writeln!(out, " {}", nanos(entry.at));
    out
}

/// Line protocol has no NaN or infinity.
fn finite(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// The line that records `pending` as what `entry` has still to reach.
pub fn pending_line(rule: &str, at: DateTime<Utc>, pending: &[String]) -> String {
    let mut out = String::from(MEASUREMENT);
    out.push_str(",rule=");
    escape_tag_value(rule, &mut out);
    out.push_str(" pending=");
    quote_field_string(&pending.join(" "), &mut out);
    let _ = writeln!(out, " {}", nanos(at));
    out
}

/// The last entry of every rule: parse with [`parse_entries`].
pub fn last_per_rule() -> String {
    format!("SELECT * FROM {MEASUREMENT} GROUP BY rule ORDER BY time DESC LIMIT 1")
}

/// The entries since `since` that still owe a notification: parse with [`parse_entries`].
pub fn undelivered(since: DateTime<Utc>) -> String {
    format!(
        "SELECT * FROM {MEASUREMENT} WHERE pending != '' AND time >= {} GROUP BY rule",
        time_literal(since)
    )
}

/// The latest `limit` entries of each rule since `since`, newest first: parse with
/// [`parse_entries`].
pub fn recent(since: DateTime<Utc>, limit: usize) -> String {
    format!(
        "SELECT * FROM {MEASUREMENT} WHERE time >= {} GROUP BY rule ORDER BY time DESC LIMIT {limit}",
        time_literal(since)
    )
}

/// The entries of a result of the statements above (rows without the fields an entry needs are
/// skipped: a point only ever rewritten by [`pending_line`] is not an entry).
pub fn parse_entries(result: &StatementResult) -> Vec<Entry> {
    let mut entries = Vec::new();
    for series in &result.series {
        let Some(rule) = series.tag("rule") else {
            continue;
        };
        for row in 0..series.values.len() {
            let entry = (|| {
                let at = Utc.timestamp_millis_opt(series.time_ms_at(row)?).single()?;
                let transition = match series.str_at(row, "transition")? {
                    "fired" => Transition::Fired,
                    "resolved" => Transition::Resolved,
                    _ => return None,
                };
                Some(Entry {
                    rule: rule.to_owned(),
                    meter: series.str_at(row, "meter")?.to_owned(),
                    transition,
                    at,
                    fired_at: Utc.timestamp_nanos(series.i64_at(row, "fired_at")?),
                    value: series.f64_at(row, "value").unwrap_or(0.0),
                    threshold: series.f64_at(row, "threshold").unwrap_or(0.0),
                    message: series.str_at(row, "message").unwrap_or("").to_owned(),
                    id: series.str_at(row, "id")?.to_owned(),
                    pending: series
                        .str_at(row, "pending")
                        .unwrap_or("")
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                })
            })();
            entries.extend(entry);
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap();
        Entry {
            rule: "main offline".into(),
            meter: "PANEL_MAIN".into(),
            transition: Transition::Fired,
            at,
            fired_at: at,
            value: 12.0,
            threshold: 10.0,
            message: "PANEL_MAIN has been \"OFFLINE\" for 12 min".into(),
            id: "main offline:2026-12-06T03:00:00Z:fired".into(),
            pending: vec!["ops".into(), "mqtt".into()],
        }
    }

    #[test]
    fn an_entry_is_one_point_tagged_by_rule_with_quoted_strings() {
        assert_eq!(
            line(&entry()),
            "alert_events,rule=main\\ offline meter=\"PANEL_MAIN\",transition=\"fired\",\
             fired_at=1796526000000000000i,value=12,threshold=10,\
             message=\"PANEL_MAIN has been \\\"OFFLINE\\\" for 12 min\",\
             id=\"main offline:2026-12-06T03:00:00Z:fired\",pending=\"ops mqtt\" \
             1796526000000000000\n"
        );
        assert_eq!(
            pending_line("r", entry().at, &["mqtt".into()]),
            "alert_events,rule=r pending=\"mqtt\" 1796526000000000000\n"
        );
    }
}
