//! Backfill mode (`--backfill DAYS`): the history of the last DAYS days, generated at once with
//! the same load model as live publishing, then the program exits.
//!
//! The period is `(end - count x interval, end]`, with `end` the start time truncated to whole
//! seconds and `count = floor(round(DAYS x 86400 s) / interval)`: readings at
//! `end - (count - 1 - k) x interval` for `k = 0..count`, so the last one is at `end` and one day
//! at 60 s is exactly 1440 readings per panel. Each reading's register grows by its power over
//! one interval, continuing the state file's register; the registers are saved at the end, so a
//! live run afterwards continues where the backfill ended.
//!
//! Two outputs: `--direct` writes line protocol straight to InfluxDB in batches of
//! [`BATCH_LINES`] with [`WRITES_IN_FLIGHT`] requests in flight, each with the entries of the
//! usage rollup's invalidation log that name its readings, so the subscriber that keeps the
//! rollup recomputes them (docs/rollup.md); otherwise the readings go through the broker at
//! QoS 1 as fast as the client allows, and the program waits for the broker's acknowledgements
//! before it exits.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use energy_core::invalidation::Dirty;
use energy_core::Reading;
use energy_influx::{InfluxClient, InfluxError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::QoS;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::connection::Connection;
use crate::message::Message;
use crate::publisher::{load_state, meters};
use crate::settings::Settings;
use crate::simulation::Meter;
use crate::state::{StateError, StateFile};

/// Lines of line protocol per InfluxDB write request.
pub const BATCH_LINES: usize = 5_000;

/// InfluxDB write requests in flight at once: enough to keep InfluxDB busy while the next
/// batch is generated, few enough not to provoke InfluxDB 1.6's `error syncing wal`.
pub const WRITES_IN_FLIGHT: usize = 3;

/// Attempts per batch when InfluxDB answers 5xx or cannot be reached (points are idempotent, so
/// a retry is safe), with a doubling pause starting at [`RETRY_DELAY`].
const WRITE_ATTEMPTS: u32 = 8;
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// How long the broker path waits for the last acknowledgements.
const ACK_WAIT: Duration = Duration::from_secs(120);

/// The MQTT client id is derived from this, so a backfill never takes over the session of a live
/// publisher on the same host.
const PROGRAM: &str = "sensor-publisher-backfill";

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Plan(String),
    #[error("writing to InfluxDB failed: {0}")]
    Influx(#[from] InfluxError),
    #[error("publishing to the MQTT broker failed: {0}")]
    Mqtt(String),
    #[error(
        "{0} readings were not acknowledged by the MQTT broker within {secs} s",
        secs = ACK_WAIT.as_secs()
    )]
    Unacknowledged(u64),
}

/// How many readings per panel `days` of history at `interval_secs` make: the period is rounded
/// to whole seconds, then cut into whole intervals.
pub fn reading_count(days: f64, interval_secs: u64) -> u64 {
    let secs = (days * 86_400.0).round() as u64;
    secs / interval_secs.max(1)
}

/// `resets` distinct reading indices in `1..count`, sorted, no two adjacent, uniformly chosen.
/// Index 0 is never a reset (its drop would be relative to the state file, invisible in the
/// series), and a gap of at least 2 means every reset is a visible drop from a register above 0.
pub fn reset_indices(count: u64, resets: u32, rng: &mut impl Rng) -> Result<Vec<u64>, String> {
    let resets = u64::from(resets);
    if resets == 0 {
        return Ok(Vec::new());
    }
    // Choosing `resets` sorted values v_k from 0..(count - resets) and taking 1 + v_k + k
    // spreads them over 1..count with gaps of at least 2.
    let room = count.saturating_sub(resets);
    if count < 2 * resets {
        return Err(format!(
            "{resets} resets do not fit into {count} readings per panel; give at most {}",
            count / 2
        ));
    }
    let room = usize::try_from(room).map_err(|_| "too many readings".to_owned())?;
    let amount = usize::try_from(resets).map_err(|_| "too many resets".to_owned())?;
    let mut chosen = rand::seq::index::sample(rng, room, amount).into_vec();
    chosen.sort_unstable();
    Ok(chosen
        .into_iter()
        .enumerate()
        .map(|(k, v)| 1 + v as u64 + k as u64)
        .collect())
}

