//! Checking the rollup against the raw maths (docs/rollup.md, "Checking it").
//!
//! For every UTC day of a range, the day's readings (with the last reading before the day) are
//! read and turned into bucket figures by the same rule the rollup is kept with; every stored
//! bucket, hour sum and day sum is compared with them, and every month sum the range touches
//! with the sum of its stored days. The result is the list of differences, each with both
//! figures; what to do about them (report, or have the writer recompute them) is the caller's.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use energy_core::influxql::time_literal;
use energy_core::invalidation::Dirty;
use energy_core::rollup::{
    self, day_of, hour_of, month_of, Bucket, DAY_MEASUREMENT, ESTIMATED_FIELD, HOUR_MEASUREMENT,
    MONTH_MEASUREMENT, PEAK_FIELD, QUARTER_MEASUREMENT, READINGS_FIELD, USAGE_FIELD,
};
use energy_core::{EnergyPoint, Period, Usage};
use energy_influx::{InfluxError, StatementResult};

use crate::{NextKnown, Panels, Rollup};

/// Which sum of the rollup differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A 15-minute bucket, compared with the readings.
    Bucket,
    /// A UTC hour, compared with the readings.
    Hour,
    /// A UTC day, compared with the readings.
    Day,
    /// A UTC month, compared with the sum of its stored days.
    Month,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Bucket => "bucket",
            Level::Hour => "hour",
            Level::Day => "day",
            Level::Month => "month",
        }
    }
}

/// Usage, its estimated part, its largest bucket's usage and reading count of one period of one
/// panel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub usage: Usage,
    pub estimated: Usage,
    pub peak: Usage,
    pub readings: u64,
}

impl Figures {
    /// A bucket's figures.
    pub fn of(bucket: &Bucket) -> Figures {
        Figures {
            usage: bucket.usage,
            estimated: bucket.estimated,
            peak: bucket.peak,
            readings: bucket.readings,
        }
    }

    /// These figures as a rollup point starting at `start`.
    pub fn bucket(&self, start: DateTime<Utc>) -> Bucket {
        Bucket {
            start,
            usage: self.usage,
            estimated: self.estimated,
            peak: self.peak,
            readings: self.readings,
        }
    }
}

/// Figures of two periods together: the sums add, the peak is the larger one.
impl std::ops::AddAssign for Figures {
    fn add_assign(&mut self, other: Figures) {
        self.usage += other.usage;
        self.estimated += other.estimated;
        self.peak = self.peak.max(other.peak);
        self.readings += other.readings;
    }
}

/// Takes a period's figures out of a sum that holds them. A largest value cannot be taken out:
/// the peak is left as it was, for the caller to settle.
impl std::ops::SubAssign for Figures {
    fn sub_assign(&mut self, other: Figures) {
        self.usage -= other.usage;
        self.estimated -= other.estimated;
        self.readings = self.readings.saturating_sub(other.readings);
    }
}

/// A sum of the rollup that is not what it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub panel: String,
    pub level: Level,
    pub start: DateTime<Utc>,
    /// What the rollup holds (zero when it holds no point).
    pub rollup: Figures,
    /// What it should hold: from the readings (buckets, days) or the stored days (months).
    pub expected: Figures,
}

impl Difference {
    /// The period the differing sum covers.
    pub fn period(&self) -> Period {
        match self.level {
            Level::Bucket => rollup::bucket_of(self.start),
            Level::Hour => hour_of(self.start),
            Level::Day => day_of(self.start),
            Level::Month => month_of(self.start),
        }
    }

    /// The buckets whose recomputation repairs this: the bucket itself, or the first bucket of
    /// the hour, day or month (recomputing any bucket re-sums its hour, its day and that day's
    /// month).
    pub fn mark(&self, dirty: &mut Dirty) {
        dirty.mark(&self.panel, self.start);
    }
}

