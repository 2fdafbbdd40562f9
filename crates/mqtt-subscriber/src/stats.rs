//! The subscriber's counts, made in one place: they feed the periodic one-line summary in the
//! log and, through the `metrics` facade, the Prometheus series of [`crate::metrics`] (which
//! drops them when `METRICS_ADDR` is unset).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::metrics::{counter, gauge, histogram};
use tokio::sync::watch;

use crate::metrics::{
    BATCH_POINTS, BUFFERED, RECEIVED, REJECTED, RETRIES, ROLLUP_REPAIRS, WRITTEN,
};

#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    written: AtomicU64,
    retries: AtomicU64,
    batches: AtomicU64,
    /// Messages received but not yet acknowledged (in the channel, the current batch, or written
    /// and waiting for their acks to be queued).
    buffered: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Rollup sums the background check found wrong and had recomputed.
    rollup_repairs: AtomicU64,
}

impl Stats {
    /// A message arrived; it is held until [`Stats::acknowledged`].
    pub fn received(&self) {
        self.received.fetch_add(1, Relaxed);
        self.buffered.fetch_add(1, Relaxed);
        counter!(RECEIVED).increment(1);
        gauge!(BUFFERED).increment(1.0);
    }

    /// `count` messages were acknowledged and left memory.
    pub fn acknowledged(&self, count: usize) {
        self.buffered.fetch_sub(count as u64, Relaxed);
        gauge!(BUFFERED).decrement(count as f64);
    }

    /// A batch of `points` is about to be written.
    pub fn batch(&self, points: usize) {
        self.batches.fetch_add(1, Relaxed);
        histogram!(BATCH_POINTS).record(points as f64);
    }

    /// `points` were stored in InfluxDB.
    pub fn written(&self, points: usize) {
        self.written.fetch_add(points as u64, Relaxed);
        counter!(WRITTEN).increment(points as u64);
    }

    /// A write failed and will be tried again.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
        counter!(RETRIES).increment(1);
    }

    /// A message (or, for `influx_refused`, a point) was rejected for `reason`.
    pub fn reject(&self, reason: &'static str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *rejected.entry(reason).or_default() += 1;
        counter!(REJECTED, "reason" => reason).increment(1);
    }

    /// The background check found `count` rollup sums different from the raw maths.
    pub fn rollup_repaired(&self, count: usize) {
        self.rollup_repairs.fetch_add(count as u64, Relaxed);
        counter!(ROLLUP_REPAIRS).increment(count as u64);
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `received=… written=… rejected=… (reason=n …) retries=… batches=… buffered=…
    /// rollup_repairs=…`
    pub fn log_summary(&self, message: &str) {
        let rejected = self.rejected();
        let total: u64 = rejected.values().sum();
        let reasons = rejected
            .iter()
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(
            received = self.received.load(Relaxed),
            written = self.written.load(Relaxed),
            rejected = total,
            rejected_by_reason = %reasons,
            retries = self.retries.load(Relaxed),
            batches = self.batches.load(Relaxed),
            buffered = self.buffered.load(Relaxed),
            rollup_repairs = self.rollup_repairs.load(Relaxed),
            "{message}"
        );
    }
}

/// Logs a summary every `interval` until shutdown.
pub async fn log_every(stats: Arc<Stats>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => stats.log_summary("summary"),
            _ = shutdown.changed() => return,
        }
    }
}
