//! Keeps the usage rollup up to date (see `energy_rollup` and docs/rollup.md). Runs only in
//! the one subscriber with `ROLLUP_WRITER=true`.
//!
//! Every subscriber writes, in the same request as its readings, an entry of the invalidation
//! log naming the buckets they fall in (`energy_core::invalidation`). This task reads the log
//! forward and recomputes what it names, about once a second, and records with the rollup's
//! state how far it has read the log for good. Nothing it needs lives only in memory: after a
//! crash, the next start reads the log again from the recorded point, so every reading that
//! was stored is rolled up, however late it came.
//!
//! Each round also records the rollup as complete up to the start of that round (minus a
//! second), for the live edge: the api-server reads the rollup before that instant and raw
//! readings after it.
//!
//! At start it first rebuilds from the earliest reading when there is no rollup yet, when it
//! was computed by an earlier version's rule, when `MAX_POWER_KW` or `ESTIMATE_AFTER_SECS`
//! changed, or when asked with `--rebuild-rollup`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use energy_core::invalidation::Dirty;
use energy_rollup::{Difference, LogCursor, Progress, Rollup};
use tokio::sync::{watch, Notify};

use crate::stats::Stats;

/// How long a round waits after a batch was written, so a flood becomes a few large rounds.
const GATHER: Duration = Duration::from_millis(500);
/// A round runs at least this often while nothing arrives: the log's entries settle, and the
/// api-server's raw tail stays short.
const IDLE_ROUND: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Margin for a batch written just before a round whose log entry was not yet visible.
const MARK_MARGIN: chrono::Duration = chrono::Duration::seconds(1);
/// How old an entry must be before it is read for good, beyond the longest a write request can
/// take (`INFLUX_TIMEOUT_MS`): see `energy_rollup::LogCursor`.
const SETTLE_MARGIN: Duration = Duration::from_secs(2);
/// A round that recomputed at least this many readings (a backlog, a backfill) is logged at
/// info level.
const LARGE_ROUND_READINGS: u64 = 100_000;
/// Log entries older than this are deleted (once an hour).
const LOG_KEPT: Duration = Duration::from_secs(7 * 86_400);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Config {
    pub rebuild: bool,
    /// How often the rollup of yesterday and today is checked against the raw maths (`None`:
    /// never).
    pub check_every: Option<Duration>,
    /// The subscribers' `INFLUX_TIMEOUT_MS`: the longest a write request they count as done
    /// can take.
    pub write_timeout: Duration,
}

/// Runs until `stop` turns true, then does a last round. `written` is notified after each
/// batch written, to start a round soon.
pub async fn run(
    rollup: Rollup,
    written: Arc<Notify>,
    config: Config,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let settle = config.write_timeout + SETTLE_MARGIN;
    let Some(mut cursor) = start(&rollup, config.rebuild, settle, &mut stop).await else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut last_check = tokio::time::Instant::now();
    let mut repair = Dirty::default();
    let mut more = true;
    loop {
        let stopping = if std::mem::take(&mut more) {
            *stop.borrow()
        } else {
            tokio::select! {
                _ = written.notified() => {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => false,
                        _ = stop.changed() => true,
                    }
                }
                _ = tokio::time::sleep(IDLE_ROUND) => false,
                _ = stop.changed() => true,
            }
        } || *stop.borrow();
        match round(&rollup, &mut cursor, &repair).await {
            Ok(again) => {
                more = again;
                backoff = FIRST_BACKOFF;
                repair = Dirty::default();
            }
            Err(error) => {
                tracing::warn!(%error, "could not update the usage rollup; retrying (the API reads raw readings meanwhile; the log keeps what is to do)");
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                more = true;
                continue;
            }
        }
        if stopping {
            return;
        }
        if let Some(every) = config.check_every {
            if !more && last_check.elapsed() >= every {
                last_check = tokio::time::Instant::now();
                match reconcile(&rollup, &mut cursor, settle).await {
                    Ok(found) => {
                        stats.rollup_repaired(found.len());
                        for difference in &found {
                            difference.mark(&mut repair);
                        }
                        more = !found.is_empty();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not check the usage rollup; trying again later")
                    }
                }
            }
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            if let Err(error) = rollup.prune_log(LOG_KEPT).await {
                tracing::warn!(%error, "could not delete old rollup log entries (harmless: the log only grows)");
            }
        }
    }
}

