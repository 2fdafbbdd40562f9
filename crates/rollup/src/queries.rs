//! The statements the readers send (the api-server's answers, the subscriber's panel cap), each
//! with the parser of its result.
//!
//! These statements are built here and nowhere else (the rollup writer's own are in the rest of
//! this crate), so a text is the same for every caller: the api-server's answer cache is keyed
//! by the text, so a change of text is a change of key. The parsers read results of
//! `InfluxClient::query` (times as epoch milliseconds) and skip what lacks a value they need (a
//! column, a `panel` tag).
//!
//! Usage for a period is read in parts (see the api-server's `store`): sums of whole rollup
//! buckets, days and months ([`usage_sums`]), and the readings of the rest ([`raw_readings`],
//! [`recent_readings`]) with the reading before them ([`reading_before_within_lookback`],
//! [`reading_before_unbounded`]), to which the caller applies the pair rule.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use energy_core::influxql::{string_literal, time_literal};
use energy_core::rollup::{
    DAY_SECS, ESTIMATED_FIELD, PEAK_FIELD, QUARTER_MEASUREMENT, USAGE_FIELD,
};
use energy_core::{Energy, EnergyPoint, Load, PanelId, Period, Usage, MEASUREMENT};
use energy_influx::{Lenient, Rows, Series, StatementResult};

/// The latest reading of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    pub time: DateTime<Utc>,
    pub power_kw: f64,
    pub energy_kwh: f64,
}

/// Every panel's readings since an instant, and the latest of them, from
/// [`parse_recent_readings`]. (The api-server adds the latest reading of panels with none since
/// then, see [`latest_within_lookback`].)
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recent {
    pub points: BTreeMap<String, Vec<EnergyPoint>>,
    pub latest: BTreeMap<String, Latest>,
}

/// A panel's power statistics in a period, from [`parse_day_power`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerStats {
    pub peak_power_kw: f64,
    pub avg_power_kw: f64,
}

/// How far back the newest reading of a panel, or the reading before a period, is looked for
/// first (InfluxQL duration).
const LOOKBACK: &str = "1d";
const LOOKBACK_SECS: i64 = 86_400;

/// Every panel's readings (power and energy) since `since`: parse with
/// [`parse_recent_readings`].
pub fn recent_readings(since: DateTime<Utc>) -> String {
    format!(
        "SELECT power_kw, energy_kwh FROM {MEASUREMENT} WHERE time >= {} GROUP BY panel",
        time_literal(since)
    )
}

/// Every panel that ever wrote a reading: parse with [`parse_panel_tag_values`].
pub fn panel_tag_values() -> String {
    format!("SHOW TAG VALUES FROM {MEASUREMENT} WITH KEY = panel")
}

/// The latest reading of each of `panels` within a day (`LOOKBACK`): parse with
/// [`parse_latest`].
pub fn latest_within_lookback(panels: &[String]) -> String {
    let filter = panel_filter(panels);
    format!(
        "SELECT power_kw, energy_kwh FROM {MEASUREMENT} WHERE time >= now() - {LOOKBACK} \
         AND {filter} GROUP BY panel ORDER BY time DESC LIMIT 1"
    )
}

/// The latest reading of each of `panels`, without a bound (for those silent longer than
/// `LOOKBACK`): parse with [`parse_latest`].
pub fn latest_unbounded(panels: &[String]) -> String {
    let filter = panel_filter(panels);
    format!(
        "SELECT power_kw, energy_kwh FROM {MEASUREMENT} WHERE {filter} \
         GROUP BY panel ORDER BY time DESC LIMIT 1"
    )
}

/// The last reading before `start` of each of `panels` within `LOOKBACK` before it: parse
/// with [`parse_reading_before`].
pub fn reading_before_within_lookback(start: DateTime<Utc>, panels: &[String]) -> String {
    let filter = panel_filter(panels);
    format!(
        "SELECT energy_kwh FROM {MEASUREMENT} WHERE time >= {} AND time < {} AND {filter} \
         GROUP BY panel ORDER BY time DESC LIMIT 1",
        time_literal(start - chrono::Duration::seconds(LOOKBACK_SECS)),
        time_literal(start),
    )
}

/// The last reading before `start` of each of `panels`, without a bound (for those silent
/// longer than `LOOKBACK`): parse with [`parse_reading_before`].
pub fn reading_before_unbounded(start: DateTime<Utc>, panels: &[String]) -> String {
    last_reading_before(start, &format!(" AND {}", panel_filter(panels)))
}

