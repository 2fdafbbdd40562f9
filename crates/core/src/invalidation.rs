//! The rollup's invalidation log: which 15-minute buckets of which panels must be recomputed
//! because readings were written into them (docs/rollup.md, "What must be recomputed").
//!
//! Whoever writes readings writes, in the same request, one log point per panel naming the
//! buckets its readings fall in. The point carries no timestamp, so InfluxDB stamps it with its
//! own clock when it takes the request: the log is ordered by when things were stored, whatever
//! the readings' own timestamps say (a meter's backlog from two hours ago is logged *now*). The
//! rollup writer reads the log forward from a watermark it records with the rollup's state, so
//! what a crash interrupts is read again after the restart.
//!
//! [`Dirty`] is the set of (panel, bucket) pairs, built from readings on one side and from log
//! points on the other.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::line_protocol::escape_tag_value;
use crate::rollup::{bucket_start, GRAIN_SECS};

/// The log's measurement: one point per panel per write request, stamped by InfluxDB.
pub const LOG_MEASUREMENT: &str = "energy_rollup_log";
/// String field of a log point: the buckets, as runs `<first bucket start, epoch seconds>+<count>`
/// separated by commas (`1764200700+3,1764210000+1`).
pub const LOG_BUCKETS_FIELD: &str = "buckets";
/// Tag of a log point naming who wrote it, so that two writers' points stamped in the same
/// nanosecond stay two points.
pub const LOG_WRITER_TAG: &str = "writer";

/// Most runs in one log point. InfluxDB 1.x caps a string field at 64 KiB; a batch of readings
/// scattered over more runs than this is logged as fewer, wider runs (recomputing a bucket that
/// did not change is harmless).
pub const MAX_RUNS_PER_POINT: usize = 256;

/// Buckets that must be recomputed, per panel, as disjoint runs `start -> end` (epoch seconds,
/// bucket boundaries): a year of one panel is one entry, not 35 000.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirty {
    by_panel: BTreeMap<String, BTreeMap<i64, i64>>,
}

/// A log point that cannot be read (the log is ours, so this means someone else wrote to it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable rollup log entry {entry:?}: {reason}")]
pub struct LogEntryError {
    pub entry: String,
    pub reason: &'static str,
}

/// Longest run one log entry may name: a century of buckets.
const MAX_RUN_BUCKETS: i64 = 100 * 366 * 96;

impl Dirty {
    /// Marks the bucket of a reading of `panel` at `time` as changed.
    pub fn mark(&mut self, panel: &str, time: DateTime<Utc>) {
        self.mark_bucket(panel, bucket_start(time).timestamp());
    }

    fn mark_bucket(&mut self, panel: &str, bucket: i64) {
        self.mark_run(panel, bucket, bucket + GRAIN_SECS);
    }

    /// Marks the buckets in `[start, end)` (bucket boundaries), joining the runs it touches.
    fn mark_run(&mut self, panel: &str, start: i64, end: i64) {
        let runs = match self.by_panel.get_mut(panel) {
            Some(runs) => runs,
            None => self.by_panel.entry(panel.to_owned()).or_default(),
        };
        let (mut start, mut end) = (start, end);
        // The run that starts at or before `start` and reaches it, if any.
        if let Some((&s, &e)) = runs.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        // Every run starting inside the new one (or right at its end) is swallowed.
        let inside: Vec<(i64, i64)> = runs.range(start..=end).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in inside {
            runs.remove(&s);
            end = end.max(e);
        }
        runs.insert(start, end);
    }

