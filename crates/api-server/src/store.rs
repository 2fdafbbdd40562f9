//! What the API reads from InfluxDB, as InfluxQL pushed down as far as it goes.
//!
//! Usage for a period is computed in two parts that together are exactly the pair rule of
//! CONTRACT §5 (implemented in `energy_core::usage`):
//! - the pairs inside the period are summed by InfluxDB: `difference()` gives each increase,
//!   `difference() / elapsed()` its rate, and the outer query keeps the positive increases whose
//!   rate is within `MAX_POWER_KW`, with the same threshold the core uses;
//! - the one pair that straddles the start (the last reading before the period and the first
//!   in it) is fetched and computed here, because InfluxDB 1.x pushes the time bound into the
//!   subquery and drops that pair.
//!
//! Only a few numbers per panel and period cross the wire, never the raw points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use energy_core::influxql::time_literal;
use energy_core::usage::{max_kwh_per_nanosecond, pair_contribution};
use energy_core::{EnergyPoint, Period, Usage, MEASUREMENT};
use energy_influx::{InfluxClient, InfluxError, Series, StatementResult};

use crate::cache::QueryCache;

/// The latest reading of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    pub time: DateTime<Utc>,
    pub power_kw: f64,
    pub energy_kwh: f64,
}

/// A panel's readings in one day: its latest and its power statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct DayStats {
    pub latest: Latest,
    pub peak_power_kw: f64,
    pub avg_power_kw: f64,
}

/// Per panel, sorted by id.
pub type ByPanel<T> = BTreeMap<String, T>;

pub struct Store {
    influx: InfluxClient,
    max_power_kw: f64,
    cache: QueryCache<Vec<StatementResult>>,
}

/// The last instant InfluxDB 1.x can store (int64 nanoseconds): periods after it hold no data.
fn influx_time_limit() -> DateTime<Utc> {
    Utc.timestamp_nanos(i64::MAX)
}

impl Store {
    pub fn new(influx: InfluxClient, max_power_kw: f64, cache_ttl: Duration) -> Self {
        Self {
            influx,
            max_power_kw,
            cache: QueryCache::new(cache_ttl),
        }
    }

    pub async fn ping(&self) -> Result<(), InfluxError> {
        self.influx.ping().await
    }

    /// The latest reading of every panel that ever wrote one.
    pub async fn latest(&self) -> Result<ByPanel<Latest>, InfluxError> {
        let results = self.run(&[latest_statement(None)]).await?;
        Ok(parse_latest(&results[0]))
    }

    /// Every panel's latest reading, and the usage of the panels with data in each period.
    pub async fn latest_and_usage(
        &self,
        periods: &[Period],
    ) -> Result<(ByPanel<Latest>, ByPanel<Vec<Usage>>), InfluxError> {
        let mut statements = vec![latest_statement(None)];
        let queried = self.push_usage_statements(periods, &mut statements);
        // InfluxDB runs the statements of one request one after another, and each period's
        // sum scans that period's points: send the latest readings and each period as
        // requests of their own, so they run side by side.
        let (latest, per_period) = statements.split_at(1);
        let requests = std::iter::once(latest).chain(per_period.chunks(3));
        let answers = futures_util::future::try_join_all(requests.map(|s| self.run(s))).await?;
        let results: Vec<StatementResult> =
            answers.iter().flat_map(|a| a.iter().cloned()).collect();
        let latest = parse_latest(&results[0]);
        let usage = self.combine_usage(periods, &queried, &results[1..]);
        Ok((latest, usage))
    }

    /// Usage and statistics of the panels that have readings in `day`.
    pub async fn day_summary(
        &self,
        day: Period,
    ) -> Result<(ByPanel<DayStats>, ByPanel<Usage>), InfluxError> {
        let mut statements = vec![
            latest_statement(Some(day)),
            format!(
                "SELECT max(power_kw) AS peak, mean(power_kw) AS mean FROM {MEASUREMENT} \
                 WHERE {} GROUP BY panel",
                time_range(day)
            ),
        ];
        let queried = self.push_usage_statements(&[day], &mut statements);
        let results = self.run(&statements).await?;
        let latest = parse_latest(&results[0]);
        let power = &results[1];
        let mut stats = ByPanel::new();
        for series in &power.series {
            let Some(panel) = panel_of(series) else {
                continue;
            };
            let (Some(latest), Some(peak), Some(mean)) = (
                latest.get(panel),
                series.f64_at(0, "peak"),
                series.f64_at(0, "mean"),
            ) else {
                continue;
            };
            stats.insert(
                panel.to_owned(),
                DayStats {
                    latest: latest.clone(),
                    peak_power_kw: peak,
                    avg_power_kw: mean,
                },
            );
        }
        let usage = self
            .combine_usage(&[day], &queried, &results[2..])
            .into_iter()
            .map(|(panel, usage)| (panel, usage[0]))
            .collect();
        Ok((stats, usage))
    }

