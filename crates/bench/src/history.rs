//! A measurement's world: a private influxd and Mosquitto, a history of readings loaded by the
//! real `sensor-publisher --backfill <DAYS> --direct`, and the real `mqtt-subscriber`, which
//! builds its usage rollup over that history. Shared by `bench-api` and `bench-growth`.
//!
//! The rollup's progress is read from InfluxDB, where the subscriber records it: measurement
//! `energy_rollup_state`, integer field `complete_until`, nanoseconds since the epoch up to
//! which the rollup is complete. It is ready for the benchmark once that reaches the time of the
//! backfill's last reading.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde_json::Value;
use tempfile::TempDir;
use test_support::{sibling_binary, Influx, Mosquitto, Program};

use crate::{panel_ids, DATABASE, TOPIC_PREFIX};

/// The backfill's interval: one reading per panel per minute.
pub const INTERVAL_SECS: u64 = 60;

/// How often the rollup's progress is read while waiting for it.
const ROLLUP_POLL: Duration = Duration::from_millis(500);
/// How often a long wait says where it is (on stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// How far past the backfill's last reading the subscriber is started (see [`wait_until_past`]).
pub const SETTLE_AFTER_LAST_READING: Duration = Duration::from_secs(2);
/// How long the subscriber may take to connect and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace's three programs, found next to the running benchmark (`target/release/`).
#[derive(Clone, Debug)]
pub struct Binaries {
    pub sensor_publisher: PathBuf,
    pub mqtt_subscriber: PathBuf,
    pub api_server: PathBuf,
}

impl Binaries {
    /// Finds all three (panicking with how to build them if one is missing) and warns on stderr
    /// about any that is not a release build.
    pub fn find() -> Binaries {
        let binaries = Binaries {
            sensor_publisher: sibling_binary("sensor-publisher"),
            mqtt_subscriber: sibling_binary("mqtt-subscriber"),
            api_server: sibling_binary("api-server"),
        };
        for exe in [
            &binaries.sensor_publisher,
            &binaries.mqtt_subscriber,
            &binaries.api_server,
        ] {
            crate::machine::warn_unless_release(exe);
        }
        binaries
    }
}

/// One measurement's private services. Dropping it kills both and removes their data.
pub struct Stack {
    pub influx: Influx,
    pub broker: Mosquitto,
    /// The publisher's state file lives here.
    scratch: TempDir,
}

/// What a backfill loaded.
#[derive(Clone, Debug)]
pub struct Backfill {
    pub panels: usize,
    pub days: u32,
    /// Readings the publisher reported as written (`backfill done readings=…`).
    pub readings: u64,
    /// Wall time of the whole `sensor-publisher --backfill` run, start to exit.
    pub took: Duration,
    /// Time of the newest stored reading, nanoseconds since the epoch.
    pub last_reading_ns: i64,
}

/// How waiting for the rollup went.
#[derive(Clone, Debug)]
pub struct Rollup {
    pub ready: bool,
    /// From the subscriber's start until the rollup was ready (or the wait gave up).
    pub took: Duration,
    /// The last `complete_until` seen, if any.
    pub complete_until_ns: Option<i64>,
    /// The catch-up's own duration as the subscriber logged it (`usage rollup caught up …
    /// seconds=…`), if it did: the rollup work alone, without start-up and without the wait for
    /// the subscriber to record its progress.
    pub catch_up_secs: Option<f64>,
}

impl Stack {
    /// Starts influxd and Mosquitto on free loopback ports, each in a temporary directory.
    pub fn start() -> Stack {
        Stack {
            influx: Influx::start(),
            broker: Mosquitto::start(),
            scratch: tempfile::Builder::new()
                .prefix("energy-bench-")
                .tempdir()
                .expect("create a temp dir for the benchmark"),
        }
    }

