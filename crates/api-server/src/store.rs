//! What the API reads from InfluxDB, as InfluxQL pushed down as far as it goes.
//!
//! Usage for a period is computed in two parts that together are exactly the pair rule of
//! docs/accounting.md (implemented in `energy_core::usage`):
//! - the pairs inside the period are summed by InfluxDB: `difference()` gives each increase,
//!   `difference() / elapsed()` its rate, and the outer query keeps the positive increases whose
//!   rate is within `MAX_POWER_KW`, with the same threshold the core uses;
//! - the one pair that straddles the start (the last reading before the period and the first
//!   in it) is fetched and computed here, because InfluxDB 1.x pushes the time bound into the
//!   subquery and drops that pair.
//!
//! Only a few numbers per panel and period cross the wire, never the raw points.
//!
//! Scanning raw points grows with history (a month of 100 panels at one reading a minute is
//! 4.3 M points), so whole UTC months, whole UTC days and whole 15-minute buckets are read from
//! the usage rollup the subscriber keeps (`energy_core::rollup`), up to the instant it records as
//! complete; only the rest (normally the last seconds, plus the unaligned ends of a period in a
//! historical time zone) is computed from raw readings as above. A local month is a UTC month
//! plus or minus the buckets between their boundaries, so a year is a dozen month sums and one
//! run of buckets per boundary (shared by the two months it separates), whatever the history.
//! Many consecutive periods (a month's days, or a month cut into time-of-use windows) are read
//! in runs of up to eight days instead: one statement per run sums the buckets (or the hour
//! sums, when the run lies on whole UTC hours) of each step of a grid every period of the run
//! starts and ends on (see [`grid_runs`]).
//! The rollup is used only if it was computed with this server's `MAX_POWER_KW`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use energy_core::rollup::{
    self, Coverage, DAY_MEASUREMENT, HOUR_MEASUREMENT, MONTH_MEASUREMENT, QUARTER_MEASUREMENT,
};
use energy_core::usage::{load_in, quarters_of, usage_in};
use energy_core::{Energy, EnergyPoint, Load, Period, Rules, Usage};
use energy_influx::{InfluxClient, InfluxError, StatementResult};
use energy_rollup::queries::{self, GridSums, Recent};

use crate::cache::QueryCache;
use crate::ledger::Ledger;
use crate::settings::Settings;

pub use energy_rollup::queries::Latest;

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
    rules: Rules,
    cache: QueryCache<Vec<StatementResult>>,
    /// The runs' rows (see [`GridRun`]), read straight into their sums: a month of hourly
    /// time-of-use windows is a few hundred rows per panel and run, read by a few dozen periods.
    grids: QueryCache<Vec<GridSums>>,
    /// Whether a rollup computed with other rules (or an earlier rule) was already reported.
    mismatch_logged: AtomicBool,
    /// How far behind now the rollup may be and still be used (`ROLLUP_STALE_SECS`).
    rollup_stale: chrono::Duration,
    /// Whether the server is answering without the rollup because it is stale (said once).
    stale_logged: AtomicBool,
    /// Exact sums computed here, for when there is no usable rollup.
    ledger: Ledger,
}

/// Where one part of a period's usage is read from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Piece {
    /// Raw readings (a part shorter than a bucket): one request reads them, with each panel's
    /// reading before and after the part, and the pairs are spread here.
    Raw(Period),
    /// A rollup measurement's sums: one statement.
    Rollup(&'static str, Period),
    /// Buckets of the ledger (see `crate::ledger`), held in memory: no statement.
    Ledger(Period),
    /// Buckets subtracted (a month sum's part outside the period): one statement, the same as
    /// the [`Piece::Rollup`] that adds them to the neighbouring period.
    Less(Period),
    /// The part after the rollup, computed from the recent readings (see [`Recent`]): no
    /// statement of its own.
    Tail(Period),
    /// One period (`part`) of a run of consecutive periods that the rollup covers, all read by
    /// one statement that sums the buckets of each step of the run's grid (see [`grid_runs`]).
    OfRun { run: GridRun, part: Period },
    /// Whole UTC days of the rollup (`part`), read from the rows of every day in `span`, which
    /// the day pieces of all the periods of one answer share (see [`share_day_rows`]).
    DaysWithin { span: Period, part: Period },
}

/// The pieces of one period, each with the statements that read it.
struct PeriodPlan {
    index: usize,
    pieces: Vec<(Piece, Vec<String>)>,
}

impl Piece {
    fn statements(self) -> Vec<String> {
        match self {
            Piece::Raw(period) => vec![
                queries::raw_readings(period),
                queries::last_reading_before(period.start, ""),
                queries::first_reading_from(period.end, ""),
            ],
            Piece::Tail(_) | Piece::Ledger(_) => Vec::new(),
            Piece::Rollup(measurement, period) => vec![queries::usage_sums(measurement, period)],
            Piece::OfRun { run, .. } => vec![run.statement()],
            Piece::DaysWithin { span, .. } => vec![queries::usage_rows(DAY_MEASUREMENT, span)],
            Piece::Less(period) => vec![queries::usage_sums(QUARTER_MEASUREMENT, period)],
        }
    }

    /// The usage per panel with rollup sums in the piece (negative for [`Piece::Less`], whose
    /// peak is that of the buckets it takes away: see [`Store::combine_usage`]), from its
    /// statement's results. A run's pieces are read from [`Answers::grid`] instead.
    fn usage(self, results: &[&StatementResult]) -> ByPanel<Load> {
        match self {
            Piece::Raw(_) | Piece::Tail(_) | Piece::Ledger(_) | Piece::OfRun { .. } => {
                ByPanel::new()
            }
            Piece::DaysWithin { part, .. } => results
                .iter()
                .flat_map(|r| queries::parse_usage_rows_within(r, part))
                .collect(),
            Piece::Rollup(..) | Piece::Less(_) => results
                .iter()
                .flat_map(|r| queries::parse_usage_sums(r))
                .map(|(panel, load)| match self {
                    Piece::Less(_) => (
                        panel,
                        Load {
                            energy: Energy::ZERO - load.energy,
                            peak: load.peak,
                        },
                    ),
                    _ => (panel, load),
                })
                .collect(),
        }
    }
}

/// Where the sums before `complete_until` come from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Rollup(Coverage),
    Ledger(Coverage),
}

impl Source {
    fn coverage(self) -> Coverage {
        match self {
            Source::Rollup(c) | Source::Ledger(c) => c,
        }
    }

    /// This source without month sums (see [`Store::latest_and_loads`]).
    fn without_months(self) -> Source {
        match self {
            Source::Rollup(c) => Source::Rollup(Coverage { months: false, ..c }),
            other => other,
        }
    }
}

/// The pieces of `period`: sums before the source's `complete_until` (if any), raw elsewhere;
/// the raw parts from there on from the recent readings.
fn pieces(period: Period, source: Option<Source>) -> Vec<Piece> {
    let coverage = source.map(Source::coverage);
    let split = rollup::split(period, coverage);
    let tail_start = coverage.map(|c| rollup::bucket_start(c.complete_until));
    let ledger = matches!(source, Some(Source::Ledger(_)));
    let sums = move |measurement: &'static str, p: Period| {
        if ledger {
            Piece::Ledger(p)
        } else {
            Piece::Rollup(measurement, p)
        }
    };
    let quarters = split
        .quarters
        .into_iter()
        .map(move |p| sums(QUARTER_MEASUREMENT, p));
    let days = split
        .days
        .into_iter()
        .map(move |p| sums(DAY_MEASUREMENT, p));
    let months = split.months.map(|p| Piece::Rollup(MONTH_MEASUREMENT, p));
    let less = split.less_quarters.into_iter().map(Piece::Less);
    split
        .raw
        .into_iter()
        // Everything from the rollup's end on (this month's rest, later months) is among the
        // recent readings, which have no upper bound: no statement of its own. (A raw
        // statement over an empty future range still costs InfluxDB 1.6 over half a second.)
        .map(|raw| match tail_start {
            Some(start) if raw.start >= start => Piece::Tail(raw),
            _ => Piece::Raw(raw),
        })
        .chain(quarters)
        .chain(days)
        .chain(months)
        .chain(less)
        .collect()
}

