//! `bench-growth`: does an uncached answer stay flat as history grows?
//!
//! For each history length D (default 30, 90 and 365 days of 1-minute readings from 100
//! panels), on a fresh private influxd and broker: load with the real
//! `sensor-publisher --backfill D --direct`, start the real `mqtt-subscriber` and wait for its
//! rollup, then for `/api/energy/monthly` and `/api/panel/today-usage` start a fresh `api-server`
//! with `QUERY_CACHE_MS=0`, time its first request (cold) and then the median of a few more.
//! The target: monthly's median at the longest history is at most twice that at the shortest.

use std::time::Duration;

use clap::Parser;
use energy_bench::api::ApiServer;
use energy_bench::history::{rfc3339, Binaries, Loaded, Stack};
use energy_bench::report::{self, columns, ms, ms_json, number, round, Bound, Checks};
use energy_bench::{machine, median};
use serde_json::{json, Value};

/// time(longest history) / time(shortest) for an uncached monthly answer.
const MAX_MONTHLY_GROWTH: f64 = 2.0;

/// The two endpoints whose work grows with history.
const ENDPOINTS: [(&str, &str); 2] = [
    ("monthly", "/api/energy/monthly"),
    ("today-usage", "/api/panel/today-usage"),
];

/// Measures uncached monthly and today-usage answers over growing history. Prints tables, then
/// one line `JSON {…}`.
#[derive(Debug, Parser)]
#[command(name = "bench-growth")]
struct Options {
    /// Panels of history.
    #[arg(long, default_value_t = 100)]
    panels: usize,

    /// History lengths in days, comma-separated; each is loaded into its own fresh InfluxDB.
    #[arg(long, value_delimiter = ',', default_value = "30,90,365")]
    days: Vec<u32>,

    /// Uncached requests after the cold one; their median is the figure compared.
    #[arg(long, default_value_t = 5)]
    requests: usize,

    /// How long to wait for the rollup after the subscriber starts.
    #[arg(long, default_value_t = 900)]
    rollup_timeout_secs: u64,

    /// How long loading one history may take.
    #[arg(long, default_value_t = 3600)]
    backfill_timeout_secs: u64,
}

/// One endpoint at one history length.
struct Timings {
    name: &'static str,
    path: &'static str,
    cold: Option<Duration>,
    median: Option<Duration>,
    all: Vec<Duration>,
    /// Statuses other than 200, if any.
    failures: Vec<String>,
}

/// One history length.
struct Growth {
    days: u32,
    readings: u64,
    load: Duration,
    rollup_ready: bool,
    rollup_took: Duration,
    rollup_complete_until_ns: Option<i64>,
    rollup_catch_up_secs: Option<f64>,
    endpoints: Vec<Timings>,
}

fn measure(days: u32, options: &Options, binaries: &Binaries) -> Result<Growth, String> {
    eprintln!(
        "== {} panels x {days} days: starting a private influxd and mosquitto",
        options.panels
    );
    let stack = Stack::start();
    let Loaded {
        backfill,
        mut subscriber,
        rollup,
        ..
    } = stack.load_and_roll_up(
        binaries,
        options.panels,
        days,
        Duration::from_secs(options.backfill_timeout_secs),
        Duration::from_secs(options.rollup_timeout_secs),
    )?;
    let mut endpoints = Vec::new();
    for (name, path) in ENDPOINTS {
        eprintln!("   {path}: fresh api-server with QUERY_CACHE_MS=0…");
        let api = ApiServer::start(binaries, &stack, Some(0));
        let mut failures = Vec::new();
        let time = |failures: &mut Vec<String>| match api.get(path) {
            Ok(timed) if timed.status == 200 => Some(timed.took),
            Ok(timed) => {
                failures.push(format!("status {}", timed.status));
                None
            }
            Err(error) => {
                failures.push(error);
                None
            }
        };
        let cold = time(&mut failures);
        let all: Vec<Duration> = (0..options.requests)
            .filter_map(|_| time(&mut failures))
            .collect();
        api.stop();
        endpoints.push(Timings {
            name,
            path,
            cold,
            median: median(&all),
            all,
            failures,
        });
    }
    subscriber.terminate();
    Ok(Growth {
        days,
        readings: backfill.readings,
        load: backfill.took,
        rollup_ready: rollup.ready,
        rollup_took: rollup.took,
        rollup_complete_until_ns: rollup.complete_until_ns,
        rollup_catch_up_secs: rollup.catch_up_secs,
        endpoints,
    })
}