    /// Loads `days` days of 1-minute readings for `panels` panels with
    /// `sensor-publisher --backfill <days> --direct` and waits for it to exit (at most
    /// `timeout`). An `Err` carries the publisher's output.
    pub fn backfill(
        &self,
        binaries: &Binaries,
        panels: usize,
        days: u32,
        timeout: Duration,
    ) -> Result<Backfill, String> {
        let days_arg = days.to_string();
        let started = Instant::now();
        let mut publisher = Program::start_exe(
            &binaries.sensor_publisher,
            &["--backfill", &days_arg, "--direct"],
            &[
                ("PANELS", panel_ids(panels).join(",")),
                ("PUBLISH_INTERVAL_SECS", INTERVAL_SECS.to_string()),
                (
                    "STATE_FILE",
                    self.scratch
                        .path()
                        .join("sensor-publisher-state.json")
                        .display()
                        .to_string(),
                ),
                ("INFLUX_URL", self.influx.url()),
                ("INFLUX_DATABASE", DATABASE.to_owned()),
                ("MQTT_URL", self.broker.url()),
                ("MQTT_TOPIC_PREFIX", TOPIC_PREFIX.to_owned()),
            ],
        );
        let code = publisher.wait_exit(timeout);
        let took = started.elapsed();
        let output = publisher.output();
        if code != Some(0) {
            return Err(format!(
                "sensor-publisher --backfill {days} --direct ended with {} after {:.1} s:\n{}",
                code.map_or_else(
                    || "no exit code (timed out or killed)".into(),
                    |c| c.to_string()
                ),
                took.as_secs_f64(),
                tail(&output, 4000)
            ));
        }
        let readings = backfill_readings(&output)
            .ok_or_else(|| format!("no \"backfill done readings=…\" in its output:\n{output}"))?;
        let last_reading_ns = newest_reading_ns(&self.influx)
            .ok_or("InfluxDB holds no reading after the backfill")?;
        Ok(Backfill {
            panels,
            days,
            readings,
            took,
            last_reading_ns,
        })
    }

    /// Starts `mqtt-subscriber` against this stack with its default settings and waits until it
    /// has subscribed.
    pub fn start_subscriber(&self, binaries: &Binaries) -> Program {
        let subscriber = Program::start_exe(
            &binaries.mqtt_subscriber,
            &[],
            &[
                ("MQTT_URL", self.broker.url()),
                ("MQTT_TOPIC_PREFIX", TOPIC_PREFIX.to_owned()),
                ("MQTT_CLIENT_ID", "energy-bench-subscriber".to_owned()),
                ("INFLUX_URL", self.influx.url()),
                ("INFLUX_DATABASE", DATABASE.to_owned()),
            ],
        );
        subscriber.wait_for_output("subscribed", SUBSCRIBE_TIMEOUT);
        subscriber
    }

    /// Waits until the rollup is complete up to `until_ns`, polling
    /// `SELECT last(complete_until) FROM energy_rollup_state`, for at most `timeout` after
    /// `since` (the subscriber's start). Says every 30 s on stderr how far it is.
    pub fn wait_for_rollup(
        &self,
        subscriber: &Program,
        since: Instant,
        until_ns: i64,
        timeout: Duration,
    ) -> Rollup {
        let deadline = since + timeout;
        let mut next_progress = Instant::now() + PROGRESS_EVERY;
        let mut complete_until_ns = None;
        loop {
            complete_until_ns = rollup_complete_until_ns(&self.influx).or(complete_until_ns);
            if complete_until_ns.is_some_and(|done| done >= until_ns) {
                return Rollup {
                    ready: true,
                    took: since.elapsed(),
                    complete_until_ns,
                    catch_up_secs: catch_up_secs(&subscriber.output()),
                };
            }
            let now = Instant::now();
            let running = is_running(subscriber);
            if now >= deadline || !running {
                if !running {
                    eprintln!(
                        "mqtt-subscriber exited while the rollup was built; its output:\n{}",
                        tail(&subscriber.output(), 4000)
                    );
                }
                return Rollup {
                    ready: false,
                    took: since.elapsed(),
                    complete_until_ns,
                    catch_up_secs: catch_up_secs(&subscriber.output()),
                };
            }
            if now >= next_progress {
                eprintln!(
                    "  waiting for the rollup: {:.0} s so far, complete_until {} (needed {})",
                    since.elapsed().as_secs_f64(),
                    complete_until_ns.map_or_else(|| "not yet written".into(), rfc3339),
                    rfc3339(until_ns)
                );
                next_progress = now + PROGRESS_EVERY;
            }
            std::thread::sleep(ROLLUP_POLL.min(deadline - now));
        }
    }
}

/// A history loaded and rolled up: what `bench-api` and `bench-growth` measure against.
pub struct Loaded {
    pub backfill: Backfill,
    /// The subscriber that built the rollup, still running (idle).
    pub subscriber: Program,
    /// The subscriber's RSS right after it subscribed, before its catch-up got far.
    pub subscriber_rss_after_start: Option<u64>,
    pub rollup: Rollup,
}