/// Makes the day-sum pieces of several periods read one statement: every day row of the span
/// they cover together. A year of months read with their largest quarter hour (no month sums)
/// has a run of days per month, and InfluxDB opens every storage shard (a week each, by
/// default) a statement crosses, for each panel: one statement crosses each shard once.
fn share_day_rows(plans: &mut [PeriodPlan]) {
    let parts: Vec<Period> = plans
        .iter()
        .flat_map(|plan| plan.pieces.iter())
        .filter_map(|(piece, _)| match piece {
            Piece::Rollup(DAY_MEASUREMENT, part) => Some(*part),
            _ => None,
        })
        .collect();
    let (Some(start), Some(end)) = (
        parts.iter().map(|p| p.start).min(),
        parts.iter().map(|p| p.end).max(),
    ) else {
        return;
    };
    if parts.len() < 2 {
        return;
    }
    let span = Period { start, end };
    for (piece, _) in plans.iter_mut().flat_map(|plan| plan.pieces.iter_mut()) {
        if let Piece::Rollup(DAY_MEASUREMENT, part) = *piece {
            *piece = Piece::DaysWithin { span, part };
        }
    }
}

/// A run of consecutive periods that the rollup covers, read by one statement: the sums of the
/// buckets of each step of `grid_secs` seconds from `span.start` (see [`grid_runs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GridRun {
    /// From the first period's start to the last one's end.
    span: Period,
    /// The greatest common divisor of the periods' lengths, in seconds: every period of the
    /// run starts and ends on a step, so it is the sum of its steps' rows.
    grid_secs: i64,
    /// Whether the steps are whole UTC hours of a rollup that keeps hour sums, read from those
    /// (a quarter of the rows) rather than from the buckets.
    hourly: bool,
}

impl GridRun {
    /// The one statement that reads every period of the run. A grid of an hour over the hour
    /// sums is their rows as stored: InfluxDB 1.6 spends about as much on each window of a
    /// `GROUP BY time` (per aggregate) as on each row it returns, so a month cut at local hours
    /// costs a quarter of what summing its buckets per hour did (docs/tariffs.md, "How fast it
    /// is").
    fn statement(&self) -> String {
        match (self.hourly, self.grid_secs) {
            (true, rollup::HOUR_SECS) => queries::usage_rows(HOUR_MEASUREMENT, self.span),
            (true, grid) => queries::usage_sums_by_grid(HOUR_MEASUREMENT, self.span, grid),
            (false, grid) => queries::usage_sums_by_grid(QUARTER_MEASUREMENT, self.span, grid),
        }
    }
}

/// For each of `periods`, the run it belongs to, if any: a run is two or more consecutive
/// periods (each starting where the one before ends) that start and end on a quarter hour and
/// end before the rollup's last whole bucket, so that one statement can sum the buckets of each
/// (`GROUP BY time(grid, offset)`, see [`queries::usage_sums_by_grid`]) instead of one or two
/// statements per period for the buckets on either side of UTC midnight. The grid is the
/// greatest common divisor of the periods' lengths: a day for a run of 24-hour days (as the
/// daily answer asks for), an hour for days cut at local hours into time-of-use windows or for
/// a run that holds a day of 23 or 25 hours, a quarter hour at the least (every length is a
/// whole number of quarter hours).
fn grid_runs(periods: &[Period], coverage: Coverage) -> Vec<Option<GridRun>> {
    // A month is cut into a few runs, whose statements InfluxDB runs side by side (one core
    // each) rather than one after another.
    const MAX_RUN_DAYS: i64 = 8;
    let max_span = chrono::Duration::days(MAX_RUN_DAYS);
    let covered = rollup::bucket_start(coverage.complete_until);
    let on_grain = |time: DateTime<Utc>| {
        time.timestamp().rem_euclid(rollup::GRAIN_SECS) == 0 && time.timestamp_subsec_nanos() == 0
    };
    let fits =
        |p: &Period| p.start < p.end && on_grain(p.start) && on_grain(p.end) && p.end <= covered;
    let mut out = vec![None; periods.len()];
    let mut index = 0;
    while index < periods.len() {
        let mut end = index;
        while fits(&periods[index])
            && end + 1 < periods.len()
            && fits(&periods[end + 1])
            && periods[end + 1].start == periods[end].end
            && periods[end + 1].end - periods[index].start <= max_span
        {
            end += 1;
        }
        if end > index {
            let span = Period {
                start: periods[index].start,
                end: periods[end].end,
            };
            let grid_secs = periods[index..=end]
                .iter()
                .map(|p| (p.end - p.start).num_seconds())
                .fold(0, gcd);
            let on_hours = |secs: i64| secs.rem_euclid(rollup::HOUR_SECS) == 0;
            let hourly = coverage.hours && on_hours(span.start.timestamp()) && on_hours(grid_secs);
            let run = GridRun {
                span,
                grid_secs,
                hourly,
            };
            for slot in &mut out[index..=end] {
                *slot = Some(run);
            }
        }
        index = end + 1;
    }
    out
}

/// The greatest common divisor of `a` and `b` (`b` when `a` is 0), for lengths, which are
/// positive.
fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The last instant InfluxDB 1.x can store (int64 nanoseconds): periods after it hold no data.
fn influx_time_limit() -> DateTime<Utc> {
    Utc.timestamp_nanos(i64::MAX)
}

/// Periods that start this long after now hold no reading: the subscriber refuses readings
/// more than five minutes ahead of its clock (a day leaves room for clocks that disagree).
/// Reading them anyway would cost InfluxDB 1.6 over half a second per raw statement, for
/// nothing.
const FUTURE_MARGIN_SECS: i64 = 86_400;

impl Store {
    /// A store over `influx` with `settings`' usage rules, `QUERY_CACHE_MS`,
    /// `ROLLUP_STALE_SECS` and the log's settle time (`Settings::log_settle`).
    pub fn new(influx: InfluxClient, settings: &Settings) -> Self {
        let rules = settings.rules();
        let ledger = Ledger::new(
            energy_rollup::Rollup::new(influx.clone(), rules),
            settings.log_settle(),
        );
        Self {
            influx,
            rules,
            cache: QueryCache::new(settings.query_cache()),
            grids: QueryCache::new(settings.query_cache()),
            rollup_stale: chrono::Duration::seconds(settings.rollup_stale_secs as i64),
            mismatch_logged: AtomicBool::new(false),
            stale_logged: AtomicBool::new(false),
            ledger,
        }
    }

    /// Where the sums of `periods` come from: the rollup if there is a usable one, the ledger
    /// otherwise (brought up to date and made to cover them), with the recent readings after
    /// the ledger's end, read meanwhile. (After a rollup, the caller reads them beside its sums.)
    async fn source(&self, periods: &[Period]) -> Result<(Source, Option<Recent>), InfluxError> {
        if let Some(coverage) = self.rollup_coverage().await? {
            return Ok((Source::Rollup(coverage), None));
        }
        let limit =
            influx_time_limit().min(Utc::now() + chrono::Duration::seconds(FUTURE_MARGIN_SECS));
        let from = periods
            .iter()
            .filter(|p| p.start < limit && p.start < p.end)
            .map(|p| p.start)
            .min()
            .unwrap_or_else(Utc::now);
        // The ledger ends at `until` or later, so readings from shortly before `until` on hold
        // everything after its end.
        let until = Ledger::until(Utc::now());
        let (coverage, recent) = futures_util::future::try_join(
            self.ledger.prepare(from, until),
            self.recent(Some(until)),
        )
        .await?;
        Ok((Source::Ledger(coverage), Some(recent)))
    }

