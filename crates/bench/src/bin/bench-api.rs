//! `bench-api`: the REST API over realistic history, for each size in a matrix of
//! (panels × days) of 1-minute readings.
//!
//! For each size, on a fresh private influxd and broker: load the history with the real
//! `sensor-publisher --backfill <DAYS> --direct` (timed). The backfill writes readings and no
//! rollup, which is what a new installation, or one whose rollup is being rebuilt, looks like to
//! the API: so, before anything builds a rollup, measure the **no-rollup path**, where
//! `api-server` must answer from raw readings. Then start the real `mqtt-subscriber` and wait
//! until its usage rollup is complete up to the last reading (timed; a timeout is reported as
//! `rollup_ready: false` and the run goes on), and measure the **rollup path** the same way.
//!
//! Each path measures every endpoint on a fresh `api-server` (default `QUERY_CACHE_MS`): its
//! first request (cold: nothing cached yet), the same request a few times more, each once the
//! server's answer caches have let go of the last answer (warm: median and max), and, after one
//! more request, a `wrk` load (shorter on the no-rollup path, `--no-rollup-wrk-secs`). Memory of
//! both programs is sampled when idle, before and after the load. `--skip-no-rollup` measures
//! the rollup path alone, as before the no-rollup path existed.
//!
//! Those api-servers price everything flat (no `TARIFF_FILE`, so `TARIFF_PER_KWH`). After them,
//! each path measures today-usage, bill, monthly and daily again the same way on api-servers
//! started with a time-of-use tariff (`TARIFF_FILE`, by default the workspace's
//! `docs/tariffs/pln-example.toml`), named `… (time-of-use)` in the tables and the JSON.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use energy_bench::api::{
    endpoints, example_tariff_file, time_of_use_endpoints, timed_out, EndpointRun, Timed, Warm,
    ENDPOINT_NAMES, REQUEST_TIMEOUT, TIME_OF_USE_NAMES,
};
use energy_bench::history::{
    rfc3339, rollup_complete_until_ns, Backfill, Binaries, Loaded, Rollup, Stack,
};
use energy_bench::machine;
use energy_bench::report::{
    self, columns, mib, mib_text, ms, ms_json, number, round, Bound, Checks,
};
use serde_json::{json, Value};
use test_support::wrk::{Wrk, WrkOptions, WrkReport};

/// `/api/energy/monthly`, first request after start, at 100 panels × 365 days.
const MONTHLY_COLD_MAX_MS: f64 = 250.0;
/// `/api/energy/daily` for a whole month, first request after start, at 100 panels.
const DAILY_COLD_MAX_MS: f64 = 150.0;
/// `/api/bill` for a whole month with the time-of-use tariff, first request after start, at 100
/// panels (the sizes [`DAILY_COLD_MAX_MS`] applies to).
const BILL_COLD_MAX_MS: f64 = 300.0;
/// `/api/panel/today-usage` with the time-of-use tariff against the flat tariff: the ratio of
/// their warm medians, at every size.
const TIME_OF_USE_TODAY_WARM_RATIO_MAX: f64 = 2.0;
/// `/api/panel/{panel}/intervals` for a whole day, first request after start, at every size.
const INTERVALS_COLD_MAX_MS: f64 = 20.0;
/// p99 of realtime and today-usage under wrk, at 100 panels.
const P99_MAX_MS: f64 = 20.0;
/// p99 of realtime and today-usage under wrk, at 1 000 panels.
const P99_1000_MAX_MS: f64 = 50.0;
/// `/api/energy/monthly`, first request after start, at 1 000 panels × 30 days.
const MONTHLY_1000_COLD_MAX_MS: f64 = 1000.0;
/// Resident memory of api-server and mqtt-subscriber when idle.
const IDLE_RSS_BELOW_MIB: f64 = 15.0;
/// A percentile wrk prints is not the real one once this share of requests timed out.
const TIMEOUT_SHARE_FOR_P99: f64 = 0.01;
/// No rollup yet, at 100 panels × 30 days: `/api/energy/monthly`'s first request after start.
/// It has a month of raw readings of 100 panels to read, so seconds are acceptable here, once.
const NO_ROLLUP_MONTHLY_COLD_MAX_MS: f64 = 3000.0;
/// No rollup yet, at 100 panels × 30 days: `/api/energy/monthly` once warm (the median of the
/// warm requests): a dashboard that polls must not pay the cold price again and again.
const NO_ROLLUP_MONTHLY_WARM_MAX_MS: f64 = 100.0;
/// No rollup yet, at 100 panels × 30 days: `/api/panel/today-usage`'s first request after
/// start. Today alone is at most a day of readings, rollup or not.
const NO_ROLLUP_TODAY_COLD_MAX_MS: f64 = 200.0;

/// Loads history for each (panels x days) size, measures every endpoint without a rollup, waits
/// for the subscriber's rollup, and measures every endpoint again: cold, warm and under wrk.
/// Prints tables, then one line `JSON {…}`.
#[derive(Debug, Parser)]
#[command(name = "bench-api")]
struct Options {
    /// Sizes to measure, as PANELSxDAYS, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3x365,100x30,100x365")]
    matrix: Vec<Size>,

    /// Seconds of wrk per endpoint, on the rollup path.
    #[arg(long, default_value_t = 15)]
    wrk_secs: u64,