impl Stack {
    /// Loads `days` days of 1-minute readings of `panels` panels with the real
    /// `sensor-publisher --backfill --direct`, starts the real `mqtt-subscriber` and waits (at
    /// most `rollup_timeout`) for it to roll that history up, saying on stderr what it does.
    /// A rollup not ready in time is reported, not an error: the caller measures anyway and
    /// fails its check. [`Stack::load`] then [`Stack::roll_up`], for a caller that measures
    /// nothing in between.
    pub fn load_and_roll_up(
        &self,
        binaries: &Binaries,
        panels: usize,
        days: u32,
        backfill_timeout: Duration,
        rollup_timeout: Duration,
    ) -> Result<Loaded, String> {
        let backfill = self.load(binaries, panels, days, backfill_timeout)?;
        Ok(self.roll_up(binaries, backfill, rollup_timeout))
    }

    /// [`Stack::backfill`], saying on stderr what it does. Afterwards InfluxDB holds the
    /// readings and no rollup at all: the backfill writes straight to InfluxDB and only the
    /// subscriber builds the rollup, so this is the moment to measure what the API does without
    /// one.
    pub fn load(
        &self,
        binaries: &Binaries,
        panels: usize,
        days: u32,
        backfill_timeout: Duration,
    ) -> Result<Backfill, String> {
        eprintln!(
            "   loading {panels} panels x {days} days of 1-minute readings with \
             sensor-publisher --backfill --direct…"
        );
        let backfill = self.backfill(binaries, panels, days, backfill_timeout)?;
        eprintln!(
            "   loaded {} readings in {:.1} s",
            backfill.readings,
            backfill.took.as_secs_f64()
        );
        Ok(backfill)
    }

    /// Starts the real `mqtt-subscriber` over the history `backfill` loaded and waits (at most
    /// `rollup_timeout` from its start) until its rollup reaches the last reading. A rollup not
    /// ready in time is reported in [`Loaded::rollup`], not an error.
    pub fn roll_up(
        &self,
        binaries: &Binaries,
        backfill: Backfill,
        rollup_timeout: Duration,
    ) -> Loaded {
        eprintln!(
            "   starting mqtt-subscriber and waiting for its rollup (up to {} s)…",
            rollup_timeout.as_secs()
        );
        wait_until_past(backfill.last_reading_ns, SETTLE_AFTER_LAST_READING);
        let started = Instant::now();
        let subscriber = self.start_subscriber(binaries);
        let subscriber_rss_after_start = subscriber.rss_kib();
        let rollup = self.wait_for_rollup(
            &subscriber,
            started,
            backfill.last_reading_ns,
            rollup_timeout,
        );
        if rollup.ready {
            eprintln!("   rollup ready after {:.1} s", rollup.took.as_secs_f64());
            // The rollup is recorded complete by the first round after the catch-up, but the
            // writer may still be reading the log of the load (a direct backfill logs every
            // request): measuring then would time the API against a busy writer and sample its
            // memory mid-round.
            let waited = wait_until_idle(&subscriber, rollup_timeout);
            eprintln!(
                "   mqtt-subscriber idle {:.1} s later (under {} ms of CPU per {} s)",
                waited.as_secs_f64(),
                IDLE_CPU.as_millis(),
                IDLE_WINDOW.as_secs()
            );
        } else {
            eprintln!(
                "   !!! ROLLUP NOT READY after {:.0} s (complete_until {}); measuring anyway",
                rollup.took.as_secs_f64(),
                rollup
                    .complete_until_ns
                    .map_or_else(|| "never written".into(), rfc3339)
            );
        }
        Loaded {
            backfill,
            subscriber,
            subscriber_rss_after_start,
            rollup,
        }
    }
}

/// A program that used less CPU than [`IDLE_CPU`] in [`IDLE_WINDOW`] is idle.
const IDLE_CPU: Duration = Duration::from_millis(50);
const IDLE_WINDOW: Duration = Duration::from_secs(2);

/// Waits (up to `timeout`) until `program` is idle, or has exited; returns how long it waited.
fn wait_until_idle(program: &Program, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut before = program.cpu_time();
    while start.elapsed() < timeout {
        std::thread::sleep(IDLE_WINDOW);
        let now = program.cpu_time();
        match (before, now) {
            (Some(before), Some(now)) if now.saturating_sub(before) >= IDLE_CPU => {}
            _ => break,
        }
        before = now;
    }
    start.elapsed()
}

