//! `bench-ingest`: how fast readings get from MQTT into InfluxDB through the real
//! `mqtt-subscriber`, against what the broker and InfluxDB can do on their own.
//!
//! Three measurements, each on a fresh private broker and a fresh influxd:
//!
//! - **Broker ceiling**, per in-flight window: `mosquitto_sub -q 1 -C N` (output to /dev/null)
//!   subscribed, N readings flooded at QoS 1, timed from the first publish until it exits.
//! - **InfluxDB ceiling**: the same N points as line protocol POSTed straight to `/write` in
//!   large batches with a few requests in flight, timed until the last is acknowledged.
//! - **End to end**, per in-flight window: the real `mqtt-subscriber` (release) subscribed, the
//!   same flood, timed from the first publish until `SELECT count(energy_kwh) FROM energy_data`
//!   counts all N. Also the subscriber's CPU time per reading (utime + stime from
//!   `/proc/<pid>/stat` over the run), its peak RSS (`VmHWM`) and readings lost.
//!
//! Readings are spread over the panels round by round, one second apart per panel, so every
//! reading is a distinct point. The broker runs with `max_queued_messages 0` (its default of
//! 1000 silently drops most of a flood) and the chosen `max_inflight_messages`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, SubsecRound, Utc};
use clap::Parser;
use energy_bench::report::{self, columns, mib, number, round, secs, Bound, Checks};
use energy_bench::{history, machine, panel_ids, DATABASE, TOPIC_PREFIX};
use serde_json::{json, Value};
use test_support::mqtt::Publisher;
use test_support::{find_program, sibling_binary, Influx, Mosquitto, Program};

/// End-to-end throughput must reach this share of the lower ceiling.
const MIN_RATIO: f64 = 0.70;
/// The same at 1 000 panels or more, where the issue asks for 0.9 of the broker's rate.
const MIN_RATIO_1000_PANELS: f64 = 0.90;
/// The subscriber's peak resident memory during the flood.
const MAX_PEAK_RSS_MIB: f64 = 30.0;
/// How long a program may take to subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Floods readings through MQTT into InfluxDB and compares the pipeline with the broker's and
/// InfluxDB's own rates. Prints a table, then one line `JSON {…}`.
#[derive(Debug, Parser)]
#[command(name = "bench-ingest")]
struct Options {
    /// Readings to flood in each measurement.
    #[arg(long, default_value_t = 100_000)]
    readings: usize,

    /// Panels the readings are spread over (round by round, 1 s apart per panel).
    #[arg(long, default_value_t = 100)]
    panels: usize,

    /// The broker's `max_inflight_messages` for each end-to-end (and broker ceiling)
    /// measurement, comma-separated. Mosquitto's default is 20.
    #[arg(long, value_delimiter = ',', default_value = "20,1000")]
    inflight: Vec<u32>,

    /// The subscriber's BATCH_SIZE.
    #[arg(long, default_value_t = 5000)]
    batch_size: usize,

    /// The subscriber's MAX_BUFFERED; keep it above every in-flight window.
    #[arg(long, default_value_t = 20_000)]
    max_buffered: usize,

    /// The subscriber's FLUSH_INTERVAL_MS.
    #[arg(long, default_value_t = 200)]
    flush_interval_ms: u64,

    /// Lines per request in the InfluxDB ceiling.
    #[arg(long, default_value_t = 10_000)]
    influx_batch: usize,

    /// Requests in flight at once in the InfluxDB ceiling.
    #[arg(long, default_value_t = 3)]
    influx_writers: usize,

    /// How often InfluxDB's count is polled during the end-to-end run (its time resolution).
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,

    /// Give up on a measurement when nothing has arrived for this long.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,

    /// Where the logs of a stalled end-to-end run are kept (the subscriber's output, the
    /// broker's and InfluxDB's logs), one directory per run.
    #[arg(long, default_value = "target/bench-ingest-stalls")]
    stall_logs: std::path::PathBuf,

