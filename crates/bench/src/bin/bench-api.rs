//! `bench-api`: the REST API over realistic history, for each size in a matrix of
//! (panels × days) of 1-minute readings.
//!
//! For each size, on a fresh private influxd and broker: load the history with the real
//! `sensor-publisher --backfill <DAYS> --direct` (timed); start the real `mqtt-subscriber` and
//! wait until its usage rollup is complete up to the last reading (timed; a timeout is reported
//! as `rollup_ready: false` and the run goes on); then for each endpoint start a fresh
//! `api-server` (default `QUERY_CACHE_MS`), time its first request (nothing cached yet) and load
//! it with `wrk`. Memory of both programs is sampled when idle, before and after the load.

use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use energy_bench::api::{EndpointRun, ENDPOINTS};
use energy_bench::history::{rfc3339, Backfill, Binaries, Loaded, Rollup, Stack};
use energy_bench::machine;
use energy_bench::report::{
    self, columns, mib, mib_text, ms, ms_json, number, round, Bound, Checks,
};
use serde_json::{json, Value};
use test_support::wrk::{Wrk, WrkOptions};

/// `/api/energy/monthly`, first request after start, at 100 panels × 365 days.
const MONTHLY_COLD_MAX_MS: f64 = 250.0;
/// p99 of realtime and today-usage under wrk, at 100 panels.
const P99_MAX_MS: f64 = 20.0;
/// Resident memory of api-server and mqtt-subscriber when idle.
const IDLE_RSS_BELOW_MIB: f64 = 15.0;
/// A percentile wrk prints is not the real one once this share of requests timed out.
const TIMEOUT_SHARE_FOR_P99: f64 = 0.01;

/// Loads history for each (panels x days) size, waits for the subscriber's rollup, and measures
/// every endpoint cold and under wrk. Prints tables, then one line `JSON {…}`.
#[derive(Debug, Parser)]
#[command(name = "bench-api")]
struct Options {
    /// Sizes to measure, as PANELSxDAYS, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3x365,100x30,100x365")]
    matrix: Vec<Size>,

    /// Seconds of wrk per endpoint.
    #[arg(long, default_value_t = 15)]
    wrk_secs: u64,

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
    rollup: Rollup,
    subscriber_rss: [Option<u64>; 3],
    subscriber_peak_kib: Option<u64>,
    endpoints: Vec<EndpointRun>,
}

fn measure(
    size: Size,
    options: &Options,
    binaries: &Binaries,
    wrk: &Wrk,
    wrk_options: &WrkOptions,
) -> Result<SizeRun, String> {
    eprintln!("== {size}: starting a private influxd and mosquitto");
    let stack = Stack::start();
    let Loaded {
        backfill,
        mut subscriber,
        subscriber_rss_after_start: rss_after_start,
        rollup,
    } = stack.load_and_roll_up(
        binaries,
        size.panels,
        size.days,
        Duration::from_secs(options.backfill_timeout_secs),
        Duration::from_secs(options.rollup_timeout_secs),
    )?;
    let rss_before_load = subscriber.rss_kib();
    let mut endpoints = Vec::new();
    for endpoint in ENDPOINTS {
        eprintln!(
            "   {}: fresh api-server, cold request, wrk {} s…",
            endpoint.1, options.wrk_secs
        );
        endpoints.push(EndpointRun::measure(
            binaries,
            &stack,
            wrk,
            wrk_options,
            endpoint,
        ));
    }
    let rss_after_load = subscriber.rss_kib();
    let subscriber_peak_kib = subscriber.peak_rss_kib();
    subscriber.terminate();
    Ok(SizeRun {
        size,
        backfill,
        rollup,
        subscriber_rss: [rss_after_start, rss_before_load, rss_after_load],
        subscriber_peak_kib,
        endpoints,
    })
}

