//! Load test: the api-server binary under `wrk` against a real InfluxDB 1.6 holding two days of
//! 1-minute readings from 100 panels (288 000 points) and the usage rollup the real
//! mqtt-subscriber builds over them, as in every deployment. (Without a rollup the API reads raw
//! points: right, but slower — a year of months took over a second alone here in a debug build,
//! which under this load exceeds wrk's timeout; `api.rs` and `rollup.rs` test that path.)
//!
//! Every endpoint gets `wrk -t2 -c16 --latency` for 30 s (`/health` for 10 s, it does no real
//! work). A run passes when wrk saw no non-2xx answer and no socket error (a request that takes
//! longer than wrk's 2 s timeout counts as one), and when the server's resident memory stays
//! flat across the five runs. The answers are checked against figures computed here from the
//! generated readings, before and after the load, so speed is never bought with wrong numbers.
//!
//! The figures (requests/s, p50, p99, RSS) are printed as a table: run with `--nocapture` to see
//! them on success; a failing run shows them in the test's captured output. They are figures of
//! whatever build `cargo test` made (debug, unless `--release`), with wrk, influxd and the
//! api-server sharing one machine — compare runs, not absolute numbers.
//!
//! `wrk` must be installed (`apt-get install -y wrk`, done by `scripts/install-services.sh`):
//! without it the test fails instead of skipping.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{
    DateTime, Datelike, Duration as Span, FixedOffset, NaiveDate, TimeZone, Timelike, Utc,
};
use serde_json::Value;
use test_support::reference::{self, kwh_3, Rule, Shares};
use test_support::wrk::{Wrk, WrkOptions, WrkReport};
use test_support::{
    binary, free_port, http_get, start_subscriber, try_http_get, wait_until, Influx, Mosquitto,
    Program,
};

const DATABASE: &str = "energy";
const PANELS: usize = 100;
/// Two days of history, one reading per panel per minute, the last one "now".
const READINGS_PER_PANEL: i64 = 2 * 24 * 60;
/// Lines per InfluxDB write: the batch size InfluxDB 1.6 digests best (shared/SERVICES.md).
const WRITE_BATCH_LINES: usize = 5_000;

const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 16;
const API_RUN: Duration = Duration::from_secs(30);
/// `/health` only pings InfluxDB; a shorter run keeps the whole test near two and a half minutes.
const HEALTH_RUN: Duration = Duration::from_secs(10);
/// wrk's own default, given explicitly because the table's meaning depends on it: a request
/// without an answer after this long is a socket "timeout" error, and its latency is not counted.
const WRK_TIMEOUT: Duration = Duration::from_secs(2);

/// The endpoints, in the order they are loaded, and how long each run lasts.
const ENDPOINTS: [(&str, Duration); 5] = [
    ("/api/panel/realtime", API_RUN),
    ("/api/panel/today-usage", API_RUN),
    ("/api/panel/summary", API_RUN),
    ("/api/energy/monthly", API_RUN),
    ("/health", HEALTH_RUN),
];

/// Memory is flat when the last sample stays below `2 × (RSS after the first run) + this`…
const RSS_SLACK_KIB: u64 = 20 * 1024;
/// …and it has not grown by more than this after every single run (a leak grows every time;
/// allocator warm-up does not).
const RSS_STEP_KIB: u64 = 1024;

/// The mean power is reported to 3 decimals; allow one unit in the last place either side. (Usage
/// figures are compared exactly: the reference gives the same whole nano-kWh the API sums.)
const KW_TOLERANCE: f64 = 0.0015;