    /// Seconds of wrk per endpoint, on the no-rollup path. Shorter: its answers may take
    /// seconds each, and it only has to show that the API holds up, not a steady rate.
    #[arg(long, default_value_t = 5)]
    no_rollup_wrk_secs: u64,

    /// wrk's timeout (--timeout): a request without an answer after this long is a socket
    /// timeout error, left out of wrk's percentiles. Long, because an answer from raw readings
    /// may legitimately take seconds, and it should be counted, not cut off.
    #[arg(long, default_value_t = 30)]
    wrk_timeout_secs: u64,

    /// Warm requests per endpoint: the same request again after the cold one, on the same
    /// server; their median and max are reported.
    #[arg(long, default_value_t = 5)]
    warm_requests: usize,

    /// Measure the rollup path alone, without the no-rollup path before it.
    #[arg(long)]
    skip_no_rollup: bool,

    /// wrk threads (-t).
    #[arg(long, default_value_t = 2)]
    wrk_threads: u32,

    /// wrk connections (-c).
    #[arg(long, default_value_t = 16)]
    wrk_connections: u32,

    /// How long to wait for the rollup after the subscriber starts.
    #[arg(long, default_value_t = 900)]
    rollup_timeout_secs: u64,

    /// How long loading one size may take.
    #[arg(long, default_value_t = 3600)]
    backfill_timeout_secs: u64,

    /// The time-of-use tariff (`TARIFF_FILE`) of the api-servers that measure the `… (time-of-use)`
    /// endpoints. By default the workspace's PLN-style example.
    #[arg(long, default_value_os_t = example_tariff_file())]
    tariff_file: PathBuf,
}

/// PANELSxDAYS, e.g. `100x365`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Size {
    panels: usize,
    days: u32,
}

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not PANELSxDAYS (e.g. 100x365)");
        let (panels, days) = text.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let size = Size {
            panels: panels.trim().parse().map_err(|_| bad())?,
            days: days.trim().parse().map_err(|_| bad())?,
        };
        if size.panels == 0 || size.days == 0 {
            return Err(format!("{text:?}: panels and days must be at least 1"));
        }
        Ok(size)
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.panels, self.days)
    }
}

/// Everything measured for one size.
struct SizeRun {
    size: Size,
    backfill: Backfill,
    /// The no-rollup path; `None` with `--skip-no-rollup`.
    no_rollup: Option<NoRollup>,
    rollup: Rollup,
    subscriber_rss: [Option<u64>; 3],
    subscriber_peak_kib: Option<u64>,
    /// The rollup path.
    endpoints: Vec<EndpointRun>,
}

/// The no-rollup path of one size, measured between the backfill and the subscriber's start.
struct NoRollup {
    /// The rollup's `complete_until` found in InfluxDB just before measuring. `None` is what
    /// this path needs; anything else means api-server had a rollup to use, and the figures are
    /// not those of answers from raw readings.
    stray_rollup_ns: Option<i64>,
    endpoints: Vec<EndpointRun>,
}

/// wrk and how it is run on each path.
struct Load {
    wrk: Wrk,
    rollup: WrkOptions,
    no_rollup: WrkOptions,
}

/// Every endpoint on a fresh api-server each (flat tariff), then the time-of-use ones on a
/// fresh api-server each with `TARIFF_FILE` = `tariff_file`: cold, warm, then wrk with
/// `wrk_options`.
fn measure_endpoints(
    binaries: &Binaries,
    stack: &Stack,
    panels: usize,
    tariff_file: &Path,
    wrk: &Wrk,
    wrk_options: &WrkOptions,
    warm_requests: usize,
) -> Vec<EndpointRun> {
    // One `now` for both, so the time-of-use endpoints ask for the same month and day.
    let now = chrono::Utc::now();
    let time_of_use_env = [("TARIFF_FILE", tariff_file.display().to_string())];
    let flat = endpoints(now, panels)
        .into_iter()
        .map(|endpoint| (endpoint, &[][..]));
    let time_of_use = time_of_use_endpoints(now, panels)
        .into_iter()
        .map(|endpoint| (endpoint, &time_of_use_env[..]));
    flat.chain(time_of_use)
        .map(|(endpoint, env)| {
            eprintln!(
                "   {}{}: fresh api-server, cold request, {warm_requests} warm, wrk {} s…",
                endpoint.1,
                if env.is_empty() {
                    ""
                } else {
                    " (time-of-use tariff)"
                },
                wrk_options.duration.as_secs()
            );
            EndpointRun::measure(
                binaries,
                stack,
                env,
                wrk,
                wrk_options,
                warm_requests,
                endpoint,
            )
        })
        .collect()
}

