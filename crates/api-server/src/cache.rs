//! A short-lived cache of InfluxDB answers, shared by concurrent identical requests.
//!
//! Dashboards poll the same few endpoints, often many at once. Without this, 16 screens asking
//! for today's usage at the same moment are 16 identical scans of today's points. Here the
//! first request runs the query and the others wait for its answer ("single flight"); the
//! answer is then reused for `ttl` (one second by default), so figures are at most that stale.
//! Only the InfluxDB answer is cached: whatever depends on "now" (status, seconds since last
//! seen) is computed for every request. Failures are not cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

pub struct QueryCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, Arc<Entry<T>>>>,
}

/// An answer being computed (empty cell) or computed (the time it was stored, and it).
struct Entry<T> {
    created: Instant,
    answer: OnceCell<(Instant, Arc<T>)>,
}

/// How long an entry whose computation failed (and which nobody retried) is kept.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

impl<T> Entry<T> {
    /// An answer younger than `ttl`, or a computation still running: worth joining. The age
    /// counts from when the answer was stored, so an answer that took longer than `ttl` to
    /// compute is still served for `ttl`.
    fn is_live(&self, ttl: Duration) -> bool {
        match self.answer.get() {
            Some((stored, _)) => stored.elapsed() < ttl,
            None => self.created.elapsed() < ABANDONED_AFTER,
        }
    }
}

impl<T> QueryCache<T> {
    /// A cache keeping answers for `ttl`; `Duration::ZERO` turns it off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key`: a fresh cached one, the one a concurrent caller is computing, or
    /// a new one from `compute`.
    pub async fn get_or_try<E, F, Fut>(&self, key: &str, compute: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await.map(Arc::new);
        }
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.is_live(ttl));
            entries
                .entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(Entry {
                        created: Instant::now(),
                        answer: OnceCell::new(),
                    })
                })
                .clone()
        };
        // If `compute` fails, the cell stays empty and the next waiter tries for itself.
        entry
            .answer
            .get_or_try_init(|| async {
                let answer = Arc::new(compute().await?);
                Ok((Instant::now(), answer))
            })
            .await
            .map(|(_, answer)| answer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_identical_requests_share_one_computation() {
        let cache = QueryCache::new(Duration::from_secs(5));
        let runs = AtomicUsize::new(0);
        let compute = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(42)
        };
        let answers =
            futures_util::future::join_all((0..8).map(|_| cache.get_or_try("q", compute))).await;
        assert!(answers.iter().all(|a| **a.as_ref().unwrap() == 42));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(*cache.get_or_try("other", compute).await.unwrap(), 42);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn answers_expire_and_failures_are_not_kept() {
        let cache = QueryCache::new(Duration::from_millis(30));
        let runs = AtomicUsize::new(0);
        let fail = cache
            .get_or_try("q", || async { Err::<usize, _>(()) })
            .await;
        assert!(fail.is_err());
        let compute = || async { Ok::<_, ()>(runs.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(*cache.get_or_try("q", compute).await.unwrap(), 0);
        assert_eq!(*cache.get_or_try("q", compute).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(*cache.get_or_try("q", compute).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_answer_slower_than_the_ttl_is_still_shared_and_kept() {
        let cache = QueryCache::new(Duration::from_millis(30));
        let runs = AtomicUsize::new(0);
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            Ok::<_, ()>(runs.fetch_add(1, Ordering::SeqCst))
        };
        let first = cache.get_or_try("q", slow);
        let second = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            cache.get_or_try("q", slow).await
        };
        let (a, b) = tokio::join!(first, second);
        assert_eq!(
            (*a.unwrap(), *b.unwrap()),
            (0, 0),
            "the late caller joined the running query"
        );
        assert_eq!(
            *cache.get_or_try("q", slow).await.unwrap(),
            0,
            "kept for the ttl after it was stored"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_always_computes() {
        let cache = QueryCache::new(Duration::ZERO);
        let runs = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get_or_try("q", || async {
                    Ok::<_, ()>(runs.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
