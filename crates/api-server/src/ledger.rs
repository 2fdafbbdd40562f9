//! The ledger: exact 15-minute usage sums per panel, computed here from raw readings and held
//! in memory, for when InfluxDB holds no usable rollup (history written by another tool, a
//! deployment whose subscriber keeps no rollup, a rollup computed with other settings or by an
//! earlier rule, or while a rebuild runs). See docs/accounting.md, "Without a rollup".
//!
//! The ledger covers one contiguous span `[start, until)` of bucket boundaries. Every reading in
//! it is read once, in slices side by side, and every pair is spread with the core's rule,
//! exactly as the rollup would: each panel's buckets are kept per UTC day, holding the pairs
//! inside the day, with the day's first and last reading; the pairs between days are spread
//! when a period is asked for, so a day read again changes nothing else. It holds the pairs
//! whose readings both lie before the span's end: the pair that straddles the end is the
//! caller's, who reads the recent readings after it.
//!
//! The span grows on demand: backwards to the earliest period a request asks about (never
//! before the earliest reading, before which everything is known to be empty), forwards to a
//! few minutes before now (the rest of a period comes from the recent readings, as after a
//! rollup). Readings written later into the span are found through the invalidation log that
//! the subscriber and the backfill write with every batch: the days they touch are read again.
//! A program that writes readings without that log is seen only for periods after the span's
//! end; a restart of the api-server forgets everything and starts over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use energy_core::apportion::nanos;
use energy_core::rollup::{bucket_start, day_of, Coverage, DAY_SECS, GRAIN_SECS};
use energy_core::{Energy, EnergyPoint, Load, Period, Rules, Usage};
use energy_influx::InfluxError;
use energy_rollup::{LogCursor, PanelPoints, Rollup};
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// Buckets in a UTC day.
const BUCKETS_PER_DAY: usize = (DAY_SECS / GRAIN_SECS) as usize;

/// How far behind now the ledger ends: readings stamped later are read with every request
/// (the recent readings), so a reading that reaches InfluxDB up to this late is never missed,
/// even from a program that writes no invalidation log.
const LAG_SECS: i64 = 5 * 60;

/// Requests that read readings side by side: InfluxDB 1.x runs each on a core of its own.
const READS_SIDE_BY_SIDE: usize = 4;

/// The longest slice of time read in one request.
const MAX_SLICE_SECS: i64 = 24 * 3600;

/// A first request whose period starts at most this long before the ledger's end is read
/// without looking up the earliest reading first.
const NEAR: Duration = Duration::days(2);

/// How often a database found without readings is asked again for its earliest one.
const EMPTY_RECHECK: StdDuration = StdDuration::from_secs(10);

/// The invalidation log is read at most this often (each read is two small statements).
const LOG_EVERY: StdDuration = StdDuration::from_secs(1);

/// The day of a panel: the shares of the pairs inside it (both readings in the day) per
/// bucket, its readings per bucket, and its first and last reading in the span. The pairs
/// between days (the last reading of one and the first of the next with readings) are not held:
/// [`Book::usage`] spreads them when asked, so that a day can be read again, or an earlier part
/// put before it, without touching its neighbours.
#[derive(Clone, Debug)]
struct Day {
    first: EnergyPoint,
    last: EnergyPoint,
    usage: Box<[i128; BUCKETS_PER_DAY]>,
    /// The estimated part of `usage`, once there is any.
    estimated: Option<Box<[i128; BUCKETS_PER_DAY]>>,
    /// Readings per bucket: a panel with a reading in a period counts in it.
    readings: Box<[u32; BUCKETS_PER_DAY]>,
}

impl Day {
    fn new(first: EnergyPoint) -> Day {
        let mut day = Day {
            first,
            last: first,
            usage: Box::new([0; BUCKETS_PER_DAY]),
            estimated: None,
            readings: Box::new([0; BUCKETS_PER_DAY]),
        };
        day.readings[bucket_index(first.time)] += 1;
        day
    }