/// The earliest reading of all (of any panel), one row: ungrouped, InfluxDB stops at the first
/// point of the earliest shard, where `GROUP BY panel` would look at every panel's.
pub fn earliest_reading() -> String {
    format!("SELECT energy_kwh FROM {MEASUREMENT} ORDER BY time ASC LIMIT 1")
}

/// Each panel's last reading before `at`, every panel.
pub fn every_reading_before(at: DateTime<Utc>) -> String {
    last_reading_before(at, "")
}

/// The first reading at or after `end` of each of `panels` within `LOOKBACK` after it: parse
/// with [`parse_reading_before`] (it closes the pair that straddles `end`).
pub fn reading_after_within_lookahead(end: DateTime<Utc>, panels: &[String]) -> String {
    let filter = panel_filter(panels);
    format!(
        "SELECT energy_kwh FROM {MEASUREMENT} WHERE time >= {} AND time < {} AND {filter} \
         GROUP BY panel ORDER BY time ASC LIMIT 1",
        time_literal(end),
        time_literal(end + chrono::Duration::seconds(LOOKBACK_SECS)),
    )
}

/// The first reading at or after `end` of each of `panels`, without a bound: parse with
/// [`parse_reading_before`].
pub fn reading_after_unbounded(end: DateTime<Utc>, panels: &[String]) -> String {
    first_reading_from(end, &format!(" AND {}", panel_filter(panels)))
}

/// Each panel's first reading at or after `at`, among the readings that also meet `and` (empty,
/// or ` AND …`).
pub fn first_reading_from(at: DateTime<Utc>, and: &str) -> String {
    format!(
        "SELECT energy_kwh FROM {MEASUREMENT} WHERE time >= {}{and} \
         GROUP BY panel ORDER BY time ASC LIMIT 1",
        time_literal(at),
    )
}

/// Each panel's last reading before `at`, among the readings that also meet `and` (empty, or
/// ` AND …`).
pub fn last_reading_before(at: DateTime<Utc>, and: &str) -> String {
    format!(
        "SELECT energy_kwh FROM {MEASUREMENT} WHERE time < {}{and} \
         GROUP BY panel ORDER BY time DESC LIMIT 1",
        time_literal(at),
    )
}

/// Each panel's peak and mean power in `day`: parse with [`parse_day_power`].
pub fn day_power(day: Period) -> String {
    format!(
        "SELECT max(power_kw) AS peak, mean(power_kw) AS mean FROM {MEASUREMENT} \
         WHERE {} GROUP BY panel",
        time_range(day)
    )
}

/// Each panel's usage summed over the rollup measurement `measurement` (buckets, days or months)
/// in `period`, with its largest bucket (the points' largest `peak_nkwh`): parse with
/// [`parse_usage_sums`].
pub fn usage_sums(measurement: &str, period: Period) -> String {
    format!(
        "SELECT sum({USAGE_FIELD}) AS usage, sum({ESTIMATED_FIELD}) AS estimated, \
         max({PEAK_FIELD}) AS peak FROM {measurement} WHERE {} GROUP BY panel",
        time_range(period)
    )
}

/// Like [`usage_sums`], per day of `run` (a run of 24-hour days from `run.start`, which lies on
/// a quarter hour): one row per panel and day with any point, stamped with the day's start;
/// parse with [`parse_usage_sums_at`] or [`grid_sums`]. InfluxDB adds up the
/// integer fields exactly. The same statement as [`usage_sums_by_grid`] with a grid of a day.
pub fn usage_sums_by_day(measurement: &str, run: Period) -> String {
    usage_sums_by_grid(measurement, run, DAY_SECS)
}

/// Like [`usage_sums`], per step of `grid_secs` seconds (above 0) from `run.start`: one row per
/// panel and step with any point, stamped with the step's start; parse with
/// [`grid_sums`]. Any period of the run that starts and ends on the grid is the
/// sum of the rows stamped within it, so one statement serves every period of a run of
/// consecutive periods whose lengths are multiples of the grid (time-of-use windows, days of
/// 23, 24 or 25 hours). InfluxDB places its windows at multiples of the interval from the epoch
/// plus the offset, so the offset is `run.start`'s remainder.
///
/// A grid of one day is written `1d`, as the statement of a run of days always was: the text
/// is the api-server's cache key.
pub fn usage_sums_by_grid(measurement: &str, run: Period, grid_secs: i64) -> String {
    let offset = run.start.timestamp().rem_euclid(grid_secs);
    let interval = if grid_secs == DAY_SECS {
        "1d".to_owned()
    } else {
        format!("{grid_secs}s")
    };
    format!(
        "SELECT sum({USAGE_FIELD}) AS usage, sum({ESTIMATED_FIELD}) AS estimated, \
         max({PEAK_FIELD}) AS peak FROM {measurement} WHERE {} \
         GROUP BY time({interval}, {offset}s), panel fill(none)",
        time_range(run)
    )
}