fn measure(
    size: Size,
    options: &Options,
    binaries: &Binaries,
    load: &Load,
) -> Result<SizeRun, String> {
    eprintln!("== {size}: starting a private influxd and mosquitto");
    let stack = Stack::start();
    let backfill = stack.load(
        binaries,
        size.panels,
        size.days,
        Duration::from_secs(options.backfill_timeout_secs),
    )?;
    let no_rollup = (!options.skip_no_rollup).then(|| {
        let stray_rollup_ns = rollup_complete_until_ns(&stack.influx);
        match stray_rollup_ns {
            None => eprintln!("   no rollup yet: measuring the no-rollup path"),
            Some(ns) => eprintln!(
                "   !!! a rollup is already recorded (complete_until {}) before the subscriber \
                 started: the no-rollup figures will not be answers from raw readings",
                rfc3339(ns)
            ),
        }
        NoRollup {
            stray_rollup_ns,
            endpoints: measure_endpoints(
                binaries,
                &stack,
                size.panels,
                &options.tariff_file,
                &load.wrk,
                &load.no_rollup,
                options.warm_requests,
            ),
        }
    });
    let Loaded {
        backfill,
        mut subscriber,
        subscriber_rss_after_start: rss_after_start,
        rollup,
    } = stack.roll_up(
        binaries,
        backfill,
        Duration::from_secs(options.rollup_timeout_secs),
    );
    eprintln!("   the rollup path:");
    let rss_before_load = subscriber.rss_kib();
    let endpoints = measure_endpoints(
        binaries,
        &stack,
        size.panels,
        &options.tariff_file,
        &load.wrk,
        &load.rollup,
        options.warm_requests,
    );
    let rss_after_load = subscriber.rss_kib();
    let subscriber_peak_kib = subscriber.peak_rss_kib();
    subscriber.terminate();
    Ok(SizeRun {
        size,
        backfill,
        no_rollup,
        rollup,
        subscriber_rss: [rss_after_start, rss_before_load, rss_after_load],
        subscriber_peak_kib,
        endpoints,
    })
}

/// One timed request as shown in a table or a check: `12.3 ms`, `status 503 after 12.3 ms`,
/// `timed out` (no answer within [`REQUEST_TIMEOUT`]) or `failed` (the error is on stderr and
/// in the JSON).
fn answer_text(answer: &Result<Timed, String>) -> String {
    match answer {
        Ok(timed) if timed.status == 200 => ms(timed.took),
        Ok(timed) => format!("status {} after {}", timed.status, ms(timed.took)),
        Err(error) if timed_out(error) => "timed out".into(),
        Err(_) => "failed".into(),
    }
}

/// A timed request's milliseconds for a check: NaN (a failed check) unless it answered 200.
fn answer_ms(answer: &Result<Timed, String>) -> f64 {
    match answer {
        Ok(timed) if timed.status == 200 => timed.took.as_secs_f64() * 1000.0,
        _ => f64::NAN,
    }
}

/// The warm requests as shown in a table: `median / max` of those that answered 200, then what
/// went wrong with the others, if anything; `-` when none were made (the cold request timed
/// out).
fn warm_text(warm: &Warm) -> String {
    let problem = warm.problem.as_deref().map(|problem| {
        if timed_out(problem) {
            "timed out"
        } else if problem.starts_with("status ") {
            problem
        } else {
            "failed"
        }
    });
    match (warm.median.zip(warm.max), problem) {
        (None, None) => "-".into(),
        (Some((median, max)), None) => format!("{} / {}", ms(median), ms(max)),
        (None, Some(problem)) => format!(
            "{} of {}: {problem}",
            warm.requests - warm.ok,
            warm.requests
        ),
        (Some((median, max)), Some(problem)) => format!(
            "{} / {}; {} of {}: {problem}",
            ms(median),
            ms(max),
            warm.requests - warm.ok,
            warm.requests
        ),
    }
}

/// wrk's p99 as shown and as checked (NaN when it is not a real figure): `no answer` when no
/// request was answered within the run, `>30 s (timeouts)` when too many got no answer within
/// wrk's timeout (wrk leaves those out of its percentiles).
fn p99_figure(report: &WrkReport, timeout: Duration) -> (String, f64) {
    let timed_out = report.socket_errors.timeout as f64 / report.requests.max(1) as f64;
    if report.requests == 0 {
        ("no answer".into(), f64::NAN)
    } else if timed_out >= TIMEOUT_SHARE_FOR_P99 {
        (format!(">{} s (timeouts)", timeout.as_secs()), f64::NAN)
    } else {
        (ms(report.p99), report.p99.as_secs_f64() * 1000.0)
    }
}

/// The p99 cell of one wrk run.
fn p99_text(wrk: &Result<WrkReport, String>, timeout: Duration) -> String {
    wrk.as_ref().map_or_else(
        |_| "wrk failed".into(),
        |report| p99_figure(report, timeout).0,
    )
}

/// Whether every answer of `endpoint` was 200 (cold, warm and under wrk, with no socket error
/// and at least one answer under wrk), and how that is shown.
fn all_answered(endpoint: &EndpointRun) -> (bool, String) {
    let cold_ok = matches!(&endpoint.cold, Ok(timed) if timed.status == 200);
    let cold = match &endpoint.cold {
        Ok(timed) => timed.status.to_string(),
        Err(error) if timed_out(error) => "timed out".into(),
        Err(_) => "failed".into(),
    };
    let warm = endpoint.warm_summary();
    let warm_shown = match warm.problem.as_deref() {
        None => format!("{} of {} 200", warm.ok, warm.requests),
        Some(problem) if timed_out(problem) => {
            format!("{} of {} 200 (timed out)", warm.ok, warm.requests)
        }
        Some(problem) if problem.starts_with("status ") => {
            format!("{} of {} 200 ({problem})", warm.ok, warm.requests)
        }
        Some(_) => format!("{} of {} 200 (failed)", warm.ok, warm.requests),
    };
    let (wrk_ok, wrk) = match &endpoint.wrk {
        Ok(report) => (
            report.requests > 0 && report.non_2xx_3xx == 0 && report.socket_errors.total() == 0,
            format!(
                "wrk {} answers, {} non-2xx, {} socket errors",
                report.requests,
                report.non_2xx_3xx,
                report.socket_errors.total()
            ),
        ),
        Err(_) => (false, "wrk failed".to_owned()),
    };
    (
        cold_ok && warm.all_ok() && wrk_ok,
        format!("cold {cold}, warm {warm_shown}, {wrk}"),
    )
}

