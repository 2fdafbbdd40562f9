//! Keeps the usage rollup up to date (see `energy_rollup`).
//!
//! The batcher marks the bucket of every reading it has written ([`Marks::mark_written`]). This
//! task recomputes the marked buckets about once a second and then records the rollup as
//! complete up to the start of that round (minus a second for a batch whose marks were still
//! on their way). The api-server reads months and days from the rollup before that instant and
//! from raw readings after it, so a stopped or lagging rollup makes answers slower, never wrong.
//!
//! At start, the rollup first catches up on what it may have missed: from the recorded
//! instant minus [`LATE_WINDOW`] (late readings written just before a crash), or from the
//! earliest reading when there is no record yet, when `MAX_POWER_KW` changed, or when asked
//! with `--rebuild-rollup`. A rollup recorded before month sums existed gets them from its days.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use energy_rollup::{Dirty, Progress, Rollup};
use tokio::sync::{watch, Notify};

/// How long a round waits after the first mark, so a flood becomes a few large rounds.
const GATHER: Duration = Duration::from_millis(500);
/// The state is saved at least this often while nothing arrives, so the api-server's raw tail
/// stays short.
const IDLE_SAVE: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// On restart, recompute this far back before the recorded instant.
pub const LATE_WINDOW: chrono::Duration = chrono::Duration::hours(1);
/// Margin for a batch written just before a round whose marks were not yet handed over.
const MARK_MARGIN: chrono::Duration = chrono::Duration::seconds(1);

/// Buckets written since the last round.
#[derive(Default)]
pub struct Marks {
    dirty: Mutex<Dirty>,
    notify: Notify,
}

impl Marks {
    pub fn mark_written(&self, dirty: Dirty) {
        if dirty.is_empty() {
            return;
        }
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(dirty);
        self.notify.notify_one();
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct Config {
    pub rebuild: bool,
}

/// Runs until `stop` turns true, then does a last round for what is marked.
pub async fn run(
    rollup: Rollup,
    marks: Arc<Marks>,
    config: Config,
    mut stop: watch::Receiver<bool>,
) {
    if !catch_up(&rollup, config.rebuild, &mut stop).await {
        return;
    }
    release_freed_memory();
    let mut last_save = tokio::time::Instant::now();
    let mut backoff = FIRST_BACKOFF;
    // The first round runs at once: it records the catch-up as soon as it is done.
    let mut first = true;
    loop {
        let stopping = if std::mem::take(&mut first) {
            false
        } else {
            tokio::select! {
                _ = marks.notify.notified() => {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => false,
                        _ = stop.changed() => true,
                    }
                }
                _ = tokio::time::sleep_until(last_save + IDLE_SAVE) => false,
                _ = stop.changed() => true,
            }
        } || *stop.borrow();
        let round_start = Utc::now();
        let dirty = marks.take();
        let result = async {
            if !dirty.is_empty() {
                let progress = rollup.update(&dirty).await?;
                tracing::debug!(
                    readings = progress.readings,
                    buckets = progress.buckets,
                    days = progress.days,
                    months = progress.months,
                    "rollup updated"
                );
            }
            rollup.save_state(round_start - MARK_MARGIN).await
        }
        .await;
        match result {
            Ok(()) => {
                last_save = tokio::time::Instant::now();
                backoff = FIRST_BACKOFF;
            }
            Err(error) => {
                marks.mark_written(dirty);
                tracing::warn!(%error, "could not update the usage rollup; retrying (the API reads raw readings meanwhile)");
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        if stopping {
            return;
        }
    }
}

/// A catch-up over a long history reads a lot of JSON; glibc keeps the freed memory in its
/// arenas, so the program would idle at its peak. Hand it back to the system.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps; it touches no
    // memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Recomputes what may have been missed before this start. Returns false if stopped first.
async fn catch_up(rollup: &Rollup, rebuild: bool, stop: &mut watch::Receiver<bool>) -> bool {
    let started = Utc::now();
    let mut backoff = FIRST_BACKOFF;
    let mut from: Option<Option<DateTime<Utc>>> = None;
    let mut done = Progress::default();
    let clock = std::time::Instant::now();
    loop {
        let attempt = async {
            let start = match from {
                Some(start) => start,
                None => {
                    let start = plan(rollup, rebuild).await?;
                    from = Some(start);
                    start
                }
            };
            let Some(start) = start else {
                return Ok(());
            };
            let mut last_log = std::time::Instant::now();
            let to = started + energy_rollup::rebuild_margin();
            done = rollup
                .rebuild(start, to, |day_end, progress| {
                    // Resume from here if InfluxDB fails midway.
                    from = Some(Some(day_end));
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
            Ok::<(), energy_influx::InfluxError>(())
        }
        .await;
        match attempt {
            Ok(()) => {
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
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, "could not catch up the usage rollup; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Where the catch-up starts, if anywhere.
async fn plan(
    rollup: &Rollup,
    rebuild: bool,
) -> Result<Option<DateTime<Utc>>, energy_influx::InfluxError> {
    let state = rollup.state().await?;
    let reason = match state {
        _ if rebuild => "asked with --rebuild-rollup",
        None => "no rollup recorded yet",
        Some(state) if state.max_power_kw != rollup.max_power_kw() => {
            tracing::warn!(
                recorded = state.max_power_kw,
                now = rollup.max_power_kw(),
                "MAX_POWER_KW changed since the rollup was computed"
            );
            "MAX_POWER_KW changed"
        }
        Some(state) => {
            if !state.months {
                // Recorded by a version that kept no month sums: sum the days it kept.
                if let Some(earliest) = rollup.earliest_reading().await? {
                    let months = rollup.add_month_sums(earliest, Utc::now()).await?;
                    tracing::info!(months, "added month sums to the usage rollup");
                }
            }
            return Ok(Some(state.complete_until - LATE_WINDOW));
        }
    };
    let earliest = rollup.earliest_reading().await?;
    if let Some(earliest) = earliest {
        tracing::info!(reason, from = %earliest, "rebuilding the usage rollup from the earliest reading");
    }
    Ok(earliest)
}