/// The simulated meters stepping through the period, one round (a reading per panel) at a time.
struct History {
    meters: Vec<Meter>,
    /// Each meter's reset indices, sorted, and how many of them have passed.
    resets: Vec<(Vec<u64>, usize)>,
    end: DateTime<Utc>,
    interval: Duration,
    count: u64,
    timezone: Tz,
    rng: StdRng,
}

impl History {
    /// The `k`-th round (0 = oldest), appended to `out`.
    fn round(&mut self, k: u64, out: &mut Vec<Reading>) {
        let back = self.interval * u32::try_from(self.count - 1 - k).unwrap_or(u32::MAX);
        let time = self.end - chrono::Duration::from_std(back).unwrap_or(chrono::TimeDelta::MAX);
        for (meter, (resets, passed)) in self.meters.iter_mut().zip(&mut self.resets) {
            let reading = if resets.get(*passed) == Some(&k) {
                *passed += 1;
                // The meter was reset (or replaced) just before this reading: it shows 0.
                meter.energy_kwh = 0.0;
                meter.read(time, Duration::ZERO, self.timezone, &mut self.rng)
            } else {
                meter.read(time, self.interval, self.timezone, &mut self.rng)
            };
            out.push(reading);
        }
    }
}

/// Runs the backfill of `days` days and exits.
pub async fn run(settings: Settings, days: f64) -> Result<(), BackfillError> {
    let interval = settings.publish_interval_secs.0;
    let count = reading_count(days, interval.as_secs());
    if count == 0 {
        return Err(BackfillError::Plan(format!(
            "{days} days is shorter than one interval of {} s: nothing to backfill",
            interval.as_secs()
        )));
    }
    let state_file = StateFile::new(&settings.state_file);
    let mut state = load_state(&state_file)?;
    // Fail on an unwritable STATE_FILE before writing a year of history.
    state_file.save(&state)?;

    let end = Utc::now().trunc_subsecs(0);
    let start = end
        - chrono::Duration::from_std(interval * u32::try_from(count).unwrap_or(0))
            .unwrap_or(chrono::TimeDelta::MAX);
    let mut rng = StdRng::from_entropy();
    let mut resets = Vec::new();
    for _ in &settings.panels.0 {
        let indices =
            reset_indices(count, settings.resets, &mut rng).map_err(BackfillError::Plan)?;
        resets.push((indices, 0));
    }
    for panel in &settings.panels.0 {
        if let Some(register) = state.panels.get(panel.as_str()) {
            if register.timestamp > start {
                tracing::warn!(
                    %panel,
                    saved_at = %register.timestamp,
                    "the state file's register is newer than the backfill's start; the history \
                     will overlap readings already taken"
                );
            }
        }
    }
    let mut history = History {
        meters: meters(&settings, &state),
        resets,
        end,
        interval,
        count,
        timezone: settings.timezone,
        rng,
    };
    let total = count * history.meters.len() as u64;
    tracing::info!(
        panels = history.meters.len(),
        readings = total,
        interval_secs = interval.as_secs(),
        from = %start,
        to = %end,
        resets_per_panel = settings.resets,
        output = if settings.direct { "influxdb" } else { "mqtt" },
        "backfill starting"
    );

    let progress = progress_bar(total);
    let started = Instant::now();
    let written = if settings.direct {
        write_direct(&settings, &mut history, &progress).await?
    } else {
        publish_to_broker(&settings, &mut history, &progress).await?
    };
    progress.finish_and_clear();
    if settings.direct {
        tracing::info!(
            "the subscriber that keeps the usage rollup (ROLLUP_WRITER) rolls these readings up \
             from the invalidation log written with them"
        );
    }

    let mut last = Vec::new();
    for meter in &history.meters {
        // The last round's readings carry the registers; record them with its time.
        last.push(Reading {
            panel: meter.panel.clone(),
            power_kw: 0.0,
            energy_kwh: meter.energy_kwh,
            time: end,
        });
    }
    for reading in &last {
        state.record(reading);
    }
    state_file.save(&state)?;

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        readings = written,
        seconds = format_args!("{seconds:.2}"),
        readings_per_sec = (written as f64 / seconds.max(1e-9)).round() as u64,
        "backfill done"
    );
    Ok(())
}