/// The endpoint table of one path of one size.
fn endpoint_table(endpoints: &[EndpointRun], wrk_timeout: Duration) -> String {
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|endpoint| {
            let mut row = vec![
                endpoint.label(),
                answer_text(&endpoint.cold),
                warm_text(&endpoint.warm_summary()),
            ];
            match &endpoint.wrk {
                Ok(report) => row.extend([
                    format!("{:.1}", report.requests_per_sec),
                    if report.requests == 0 {
                        "no answer".into()
                    } else {
                        ms(report.p50)
                    },
                    p99_figure(report, wrk_timeout).0,
                    report.non_2xx_3xx.to_string(),
                    report.socket_errors.total().to_string(),
                ]),
                Err(_) => row.extend([
                    "wrk failed".into(),
                    "".into(),
                    "".into(),
                    "".into(),
                    "".into(),
                ]),
            }
            row.push(format!(
                "{} / {} / {}",
                mib_text(endpoint.rss_after_start),
                mib_text(endpoint.rss_before_load),
                mib_text(endpoint.rss_after_load)
            ));
            row
        })
        .collect();
    columns(
        &[
            "endpoint",
            "cold",
            "warm median / max",
            "req/s",
            "p50",
            "p99",
            "non-2xx",
            "sock err",
            "api RSS MiB start/before/after",
        ],
        &rows,
    )
}

/// Both paths of one size side by side, per endpoint: cold, warm and wrk's p99 without the
/// rollup, then with it.
fn side_by_side(
    no_rollup: &[EndpointRun],
    rollup: &[EndpointRun],
    wrk_timeout: Duration,
) -> String {
    let names = ENDPOINT_NAMES
        .iter()
        .chain(TIME_OF_USE_NAMES.iter().map(|(_, time_of_use)| time_of_use));
    let rows: Vec<Vec<String>> = names
        .map(|&name| {
            let label = rollup
                .iter()
                .chain(no_rollup)
                .find(|endpoint| endpoint.name == name)
                .map_or_else(|| name.to_owned(), EndpointRun::label);
            let mut row = vec![label];
            for endpoints in [no_rollup, rollup] {
                match endpoints.iter().find(|endpoint| endpoint.name == name) {
                    Some(endpoint) => row.extend([
                        answer_text(&endpoint.cold),
                        warm_text(&endpoint.warm_summary()),
                        p99_text(&endpoint.wrk, wrk_timeout),
                    ]),
                    None => row.extend(["-".into(), "-".into(), "-".into()]),
                }
            }
            row
        })
        .collect();
    columns(
        &[
            "endpoint",
            "no rollup: cold",
            "warm median / max",
            "wrk p99",
            "rollup: cold",
            "warm median / max",
            "wrk p99",
        ],
        &rows,
    )
}

/// Holds the no-rollup path's figures against the targets that apply to its size: every answer
/// 200 at every size; the times at 100 panels × 30 days.
fn check_no_rollup(size: Size, no_rollup: &NoRollup, checks: &mut Checks) {
    checks.record(
        format!("{size}: no rollup before the subscriber"),
        no_rollup.stray_rollup_ns.map_or_else(
            || "none".to_owned(),
            |ns| format!("complete_until {}", rfc3339(ns)),
        ),
        "none",
        no_rollup.stray_rollup_ns.is_none(),
    );
    for endpoint in &no_rollup.endpoints {
        let (answered, value) = all_answered(endpoint);
        checks.record(
            format!("{size}: no rollup: {} answers", endpoint.label()),
            value,
            "all 200, no errors",
            answered,
        );
        if !(size.panels == 100 && size.days == 30) {
            continue;
        }
        let label = |what: &str| format!("{size}: no rollup: {} {what}", endpoint.path);
        match endpoint.name {
            "monthly" => {
                checks.check(
                    label("cold"),
                    answer_text(&endpoint.cold),
                    answer_ms(&endpoint.cold),
                    Bound::AtMost(NO_ROLLUP_MONTHLY_COLD_MAX_MS),
                    "ms",
                );
                let warm = endpoint.warm_summary();
                let median = warm.median.filter(|_| warm.all_ok());
                checks.check(
                    label(&format!("warm (median of {})", warm.requests)),
                    if warm.requests == 0 {
                        "none made".into()
                    } else {
                        warm_text(&warm)
                    },
                    median.map_or(f64::NAN, |median| median.as_secs_f64() * 1000.0),
                    Bound::AtMost(NO_ROLLUP_MONTHLY_WARM_MAX_MS),
                    "ms",
                );
            }
            "today-usage" => {
                checks.check(
                    label("cold"),
                    answer_text(&endpoint.cold),
                    answer_ms(&endpoint.cold),
                    Bound::AtMost(NO_ROLLUP_TODAY_COLD_MAX_MS),
                    "ms",
                );
            }
            _ => {}
        }
    }
}