/// The endpoint table of one size.
fn endpoint_table(run: &SizeRun) -> String {
    let rows: Vec<Vec<String>> = run
        .endpoints
        .iter()
        .map(|endpoint| {
            let cold = match &endpoint.cold {
                Ok(timed) if timed.status == 200 => ms(timed.took),
                Ok(timed) => format!("{} ({})", ms(timed.took), timed.status),
                Err(_) => "failed".into(),
            };
            let mut row = vec![endpoint.path.to_owned(), cold];
            match &endpoint.wrk {
                Ok(report) => row.extend([
                    format!("{:.1}", report.requests_per_sec),
                    ms(report.p50),
                    ms(report.p99),
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

/// Holds `run`'s figures against the targets that apply to its size.
fn check(run: &SizeRun, options: &Options, checks: &mut Checks) {
    let size = run.size;
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
    for endpoint in &run.endpoints {
        let cold_ok = matches!(&endpoint.cold, Ok(timed) if timed.status == 200);
        let (answered, value) = match &endpoint.wrk {
            Ok(report) => (
                cold_ok && report.non_2xx_3xx == 0 && report.socket_errors.total() == 0,
                format!(
                    "cold {}, {} non-2xx, {} socket errors",
                    endpoint
                        .cold
                        .as_ref()
                        .map_or("failed".to_owned(), |t| t.status.to_string()),
                    report.non_2xx_3xx,
                    report.socket_errors.total()
                ),
            ),
            Err(_) => (false, "wrk failed".to_owned()),
        };
        checks.record(
            format!("{size}: {} answers", endpoint.path),
            value,
            "200, no non-2xx, no errors",
            answered,
        );
        if endpoint.name == "monthly" && size.panels == 100 && size.days == 365 {
            let cold = endpoint.cold.as_ref().ok().filter(|t| t.status == 200);
            checks.check(
                format!("{size}: monthly cold"),
                cold.map_or("failed".into(), |t| ms(t.took)),
                cold.map_or(f64::NAN, |t| t.took.as_secs_f64() * 1000.0),
                Bound::AtMost(MONTHLY_COLD_MAX_MS),
                "ms",
            );
        }
        if matches!(endpoint.name, "realtime" | "today-usage") && size.panels == 100 {
            let p99 = endpoint.wrk.as_ref().ok().map(|report| {
                let timed_out = report.socket_errors.timeout as f64 / report.requests.max(1) as f64;
                // wrk leaves timed-out requests out of its percentiles.
                if timed_out >= TIMEOUT_SHARE_FOR_P99 {
                    (">2 s (timeouts)".to_owned(), f64::NAN)
                } else {
                    (ms(report.p99), report.p99.as_secs_f64() * 1000.0)
                }
            });
            let (value, measured) = p99.unwrap_or(("wrk failed".into(), f64::NAN));
            checks.check(
                format!("{size}: {} p99", endpoint.path),
                value,
                measured,
                Bound::AtMost(P99_MAX_MS),
                "ms",
            );
        }
    }
    // The target is for an idle server; the largest sample (after wrk) is in the tables.
    let api_rss = run
        .endpoints
        .iter()
        .filter_map(EndpointRun::idle_rss_kib)
        .max();
    checks.check(
        format!("{size}: api-server idle RSS (after start, after one request)"),
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

fn to_json(run: &SizeRun) -> Value {
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
        "endpoints": run.endpoints.iter().map(|endpoint| {
            let wrk = endpoint.wrk.as_ref().ok();
            json!({
                "name": endpoint.name,
                "path": endpoint.path,
                "cold_ms": endpoint.cold.as_ref().ok().map(|t| ms_json(t.took)),
                "cold_status": endpoint.cold.as_ref().ok().map(|t| t.status),
                "cold_error": endpoint.cold.as_ref().err(),
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
        }).collect::<Vec<Value>>(),
    })
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    // Both first, so a missing tool or binary fails at once rather than after loading.
    let wrk = Wrk::require();
    let binaries = Binaries::find();
    let wrk_options = WrkOptions {
        threads: options.wrk_threads,
        connections: options.wrk_connections,
        duration: Duration::from_secs(options.wrk_secs.max(1)),
        ..WrkOptions::default()
    };

    println!(
        "bench-api: sizes {}; wrk -t{} -c{} -d{}s --timeout {}s --latency; machine: {}",
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
        machine::describe()
    );
    println!(
        "api-server: {} ({} build), TIMEZONE Asia/Jakarta, QUERY_CACHE_MS default (1000), a \
         fresh process per endpoint; cold = its first request",
        binaries.api_server.display(),
        machine::profile(&binaries.api_server)
    );

    let mut checks = Checks::default();
    let mut sizes_json = Vec::new();
    for &size in &options.matrix {
        match measure(size, &options, &binaries, &wrk, &wrk_options) {
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
                print!("{}", endpoint_table(&run));
                let [a, b, c] = run.subscriber_rss;
                println!(
                    "mqtt-subscriber RSS MiB: after start {}, before load {}, after load {}; \
                     peak {}",
                    mib_text(a),
                    mib_text(b),
                    mib_text(c),
                    mib_text(run.subscriber_peak_kib)
                );
                check(&run, &options, &mut checks);
                sizes_json.push(to_json(&run));
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
            "timeout_secs": wrk_options.timeout.as_secs(),
        },
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
}