/// Every point of the rollup measurement `measurement` in `span`, per panel: parse the part of
/// it one period needs with [`parse_usage_rows_within`]. One statement read by many periods,
/// where a statement per period would each open every storage shard they cross.
pub fn usage_rows(measurement: &str, span: Period) -> String {
    format!(
        "SELECT {USAGE_FIELD} AS usage, {ESTIMATED_FIELD} AS estimated, {PEAK_FIELD} AS peak \
         FROM {measurement} WHERE {} GROUP BY panel",
        time_range(span)
    )
}

/// The usage of `panels` together per rollup bucket (quarter hour) in `span`: one row per
/// bucket any of them has, stamped with its start; parse with [`parse_sums_by_time`].
/// InfluxDB adds up the integer fields exactly.
pub fn usage_sum_per_bucket(span: Period, panels: &[String]) -> String {
    format!(
        "SELECT sum({USAGE_FIELD}) AS usage FROM {QUARTER_MEASUREMENT} WHERE {} AND {} \
         GROUP BY time(15m) fill(none)",
        time_range(span),
        panel_filter(panels),
    )
}

/// Every reading (energy only) in `period`, per panel: parse with [`parse_raw_readings`].
pub fn raw_readings(period: Period) -> String {
    format!(
        "SELECT energy_kwh FROM {MEASUREMENT} WHERE {} GROUP BY panel",
        time_range(period)
    )
}

/// Every reading (energy only) of one panel in `period`: parse with [`parse_raw_readings`].
pub fn panel_readings(panel: &str, period: Period) -> String {
    format!(
        "SELECT energy_kwh FROM {MEASUREMENT} WHERE {} AND panel = {} GROUP BY panel",
        time_range(period),
        string_literal(panel)
    )
}

/// The panels InfluxDB holds, for the subscriber's panel cap: parse with
/// [`parse_known_panels`]. The same question as [`panel_tag_values`] with the key quoted; each
/// caller keeps the text it always sent.
pub fn known_panels() -> String {
    format!("SHOW TAG VALUES FROM {MEASUREMENT} WITH KEY = \"panel\"")
}

/// `(panel = … OR …)`: matches any of `panels`.
pub fn panel_filter(panels: &[String]) -> String {
    let alternatives: Vec<String> = panels
        .iter()
        .map(|p| format!("panel = {}", string_literal(p)))
        .collect();
    format!("({})", alternatives.join(" OR "))
}

fn time_range(period: Period) -> String {
    format!(
        "time >= {} AND time < {}",
        time_literal(period.start),
        time_literal(period.end)
    )
}

fn panel_of(series: &Series) -> Option<&str> {
    series.tag("panel").filter(|p| !p.is_empty())
}

fn time_of(series: &Series, row: usize) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(series.time_ms_at(row)?).single()
}

/// The result of [`recent_readings`]: each panel's readings in time order, and the last of them.
pub fn parse_recent_readings(result: &StatementResult) -> Recent {
    let mut recent = Recent::default();
    for series in &result.series {
        let Some(panel) = panel_of(series) else {
            continue;
        };
        let rows: Vec<Latest> = (0..series.values.len())
            .filter_map(|row| {
                Some(Latest {
                    time: time_of(series, row)?,
                    power_kw: series.f64_at(row, "power_kw")?,
                    energy_kwh: series.f64_at(row, "energy_kwh")?,
                })
            })
            .collect();
        if let Some(last) = rows.last() {
            recent.latest.insert(panel.to_owned(), last.clone());
        }
        let points = rows
            .iter()
            .map(|r| EnergyPoint {
                time: r.time,
                energy_kwh: r.energy_kwh,
            })
            .collect();
        recent.points.insert(panel.to_owned(), points);
    }
    recent
}

/// The panels named in the result of [`panel_tag_values`].
pub fn parse_panel_tag_values(result: &StatementResult) -> Vec<&str> {
    result
        .series
        .iter()
        .flat_map(|series| (0..series.values.len()).filter_map(|row| series.str_at(row, "value")))
        .collect()
}

/// The result of [`latest_within_lookback`] or [`latest_unbounded`].
pub fn parse_latest(result: &StatementResult) -> BTreeMap<String, Latest> {
    result
        .series
        .iter()
        .filter_map(|series| {
            let latest = Latest {
                time: time_of(series, 0)?,
                power_kw: series.f64_at(0, "power_kw")?,
                energy_kwh: series.f64_at(0, "energy_kwh")?,
            };
            Some((panel_of(series)?.to_owned(), latest))
        })
        .collect()
}