    /// A further setting of the subscriber, as NAME=VALUE (repeatable), e.g.
    /// `ROLLUP_WRITER=false` to see what the rollup costs.
    #[arg(long = "subscriber-env", value_parser = parse_setting)]
    subscriber_env: Vec<(String, String)>,
}

/// `NAME=VALUE`, with a name of capitals, digits and underscores.
fn parse_setting(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value))
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
        {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{raw:?} is not NAME=VALUE")),
    }
}

/// One generated reading: the MQTT message and the same point as line protocol.
struct Flood {
    messages: Vec<(String, String)>,
    lines: Vec<String>,
    readings_per_panel: usize,
}

impl Flood {
    /// `readings` readings over `panels` panels: round r holds one reading per panel at
    /// `first + r s`, with `first` far enough in the past that the last is not in the future.
    fn generate(readings: usize, panels: usize) -> Flood {
        let ids = panel_ids(panels);
        let rounds = readings.div_ceil(panels);
        let first = Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(rounds as i64 + 60);
        let mut energy: Vec<f64> = (0..panels).map(|p| 1_000.0 + 10.0 * p as f64).collect();
        let mut messages = Vec::with_capacity(readings);
        let mut lines = Vec::with_capacity(readings);
        for index in 0..readings {
            let (round_index, panel) = (index / panels, index % panels);
            let time = first + chrono::Duration::seconds(round_index as i64);
            let power_kw = report::round(
                10.0 + (panel % 30) as f64 + ((index * 7919) % 1000) as f64 / 1000.0,
                3,
            );
            energy[panel] = report::round(energy[panel] + power_kw / 3600.0, 6);
            let payload = json!({
                "power_kw": power_kw,
                "energy_kwh": energy[panel],
                "timestamp": time.to_rfc3339_opts(SecondsFormat::Secs, true),
            })
            .to_string();
            messages.push((format!("{TOPIC_PREFIX}/{}", ids[panel]), payload));
            // What the subscriber writes for the message (README, "Which InfluxDB versions, and why": floats, ns timestamps).
            lines.push(format!(
                "energy_data,panel={} power_kw={power_kw},energy_kwh={} {}",
                ids[panel],
                energy[panel],
                time.timestamp_nanos_opt().unwrap_or_default()
            ));
        }
        Flood {
            messages,
            lines,
            readings_per_panel: rounds,
        }
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    /// Publishes every message at QoS 1 over one pipelined connection; returns once the broker
    /// has acknowledged them all.
    fn publish(&self, broker: &Mosquitto) -> Result<(), String> {
        let mut publisher =
            Publisher::connect(broker.port).map_err(|e| format!("connect to the broker: {e}"))?;
        for (topic, payload) in &self.messages {
            publisher
                .publish(topic, payload.as_bytes())
                .map_err(|e| format!("publish: {e}"))?;
        }
        publisher
            .flush()
            .map_err(|e| format!("waiting for PUBACKs: {e}"))
    }
}

/// The broker config of one measurement.
fn broker_config(inflight: u32) -> String {
    // Explicit though test-support sets it too: without it the broker drops most of a flood.
    // `log_type subscribe` makes the broker log each subscription, which is how we know that
    // mosquitto_sub has subscribed before the flood starts.
    format!(
        "max_queued_messages 0\nmax_inflight_messages {inflight}\n\
         log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
         log_type subscribe"
    )
}

/// The broker ceiling at one in-flight window.
struct BrokerCeiling {
    inflight: u32,
    result: Result<Duration, String>,
}

impl BrokerCeiling {
    fn rate(&self, readings: usize) -> Option<f64> {
        self.result
            .as_ref()
            .ok()
            .map(|took| readings as f64 / took.as_secs_f64())
    }
}

fn broker_ceiling(flood: &Flood, inflight: u32, stall: Duration) -> BrokerCeiling {
    let result = (|| {
        let mosquitto_sub = find_program("mosquitto_sub").ok_or(
            "mosquitto_sub is not installed: apt-get install -y mosquitto-clients".to_owned(),
        )?;
        let broker = Mosquitto::start_with(&broker_config(inflight));
        let client_id = format!("energy-bench-ceiling-{}", std::process::id());
        let filter = format!("{TOPIC_PREFIX}/#");
        let mut child = Command::new(mosquitto_sub)
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-q", "1", "-C", &flood.len().to_string()])
            .args(["-i", &client_id, "-t", &filter])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run mosquitto_sub: {e}"))?;
        let subscribed = format!("{client_id} 1 {filter}");
        let ready = wait_for(SUBSCRIBE_TIMEOUT, || broker.log().contains(&subscribed));
        let outcome = if !ready {
            Err(format!(
                "mosquitto_sub did not subscribe within {SUBSCRIBE_TIMEOUT:?}"
            ))
        } else {
            let started = Instant::now();
            flood
                .publish(&broker)
                .and_then(|()| wait_for_exit(&mut child, stall).map(|()| started.elapsed()))
        };
        end_child(&mut child);
        outcome
    })();
    BrokerCeiling { inflight, result }
}

/// Waits for `child` to exit, polling every millisecond; gives up after `stall` past the end of
/// the flood (messages that never arrive keep `mosquitto_sub -C N` waiting forever).
fn wait_for_exit(child: &mut Child, stall: Duration) -> Result<(), String> {
    let deadline = Instant::now() + stall;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("mosquitto_sub exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!(
                    "mosquitto_sub had not received every message {stall:?} after the flood"
                ))
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("waiting for mosquitto_sub: {e}")),
        }
    }
}

