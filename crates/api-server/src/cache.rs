//! A short-lived cache of InfluxDB answers, shared by concurrent identical requests.
//!
//! Dashboards poll the same few endpoints, often many at once. Without this, 16 screens asking
//! for today's usage at the same moment are 16 identical scans of today's points. Here the
//! first request runs the query and the others wait for its answer ("single flight"); the
//! answer is then reused for `ttl` (one second by default). For one more `ttl` after that, an
//! answer is still served while a single request refreshes it ("stale while revalidate"), so
//! under steady polling nobody but that one request waits for InfluxDB; figures are at most
//! two `ttl`s stale, or, while a refresh is running, as old as that refresh takes (a slow
//! InfluxDB then gets one query at a time, not one per waiting request). Failures are not
//! cached.
//!
//! The store caches InfluxDB answers here ([`QueryCache::get_or_try`]: the refreshing request
//! waits). The polled endpoints cache their whole rendered answer ([`crate::rendered`], with
//! [`QueryCache::get_or_refresh`]: a task refreshes it, nobody waits). See
//! docs/operations.md, "The answer caches".

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Whether a request is refreshing this (stale) answer.
    refreshing: AtomicBool,
}

/// How long an entry whose computation failed (and which nobody retried) is kept.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

impl<T> Entry<T> {
    fn computing() -> Self {
        Entry {
            created: Instant::now(),
            answer: OnceCell::new(),
            refreshing: AtomicBool::new(false),
        }
    }

    fn answered(answer: Arc<T>) -> Self {
        let now = Instant::now();
        Entry {
            created: now,
            answer: OnceCell::new_with(Some((now, answer))),
            refreshing: AtomicBool::new(false),
        }
    }

    /// An answer that may still be served (fresh or stale, or older while a request refreshes
    /// it), or a computation still running: worth keeping. The age counts from when the answer
    /// was stored, so an answer that took longer than `ttl` to compute is still served for
    /// `ttl`.
    fn is_kept(&self, ttl: Duration) -> bool {
        match self.answer.get() {
            Some((stored, _)) => {
                stored.elapsed() < ttl * 2
                    || (self.refreshing.load(Ordering::Acquire)
                        && stored.elapsed() < ttl * 2 + ABANDONED_AFTER)
            }
            None => self.created.elapsed() < ABANDONED_AFTER,
        }
    }
}

/// Marks an entry as being refreshed for as long as it lives.
struct Refreshing<T>(Arc<Entry<T>>);

impl<T> Drop for Refreshing<T> {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

/// What a lookup found.
enum Found<T> {
    Answer(Arc<T>),
    /// A stale answer (the entry's) this caller refreshes.
    Refresh(Arc<Entry<T>>, Arc<T>),
    /// A computation to join (or start).
    Join(Arc<Entry<T>>),
}

impl<T> QueryCache<T> {
    /// A cache keeping answers for `ttl`; `Duration::ZERO` turns it off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How often [`QueryCache::evict_expired`] is worth calling: once per `ttl` (`None` when the
    /// cache is off).
    pub fn sweep_every(&self) -> Option<Duration> {
        (!self.ttl.is_zero()).then_some(self.ttl)
    }

    /// Drops the answers that may no longer be served. Lookups do this too, but an idle server
    /// makes none: without a sweep it would hold its last answers (for a year of months, a few
    /// MB of parsed InfluxDB results) until the next request.
    pub fn evict_expired(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        entries.retain(|_, entry| entry.is_kept(ttl));
    }

    /// Drops what may no longer be served every `ttl`, forever (see
    /// [`QueryCache::evict_expired`]). Returns at once when the cache is off.
    pub async fn sweep(&self) {
        let Some(every) = self.sweep_every() else {
            return;
        };
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.evict_expired();
        }
    }