/// One round: read the log, recompute what it names (and `repair`), record the state. Returns
/// whether more log may wait (then the next round runs at once).
async fn round(
    rollup: &Rollup,
    cursor: &mut LogCursor,
    repair: &Dirty,
) -> Result<bool, energy_influx::InfluxError> {
    let round_start = Utc::now();
    let mut next = *cursor;
    let mut read = rollup.read_log(&mut next).await?;
    read.dirty.merge(repair.clone());
    if !read.dirty.is_empty() {
        let clock = std::time::Instant::now();
        let progress = rollup.update(&read.dirty).await?;
        tracing::debug!(
            entries = read.entries,
            readings = progress.readings,
            buckets = progress.buckets,
            days = progress.days,
            months = progress.months,
            "rollup updated"
        );
        if progress.readings >= LARGE_ROUND_READINGS {
            tracing::info!(
                entries = read.entries,
                readings = progress.readings,
                buckets = progress.buckets,
                seconds = clock.elapsed().as_secs_f64(),
                "usage rollup caught up with a large part of the log"
            );
        }
    }
    rollup
        .save_state(round_start - MARK_MARGIN, next.durable)
        .await?;
    // Only now, with every sum written and the state recorded, is the log read for good.
    *cursor = next;
    Ok(read.more)
}

/// Checks yesterday and today (up to what has settled) against the raw maths and returns the
/// differences that are real: a difference may only be a reading stored a moment ago whose log
/// entry is not read yet, so each is looked at again after one more round. Every difference
/// found is a bug of the rollup: each is logged.
async fn reconcile(
    rollup: &Rollup,
    cursor: &mut LogCursor,
    settle: Duration,
) -> Result<Vec<Difference>, energy_influx::InfluxError> {
    let now = Utc::now();
    let from = energy_core::rollup::day_of(now - chrono::Duration::days(1)).start;
    let to = now
        - chrono::Duration::from_std(settle).unwrap_or_default()
        - chrono::Duration::minutes(15);
    let clock = std::time::Instant::now();
    let suspects = rollup.check(from, to).await?;
    let mut found = Vec::new();
    if !suspects.is_empty() {
        round(rollup, cursor, &Dirty::default()).await?;
        found = rollup.check(from, to).await?;
        // Readings may still be arriving for these periods (a meter's backlog): what the log
        // named since shortly before the first look is work in progress, not a fault.
        let busy = rollup
            .recent_log(clock.elapsed() + settle + SETTLE_MARGIN)
            .await?;
        found.retain(|d| {
            suspects
                .iter()
                .any(|s| (&s.panel, s.level, s.start) == (&d.panel, d.level, d.start))
                && !busy.touches(&d.panel, d.period())
        });
    }
    for difference in &found {
        tracing::warn!(
            panel = %difference.panel,
            level = difference.level.name(),
            start = %difference.start,
            rollup_kwh = difference.rollup.usage.kwh(),
            raw_kwh = difference.expected.usage.kwh(),
            rollup_readings = difference.rollup.readings,
            raw_readings = difference.expected.readings,
            "the usage rollup differs from the raw maths; recomputing it"
        );
    }
    tracing::info!(
        from = %from,
        to = %to,
        differences = found.len(),
        seconds = clock.elapsed().as_secs_f64(),
        "usage rollup checked against the raw readings"
    );
    Ok(found)
}