/// Kills `child` if it is still running (it is our un-reaped child, so the pid is ours) and
/// reaps it.
fn end_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Polls `ready` every 10 ms for up to `timeout`.
fn wait_for(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ready()
}

/// The InfluxDB ceiling: points/s for the flood's lines written straight to a fresh database.
fn influx_ceiling(flood: &Flood, batch: usize, writers: usize) -> Result<Duration, String> {
    let influx = Influx::start();
    influx.create_database(DATABASE);
    let batches: Vec<String> = flood
        .lines
        .chunks(batch.max(1))
        .map(|lines| lines.join("\n"))
        .collect();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..writers.max(1) {
            scope.spawn(|| {
                while let Some(body) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // Retries 5xx (InfluxDB 1.6's "error syncing wal"), panics on anything else.
                    influx.write(DATABASE, body);
                }
            });
        }
    });
    let took = started.elapsed();
    let stored = influx.count_points(DATABASE);
    if stored != flood.len() as u64 {
        return Err(format!(
            "InfluxDB holds {stored} of {} points after the ceiling run",
            flood.len()
        ));
    }
    Ok(took)
}

/// One end-to-end measurement.
struct EndToEnd {
    inflight: u32,
    /// Until the broker had acknowledged the whole flood.
    publish: Duration,
    /// Until InfluxDB counted every reading (or the wait gave up).
    took: Duration,
    stored: u64,
    cpu: Option<Duration>,
    peak_rss_kib: Option<u64>,
    summary: String,
}