    /// The recent readings after `source`'s end: `read` if already read, else read now.
    async fn recent_after(
        &self,
        source: Source,
        read: Option<Recent>,
    ) -> Result<Recent, InfluxError> {
        match read {
            Some(recent) => Ok(recent),
            None => self.recent(Some(source.coverage().complete_until)).await,
        }
    }

    /// What of the usage rollup may be used, if there is a rollup computed by the current rule
    /// with this server's `MAX_POWER_KW` and `ESTIMATE_AFTER_SECS`.
    async fn rollup_coverage(&self) -> Result<Option<Coverage>, InfluxError> {
        let results = self.run(&[energy_rollup::state_statement()]).await?;
        let Some(state) = results.first().and_then(energy_rollup::parse_state) else {
            return Ok(None);
        };
        if !state.computed_with(self.rules) {
            if !self.mismatch_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    rollup_max_power_kw = state.max_power_kw.kw(),
                    rollup_estimate_after_secs = state.estimate_after.map(|e| e.secs()),
                    rollup_format = state.format,
                    api_max_power_kw = self.rules.max_power_kw.kw(),
                    api_estimate_after_secs = self.rules.estimate_after.secs(),
                    "the usage rollup was computed with other MAX_POWER_KW or \
                     ESTIMATE_AFTER_SECS than this server's, or by an earlier rule (a rebuild \
                     under way): reading raw points instead (slower); give mqtt-subscriber the \
                     same values"
                );
            }
            return Ok(None);
        }
        // A writer records its progress every few seconds: a rollup far behind now has no
        // writer at work, and readings stored meanwhile for times it covers (a late backlog)
        // are not in its sums. The ledger reads them.
        let behind = Utc::now() - state.complete_until;
        if behind > self.rollup_stale {
            if !self.stale_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    complete_until = %state.complete_until,
                    behind_secs = behind.num_seconds(),
                    "the usage rollup is not being kept (its writer, the subscriber with \
                     ROLLUP_WRITER=true, is stopped or far behind): answering from the raw \
                     readings until it catches up"
                );
            }
            return Ok(None);
        }
        if self.stale_logged.swap(false, Ordering::Relaxed) {
            tracing::info!(
                complete_until = %state.complete_until,
                "the usage rollup is kept again: answering from it"
            );
        }
        Ok(Some(state.coverage()))
    }

    /// Drops cached answers that may no longer be served, every so often, forever (see
    /// `QueryCache::evict_expired`). Returns at once when the cache is off.
    pub async fn sweep_cache(&self) {
        tokio::join!(self.cache.sweep(), self.grids.sweep());
    }

    pub async fn ping(&self) -> Result<(), InfluxError> {
        self.influx.ping().await
    }

    /// The latest reading of every panel that ever wrote one.
    pub async fn latest(&self) -> Result<ByPanel<Latest>, InfluxError> {
        let coverage = self.rollup_coverage().await?;
        let recent = self.recent(coverage.map(|c| c.complete_until)).await?;
        Ok(recent.latest)
    }

    /// The readings since shortly before the rollup's end (see [`Recent`]), and every panel's
    /// latest reading.
    ///
    /// In InfluxDB 1.x every statement on raw readings costs time per panel in proportion to the
    /// points held in memory (its write cache holds the most recent days), however narrow the
    /// time range: this is the one such statement the usual request makes. Panels silent for
    /// longer are looked up on their own: within a day first
    /// ([`queries::latest_within_lookback`]), then without a bound.
    async fn recent(&self, until: Option<DateTime<Utc>>) -> Result<Recent, InfluxError> {
        let since = recent_since(until.unwrap_or_else(Utc::now));
        let statements = [queries::recent_readings(since), queries::panel_tag_values()];
        let results = self.run(&statements).await?;
        let mut recent = queries::parse_recent_readings(&results[0]);
        let silent: Vec<String> = queries::parse_panel_tag_values(&results[1])
            .into_iter()
            .filter(|panel| !recent.latest.contains_key(*panel))
            .map(str::to_owned)
            .collect();
        for chunk in silent.chunks(PANELS_PER_STATEMENT) {
            let statements = [
                queries::latest_within_lookback(chunk),
                queries::latest_unbounded(chunk),
            ];
            let within = queries::parse_latest(&self.run(&statements[..1]).await?[0]);
            let found_all = within.len() == chunk.len();
            recent.latest.extend(within);
            if !found_all {
                let all_time = queries::parse_latest(&self.run(&statements[1..]).await?[0]);
                for (panel, latest) in all_time {
                    recent.latest.entry(panel).or_insert(latest);
                }
            }
        }
        Ok(recent)
    }

    /// Every panel's latest reading, and the usage of the panels with data in each period,
    /// with each period's largest quarter-hour usage when `peaks` is set (zero otherwise). A
    /// period's peak needs the largest bucket of each of its parts, so month sums (which are
    /// corrected by subtracting buckets) are not used then.
    pub async fn latest_and_loads(
        &self,
        periods: &[Period],
        peaks: bool,
    ) -> Result<(ByPanel<Latest>, ByPanel<Vec<Load>>), InfluxError> {
        let (source, recent) = self.source(periods).await?;
        let plans = self.plan(periods, Some(source));
        let (recent, answers) = futures_util::future::try_join(
            self.recent_after(source, recent),
            self.run_each_once(statements_of(&plans)),
        )
        .await?;
        let (mut usage, unsettled) = self
            .combine_usage(periods.len(), &plans, &answers, &recent, peaks)
            .await?;
        if peaks && !unsettled.is_empty() {
            // The few periods whose month sum's largest bucket may lie in the part they take
            // away: their peaks read again without month sums.
            let indexes: Vec<usize> = unsettled
                .iter()
                .map(|(index, _)| *index)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let again: Vec<Period> = indexes.iter().map(|&i| periods[i]).collect();
            let plans = self.plan(&again, Some(source.without_months()));
            let answers = self.run_each_once(statements_of(&plans)).await?;
            let (loads, _) = self
                .combine_usage(again.len(), &plans, &answers, &recent, true)
                .await?;
            for (index, panel) in unsettled {
                let position = indexes.binary_search(&index).expect("an unsettled period");
                let peak = loads.get(&panel).map_or(Usage::ZERO, |l| l[position].peak);
                if let Some(load) = usage.get_mut(&panel).and_then(|l| l.get_mut(index)) {
                    load.peak = peak;
                }
            }
        }
        Ok((recent.latest, usage))
    }

    /// Statistics of the panels that have readings in `day`, and their usage in each of
    /// `pieces` (consecutive, covering the day: cut where prices change).
    pub async fn day_summary(
        &self,
        day: Period,
        pieces: &[Period],
    ) -> Result<(ByPanel<DayStats>, ByPanel<Vec<Load>>), InfluxError> {
        let power_statement = queries::day_power(day);
        let (source, recent) = self.source(pieces).await?;
        let plans = self.plan(pieces, Some(source));
        let mut batch = statements_of(&plans);
        batch.raw.push(vec![power_statement.clone()]);
        let (recent, answers) = futures_util::future::try_join(
            self.recent_after(source, recent),
            self.run_each_once(batch),
        )
        .await?;
        // The day's latest reading is the panel's latest if that falls in the day.
        let latest: ByPanel<Latest> = recent
            .latest
            .iter()
            .filter(|(_, latest)| day.contains(latest.time))
            .map(|(panel, latest)| (panel.clone(), latest.clone()))
            .collect();
        let power = queries::parse_day_power(answers.get(&power_statement));
        let mut stats = ByPanel::new();
        for (panel, power) in power {
            let Some(latest) = latest.get(&panel) else {
                continue;
            };
            stats.insert(
                panel,
                DayStats {
                    latest: latest.clone(),
                    peak_power_kw: power.peak_power_kw,
                    avg_power_kw: power.avg_power_kw,
                },
            );
        }
        let usage = self
            .combine_usage(pieces.len(), &plans, &answers, &recent, false)
            .await?
            .0;
        Ok((stats, usage))
    }

    /// One panel's usage in each of `intervals` (consecutive, within `day`), from its readings
    /// in the day and the reading on either side of it; `None` when the panel has no reading
    /// at all. Read from raw readings in every case: a day of one panel is at most a few
    /// thousand, and local intervals need not lie on the rollup's quarter hours.
    pub async fn panel_intervals(
        &self,
        panel: &str,
        day: Period,
        intervals: &[Period],
    ) -> Result<Option<Vec<Energy>>, InfluxError> {
        // InfluxDB stores nothing after its last instant, and refuses a time literal at or
        // near it: a day from the day before on is read as empty.
        let limit = influx_time_limit() - chrono::Duration::days(1);
        let day = Period {
            start: day.start.min(limit),
            end: day.end.min(limit),
        };
        let and = format!(" AND {}", queries::panel_filter(&[panel.to_owned()]));
        let mut statements = vec![
            queries::panel_readings(panel, day),
            queries::last_reading_before(day.start, &and),
        ];
        // A day still running has no reading after it (and a statement over the empty future
        // costs InfluxDB time for nothing): its intervals count up to the latest reading.
        if day.end <= Utc::now() {
            statements.push(queries::first_reading_from(day.end, &and));
        }
        let results = self.run(&statements).await?;
        let mut points = queries::parse_raw_readings(&results[0])
            .remove(panel)
            .unwrap_or_default();
        for edge in &results[1..] {
            points.extend(queries::parse_reading_before(edge).remove(panel));
        }
        if points.is_empty() {
            return Ok(None);
        }
        Ok(Some(energy_core::usage::usage_in_periods(
            &points, intervals, self.rules,
        )))
    }

    /// The usage of each group of panels together per quarter hour (rollup bucket) of `span`,
    /// by the quarter hour's start in epoch milliseconds: the series a virtual meter's largest
    /// quarter hour is found in (docs/meters.md). Before the rollup's end InfluxDB sums each
    /// group's buckets (one row per quarter hour and group, whatever the group's size); the
    /// rest (normally the current quarter hour, or everything without a rollup) is computed
    /// here as the usage of each quarter hour.
    pub async fn quarter_sums(
        &self,
        groups: &[Vec<String>],
        span: Period,
    ) -> Result<Vec<BTreeMap<i64, Usage>>, InfluxError> {
        let limit =
            influx_time_limit().min(Utc::now() + chrono::Duration::seconds(FUTURE_MARGIN_SECS));
        let span = Period {
            start: span.start,
            end: span.end.min(limit),
        };
        let mut sums: Vec<BTreeMap<i64, Usage>> = vec![BTreeMap::new(); groups.len()];
        if groups.is_empty() || span.start >= span.end {
            return Ok(sums);
        }
        let add = |sum: &mut BTreeMap<i64, Usage>, time: i64, usage: Usage| {
            let entry = sum.entry(time).or_insert(Usage::ZERO);
            *entry += usage;
        };
        let mut rest = span;
        if let Some(coverage) = self.rollup_coverage().await? {
            let until = rollup::bucket_start(coverage.complete_until).clamp(span.start, span.end);
            if until > span.start {
                let rolled = Period {
                    start: span.start,
                    end: until,
                };
                let statements: Vec<(usize, String)> = groups
                    .iter()
                    .enumerate()
                    .flat_map(|(index, group)| {
                        group
                            .chunks(PANELS_PER_STATEMENT)
                            .map(move |chunk| (index, queries::usage_sum_per_bucket(rolled, chunk)))
                    })
                    .collect();
                let results = futures_util::future::try_join_all(
                    statements
                        .iter()
                        .map(|(_, statement)| self.run(std::slice::from_ref(statement))),
                )
                .await?;
                for ((index, _), result) in statements.iter().zip(results) {
                    for (time, usage) in queries::parse_sums_by_time(&result[0]) {
                        add(&mut sums[*index], time, usage);
                    }
                }
            }
            rest.start = until;
        }
        if rest.start < rest.end {
            let quarters = quarters_of(rest);
            let (_, loads) = self.latest_and_loads(&quarters, false).await?;
            for (group, sum) in groups.iter().zip(&mut sums) {
                for panel in group {
                    let Some(loads) = loads.get(panel) else {
                        continue;
                    };
                    for (quarter, load) in quarters.iter().zip(loads) {
                        add(sum, quarter.start.timestamp_millis(), load.energy.usage);
                    }
                }
            }
        }
        Ok(sums)
    }

    /// Runs `statements` as one request, through the cache (see `cache`).
    async fn run(&self, statements: &[String]) -> Result<Arc<Vec<StatementResult>>, InfluxError> {
        // A period read entirely from the recent readings has no statement of its own.
        if statements.is_empty() {
            return Ok(Arc::new(Vec::new()));
        }
        let query = statements.join(";\n");
        self.cache
            .get_or_try(&query, || async {
                whole_answer(self.influx.query(&query).await, statements.len())
            })
            .await
    }

    /// Runs the statements of runs (see [`GridRun`]) as one request, each read into its sums;
    /// cached as [`Store::run`] caches, and failing as it fails.
    async fn run_grids(&self, statements: &[String]) -> Result<Arc<Vec<GridSums>>, InfluxError> {
        let query = statements.join(";\n");
        self.grids
            .get_or_try(&query, || async {
                let answer = self.influx.query_rows_ns::<queries::GridRow>(&query).await;
                let results = whole_answer(answer, statements.len())?;
                Ok(results.iter().map(queries::grid_sums).collect())
            })
            .await
    }

    /// Runs each distinct statement once, as requests side by side (InfluxDB runs the
    /// statements of one request one after another, and each request on a core of its own):
    /// each group of statements that read raw points as a request of its own (they are the
    /// slow ones: a month of raw points, or an empty future range, can take InfluxDB 1.6 over
    /// half a second), the cheap rollup sums spread over a few requests.
    async fn run_each_once(&self, batch: Batch) -> Result<Answers, InfluxError> {
        let mut seen: Vec<&String> = Vec::new();
        let mut requests: Vec<Vec<String>> = Vec::new();
        for group in &batch.raw {
            if group.iter().all(|s| seen.contains(&s)) {
                continue;
            }
            seen.extend(group.iter());
            requests.push(group.clone());
        }
        let mut cheap: Vec<String> = Vec::new();
        for statement in &batch.rollup {
            if !seen.contains(&statement) {
                seen.push(statement);
                cheap.push(statement.clone());
            }
        }
        let per_request = cheap.len().div_ceil(REQUESTS_SIDE_BY_SIDE).max(1);
        requests.extend(cheap.chunks(per_request).map(|chunk| chunk.to_vec()));
        let mut grids: Vec<String> = Vec::new();
        for statement in &batch.grids {
            if !grids.contains(statement) {
                grids.push(statement.clone());
            }
        }
        let per_request = grids.len().div_ceil(REQUESTS_SIDE_BY_SIDE).max(1);
        let grid_requests: Vec<Vec<String>> = grids
            .chunks(per_request)
            .map(|chunk| chunk.to_vec())
            .collect();
        let (results, grid_results) = futures_util::future::try_join(
            futures_util::future::try_join_all(requests.iter().map(|request| self.run(request))),
            futures_util::future::try_join_all(
                grid_requests.iter().map(|request| self.run_grids(request)),
            ),
        )
        .await?;
        let mut answers = Answers::default();
        for (request, results) in requests.into_iter().zip(results) {
            for (index, statement) in request.into_iter().enumerate() {
                answers
                    .by_statement
                    .insert(statement, (results.clone(), index));
            }
        }
        for (request, sums) in grid_requests.into_iter().zip(grid_results) {
            for (index, statement) in request.into_iter().enumerate() {
                answers.grids.insert(statement, (sums.clone(), index));
            }
        }
        Ok(answers)
    }

    /// For each period that can hold data: its index, pieces and their statements.
    fn plan(&self, periods: &[Period], source: Option<Source>) -> Vec<PeriodPlan> {
        let limit = influx_time_limit();
        let future = Utc::now() + chrono::Duration::seconds(FUTURE_MARGIN_SECS);
        let runs = match source {
            Some(Source::Rollup(coverage)) => grid_runs(periods, coverage),
            _ => vec![None; periods.len()],
        };
        let mut plans = periods
            .iter()
            .zip(runs)
            .enumerate()
            .filter(|(_, (period, _))| {
                period.start < limit && period.start < future && period.start < period.end
            })
            .map(|(index, (period, run))| {
                let period = Period {
                    start: period.start,
                    end: period.end.min(limit),
                };
                let pieces = match run {
                    Some(run) => vec![Piece::OfRun { run, part: period }],
                    None => pieces(period, source),
                };
                let pieces = pieces
                    .into_iter()
                    .map(|piece| (piece, Vec::new()))
                    .collect();
                PeriodPlan { index, pieces }
            })
            .collect::<Vec<_>>();
        share_day_rows(&mut plans);
        for (piece, statements) in plans.iter_mut().flat_map(|plan| plan.pieces.iter_mut()) {
            *statements = piece.statements();
        }
        plans
    }

    /// Usage per panel and period from the results of each planned period's statements, with
    /// the largest quarter hour of each when `peaks` is set.
    ///
    /// A period read with a month sum takes away the buckets of the month outside it
    /// ([`Piece::Less`]): the month's largest bucket is the period's own unless it is no larger
    /// than the largest of those taken away. The periods and panels where it is not (rare: the
    /// month's peak in its last or first hours) are returned, for their peaks to be read again
    /// without month sums; every other peak is exact.
    async fn combine_usage(
        &self,
        period_count: usize,
        plans: &[PeriodPlan],
        answers: &Answers,
        recent: &Recent,
        peaks: bool,
    ) -> Result<(ByPanel<Vec<Load>>, Vec<(usize, String)>), InfluxError> {
        let mut usage: ByPanel<Vec<Load>> = ByPanel::new();
        let mut month_peaks: BTreeMap<(usize, String), Usage> = BTreeMap::new();
        let mut less_peaks: BTreeMap<(usize, String), Usage> = BTreeMap::new();
        for plan in plans {
            for (piece, statements) in &plan.pieces {
                let piece = *piece;
                let piece_results: Vec<&StatementResult> =
                    statements.iter().map(|s| answers.get(s)).collect();
                let piece_results = piece_results.as_slice();
                let piece_usage = match piece {
                    Piece::Tail(period) => {
                        self.usage_of_points(period, &recent.points, peaks).await?
                    }
                    Piece::Raw(period) => raw_usage(period, piece_results, self.rules, peaks),
                    Piece::Ledger(period) => self.ledger.usage(period, &recent.points),
                    Piece::OfRun { part, .. } => statements
                        .first()
                        .map_or_else(ByPanel::new, |run| answers.grid(run).within(part)),
                    Piece::Rollup(..) | Piece::Less(_) | Piece::DaysWithin { .. } => {
                        piece.usage(piece_results)
                    }
                };
                for (panel, mut piece_usage) in piece_usage {
                    match piece {
                        Piece::Rollup(MONTH_MEASUREMENT, _) => {
                            month_peaks.insert((plan.index, panel.clone()), piece_usage.peak);
                        }
                        Piece::Less(_) => {
                            let less = less_peaks.entry((plan.index, panel.clone())).or_default();
                            *less = (*less).max(piece_usage.peak);
                            piece_usage.peak = Usage::ZERO;
                        }
                        _ => {}
                    }
                    let load = &mut usage
                        .entry(panel)
                        .or_insert_with(|| vec![Load::ZERO; period_count])[plan.index];
                    *load = load.join(piece_usage);
                }
            }
        }
        let unsettled = if peaks {
            less_peaks
                .into_iter()
                .filter(|(key, less)| {
                    month_peaks
                        .get(key)
                        .is_some_and(|month| *month > Usage::ZERO && less >= month)
                })
                .map(|(key, _)| key)
                .collect()
        } else {
            Vec::new()
        };
        Ok((usage, unsettled))
    }

    /// Usage in `period` (the part of a period after the sums) from each panel's readings
    /// `points` (in time order, with no upper bound in time); the reading before the period is
    /// looked up for panels whose readings start in it (for the recent readings, only panels
    /// silent since before they start).
    async fn usage_of_points(
        &self,
        period: Period,
        points_by_panel: &ByPanel<Vec<EnergyPoint>>,
        peaks: bool,
    ) -> Result<ByPanel<Load>, InfluxError> {
        let silent: Vec<String> = points_by_panel
            .iter()
            .filter(|(_, points)| {
                points
                    .first()
                    .is_some_and(|p| p.time >= period.start && p.time < period.end)
            })
            .map(|(panel, _)| panel.clone())
            .collect();
        let before = self.readings_before(period.start, &silent).await?;
        let measure = Measure::new(period, self.rules, peaks);
        let mut usage = ByPanel::new();
        for (panel, points) in points_by_panel {
            let mut series: Vec<EnergyPoint> = before.get(panel).copied().into_iter().collect();
            series.extend_from_slice(points);
            let load = measure.load(&series);
            if load.energy.usage != Usage::ZERO || points.iter().any(|p| period.contains(p.time)) {
                usage.insert(panel.clone(), load);
            }
        }
        Ok(usage)
    }

    /// The last reading before `start` of each of `panels`: within a day first
    /// ([`queries::reading_before_within_lookback`]), then without a bound for those silent
    /// longer.
    async fn readings_before(
        &self,
        start: DateTime<Utc>,
        panels: &[String],
    ) -> Result<ByPanel<EnergyPoint>, InfluxError> {
        let mut found = ByPanel::new();
        for chunk in panels.chunks(PANELS_PER_STATEMENT) {
            let within = queries::reading_before_within_lookback(start, chunk);
            let within = queries::parse_reading_before(&self.run(&[within]).await?[0]);
            let missing: Vec<String> = chunk
                .iter()
                .filter(|p| !within.contains_key(*p))
                .cloned()
                .collect();
            found.extend(within);
            if !missing.is_empty() {
                let all_time = queries::reading_before_unbounded(start, &missing);
                found.extend(queries::parse_reading_before(
                    &self.run(&[all_time]).await?[0],
                ));
            }
        }
        Ok(found)
    }
}