/// Holds `run`'s figures against the targets that apply to its size.
fn check(run: &SizeRun, options: &Options, checks: &mut Checks) {
    let size = run.size;
    if let Some(no_rollup) = &run.no_rollup {
        check_no_rollup(size, no_rollup, checks);
    }
    checks.record(
        format!("{size}: rollup ready"),
        if run.rollup.ready {
            format!("yes, {:.1} s", run.rollup.took.as_secs_f64())
        } else {
            format!("NO (waited {:.0} s)", run.rollup.took.as_secs_f64())
        },
        format!("within {} s", options.rollup_timeout_secs),
        run.rollup.ready,
    );
    let wrk_timeout = Duration::from_secs(options.wrk_timeout_secs.max(1));
    for endpoint in &run.endpoints {
        let (answered, value) = all_answered(endpoint);
        checks.record(
            format!("{size}: {} answers", endpoint.label()),
            value,
            "all 200, no errors",
            answered,
        );
        // The first-request targets, each at the sizes it applies to (daily and the bill: a
        // month of every panel).
        let cold_max = match endpoint.name {
            "monthly" if size.panels == 100 && size.days == 365 => Some(MONTHLY_COLD_MAX_MS),
            "monthly" if size.panels == 1000 && size.days == 30 => Some(MONTHLY_1000_COLD_MAX_MS),
            "daily" if size.panels == 100 => Some(DAILY_COLD_MAX_MS),
            "bill (time-of-use)" if size.panels == 100 => Some(BILL_COLD_MAX_MS),
            "intervals" => Some(INTERVALS_COLD_MAX_MS),
            _ => None,
        };
        if let Some(max) = cold_max {
            checks.check(
                format!("{size}: {} cold", endpoint.name),
                answer_text(&endpoint.cold),
                answer_ms(&endpoint.cold),
                Bound::AtMost(max),
                "ms",
            );
        }
        let p99_max = match size.panels {
            100 => Some(P99_MAX_MS),
            1000 => Some(P99_1000_MAX_MS),
            _ => None,
        };
        if let (true, Some(max)) = (matches!(endpoint.name, "realtime" | "today-usage"), p99_max) {
            let (value, measured) = endpoint.wrk.as_ref().map_or_else(
                |_| ("wrk failed".into(), f64::NAN),
                |report| p99_figure(report, wrk_timeout),
            );
            checks.check(
                format!("{size}: {} p99", endpoint.path),
                value,
                measured,
                Bound::AtMost(max),
                "ms",
            );
        }
    }
    let named = |name: &str| run.endpoints.iter().find(|endpoint| endpoint.name == name);
    if let (Some(flat), Some(time_of_use)) =
        (named("today-usage"), named("today-usage (time-of-use)"))
    {
        let (value, ratio) = warm_ratio(&flat.warm_summary(), &time_of_use.warm_summary());
        checks.check(
            format!("{size}: today-usage warm median, time-of-use / flat tariff"),
            value,
            ratio,
            Bound::AtMost(TIME_OF_USE_TODAY_WARM_RATIO_MAX),
            "",
        );
    }
    // The target is for an idle server; the largest sample (after wrk) is in the tables. Of
    // the flat tariff's servers, as before the time-of-use ones were measured (theirs are in
    // the tables and the JSON).
    let api_rss = run
        .endpoints
        .iter()
        .filter(|endpoint| ENDPOINT_NAMES.contains(&endpoint.name))
        .filter_map(EndpointRun::idle_rss_kib)
        .max();
    checks.check(
        format!("{size}: api-server idle RSS (after start, after the cold and warm requests)"),
        api_rss.map_or("?".into(), |kib| format!("{:.1} MiB", mib(kib))),
        api_rss.map_or(f64::NAN, mib),
        Bound::Below(IDLE_RSS_BELOW_MIB),
        "MiB",
    );
    let subscriber_rss = run.subscriber_rss.iter().flatten().max().copied();
    checks.check(
        // It is idle during the API load too (nothing is published).
        format!("{size}: mqtt-subscriber RSS, largest sample (idle)"),
        subscriber_rss.map_or("?".into(), |kib| format!("{:.1} MiB", mib(kib))),
        subscriber_rss.map_or(f64::NAN, mib),
        Bound::Below(IDLE_RSS_BELOW_MIB),
        "MiB",
    );
}

/// Two warm series compared, `time_of_use` against `flat`, as shown and as checked: both medians
/// and their ratio; NaN (a failed check) unless every request of both answered 200.
fn warm_ratio(flat: &Warm, time_of_use: &Warm) -> (String, f64) {
    let median = |warm: &Warm| warm.median.filter(|_| warm.all_ok() && warm.requests > 0);
    match (median(flat), median(time_of_use)) {
        (Some(flat), Some(time_of_use)) => {
            let ratio = time_of_use.as_secs_f64() / flat.as_secs_f64();
            (
                format!(
                    "time-of-use {} / flat {} = {ratio:.2}",
                    ms(time_of_use),
                    ms(flat)
                ),
                ratio,
            )
        }
        _ => (
            format!(
                "time-of-use {}, flat {}",
                warm_text(time_of_use),
                warm_text(flat)
            ),
            f64::NAN,
        ),
    }
}