#[test]
fn every_endpoint_serves_sustained_load_without_errors_wrong_figures_or_memory_growth() {
    // First, so a machine without wrk fails at once, before two minutes of setup.
    let wrk = Wrk::require();
    let wrk_options = |duration| WrkOptions {
        threads: WRK_THREADS,
        connections: WRK_CONNECTIONS,
        duration,
        timeout: WRK_TIMEOUT,
    };

    let now = Utc::now().with_nanosecond(0).unwrap();
    let zone = Zone::at_local_noon(now);
    let history = History::generate(now);

    let influx = Influx::start();
    influx.create_database(DATABASE);
    let started = Instant::now();
    history.write_to(&influx);
    let load_time = started.elapsed();
    let stored = influx.count_points(DATABASE);
    assert_eq!(stored, history.len() as u64, "points stored in InfluxDB");
    let broker = Mosquitto::start();
    let _subscriber = start_subscriber(&broker, &influx, "load-test", &[]);
    let newest = now.timestamp_nanos_opt().unwrap();
    wait_until(Duration::from_secs(120), "the usage rollup", || {
        influx
            .rollup_complete_until(DATABASE)
            .is_some_and(|until| until >= newest)
    });

    let exe = binary("api-server");
    let profile = build_profile(&exe);
    let port = free_port();
    let api = Program::start(
        "api-server",
        &[
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DATABASE.to_owned()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("TIMEZONE", zone.name.clone()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(20), "api-server to listen", || {
        try_http_get(&format!("{base}/health")).is_ok()
    });

    println!();
    println!(
        "history: {PANELS} panels x {READINGS_PER_PANEL} readings = {} points, written in \
         {WRITE_BATCH_LINES}-line batches in {:.1} s ({:.0} points/s)",
        history.len(),
        load_time.as_secs_f64(),
        history.len() as f64 / load_time.as_secs_f64()
    );
    println!(
        "TIMEZONE={} (local time {}, so \"today\" holds about 12 h of readings)",
        zone.name,
        now.with_timezone(&zone.offset).format("%Y-%m-%d %H:%M")
    );
    println!(
        "api-server: {} ({profile} build{}), pid {}",
        exe.display(),
        if profile == "debug" {
            ": what `cargo test` builds; use `cargo test --release` for release figures"
        } else {
            ""
        },
        api.pid()
    );
    println!(
        "machine: {} CPU cores, shared by wrk, influxd and api-server; load average {}",
        cores(),
        load_average()
    );

    // Correct answers first: a fast server that answers wrongly is no success.
    let expected = Expected::compute(&history, &zone, now);
    let before = Answers::fetch(&base);
    let mut failures = before.check(&expected);

    let mut runs = Vec::new();
    let start_rss = resident_kib(api.pid());
    for (path, duration) in ENDPOINTS {
        let rss_before = resident_kib(api.pid());
        let url = format!("{base}{path}");
        let report = wrk
            .run(&url, &wrk_options(duration))
            .unwrap_or_else(|e| panic!("wrk against {url}: {e}"));
        let rss_after = resident_kib(api.pid());
        runs.push(Run {
            path,
            duration,
            alone: before.took[path],
            report,
            rss_before,
            rss_after,
        });
    }
    let peak_rss = peak_resident_kib(api.pid());

    println!(
        "wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} --timeout {}s --latency; \"alone\" is one request \
         without load, before the runs",
        WRK_TIMEOUT.as_secs()
    );
    println!("{}", table(&runs));
    println!("load average after the runs: {}", load_average());
    println!(
        "RSS samples (MiB): at start {}; {}; peak (VmHWM) {}",
        mib(start_rss),
        runs.iter()
            .map(|run| format!(
                "{} {} -> {}",
                run.path,
                mib(run.rss_before),
                mib(run.rss_after)
            ))
            .collect::<Vec<_>>()
            .join("; "),
        mib(peak_rss)
    );

    for run in &runs {
        let report = &run.report;
        if report.requests == 0 {
            failures.push(format!("{}: wrk completed no request", run.path));
        }
        if report.non_2xx_3xx > 0 {
            failures.push(format!(
                "{}: {} of {} answers were not 2xx/3xx",
                run.path, report.non_2xx_3xx, report.requests
            ));
        }
        if report.socket_errors.total() > 0 {
            failures.push(format!(
                "{}: socket errors {:?} (a timeout is a request slower than {} s)",
                run.path,
                report.socket_errors,
                WRK_TIMEOUT.as_secs()
            ));
        }
    }
    failures.extend(memory_failures(&runs));
    let influx_failures = api.output().matches("InfluxDB call failed").count();
    if influx_failures > 0 {
        failures.push(format!(
            "api-server logged {influx_failures} failed InfluxDB calls, each answered 503 (a call \
             slower than INFLUX_TIMEOUT_MS fails: InfluxDB did not keep up)"
        ));
    }

    // The same figures after the load: nothing was cached wrongly or corrupted under pressure.
    let after = Answers::fetch(&base);
    failures.extend(after.check(&expected));
    if let Some(difference) = before.differs_from(&after) {
        failures.push(format!("answers changed under load: {difference}"));
    }

    assert!(
        failures.is_empty(),
        "load test failed:\n  {}\nwrk output of every run:\n{}",
        failures.join("\n  "),
        runs.iter()
            .map(|run| run.report.output.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The history

/// A fixed-offset zone in which it is now between 12:00 and 13:00: "today" then always holds
/// about 12 hours of readings (so today-usage and summary always have the same amount of work,
/// whatever the hour the test runs at) and no local midnight passes during the test.
struct Zone {
    /// The IANA name given to the api-server, `Etc/GMT-7` for UTC+7 (POSIX signs are inverted).
    name: String,
    offset: FixedOffset,
}

impl Zone {
    fn at_local_noon(now: DateTime<Utc>) -> Zone {
        // -11..=12 hours, all of which exist as Etc/GMT±N.
        let hours = 12 - now.hour() as i32;
        let name = match hours {
            0 => "Etc/GMT".to_owned(),
            h if h > 0 => format!("Etc/GMT-{h}"),
            h => format!("Etc/GMT+{}", -h),
        };
        Zone {
            name,
            offset: FixedOffset::east_opt(hours * 3600).unwrap(),
        }
    }

    /// The UTC instant of local midnight starting `date`.
    fn midnight(&self, date: NaiveDate) -> DateTime<Utc> {
        self.offset
            .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .with_timezone(&Utc)
    }
}

#[derive(Clone, Copy)]
struct Reading {
    time: DateTime<Utc>,
    power_kw: f64,
    energy_kwh: f64,
}

/// Each panel's readings, oldest first, panels sorted by id.
struct History {
    panels: Vec<(String, Vec<Reading>)>,
}

impl History {
    /// One reading per panel per minute up to `now`: power follows a daily curve with noise,
    /// energy grows by power × 1 minute. Values are rounded so that what InfluxDB stores is
    /// exactly what is kept here.
    fn generate(now: DateTime<Utc>) -> History {
        let first = now - Span::minutes(READINGS_PER_PANEL - 1);
        let mut noise = XorShift(0x5eed_1234_abcd_0042);
        let panels = (1..=PANELS)
            .map(|number| {
                let base_kw = 20.0 + (number % 10) as f64 * 5.0;
                let mut energy_kwh = 1_000.0 * number as f64;
                let readings = (0..READINGS_PER_PANEL)
                    .map(|minute| {
                        let time = first + Span::minutes(minute);
                        let day_fraction = f64::from(time.num_seconds_from_midnight()) / 86_400.0;
                        let curve = (day_fraction * std::f64::consts::TAU).sin();
                        let power_kw =
                            round_to(base_kw + 10.0 * curve + 4.0 * noise.unit() - 2.0, 3);
                        energy_kwh = round_to(energy_kwh + power_kw / 60.0, 6);
                        Reading {
                            time,
                            power_kw,
                            energy_kwh,
                        }
                    })
                    .collect();
                (format!("PANEL_{number:03}"), readings)
            })
            .collect();
        History { panels }
    }

    fn len(&self) -> usize {
        self.panels.iter().map(|(_, readings)| readings.len()).sum()
    }

    /// Writes minute by minute (all panels of one minute together, as a fleet of meters
    /// would), in batches of [`WRITE_BATCH_LINES`] lines.
    fn write_to(&self, influx: &Influx) {
        let mut batch = String::new();
        let mut lines = 0;
        for minute in 0..READINGS_PER_PANEL as usize {
            for (panel, readings) in &self.panels {
                let reading = readings[minute];
                // `{}` never prints an exponent, and a number without `i` is a float.
                writeln!(
                    batch,
                    "energy_data,panel={panel} power_kw={},energy_kwh={} {}",
                    reading.power_kw,
                    reading.energy_kwh,
                    reading.time.timestamp_nanos_opt().unwrap()
                )
                .unwrap();
                lines += 1;
                if lines == WRITE_BATCH_LINES {
                    influx.write(DATABASE, &batch);
                    batch.clear();
                    lines = 0;
                }
            }
        }
        if lines > 0 {
            influx.write(DATABASE, &batch);
        }
    }
}

/// A tiny deterministic generator for the noise, so every run loads the same shape of data.
struct XorShift(u64);

impl XorShift {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

// ---------------------------------------------------------------------------------------------
// The expected answers

/// What the endpoints must answer, worked out from the generated readings with
/// `test_support::reference`, the usage rule written out independently: each pair's increase is
/// spread over the time between its readings (so the pair straddling local midnight, or a month
/// boundary, is split by time), and a period sums the UTC quarter hours in it.
struct Expected {
    panels: Vec<String>,
    date: String,
    year: i32,
    latest: BTreeMap<String, Reading>,
    today_kwh: BTreeMap<String, Shares>,
    today_peak_kw: BTreeMap<String, f64>,
    today_mean_kw: BTreeMap<String, f64>,
    months_kwh: BTreeMap<String, Vec<Shares>>,
}

impl Expected {
    fn compute(history: &History, zone: &Zone, now: DateTime<Utc>) -> Expected {
        let local = now.with_timezone(&zone.offset);
        let today = local.date_naive();
        let today_start = zone.midnight(today);
        let today_end = zone.midnight(today.succ_opt().unwrap());
        let year = local.year();
        let month_starts: Vec<DateTime<Utc>> = (1..=13)
            .map(|month| {
                let (y, m) = if month == 13 {
                    (year + 1, 1)
                } else {
                    (year, month)
                };
                zone.midnight(NaiveDate::from_ymd_opt(y, m, 1).unwrap())
            })
            .collect();

        let mut expected = Expected {
            panels: Vec::new(),
            date: today.to_string(),
            year,
            latest: BTreeMap::new(),
            today_kwh: BTreeMap::new(),
            today_peak_kw: BTreeMap::new(),
            today_mean_kw: BTreeMap::new(),
            months_kwh: BTreeMap::new(),
        };
        for (panel, readings) in &history.panels {
            // Every reading of the panel, so that the pairs straddling the ends of a period
            // are shared correctly; each quarter hour's shares once, summed per period.
            let points: Vec<(DateTime<Utc>, f64)> =
                readings.iter().map(|r| (r.time, r.energy_kwh)).collect();
            let quarters = reference::quarter_shares(&points, Rule::default());
            let usage = |start: DateTime<Utc>, end: DateTime<Utc>| -> Shares {
                let (start, end) = (nanos(start), nanos(end));
                assert!(
                    start % QUARTER_NANOS == 0 && end % QUARTER_NANOS == 0,
                    "periods of a whole-hour zone are whole quarter hours"
                );
                let mut total = Shares::default();
                for shares in quarters.range(start..end).map(|(_, shares)| shares) {
                    total += *shares;
                }
                total
            };
            let today: Vec<f64> = readings
                .iter()
                .filter(|r| r.time >= today_start && r.time < today_end)
                .map(|r| r.power_kw)
                .collect();
            expected.panels.push(panel.clone());
            expected
                .latest
                .insert(panel.clone(), *readings.last().unwrap());
            expected
                .today_kwh
                .insert(panel.clone(), usage(today_start, today_end));
            expected.today_peak_kw.insert(
                panel.clone(),
                today.iter().copied().fold(f64::MIN, f64::max),
            );
            expected.today_mean_kw.insert(
                panel.clone(),
                today.iter().sum::<f64>() / today.len() as f64,
            );
            expected.months_kwh.insert(
                panel.clone(),
                month_starts
                    .windows(2)
                    .map(|bounds| usage(bounds[0], bounds[1]))
                    .collect(),
            );
        }
        expected
    }
}

/// One answer of every endpoint (the load runs only measure; these are what gets checked).
struct Answers {
    realtime: Value,
    today_usage: Value,
    summary: Value,
    monthly: Value,
    health: Value,
    /// How long each endpoint took to answer, one request at a time.
    took: BTreeMap<&'static str, Duration>,
}

impl Answers {
    fn fetch(base: &str) -> Answers {
        let mut took = BTreeMap::new();
        let mut ok = |path: &'static str| -> Value {
            // A few tries: right after a run InfluxDB may still be busy with abandoned queries,
            // and what is checked here is the figures, not the speed.
            for attempt in 1..=3 {
                let started = Instant::now();
                let (status, body, text) = http_get(&format!("{base}{path}"));
                took.insert(path, started.elapsed());
                if status == 200 {
                    return body;
                }
                if attempt == 3 {
                    panic!("GET {path} answered {status}: {text}");
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            unreachable!()
        };
        Answers {
            realtime: ok("/api/panel/realtime"),
            today_usage: ok("/api/panel/today-usage"),
            summary: ok("/api/panel/summary"),
            monthly: ok("/api/energy/monthly"),
            health: ok("/health"),
            took,
        }
    }

    /// Every way the answers differ from `expected`, as readable lines (empty when correct).
    fn check(&self, expected: &Expected) -> Vec<String> {
        let mut failures = Vec::new();
        for (endpoint, body) in [
            ("realtime", &self.realtime),
            ("today-usage", &self.today_usage),
            ("summary", &self.summary),
            ("monthly", &self.monthly),
        ] {
            let ids = panel_ids(body);
            if ids != expected.panels {
                failures.push(format!(
                    "{endpoint}: {} panels listed (first {:?}), expected {} ({:?} … {:?})",
                    ids.len(),
                    ids.first(),
                    expected.panels.len(),
                    expected.panels.first(),
                    expected.panels.last()
                ));
            }
        }
        for panel in panels(&self.realtime) {
            let id = panel["panel"].as_str().unwrap_or_default();
            let Some(latest) = expected.latest.get(id) else {
                continue;
            };
            if panel["status"] != "ONLINE" {
                failures.push(format!("realtime {id}: status {}", panel["status"]));
            }
            close_to(
                &mut failures,
                format!("realtime {id} energy_kwh"),
                &panel["energy_kwh"],
                latest.energy_kwh,
                1e-9,
            );
            close_to(
                &mut failures,
                format!("realtime {id} power_kw"),
                &panel["power_kw"],
                latest.power_kw,
                1e-9,
            );
        }

        let mut total = Shares::default();
        for panel in panels(&self.today_usage) {
            let id = panel["panel"].as_str().unwrap_or_default();
            let Some(&want) = expected.today_kwh.get(id) else {
                continue;
            };
            total += want;
            exactly(
                &mut failures,
                format!("today-usage {id} usage_kwh"),
                &panel["usage_kwh"],
                want.usage_kwh(),
            );
            exactly(
                &mut failures,
                format!("today-usage {id} estimated_kwh"),
                &panel["estimated_kwh"],
                want.estimated_kwh(),
            );
        }
        exactly(
            &mut failures,
            "today-usage total usage_kwh".into(),
            &self.today_usage["total"]["usage_kwh"],
            total.usage_kwh(),
        );
        exactly(
            &mut failures,
            "today-usage total estimated_kwh".into(),
            &self.today_usage["total"]["estimated_kwh"],
            total.estimated_kwh(),
        );
        for body in [&self.today_usage, &self.summary] {
            if body["date"] != expected.date.as_str() {
                failures.push(format!(
                    "date: got {}, expected {}",
                    body["date"], expected.date
                ));
            }
        }

        for panel in panels(&self.summary) {
            let id = panel["panel"].as_str().unwrap_or_default();
            let Some(&want) = expected.today_kwh.get(id) else {
                continue;
            };
            exactly(
                &mut failures,
                format!("summary {id} today_usage_kwh"),
                &panel["today_usage_kwh"],
                want.usage_kwh(),
            );
            exactly(
                &mut failures,
                format!("summary {id} today_estimated_kwh"),
                &panel["today_estimated_kwh"],
                want.estimated_kwh(),
            );
            close_to(
                &mut failures,
                format!("summary {id} today_peak_power_kw"),
                &panel["today_peak_power_kw"],
                expected.today_peak_kw[id],
                1e-9,
            );
            close_to(
                &mut failures,
                format!("summary {id} today_avg_power_kw"),
                &panel["today_avg_power_kw"],
                expected.today_mean_kw[id],
                KW_TOLERANCE,
            );
        }

        if self.monthly["year"] != expected.year {
            failures.push(format!(
                "monthly year: got {}, expected {}",
                self.monthly["year"], expected.year
            ));
        }
        for panel in panels(&self.monthly) {
            let id = panel["panel"].as_str().unwrap_or_default();
            let Some(want) = expected.months_kwh.get(id) else {
                continue;
            };
            let months = panel["months"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if months.len() != 12 {
                failures.push(format!("monthly {id}: {} month entries", months.len()));
                continue;
            }
            for (index, (month, want)) in months.iter().zip(want).enumerate() {
                if month["month"] != index + 1 {
                    failures.push(format!("monthly {id}: entry {index} is {month}"));
                }
                exactly(
                    &mut failures,
                    format!("monthly {id} month {} usage_kwh", index + 1),
                    &month["usage_kwh"],
                    want.usage_kwh(),
                );
                exactly(
                    &mut failures,
                    format!("monthly {id} month {} estimated_kwh", index + 1),
                    &month["estimated_kwh"],
                    want.estimated_kwh(),
                );
            }
            let year: i128 = want.iter().map(|shares| shares.usage).sum();
            let estimated: i128 = want.iter().map(|shares| shares.estimated).sum();
            exactly(
                &mut failures,
                format!("monthly {id} total_kwh"),
                &panel["total_kwh"],
                kwh_3(year),
            );
            exactly(
                &mut failures,
                format!("monthly {id} total_estimated_kwh"),
                &panel["total_estimated_kwh"],
                kwh_3(estimated),
            );
        }

        if self.health != serde_json::json!({"status": "ok", "influxdb": "ok"}) {
            failures.push(format!("health: {}", self.health));
        }
        // Enough to see what is wrong without flooding the log with 100 panels' worth.
        let hidden = failures.len().saturating_sub(20);
        failures.truncate(20);
        if hidden > 0 {
            failures.push(format!("… and {hidden} more wrong figures"));
        }
        failures
    }

    /// The first endpoint whose answer changed, ignoring what changes with the clock.
    fn differs_from(&self, other: &Answers) -> Option<String> {
        let without_clock = |body: &Value| {
            let mut body = body.clone();
            if let Some(object) = body.as_object_mut() {
                object.remove("generated_at");
            }
            for panel in body["panels"].as_array_mut().into_iter().flatten() {
                if let Some(panel) = panel.as_object_mut() {
                    panel.remove("seconds_since_last_seen");
                }
            }
            body
        };
        [
            ("realtime", &self.realtime, &other.realtime),
            ("today-usage", &self.today_usage, &other.today_usage),
            ("summary", &self.summary, &other.summary),
            ("monthly", &self.monthly, &other.monthly),
        ]
        .into_iter()
        .find(|(_, before, after)| without_clock(before) != without_clock(after))
        .map(|(endpoint, _, _)| endpoint.to_owned())
    }
}

/// Adds a failure unless `got` is the number `want` (a usage figure, rounded to 3 decimals the
/// same way on both sides).
fn exactly(failures: &mut Vec<String>, what: String, got: &Value, want: f64) {
    if got.as_f64() != Some(want) {
        failures.push(format!("{what}: got {got}, expected {want}"));
    }
}

/// A UTC quarter hour in nanoseconds: the grid the reference's shares are fixed on.
const QUARTER_NANOS: i128 = 900_000_000_000;

fn nanos(time: DateTime<Utc>) -> i128 {
    i128::from(
        time.timestamp_nanos_opt()
            .expect("a time InfluxDB can hold"),
    )
}

/// Adds a failure unless `got` is a number within `tolerance` of `want`.
fn close_to(failures: &mut Vec<String>, what: String, got: &Value, want: f64, tolerance: f64) {
    match got.as_f64() {
        Some(number) if (number - want).abs() <= tolerance => {}
        _ => failures.push(format!("{what}: got {got}, expected {want}")),
    }
}

fn panels(body: &Value) -> &[Value] {
    body["panels"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn panel_ids(body: &Value) -> Vec<String> {
    panels(body)
        .iter()
        .map(|p| p["panel"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Runs, memory and the report

struct Run {
    path: &'static str,
    duration: Duration,
    /// One request on its own, before any load.
    alone: Duration,
    report: WrkReport,
    rss_before: u64,
    rss_after: u64,
}

/// Flat memory: the last sample below twice the first run's plus slack, and no growth after
/// every single run.
fn memory_failures(runs: &[Run]) -> Vec<String> {
    let mut failures = Vec::new();
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return failures;
    };
    let limit = 2 * first.rss_after + RSS_SLACK_KIB;
    if last.rss_after >= limit {
        failures.push(format!(
            "RSS grew to {} MiB after the last run, limit 2 x {} + {} MiB",
            mib(last.rss_after),
            mib(first.rss_after),
            mib(RSS_SLACK_KIB)
        ));
    }
    let steps: Vec<i64> = runs
        .windows(2)
        .map(|pair| pair[1].rss_after as i64 - pair[0].rss_after as i64)
        .collect();
    if !steps.is_empty() && steps.iter().all(|&step| step > RSS_STEP_KIB as i64) {
        failures.push(format!(
            "RSS grew after every run (KiB per run: {steps:?}): a leak?"
        ));
    }
    failures
}

fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "{:<24} {:>4} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>11}",
        "endpoint",
        "secs",
        "alone",
        "requests",
        "req/s",
        "p50",
        "p99",
        "max",
        "non-2xx",
        "errors",
        "RSS MiB"
    )
    .unwrap();
    for run in runs {
        let r = &run.report;
        // wrk leaves timed-out requests out of its percentiles: when they are that common, the
        // percentile it prints is not the real one, which lies beyond the timeout.
        let timed_out = r.socket_errors.timeout as f64 / r.requests.max(1) as f64;
        let percentile = |value: Duration, share: f64| {
            if timed_out >= share {
                format!(">{}s", WRK_TIMEOUT.as_secs())
            } else {
                ms(value)
            }
        };
        writeln!(
            out,
            "{:<24} {:>4} {:>9} {:>8} {:>9.1} {:>9} {:>9} {:>9} {:>7} {:>7} {:>11}",
            run.path,
            run.duration.as_secs(),
            ms(run.alone),
            r.requests,
            r.requests_per_sec,
            percentile(r.p50, 0.5),
            percentile(r.p99, 0.01),
            percentile(r.max, f64::MIN_POSITIVE),
            r.non_2xx_3xx,
            r.socket_errors.total(),
            format!("{} -> {}", mib(run.rss_before), mib(run.rss_after)),
        )
        .unwrap();
    }
    out
}

fn ms(duration: Duration) -> String {
    format!("{:.1}ms", duration.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// `VmRSS` of process `pid` in KiB.
fn resident_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// `VmHWM` (the peak resident set) of process `pid` in KiB.
fn peak_resident_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"))
}

/// `debug` or `release`: the directory cargo put the binary in.
fn build_profile(exe: &std::path::Path) -> String {
    exe.parent()
        .and_then(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15 minute load averages: figures taken on a busy machine say so.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

// ---------------------------------------------------------------------------------------------
// wrk