/// The result of [`reading_before_within_lookback`] or [`reading_before_unbounded`].
pub fn parse_reading_before(result: &StatementResult) -> BTreeMap<String, EnergyPoint> {
    result
        .series
        .iter()
        .filter_map(|series| {
            let point = EnergyPoint {
                time: time_of(series, 0)?,
                energy_kwh: series.f64_at(0, "energy_kwh")?,
            };
            Some((panel_of(series)?.to_owned(), point))
        })
        .collect()
}

/// The result of [`day_power`].
pub fn parse_day_power(result: &StatementResult) -> BTreeMap<String, PowerStats> {
    result
        .series
        .iter()
        .filter_map(|series| {
            let panel = panel_of(series)?;
            let stats = PowerStats {
                peak_power_kw: series.f64_at(0, "peak")?,
                avg_power_kw: series.f64_at(0, "mean")?,
            };
            Some((panel.to_owned(), stats))
        })
        .collect()
}

/// The result of [`usage_sums`]: each panel's energy and largest bucket.
pub fn parse_usage_sums(result: &StatementResult) -> BTreeMap<String, Load> {
    result
        .series
        .iter()
        .filter_map(|series| {
            let nano = |column| Usage::from_nano_kwh(series.i64_at(0, column).unwrap_or(0).into());
            let load = Load {
                energy: Energy {
                    usage: Usage::from_nano_kwh(series.i64_at(0, "usage")?.into()),
                    estimated: nano("estimated"),
                },
                peak: nano("peak"),
            };
            Some((panel_of(series)?.to_owned(), load))
        })
        .collect()
}

/// The points of a [`usage_rows`] result stamped within `part`, per panel: their energy summed
/// and their largest peak (panels without a point in `part` are left out).
pub fn parse_usage_rows_within(result: &StatementResult, part: Period) -> BTreeMap<String, Load> {
    let (from, to) = (part.start.timestamp_millis(), part.end.timestamp_millis());
    let mut out = BTreeMap::new();
    for series in &result.series {
        let Some(panel) = panel_of(series) else {
            continue;
        };
        let mut load: Option<Load> = None;
        for row in 0..series.values.len() {
            let Some(time) = series.time_ms_at(row) else {
                continue;
            };
            if time < from || time >= to {
                continue;
            }
            let nano =
                |column| Usage::from_nano_kwh(series.i64_at(row, column).unwrap_or(0).into());
            let point = Load {
                energy: Energy {
                    usage: nano("usage"),
                    estimated: nano("estimated"),
                },
                peak: nano("peak"),
            };
            load = Some(load.map_or(point, |l| l.join(point)));
        }
        if let Some(load) = load {
            out.insert(panel.to_owned(), load);
        }
    }
    out
}

/// The rows of a [`usage_sums_by_day`] result stamped `at`: each panel's energy and largest
/// bucket that day.
pub fn parse_usage_sums_at(result: &StatementResult, at: DateTime<Utc>) -> BTreeMap<String, Load> {
    let at_ms = at.timestamp_millis();
    result
        .series
        .iter()
        .filter_map(|series| {
            let row =
                (0..series.values.len()).find(|&row| series.time_ms_at(row) == Some(at_ms))?;
            let nano =
                |column| Usage::from_nano_kwh(series.i64_at(row, column).unwrap_or(0).into());
            let load = Load {
                energy: Energy {
                    usage: Usage::from_nano_kwh(series.i64_at(row, "usage")?.into()),
                    estimated: nano("estimated"),
                },
                peak: nano("peak"),
            };
            Some((panel_of(series)?.to_owned(), load))
        })
        .collect()
}

/// The rows of a [`usage_sums_by_grid`] (or [`usage_sums_by_day`]) result, per panel in time
/// order: read once, then each period of the run with [`GridSums::within`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GridSums {
    /// Each panel's rows, in time order.
    by_panel: BTreeMap<String, Vec<GridStep>>,
}

/// One row of a [`GridSums`]: 32 bytes, where a time and a [`Load`] take 64 (a year of
/// time-of-use windows of 1 000 panels is hundreds of thousands of rows, BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq)]
struct GridStep {
    /// The step's start, epoch milliseconds.
    time_ms: i64,
    /// Its usage, estimated part and largest bucket, nano-kWh.
    usage: i64,
    estimated: i64,
    peak: i64,
}