/// Usage in `period` from the results of a [`Piece::Raw`]'s statements: its readings, and each
/// panel's reading before and after it.
fn raw_usage(
    period: Period,
    results: &[&StatementResult],
    rules: Rules,
    peaks: bool,
) -> ByPanel<Load> {
    let measure = Measure::new(period, rules, peaks);
    let mut points = results
        .first()
        .map(|result| queries::parse_raw_readings(result))
        .unwrap_or_default();
    for edge in results.iter().skip(1) {
        for (panel, point) in queries::parse_reading_before(edge) {
            points.entry(panel).or_default().push(point);
        }
    }
    points
        .into_iter()
        .filter_map(|(panel, points)| {
            let load = measure.load(&points);
            let present =
                load.energy.usage != Usage::ZERO || points.iter().any(|p| period.contains(p.time));
            present.then_some((panel, load))
        })
        .collect()
}

/// How a raw part of a period is measured: its energy, and its largest quarter hour if asked.
struct Measure {
    period: Period,
    rules: Rules,
    /// The period's quarter hours, when peaks are asked for.
    quarters: Option<Vec<Period>>,
}

impl Measure {
    fn new(period: Period, rules: Rules, peaks: bool) -> Measure {
        Measure {
            period,
            rules,
            quarters: peaks.then(|| quarters_of(period)),
        }
    }

