//! Keeps the usage rollup in InfluxDB in step with the raw readings.
//!
//! The rollup (see `energy_core::rollup`) holds each panel's usage per 15-minute bucket, per
//! UTC hour, per UTC day and per UTC month. It is always recomputed from the raw readings, never
//! patched: a reading changes the two pairs it belongs to, whose shares reach from the reading
//! before it to the reading after it, so to bring buckets up to date, widen them to those
//! readings' buckets, read every reading of that span (plus the one before it and the first
//! after it, which open and close its pairs), compute every bucket of the span with
//! `energy_core::rollup::buckets`, and write them all. Writing a bucket again gives the same point, so any recomputation can be
//! repeated or interrupted safely. Hour and day sums are then re-summed from the buckets, and
//! month sums from the days.
//!
//! [`Dirty`] collects which buckets changed (the subscriber marks each reading it wrote);
//! [`Rollup::update`] brings them up to date; [`Rollup::rebuild`] recomputes a whole range day
//! by day; [`Rollup::state`] and [`Rollup::save_state`] read and record how far it is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use energy_core::influxql::time_literal;
use energy_core::invalidation::{LOG_BUCKETS_FIELD, LOG_MEASUREMENT};
use energy_core::rollup::{
    self, day_of, hour_of, month_of, Bucket, COMPLETE_UNTIL, DAY_MEASUREMENT, ESTIMATED_FIELD,
    ESTIMATE_AFTER_FIELD, FORMAT_FIELD, FORMAT_HOURS, FORMAT_PEAKS, FORMAT_WITH_MONTHS,
    HOUR_MEASUREMENT, LOG_UNTIL_FIELD, MAX_POWER_FIELD, MONTH_MEASUREMENT, PEAK_FIELD,
    QUARTER_MEASUREMENT, READINGS_FIELD, STATE_MEASUREMENT, USAGE_FIELD,
};
use energy_core::{EnergyPoint, EstimateAfter, MaxPower, Period, Rules, Usage, MEASUREMENT};

pub use energy_core::invalidation::Dirty;
use energy_influx::{InfluxClient, InfluxError, Lenient, Rows, Series, StatementResult};

pub mod alerts;
mod check;
pub mod queries;
mod readings;
pub use check::{Difference, Figures, Level};
pub use readings::PanelPoints;

/// Longest stretch recomputed in one read: six hours (for 200 panels at one reading a minute,
/// 72 000 readings, a few MB of JSON).
const STEP_SECS: i64 = 6 * 3600;
/// Panels named in one statement's `panel = … OR …` filter.
const PANELS_PER_STATEMENT: usize = 200;
/// Lines per write request.
const LINES_PER_WRITE: usize = 5_000;
/// Most buckets a round recomputes and writes together with its days and months in one
/// request; a larger round (a catch-up) writes as it goes.
const ATOMIC_BUCKETS: usize = 20_000;
/// Most lines [`Rollup::write_levels`] writes in one request (about 11 MB).
const ATOMIC_LINES: usize = 100_000;
/// Statements per request when one read needs many.
const DAYS_PER_REQUEST: usize = 50;
/// Days of hour sums read per request: 200 panels' day is 4 800 rows, held as JSON values
/// while they are written back (a catch-up's resident memory grows with this).
const HOUR_DAYS_PER_REQUEST: usize = 5;
/// How far past a window its readings are read, so that the first reading after the window
/// (which closes the pair that straddles its end) is usually among them.
const LOOKAHEAD: Duration = Duration::minutes(15);

/// How far the rollup is complete, as recorded in InfluxDB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    /// Every reading stored before this instant is rolled up.
    pub complete_until: DateTime<Utc>,
    /// The glitch threshold the rollup was computed with.
    pub max_power_kw: MaxPower,
    /// The estimate threshold it was computed with (`None`: recorded before estimates existed).
    pub estimate_after: Option<EstimateAfter>,
    /// Which measurements it keeps, and by which rule ([`FORMAT_HOURS`]: the current one;
    /// [`FORMAT_PEAKS`]: the same without hours, which readers still use).
    pub format: i64,
    /// Whether month sums are kept (a rollup recorded before they existed has none).
    pub months: bool,
    /// How far the invalidation log has been read for good: every log entry InfluxDB stamped
    /// before this instant (nanoseconds since the epoch) is rolled up. `None` for a rollup
    /// recorded before the log existed.
    pub log_until: Option<i64>,
}

impl State {
    /// Whether the rollup was computed by the current rule with `rules`: the only one whose sums
    /// a reader may use, and the only one the writer keeps (any other is rebuilt). A rollup
    /// without hours ([`FORMAT_PEAKS`]) qualifies: the writer adds them from its buckets
    /// ([`Rollup::add_hours`]), and readers use hours only once [`State::coverage`] says so.
    pub fn computed_with(&self, rules: Rules) -> bool {
        self.format >= FORMAT_PEAKS
            && self.max_power_kw == rules.max_power_kw
            && self.estimate_after == Some(rules.estimate_after)
    }

    /// What of this rollup a reader may use.
    pub fn coverage(&self) -> rollup::Coverage {
        rollup::Coverage {
            complete_until: self.complete_until,
            months: self.months,
            hours: self.format >= FORMAT_HOURS,
        }
    }
}

/// Where the rollup writer is in the invalidation log (stamps in nanoseconds since the epoch,
/// InfluxDB's clock).
///
/// An entry is read twice. First as soon as it is seen (`fresh`), so that live readings reach
/// the rollup within a round. Then again once it is `settle` old (`durable`): by then the write
/// request that carried it has ended — a request the subscriber counts as done ends within its
/// `INFLUX_TIMEOUT_MS`, and one it gave up on is written again with a new stamp — so every
/// reading it names can be read, even if the entry became visible a moment before its readings.
/// Only `durable` is recorded; after a restart every entry after it is read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCursor {
    /// Every entry stamped before this has been read for good.
    pub durable: i64,
    /// Every entry stamped at or before this has been read at least once.
    pub fresh: i64,
    /// How old an entry must be to be read for good.
    pub settle: StdDuration,
}

impl LogCursor {
    /// A cursor that reads every entry from `durable` on.
    pub fn new(durable: i64, settle: StdDuration) -> Self {
        Self {
            durable,
            fresh: durable - 1,
            settle,
        }
    }
}

/// The most log entries, by their stamps, read for good in one round: bounds the memory of a
/// round after a long stop (the buckets themselves are kept as runs, so even a year of
/// backfill is small).
pub const LOG_WINDOW: StdDuration = StdDuration::from_secs(3600);
const LOG_WINDOW_NANOS: i64 = LOG_WINDOW.as_nanos() as i64;