/// Sleeps until the wall clock is at least `margin` past `ns` (nanoseconds since the epoch).
///
/// The subscriber records its rollup as complete up to the start of its latest round minus one
/// second, and when idle it records again only every 10 s. Started within a second of the
/// backfill's last reading (which is "now" when the backfill starts, so this happens only for
/// tiny histories), its first record falls just short of that reading and the wait would
/// measure the 10 s idle cadence instead of the rollup. Waiting 2 s past the reading first
/// keeps that artifact out of small runs; real sizes take far longer than 2 s to load.
pub fn wait_until_past(ns: i64, margin: Duration) {
    let target = ns.saturating_add(i64::try_from(margin.as_nanos()).unwrap_or(i64::MAX));
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    if let Ok(wait) = u64::try_from(target.saturating_sub(now)) {
        std::thread::sleep(Duration::from_nanos(wait));
    }
}

/// `seconds=…` of the subscriber's `usage rollup caught up` log line.
pub fn catch_up_secs(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|line| line.contains("usage rollup caught up"))?;
    let start = line.find("seconds=")? + "seconds=".len();
    let number: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

/// Whether `program` is still running (its `/proc` entry is readable only until it exits).
pub fn is_running(program: &Program) -> bool {
    program.rss_kib().is_some()
}

/// The time of the newest stored reading over all panels, nanoseconds since the epoch.
pub fn newest_reading_ns(influx: &Influx) -> Option<i64> {
    let json = influx.query(DATABASE, "SELECT last(energy_kwh) FROM energy_data");
    let time = first_row(&json)?.first()?.as_str()?.to_owned();
    DateTime::parse_from_rfc3339(&time)
        .ok()?
        .timestamp_nanos_opt()
}

/// The rollup's `complete_until` (nanoseconds since the epoch), `None` while none is written.
pub fn rollup_complete_until_ns(influx: &Influx) -> Option<i64> {
    let json = influx.query(
        DATABASE,
        "SELECT last(complete_until) FROM energy_rollup_state",
    );
    first_row(&json)?.get(1)?.as_i64()
}

/// The first row of the first series of the first statement, as `[time, value, …]`.
fn first_row(json: &Value) -> Option<&Vec<Value>> {
    json["results"][0]["series"][0]["values"][0].as_array()
}

/// `readings=N` from the publisher's `backfill done` log line.
fn backfill_readings(output: &str) -> Option<u64> {
    let line = output
        .lines()
        .rev()
        .find(|line| line.contains("backfill done"))?;
    let start = line.find("readings=")? + "readings=".len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Nanoseconds since the epoch as RFC 3339 UTC, for messages.
pub fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The last `max` bytes of `text` (on a char boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backfill_count_is_read_from_its_last_log_line() {
        let output = "2026-11-27T03:00:00Z  INFO sensor_publisher::backfill: backfill starting \
                      panels=3 readings=8640\n\
                      2026-11-27T03:00:01Z  INFO sensor_publisher::backfill: backfill done \
                      readings=8640 seconds=0.41 readings_per_sec=21073\n";
        assert_eq!(backfill_readings(output), Some(8640));
        assert_eq!(backfill_readings("backfill starting readings=5"), None);
    }

    #[test]
    fn the_catch_up_time_is_read_from_the_subscribers_log() {
        let output = "2026-11-27T04:26:57.349284Z  INFO mqtt_subscriber::rollup: usage rollup \
                      caught up readings=8730 buckets=585 days=15 seconds=0.058546159\n";
        assert_eq!(catch_up_secs(output), Some(0.058546159));
        assert_eq!(catch_up_secs("rebuilding the usage rollup"), None);
    }

    #[test]
    fn influx_rows_are_read_from_the_first_series() {
        let json = serde_json::json!({"results": [{"statement_id": 0, "series": [
            {"name": "energy_rollup_state", "columns": ["time", "last"],
             "values": [["1970-01-01T00:00:00Z", 1_795_752_735_000_000_000_i64]]}]}]});
        assert_eq!(
            first_row(&json).and_then(|row| row[1].as_i64()),
            Some(1_795_752_735_000_000_000)
        );
        assert!(first_row(&serde_json::json!({"results": [{"statement_id": 0}]})).is_none());
    }
}
