//! Writing a batch to InfluxDB: retry what may succeed later, isolate what never will.

use std::sync::Arc;
use std::time::Duration;

use energy_influx::{InfluxClient, InfluxError};
use rand::Rng;
use tokio::sync::watch;

use crate::stats::Stats;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Creates the database on InfluxDB 1.x if it is missing. Elsewhere (2.x, Cloud, 3) buckets
/// are the operator's, and a failure here is expected and harmless.
pub async fn ensure_database(influx: &InfluxClient) {
    match influx.create_database().await {
        Ok(()) => tracing::info!(database = %influx.database(), "database ready"),
        Err(error) => {
            tracing::info!(%error, "could not create the database (normal on InfluxDB 2.x, Cloud and 3, or while InfluxDB is down); writes will retry")
        }
    }
}

/// How a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every point is stored, or was rejected by InfluxDB as invalid (counted and logged):
    /// the batch's messages may be acknowledged.
    Done,
    /// Shutdown came while InfluxDB was failing: acknowledge nothing, the broker redelivers.
    Abandoned,
}

pub struct Writer {
    influx: InfluxClient,
    stats: Arc<Stats>,
}

impl Writer {
    pub fn new(influx: InfluxClient, stats: Arc<Stats>) -> Self {
        Self { influx, stats }
    }

    /// Writes `lines` (each ending in `\n`), retrying with exponential backoff and jitter for
    /// as long as InfluxDB fails in a way that may pass. Returns when the points are stored,
    /// when InfluxDB rejected some of them for good, or when shutdown is asked for while it
    /// is failing.
    pub async fn write(
        &self,
        body: &str,
        points: usize,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.influx.write(body.to_owned()).await {
                Ok(()) => {
                    self.stats.written(points);
                    if attempt > 1 {
                        tracing::info!(points, attempt, "batch written after retries");
                    }
                    return Outcome::Done;
                }
                Err(error) if error.is_database_missing() => {
                    tracing::warn!(database = %self.influx.database(), "database is missing; creating it");
                    ensure_database(&self.influx).await;
                }
                Err(error) if error.is_rejected_write() => {
                    return self.write_one_by_one(body, &error, shutdown).await;
                }
                Err(error) => {
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(%error, points, attempt, "write failed; retrying");
                    }
                }
            }
            self.stats.retry();
            if *shutdown.borrow() {
                tracing::warn!(points, "shutting down while InfluxDB fails: leaving the batch unacknowledged for redelivery");
                return Outcome::Abandoned;
            }
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
            let pause = backoff + Duration::from_millis(jitter);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// InfluxDB refused the batch as a whole (a bad point, a field type conflict from data
    /// written by someone else, or a body too large): write the points one at a time, so the
    /// good ones are stored and only the refused ones are counted and dropped.
    async fn write_one_by_one(
        &self,
        body: &str,
        batch_error: &InfluxError,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        tracing::warn!(error = %batch_error, "InfluxDB refused the batch; writing its points one by one");
        for line in body.lines() {
            let mut line = line.to_owned();
            line.push('\n');
            let mut backoff = FIRST_BACKOFF;
            loop {
                match self.influx.write(line.clone()).await {
                    Ok(()) => {
                        self.stats.written(1);
                        break;
                    }
                    Err(error) if error.is_rejected_write() => {
                        tracing::warn!(%error, line = %line.trim_end(), "InfluxDB refused a point; dropping it");
                        self.stats.reject("influx_refused");
                        break;
                    }
                    Err(error) => {
                        self.stats.retry();
                        if *shutdown.borrow() {
                            return Outcome::Abandoned;
                        }
                        tracing::warn!(%error, "write failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        Outcome::Done
    }
}