    /// Adds the pair (a, b), both within this day, to its buckets.
    fn add_pair(&mut self, a: EnergyPoint, b: EnergyPoint, rules: Rules) {
        let Some((spread, estimated)) = rules.spread(a, b) else {
            return;
        };
        if spread.amount() == 0 {
            return;
        }
        for (start, share) in spread.by_quarter() {
            let index = bucket_index(start);
            self.usage[index] += share;
            if estimated {
                self.estimated
                    .get_or_insert_with(|| Box::new([0; BUCKETS_PER_DAY]))[index] += share;
            }
        }
    }

    /// Adds a reading later than every reading of the day so far.
    fn push(&mut self, point: EnergyPoint, rules: Rules) {
        self.add_pair(self.last, point, rules);
        self.readings[bucket_index(point.time)] += 1;
        self.last = point;
    }

    /// The usage of the buckets in `[from, to)` (bucket indexes), and whether they hold a
    /// reading.
    fn sum(&self, from: usize, to: usize) -> (Energy, bool) {
        let energy = Energy {
            usage: Usage::from_nano_kwh(self.usage[from..to].iter().sum()),
            estimated: Usage::from_nano_kwh(
                self.estimated
                    .as_ref()
                    .map_or(0, |e| e[from..to].iter().sum()),
            ),
        };
        (energy, self.readings[from..to].iter().any(|&n| n > 0))
    }

    /// Puts `later` (the rest of the same day, after every reading of `self`) after `self`.
    fn append(&mut self, later: Day, rules: Rules) {
        for index in 0..BUCKETS_PER_DAY {
            self.usage[index] += later.usage[index];
            self.readings[index] += later.readings[index];
        }
        if let Some(estimated) = later.estimated {
            let own = self
                .estimated
                .get_or_insert_with(|| Box::new([0; BUCKETS_PER_DAY]));
            for index in 0..BUCKETS_PER_DAY {
                own[index] += estimated[index];
            }
        }
        // The pair between the two parts now lies inside the day.
        self.add_pair(self.last, later.first, rules);
        self.last = later.last;
    }
}

/// The bucket of `time` within its UTC day.
fn bucket_index(time: DateTime<Utc>) -> usize {
    (time.timestamp().rem_euclid(DAY_SECS) / GRAIN_SECS) as usize
}

/// Each panel's days (keyed by the day's start, seconds since the epoch).
type Days = BTreeMap<String, BTreeMap<i64, Day>>;

/// What the ledger holds.
#[derive(Default)]
struct Book {
    /// `[start, until)`, once anything was read.
    span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The earliest reading, once looked up (`Some(None)`: there is none): nothing lies before
    /// it, so the span never needs to reach further back.
    earliest: Option<Option<DateTime<Utc>>>,
    /// When `earliest` was found to be "none": a database without readings is asked again
    /// every [`EMPTY_RECHECK`], since history may be written into it at any time.
    empty_since: Option<Instant>,
    /// Each panel's last reading before the span.
    before: BTreeMap<String, EnergyPoint>,
    /// When each day (start, seconds since the epoch) was last read, in nanoseconds since the
    /// epoch: the read saw every write that had ended by then.
    read_at: BTreeMap<i64, i64>,
    days: Days,
}