impl GridStep {
    fn load(self) -> Load {
        let nano = |value: i64| Usage::from_nano_kwh(value.into());
        Load {
            energy: Energy {
                usage: nano(self.usage),
                estimated: nano(self.estimated),
            },
            peak: nano(self.peak),
        }
    }
}

impl GridSums {
    /// No rows.
    pub const EMPTY: GridSums = GridSums {
        by_panel: BTreeMap::new(),
    };

    /// Each panel's energy and largest bucket in `part`: its rows stamped within `part` added
    /// up (panels without one are left out). Two binary searches per panel find the rows, and
    /// only those are read: the periods of a run do not overlap, so reading all of them reads
    /// each row once, however many periods the run has.
    pub fn within(&self, part: Period) -> BTreeMap<String, Load> {
        let (from, to) = (part.start.timestamp_millis(), part.end.timestamp_millis());
        self.by_panel
            .iter()
            .filter_map(|(panel, rows)| {
                let first = rows.partition_point(|row| row.time_ms < from);
                let end = rows.partition_point(|row| row.time_ms < to);
                let rows = rows.get(first..end).filter(|rows| !rows.is_empty())?;
                let load = rows
                    .iter()
                    .fold(Load::ZERO, |load, row| load.join(row.load()));
                Some((panel.clone(), load))
            })
            .collect()
    }
}

/// One row of a [`usage_sums_by_grid`] or [`usage_rows`] result, read straight from the answer
/// with [`energy_influx::InfluxClient::query_rows_ns`]: the step's start (epoch nanoseconds),
/// then its usage, estimated part and largest bucket (nano-kWh). 56 bytes as read, where the
/// same row as generic JSON values took about 300: a year of time-of-use windows of 1 000 panels is
/// hundreds of thousands of rows (BENCHMARKS.md).
pub type GridRow = (i64, Lenient<i64>, Lenient<i64>, Lenient<i64>);

/// The result of [`usage_sums_by_grid`] (or [`usage_rows`]), every row (a row without a usage
/// is skipped, as in [`parse_usage_sums_at`]).
pub fn grid_sums(result: &Rows<GridRow>) -> GridSums {
    let mut sums = GridSums::default();
    for series in &result.series {
        let Some(panel) = series.tags.get("panel").filter(|p| !p.is_empty()) else {
            continue;
        };
        let rows = sums.by_panel.entry(panel.clone()).or_default();
        rows.reserve_exact(series.values.len());
        rows.extend(
            series
                .values
                .iter()
                .filter_map(|(time_ns, usage, estimated, peak)| {
                    Some(GridStep {
                        time_ms: time_ns.div_euclid(1_000_000),
                        usage: usage.get()?,
                        estimated: estimated.get().unwrap_or(0),
                        peak: peak.get().unwrap_or(0),
                    })
                }),
        );
    }
    // InfluxDB sends each series in time order; the binary searches must be able to rely on it.
    for rows in sums.by_panel.values_mut() {
        rows.sort_by_key(|row| row.time_ms);
    }
    sums
}

/// The rows of a [`usage_sum_per_bucket`] result: (bucket start in epoch milliseconds, usage).
pub fn parse_sums_by_time(result: &StatementResult) -> Vec<(i64, Usage)> {
    result
        .series
        .iter()
        .flat_map(|series| {
            (0..series.values.len()).filter_map(|row| {
                let usage = Usage::from_nano_kwh(series.i64_at(row, "usage")?.into());
                Some((series.time_ms_at(row)?, usage))
            })
        })
        .collect()
}

/// Every row of every series of the result of [`raw_readings`] as points per panel, in time
/// order.
pub fn parse_raw_readings(result: &StatementResult) -> BTreeMap<String, Vec<EnergyPoint>> {
    result
        .series
        .iter()
        .filter_map(|series| {
            let points = (0..series.values.len())
                .filter_map(|row| {
                    Some(EnergyPoint {
                        time: time_of(series, row)?,
                        energy_kwh: series.f64_at(row, "energy_kwh")?,
                    })
                })
                .collect();
            Some((panel_of(series)?.to_owned(), points))
        })
        .collect()
}