/// What one read of the invalidation log found.
#[derive(Clone, Debug, Default)]
pub struct LogRead {
    /// The buckets to recompute.
    pub dirty: Dirty,
    /// The part of `dirty` named by entries newer than any read before.
    pub fresh: Dirty,
    /// The part of `dirty` named by entries read for good in this read (stamped before the
    /// cursor's new `durable`), which may already have been read as fresh entries.
    pub settled: Dirty,
    /// How many log entries were read.
    pub entries: u64,
    /// How many could not be read (logged; someone else wrote to the log).
    pub unreadable: u64,
    /// Whether more settled entries may wait: read again at once.
    pub more: bool,
}

/// One row of the invalidation log as read: its stamp (ns) and its buckets field. Read straight
/// into this, not into generic JSON values: a flood names every panel in every batch it
/// writes (40 000 entries for 1 000 panels in 40 batches), and as generic rows those took
/// about 6 MiB of the subscriber's memory at once (BENCHMARKS.md).
/// Anything but a string in the buckets field (someone else wrote to the log) makes the entry
/// unreadable, never the whole read.
type LogRow = (i64, Lenient<String>);

/// Adds the entries of a `SELECT buckets … GROUP BY panel` result. Returns the newest stamp.
fn add_log_entries(result: &Rows<LogRow>, read: &mut LogRead) -> Option<i64> {
    let mut newest = None;
    for series in &result.series {
        let Some(panel) = series.tags.get("panel").filter(|p| !p.is_empty()) else {
            continue;
        };
        for (time, buckets) in &series.values {
            newest = newest.max(Some(*time));
            read.entries += 1;
            let Some(buckets) = buckets.as_ref() else {
                read.unreadable += 1;
                continue;
            };
            if let Err(error) = read.dirty.add_log_entry(panel, buckets) {
                read.unreadable += 1;
                tracing::warn!(%error, panel, "skipping an unreadable rollup log entry");
            }
        }
    }
    newest
}

/// What one update or rebuild step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub readings: u64,
    pub buckets: u64,
    pub days: u64,
    pub months: u64,
}

impl std::ops::AddAssign for Progress {
    fn add_assign(&mut self, other: Progress) {
        self.readings += other.readings;
        self.buckets += other.buckets;
        self.days += other.days;
        self.months += other.months;
    }
}

/// Which panels a statement is about: all of them, or a list.
#[derive(Clone, Copy)]
enum Panels<'a> {
    All,
    Only(&'a [String]),
}

impl Panels<'_> {
    fn condition(self) -> String {
        match self {
            Panels::All => String::new(),
            Panels::Only(panels) => format!(" AND {}", queries::panel_filter(panels)),
        }
    }
}

#[derive(Clone)]
pub struct Rollup {
    influx: InfluxClient,
    rules: Rules,
}

impl Rollup {
    pub fn new(influx: InfluxClient, rules: Rules) -> Self {
        Self { influx, rules }
    }

    /// The rules the rollup is kept with.
    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn max_power_kw(&self) -> MaxPower {
        self.rules.max_power_kw
    }

    /// The recorded state, if the rollup was ever completed.
    pub async fn state(&self) -> Result<Option<State>, InfluxError> {
        let statement = state_statement();
        let results = match self.influx.query_ns(&statement).await {
            Err(error) if error.is_database_missing() => return Ok(None),
            other => other?,
        };
        Ok(results.first().and_then(parse_state))
    }

    /// Records that every reading stored before `complete_until` is rolled up, and that the
    /// invalidation log is read for good up to `log_until`.
    pub async fn save_state(
        &self,
        complete_until: DateTime<Utc>,
        log_until: i64,
    ) -> Result<(), InfluxError> {
        let body = rollup::encode_state(complete_until, self.rules, log_until, Utc::now());
        self.influx.write(body).await
    }

    /// Reads the invalidation log (see [`LogCursor`]): the entries that are now old enough to be
    /// read for good, at most [`LOG_WINDOW`] of them by their stamps, and the entries newer than
    /// any read before. Returns the buckets they name; `cursor` then points past them.
    pub async fn read_log(&self, cursor: &mut LogCursor) -> Result<LogRead, InfluxError> {
        let settled = format!("time < now() - {}ms", cursor.settle.as_millis());
        let first = format!(
            "SELECT first({LOG_BUCKETS_FIELD}) FROM {LOG_MEASUREMENT} WHERE time >= {} AND {settled}",
            cursor.durable
        );
        let fresh = format!(
            "SELECT {LOG_BUCKETS_FIELD} FROM {LOG_MEASUREMENT} WHERE time > {} AND time >= now() - {}ms GROUP BY panel",
            cursor.fresh,
            cursor.settle.as_millis()
        );
        let results = match self
            .query_rows::<LogRow>(&format!("{first};\n{fresh}"))
            .await
        {
            Err(error) if error.is_database_missing() => return Ok(LogRead::default()),
            other => other?,
        };
        let mut read = LogRead::default();
        let newest_fresh = add_log_entries(&results[1], &mut read);
        read.fresh = read.dirty.clone();
        if let Some(newest) = newest_fresh {
            cursor.fresh = cursor.fresh.max(newest);
        }
        let first_settled = results[0]
            .series
            .first()
            .and_then(|series| series.values.first())
            .map(|(time, _)| *time);
        if let Some(from) = first_settled {
            let until = from.saturating_add(LOG_WINDOW_NANOS);
            let settled_entries = format!(
                "SELECT {LOG_BUCKETS_FIELD} FROM {LOG_MEASUREMENT} WHERE time >= {from} AND time < {until} AND {settled} GROUP BY panel"
            );
            let results = self.query_rows::<LogRow>(&settled_entries).await?;
            let mut settled = LogRead::default();
            if let Some(newest) = add_log_entries(&results[0], &mut settled) {
                cursor.durable = newest + 1;
                cursor.fresh = cursor.fresh.max(newest);
            }
            read.entries += settled.entries;
            read.unreadable += settled.unreadable;
            read.settled = settled.dirty.clone();
            read.dirty.merge(settled.dirty);
            // The window ended before the settled part of the log does (by this machine's
            // clock, which only decides when the next round runs): more may wait.
            let settled_until = Utc::now() - Duration::from_std(cursor.settle).unwrap_or_default();
            read.more = settled_until
                .timestamp_nanos_opt()
                .is_some_and(|now| until < now);
        }
        Ok(read)
    }