fn end_to_end(
    flood: &Flood,
    options: &Options,
    subscriber_exe: &std::path::Path,
    inflight: u32,
) -> Result<EndToEnd, String> {
    let broker = Mosquitto::start_with(&broker_config(inflight));
    let influx = Influx::start();
    let mut subscriber = Program::start_exe(
        subscriber_exe,
        &[],
        &[
            ("MQTT_URL", broker.url()),
            ("MQTT_TOPIC_PREFIX", TOPIC_PREFIX.to_owned()),
            ("MQTT_CLIENT_ID", "energy-bench-subscriber".to_owned()),
            ("INFLUX_URL", influx.url()),
            ("INFLUX_DATABASE", DATABASE.to_owned()),
            ("BATCH_SIZE", options.batch_size.to_string()),
            ("MAX_BUFFERED", options.max_buffered.to_string()),
            ("FLUSH_INTERVAL_MS", options.flush_interval_ms.to_string()),
            // Counts every 5 s, so that a stalled run's log says where the readings were.
            ("SUMMARY_INTERVAL_SECS", "5".to_owned()),
        ]
        .into_iter()
        .chain(
            options
                .subscriber_env
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone())),
        )
        .collect::<Vec<_>>(),
    );
    subscriber.wait_for_output("subscribed", SUBSCRIBE_TIMEOUT);

    let cpu_before = subscriber.cpu_time();
    let started = Instant::now();
    flood.publish(&broker)?;
    let publish = started.elapsed();

    let wanted = flood.len() as u64;
    let poll = Duration::from_millis(options.poll_ms.max(1));
    let stall = Duration::from_secs(options.stall_secs);
    let mut stored = 0;
    let mut last_change = Instant::now();
    let took = loop {
        let count = influx.count_points(DATABASE);
        let now = Instant::now();
        if count >= wanted {
            stored = count;
            break started.elapsed();
        }
        if count != stored {
            stored = count;
            last_change = now;
        }
        if now - last_change >= stall || !history::is_running(&subscriber) {
            eprintln!(
                "  gave up: InfluxDB holds {stored} of {wanted} readings, none arrived for \
                 {:.0} s (subscriber running: {})",
                (now - last_change).as_secs_f64(),
                history::is_running(&subscriber)
            );
            keep_stall_logs(&options.stall_logs, inflight, &subscriber, &broker, &influx);
            break started.elapsed();
        }
        std::thread::sleep(poll);
    };
    let cpu = subscriber
        .cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let peak_rss_kib = subscriber.peak_rss_kib();
    subscriber.terminate();
    let summary = subscriber
        .output()
        .lines()
        .rev()
        .find(|line| line.contains("final summary"))
        .map(|line| line.trim().to_owned())
        .unwrap_or_default();
    Ok(EndToEnd {
        inflight,
        publish,
        took,
        stored,
        cpu,
        peak_rss_kib,
        summary,
    })
}