/// One endpoint's figures on one path, for the JSON line.
fn endpoint_json(endpoint: &EndpointRun) -> Value {
    let wrk = endpoint.wrk.as_ref().ok();
    let warm = endpoint.warm_summary();
    json!({
        "name": endpoint.name,
        "path": endpoint.path,
        "cold_ms": endpoint.cold.as_ref().ok().map(|t| ms_json(t.took)),
        "cold_status": endpoint.cold.as_ref().ok().map(|t| t.status),
        "cold_error": endpoint.cold.as_ref().err(),
        "cold_timed_out": endpoint.cold.as_ref().is_err_and(|error| timed_out(error)),
        "warm": {
            "requests": warm.requests,
            "ok": warm.ok,
            "median_ms": warm.median.map(ms_json),
            "max_ms": warm.max.map(ms_json),
            "problem": warm.problem,
        },
        "requests": wrk.map(|r| r.requests),
        "req_per_sec": wrk.map(|r| r.requests_per_sec),
        "p50_ms": wrk.map(|r| ms_json(r.p50)),
        "p90_ms": wrk.map(|r| ms_json(r.p90)),
        "p99_ms": wrk.map(|r| ms_json(r.p99)),
        "max_ms": wrk.map(|r| ms_json(r.max)),
        "non_2xx": wrk.map(|r| r.non_2xx_3xx),
        "socket_errors": wrk.map(|r| json!({
            "connect": r.socket_errors.connect,
            "read": r.socket_errors.read,
            "write": r.socket_errors.write,
            "timeout": r.socket_errors.timeout,
        })),
        "wrk_error": endpoint.wrk.as_ref().err(),
        "api_rss_mib": {
            "after_start": endpoint.rss_after_start.map(mib),
            "before_load": endpoint.rss_before_load.map(mib),
            "after_load": endpoint.rss_after_load.map(mib),
        },
    })
}