/// A bar on stderr when it is a terminal; hidden otherwise (logs, pipes, tests).
fn progress_bar(total: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} readings ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Line protocol straight to InfluxDB; returns how many readings were written.
async fn write_direct(
    settings: &Settings,
    history: &mut History,
    progress: &ProgressBar,
) -> Result<u64, BackfillError> {
    let client = InfluxClient::new(&settings.influx)?;
    if let Err(error) = client.create_database().await {
        // InfluxDB 2.x, Cloud and 3 refuse CREATE DATABASE; their bucket must exist already.
        tracing::warn!(%error, database = client.database(), "could not create the database");
    }
    let permits = Arc::new(Semaphore::new(WRITES_IN_FLIGHT));
    let mut tasks: JoinSet<Result<u64, InfluxError>> = JoinSet::new();
    let mut written = 0;
    let mut round = Vec::with_capacity(history.meters.len());
    let mut body = String::with_capacity(BATCH_LINES * 100);
    let mut dirty = Dirty::default();
    let mut lines = 0;
    for k in 0..history.count {
        round.clear();
        history.round(k, &mut round);
        for reading in &round {
            energy_core::line_protocol::encode(reading, &mut body);
            dirty.mark(reading.panel.as_str(), reading.time);
            lines += 1;
            if lines == BATCH_LINES {
                std::mem::take(&mut dirty).encode_log(PROGRAM, &mut body);
                let batch = std::mem::replace(&mut body, String::with_capacity(BATCH_LINES * 100));
                let permit = Arc::clone(&permits)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let client = client.clone();
                tasks.spawn(async move {
                    let result = write_batch(&client, batch).await;
                    drop(permit);
                    result.map(|()| lines as u64)
                });
                lines = 0;
                while let Some(done) = tasks.try_join_next() {
                    written += finished(done)?;
                    progress.set_position(written);
                }
            }
        }
    }
    if lines > 0 {
        dirty.encode_log(PROGRAM, &mut body);
        write_batch(&client, body).await?;
        written += lines as u64;
    }
    while let Some(done) = tasks.join_next().await {
        written += finished(done)?;
        progress.set_position(written);
    }
    Ok(written)
}

fn finished(
    done: Result<Result<u64, InfluxError>, tokio::task::JoinError>,
) -> Result<u64, BackfillError> {
    match done {
        Ok(result) => Ok(result?),
        Err(error) => Err(BackfillError::Influx(InfluxError::Unreachable(format!(
            "a write task failed: {error}"
        )))),
    }
}