    fn load(&self, points: &[EnergyPoint]) -> Load {
        match &self.quarters {
            Some(quarters) => load_in(points, quarters, self.rules),
            None => Load {
                energy: usage_in(points, self.period, self.rules),
                peak: Usage::ZERO,
            },
        }
    }
}

/// The statements of an answer: groups that read raw points, and rollup sums.
#[derive(Default)]
struct Batch {
    raw: Vec<Vec<String>>,
    rollup: Vec<String>,
    /// The runs' statements, read into [`GridSums`].
    grids: Vec<String>,
}

/// Every statement of `plans`, in order (repeats included).
fn statements_of(plans: &[PeriodPlan]) -> Batch {
    let mut batch = Batch::default();
    for (piece, statements) in plans.iter().flat_map(|plan| plan.pieces.iter()) {
        match piece {
            Piece::Raw(_) => batch.raw.push(statements.clone()),
            Piece::OfRun { .. } => batch.grids.extend(statements.iter().cloned()),
            Piece::Rollup(..)
            | Piece::Less(_)
            | Piece::Tail(_)
            | Piece::Ledger(_)
            | Piece::DaysWithin { .. } => batch.rollup.extend(statements.iter().cloned()),
        }
    }
    batch
}

/// One result per statement of a request's answer (`energy_influx::one_result_per_statement`),
/// or why not; a database not written yet (the subscriber creates it on its first start) is
/// empty results. Failures are counted.
fn whole_answer<T: Default>(
    answer: Result<Vec<T>, InfluxError>,
    statements: usize,
) -> Result<Vec<T>, InfluxError> {
    match answer.and_then(|results| energy_influx::one_result_per_statement(results, statements)) {
        Err(error) if error.is_database_missing() => {
            Ok((0..statements).map(|_| T::default()).collect())
        }
        other => other.map_err(crate::metrics::influx_failed),
    }
}