/// Rebuilds or catches up what needs it before the rounds start, and returns where the log is
/// to be read from. `None` if stopped first.
async fn start(
    rollup: &Rollup,
    rebuild: bool,
    settle: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<LogCursor> {
    let started = Utc::now();
    let mut backoff = FIRST_BACKOFF;
    let mut plan: Option<Plan> = None;
    let mut done = Progress::default();
    let clock = std::time::Instant::now();
    loop {
        let attempt = async {
            let current = match plan {
                Some(current) => current,
                None => {
                    let planned = make_plan(rollup, rebuild, settle).await?;
                    plan = Some(planned);
                    planned
                }
            };
            if let Some(from) = current.walk_from {
                let mut last_log = std::time::Instant::now();
                let to = started + energy_rollup::rebuild_margin();
                done = rollup
                    .rebuild(from, to, |day_end, progress| {
                        // Resume from here if InfluxDB fails midway.
                        plan = Some(Plan {
                            walk_from: Some(day_end),
                            ..current
                        });
                        if last_log.elapsed() >= Duration::from_secs(10) {
                            last_log = std::time::Instant::now();
                            tracing::info!(
                                up_to = %day_end,
                                readings = progress.readings,
                                "rebuilding the usage rollup"
                            );
                        }
                    })
                    .await?;
            }
            if let Some(from) = current.hours_from {
                let to = started + energy_rollup::rebuild_margin();
                let clock = std::time::Instant::now();
                let days = rollup
                    .add_hours(from, to, |day_end| {
                        // Resume from here if InfluxDB fails midway.
                        plan = Some(Plan {
                            hours_from: Some(day_end),
                            ..current
                        });
                    })
                    .await?;
                tracing::info!(
                    days,
                    seconds = clock.elapsed().as_secs_f64(),
                    "hour sums added to the usage rollup"
                );
            }
            Ok::<LogCursor, energy_influx::InfluxError>(LogCursor::new(current.log_from, settle))
        }
        .await;
        match attempt {
            Ok(cursor) => {
                if done.readings > 0 {
                    tracing::info!(
                        readings = done.readings,
                        buckets = done.buckets,
                        days = done.days,
                        months = done.months,
                        seconds = clock.elapsed().as_secs_f64(),
                        "usage rollup caught up"
                    );
                }
                return Some(cursor);
            }
            Err(error) => {
                tracing::warn!(%error, "could not prepare the usage rollup; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// What to do before the rounds start.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Recompute every reading from here on, if anything.
    walk_from: Option<DateTime<Utc>>,
    /// Add hour sums from the buckets from here on, if anything (a rollup kept without them).
    hours_from: Option<DateTime<Utc>>,
    /// Then read the log from this stamp on.
    log_from: i64,
}

async fn make_plan(
    rollup: &Rollup,
    rebuild: bool,
    settle: Duration,
) -> Result<Plan, energy_influx::InfluxError> {
    let state = rollup.state().await?;
    let reason = match state {
        _ if rebuild => "asked with --rebuild-rollup",
        None => "no rollup recorded yet",
        Some(state) if state.format < energy_core::rollup::FORMAT_SPREAD => {
            tracing::warn!(
                format = state.format,
                "the usage rollup was computed by the rule of an earlier version (each pair in \
                 the bucket of its later reading): rebuilding it with every pair spread over its \
                 time; the api-server answers from the raw readings meanwhile"
            );
            "computed by an earlier rule"
        }
        Some(state) if state.format < energy_core::rollup::FORMAT_PEAKS => {
            tracing::warn!(
                format = state.format,
                "the usage rollup was written by an earlier version, without each day's and \
                 month's largest quarter hour (the maximum demand): rebuilding it; the \
                 api-server answers from the raw readings meanwhile"
            );
            "written without peaks"
        }
        Some(state) if state.max_power_kw != rollup.max_power_kw() => {
            tracing::warn!(
                recorded = state.max_power_kw.kw(),
                now = rollup.max_power_kw().kw(),
                "MAX_POWER_KW changed since the rollup was computed"
            );
            "MAX_POWER_KW changed"
        }
        Some(state) if state.estimate_after != Some(rollup.rules().estimate_after) => {
            tracing::warn!(
                recorded = state.estimate_after.map(|e| e.secs()),
                now = rollup.rules().estimate_after.secs(),
                "ESTIMATE_AFTER_SECS changed since the rollup was computed"
            );
            "ESTIMATE_AFTER_SECS changed"
        }
        Some(state) if state.format < energy_core::rollup::FORMAT_HOURS => {
            let earliest = rollup.earliest_reading().await?;
            tracing::info!(
                format = state.format,
                from = ?earliest,
                "the usage rollup was written by an earlier version, without hour sums: adding \
                 them from its buckets; the api-server reads the buckets meanwhile"
            );
            return Ok(Plan {
                walk_from: None,
                hours_from: earliest,
                log_from: state.log_until.unwrap_or(0),
            });
        }
        // Every rollup of the current format records where the log is to be read from.
        Some(state) => {
            return Ok(Plan {
                walk_from: None,
                hours_from: None,
                log_from: state.log_until.unwrap_or(0),
            })
        }
    };
    // Every log entry settled by now names readings the walk will read: start the log after
    // them.
    let log_from = rollup.settled_log_end(settle).await?;
    let earliest = rollup.earliest_reading().await?;
    if let Some(earliest) = earliest {
        tracing::info!(reason, from = %earliest, "rebuilding the usage rollup from the earliest reading");
    }
    Ok(Plan {
        walk_from: earliest,
        hours_from: None,
        log_from,
    })
}