/// One batch, retried while InfluxDB answers 5xx or cannot be reached.
async fn write_batch(client: &InfluxClient, body: String) -> Result<(), InfluxError> {
    let mut delay = RETRY_DELAY;
    let mut attempt = 1;
    loop {
        match client.write(body.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < WRITE_ATTEMPTS && worth_retrying(&error) => {
                tracing::warn!(%error, attempt, "InfluxDB write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// 5xx, 429 and no answer at all may pass; anything else (a bad body, refused credentials, a
/// missing database) will not get better by itself.
fn worth_retrying(error: &InfluxError) -> bool {
    match error {
        InfluxError::Unreachable(_) => true,
        InfluxError::Status { status, .. } => *status >= 500 || *status == 429,
        InfluxError::BadResponse(_) | InfluxError::Partial(_) => false,
    }
}

/// Every reading through the broker at QoS 1, the same message as live; returns how many the
/// broker acknowledged (all of them, or an error).
async fn publish_to_broker(
    settings: &Settings,
    history: &mut History,
    progress: &ProgressBar,
) -> Result<u64, BackfillError> {
    let connection = Connection::start(&settings.mqtt, PROGRAM);
    let mut published = 0;
    let mut round = Vec::with_capacity(history.meters.len());
    for k in 0..history.count {
        round.clear();
        history.round(k, &mut round);
        for reading in &round {
            let topic = settings.mqtt.topic(reading.panel.as_str());
            let payload = Message::from_reading(reading).to_payload();
            // Waits while the client's queue is full: as fast as the broker takes them.
            connection
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| BackfillError::Mqtt(e.to_string()))?;
            published += 1;
            progress.inc(1);
        }
    }
    tracing::info!(
        published,
        "all readings handed to the MQTT client; waiting for acknowledgements"
    );
    let unacknowledged = connection.close(published, ACK_WAIT).await;
    if unacknowledged > 0 {
        return Err(BackfillError::Unacknowledged(unacknowledged));
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use energy_core::PanelId;

    #[test]
    fn the_period_is_cut_into_whole_intervals() {
        assert_eq!(reading_count(1.0, 60), 1_440);
        assert_eq!(reading_count(1.0, 600), 144);
        assert_eq!(reading_count(365.0, 60), 525_600);
        assert_eq!(reading_count(0.1, 60), 144);
        assert_eq!(reading_count(1.0, 7), 12_342);
        assert_eq!(reading_count(0.0001, 60), 0);
        assert_eq!(reading_count(1.0, 86_400), 1);
    }

    #[test]
    fn resets_are_distinct_sorted_non_adjacent_and_never_first() {
        let mut rng = StdRng::seed_from_u64(7);
        for (count, resets) in [(10, 5), (11, 5), (1_440, 2), (1_440, 700), (4, 2), (100, 1)] {
            for _ in 0..50 {
                let indices = reset_indices(count, resets, &mut rng).unwrap();
                assert_eq!(indices.len(), resets as usize);
                assert!(
                    indices.iter().all(|&i| (1..count).contains(&i)),
                    "{indices:?}"
                );
                assert!(indices.windows(2).all(|w| w[1] >= w[0] + 2), "{indices:?}");
            }
        }
        assert_eq!(reset_indices(10, 0, &mut rng).unwrap(), Vec::<u64>::new());
        assert!(reset_indices(9, 5, &mut rng).is_err());
        assert!(reset_indices(1, 1, &mut rng).is_err());
    }

    fn history(count: u64, resets: Vec<u64>) -> History {
        History {
            meters: vec![Meter::new(PanelId::parse("P").unwrap(), 100.0)],
            resets: vec![(resets, 0)],
            end: "2026-11-27T03:00:00Z".parse().unwrap(),
            interval: Duration::from_secs(60),
            count,
            timezone: chrono_tz::Asia::Jakarta,
            rng: StdRng::seed_from_u64(1),
        }
    }

    #[test]
    fn history_ends_at_end_one_interval_apart_and_drops_only_at_resets() {
        let mut history = history(100, vec![10, 50]);
        let mut readings = Vec::new();
        for k in 0..100 {
            history.round(k, &mut readings);
        }
        assert_eq!(readings.len(), 100);
        assert_eq!(readings[99].time, history.end);
        assert_eq!(
            readings[0].time,
            history.end - chrono::Duration::minutes(99)
        );
        // The first reading continues the saved register by one interval.
        assert!(readings[0].energy_kwh > 100.0);
        let mut drops = Vec::new();
        for (k, pair) in readings.windows(2).enumerate() {
            assert_eq!((pair[1].time - pair[0].time).num_seconds(), 60);
            if pair[1].energy_kwh < pair[0].energy_kwh {
                drops.push(k + 1);
            } else {
                let grown = pair[1].energy_kwh - pair[0].energy_kwh;
                assert!((grown - pair[1].power_kw / 60.0).abs() < 1e-9);
            }
        }
        assert_eq!(drops, [10, 50]);
        assert_eq!(readings[10].energy_kwh, 0.0);
        assert_eq!(history.meters[0].energy_kwh, readings[99].energy_kwh);
    }
}