/// How many requests the rollup sums of one answer are spread over: InfluxDB runs each on a
/// core of its own (two here), and every request costs a little.
const REQUESTS_SIDE_BY_SIDE: usize = 4;

/// The results of a set of statements, by statement.
#[derive(Default)]
struct Answers {
    by_statement: HashMap<String, (Arc<Vec<StatementResult>>, usize)>,
    /// The runs' statements, read into their sums.
    grids: HashMap<String, (Arc<Vec<GridSums>>, usize)>,
}

impl Answers {
    /// The result of `statement`, which was among those run (an empty result otherwise).
    fn get(&self, statement: &str) -> &StatementResult {
        static EMPTY: StatementResult = StatementResult::EMPTY;
        self.by_statement
            .get(statement)
            .and_then(|(results, index)| results.get(*index))
            .unwrap_or(&EMPTY)
    }

    /// The sums of a run's `statement`, which was among those run (none otherwise).
    fn grid(&self, statement: &str) -> &GridSums {
        static EMPTY: GridSums = GridSums::EMPTY;
        self.grids
            .get(statement)
            .and_then(|(sums, index)| sums.get(*index))
            .unwrap_or(&EMPTY)
    }
}

/// The recent readings start this long before the rollup's end, so that the reading before the
/// tail is usually among them.
const RECENT_MARGIN_SECS: i64 = 15 * 60;

/// Where the recent readings start: a bucket boundary, so the statement (and its cache key)
/// changes only every quarter hour.
fn recent_since(until: DateTime<Utc>) -> DateTime<Utc> {
    rollup::bucket_start(until) - chrono::Duration::seconds(RECENT_MARGIN_SECS)
}