    /// The buckets named by the log entries stamped within the last `within`.
    pub async fn recent_log(&self, within: StdDuration) -> Result<Dirty, InfluxError> {
        let statement = format!(
            "SELECT {LOG_BUCKETS_FIELD} FROM {LOG_MEASUREMENT} WHERE time >= now() - {}ms GROUP BY panel",
            within.as_millis()
        );
        let results = match self.query_rows::<LogRow>(&statement).await {
            Err(error) if error.is_database_missing() => return Ok(Dirty::default()),
            other => other?,
        };
        let mut read = LogRead::default();
        add_log_entries(&results[0], &mut read);
        Ok(read.dirty)
    }

    /// The stamp just after the newest log entry that is old enough to be read for good: where a
    /// rebuild that starts now may leave the log's cursor (the rebuild reads every reading those
    /// entries name). 0 when there is none.
    pub async fn settled_log_end(&self, settle: StdDuration) -> Result<i64, InfluxError> {
        let statement = format!(
            "SELECT last({LOG_BUCKETS_FIELD}) FROM {LOG_MEASUREMENT} WHERE time < now() - {}ms",
            settle.as_millis()
        );
        let results = match self.query(&statement).await {
            Err(error) if error.is_database_missing() => return Ok(0),
            other => other?,
        };
        Ok(results[0]
            .series
            .first()
            .and_then(|series| series.i64_at(0, "time"))
            .map_or(0, |t| t + 1))
    }

    /// Writes log entries naming the buckets of `dirty` as `writer`, for the rollup writer to
    /// recompute (how a separate process asks for a repair without writing sums itself).
    pub async fn request_recompute(&self, dirty: &Dirty, writer: &str) -> Result<(), InfluxError> {
        let mut body = String::new();
        dirty.encode_log(writer, &mut body);
        if body.is_empty() {
            return Ok(());
        }
        self.influx.write(body).await
    }

    /// Deletes log entries stamped more than `keep` ago (they were read for good long since).
    pub async fn prune_log(&self, keep: StdDuration) -> Result<(), InfluxError> {
        let statement = format!(
            "DELETE FROM {LOG_MEASUREMENT} WHERE time < now() - {}s",
            keep.as_secs()
        );
        self.query(&statement).await.map(drop)
    }

    /// The time of the earliest reading of any panel.
    pub async fn earliest_reading(&self) -> Result<Option<DateTime<Utc>>, InfluxError> {
        let results = match self.influx.query_ns(&queries::earliest_reading()).await {
            Err(error) if error.is_database_missing() => return Ok(None),
            other => other?,
        };
        Ok(results
            .first()
            .into_iter()
            .flat_map(|r| r.series.iter())
            .filter_map(|s| time_at(s, 0))
            .min())
    }

    /// Brings the marked buckets (and what depends on them) up to date.
    pub async fn update(&self, dirty: &Dirty) -> Result<Progress, InfluxError> {
        let mut progress = Progress::default();
        let mut touched_days: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        let mut touched_hours: BTreeSet<(String, i64)> = BTreeSet::new();
        // A round of live traffic is small: its buckets, hours, days and months are computed
        // here and written in one request, so no reader sees a level that disagrees with
        // another. A large catch-up writes as it goes (a failure then repeats the round: the log
        // is only read for good once every write succeeded), and re-sums whole days.
        let atomic = dirty.len() <= ATOMIC_BUCKETS;
        // Every hour and day a run touches is re-summed, also where the run holds no reading (a
        // sum marked for repair by `check`).
        for (panel, runs) in dirty.panels() {
            for (&start, &end) in runs {
                let mut hour = hour_of(at(start));
                while atomic && hour.start < at(end) {
                    touched_hours.insert((panel.to_owned(), hour.start.timestamp()));
                    hour = hour_of(hour.end);
                }
                let mut day = day_of(at(start));
                while day.start < at(end) {
                    touched_days
                        .entry(day.start.timestamp())
                        .or_default()
                        .insert(panel.to_owned());
                    day = day_of(day.end);
                }
            }
        }
        let mut fresh = Vec::new();
        for ((start, end), panels) in dirty.runs(STEP_SECS) {
            for chunk in panels.chunks(PANELS_PER_STATEMENT) {
                let run = Period {
                    start: at(start),
                    end: at(end),
                };
                progress += self
                    .recompute(chunk, run, &mut touched_days, atomic.then_some(&mut fresh))
                    .await?;
            }
        }
        if atomic {
            // A bucket can be computed twice (the span of one run may reach into the next);
            // both computations read the same readings, so keep one.
            let fresh: Vec<(String, Bucket)> = fresh
                .into_iter()
                .map(|(panel, bucket)| ((panel, bucket.start), bucket))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .map(|((panel, _), bucket)| (panel, bucket))
                .collect();
            let (days, months) = self
                .write_levels(&fresh, touched_hours, &touched_days)
                .await?;
            progress.days = days;
            progress.months = months;
        } else {
            progress.days = self.resum_days(&touched_days).await?;
            progress.months = self.resum_months(&months_of(&touched_days)).await?;
        }
        Ok(progress)
    }