impl Book {
    /// Each panel's usage in `period` (bucket boundaries within the span, or before the
    /// earliest reading, where it is zero); `recent` holds each panel's readings from some time
    /// before the span's end on, among them the first reading after the end, which closes the
    /// pair that straddles it. Panels with neither a reading in the period nor any usage in it
    /// are left out.
    fn usage(
        &self,
        period: Period,
        rules: Rules,
        recent: &BTreeMap<String, Vec<EnergyPoint>>,
    ) -> BTreeMap<String, Load> {
        let mut out = BTreeMap::new();
        let (start, end) = (period.start.timestamp(), period.end.timestamp());
        let Some((_, span_end)) = self.span else {
            return out;
        };
        if start >= end {
            return out;
        }
        let first_key = day_of(period.start).start.timestamp();
        let no_days = BTreeMap::new();
        let panels: BTreeSet<&String> = self.days.keys().chain(self.before.keys()).collect();
        // The period's buckets, for its largest one.
        let quarters = ((end - start) / GRAIN_SECS).max(1) as usize;
        let mut by_quarter = vec![0i128; quarters];
        for panel in panels {
            let days = self.days.get(panel).unwrap_or(&no_days);
            let mut total = Energy::ZERO;
            let mut any = false;
            by_quarter.fill(0);
            for (&day, data) in days.range(first_key..end) {
                let from = ((start - day).max(0) / GRAIN_SECS) as usize;
                let to = (((end - day) / GRAIN_SECS) as usize).min(BUCKETS_PER_DAY);
                if from >= to {
                    continue;
                }
                let (usage, readings) = data.sum(from, to);
                total += usage;
                // A panel with a reading in the period counts even when its usage is zero.
                any |= readings;
                let offset = ((day + from as i64 * GRAIN_SECS - start) / GRAIN_SECS) as usize;
                for (slot, share) in by_quarter[offset..].iter_mut().zip(&data.usage[from..to]) {
                    *slot += share;
                }
            }
            let mut bridge = |a: EnergyPoint, b: EnergyPoint, total: &mut Energy| {
                let Some((spread, estimated)) = rules.spread(a, b) else {
                    return;
                };
                *total += Energy::share(spread.share(period.start, period.end), estimated);
                for (quarter, share) in
                    spread.by_quarter_within(nanos(period.start), nanos(period.end))
                {
                    let index = ((quarter.timestamp() - start) / GRAIN_SECS) as usize;
                    if let Some(slot) = by_quarter.get_mut(index) {
                        *slot += share;
                    }
                }
            };
            // The pairs between days with readings that reach into the period: from the last
            // day before it (or the reading before the span) to the first day after it, or to
            // the first reading after the span.
            let mut previous: Option<EnergyPoint> = match days.range(..first_key).next_back() {
                Some((_, day)) => Some(day.last),
                None => self.before.get(panel).copied(),
            };
            let mut closed = false;
            for (_, day) in days.range(first_key..) {
                if let Some(a) = previous {
                    if a.time < period.end && day.first.time > period.start {
                        bridge(a, day.first, &mut total);
                    }
                }
                if day.first.time >= period.end {
                    closed = true;
                    break;
                }
                previous = Some(day.last);
            }
            if !closed {
                let after = recent
                    .get(panel)
                    .and_then(|points| points.iter().find(|p| p.time >= span_end));
                if let (Some(a), Some(b)) = (previous, after) {
                    if a.time < period.end && b.time > period.start {
                        bridge(a, *b, &mut total);
                    }
                }
            }
            if any || total.usage != Usage::ZERO {
                let peak = by_quarter.iter().copied().max().unwrap_or(0);
                out.insert(
                    panel.clone(),
                    Load {
                        energy: total,
                        peak: Usage::from_nano_kwh(peak),
                    },
                );
            }
        }
        out
    }

    /// Puts the days read from `[period)` (which ends where the span starts, or is the first
    /// span), with `before` the readings before it, before the span.
    fn prepend(
        &mut self,
        days: Days,
        before: BTreeMap<String, EnergyPoint>,
        period: Period,
        rules: Rules,
    ) {
        for (panel, new_days) in days {
            let panel_days = self.days.entry(panel).or_default();
            for (key, day) in new_days {
                match panel_days.remove(&key) {
                    // The span started inside this day: the earlier part comes first.
                    Some(later) => {
                        let mut merged = day;
                        merged.append(later, rules);
                        panel_days.insert(key, merged);
                    }
                    None => {
                        panel_days.insert(key, day);
                    }
                }
            }
        }
        self.before = before;
        let span_end = self.span.map_or(period.end, |(_, e)| e);
        self.span = Some((period.start, span_end));
    }

    /// Adds the slices read from where the span ends to `end`, in time order.
    fn append(&mut self, slices: Vec<PanelPoints>, end: DateTime<Utc>, rules: Rules) {
        for points in slices {
            absorb(&mut self.days, points, rules);
        }
        if let Some((_, until)) = self.span.as_mut() {
            *until = end;
        }
    }