/// `later / earlier` for `endpoint`'s median (or cold time).
fn ratio(
    earlier: &Growth,
    later: &Growth,
    endpoint: &str,
    pick: fn(&Timings) -> Option<Duration>,
) -> Option<f64> {
    let time = |growth: &Growth| {
        growth
            .endpoints
            .iter()
            .find(|timings| timings.name == endpoint)
            .and_then(pick)
    };
    Some(time(later)?.as_secs_f64() / time(earlier)?.as_secs_f64())
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    if options.days.is_empty() || options.days.contains(&0) || options.panels == 0 {
        eprintln!("--days needs at least one length of 1 day or more, --panels at least 1");
        return std::process::ExitCode::from(2);
    }
    let binaries = Binaries::find();
    println!(
        "bench-growth: {} panels, {} days of 1-minute history; api-server {} ({} build) with \
         QUERY_CACHE_MS=0, a fresh process per endpoint; cold = its first request, median of \
         {} more; machine: {}",
        options.panels,
        options
            .days
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        binaries.api_server.display(),
        machine::profile(&binaries.api_server),
        options.requests,
        machine::describe()
    );

    let mut checks = Checks::default();
    let mut growths = Vec::new();
    let mut errors = Vec::new();
    for &days in &options.days {
        match measure(days, &options, &binaries) {
            Ok(growth) => growths.push(growth),
            Err(error) => {
                eprintln!("{days} days failed: {error}");
                checks.record(
                    format!("{days} days: loaded and measured"),
                    "failed",
                    "completes",
                    false,
                );
                errors.push(json!({"days": days, "error": error}));
            }
        }
    }

    let mut rows = Vec::new();
    for growth in &growths {
        let mut row = vec![
            growth.days.to_string(),
            number(growth.readings as f64),
            format!("{:.1} s", growth.load.as_secs_f64()),
            if growth.rollup_ready {
                format!("{:.1} s", growth.rollup_took.as_secs_f64())
            } else {
                "NOT READY".into()
            },
            growth
                .rollup_catch_up_secs
                .map_or_else(|| "?".into(), |s| format!("{s:.2} s")),
        ];
        for timings in &growth.endpoints {
            row.push(timings.cold.map_or("failed".into(), ms));
            row.push(timings.median.map_or("failed".into(), ms));
        }
        rows.push(row);
        checks.record(
            format!("{} days: rollup ready", growth.days),
            if growth.rollup_ready {
                format!("yes, {:.1} s", growth.rollup_took.as_secs_f64())
            } else {
                format!(
                    "NO (waited {:.0} s, complete_until {})",
                    growth.rollup_took.as_secs_f64(),
                    growth
                        .rollup_complete_until_ns
                        .map_or_else(|| "never written".into(), rfc3339)
                )
            },
            format!("within {} s", options.rollup_timeout_secs),
            growth.rollup_ready,
        );
        for timings in &growth.endpoints {
            checks.record(
                format!("{} days: {} answers 200", growth.days, timings.path),
                if timings.failures.is_empty() {
                    "all 200".to_owned()
                } else {
                    timings.failures.join("; ")
                },
                "all 200",
                timings.failures.is_empty(),
            );
        }
    }
    println!();
    print!(
        "{}",
        columns(
            &[
                "days",
                "readings",
                "load",
                "rollup",
                "catch-up (log)",
                "monthly cold",
                "monthly median",
                "today cold",
                "today median",
            ],
            &rows
        )
    );

    let mut ratios = Vec::new();
    let shortest = growths.iter().min_by_key(|growth| growth.days);
    let longest = growths.iter().max_by_key(|growth| growth.days);
    if let (Some(shortest), Some(longest)) = (shortest, longest) {
        if longest.days > shortest.days {
            let label = format!("time({})/time({})", longest.days, shortest.days);
            for (name, _) in ENDPOINTS {
                let median_ratio = ratio(shortest, longest, name, |t| t.median);
                let cold_ratio = ratio(shortest, longest, name, |t| t.cold);
                let shown = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
                if name == "monthly" {
                    checks.check(
                        format!("monthly median {label}"),
                        shown(median_ratio),
                        median_ratio.unwrap_or(f64::NAN),
                        Bound::AtMost(MAX_MONTHLY_GROWTH),
                        "",
                    );
                }
                println!(
                    "{name}: {label} median {}, cold {}",
                    shown(median_ratio),
                    shown(cold_ratio)
                );
                ratios.push(json!({
                    "endpoint": name,
                    "longest_days": longest.days,
                    "shortest_days": shortest.days,
                    "median_ratio": median_ratio.map(|r| round(r, 3)),
                    "cold_ratio": cold_ratio.map(|r| round(r, 3)),
                }));
            }
        }
    }
    println!();
    print!("{}", checks.render());

    report::print_json(&json!({
        "bench": "growth",
        "machine": machine::to_json(),
        "panels": options.panels,
        "requests": options.requests,
        "rollup_timeout_secs": options.rollup_timeout_secs,
        "rollup_ready": growths.iter().all(|growth| growth.rollup_ready),
        "histories": growths.iter().map(|growth| json!({
            "days": growth.days,
            "readings": growth.readings,
            "load_secs": round(growth.load.as_secs_f64(), 3),
            "rollup_ready": growth.rollup_ready,
            "rollup_secs": round(growth.rollup_took.as_secs_f64(), 3),
            "rollup_complete_until": growth.rollup_complete_until_ns.map(rfc3339),
            "rollup_catch_up_secs": growth.rollup_catch_up_secs,
            "endpoints": growth.endpoints.iter().map(|timings| json!({
                "name": timings.name,
                "path": timings.path,
                "cold_ms": timings.cold.map(ms_json),
                "median_ms": timings.median.map(ms_json),
                "all_ms": timings.all.iter().copied().map(ms_json).collect::<Vec<f64>>(),
                "failures": timings.failures,
            })).collect::<Vec<Value>>(),
        })).collect::<Vec<Value>>(),
        "errors": errors,
        "ratios": ratios,
        "checks": checks.to_json(),
        "all_pass": checks.all_pass(),
    }));
    checks.exit_code()
}