    /// Writes `fresh` buckets with the hour, day and month sums they change, in one request
    /// (several, buckets first, past [`ATOMIC_LINES`]): an
    /// hour's new sum is its four buckets', the fresh ones in place of the stored ones; a day's
    /// is its stored buckets' sum with the recomputed buckets' old figures replaced by their new
    /// ones, and a month's likewise from its days. Only this writer writes sums, so what it
    /// reads before the write is what the write replaces. `touched_hours` (panel, start in
    /// seconds) are re-summed besides those of the fresh buckets. Returns how many days and
    /// months it wrote.
    async fn write_levels(
        &self,
        fresh: &[(String, Bucket)],
        mut touched_hours: BTreeSet<(String, i64)>,
        touched_days: &BTreeMap<i64, BTreeSet<String>>,
    ) -> Result<(u64, u64), InfluxError> {
        for (panel, bucket) in fresh {
            touched_hours.insert((panel.clone(), hour_of(bucket.start).start.timestamp()));
        }
        // The stored figures of every bucket of the touched hours (which hold the recomputed
        // buckets) before this write.
        let mut recomputed = Dirty::default();
        for (panel, hour) in &touched_hours {
            let mut start = at(*hour);
            while start < at(hour + rollup::HOUR_SECS) {
                recomputed.mark(panel, start);
                start += Duration::seconds(rollup::GRAIN_SECS);
            }
        }
        let mut statements = Vec::new();
        for ((start, end), panels) in recomputed.runs(STEP_SECS) {
            for chunk in panels.chunks(PANELS_PER_STATEMENT) {
                statements.push(format!(
                    "SELECT {} FROM {QUARTER_MEASUREMENT} WHERE time >= {} AND time < {}{} GROUP BY panel",
                    check::FIGURES,
                    time_literal(at(start)),
                    time_literal(at(end)),
                    Panels::Only(chunk).condition(),
                ));
            }
        }
        let old_buckets = self.figures_of(&statements).await?;

        // Each touched day's stored sum over its buckets, then its new sum.
        let mut statements = Vec::new();
        let mut keys = Vec::new();
        for (&day, panels) in touched_days {
            let panels: Vec<String> = panels.iter().cloned().collect();
            for chunk in panels.chunks(PANELS_PER_STATEMENT) {
                keys.push(day);
                statements.push(sum_statement(
                    QUARTER_MEASUREMENT,
                    day_period(day),
                    Panels::Only(chunk),
                ));
            }
        }
        let mut days: BTreeMap<(String, i64), Figures> = BTreeMap::new();
        for (day, sums) in keys.iter().zip(self.sums_of(&statements).await?) {
            for (panel, figures) in sums {
                days.insert((panel, *day), figures);
            }
        }
        for (&day, panels) in touched_days {
            for panel in panels {
                days.entry((panel.clone(), day)).or_default();
            }
        }
        // A day's peak is the larger of its stored peak and the new buckets, unless a bucket
        // that held the stored peak shrank: those days' peaks are read from their buckets.
        let mut shrunk: BTreeSet<(String, i64)> = BTreeSet::new();
        for (panel, bucket) in fresh {
            let day = day_of(bucket.start).start.timestamp();
            let sum = days.entry((panel.clone(), day)).or_default();
            if let Some(old) = old_buckets
                .get(panel)
                .and_then(|rows| rows.get(&bucket.start))
            {
                if old.peak >= sum.peak && bucket.peak < old.peak {
                    shrunk.insert((panel.clone(), day));
                }
                *sum -= *old;
            }
            *sum += Figures::of(bucket);
        }
        if !shrunk.is_empty() {
            self.settle_day_peaks(&shrunk, fresh, &mut days).await?;
        }

        // Each touched month's stored sum over its days, then its new sum.
        let months_touched = months_of(touched_days);
        let mut statements = Vec::new();
        let mut keys = Vec::new();
        for (&month, panels) in &months_touched {
            let panels: Vec<String> = panels.iter().cloned().collect();
            for chunk in panels.chunks(PANELS_PER_STATEMENT) {
                keys.push(month);
                statements.push(sum_statement(
                    DAY_MEASUREMENT,
                    month_of(at(month)),
                    Panels::Only(chunk),
                ));
                statements.push(format!(
                    "SELECT {} FROM {DAY_MEASUREMENT} WHERE time >= {} AND time < {}{} GROUP BY panel",
                    check::FIGURES,
                    time_literal(month_of(at(month)).start),
                    time_literal(month_of(at(month)).end),
                    Panels::Only(chunk).condition(),
                ));
            }
        }
        let mut months: BTreeMap<(String, i64), Figures> = BTreeMap::new();
        let mut old_days: BTreeMap<String, BTreeMap<DateTime<Utc>, Figures>> = BTreeMap::new();
        let mut answers = Vec::new();
        for batch in statements.chunks(DAYS_PER_REQUEST) {
            answers.extend(self.query(&batch.join(";\n")).await?);
        }
        for (month, pair) in keys.iter().zip(answers.chunks(2)) {
            for (panel, figures) in sums_by_panel(&pair[0]) {
                months.insert((panel, *month), figures);
            }
            for (panel, rows) in check::figures_by_panel(&pair[1]) {
                old_days.entry(panel).or_default().extend(rows);
            }
        }
        for ((panel, day), figures) in &days {
            let month = month_of(at(*day)).start.timestamp();
            let sum = months.entry((panel.clone(), month)).or_default();
            if let Some(old) = old_days.get(panel).and_then(|rows| rows.get(&at(*day))) {
                *sum -= *old;
            }
            *sum += *figures;
        }
        // A month's peak is its days' largest, with the new days in place of the old: every
        // stored day of a touched month was read above.
        for ((panel, month), sum) in months.iter_mut() {
            let period = month_of(at(*month));
            let stored = old_days
                .get(panel)
                .into_iter()
                .flat_map(|rows| rows.range(period.start..period.end))
                .filter(|(start, _)| !days.contains_key(&(panel.clone(), start.timestamp())))
                .map(|(_, figures)| figures.peak);
            let new = days
                .range(
                    (panel.clone(), period.start.timestamp())
                        ..(panel.clone(), period.end.timestamp()),
                )
                .map(|(_, figures)| figures.peak);
            sum.peak = stored.chain(new).max().unwrap_or(Usage::ZERO);
        }

        // Each touched hour from its four buckets.
        let fresh_figures: BTreeMap<(&str, DateTime<Utc>), Figures> = fresh
            .iter()
            .map(|(panel, bucket)| ((panel.as_str(), bucket.start), Figures::of(bucket)))
            .collect();
        let mut hours: BTreeMap<(&str, i64), Figures> = BTreeMap::new();
        for (panel, hour) in &touched_hours {
            let sum = hours.entry((panel.as_str(), *hour)).or_default();
            let stored = old_buckets.get(panel);
            let mut start = at(*hour);
            while start < at(hour + rollup::HOUR_SECS) {
                let figures = fresh_figures
                    .get(&(panel.as_str(), start))
                    .or_else(|| stored.and_then(|rows| rows.get(&start)));
                if let Some(figures) = figures {
                    *sum += *figures;
                }
                start += Duration::seconds(rollup::GRAIN_SECS);
            }
        }

        let mut body = String::new();
        for (panel, bucket) in fresh {
            rollup::encode(QUARTER_MEASUREMENT, panel, bucket, &mut body);
        }
        let level = |start: i64, figures: &Figures| figures.bucket(at(start));
        for ((panel, hour), figures) in &hours {
            rollup::encode(HOUR_MEASUREMENT, panel, &level(*hour, figures), &mut body);
        }
        for ((panel, day), figures) in &days {
            rollup::encode(DAY_MEASUREMENT, panel, &level(*day, figures), &mut body);
        }
        for ((panel, month), figures) in &months {
            rollup::encode(MONTH_MEASUREMENT, panel, &level(*month, figures), &mut body);
        }
        // One request, unless a recomputation reaches far (a panel silent for a year: tens of
        // thousands of buckets): then several, buckets first, each under InfluxDB's default
        // `max-body-size` (25 MB).
        for part in requests(&body, ATOMIC_LINES) {
            self.influx.write(part.to_owned()).await?;
        }
        Ok((days.len() as u64, months.len() as u64))
    }