fn to_json(run: &SizeRun, options: &Options) -> Value {
    let backfill = &run.backfill;
    let [after_start, before_load, after_load] = run.subscriber_rss;
    json!({
        "panels": run.size.panels,
        "days": run.size.days,
        "readings": backfill.readings,
        "load_secs": round(backfill.took.as_secs_f64(), 3),
        "load_readings_per_sec": round(backfill.readings as f64 / backfill.took.as_secs_f64(), 1),
        "last_reading": rfc3339(backfill.last_reading_ns),
        "rollup_ready": run.rollup.ready,
        "rollup_secs": round(run.rollup.took.as_secs_f64(), 3),
        "rollup_complete_until": run.rollup.complete_until_ns.map(rfc3339),
        "rollup_catch_up_secs": run.rollup.catch_up_secs,
        "subscriber_rss_mib": {
            "after_start": after_start.map(mib),
            "before_load": before_load.map(mib),
            "after_load": after_load.map(mib),
            "peak": run.subscriber_peak_kib.map(mib),
        },
        "no_rollup": run.no_rollup.as_ref().map(|no_rollup| json!({
            "stray_rollup_complete_until": no_rollup.stray_rollup_ns.map(rfc3339),
            "wrk_secs": options.no_rollup_wrk_secs.max(1),
            "endpoints": no_rollup.endpoints.iter().map(endpoint_json).collect::<Vec<Value>>(),
        })),
        "endpoints": run.endpoints.iter().map(endpoint_json).collect::<Vec<Value>>(),
    })
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    if !options.tariff_file.is_file() {
        eprintln!(
            "bench-api: the time-of-use tariff {} is not a file (--tariff-file)",
            options.tariff_file.display()
        );
        return std::process::ExitCode::from(2);
    }
    // Both first, so a missing tool or binary fails at once rather than after loading.
    let wrk = Wrk::require();
    let binaries = Binaries::find();
    let wrk_options = WrkOptions {
        threads: options.wrk_threads,
        connections: options.wrk_connections,
        duration: Duration::from_secs(options.wrk_secs.max(1)),
        timeout: Duration::from_secs(options.wrk_timeout_secs.max(1)),
    };
    let load = Load {
        wrk,
        no_rollup: WrkOptions {
            duration: Duration::from_secs(options.no_rollup_wrk_secs.max(1)),
            ..wrk_options.clone()
        },
        rollup: wrk_options.clone(),
    };

    println!(
        "bench-api: sizes {}; wrk -t{} -c{} -d{}s --timeout {}s --latency{}; machine: {}",
        options
            .matrix
            .iter()
            .map(Size::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        wrk_options.threads,
        wrk_options.connections,
        wrk_options.duration.as_secs(),
        wrk_options.timeout.as_secs(),
        if options.skip_no_rollup {
            ", no-rollup path skipped".to_owned()
        } else {
            format!(
                " (-d{}s without a rollup)",
                load.no_rollup.duration.as_secs()
            )
        },
        machine::describe()
    );
    println!(
        "api-server: {} ({} build), TIMEZONE Asia/Jakarta, QUERY_CACHE_MS default (1000), a \
         fresh process per endpoint; flat tariff (TARIFF_PER_KWH default), and `(time-of-use)` \
         with TARIFF_FILE={}; cold = its first request, warm = the same {} more times, each \
         past the answer caches (median / max), wrk after one priming request, timed out = no answer within {} s",
        binaries.api_server.display(),
        machine::profile(&binaries.api_server),
        options.tariff_file.display(),
        options.warm_requests,
        REQUEST_TIMEOUT.as_secs()
    );

    let mut checks = Checks::default();
    let mut sizes_json = Vec::new();
    for &size in &options.matrix {
        match measure(size, &options, &binaries, &load) {
            Ok(run) => {
                let backfill = &run.backfill;
                println!();
                println!(
                    "{size}: {} readings loaded in {:.2} s ({} readings/s); rollup {}",
                    number(backfill.readings as f64),
                    backfill.took.as_secs_f64(),
                    number(backfill.readings as f64 / backfill.took.as_secs_f64()),
                    if run.rollup.ready {
                        format!(
                            "complete {:.2} s after the subscriber started (its own log: \
                             caught up in {})",
                            run.rollup.took.as_secs_f64(),
                            run.rollup
                                .catch_up_secs
                                .map_or_else(|| "?".into(), |s| format!("{s:.2} s"))
                        )
                    } else {
                        format!(
                            "NOT READY after {:.0} s (complete_until {}) <-- figures below are \
                             without a complete rollup",
                            run.rollup.took.as_secs_f64(),
                            run.rollup
                                .complete_until_ns
                                .map_or_else(|| "never written".into(), rfc3339)
                        )
                    }
                );
                if let Some(no_rollup) = &run.no_rollup {
                    println!(
                        "without a rollup (readings only, before mqtt-subscriber started; wrk \
                         {} s){}:",
                        load.no_rollup.duration.as_secs(),
                        no_rollup
                            .stray_rollup_ns
                            .map_or_else(String::new, |ns| format!(
                                " <-- a rollup WAS recorded (complete_until {}): not from raw \
                             readings",
                                rfc3339(ns)
                            ))
                    );
                    print!(
                        "{}",
                        endpoint_table(&no_rollup.endpoints, wrk_options.timeout)
                    );
                    println!(
                        "with the rollup (wrk {} s):",
                        wrk_options.duration.as_secs()
                    );
                }
                print!("{}", endpoint_table(&run.endpoints, wrk_options.timeout));
                let [a, b, c] = run.subscriber_rss;
                println!(
                    "mqtt-subscriber RSS MiB: after start {}, before load {}, after load {}; \
                     peak {}",
                    mib_text(a),
                    mib_text(b),
                    mib_text(c),
                    mib_text(run.subscriber_peak_kib)
                );
                if let Some(no_rollup) = &run.no_rollup {
                    println!("{size}, side by side:");
                    print!(
                        "{}",
                        side_by_side(&no_rollup.endpoints, &run.endpoints, wrk_options.timeout)
                    );
                }
                check(&run, &options, &mut checks);
                sizes_json.push(to_json(&run, &options));
            }
            Err(error) => {
                eprintln!("{size} failed: {error}");
                println!();
                println!(
                    "{size}: FAILED: {}",
                    error.lines().next().unwrap_or_default()
                );
                checks.record(
                    format!("{size}: loaded and measured"),
                    "failed",
                    "completes",
                    false,
                );
                sizes_json.push(json!({
                    "panels": size.panels,
                    "days": size.days,
                    "error": error,
                }));
            }
        }
    }
    println!();
    print!("{}", checks.render());
    report::print_json(&json!({
        "bench": "api",
        "machine": machine::to_json(),
        "wrk": {
            "threads": wrk_options.threads,
            "connections": wrk_options.connections,
            "secs": wrk_options.duration.as_secs(),
            "no_rollup_secs": load.no_rollup.duration.as_secs(),
            "timeout_secs": wrk_options.timeout.as_secs(),
        },
        "warm_requests": options.warm_requests,
        "time_of_use_tariff_file": options.tariff_file.display().to_string(),
        "request_timeout_secs": REQUEST_TIMEOUT.as_secs(),
        "no_rollup": !options.skip_no_rollup,
        "rollup_timeout_secs": options.rollup_timeout_secs,
        "rollup_ready": sizes_json.iter().all(|size| size["rollup_ready"] == true),
        "sizes": sizes_json,
        "checks": checks.to_json(),
        "all_pass": checks.all_pass(),
    }));
    checks.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_panels_by_days() {
        assert_eq!(
            "100x365".parse::<Size>(),
            Ok(Size {
                panels: 100,
                days: 365
            })
        );
        assert!("100".parse::<Size>().is_err());
        assert!("0x5".parse::<Size>().is_err());
        assert!("ax5".parse::<Size>().is_err());
    }

    fn answer(status: u16, millis: u64) -> Result<Timed, String> {
        Ok(Timed {
            status,
            took: Duration::from_millis(millis),
        })
    }

    #[test]
    fn an_answer_shows_its_time_its_status_or_its_timeout() {
        assert_eq!(answer_text(&answer(200, 12)), "12.0 ms");
        assert_eq!(answer_ms(&answer(200, 12)), 12.0);
        assert_eq!(answer_text(&answer(503, 4)), "status 503 after 4.0 ms");
        assert!(answer_ms(&answer(503, 4)).is_nan());
        let timeout = Err("timed out: no answer to GET /x within 60.0 s (waiting)".to_owned());
        assert_eq!(answer_text(&timeout), "timed out");
        assert!(answer_ms(&timeout).is_nan());
        assert_eq!(answer_text(&Err("connect: refused".into())), "failed");
    }

    #[test]
    fn warm_requests_show_median_max_and_what_went_wrong() {
        let warm = |answers: &[Result<Timed, String>]| warm_text(&Warm::of(answers));
        assert_eq!(
            warm(&[answer(200, 3), answer(200, 1), answer(200, 9)]),
            "3.0 ms / 9.0 ms"
        );
        assert_eq!(
            warm(&[answer(200, 2), answer(500, 1), answer(200, 4)]),
            "3.0 ms / 4.0 ms; 1 of 3: status 500"
        );
        assert_eq!(
            warm(&[answer(200, 2), Err("timed out: no answer".into())]),
            "2.0 ms / 2.0 ms; 1 of 2: timed out"
        );
        assert_eq!(
            warm(&[answer(404, 1), answer(404, 1)]),
            "2 of 2: status 404"
        );
        assert_eq!(warm(&[Err("connect: refused".into())]), "1 of 1: failed");
        assert_eq!(warm(&[]), "-");
    }

    #[test]
    fn time_of_use_today_usage_is_compared_by_the_warm_medians() {
        let flat = Warm::of(&[answer(200, 4), answer(200, 2), answer(200, 3)]);
        let time_of_use = Warm::of(&[answer(200, 5), answer(200, 6), answer(200, 9)]);
        let (shown, ratio) = warm_ratio(&flat, &time_of_use);
        assert_eq!(shown, "time-of-use 6.0 ms / flat 3.0 ms = 2.00");
        assert_eq!(ratio, 2.0);
        assert!(Bound::AtMost(TIME_OF_USE_TODAY_WARM_RATIO_MAX).holds(ratio));
        // Any warm request that is not a 200 leaves nothing to compare: a failed check.
        let broken = Warm::of(&[answer(200, 5), answer(503, 1)]);
        let (shown, ratio) = warm_ratio(&flat, &broken);
        assert!(ratio.is_nan());
        assert_eq!(
            shown,
            "time-of-use 5.0 ms / 5.0 ms; 1 of 2: status 503, flat 3.0 ms / 4.0 ms"
        );
        assert!(warm_ratio(&Warm::of(&[]), &time_of_use).1.is_nan());
    }

    fn report(requests: u64, timeouts: u64, p99_ms: u64) -> WrkReport {
        WrkReport {
            requests,
            requests_per_sec: requests as f64,
            p50: Duration::from_millis(1),
            p90: Duration::from_millis(1),
            p99: Duration::from_millis(p99_ms),
            max: Duration::from_millis(p99_ms),
            non_2xx_3xx: 0,
            socket_errors: test_support::wrk::SocketErrors {
                timeout: timeouts,
                ..Default::default()
            },
            output: String::new(),
        }
    }

    #[test]
    fn p99_is_only_a_figure_when_wrk_got_answers_in_time() {
        let timeout = Duration::from_secs(30);
        assert_eq!(
            p99_figure(&report(1000, 0, 7), timeout),
            ("7.0 ms".into(), 7.0)
        );
        // 9 of 1000 timed out: under 1 %, the percentile still stands.
        assert_eq!(p99_figure(&report(1000, 9, 7), timeout).1, 7.0);
        let (shown, measured) = p99_figure(&report(1000, 10, 7), timeout);
        assert_eq!(shown, ">30 s (timeouts)");
        assert!(measured.is_nan());
        let (shown, measured) = p99_figure(&report(0, 0, 0), timeout);
        assert_eq!(shown, "no answer");
        assert!(measured.is_nan());
    }

    fn endpoint(
        cold: Result<Timed, String>,
        warm: Vec<Result<Timed, String>>,
        wrk: Result<WrkReport, String>,
    ) -> EndpointRun {
        EndpointRun {
            name: "monthly",
            path: "/api/energy/monthly".into(),
            cold,
            warm,
            wrk,
            rss_after_start: None,
            rss_before_load: None,
            rss_after_load: None,
        }
    }

    #[test]
    fn every_answer_must_be_200_for_an_endpoint_to_pass() {
        let good = endpoint(answer(200, 5), vec![answer(200, 1)], Ok(report(10, 0, 2)));
        assert_eq!(
            all_answered(&good),
            (
                true,
                "cold 200, warm 1 of 1 200, wrk 10 answers, 0 non-2xx, 0 socket errors".into()
            )
        );
        let cold_503 = endpoint(answer(503, 5), vec![answer(200, 1)], Ok(report(10, 0, 2)));
        let (pass, shown) = all_answered(&cold_503);
        assert!(!pass);
        assert!(shown.starts_with("cold 503,"), "{shown}");
        let warm_500 = endpoint(answer(200, 5), vec![answer(500, 1)], Ok(report(10, 0, 2)));
        let (pass, shown) = all_answered(&warm_500);
        assert!(!pass);
        assert!(shown.contains("warm 0 of 1 200 (status 500)"), "{shown}");
        let timed_out = endpoint(
            Err("timed out: no answer".into()),
            vec![],
            Ok(report(0, 0, 0)),
        );
        let (pass, shown) = all_answered(&timed_out);
        assert!(!pass);
        assert!(
            shown.starts_with("cold timed out, warm 0 of 0 200, wrk 0 answers"),
            "{shown}"
        );
        let no_wrk = endpoint(answer(200, 5), vec![], Err("wrk hung".into()));
        assert_eq!(
            all_answered(&no_wrk),
            (false, "cold 200, warm 0 of 0 200, wrk failed".into())
        );
    }
}