    pub fn merge(&mut self, other: Dirty) {
        for (panel, runs) in other.by_panel {
            for (start, end) in runs {
                self.mark_run(&panel, start, end);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_panel.is_empty()
    }

    /// How many (panel, bucket) pairs are marked.
    pub fn len(&self) -> usize {
        self.by_panel
            .values()
            .flat_map(|runs| runs.iter())
            .map(|(s, e)| ((e - s) / GRAIN_SECS) as usize)
            .sum()
    }

    /// Whether any marked bucket of `panel` lies in `period`.
    pub fn touches(&self, panel: &str, period: crate::Period) -> bool {
        let (start, end) = (period.start.timestamp(), period.end.timestamp());
        self.by_panel.get(panel).is_some_and(|runs| {
            // The last run starting before `end` reaches into the period if it ends after
            // `start`; runs are disjoint, so no earlier one can when it does not.
            runs.range(..end)
                .next_back()
                .is_some_and(|(_, &e)| e > start)
        })
    }

    /// The marked runs of each panel, `start -> end` in epoch seconds.
    pub fn panels(&self) -> impl Iterator<Item = (&str, &BTreeMap<i64, i64>)> {
        self.by_panel.iter().map(|(p, r)| (p.as_str(), r))
    }

    /// Runs of consecutive buckets (at most `max_run_secs` long), each with the panels that have
    /// exactly that run: live traffic marks the same bucket for every panel, so it becomes one
    /// read.
    pub fn runs(&self, max_run_secs: i64) -> BTreeMap<(i64, i64), Vec<String>> {
        let step = (max_run_secs / GRAIN_SECS).max(1) * GRAIN_SECS;
        let mut runs: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        for (panel, marked) in &self.by_panel {
            for (&start, &end) in marked {
                let mut from = start;
                while from < end {
                    let to = (from + step).min(end);
                    runs.entry((from, to)).or_default().push(panel.clone());
                    from = to;
                }
            }
        }
        runs
    }

    /// Appends one log line per panel, without a timestamp (InfluxDB stamps it on arrival).
    pub fn encode_log(&self, writer: &str, out: &mut String) {
        for (panel, runs) in &self.by_panel {
            out.push_str(LOG_MEASUREMENT);
            out.push_str(",panel=");
            escape_tag_value(panel, out);
            out.push(',');
            out.push_str(LOG_WRITER_TAG);
            out.push('=');
            escape_tag_value(writer, out);
            out.push(' ');
            out.push_str(LOG_BUCKETS_FIELD);
            out.push_str("=\"");
            for (i, (start, count)) in coarse_runs(runs).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{start}+{count}");
            }
            out.push_str("\"\n");
        }
    }

    /// Adds the buckets of one log point of `panel` (its [`LOG_BUCKETS_FIELD`]).
    pub fn add_log_entry(&mut self, panel: &str, buckets: &str) -> Result<(), LogEntryError> {
        let error = |reason| LogEntryError {
            entry: buckets.chars().take(80).collect(),
            reason,
        };
        let mut parsed = Vec::new();
        for run in buckets.split(',') {
            let (start, count) = run
                .split_once('+')
                .ok_or_else(|| error("a run lacks '+'"))?;
            let start: i64 = start
                .parse()
                .map_err(|_| error("a run's start is not an integer"))?;
            let count: i64 = count
                .parse()
                .map_err(|_| error("a run's count is not an integer"))?;
            if start.rem_euclid(GRAIN_SECS) != 0 {
                return Err(error("a run does not start on a bucket boundary"));
            }
            if !(1..=MAX_RUN_BUCKETS).contains(&count) {
                return Err(error("a run's count is out of range"));
            }
            parsed.push((start, count));
        }
        for (start, count) in parsed {
            self.mark_run(panel, start, start + count * GRAIN_SECS);
        }
        Ok(())
    }
}

/// `runs` as (start, count), at most [`MAX_RUNS_PER_POINT`]: when there are more, the runs
/// separated by the smallest gaps are joined.
fn coarse_runs(marked: &BTreeMap<i64, i64>) -> Vec<(i64, i64)> {
    let runs: Vec<(i64, i64)> = marked
        .iter()
        .map(|(&s, &e)| (s, (e - s) / GRAIN_SECS))
        .collect();
    if runs.len() <= MAX_RUNS_PER_POINT {
        return runs;
    }
    // Join every gap up to the largest gap that must go so that at most the allowed number of
    // runs remain.
    let mut gaps: Vec<i64> = runs
        .windows(2)
        .map(|w| w[1].0 - (w[0].0 + w[0].1 * GRAIN_SECS))
        .collect();
    gaps.sort_unstable();
    let threshold = gaps[runs.len() - MAX_RUNS_PER_POINT - 1];
    let mut joined: Vec<(i64, i64)> = Vec::new();
    for (start, count) in runs {
        match joined.last_mut() {
            Some((first, n)) if start - (*first + *n * GRAIN_SECS) <= threshold => {
                *n = (start - *first) / GRAIN_SECS + count;
            }
            _ => joined.push((start, count)),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn runs_group_panels_with_the_same_consecutive_buckets() {
        let mut dirty = Dirty::default();
        for panel in ["A", "B"] {
            dirty.mark(panel, t("2026-11-27T03:01:00Z"));
            dirty.mark(panel, t("2026-11-27T03:16:00Z"));
        }
        dirty.mark("B", t("2026-11-27T05:00:00Z"));
        dirty.mark("C", t("2026-11-27T03:14:59Z"));
        let runs = dirty.runs(6 * 3600);
        let start = t("2026-11-27T03:00:00Z").timestamp();
        assert_eq!(
            runs.get(&(start, start + 1800)),
            Some(&vec!["A".to_owned(), "B".to_owned()])
        );
        assert_eq!(runs.get(&(start, start + 900)), Some(&vec!["C".to_owned()]));
        let five = t("2026-11-27T05:00:00Z").timestamp();
        assert_eq!(runs.get(&(five, five + 900)), Some(&vec!["B".to_owned()]));
        assert_eq!(dirty.len(), 6);
    }

    #[test]
    fn a_run_is_at_most_the_given_length() {
        let mut dirty = Dirty::default();
        let mut time = t("2026-11-01T00:00:00Z");
        while time < t("2026-11-03T12:00:00Z") {
            dirty.mark("A", time);
            time += chrono::Duration::minutes(1);
        }
        let runs: Vec<(i64, i64)> = dirty.runs(6 * 3600).into_keys().collect();
        assert_eq!(runs.len(), 10, "60 hours");
        assert!(runs.iter().all(|(s, e)| e - s <= 6 * 3600));
        assert!(
            runs.windows(2).all(|w| w[0].1 == w[1].0),
            "contiguous: {runs:?}"
        );
    }

    #[test]
    fn a_log_line_has_no_timestamp_and_reads_back_as_the_same_buckets() {
        let mut dirty = Dirty::default();
        dirty.mark("PANEL 1", t("2026-11-27T03:01:00Z"));
        dirty.mark("PANEL 1", t("2026-11-27T03:16:00Z"));
        dirty.mark("PANEL 1", t("2026-11-27T09:00:00Z"));
        let mut out = String::new();
        dirty.encode_log("sub-1", &mut out);
        let three = t("2026-11-27T03:00:00Z").timestamp();
        let nine = t("2026-11-27T09:00:00Z").timestamp();
        assert_eq!(
            out,
            format!(
                "energy_rollup_log,panel=PANEL\\ 1,writer=sub-1 buckets=\"{three}+2,{nine}+1\"\n"
            )
        );
        let mut back = Dirty::default();
        back.add_log_entry("PANEL 1", &format!("{three}+2,{nine}+1"))
            .unwrap();
        assert_eq!(back, dirty);
    }

    #[test]
    fn scattered_buckets_are_logged_as_at_most_the_allowed_runs_covering_them_all() {
        let mut dirty = Dirty::default();
        let start = t("2026-01-01T00:00:00Z");
        // 1 000 isolated buckets, every other one, with one wider gap in the middle.
        for k in 0..1000i64 {
            let extra = if k >= 500 { 10 } else { 0 };
            dirty.mark(
                "A",
                start + chrono::Duration::seconds((2 * k + extra) * GRAIN_SECS),
            );
        }
        let mut out = String::new();
        dirty.encode_log("w", &mut out);
        let field = out.split('"').nth(1).unwrap();
        assert!(field.split(',').count() <= MAX_RUNS_PER_POINT, "{field}");
        let mut back = Dirty::default();
        back.add_log_entry("A", field).unwrap();
        let mut both = back.clone();
        both.merge(dirty.clone());
        assert_eq!(both, back, "every marked bucket is still named");
        assert!(back.len() < 2 * dirty.len() + 20, "{}", back.len());
    }

    #[test]
    fn marks_join_into_disjoint_runs_in_any_order() {
        let base = t("2026-11-27T00:00:00Z").timestamp();
        let q = |k: i64| base + k * GRAIN_SECS;
        let mut forward = Dirty::default();
        let mut backward = Dirty::default();
        let order = [5, 1, 2, 9, 3, 8, 4, 0];
        for &k in &order {
            forward.mark_bucket("A", q(k));
        }
        for &k in order.iter().rev() {
            backward.mark_bucket("A", q(k));
        }
        assert_eq!(forward, backward);
        let runs: Vec<(i64, i64)> = forward.by_panel["A"]
            .iter()
            .map(|(&s, &e)| (s, e))
            .collect();
        assert_eq!(runs, vec![(q(0), q(6)), (q(8), q(10))]);
        assert_eq!(forward.len(), 8);
        forward.mark_run("A", q(2), q(9));
        assert_eq!(forward.by_panel["A"].len(), 1);
        assert_eq!(forward.len(), 10);
    }

    #[test]
    fn touches_tells_whether_a_marked_bucket_lies_in_a_period() {
        let mut dirty = Dirty::default();
        dirty.mark("A", t("2026-11-27T03:01:00Z"));
        dirty.mark("A", t("2026-11-27T09:00:00Z"));
        let period = |s: &str, e: &str| crate::Period {
            start: t(s),
            end: t(e),
        };
        assert!(dirty.touches("A", period("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z")));
        assert!(dirty.touches("A", period("2026-11-27T03:14:00Z", "2026-11-27T03:15:00Z")));
        assert!(!dirty.touches("A", period("2026-11-27T03:15:00Z", "2026-11-27T09:00:00Z")));
        assert!(dirty.touches("A", period("2026-11-27T08:00:00Z", "2026-11-27T09:00:01Z")));
        assert!(!dirty.touches("B", period("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z")));
    }

    #[test]
    fn unreadable_entries_are_refused() {
        let mut dirty = Dirty::default();
        for bad in [
            "",
            "12",
            "x+1",
            "900+x",
            "901+1",
            "900+0",
            "900+-1",
            "900+99999999999",
        ] {
            assert!(dirty.add_log_entry("A", bad).is_err(), "{bad:?}");
        }
        assert!(dirty.is_empty());
        assert!(dirty.add_log_entry("A", "900+2").is_ok());
        assert_eq!(dirty.len(), 2);
    }
}