    /// Sets the peaks of the given days (panel, start in seconds) in `days` from their stored
    /// buckets, with `fresh` in place of the stored ones they replace.
    async fn settle_day_peaks(
        &self,
        shrunk: &BTreeSet<(String, i64)>,
        fresh: &[(String, Bucket)],
        days: &mut BTreeMap<(String, i64), Figures>,
    ) -> Result<(), InfluxError> {
        let statements: Vec<String> = shrunk
            .iter()
            .map(|(panel, day)| {
                let period = day_period(*day);
                format!(
                    "SELECT {} FROM {QUARTER_MEASUREMENT} WHERE time >= {} AND time < {}{} GROUP BY panel",
                    check::FIGURES,
                    time_literal(period.start),
                    time_literal(period.end),
                    Panels::Only(std::slice::from_ref(panel)).condition(),
                )
            })
            .collect();
        let mut buckets = self.figures_of(&statements).await?;
        for (panel, bucket) in fresh {
            if let Some(rows) = buckets.get_mut(panel) {
                rows.insert(bucket.start, Figures::of(bucket));
            }
        }
        for (panel, day) in shrunk {
            let period = day_period(*day);
            let peak = buckets
                .get(panel)
                .into_iter()
                .flat_map(|rows| rows.range(period.start..period.end))
                .map(|(_, figures)| figures.peak)
                .max()
                .unwrap_or(Usage::ZERO);
            if let Some(sum) = days.get_mut(&(panel.clone(), *day)) {
                sum.peak = peak;
            }
        }
        Ok(())
    }

