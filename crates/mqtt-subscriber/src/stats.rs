//! Counters for the periodic one-line summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub written: AtomicU64,
    pub retries: AtomicU64,
    pub batches: AtomicU64,
    /// Messages received but not yet acknowledged (in the channel or the current batch).
    pub buffered: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub fn reject(&self, reason: &'static str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `received=… written=… rejected=… (reason=n …) retries=… batches=… buffered=…`
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