    /// Replaces what the ledger holds for `period` (the part of one UTC day within the span)
    /// with the slices read from it again.
    fn replace(&mut self, period: Period, slices: Vec<PanelPoints>, rules: Rules) {
        let key = day_of(period.start).start.timestamp();
        let mut fresh = Days::new();
        for points in slices {
            absorb(&mut fresh, points, rules);
        }
        for days in self.days.values_mut() {
            days.remove(&key);
        }
        for (panel, mut days) in fresh {
            if let Some(day) = days.remove(&key) {
                self.days.entry(panel).or_default().insert(key, day);
            }
        }
    }
}

/// Adds readings (in time order, all later than what `days` holds for the panel) to `days`:
/// each pair within a day to that day's buckets.
fn absorb(days: &mut Days, points: PanelPoints, rules: Rules) {
    for (panel, points) in points {
        let panel_days = days.entry(panel).or_default();
        let mut last = panel_days.values().next_back().map(|day| day.last.time);
        for point in points {
            if last.is_some_and(|t| t >= point.time) {
                continue;
            }
            last = Some(point.time);
            let key = day_of(point.time).start.timestamp();
            match panel_days.get_mut(&key) {
                Some(day) => day.push(point, rules),
                None => {
                    panel_days.insert(key, Day::new(point));
                }
            }
        }
    }
}

/// The log's cursor, when it was last read, and the days it named that are still to be read
/// again (kept here, so that a request dropped halfway loses none of them).
struct LogState {
    cursor: LogCursor,
    read_at: Option<Instant>,
    pending: BTreeSet<i64>,
}

/// The ledger, shared with the read it may have under way: a read goes on when the request
/// that started it gives up (its timeout), so the next request finds it done, or waits for it,
/// instead of starting over (a year of readings can take longer than one request may).
pub struct Ledger(Arc<Shared>);

impl Ledger {
    /// A ledger that reads with `reader` and reads the invalidation log from now on, reading
    /// each entry for good once `settle` old (see `LogCursor`).
    pub fn new(reader: Rollup, settle: StdDuration) -> Ledger {
        Ledger(Arc::new(Shared::new(reader, settle)))
    }

    /// Where the ledger ends when brought up to date at `now`: the bucket boundary a few
    /// minutes before it (the rest comes from the recent readings).
    pub fn until(now: DateTime<Utc>) -> DateTime<Utc> {
        bucket_start(now - Duration::seconds(LAG_SECS))
    }

    /// See [`Shared::prepare`]; runs as a task of its own, which finishes even if this call is
    /// dropped.
    pub async fn prepare(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Coverage, InfluxError> {
        let shared = Arc::clone(&self.0);
        match tokio::spawn(async move { shared.prepare(from, until).await }).await {
            Ok(coverage) => coverage,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(InfluxError::Unreachable(
                "the ledger's read was cancelled: the server is stopping".into(),
            )),
        }
    }

    /// Each panel's usage and largest bucket in `period` (see [`Book::usage`]).
    pub fn usage(
        &self,
        period: Period,
        recent: &BTreeMap<String, Vec<EnergyPoint>>,
    ) -> BTreeMap<String, Load> {
        self.0
            .book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .usage(period, self.0.rules(), recent)
    }
}

struct Shared {
    reader: Rollup,
    book: RwLock<Book>,
    /// Held while the ledger reads from InfluxDB: one reader at a time, so that two requests
    /// never read the same readings twice.
    growing: tokio::sync::Mutex<LogState>,
}

impl Shared {
    fn new(reader: Rollup, settle: StdDuration) -> Shared {
        let now = Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .saturating_sub(settle.as_nanos() as i64);
        Shared {
            reader,
            book: RwLock::new(Book::default()),
            growing: tokio::sync::Mutex::new(LogState {
                cursor: LogCursor::new(now, settle),
                read_at: None,
                pending: BTreeSet::new(),
            }),
        }
    }

    fn rules(&self) -> Rules {
        self.reader.rules()
    }