impl Rollup {
    /// Compares the rollup with the raw maths over `[from, to)` (both are rounded out to
    /// buckets): every bucket in it, every whole UTC hour and day in it, and every UTC month it
    /// touches.
    pub async fn check(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Difference>, InfluxError> {
        let mut differences = Vec::new();
        let from = rollup::bucket_start(from);
        let to = rollup::bucket_of(to - chrono::Duration::nanoseconds(1)).end;
        // Each panel's last reading before the day being checked, and what is known of the
        // readings after it.
        let mut carried: Option<BTreeMap<String, EnergyPoint>> = None;
        let mut next = NextKnown::new();
        let mut months = BTreeSet::new();
        let mut day = day_of(from);
        while day.start < to {
            let part = Period {
                start: day.start.max(from),
                end: day.end.min(to),
            };
            months.insert(month_of(day.start).start);
            self.check_day(part, part == day, &mut carried, &mut next, &mut differences)
                .await?;
            day = day_of(day.end);
        }
        for month in months {
            self.check_month(month, &mut differences).await?;
        }
        Ok(differences)
    }

    /// Buckets and whole hours of `part` (and, if `whole`, the day sum) against the readings.
    async fn check_day(
        &self,
        part: Period,
        whole: bool,
        carried: &mut Option<BTreeMap<String, EnergyPoint>>,
        next: &mut NextKnown,
        differences: &mut Vec<Difference>,
    ) -> Result<(), InfluxError> {
        let range = format!(
            "time >= {} AND time < {}",
            time_literal(part.start),
            time_literal(part.end)
        );
        let (points, last) = self
            .series_of(Panels::All, part, carried.as_ref(), next)
            .await?;
        *carried = Some(last);
        let sums = format!(
            "SELECT {FIGURES} FROM {QUARTER_MEASUREMENT} WHERE {range} GROUP BY panel;\n\
             SELECT {FIGURES} FROM {DAY_MEASUREMENT} WHERE time = {} GROUP BY panel;\n\
             SELECT {FIGURES} FROM {HOUR_MEASUREMENT} WHERE {range} GROUP BY panel",
            time_literal(part.start)
        );
        let stored = self.query(&sums).await?;
        let stored_buckets = figures_by_panel(&stored[0]);
        let stored_days = figures_by_panel(&stored[1]);
        let stored_hours = figures_by_panel(&stored[2]);

        let panels: BTreeSet<&String> = points
            .keys()
            .chain(stored_buckets.keys())
            .chain(stored_days.keys())
            .chain(stored_hours.keys())
            .collect();
        let empty = Vec::new();
        for panel in panels {
            let series = points.get(panel).unwrap_or(&empty);
            let raw: BTreeMap<DateTime<Utc>, Figures> = rollup::buckets(series, part, self.rules)
                .iter()
                .map(|b| (b.start, Figures::of(b)))
                .collect();
            compare(
                panel,
                Level::Bucket,
                &raw,
                stored_buckets.get(panel),
                |_| true,
                differences,
            );
            // Every whole hour of the part that has readings or a stored sum.
            let mut hours: BTreeMap<DateTime<Utc>, Figures> = BTreeMap::new();
            for (start, figures) in &raw {
                *hours.entry(hour_of(*start).start).or_default() += *figures;
            }
            compare(
                panel,
                Level::Hour,
                &hours,
                stored_hours.get(panel),
                |start| part.start <= start && hour_of(start).end <= part.end,
                differences,
            );
            if whole {
                let mut expected = Figures::default();
                for figures in raw.values() {
                    expected += *figures;
                }
                let rollup = stored_days
                    .get(panel)
                    .and_then(|d| d.get(&part.start))
                    .copied()
                    .unwrap_or_default();
                if expected != rollup {
                    differences.push(Difference {
                        panel: panel.clone(),
                        level: Level::Day,
                        start: part.start,
                        rollup,
                        expected,
                    });
                }
            }
        }
        Ok(())
    }

    /// The month sums of the UTC month starting at `start` against the sums of their days.
    async fn check_month(
        &self,
        start: DateTime<Utc>,
        differences: &mut Vec<Difference>,
    ) -> Result<(), InfluxError> {
        let month = month_of(start);
        let statements = format!(
            "SELECT sum({USAGE_FIELD}) AS {USAGE_FIELD}, sum({ESTIMATED_FIELD}) AS {ESTIMATED_FIELD}, \
             max({PEAK_FIELD}) AS {PEAK_FIELD}, sum({READINGS_FIELD}) AS {READINGS_FIELD} \
             FROM {DAY_MEASUREMENT} WHERE time >= {} AND time < {} GROUP BY panel;\n\
             SELECT {FIGURES} FROM {MONTH_MEASUREMENT} WHERE time = {} GROUP BY panel",
            time_literal(month.start),
            time_literal(month.end),
            time_literal(month.start),
        );
        let results = self.query(&statements).await?;
        let days = figures_by_panel(&results[0]);
        let months = figures_by_panel(&results[1]);
        let panels: BTreeSet<&String> = days.keys().chain(months.keys()).collect();
        for panel in panels {
            // A sum over the days comes back stamped with the range's start.
            let expected = days
                .get(panel)
                .and_then(|d| d.values().next())
                .copied()
                .unwrap_or_default();
            let rollup = months
                .get(panel)
                .and_then(|m| m.get(&month.start))
                .copied()
                .unwrap_or_default();
            if expected != rollup {
                differences.push(Difference {
                    panel: panel.clone(),
                    level: Level::Month,
                    start: month.start,
                    rollup,
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// Adds a [`Difference`] of `level` for every period (by start, those `keep` keeps) where what
/// the rollup `held` differs from what the readings give (`expected`); a period missing on
/// either side counts as zero.
fn compare(
    panel: &str,
    level: Level,
    expected: &BTreeMap<DateTime<Utc>, Figures>,
    held: Option<&BTreeMap<DateTime<Utc>, Figures>>,
    keep: impl Fn(DateTime<Utc>) -> bool,
    differences: &mut Vec<Difference>,
) {
    let starts: BTreeSet<DateTime<Utc>> = expected
        .keys()
        .chain(held.into_iter().flat_map(|h| h.keys()))
        .copied()
        .filter(|start| keep(*start))
        .collect();
    for start in starts {
        let figures = |rows: Option<&BTreeMap<DateTime<Utc>, Figures>>| {
            rows.and_then(|r| r.get(&start))
                .copied()
                .unwrap_or_default()
        };
        let (expected, rollup) = (figures(Some(expected)), figures(held));
        if expected != rollup {
            differences.push(Difference {
                panel: panel.to_owned(),
                level,
                start,
                rollup,
                expected,
            });
        }
    }
}

/// The fields of a rollup point, as a statement selects them for [`figures_by_panel`].
/// (The names are the core's field constants, which a test below holds it to.)
pub(crate) const FIGURES: &str = "usage_nkwh, estimated_nkwh, peak_nkwh, readings";

/// Rows of `usage_nkwh, estimated_nkwh, peak_nkwh, readings` per panel, by time.
pub(crate) fn figures_by_panel(
    result: &StatementResult,
) -> BTreeMap<String, BTreeMap<DateTime<Utc>, Figures>> {
    let mut out: BTreeMap<String, BTreeMap<DateTime<Utc>, Figures>> = BTreeMap::new();
    for series in &result.series {
        let Some(panel) = series.tag("panel").filter(|p| !p.is_empty()) else {
            continue;
        };
        let rows = out.entry(panel.to_owned()).or_default();
        for row in 0..series.values.len() {
            let Some(time) = series.i64_at(row, "time") else {
                continue;
            };
            let nano = |field| Usage::from_nano_kwh(series.i64_at(row, field).unwrap_or(0).into());
            let figures = Figures {
                usage: nano(USAGE_FIELD),
                estimated: nano(ESTIMATED_FIELD),
                peak: nano(PEAK_FIELD),
                readings: series.i64_at(row, READINGS_FIELD).unwrap_or(0).max(0) as u64,
            };
            rows.insert(Utc.timestamp_nanos(time), figures);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selected_fields_are_the_rollup_fields() {
        assert_eq!(
            FIGURES,
            format!("{USAGE_FIELD}, {ESTIMATED_FIELD}, {PEAK_FIELD}, {READINGS_FIELD}")
        );
    }
}