    /// Rows of `usage_nkwh, readings` per panel by time, from row statements.
    async fn figures_of(
        &self,
        statements: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<DateTime<Utc>, Figures>>, InfluxError> {
        let mut out: BTreeMap<String, BTreeMap<DateTime<Utc>, Figures>> = BTreeMap::new();
        for batch in statements.chunks(DAYS_PER_REQUEST) {
            for result in self.query(&batch.join(";\n")).await? {
                for (panel, rows) in check::figures_by_panel(&result) {
                    out.entry(panel).or_default().extend(rows);
                }
            }
        }
        Ok(out)
    }

    /// The sums per panel of each of `statements` (see [`sum_statement`]).
    async fn sums_of(
        &self,
        statements: &[String],
    ) -> Result<Vec<BTreeMap<String, Figures>>, InfluxError> {
        let mut out = Vec::new();
        for batch in statements.chunks(DAYS_PER_REQUEST) {
            for result in self.query(&batch.join(";\n")).await? {
                out.push(sums_by_panel(&result));
            }
        }
        Ok(out)
    }

    /// Recomputes every bucket of every panel from `from` to `to`, one UTC day at a time, calling
    /// `on_day` after each day with the day's end and the progress so far.
    pub async fn rebuild(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        on_day: impl FnMut(DateTime<Utc>, Progress),
    ) -> Result<Progress, InfluxError> {
        self.rebuild_for(None, from, to, on_day).await
    }

    /// Like [`Rollup::rebuild`], for the given panels only.
    pub async fn rebuild_panels(
        &self,
        panels: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        on_day: impl FnMut(DateTime<Utc>, Progress),
    ) -> Result<Progress, InfluxError> {
        self.rebuild_for(Some(panels), from, to, on_day).await
    }

    async fn rebuild_for(
        &self,
        panels: Option<&[String]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut on_day: impl FnMut(DateTime<Utc>, Progress),
    ) -> Result<Progress, InfluxError> {
        let groups: Vec<Panels> = match panels {
            None => vec![Panels::All],
            Some(panels) => panels
                .chunks(PANELS_PER_STATEMENT)
                .map(Panels::Only)
                .collect(),
        };
        let mut progress = Progress::default();
        let mut carried: Vec<Option<Latest>> = vec![None; groups.len()];
        let mut next: Vec<NextKnown> = vec![NextKnown::new(); groups.len()];
        let mut day = day_of(from);
        while day.start < to {
            let mut touched_days = BTreeMap::new();
            let mut start = day.start.max(rollup::bucket_start(from));
            while start < day.end && start < to {
                let end = (start + Duration::seconds(STEP_SECS)).min(day.end);
                let window = Period { start, end };
                for ((&group, carried), next) in groups.iter().zip(&mut carried).zip(&mut next) {
                    let (series, last) = self
                        .series_of(group, window, carried.as_ref(), next)
                        .await?;
                    *carried = Some(last);
                    progress += self
                        .write_buckets(&series, window, &mut touched_days, None)
                        .await?;
                }
                start = end;
            }
            progress.days += self.resum_days(&touched_days).await?;
            // A month is re-summed when the walk leaves it (or ends): for every panel of the
            // walk, not only those seen since a resumption.
            let month = month_of(day.start);
            if day.end >= month.end || day.end >= to {
                for &group in &groups {
                    progress.months += self.resum_month(month.start, group).await?;
                }
            }
            on_day(day.end, progress);
            day = day_of(day.end);
        }
        Ok(progress)
    }

    /// Each panel's readings in `window`, with its last reading before the window (`before`, if
    /// a walk already knows it; read otherwise) and its first reading at or after the window's
    /// end: all the buckets of `window` depend on. Also returns each panel's last reading
    /// before the window's end. `next` keeps what is known of the readings after the window,
    /// so that a walk looks a panel's next reading up only once per silence.
    async fn series_of(
        &self,
        panels: Panels<'_>,
        window: Period,
        before: Option<&Latest>,
        next: &mut NextKnown,
    ) -> Result<(BTreeMap<String, Vec<EnergyPoint>>, Latest), InfluxError> {
        let filter = panels.condition();
        let ahead = window.end + LOOKAHEAD;
        let mut statements = vec![format!(
            "SELECT energy_kwh FROM {MEASUREMENT} WHERE time >= {} AND time < {}{filter} GROUP BY panel",
            time_literal(window.start),
            time_literal(ahead),
        )];
        if before.is_none() {
            statements.push(queries::last_reading_before(window.start, &filter));
        }
        let results = self.query_rows::<PointRow>(&statements.join(";\n")).await?;
        let read_before;
        let before = match before {
            Some(before) => before,
            None => {
                read_before = last_of_each(results.get(1));
                &read_before
            }
        };
        let readings = points_by_panel(results.first());
        let panels: BTreeSet<&String> = before.keys().chain(readings.keys()).collect();
        let mut series = BTreeMap::new();
        let mut last = before.clone();
        let mut missing = Vec::new();
        let empty = Vec::new();
        for panel in panels {
            let points = readings.get(panel).unwrap_or(&empty);
            let split = points.partition_point(|p| p.time < window.end);
            let (inside, later) = points.split_at(split);
            let mut own: Vec<EnergyPoint> = before.get(panel).copied().into_iter().collect();
            own.extend_from_slice(inside);
            if let Some(point) = inside.last() {
                last.insert(panel.clone(), *point);
            }
            match later.first() {
                Some(point) => {
                    own.push(*point);
                    next.insert(panel.clone(), (window.end, Some(*point)));
                }
                None => match known_from(next, panel, ahead) {
                    Some(point) => own.extend(point),
                    None => missing.push(panel.clone()),
                },
            }
            series.insert(panel.clone(), own);
        }
        // Panels without a reading in the lookahead: their next reading, wherever it is.
        for chunk in missing.chunks(PANELS_PER_STATEMENT) {
            let statement = queries::reading_after_unbounded(ahead, chunk);
            let found = last_of_each(self.query_rows::<PointRow>(&statement).await?.first());
            for panel in chunk {
                let point = found.get(panel).copied();
                next.insert(panel.clone(), (ahead, point));
                if let (Some(point), Some(own)) = (point, series.get_mut(panel)) {
                    own.push(point);
                }
            }
        }
        Ok((series, last))
    }

    /// Recomputes what the readings of `panels` in `run` (bucket boundaries) change: every
    /// bucket from the one holding each panel's last reading before the run to the one holding
    /// its first reading after it (the pairs those readings open and close may have changed).
    /// Records the UTC days it wrote; `sink` takes the buckets instead of writing them.
    async fn recompute(
        &self,
        panels: &[String],
        run: Period,
        touched_days: &mut BTreeMap<i64, BTreeSet<String>>,
        mut sink: Option<&mut Vec<(String, Bucket)>>,
    ) -> Result<Progress, InfluxError> {
        let filter = Panels::Only(panels).condition();
        let statements = [
            queries::last_reading_before(run.start, &filter),
            queries::first_reading_from(run.end, &filter),
        ];
        let edges = self.query_rows::<PointRow>(&statements.join(";\n")).await?;
        let before = last_of_each(edges.first());
        let after = last_of_each(edges.get(1));
        let mut next = NextKnown::new();
        let mut spans: BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<String>> = BTreeMap::new();
        for panel in panels {
            let point = after.get(panel).copied();
            next.insert(panel.clone(), (run.end, point));
            let start = before
                .get(panel)
                .map_or(run.start, |b| rollup::bucket_start(b.time))
                .min(run.start);
            let end = point
                .map_or(run.end, |a| rollup::bucket_ceil(a.time))
                .max(run.end);
            spans.entry((start, end)).or_default().push(panel.clone());
        }
        let mut progress = Progress::default();
        for ((start, end), group) in spans {
            let window = Period { start, end };
            let (series, _) = self
                .series_of(Panels::Only(&group), window, None, &mut next)
                .await?;
            progress += self
                .write_buckets(&series, window, touched_days, sink.as_deref_mut())
                .await?;
        }
        Ok(progress)
    }

    /// Computes the buckets of `window` from each panel's `series` (see [`Rollup::series_of`])
    /// and writes them (or hands them to `sink`). Records the UTC days they fall in.
    async fn write_buckets(
        &self,
        series: &BTreeMap<String, Vec<EnergyPoint>>,
        window: Period,
        touched_days: &mut BTreeMap<i64, BTreeSet<String>>,
        mut sink: Option<&mut Vec<(String, Bucket)>>,
    ) -> Result<Progress, InfluxError> {
        let mut progress = Progress::default();
        let mut body = String::new();
        let mut lines = 0;
        for (panel, points) in series {
            progress.readings += points.iter().filter(|p| window.contains(p.time)).count() as u64;
            for bucket in rollup::buckets(points, window, self.rules) {
                progress.buckets += 1;
                touched_days
                    .entry(day_of(bucket.start).start.timestamp())
                    .or_default()
                    .insert(panel.clone());
                if let Some(sink) = sink.as_mut() {
                    sink.push((panel.clone(), bucket));
                    continue;
                }
                rollup::encode(QUARTER_MEASUREMENT, panel, &bucket, &mut body);
                lines += 1;
                if lines == LINES_PER_WRITE {
                    self.influx.write(std::mem::take(&mut body)).await?;
                    lines = 0;
                }
            }
        }
        if lines > 0 {
            self.influx.write(body).await?;
        }
        Ok(progress)
    }

    /// Re-sums the hours and the given UTC days of the given panels from their buckets. Returns
    /// how many days.
    async fn resum_days(&self, days: &BTreeMap<i64, BTreeSet<String>>) -> Result<u64, InfluxError> {
        let mut statements = Vec::new();
        for (&day, panels) in days {
            let panels: Vec<String> = panels.iter().cloned().collect();
            for chunk in panels.chunks(PANELS_PER_STATEMENT) {
                statements.push(hours_statement(day_period(day), Panels::Only(chunk)));
            }
        }
        self.resum_from_hours(&statements).await
    }

    /// Runs `statements` (see [`hours_statement`], one UTC day each) and writes the hour sums
    /// they give and the day sum of each panel (its hours added up). Returns how many days.
    async fn resum_from_hours(&self, statements: &[String]) -> Result<u64, InfluxError> {
        let mut count = 0;
        for batch in statements.chunks(HOUR_DAYS_PER_REQUEST) {
            let results = self.query(&batch.join(";\n")).await?;
            let mut body = String::new();
            for result in &results {
                for (panel, hours) in check::figures_by_panel(result) {
                    let Some(day) = hours.keys().next().map(|start| day_of(*start).start) else {
                        continue;
                    };
                    let mut sum = Figures::default();
                    for (start, figures) in &hours {
                        rollup::encode(
                            HOUR_MEASUREMENT,
                            &panel,
                            &figures.bucket(*start),
                            &mut body,
                        );
                        sum += *figures;
                    }
                    rollup::encode(DAY_MEASUREMENT, &panel, &sum.bucket(day), &mut body);
                    count += 1;
                }
            }
            if !body.is_empty() {
                self.influx.write(body).await?;
            }
        }
        Ok(count)
    }

    /// Adds the hour sums to a rollup kept without them ([`FORMAT_PEAKS`]), from its buckets:
    /// every UTC day from `from` to `to`, every panel, calling `on_day` after each batch of days
    /// with the last one's end. The day sums are written again too, with the same figures.
    pub async fn add_hours(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut on_day: impl FnMut(DateTime<Utc>),
    ) -> Result<u64, InfluxError> {
        let mut count = 0;
        let mut day = day_of(from);
        while day.start < to {
            let mut statements = Vec::new();
            let mut end = day.start;
            while day.start < to && statements.len() < HOUR_DAYS_PER_REQUEST {
                statements.push(hours_statement(day, Panels::All));
                end = day.end;
                day = day_of(day.end);
            }
            count += self.resum_from_hours(&statements).await?;
            on_day(end);
        }
        Ok(count)
    }

    /// Re-sums the given UTC months (start as seconds since the epoch) of the given panels from
    /// their days. Returns how many month sums it wrote.
    async fn resum_months(
        &self,
        months: &BTreeMap<i64, BTreeSet<String>>,
    ) -> Result<u64, InfluxError> {
        let mut count = 0;
        for (&month, panels) in months {
            let panels: Vec<String> = panels.iter().cloned().collect();
            for chunk in panels.chunks(PANELS_PER_STATEMENT) {
                count += self.resum_month(at(month), Panels::Only(chunk)).await?;
            }
        }
        Ok(count)
    }

    /// Re-sums the UTC month holding `time` for `panels` from their days.
    async fn resum_month(
        &self,
        time: DateTime<Utc>,
        panels: Panels<'_>,
    ) -> Result<u64, InfluxError> {
        let month = month_of(time);
        let statement = sum_statement(DAY_MEASUREMENT, month, panels);
        let results = self.query(&statement).await?;
        let mut body = String::new();
        let mut count = 0;
        for result in &results {
            count += encode_sums(result, MONTH_MEASUREMENT, month.start, &mut body);
        }
        if !body.is_empty() {
            self.influx.write(body).await?;
        }
        Ok(count)
    }

    async fn query(&self, statements: &str) -> Result<Vec<StatementResult>, InfluxError> {
        let results = self.influx.query_ns(statements).await?;
        whole(results, statements)
    }

    /// Runs statements of one shape, reading each row as an `R`: (time, energy) for
    /// `SELECT energy_kwh …` ([`PointRow`]), (time, buckets) for the invalidation log
    /// ([`LogRow`]).
    async fn query_rows<R: serde::de::DeserializeOwned>(
        &self,
        statements: &str,
    ) -> Result<Vec<Rows<R>>, InfluxError> {
        let results = self.influx.query_rows_ns(statements).await?;
        whole(results, statements)
    }
}

/// The results of `statements` (joined with `;\n`), one per statement, or an error (see
/// `energy_influx::one_result_per_statement`).
fn whole<T>(results: Vec<T>, statements: &str) -> Result<Vec<T>, InfluxError> {
    energy_influx::one_result_per_statement(results, statements.split(";\n").count())
}

/// `body` (lines of line protocol) cut into parts of at most `lines` lines, in order.
fn requests(body: &str, lines: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (index, _) in body.match_indices('\n') {
        count += 1;
        if count == lines {
            parts.push(&body[start..=index]);
            start = index + 1;
            count = 0;
        }
    }
    if start < body.len() {
        parts.push(&body[start..]);
    }
    parts
}

/// The statement that reads the rollup's state (times in nanoseconds).
pub fn state_statement() -> String {
    format!(
        "SELECT last({COMPLETE_UNTIL}) AS until, last({MAX_POWER_FIELD}) AS max_power_kw, \
         last({ESTIMATE_AFTER_FIELD}) AS estimate_after, last(\"{FORMAT_FIELD}\") AS format, \
         last({LOG_UNTIL_FIELD}) AS log_until FROM {STATE_MEASUREMENT}"
    )
}

/// The state from the result of [`state_statement`]. A recorded `max_power_kw` that is not a
/// usable threshold (see [`MaxPower::from_kw`]) leaves no usable state.
pub fn parse_state(result: &StatementResult) -> Option<State> {
    let series = result.series.first()?;
    let until = series.i64_at(0, "until")?;
    let max_power_kw = MaxPower::from_kw(series.f64_at(0, "max_power_kw")?).ok()?;
    let format = series.i64_at(0, "format").unwrap_or(1);
    let estimate_after = series
        .i64_at(0, "estimate_after")
        .and_then(|secs| u32::try_from(secs).ok())
        .and_then(|secs| EstimateAfter::from_secs(secs).ok());
    Some(State {
        complete_until: Utc.timestamp_nanos(until),
        max_power_kw,
        estimate_after,
        format,
        months: format >= FORMAT_WITH_MONTHS,
        log_until: series.i64_at(0, "log_until"),
    })
}

/// Appends the per-panel sums of a [`sum_statement`] as points of `measurement` at `start`.
/// Returns how many.
fn encode_sums(
    result: &StatementResult,
    measurement: &str,
    start: DateTime<Utc>,
    body: &mut String,
) -> u64 {
    let sums = sums_by_panel(result);
    for (panel, figures) in &sums {
        rollup::encode(measurement, panel, &figures.bucket(start), body);
    }
    sums.len() as u64
}

/// The per-panel sums of the buckets of each UTC hour of `day` for `panels` (hours without a
/// bucket left out), with the largest peak, as the rollup's fields (see
/// [`check::figures_by_panel`]).
fn hours_statement(day: energy_core::Period, panels: Panels<'_>) -> String {
    format!(
        "SELECT sum({USAGE_FIELD}) AS {USAGE_FIELD}, sum({ESTIMATED_FIELD}) AS {ESTIMATED_FIELD}, \
         max({PEAK_FIELD}) AS {PEAK_FIELD}, sum({READINGS_FIELD}) AS {READINGS_FIELD} \
         FROM {QUARTER_MEASUREMENT} WHERE time >= {} AND time < {}{} \
         GROUP BY time(1h), panel fill(none)",
        time_literal(day.start),
        time_literal(day.end),
        panels.condition(),
    )
}

/// The per-panel sums of `measurement` over `period` for `panels`, with the largest peak, as
/// columns `usage`, `estimated`, `peak` and `readings`.
fn sum_statement(measurement: &str, period: energy_core::Period, panels: Panels<'_>) -> String {
    format!(
        "SELECT sum({USAGE_FIELD}) AS usage, sum({ESTIMATED_FIELD}) AS estimated, \
         max({PEAK_FIELD}) AS peak, sum({READINGS_FIELD}) AS readings \
         FROM {measurement} WHERE time >= {} AND time < {}{} GROUP BY panel",
        time_literal(period.start),
        time_literal(period.end),
        panels.condition(),
    )
}

fn day_period(day: i64) -> energy_core::Period {
    energy_core::Period {
        start: at(day),
        end: at(day + rollup::DAY_SECS),
    }
}

/// The per-panel sums of a [`sum_statement`].
fn sums_by_panel(result: &StatementResult) -> BTreeMap<String, Figures> {
    result
        .series
        .iter()
        .filter_map(|series| {
            let panel = series.tag("panel").filter(|p| !p.is_empty())?;
            let figures = Figures {
                usage: Usage::from_nano_kwh(series.i64_at(0, "usage")?.into()),
                estimated: Usage::from_nano_kwh(series.i64_at(0, "estimated").unwrap_or(0).into()),
                peak: Usage::from_nano_kwh(series.i64_at(0, "peak").unwrap_or(0).into()),
                readings: series.i64_at(0, "readings").unwrap_or(0).max(0) as u64,
            };
            Some((panel.to_owned(), figures))
        })
        .collect()
}

/// The UTC months (start as seconds since the epoch) of the given days, with their panels.
fn months_of(days: &BTreeMap<i64, BTreeSet<String>>) -> BTreeMap<i64, BTreeSet<String>> {
    let mut months: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (&day, panels) in days {
        months
            .entry(month_of(at(day)).start.timestamp())
            .or_default()
            .extend(panels.iter().cloned());
    }
    months
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn time_at(series: &Series, row: usize) -> Option<DateTime<Utc>> {
    series.i64_at(row, "time").map(|ns| Utc.timestamp_nanos(ns))
}

/// Each panel's latest reading so far.
type Latest = BTreeMap<String, EnergyPoint>;

/// What is known of each panel's readings after some instant: `(from, reading)` says its first
/// reading at or after `from` is `reading` (`None`: it has none).
type NextKnown = BTreeMap<String, (DateTime<Utc>, Option<EnergyPoint>)>;

/// The panel's first reading at or after `at`, if `next` tells (`Some(None)`: it has none).
fn known_from(next: &NextKnown, panel: &str, at: DateTime<Utc>) -> Option<Option<EnergyPoint>> {
    let (from, reading) = next.get(panel)?;
    if *from > at {
        return None;
    }
    match reading {
        None => Some(None),
        Some(point) if point.time >= at => Some(Some(*point)),
        Some(_) => None,
    }
}

/// The last point of each panel's series (of a `LIMIT 1` statement: its one point).
fn last_of_each(result: Option<&Rows<PointRow>>) -> Latest {
    points_by_panel(result)
        .into_iter()
        .filter_map(|(panel, points)| Some((panel, *points.last()?)))
        .collect()
}

/// A row of `SELECT energy_kwh …` with nanosecond times.
type PointRow = (i64, Option<f64>);

/// Every row of every series as points per panel, in time order.
fn points_by_panel(result: Option<&Rows<PointRow>>) -> BTreeMap<String, Vec<EnergyPoint>> {
    let mut out = BTreeMap::new();
    for series in result.into_iter().flat_map(|r| r.series.iter()) {
        let Some(panel) = series.tags.get("panel").filter(|p| !p.is_empty()) else {
            continue;
        };
        let points: Vec<EnergyPoint> = series
            .values
            .iter()
            .filter_map(|&(time, energy_kwh)| {
                Some(EnergyPoint {
                    time: Utc.timestamp_nanos(time),
                    energy_kwh: energy_kwh?,
                })
            })
            .collect();
        out.insert(panel.clone(), points);
    }
    out
}

/// How long after a rebuild's `to` readings may already exist: validation accepts readings up to
/// five minutes in the future.
pub fn rebuild_margin() -> Duration {
    Duration::minutes(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_entry_whose_buckets_are_no_string_is_unreadable_not_an_error() {
        let rows: Rows<LogRow> = serde_json::from_value(serde_json::json!({
            "series": [
                {"tags": {"panel": "P1"},
                 "values": [[1, "1733500800+2"], [2, 5], [3, null], [4, [1, "x"]], [5, {"a": 1}]]},
                {"tags": {"panel": ""}, "values": [[9, "1733500800+1"]]}
            ]
        }))
        .unwrap();
        let mut read = LogRead::default();
        assert_eq!(
            add_log_entries(&rows, &mut read),
            Some(5),
            "the newest stamp read"
        );
        assert_eq!((read.entries, read.unreadable), (5, 4));
        assert_eq!(
            read.dirty.len(),
            2,
            "P1's two buckets, nothing of the untagged series: {:?}",
            read.dirty
        );
    }

    fn state_result(max_power_kw: serde_json::Value) -> StatementResult {
        serde_json::from_value(serde_json::json!({
            "series": [{"name": STATE_MEASUREMENT,
                        "columns": ["time", "until", "max_power_kw", "estimate_after", "format", "log_until"],
                        "values": [[0, 1_795_749_605_000_000_000_i64, max_power_kw, 900, 4, 42]]}]
        }))
        .unwrap()
    }

    #[test]
    fn a_large_body_is_written_in_parts_of_whole_lines_in_order() {
        let body: String = (0..7).map(|i| format!("m v={i}i {i}\n")).collect();
        let parts = requests(&body, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), body);
        assert!(parts.iter().all(|p| p.ends_with('\n')));
        assert_eq!(parts[2], "m v=6i 6\n");
        assert_eq!(requests(&body, 7), vec![body.as_str()]);
        assert!(requests("", 3).is_empty());
    }

    #[test]
    fn the_recorded_threshold_is_read_through_the_one_constructor() {
        let state = parse_state(&state_result(serde_json::json!(1234.5))).unwrap();
        assert_eq!(state.max_power_kw, MaxPower::from_kw(1234.5).unwrap());
        assert_eq!(
            state.complete_until,
            Utc.timestamp_nanos(1_795_749_605_000_000_000)
        );
        assert!(state.months);
        assert_eq!(state.log_until, Some(42));
        assert_eq!(state.estimate_after, Some(EstimateAfter::DEFAULT));
        assert_eq!(state.format, FORMAT_PEAKS);
        let rules = Rules::new(state.max_power_kw, EstimateAfter::DEFAULT);
        assert!(state.computed_with(rules));
        let other = Rules::new(state.max_power_kw, "901".parse().unwrap());
        assert!(!state.computed_with(other));
        assert!(!State { format: 2, ..state }.computed_with(rules));
        // InfluxDB may answer a whole float as an integer.
        let state = parse_state(&state_result(serde_json::json!(5000))).unwrap();
        assert_eq!(state.max_power_kw.to_string(), "5000");
        // A stored value that is no usable threshold leaves no usable state.
        for bad in [
            serde_json::json!(0.0),
            serde_json::json!(-5.0),
            serde_json::json!(null),
            serde_json::json!("5000"),
        ] {
            assert_eq!(parse_state(&state_result(bad.clone())), None, "{bad}");
        }
    }
}