    /// How many answers (or computations) are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The answer for `key`: a fresh cached one, a stale one while another caller refreshes
    /// it, the one a concurrent caller is computing, or a new one from `compute`.
    pub async fn get_or_try<E, F, Fut>(&self, key: &str, compute: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await.map(Arc::new);
        }
        let found = self.find(key);
        match found {
            Found::Answer(answer) => Ok(answer),
            Found::Refresh(stale, _) => {
                // Until this refresh ends (also if the request is dropped midway), the stale
                // answer is served to everyone else, however long InfluxDB takes: a slow
                // refresh must not send every other request to InfluxDB too.
                let _refreshing = Refreshing(stale);
                let answer = Arc::new(compute().await?);
                self.store(key, answer.clone());
                Ok(answer)
            }
            Found::Join(entry) => Self::join(&entry, compute).await,
        }
    }

    /// Like [`QueryCache::get_or_try`], but a stale answer is refreshed by a task of its own:
    /// no request waits for a refresh, not even the one that starts it. Only the first
    /// request for `key` (or one after the answer was let go) waits, sharing one computation
    /// with those arriving meanwhile. A refresh that fails is logged and leaves the stale
    /// answer to be served until it is too old; the next request past `ttl` tries again.
    ///
    /// This is for answers that are costly to make and asked for all the time (a dashboard's
    /// polling): under load, every request is then a copy of bytes made once per `ttl`.
    pub async fn get_or_refresh<E, F, Fut>(
        self: &Arc<Self>,
        key: &str,
        compute: F,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        E: std::fmt::Debug + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        if self.ttl.is_zero() {
            return compute().await.map(Arc::new);
        }
        match self.find(key) {
            Found::Answer(answer) => Ok(answer),
            Found::Refresh(stale, answer) => {
                let refreshing = Refreshing(stale);
                let cache = Arc::clone(self);
                let key = key.to_owned();
                let refresh = compute();
                tokio::spawn(async move {
                    // Held until the refresh ends, so that no second one starts meanwhile.
                    let _refreshing = refreshing;
                    match refresh.await {
                        Ok(answer) => cache.store(&key, Arc::new(answer)),
                        Err(error) => {
                            tracing::warn!(key, ?error, "refreshing a cached answer failed")
                        }
                    }
                });
                Ok(answer)
            }
            Found::Join(entry) => Self::join(&entry, compute).await,
        }
    }

    /// What `key` holds: an answer to serve, a stale one for this caller to refresh, or a
    /// computation to join (started here when there is none). Drops what may no longer be
    /// served on the way.
    fn find(&self, key: &str) -> Found<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        entries.retain(|_, entry| entry.is_kept(ttl));
        let entry = entries
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Entry::computing()))
            .clone();
        match entry.answer.get() {
            Some((stored, answer)) if stored.elapsed() < ttl => Found::Answer(answer.clone()),
            Some((_, answer)) => {
                if entry.refreshing.swap(true, Ordering::AcqRel) {
                    Found::Answer(answer.clone())
                } else {
                    Found::Refresh(entry.clone(), answer.clone())
                }
            }
            None => Found::Join(entry),
        }
    }

    /// Stores a new answer for `key`, replacing the entry.
    fn store(&self, key: &str, answer: Arc<T>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(key.to_owned(), Arc::new(Entry::answered(answer)));
    }

    /// The answer `entry` is being computed into: the running computation's, or one from
    /// `compute`. If `compute` fails, the cell stays empty and the next waiter tries for
    /// itself.
    async fn join<E, F, Fut>(entry: &Entry<T>, compute: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
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
    async fn a_sweep_drops_what_may_no_longer_be_served() {
        // 500 ms: room for a slow machine between "stale" (0.5-1 s) and "gone" (past 1 s).
        let cache = QueryCache::new(Duration::from_millis(500));
        assert_eq!(cache.sweep_every(), Some(Duration::from_millis(500)));
        assert_eq!(QueryCache::<usize>::new(Duration::ZERO).sweep_every(), None);
        cache
            .get_or_try("q", || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        cache.evict_expired();
        assert_eq!(cache.len(), 1, "fresh: kept");
        tokio::time::sleep(Duration::from_millis(600)).await;
        cache.evict_expired();
        assert_eq!(
            cache.len(),
            1,
            "stale but still served while refreshed: kept"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        cache.evict_expired();
        assert_eq!(cache.len(), 0, "past two ttls: dropped");
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_for_as_long_as_its_refresh_takes() {
        let cache = QueryCache::new(Duration::from_millis(100));
        let first = cache
            .get_or_try("q", || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        assert_eq!(*first, 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A refresh that takes far longer than two ttls.
        let slow = cache.get_or_try("q", || async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok::<_, ()>(2)
        });
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cache.evict_expired();
            cache
                .get_or_try("q", || async { Ok::<_, ()>(3) })
                .await
                .unwrap()
        };
        let (slow, meanwhile) = tokio::join!(slow, meanwhile);
        assert_eq!(*slow.unwrap(), 2);
        assert_eq!(*meanwhile, 1, "the stale answer, not a second computation");
        assert_eq!(
            *cache
                .get_or_try("q", || async { Ok::<_, ()>(4) })
                .await
                .unwrap(),
            2
        );
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
    async fn a_stale_answer_is_served_while_one_caller_refreshes_it() {
        let cache = QueryCache::new(Duration::from_millis(100));
        let runs = AtomicUsize::new(0);
        let slow = || async {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            if run > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, ()>(run)
        };
        assert_eq!(*cache.get_or_try("q", slow).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(120)).await;
        // Stale now: the first caller refreshes (and waits), the others get the stale answer
        // at once.
        let refresher = cache.get_or_try("q", slow);
        let others = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let started = Instant::now();
            let answers =
                futures_util::future::join_all((0..5).map(|_| cache.get_or_try("q", slow))).await;
            (answers, started.elapsed())
        };
        let (refreshed, (answers, waited)) = tokio::join!(refresher, others);
        assert_eq!(*refreshed.unwrap(), 1);
        assert!(answers.iter().all(|a| **a.as_ref().unwrap() == 0));
        assert!(waited < Duration::from_millis(40), "{waited:?}");
        assert_eq!(*cache.get_or_try("q", slow).await.unwrap(), 1, "refreshed");
        // Too old to serve: computed again, with single flight.
        tokio::time::sleep(Duration::from_millis(210)).await;
        assert_eq!(*cache.get_or_try("q", slow).await.unwrap(), 2);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn with_a_background_refresh_no_request_waits_for_a_stale_answer() {
        let cache = Arc::new(QueryCache::new(Duration::from_millis(100)));
        let runs = Arc::new(AtomicUsize::new(0));
        let slow = |runs: &Arc<AtomicUsize>| {
            let runs = runs.clone();
            move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, String>(runs.fetch_add(1, Ordering::SeqCst))
            }
        };
        // The first request waits for the first answer, and shares it.
        let (a, b) = tokio::join!(
            cache.get_or_refresh("q", slow(&runs)),
            cache.get_or_refresh("q", slow(&runs))
        );
        assert_eq!((*a.unwrap(), *b.unwrap()), (0, 0));
        tokio::time::sleep(Duration::from_millis(120)).await;
        // Stale: the request that starts the refresh gets the stale answer at once too.
        let started = Instant::now();
        assert_eq!(*cache.get_or_refresh("q", slow(&runs)).await.unwrap(), 0);
        assert_eq!(*cache.get_or_refresh("q", slow(&runs)).await.unwrap(), 0);
        assert!(
            started.elapsed() < Duration::from_millis(40),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            *cache.get_or_refresh("q", slow(&runs)).await.unwrap(),
            1,
            "refreshed"
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "one refresh for two stale requests"
        );
    }

    #[tokio::test]
    async fn a_failed_background_refresh_keeps_the_stale_answer_until_it_is_too_old() {
        let cache = Arc::new(QueryCache::new(Duration::from_millis(100)));
        let fail = || async { Err::<usize, _>("InfluxDB is down") };
        assert_eq!(
            *cache
                .get_or_refresh("q", || async { Ok::<_, &str>(7) })
                .await
                .unwrap(),
            7
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(*cache.get_or_refresh("q", fail).await.unwrap(), 7, "stale");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            *cache.get_or_refresh("q", fail).await.unwrap(),
            7,
            "stale, retried"
        );
        // Past two ttls the stale answer is gone: the request computes, and sees the failure.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            cache.get_or_refresh("q", fail).await,
            Err("InfluxDB is down")
        );
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