/// Panels named in one `panel = … OR …` filter.
const PANELS_PER_STATEMENT: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_piece_reads_its_readings_and_those_on_either_side_in_one_request() {
        let period = Period {
            start: "2026-11-26T17:00:00Z".parse().unwrap(),
            end: "2026-11-26T17:07:30Z".parse().unwrap(),
        };
        assert_eq!(
            Piece::Raw(period).statements(),
            vec![
                queries::raw_readings(period),
                queries::last_reading_before(period.start, ""),
                queries::first_reading_from(period.end, ""),
            ]
        );
    }

    #[test]
    fn without_a_rollup_the_ledger_gives_the_sums() {
        let tz: chrono_tz::Tz = "Asia/Jakarta".parse().unwrap();
        let october = energy_core::period::month(2026, 10, tz).unwrap();
        let ledger = Some(Source::Ledger(Coverage {
            complete_until: "2026-11-27T05:20:00Z".parse().unwrap(),
            months: false,
            hours: false,
        }));
        let pieces = pieces(october, ledger);
        assert!(!pieces.is_empty());
        assert!(
            pieces.iter().all(|p| matches!(p, Piece::Ledger(_))),
            "{pieces:?}"
        );
        assert!(pieces.iter().all(|p| p.statements().is_empty()));
    }

    #[test]
    fn with_a_rollup_months_need_no_raw_statement() {
        let tz: chrono_tz::Tz = "Asia/Jakarta".parse().unwrap();
        let until: DateTime<Utc> = "2026-11-27T05:20:07Z".parse().unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // A past month, without month sums: two runs of buckets and the days between.
        let october = energy_core::period::month(2026, 10, tz).unwrap();
        let days_only = Some(Source::Rollup(Coverage {
            complete_until: until,
            months: false,
            hours: false,
        }));
        let pieces = pieces(october, days_only);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| matches!(p, Piece::Rollup(..))));
        // With month sums: October (UTC) plus its first seven hours minus its last seven.
        let pieces = pieces_of(october, until);
        assert_eq!(
            pieces,
            vec![
                Piece::Rollup(
                    QUARTER_MEASUREMENT,
                    Period {
                        start: at("2026-09-30T17:00:00Z"),
                        end: at("2026-10-01T00:00:00Z")
                    }
                ),
                Piece::Rollup(
                    MONTH_MEASUREMENT,
                    Period {
                        start: at("2026-10-01T00:00:00Z"),
                        end: at("2026-11-01T00:00:00Z")
                    }
                ),
                Piece::Less(Period {
                    start: at("2026-10-31T17:00:00Z"),
                    end: at("2026-11-01T00:00:00Z")
                }),
            ]
        );
        // This month: the rest after the rollup's last whole bucket comes from the recent
        // readings.
        let november = energy_core::period::month(2026, 11, tz).unwrap();
        let pieces = pieces_of(november, until);
        assert_eq!(pieces.len(), 4, "{pieces:?}");
        assert!(pieces.contains(&Piece::Tail(Period {
            start: at("2026-11-27T05:15:00Z"),
            end: november.end
        })));
        // October's subtracted bit is November's added one: one statement serves both.
        assert_eq!(
            Piece::Less(Period {
                start: at("2026-10-31T17:00:00Z"),
                end: at("2026-11-01T00:00:00Z")
            })
            .statements(),
            pieces[1].statements(),
            "{pieces:?}"
        );
        // A month after it: all from the recent readings, no statement.
        let december = energy_core::period::month(2026, 12, tz).unwrap();
        assert_eq!(pieces_of(december, until), vec![Piece::Tail(december)]);
        assert_eq!(Piece::Tail(december).statements(), Vec::<String>::new());
        // Without a rollup, everything is raw.
        assert_eq!(super::pieces(october, None), vec![Piece::Raw(october)]);
    }

    #[test]
    fn a_subtracted_piece_counts_against_the_period() {
        let period = Period {
            start: "2026-10-31T17:00:00Z".parse().unwrap(),
            end: "2026-11-01T00:00:00Z".parse().unwrap(),
        };
        let result: StatementResult = serde_json::from_value(serde_json::json!({
            "series": [{"name": "energy_usage_15m", "tags": {"panel": "A"},
                        "columns": ["time", "usage", "estimated"],
                        "values": [[0, 1_500_000_000_i64, 250_000_000_i64]]}]
        }))
        .unwrap();
        let added = Piece::Rollup(QUARTER_MEASUREMENT, period).usage(&[&result]);
        let less = Piece::Less(period).usage(&[&result]);
        let energy = Energy {
            usage: Usage::from_kwh(1.5),
            estimated: Usage::from_kwh(0.25),
        };
        assert_eq!(added["A"].energy, energy);
        assert_eq!(less["A"].energy, Energy::ZERO - energy);
    }

    #[test]
    fn whole_days_the_rollup_covers_are_read_as_runs() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let coverage = Coverage {
            complete_until: at("2026-11-05T03:20:07Z"),
            months: true,
            hours: false,
        };
        // Jakarta's 1 to 5 November: the first four end before the rollup's end, the fifth not.
        let jakarta: chrono_tz::Tz = "Asia/Jakarta".parse().unwrap();
        let days: Vec<Period> = (1..=5)
            .map(|d| {
                energy_core::period::day(
                    chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                    jakarta,
                )
            })
            .collect();
        let run = GridRun {
            span: Period {
                start: at("2026-10-31T17:00:00Z"),
                end: at("2026-11-04T17:00:00Z"),
            },
            grid_secs: 86_400,
            hourly: false,
        };
        // A month is read as runs of at most eight days.
        let november: Vec<Period> = (1..=30)
            .map(|d| {
                energy_core::period::day(
                    chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                    jakarta,
                )
            })
            .collect();
        let later = Coverage {
            complete_until: at("2026-12-05T00:00:00Z"),
            months: true,
            hours: false,
        };
        let runs: Vec<GridRun> = grid_runs(&november, later).into_iter().flatten().collect();
        assert_eq!(runs.len(), 30);
        let distinct: std::collections::BTreeSet<GridRun> = runs.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "{distinct:?}");
        assert!(distinct.iter().all(
            |r| r.span.end - r.span.start <= chrono::Duration::days(8) && r.grid_secs == 86_400
        ));
        assert_eq!(
            grid_runs(&days, coverage),
            vec![Some(run), Some(run), Some(run), Some(run), None]
        );
        let plans = offline_store().plan(&days, Some(Source::Rollup(coverage)));
        assert_eq!(plans[1].pieces[0].0, Piece::OfRun { run, part: days[1] });
        // One statement for the four days, the one a run of days always had.
        assert_eq!(plans[0].pieces[0].1, plans[3].pieces[0].1);
        assert_eq!(
            plans[0].pieces[0].1,
            vec![queries::usage_sums_by_day(QUARTER_MEASUREMENT, run.span)]
        );
        // A lone day, or days that are not consecutive, are no run.
        assert_eq!(grid_runs(&days[..1], coverage), vec![None]);
        assert_eq!(grid_runs(&[days[0], days[2]], coverage), vec![None, None]);
        // Berlin's 25-hour day is in the run too, on a grid of an hour.
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let october: Vec<Period> = (23..=27)
            .map(|d| {
                energy_core::period::day(
                    chrono::NaiveDate::from_ymd_opt(2026, 10, d).unwrap(),
                    berlin,
                )
            })
            .collect();
        let runs = grid_runs(&october, coverage);
        let hourly = GridRun {
            span: Period {
                start: october[0].start,
                end: october[4].end,
            },
            grid_secs: 3_600,
            hourly: false,
        };
        assert_eq!(
            october[2].end - october[2].start,
            chrono::Duration::hours(25)
        );
        assert_eq!(runs, vec![Some(hourly); 5]);
        // A zone whose midnight is not on a quarter hour (Liberia until 1972, −0:44:30).
        let monrovia: chrono_tz::Tz = "Africa/Monrovia".parse().unwrap();
        let old: Vec<Period> = (1..=3)
            .map(|d| {
                energy_core::period::day(
                    chrono::NaiveDate::from_ymd_opt(1971, 3, d).unwrap(),
                    monrovia,
                )
            })
            .collect();
        assert_eq!(grid_runs(&old, coverage), vec![None, None, None]);
    }

    /// Kolkata's (UTC+5:30) days from 1 November 2026, each cut at local `hours` (after
    /// midnight, in order): the periods in time order.
    fn kolkata_windows(days: u32, hours: &[(u32, u32)]) -> Vec<Period> {
        zone_windows("Asia/Kolkata", days, hours)
    }

    /// `zone`'s days from 1 November 2026, each cut at local `hours`: the periods in time order.
    fn zone_windows(zone: &str, days: u32, hours: &[(u32, u32)]) -> Vec<Period> {
        let kolkata: chrono_tz::Tz = zone.parse().unwrap();
        let mut cuts = Vec::new();
        for d in 1..=days {
            let date = chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
            cuts.push(energy_core::period::day(date, kolkata).start);
            for &(h, m) in hours {
                let local = date.and_hms_opt(h, m, 0).unwrap();
                cuts.push(
                    kolkata
                        .from_local_datetime(&local)
                        .unwrap()
                        .with_timezone(&Utc),
                );
            }
        }
        let last = chrono::NaiveDate::from_ymd_opt(2026, 11, days).unwrap();
        cuts.push(energy_core::period::day(last, kolkata).end);
        cuts.windows(2)
            .map(|w| Period {
                start: w[0],
                end: w[1],
            })
            .collect()
    }

    #[test]
    fn time_of_use_windows_are_read_as_grid_runs() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let coverage = Coverage {
            complete_until: at("2026-12-05T00:00:00Z"),
            months: true,
            hours: false,
        };
        // November cut at local 17:00 and 22:00: windows of 17, 5 and 2 hours, 90 of them.
        let windows = kolkata_windows(30, &[(17, 0), (22, 0)]);
        assert_eq!(windows.len(), 90);
        let runs = grid_runs(&windows, coverage);
        assert!(runs.iter().all(Option::is_some), "{runs:?}");
        let distinct: Vec<GridRun> = runs
            .iter()
            .flatten()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Runs of eight days (24 windows each), the month's rest in the last one.
        let day = |d: u32| {
            let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
            energy_core::period::day(
                chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                kolkata,
            )
        };
        let expected: Vec<GridRun> = [(1, 8), (9, 16), (17, 24), (25, 30)]
            .into_iter()
            .map(|(first, last)| GridRun {
                span: Period {
                    start: day(first).start,
                    end: day(last).end,
                },
                grid_secs: 3_600,
                hourly: false,
            })
            .collect();
        assert_eq!(distinct, expected);
        assert_eq!(runs[23], Some(expected[0]));
        assert_eq!(runs[24], Some(expected[1]));
        // One statement per run, stepping by the hour from local midnight (18:30 UTC).
        let plans = offline_store().plan(&windows, Some(Source::Rollup(coverage)));
        assert_eq!(plans.len(), 90);
        let statements: std::collections::BTreeSet<&String> = plans
            .iter()
            .flat_map(|plan| plan.pieces.iter().flat_map(|(_, s)| s))
            .collect();
        assert_eq!(statements.len(), 4, "{statements:?}");
        assert_eq!(
            plans[0].pieces,
            vec![(
                Piece::OfRun {
                    run: expected[0],
                    part: windows[0]
                },
                vec![queries::usage_sums_by_grid(
                    QUARTER_MEASUREMENT,
                    expected[0].span,
                    3_600
                )]
            )]
        );
        assert!(plans[0].pieces[0].1[0].ends_with(
            "WHERE time >= '2026-10-31T18:30:00.000000000Z' AND time < \
             '2026-11-08T18:30:00.000000000Z' GROUP BY time(3600s, 1800s), panel fill(none)"
        ));

        // Windows of 19 and 5 hours (22:00 to 17:00, 17:00 to 22:00) from local 22:00.
        let alternating: Vec<Period> = windows[2..89]
            .chunks(3)
            .flat_map(|c| match c {
                [night, daytime, evening] => vec![
                    Period {
                        start: night.start,
                        end: daytime.end,
                    },
                    *evening,
                ],
                _ => c.to_vec(),
            })
            .collect();
        assert!(alternating
            .iter()
            .all(|p| [19, 5].contains(&(p.end - p.start).num_hours())));
        let runs = grid_runs(&alternating, coverage);
        assert!(runs.iter().all(|r| r.is_some_and(
            |r| r.grid_secs == 3_600 && r.span.end - r.span.start <= chrono::Duration::days(8)
        )));
        assert_eq!(runs[0].unwrap().span.start, at("2026-11-01T16:30:00Z"));

        // Cut at quarter hours (17:15, 22:45): a grid of a quarter hour.
        let quarters = kolkata_windows(3, &[(17, 15), (22, 45)]);
        let runs = grid_runs(&quarters, coverage);
        assert_eq!(runs[0].map(|r| r.grid_secs), Some(900));
        assert!(runs.iter().all(|r| *r == runs[0]));

        // A cut that is not on a quarter hour breaks the run: the two windows it separates are
        // read as before, those on either side of them are runs of their own.
        let mut broken = windows[..9].to_vec();
        let off = chrono::Duration::minutes(7);
        broken[4].end += off;
        broken[5].start += off;
        let runs = grid_runs(&broken, coverage);
        assert_eq!(runs[4], None);
        assert_eq!(runs[5], None);
        let before = GridRun {
            span: Period {
                start: broken[0].start,
                end: broken[3].end,
            },
            grid_secs: 3_600,
            hourly: false,
        };
        assert_eq!(runs[..4], vec![Some(before); 4]);
        assert!(runs[6..].iter().all(|r| r.is_some_and(|r| r.span
            == Period {
                start: broken[6].start,
                end: broken[8].end
            })));
        // So does a sub-second part.
        let mut broken = windows[..3].to_vec();
        broken[1].end += chrono::Duration::milliseconds(1);
        broken[2].start = broken[1].end;
        assert_eq!(grid_runs(&broken, coverage), vec![None; 3]);

        // Windows past the rollup's last whole bucket are no run: 1 November 19:10 (local
        // 00:40 on the 2nd) is within the 2nd's first window.
        let early = Coverage {
            complete_until: at("2026-11-01T19:10:00Z"),
            months: true,
            hours: false,
        };
        let runs = grid_runs(&windows[..6], early);
        assert_eq!(
            runs[..3],
            vec![
                Some(GridRun {
                    span: day(1),
                    grid_secs: 3_600,
                    hourly: false,
                });
                3
            ]
        );
        assert_eq!(runs[3..], vec![None; 3]);
        // Ending exactly on that bucket is covered.
        let exact = Coverage {
            complete_until: windows[1].end,
            months: true,
            hours: false,
        };
        assert!(grid_runs(&windows[..3], exact)[..2]
            .iter()
            .all(Option::is_some));
        // A single window is no run.
        assert_eq!(grid_runs(&windows[..1], coverage), vec![None]);
        assert_eq!(grid_runs(&windows[1..2], coverage), vec![None]);
    }

    /// A run's rows are read once, into its sums, and every period of the run takes its part
    /// of them by the run's statement (an answer of 100 panels × 8 days of hourly rows is read
    /// by every window).
    #[test]
    fn the_periods_of_a_run_share_its_sums() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let run = GridRun {
            span: Period {
                start: at("2026-10-31T18:30:00Z"),
                end: at("2026-11-01T18:30:00Z"),
            },
            grid_secs: 3_600,
            hourly: false,
        };
        let ns = |s: &str| at(s).timestamp_nanos_opt().unwrap();
        let rows: energy_influx::Rows<queries::GridRow> =
            serde_json::from_value(serde_json::json!({
                "series": [{"tags": {"panel": "A"},
                            "values": [[ns("2026-10-31T18:30:00Z"), 100, 0, 40],
                                       [ns("2026-11-01T10:30:00Z"), 200, 50, 90],
                                       [ns("2026-11-01T11:30:00Z"), 300, 0, 80],
                                       [ns("2026-11-01T16:30:00Z"), 400, 0, 100]]}]
            }))
            .unwrap();
        let mut answers = Answers::default();
        answers.grids.insert(
            run.statement(),
            (Arc::new(vec![queries::grid_sums(&rows)]), 0),
        );
        let part = |start: &str, end: &str| {
            answers.grid(&run.statement()).within(Period {
                start: at(start),
                end: at(end),
            })
        };
        let load = |usage: i64, estimated: i64, peak: i64| Load {
            energy: Energy {
                usage: Usage::from_nano_kwh(usage.into()),
                estimated: Usage::from_nano_kwh(estimated.into()),
            },
            peak: Usage::from_nano_kwh(peak.into()),
        };
        // 00:00 to 17:00 local, 17:00 to 22:00, 22:00 to midnight.
        let first = part("2026-10-31T18:30:00Z", "2026-11-01T11:30:00Z");
        assert_eq!(first["A"], load(300, 50, 90));
        let evening = part("2026-11-01T11:30:00Z", "2026-11-01T16:30:00Z");
        assert_eq!(evening["A"], load(300, 0, 80));
        let night = part("2026-11-01T16:30:00Z", "2026-11-01T18:30:00Z");
        assert_eq!(night["A"], load(400, 0, 100));
        // Another statement has no sums.
        assert!(answers.grid("SELECT 1").within(run.span).is_empty());
    }

    fn offline_store() -> Store {
        use clap::Parser;
        let settings =
            Settings::try_parse_from(["api-server", "--influx-url", "http://127.0.0.1:9"]).unwrap();
        let influx = energy_influx::InfluxClient::new(&settings.influx).unwrap();
        Store::new(influx, &settings)
    }

    fn pieces_of(period: Period, until: DateTime<Utc>) -> Vec<Piece> {
        pieces(
            period,
            Some(Source::Rollup(Coverage {
                complete_until: until,
                months: true,
                hours: false,
            })),
        )
    }

    #[test]
    fn runs_on_whole_utc_hours_read_the_hour_sums() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let coverage = Coverage {
            complete_until: at("2026-12-05T00:00:00Z"),
            months: true,
            hours: true,
        };
        // Jakarta (UTC+7) cut at 17:00 and 22:00: every window starts on a UTC hour, so each
        // run reads the rows of the hour sums.
        let windows = zone_windows("Asia/Jakarta", 30, &[(17, 0), (22, 0)]);
        let runs = grid_runs(&windows, coverage);
        assert!(runs.iter().all(|r| r.is_some_and(|r| r.hourly)), "{runs:?}");
        let first = runs[0].unwrap();
        assert_eq!(
            first.statement(),
            "SELECT usage_nkwh AS usage, estimated_nkwh AS estimated, peak_nkwh AS peak \
             FROM energy_usage_1h WHERE time >= '2026-10-31T17:00:00.000000000Z' AND \
             time < '2026-11-08T17:00:00.000000000Z' GROUP BY panel"
        );
        // Jakarta's days: a grid of a day over the hour sums.
        let days = zone_windows("Asia/Jakarta", 30, &[]);
        let run = grid_runs(&days, coverage)[0].unwrap();
        assert!(run.hourly);
        assert_eq!(
            run.statement(),
            queries::usage_sums_by_grid(HOUR_MEASUREMENT, run.span, 86_400)
        );
        // Kolkata's hours are half past UTC ones: the buckets, as without hour sums.
        let kolkata = kolkata_windows(30, &[(17, 0), (22, 0)]);
        let run = grid_runs(&kolkata, coverage)[0].unwrap();
        assert!(!run.hourly);
        assert_eq!(
            run.statement(),
            queries::usage_sums_by_grid(QUARTER_MEASUREMENT, run.span, 3_600)
        );
        // A cut at a quarter hour: a grid of a quarter hour, the buckets.
        let quarters = zone_windows("Asia/Jakarta", 3, &[(17, 15), (22, 0)]);
        assert!(grid_runs(&quarters, coverage)
            .iter()
            .all(|r| r.is_some_and(|r| !r.hourly && r.grid_secs == 900)));
        // A rollup without hour sums: the buckets.
        let without = Coverage {
            hours: false,
            ..coverage
        };
        assert!(grid_runs(&windows, without)
            .iter()
            .all(|r| r.is_some_and(|r| !r.hourly)));
    }
}