/// Copies the logs of a stalled run to `<dir>/inflight-<n>-<unix time>/` and prints the path and
/// the subscriber's last counts.
fn keep_stall_logs(
    dir: &std::path::Path,
    inflight: u32,
    subscriber: &Program,
    broker: &Mosquitto,
    influx: &Influx,
) {
    let run = dir.join(format!("inflight-{inflight}-{}", Utc::now().timestamp()));
    let output = subscriber.output();
    let written = std::fs::create_dir_all(&run).and_then(|()| {
        std::fs::write(run.join("mqtt-subscriber.log"), &output)?;
        std::fs::write(run.join("mosquitto.log"), broker.log())?;
        std::fs::write(run.join("influxd.log"), influx.log())
    });
    match written {
        Ok(()) => eprintln!("  the logs of this run are kept in {}", run.display()),
        Err(error) => eprintln!("  could not keep the logs in {}: {error}", run.display()),
    }
    for line in output
        .lines()
        .filter(|l| l.contains("summary"))
        .rev()
        .take(3)
    {
        eprintln!("  subscriber: {}", line.trim());
    }
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    if options.readings == 0 || options.panels == 0 || options.inflight.is_empty() {
        eprintln!("--readings, --panels and --inflight must be at least 1");
        return std::process::ExitCode::from(2);
    }
    let subscriber_exe = sibling_binary("mqtt-subscriber");
    machine::warn_unless_release(&subscriber_exe);
    for &inflight in &options.inflight {
        if options.max_buffered <= inflight as usize {
            eprintln!(
                "WARNING: MAX_BUFFERED {} is not above max_inflight_messages {inflight}: the \
                 subscriber may stop reading and lose its connection (README, broker limits)",
                options.max_buffered
            );
        }
    }

    let flood = Flood::generate(options.readings, options.panels);
    let n = flood.len();
    eprintln!(
        "bench-ingest: {n} readings over {} panels; machine: {}",
        options.panels,
        machine::describe()
    );

    eprintln!(
        "InfluxDB ceiling: {n} points in {}-line batches…",
        options.influx_batch
    );
    let influx = influx_ceiling(&flood, options.influx_batch, options.influx_writers);
    let influx_rate = influx
        .as_ref()
        .ok()
        .map(|took| n as f64 / took.as_secs_f64());

    let mut brokers = Vec::new();
    let mut runs = Vec::new();
    for &inflight in &options.inflight {
        eprintln!("broker ceiling, max_inflight_messages {inflight}: mosquitto_sub…");
        brokers.push(broker_ceiling(
            &flood,
            inflight,
            Duration::from_secs(options.stall_secs),
        ));
        eprintln!("end to end, max_inflight_messages {inflight}: mqtt-subscriber…");
        runs.push(end_to_end(&flood, &options, &subscriber_exe, inflight));
    }

    // ---- the report
    println!();
    println!(
        "bench-ingest: {n} readings, {} panels x {} readings 1 s apart, QoS 1, topic \
         {TOPIC_PREFIX}/<panel>",
        options.panels, flood.readings_per_panel
    );
    println!(
        "machine: {}; mqtt-subscriber: {} ({} build)",
        machine::describe(),
        subscriber_exe.display(),
        machine::profile(&subscriber_exe)
    );
    println!(
        "subscriber: BATCH_SIZE={} MAX_BUFFERED={} FLUSH_INTERVAL_MS={}{}; broker: \
         max_queued_messages 0, max_inflight_messages as below",
        options.batch_size,
        options.max_buffered,
        options.flush_interval_ms,
        options
            .subscriber_env
            .iter()
            .map(|(name, value)| format!(" {name}={value}"))
            .collect::<String>()
    );
    println!();

    let mut ceiling_rows = vec![vec![
        "InfluxDB /write".to_owned(),
        format!(
            "{} lines x {} in flight",
            options.influx_batch, options.influx_writers
        ),
        time_or_error(&influx),
        influx_rate.map_or("-".into(), number),
    ]];
    for ceiling in &brokers {
        ceiling_rows.push(vec![
            "mosquitto_sub -q 1".to_owned(),
            format!("max_inflight_messages {}", ceiling.inflight),
            time_or_error(&ceiling.result),
            ceiling.rate(n).map_or("-".into(), number),
        ]);
    }
    print!(
        "{}",
        columns(&["ceiling", "setting", "time", "per s"], &ceiling_rows)
    );
    println!();

    let mut checks = Checks::default();
    let min_ratio = if options.panels >= 1000 {
        MIN_RATIO_1000_PANELS
    } else {
        MIN_RATIO
    };
    let mut e2e_rows = Vec::new();
    let mut e2e_json = Vec::new();
    for (run, ceiling) in runs.iter().zip(&brokers) {
        let inflight = ceiling.inflight;
        let run = match run {
            Ok(run) => run,
            Err(error) => {
                checks.record(
                    format!("inflight {inflight}: end-to-end run"),
                    "failed",
                    "completes",
                    false,
                );
                eprintln!("end-to-end run at inflight {inflight} failed: {error}");
                e2e_json.push(json!({"inflight": inflight, "error": error}));
                continue;
            }
        };
        let rate = run.stored as f64 / run.took.as_secs_f64();
        let lower_ceiling = [ceiling.rate(n), influx_rate]
            .into_iter()
            .flatten()
            .reduce(f64::min);
        let ratio = lower_ceiling.map(|c| rate / c);
        let cpu_us = run.cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / n as f64);
        let cpu_share = run
            .cpu
            .map(|cpu| cpu.as_secs_f64() / run.took.as_secs_f64());
        let lost = wanted_minus(n, run.stored);
        e2e_rows.push(vec![
            inflight.to_string(),
            secs(run.publish),
            secs(run.took),
            number(rate),
            lower_ceiling.map_or("-".into(), number),
            ratio.map_or("-".into(), |r| format!("{:.0} %", r * 100.0)),
            cpu_us.map_or("-".into(), |us| format!("{us:.1}")),
            cpu_share.map_or("-".into(), |s| format!("{:.0} %", s * 100.0)),
            run.peak_rss_kib
                .map_or("-".into(), |kib| format!("{:.1}", mib(kib))),
            lost.to_string(),
        ]);
        checks.check(
            format!("inflight {inflight}: end to end / lower ceiling"),
            ratio.map_or("-".into(), |r| format!("{:.0} %", r * 100.0)),
            ratio.map_or(f64::NAN, |r| r * 100.0),
            Bound::AtLeast(min_ratio * 100.0),
            "%",
        );
        checks.check(
            format!("inflight {inflight}: subscriber peak RSS"),
            run.peak_rss_kib
                .map_or("-".into(), |kib| format!("{:.1} MiB", mib(kib))),
            run.peak_rss_kib.map_or(f64::NAN, mib),
            Bound::AtMost(MAX_PEAK_RSS_MIB),
            "MiB",
        );
        checks.check(
            format!("inflight {inflight}: readings lost"),
            lost.to_string(),
            lost as f64,
            Bound::Exactly(0.0),
            "",
        );
        e2e_json.push(json!({
            "inflight": inflight,
            "publish_secs": round(run.publish.as_secs_f64(), 3),
            "secs": round(run.took.as_secs_f64(), 3),
            "readings_per_sec": round(rate, 1),
            "lower_ceiling_per_sec": lower_ceiling.map(|c| round(c, 1)),
            "ratio": ratio.map(|r| round(r, 4)),
            "cpu_us_per_reading": cpu_us.map(|us| round(us, 2)),
            "cpu_share": cpu_share.map(|s| round(s, 3)),
            "peak_rss_mib": run.peak_rss_kib.map(mib),
            "stored": run.stored,
            "lost": lost,
            "subscriber_summary": run.summary,
        }));
    }
    print!(
        "{}",
        columns(
            &[
                "inflight",
                "publish",
                "end to end",
                "readings/s",
                "lower ceiling/s",
                "ratio",
                "CPU us/reading",
                "CPU",
                "peak RSS MiB",
                "lost"
            ],
            &e2e_rows
        )
    );
    println!(
        "(publish: until the broker acknowledged the whole flood; end to end: until InfluxDB \
         counted every reading, polled every {} ms; CPU: the subscriber's utime+stime over the \
         run, as a share of one core)",
        options.poll_ms
    );
    for run in runs.iter().flatten() {
        if !run.summary.is_empty() {
            println!("subscriber at inflight {}: {}", run.inflight, run.summary);
        }
    }
    println!();
    print!("{}", checks.render());

    report::print_json(&json!({
        "bench": "ingest",
        "readings": n,
        "panels": options.panels,
        "machine": machine::to_json(),
        "subscriber_settings": {
            "batch_size": options.batch_size,
            "max_buffered": options.max_buffered,
            "flush_interval_ms": options.flush_interval_ms,
        },
        "ceilings": {
            "influx": {
                "batch_lines": options.influx_batch,
                "in_flight": options.influx_writers,
                "secs": influx.as_ref().ok().map(|t| round(t.as_secs_f64(), 3)),
                "points_per_sec": influx_rate.map(|r| round(r, 1)),
                "error": influx.as_ref().err(),
            },
            "broker": brokers.iter().map(|b| json!({
                "inflight": b.inflight,
                "secs": b.result.as_ref().ok().map(|t| round(t.as_secs_f64(), 3)),
                "msgs_per_sec": b.rate(n).map(|r| round(r, 1)),
                "error": b.result.as_ref().err(),
            })).collect::<Vec<Value>>(),
        },
        "end_to_end": e2e_json,
        "poll_ms": options.poll_ms,
        "checks": checks.to_json(),
        "all_pass": checks.all_pass(),
    }));
    checks.exit_code()
}

fn wanted_minus(wanted: usize, stored: u64) -> u64 {
    (wanted as u64).saturating_sub(stored)
}

fn time_or_error(result: &Result<Duration, String>) -> String {
    match result {
        Ok(took) => secs(*took),
        Err(error) => format!("FAILED: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_setting_is_name_equals_value() {
        assert_eq!(
            parse_setting("ROLLUP_WRITER=false"),
            Ok(("ROLLUP_WRITER".to_owned(), "false".to_owned()))
        );
        assert_eq!(
            parse_setting("MAX_BUFFERED=a=b"),
            Ok(("MAX_BUFFERED".to_owned(), "a=b".to_owned()))
        );
        for bad in ["ROLLUP_WRITER", "=1", "rollup_writer=false", "A B=1"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
    }
}