/// The valid panel ids in the result of [`known_panels`] (the tag value is the second column).
pub fn parse_known_panels(result: &StatementResult) -> Vec<PanelId> {
    result
        .series
        .iter()
        .flat_map(|s| &s.values)
        .filter_map(|row| row.get(1)?.as_str().and_then(|v| PanelId::parse(v).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn panels() -> Vec<String> {
        vec!["A".to_owned(), "b'c".to_owned()]
    }

    #[test]
    fn a_raw_read_is_one_bounded_statement() {
        let period = Period {
            start: at("2026-11-26T17:00:00Z"),
            end: at("2026-11-26T17:07:30Z"),
        };
        assert!(raw_readings(period).contains(
            "WHERE time >= '2026-11-26T17:00:00.000000000Z' AND time < '2026-11-26T17:07:30.000000000Z' GROUP BY panel"
        ));
    }

    /// The texts are the api-server's cache keys: they change only on purpose.
    #[test]
    fn the_statement_texts_are_as_they_always_were() {
        let period = Period {
            start: at("2026-10-31T17:00:00Z"),
            end: at("2026-11-01T00:00:00Z"),
        };
        let start = at("2026-11-27T05:15:00Z");
        // Eight Jakarta days, and a Kolkata day.
        let run = Period {
            start: at("2026-10-31T17:00:00Z"),
            end: at("2026-11-08T17:00:00Z"),
        };
        let kolkata = Period {
            start: at("2026-10-31T18:30:00Z"),
            end: at("2026-11-01T18:30:00Z"),
        };
        let cases = [
            (
                recent_readings(start),
                "SELECT power_kw, energy_kwh FROM energy_data WHERE time >= '2026-11-27T05:15:00.000000000Z' GROUP BY panel",
            ),
            (
                panel_tag_values(),
                "SHOW TAG VALUES FROM energy_data WITH KEY = panel",
            ),
            (
                latest_within_lookback(&panels()),
                "SELECT power_kw, energy_kwh FROM energy_data WHERE time >= now() - 1d AND (panel = 'A' OR panel = 'b\\'c') GROUP BY panel ORDER BY time DESC LIMIT 1",
            ),
            (
                latest_unbounded(&panels()),
                "SELECT power_kw, energy_kwh FROM energy_data WHERE (panel = 'A' OR panel = 'b\\'c') GROUP BY panel ORDER BY time DESC LIMIT 1",
            ),
            (
                reading_before_within_lookback(start, &panels()),
                "SELECT energy_kwh FROM energy_data WHERE time >= '2026-11-26T05:15:00.000000000Z' AND time < '2026-11-27T05:15:00.000000000Z' AND (panel = 'A' OR panel = 'b\\'c') GROUP BY panel ORDER BY time DESC LIMIT 1",
            ),
            (
                reading_before_unbounded(start, &panels()),
                "SELECT energy_kwh FROM energy_data WHERE time < '2026-11-27T05:15:00.000000000Z' AND (panel = 'A' OR panel = 'b\\'c') GROUP BY panel ORDER BY time DESC LIMIT 1",
            ),
            (
                day_power(period),
                "SELECT max(power_kw) AS peak, mean(power_kw) AS mean FROM energy_data WHERE time >= '2026-10-31T17:00:00.000000000Z' AND time < '2026-11-01T00:00:00.000000000Z' GROUP BY panel",
            ),
            (
                usage_sums("energy_usage_15m", period),
                "SELECT sum(usage_nkwh) AS usage, sum(estimated_nkwh) AS estimated, max(peak_nkwh) AS peak FROM energy_usage_15m WHERE time >= '2026-10-31T17:00:00.000000000Z' AND time < '2026-11-01T00:00:00.000000000Z' GROUP BY panel",
            ),
            (
                raw_readings(period),
                "SELECT energy_kwh FROM energy_data WHERE time >= '2026-10-31T17:00:00.000000000Z' AND time < '2026-11-01T00:00:00.000000000Z' GROUP BY panel",
            ),
            (
                known_panels(),
                "SHOW TAG VALUES FROM energy_data WITH KEY = \"panel\"",
            ),
            (
                earliest_reading(),
                "SELECT energy_kwh FROM energy_data ORDER BY time ASC LIMIT 1",
            ),
            (
                reading_after_within_lookahead(start, &panels()),
                "SELECT energy_kwh FROM energy_data WHERE time >= '2026-11-27T05:15:00.000000000Z' AND time < '2026-11-28T05:15:00.000000000Z' AND (panel = 'A' OR panel = 'b\\'c') GROUP BY panel ORDER BY time ASC LIMIT 1",
            ),
            (
                reading_after_unbounded(start, &panels()),
                "SELECT energy_kwh FROM energy_data WHERE time >= '2026-11-27T05:15:00.000000000Z' AND (panel = 'A' OR panel = 'b\\'c') GROUP BY panel ORDER BY time ASC LIMIT 1",
            ),
            (
                first_reading_from(start, ""),
                "SELECT energy_kwh FROM energy_data WHERE time >= '2026-11-27T05:15:00.000000000Z' GROUP BY panel ORDER BY time ASC LIMIT 1",
            ),
            (
                every_reading_before(start),
                "SELECT energy_kwh FROM energy_data WHERE time < '2026-11-27T05:15:00.000000000Z' GROUP BY panel ORDER BY time DESC LIMIT 1",
            ),
            (
                usage_sums_by_day("energy_usage_15m", run),
                "SELECT sum(usage_nkwh) AS usage, sum(estimated_nkwh) AS estimated, max(peak_nkwh) AS peak FROM energy_usage_15m WHERE time >= '2026-10-31T17:00:00.000000000Z' AND time < '2026-11-08T17:00:00.000000000Z' GROUP BY time(1d, 61200s), panel fill(none)",
            ),
            (
                usage_sums_by_grid("energy_usage_15m", run, 86_400),
                "SELECT sum(usage_nkwh) AS usage, sum(estimated_nkwh) AS estimated, max(peak_nkwh) AS peak FROM energy_usage_15m WHERE time >= '2026-10-31T17:00:00.000000000Z' AND time < '2026-11-08T17:00:00.000000000Z' GROUP BY time(1d, 61200s), panel fill(none)",
            ),
            (
                usage_sums_by_grid("energy_usage_15m", run, 3_600),
                "SELECT sum(usage_nkwh) AS usage, sum(estimated_nkwh) AS estimated, max(peak_nkwh) AS peak FROM energy_usage_15m WHERE time >= '2026-10-31T17:00:00.000000000Z' AND time < '2026-11-08T17:00:00.000000000Z' GROUP BY time(3600s, 0s), panel fill(none)",
            ),
            (
                usage_sums_by_grid("energy_usage_15m", kolkata, 3_600),
                "SELECT sum(usage_nkwh) AS usage, sum(estimated_nkwh) AS estimated, max(peak_nkwh) AS peak FROM energy_usage_15m WHERE time >= '2026-10-31T18:30:00.000000000Z' AND time < '2026-11-01T18:30:00.000000000Z' GROUP BY time(3600s, 1800s), panel fill(none)",
            ),
            (
                usage_sums_by_grid("energy_usage_15m", kolkata, 900),
                "SELECT sum(usage_nkwh) AS usage, sum(estimated_nkwh) AS estimated, max(peak_nkwh) AS peak FROM energy_usage_15m WHERE time >= '2026-10-31T18:30:00.000000000Z' AND time < '2026-11-01T18:30:00.000000000Z' GROUP BY time(900s, 0s), panel fill(none)",
            ),
        ];
        for (statement, expected) in cases {
            assert_eq!(statement, expected);
        }
    }

    fn result(value: serde_json::Value) -> StatementResult {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn results_are_read_per_panel_skipping_what_is_incomplete() {
        let readings = result(serde_json::json!({
            "series": [
                {"name": "energy_data", "tags": {"panel": "A"},
                 "columns": ["time", "power_kw", "energy_kwh"],
                 "values": [[1000, 2.0, 10.0], [2000, null, 11.0], [3000, 3.0, 12.0]]},
                {"name": "energy_data", "tags": {"panel": "B"},
                 "columns": ["time", "power_kw", "energy_kwh"], "values": [[1000, null, 5.0]]},
                {"name": "energy_data", "tags": {"panel": ""},
                 "columns": ["time", "power_kw", "energy_kwh"], "values": [[1000, 1.0, 5.0]]}
            ]
        }));
        let recent = parse_recent_readings(&readings);
        let a = Latest {
            time: Utc.timestamp_millis_opt(3000).unwrap(),
            power_kw: 3.0,
            energy_kwh: 12.0,
        };
        assert_eq!(recent.latest, BTreeMap::from([("A".to_owned(), a.clone())]));
        assert_eq!(recent.points["A"].len(), 2);
        assert_eq!(recent.points["B"], Vec::new());
        assert_eq!(parse_latest(&readings)["A"].energy_kwh, 10.0);
        assert_eq!(parse_reading_before(&readings)["B"].energy_kwh, 5.0);
        assert_eq!(parse_raw_readings(&readings)["A"].len(), 3);

        let tags = result(serde_json::json!({
            "series": [{"name": "energy_data", "columns": ["key", "value"],
                        "values": [["panel", "A"], ["panel", "not a valid id!"]]}]
        }));
        assert_eq!(parse_panel_tag_values(&tags), vec!["A", "not a valid id!"]);
        assert_eq!(
            parse_known_panels(&tags),
            vec![PanelId::parse("A").unwrap()]
        );

        let power = result(serde_json::json!({
            "series": [
                {"name": "energy_data", "tags": {"panel": "A"},
                 "columns": ["time", "peak", "mean"], "values": [[0, 4.0, 2.5]]},
                {"name": "energy_data", "tags": {"panel": "B"},
                 "columns": ["time", "peak", "mean"], "values": [[0, null, null]]}
            ]
        }));
        assert_eq!(
            parse_day_power(&power),
            BTreeMap::from([(
                "A".to_owned(),
                PowerStats {
                    peak_power_kw: 4.0,
                    avg_power_kw: 2.5
                }
            )])
        );

        let sums = result(serde_json::json!({
            "series": [{"name": "energy_usage_15m", "tags": {"panel": "A"},
                        "columns": ["time", "usage", "estimated", "peak"],
                        "values": [[0, 1_500_000_000_i64, 500_000_000_i64, 250_000_000_i64]]},
                       {"name": "energy_usage_15m", "tags": {"panel": "B"},
                        "columns": ["time", "usage", "estimated", "peak"],
                        "values": [[0, 7_i64, null, null]]}]
        }));
        let a = Load {
            energy: Energy {
                usage: Usage::from_kwh(1.5),
                estimated: Usage::from_kwh(0.5),
            },
            peak: Usage::from_kwh(0.25),
        };
        assert_eq!(parse_usage_sums(&sums)["A"], a);
        // A sum without an estimated part or a peak has none.
        assert_eq!(parse_usage_sums(&sums)["B"].energy.estimated, Usage::ZERO);
        assert_eq!(parse_usage_sums(&sums)["B"].peak, Usage::ZERO);
    }

    #[test]
    fn a_grid_result_is_read_once_and_summed_per_period() {
        let hour = |h: i64| h * 3_600_000;
        // The answer, times in `unit`s of a millisecond (1 as parse_usage_sums_at reads
        // them, 1 000 000 as grid_sums does). Hourly rows, the second series sent out of
        // order, one row without a usage and one whose usage is no integer.
        let answer = |unit: i64| {
            let row = |h: i64, usage: i64, estimated: i64, peak: i64| {
                serde_json::json!([hour(h) * unit, usage, estimated, peak])
            };
            let columns = serde_json::json!(["time", "usage", "estimated", "peak"]);
            serde_json::json!({
                "series": [
                    {"name": "energy_usage_15m", "tags": {"panel": "A"}, "columns": columns,
                     "values": [row(0, 10, 1, 4), row(1, 20, 0, 9), row(2, 30, 3, 8),
                                [hour(3) * unit, null, 5, 50], row(4, 40, 0, 12)]},
                    {"name": "energy_usage_15m", "tags": {"panel": "B"}, "columns": columns,
                     "values": [row(4, 7, 7, 7), row(1, 5, 0, 2), [hour(2) * unit, "x", 1, 1]]},
                    {"name": "energy_usage_15m", "tags": {"panel": ""}, "columns": columns,
                     "values": [row(0, 1, 1, 1)]}
                ]
            })
        };
        let rows: Rows<GridRow> = serde_json::from_value(answer(1_000_000)).unwrap();
        let grid = result(answer(1));
        let sums = grid_sums(&rows);
        let hours = |from: i64, to: i64| Period {
            start: Utc.timestamp_millis_opt(hour(from)).unwrap(),
            end: Utc.timestamp_millis_opt(hour(to)).unwrap(),
        };
        let load = |usage: i64, estimated: i64, peak: i64| Load {
            energy: Energy {
                usage: Usage::from_nano_kwh(usage.into()),
                estimated: Usage::from_nano_kwh(estimated.into()),
            },
            peak: Usage::from_nano_kwh(peak.into()),
        };
        // Rows stamped within the period, its end excluded.
        assert_eq!(
            sums.within(hours(0, 2)),
            BTreeMap::from([
                ("A".to_owned(), load(30, 1, 9)),
                ("B".to_owned(), load(5, 0, 2)),
            ])
        );
        // The row without a usage counts for nothing; a panel without a row is left out.
        assert_eq!(
            sums.within(hours(2, 4)),
            BTreeMap::from([("A".to_owned(), load(30, 3, 8))])
        );
        assert_eq!(
            sums.within(hours(3, 5))["B"],
            load(7, 7, 7),
            "B's rows read in time order"
        );
        assert_eq!(sums.within(hours(5, 9)), BTreeMap::new());
        // A day's row is the day's sum, as parse_usage_sums_at reads it.
        for at in [0, 1, 4] {
            assert_eq!(
                sums.within(hours(at, at + 1)),
                parse_usage_sums_at(&grid, Utc.timestamp_millis_opt(hour(at)).unwrap())
            );
        }
    }
}