    /// Brings the ledger up to date and makes it cover every bucket from `from` on (as far as
    /// readings exist) up to `until` (from [`Ledger::until`]) at least. Returns what of it may
    /// be used, like a rollup's coverage: every bucket before `complete_until`, which is
    /// `until` or later (when a request that came later already took the span further).
    async fn prepare(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Coverage, InfluxError> {
        let mut log = self.growing.lock().await;
        let cold = self
            .book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .span
            .is_none();
        let from = bucket_start(from).min(until);
        let from = if cold && until - from <= NEAR {
            // A first request about the last day or two (today's usage) reads them at once:
            // looking for the earliest reading first would only spare it reading a few empty
            // hours of a new database.
            self.read_log(&mut log).await?;
            from
        } else {
            let earliest = if cold {
                // Nothing read yet: the log names nothing to read again (see `read_log`), so
                // the earliest reading can be looked up meanwhile.
                let (_, earliest) =
                    futures_util::future::try_join(self.read_log(&mut log), self.earliest())
                        .await?;
                earliest
            } else {
                // The log may name readings before the span, and so an earlier earliest one.
                self.read_log(&mut log).await?;
                self.earliest().await?
            };
            from.max(earliest.map_or(until, bucket_start)).min(until)
        };
        let span = self.book.read().unwrap_or_else(|e| e.into_inner()).span;
        match span {
            None => self.extend_back(from, until).await?,
            Some((start, end)) => {
                if end < until {
                    self.extend_forward(end, until).await?;
                }
                if from < start {
                    self.extend_back(from, start).await?;
                }
            }
        }
        let end = self
            .book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .span
            .map_or(until, |(_, end)| end);
        Ok(Coverage {
            complete_until: end,
            months: false,
            hours: false,
        })
    }

    /// The earliest reading, looked up once (and again after the log named readings before it).
    async fn earliest(&self) -> Result<Option<DateTime<Utc>>, InfluxError> {
        {
            let book = self.book.read().unwrap_or_else(|e| e.into_inner());
            match book.earliest {
                Some(None)
                    if book
                        .empty_since
                        .is_some_and(|t| t.elapsed() >= EMPTY_RECHECK) => {}
                Some(known) => return Ok(known),
                None => {}
            }
        }
        let earliest = self.reader.earliest_reading().await?;
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        book.earliest = Some(earliest);
        book.empty_since = earliest.is_none().then(Instant::now);
        Ok(earliest)
    }

    /// Reads `[start, end)` in slices side by side (at most [`READS_SIDE_BY_SIDE`] at once) and
    /// hands them to `each` in time order.
    async fn read_slices(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        mut each: impl FnMut(PanelPoints),
    ) -> Result<(), InfluxError> {
        let total = (end - start).num_seconds();
        // Short spans in a few slices too, so that a day reads as fast as four quarter days.
        let step = (total / READS_SIDE_BY_SIDE as i64).clamp(GRAIN_SECS, MAX_SLICE_SECS);
        let step = step.div_euclid(GRAIN_SECS).max(1) * GRAIN_SECS;
        let mut slices = Vec::new();
        let mut at = start;
        while at < end {
            let next = (at + Duration::seconds(step)).min(end);
            slices.push((at, next));
            at = next;
        }
        let mut reads = stream::iter(slices)
            .map(|(from, to)| self.reader.readings_between(from, to))
            .buffered(READS_SIDE_BY_SIDE);
        while let Some(points) = reads.try_next().await? {
            each(points);
        }
        Ok(())
    }

    /// Reads `[start, end)`, which ends where the span starts (or is the first span), and puts it
    /// before the span.
    async fn extend_back(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(), InfluxError> {
        if start >= end {
            // Nothing to read, but the span starts here (e.g. an empty database).
            let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
            if book.span.is_none() {
                book.span = Some((start, end));
            }
            return Ok(());
        }
        // Known only once the earliest reading was looked up (`None` until then).
        let before_known_empty = match self.book.read().unwrap_or_else(|e| e.into_inner()).earliest
        {
            Some(Some(earliest)) => start <= earliest,
            Some(None) => true,
            None => false,
        };
        let rules = self.rules();
        let read_at = now_nanos();
        let started = Instant::now();
        // The readings before the span are looked up while the slices are read, which open each
        // panel's first day without them: `Book::prepend` opens those days again with them.
        let before_read = async {
            if before_known_empty {
                Ok(BTreeMap::new())
            } else {
                self.reader.readings_before(start).await
            }
        };
        let mut days = Days::new();
        let mut readings = 0;
        let slices_read = self.read_slices(start, end, |points| {
            readings += points.values().map(Vec::len).sum::<usize>();
            absorb(&mut days, points, rules);
        });
        let (before, ()) = futures_util::future::try_join(before_read, slices_read).await?;
        tracing::info!(
            from = %start,
            to = %end,
            readings,
            seconds = started.elapsed().as_secs_f64(),
            "ledger read readings (no usable rollup)"
        );
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        book.prepend(days, before, Period { start, end }, rules);
        mark_read(&mut book.read_at, start, end, read_at);
        Ok(())
    }

    /// Reads `[start, end)`, which starts where the span ends, and adds it.
    async fn extend_forward(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(), InfluxError> {
        let rules = self.rules();
        let read_at = now_nanos();
        let mut slices = Vec::new();
        self.read_slices(start, end, |points| slices.push(points))
            .await?;
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        mark_read(&mut book.read_at, start, end, read_at);
        book.append(slices, end, rules);
        Ok(())
    }

    /// Reads the invalidation log (at most every [`LOG_EVERY`]) and reads again the days of the
    /// span it names.
    async fn read_log(&self, log: &mut LogState) -> Result<(), InfluxError> {
        if log.read_at.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return Ok(());
        }
        log.read_at = Some(Instant::now());
        loop {
            let read = self.reader.read_log(&mut log.cursor).await?;
            // An entry read for good names writes that had ended by `durable + settle`: a day
            // read after that already holds them (a backfill's log, read for good after the
            // ledger read the backfill, needs no second read).
            let ended_by = log
                .cursor
                .durable
                .saturating_add(log.cursor.settle.as_nanos() as i64);
            let book = self.book.read().unwrap_or_else(|e| e.into_inner());
            let seen = |day: &i64| book.read_at.get(day).is_some_and(|&t| t >= ended_by);
            log.pending.extend(days_of(&read.fresh));
            log.pending
                .extend(days_of(&read.settled).into_iter().filter(|day| !seen(day)));
            drop(book);
            if !read.more {
                break;
            }
        }
        let Some((span_start, span_end)) = self.book.read().unwrap_or_else(|e| e.into_inner()).span
        else {
            // Nothing read yet: whatever is read first holds these.
            log.pending.clear();
            return Ok(());
        };
        while let Some(&day) = log.pending.first() {
            if at(day) < span_start {
                // Readings before the span: the earliest reading may be earlier now, so look
                // it up again before the span is next extended backwards.
                self.book
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .earliest = None;
            }
            let period = Period {
                start: at(day).max(span_start),
                end: at(day + DAY_SECS).min(span_end),
            };
            if period.start < period.end {
                self.reread(period).await?;
            }
            log.pending.remove(&day);
        }
        Ok(())
    }

    /// Reads `period` (within the span, from a day boundary or the span's start to a day
    /// boundary or the span's end) again, replacing what the ledger held for it.
    async fn reread(&self, period: Period) -> Result<(), InfluxError> {
        let rules = self.rules();
        let read_at = now_nanos();
        let mut slices = Vec::new();
        self.read_slices(period.start, period.end, |points| slices.push(points))
            .await?;
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        book.read_at
            .insert(day_of(period.start).start.timestamp(), read_at);
        book.replace(period, slices, rules);
        Ok(())
    }
}

/// The UTC days (start, seconds since the epoch) of the buckets of `dirty`.
fn days_of(dirty: &energy_rollup::Dirty) -> BTreeSet<i64> {
    let mut days = BTreeSet::new();
    for (_, runs) in dirty.panels() {
        for (&start, &end) in runs {
            let mut day = day_of(at(start)).start.timestamp();
            while day < end {
                days.insert(day);
                day += DAY_SECS;
            }
        }
    }
    days
}

/// Now, in nanoseconds since the epoch.
fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// Records that the days of `[start, end)` were read as of `at` (nanoseconds). A day read in
/// two parts (the span began or ended inside it) is only as fresh as its older part.
fn mark_read(read_at: &mut BTreeMap<i64, i64>, start: DateTime<Utc>, end: DateTime<Utc>, at: i64) {
    let mut day = day_of(start).start.timestamp();
    while day < end.timestamp() {
        read_at
            .entry(day)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
        day += DAY_SECS;
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use energy_core::usage::{load_in, quarters_of};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn rules() -> Rules {
        Rules::new("500".parse().unwrap(), energy_core::EstimateAfter::DEFAULT)
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_nanos(seconds * 1_000_000_000)
    }

    /// Three days of two panels' readings, every 1 to 40 minutes (nanosecond times), with
    /// resets and glitches.
    fn history(rng: &mut StdRng, start: i64) -> BTreeMap<String, Vec<EnergyPoint>> {
        let mut out = BTreeMap::new();
        for panel in ["a", "b"] {
            let mut time = start * 1_000_000_000 + rng.gen_range(0..600_000_000_000);
            let mut energy = 1000.0;
            let mut points = Vec::new();
            while time < (start + 3 * DAY_SECS) * 1_000_000_000 {
                energy = match rng.gen_range(0..100) {
                    0 => 1.0,            // a reset
                    1 => energy + 1.0e6, // a glitch
                    _ => energy + rng.gen_range(0.0..3.0),
                };
                points.push(EnergyPoint {
                    time: Utc.timestamp_nanos(time),
                    energy_kwh: energy,
                });
                time += rng.gen_range(60..2400) * 1_000_000_000 + rng.gen_range(0..1_000_000_000);
            }
            out.insert(panel.to_owned(), points);
        }
        out
    }

    fn between(all: &BTreeMap<String, Vec<EnergyPoint>>, period: Period) -> PanelPoints {
        all.iter()
            .map(|(panel, points)| {
                let inside = points.iter().filter(|p| period.contains(p.time)).copied();
                (panel.clone(), inside.collect::<Vec<_>>())
            })
            .filter(|(_, points)| !points.is_empty())
            .collect()
    }

    fn before(
        all: &BTreeMap<String, Vec<EnergyPoint>>,
        at: DateTime<Utc>,
    ) -> BTreeMap<String, EnergyPoint> {
        all.iter()
            .filter_map(|(panel, points)| {
                Some((panel.clone(), *points.iter().rev().find(|p| p.time < at)?))
            })
            .collect()
    }

    /// Slices of `period` cut at random bucket boundaries, as the ledger reads them.
    fn slices(
        rng: &mut StdRng,
        all: &BTreeMap<String, Vec<EnergyPoint>>,
        period: Period,
    ) -> Vec<PanelPoints> {
        let mut out = Vec::new();
        let mut at = period.start;
        while at < period.end {
            let next = (at + Duration::seconds(GRAIN_SECS * rng.gen_range(1..40))).min(period.end);
            out.push(between(
                all,
                Period {
                    start: at,
                    end: next,
                },
            ));
            at = next;
        }
        out
    }

    /// Every panel's usage in random bucket-aligned periods within `span` equals the core's
    /// rule applied to all the readings (the first reading after the span, which closes the pair
    /// that straddles its end, is among the recent readings given), and panels with neither a
    /// reading nor usage in the period are left out.
    fn assert_matches(
        book: &Book,
        all: &BTreeMap<String, Vec<EnergyPoint>>,
        span: Period,
        rng: &mut StdRng,
    ) {
        let buckets = (span.end - span.start).num_seconds() / GRAIN_SECS;
        for _ in 0..300 {
            let a = rng.gen_range(0..buckets);
            let b = rng.gen_range(a + 1..=buckets);
            let period = Period {
                start: span.start + Duration::seconds(a * GRAIN_SECS),
                end: span.start + Duration::seconds(b * GRAIN_SECS),
            };
            let got = book.usage(period, rules(), all);
            let quarters = quarters_of(period);
            for (panel, points) in all {
                let expected = load_in(points, &quarters, rules());
                let has_reading = points.iter().any(|p| period.contains(p.time));
                assert_eq!(
                    got.get(panel).copied(),
                    (has_reading || expected.energy.usage != Usage::ZERO).then_some(expected),
                    "{panel} {period:?}"
                );
            }
        }
    }

    #[test]
    fn a_span_read_in_parts_backwards_and_forwards_sums_as_the_pair_rule() {
        for seed in 0..20 {
            let rng = &mut StdRng::seed_from_u64(seed);
            let day0 = 1_764_547_200; // 2025-12-01T00:00:00Z
            let all = history(rng, day0);
            let grain = |n: i64| t(day0 + n * GRAIN_SECS);
            // The span first covers a middle part (starting inside a day), then grows both ways.
            let (c0, c1, c2, c3) = (
                rng.gen_range(0..40),
                rng.gen_range(60..130),
                rng.gen_range(150..200),
                3 * 96,
            );
            let mut book = Book::default();
            let middle = Period {
                start: grain(c1),
                end: grain(c2),
            };
            let mut days = Days::new();
            let b1 = before(&all, middle.start);
            for slice in slices(rng, &all, middle) {
                // As `Shared::extend_back` does: the readings before come to `prepend`.
                absorb(&mut days, slice, rules());
            }
            book.prepend(days, b1, middle, rules());
            assert_matches(&book, &all, middle, rng);

            book.append(
                slices(
                    rng,
                    &all,
                    Period {
                        start: grain(c2),
                        end: grain(c3),
                    },
                ),
                grain(c3),
                rules(),
            );
            let earlier = Period {
                start: grain(c0),
                end: grain(c1),
            };
            let b0 = before(&all, earlier.start);
            let mut days = Days::new();
            for slice in slices(rng, &all, earlier) {
                // As `Shared::extend_back` does: the readings before come to `prepend`.
                absorb(&mut days, slice, rules());
            }
            book.prepend(days, b0, earlier, rules());
            assert_eq!(book.span, Some((grain(c0), grain(c3))));
            assert_matches(
                &book,
                &all,
                Period {
                    start: grain(c0),
                    end: grain(c3),
                },
                rng,
            );
        }
    }

    #[test]
    fn a_day_read_again_after_readings_changed_sums_as_the_pair_rule() {
        for seed in 0..20 {
            let rng = &mut StdRng::seed_from_u64(100 + seed);
            let day0 = 1_764_547_200;
            let mut all = history(rng, day0);
            let span = Period {
                start: t(day0),
                end: t(day0 + 3 * DAY_SECS),
            };
            let mut book = Book::default();
            let mut days = Days::new();
            for slice in slices(rng, &all, span) {
                absorb(&mut days, slice, rules());
            }
            book.prepend(days, BTreeMap::new(), span, rules());
            // Change the middle day: a reading dropped, one changed, one added, for one panel
            // or both; then the day is read again.
            let day = Period {
                start: t(day0 + DAY_SECS),
                end: t(day0 + 2 * DAY_SECS),
            };
            for points in all.values_mut() {
                if rng.gen_bool(0.3) {
                    continue;
                }
                let inside: Vec<usize> = (0..points.len())
                    .filter(|&i| day.contains(points[i].time))
                    .collect();
                let i = inside[rng.gen_range(0..inside.len())];
                points[i].energy_kwh += rng.gen_range(-5.0..5.0);
                let j = inside[rng.gen_range(0..inside.len())];
                points.remove(j);
                let extra = EnergyPoint {
                    time: day.start + Duration::seconds(rng.gen_range(0..DAY_SECS)),
                    energy_kwh: rng.gen_range(0.0..5000.0),
                };
                if !points.iter().any(|p| p.time == extra.time) {
                    points.push(extra);
                    points.sort_by_key(|p| p.time);
                }
            }
            book.replace(day, slices(rng, &all, day), rules());
            assert_matches(&book, &all, span, rng);
        }
    }
}