    /// Runs `statements` as one request, through the cache (see `cache`).
    async fn run(&self, statements: &[String]) -> Result<Arc<Vec<StatementResult>>, InfluxError> {
        let query = statements.join(";\n");
        self.cache
            .get_or_try(&query, || async {
                match self.influx.query(&query).await {
                    Ok(mut results) => {
                        // InfluxDB omits nothing, but be strict: one result per statement.
                        results.resize_with(statements.len(), StatementResult::default);
                        Ok(results)
                    }
                    // Nothing written yet (the subscriber creates the database on its first
                    // start).
                    Err(InfluxError::Status { message, .. })
                        if message.contains("database not found") =>
                    {
                        Ok(statements
                            .iter()
                            .map(|_| StatementResult::default())
                            .collect())
                    }
                    Err(error) => Err(error),
                }
            })
            .await
    }

    /// Appends three statements per period that can hold data; returns which periods those are.
    fn push_usage_statements(&self, periods: &[Period], statements: &mut Vec<String>) -> Vec<bool> {
        let limit = influx_time_limit();
        periods
            .iter()
            .map(|period| {
                if period.start >= limit || period.start >= period.end {
                    return false;
                }
                let period = Period {
                    start: period.start,
                    end: period.end.min(limit),
                };
                statements.extend(usage_statements(period, self.max_power_kw));
                true
            })
            .collect()
    }

    fn combine_usage(
        &self,
        periods: &[Period],
        queried: &[bool],
        results: &[StatementResult],
    ) -> ByPanel<Vec<Usage>> {
        let mut usage: ByPanel<Vec<Usage>> = ByPanel::new();
        let mut results = results.chunks(3);
        for (index, _) in periods.iter().enumerate().filter(|(i, _)| queried[*i]) {
            let Some([inside, first, before]) = results.next() else {
                break;
            };
            let inside = parse_numbers(inside, "usage");
            let first = parse_points(first);
            let before = parse_points(before);
            for (panel, first) in &first {
                let mut total = Usage::from_kwh(inside.get(panel).copied().unwrap_or(0.0));
                if let Some(before) = before.get(panel) {
                    total += pair_contribution(*before, *first, self.max_power_kw);
                }
                usage
                    .entry(panel.clone())
                    .or_insert_with(|| vec![Usage::ZERO; periods.len()])[index] = total;
            }
        }
        usage
    }
}

fn time_range(period: Period) -> String {
    format!(
        "time >= {} AND time < {}",
        time_literal(period.start),
        time_literal(period.end)
    )
}

/// The latest reading per panel, overall or within `period`.
fn latest_statement(period: Option<Period>) -> String {
    let bound = period
        .map(|p| format!(" WHERE {}", time_range(p)))
        .unwrap_or_default();
    format!(
        "SELECT power_kw, energy_kwh FROM {MEASUREMENT}{bound} GROUP BY panel ORDER BY time DESC LIMIT 1"
    )
}

/// The sum of the period's inner pairs, its first reading, and the last reading before it.
fn usage_statements(period: Period, max_power_kw: f64) -> [String; 3] {
    let range = time_range(period);
    // Display never uses exponent notation, which InfluxQL would not parse.
    let max_rate = max_kwh_per_nanosecond(max_power_kw);
    [
        format!(
            "SELECT sum(increase) AS usage FROM (SELECT difference(energy_kwh) AS increase, \
             difference(energy_kwh) / elapsed(energy_kwh, 1ns) AS rate FROM {MEASUREMENT} \
             WHERE {range} GROUP BY panel) WHERE increase > 0 AND rate <= {max_rate} GROUP BY panel"
        ),
        format!("SELECT energy_kwh FROM {MEASUREMENT} WHERE {range} GROUP BY panel ORDER BY time ASC LIMIT 1"),
        format!(
            "SELECT energy_kwh FROM {MEASUREMENT} WHERE time < {} GROUP BY panel ORDER BY time DESC LIMIT 1",
            time_literal(period.start)
        ),
    ]
}

fn panel_of(series: &Series) -> Option<&str> {
    series.tag("panel").filter(|p| !p.is_empty())
}

fn time_of(series: &Series, row: usize) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(series.time_ms_at(row)?).single()
}

fn parse_latest(result: &StatementResult) -> ByPanel<Latest> {
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

fn parse_points(result: &StatementResult) -> ByPanel<EnergyPoint> {
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

fn parse_numbers(result: &StatementResult, column: &str) -> ByPanel<f64> {
    result
        .series
        .iter()
        .filter_map(|series| Some((panel_of(series)?.to_owned(), series.f64_at(0, column)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_statements_bound_every_scan_and_carry_the_glitch_threshold() {
        let period = Period {
            start: "2026-11-26T17:00:00Z".parse().unwrap(),
            end: "2026-11-27T17:00:00Z".parse().unwrap(),
        };
        let [inside, first, before] = usage_statements(period, 3600.0);
        assert!(inside.contains("WHERE time >= '2026-11-26T17:00:00.000000000Z' AND time < '2026-11-27T17:00:00.000000000Z' GROUP BY panel)"));
        assert!(
            inside.contains("rate <= 0.000000001 GROUP BY panel"),
            "{inside}"
        );
        assert!(first.contains("ORDER BY time ASC LIMIT 1"));
        assert!(before.contains("WHERE time < '2026-11-26T17:00:00.000000000Z'"));
    }
}
