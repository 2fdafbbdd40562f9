//! A private InfluxDB 1.x (`influxd`) for one test: free loopback ports for HTTP and RPC, data in
//! a temporary directory that is removed when it is dropped, plus helpers to create databases,
//! write line protocol and query.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tempfile::TempDir;

use crate::http;
use crate::process;

/// `influxd` is usually answering `/ping` after about a second; a loaded machine needs more.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` gives influxd to close its shards after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Start attempts with fresh ports when influxd dies at start-up (a port taken in the meantime).
const START_ATTEMPTS: usize = 3;
/// InfluxDB 1.6 sometimes answers `500 engine: error syncing wal` under load; writes are retried
/// this many times in total on a 5xx (points are idempotent, so a retry is safe).
const WRITE_ATTEMPTS: usize = 5;

/// One measurement of the usage rollup with its estimated part: panel -> start of the period ->
/// (`usage_nkwh`, `estimated_nkwh`, `readings`); see [`Influx::usage_rollup_figures`].
pub type RollupFigures = BTreeMap<String, BTreeMap<DateTime<Utc>, (i64, i64, u64)>>;

/// A running `influxd` started by this test.
pub struct Influx {
    /// The loopback HTTP port; it stays the same across restarts.
    pub port: u16,
    /// The loopback RPC (backup/restore) port; influxd binds it too, so it must be free as well.
    rpc_port: u16,
    /// Lines added to the config's `[http]` section (see [`Influx::start_with_http`]).
    http_extra: String,
    exe: PathBuf,
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    // Last, so the data is removed after influxd has been killed.
    dir: TempDir,
}

impl Influx {
    /// Starts influxd with the config from shared/SERVICES.md and waits until `/ping` answers 204.
    pub fn start() -> Self {
        Self::start_with_http("")
    }

    /// Like [`Influx::start`], with `http_extra` (lines of TOML, e.g. `"max-row-limit = 500\n"`)
    /// added to the config's `[http]` section, for tests of settings an operator may choose. They
    /// are kept across [`Influx::restart`].
    pub fn start_with_http(http_extra: &str) -> Self {
        let exe = process::require_executable("influxd");
        let dir = tempfile::Builder::new()
            .prefix("test-influxd-")
            .tempdir()
            .expect("create a temp dir for influxd");
        let mut influx = Influx {
            port: 0,
            rpc_port: 0,
            http_extra: http_extra.to_owned(),
            exe,
            child: None,
            config_path: dir.path().join("influxdb.conf"),
            log_path: dir.path().join("influxd.log"),
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            influx.port = crate::free_port();
            influx.rpc_port = crate::free_port();
            if influx.rpc_port == influx.port {
                continue;
            }
            influx.write_config();
            match influx.spawn_and_wait() {
                Ok(()) => return influx,
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "influxd did not start on port {} ({e}); retrying",
                        influx.port
                    )
                }
                Err(e) => panic!(
                    "influxd did not start on port {}: {e}\nlog:\n{}",
                    influx.port,
                    process::tail(&influx.log(), 8000)
                ),
            }
        }
        panic!("influxd: could not pick two distinct free ports")
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops influxd (SIGTERM; SIGKILL after 10 s). Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::terminate(&mut child, STOP_GRACE);
        }
    }

    /// Stops influxd if it is running and starts it again with the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!(
                "influxd did not restart on port {}: {e}\nlog:\n{}",
                self.port,
                process::tail(&self.log(), 8000)
            );
        }
    }

    /// `CREATE DATABASE "<db>"`; panics if InfluxDB reports an error.
    pub fn create_database(&self, db: &str) {
        let q = format!("CREATE DATABASE {}", quote_identifier(db));
        let (status, body) = self.post_query(None, &q);
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if !(200..300).contains(&status) || statement_error(&json).is_some() {
            panic!("{q} failed: HTTP {status}: {body}");
        }
    }

    /// Writes line protocol `lines` (nanosecond timestamps) into `db`.
    /// Retries 5xx answers a few times, then panics with the status and body of any non-2xx.
    pub fn write(&self, db: &str, lines: &str) {
        let url = format!("{}/write", self.url());
        for attempt in 1..=WRITE_ATTEMPTS {
            let body = lines.to_owned();
            let url = url.clone();
            let result = http::send(move |client| {
                client
                    .post(url)
                    .query(&[("db", db), ("precision", "ns")])
                    .body(body)
            });
            match result {
                Ok((status, _)) if (200..300).contains(&status) => return,
                Ok((status, text)) if status >= 500 && attempt < WRITE_ATTEMPTS => {
                    eprintln!("influx write answered {status} ({}); retrying", text.trim());
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok((status, text)) => panic!("write to {db:?} failed: HTTP {status}: {text}"),
                Err(e) => panic!("write to {db:?} failed: {e}"),
            }
        }
    }

    /// Runs InfluxQL `q` against `db` (POST /query, which accepts every kind of statement) and
    /// returns the parsed JSON answer. Panics on a non-2xx answer; an error inside a statement's
    /// result (`results[i].error`) is returned for the caller to inspect.
    pub fn query(&self, db: &str, q: &str) -> Value {
        let (status, body) = self.post_query(Some(db), q);
        if !(200..300).contains(&status) {
            panic!("query {q:?} on {db:?} failed: HTTP {status}: {body}");
        }
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {q:?} answered non-JSON ({e}): {body}"))
    }

    /// Every reading in `db` as (panel, time in epoch ms, power_kw, energy_kwh), sorted. Read
    /// in pages until one comes back empty, so a large set is not cut by a row limit: influxd
    /// started with a `max-row-limit` below the page size answers fewer rows than asked for
    /// (marked `"partial"`, or not at all when the limit falls on the last row), and a short
    /// page is then no sign of the end.
    pub fn readings(&self, db: &str) -> Vec<(String, i64, f64, f64)> {
        const PAGE: usize = 10_000;
        let mut rows: Vec<(String, i64, f64, f64)> = Vec::new();
        loop {
            let q = format!(
                "SELECT panel, power_kw, energy_kwh FROM energy_data ORDER BY time LIMIT {PAGE} OFFSET {}",
                rows.len()
            );
            let json = self.query(db, &q);
            let Some(values) = json["results"][0]["series"][0]["values"]
                .as_array()
                .filter(|values| !values.is_empty())
            else {
                break;
            };
            for row in values {
                let time: DateTime<Utc> = row[0]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("a point without an RFC 3339 time: {row}"));
                rows.push((
                    row[1].as_str().unwrap_or_default().to_owned(),
                    time.timestamp_millis(),
                    row[2].as_f64().unwrap_or(f64::NAN),
                    row[3].as_f64().unwrap_or(f64::NAN),
                ));
            }
        }
        rows.sort_by(|a, b| a.partial_cmp(b).expect("no NaN in stored points"));
        rows
    }

    /// [`Influx::readings`] by panel: panel -> (time in epoch ms, power_kw, energy_kwh), each
    /// panel's in time order.
    pub fn readings_by_panel(&self, db: &str) -> BTreeMap<String, Vec<(i64, f64, f64)>> {
        let mut panels: BTreeMap<String, Vec<(i64, f64, f64)>> = BTreeMap::new();
        for (panel, time_ms, power_kw, energy_kwh) in self.readings(db) {
            panels
                .entry(panel)
                .or_default()
                .push((time_ms, power_kw, energy_kwh));
        }
        panels
    }

    /// The panels that have series in `energy_data` (`SHOW TAG VALUES`), sorted; none when the
    /// database does not exist yet.
    pub fn panels(&self, db: &str) -> Vec<String> {
        let json = self.query(db, "SHOW TAG VALUES FROM energy_data WITH KEY = \"panel\"");
        let mut panels: Vec<String> = json["results"][0]["series"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row[1].as_str().map(str::to_owned))
            .collect();
        panels.sort();
        panels
    }

    /// One measurement of the usage rollup as stored (`energy_usage_15m`, `energy_usage_1d` or
    /// `energy_usage_1mo`): panel -> start of the period -> (`usage_nkwh`, `readings`). Empty
    /// when there is none, including when the database does not exist. Panics on a point
    /// without both fields, and on an answer cut short by influxd's `max-row-limit`.
    pub fn usage_rollup(
        &self,
        db: &str,
        measurement: &str,
    ) -> BTreeMap<String, BTreeMap<DateTime<Utc>, (i64, u64)>> {
        let q = format!(
            "SELECT usage_nkwh, readings FROM {} GROUP BY panel",
            quote_identifier(measurement)
        );
        let json = self.query(db, &q);
        let mut out: BTreeMap<String, BTreeMap<DateTime<Utc>, (i64, u64)>> = BTreeMap::new();
        for series in json["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                series["partial"] != true,
                "{q:?} was cut short by influxd's max-row-limit"
            );
            let panel = series["tags"]["panel"]
                .as_str()
                .unwrap_or_else(|| panic!("a series of {measurement} without a panel: {series}"))
                .to_owned();
            let periods = out.entry(panel).or_default();
            for row in series["values"].as_array().into_iter().flatten() {
                let (Some(start), Some(usage_nkwh), Some(readings)) = (
                    row[0].as_str().and_then(|t| t.parse().ok()),
                    row[1].as_i64(),
                    row[2].as_u64(),
                ) else {
                    panic!("a {measurement} point without time, usage_nkwh and readings: {row}");
                };
                periods.insert(start, (usage_nkwh, readings));
            }
        }
        out
    }

    /// Like [`Influx::usage_rollup`], with the estimated part too: panel -> start of the period
    /// -> (`usage_nkwh`, `estimated_nkwh`, `readings`). Panics on a point without all three
    /// fields (a point of a rollup format before estimates existed), and on an answer cut short
    /// by influxd's `max-row-limit`.
    pub fn usage_rollup_figures(&self, db: &str, measurement: &str) -> RollupFigures {
        let q = format!(
            "SELECT usage_nkwh, estimated_nkwh, readings FROM {} GROUP BY panel",
            quote_identifier(measurement)
        );
        let json = self.query(db, &q);
        let mut out = RollupFigures::new();
        for series in json["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                series["partial"] != true,
                "{q:?} was cut short by influxd's max-row-limit"
            );
            let panel = series["tags"]["panel"]
                .as_str()
                .unwrap_or_else(|| panic!("a series of {measurement} without a panel: {series}"))
                .to_owned();
            let periods = out.entry(panel).or_default();
            for row in series["values"].as_array().into_iter().flatten() {
                let (Some(start), Some(usage_nkwh), Some(estimated_nkwh), Some(readings)) = (
                    row[0].as_str().and_then(|t| t.parse().ok()),
                    row[1].as_i64(),
                    row[2].as_i64(),
                    row[3].as_u64(),
                ) else {
                    panic!(
                        "a {measurement} point without time, usage_nkwh, estimated_nkwh and \
                         readings: {row}"
                    );
                };
                periods.insert(start, (usage_nkwh, estimated_nkwh, readings));
            }
        }
        out
    }

    /// The number of `energy_kwh` values in `energy_data`, summed over all series; 0 when there
    /// are none, including when the database does not exist yet (so it can be polled before the
    /// program under test has created it).
    /// What the usage rollup's state records as complete (epoch nanoseconds), if it has one.
    pub fn rollup_complete_until(&self, db: &str) -> Option<i64> {
        self.query(db, "SELECT last(complete_until) FROM energy_rollup_state")["results"][0]
            ["series"][0]["values"][0][1]
            .as_i64()
    }

    pub fn count_points(&self, db: &str) -> u64 {
        let json = self.query(db, "SELECT count(energy_kwh) FROM energy_data");
        if let Some(error) = statement_error(&json) {
            if error.contains("database not found") {
                return 0;
            }
            panic!("counting points in {db:?} failed: {error}");
        }
        // No points: a result without "series". Otherwise one row per series, [time, count].
        json["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|result| result["series"].as_array())
            .flatten()
            .filter_map(|series| series["values"].as_array())
            .flatten()
            .filter_map(|row| row.get(1).and_then(Value::as_u64))
            .sum()
    }

    /// influxd's own output so far (it logs to stderr).
    pub fn log(&self) -> String {
        process::read_lossy(&self.log_path)
    }

    /// The directory holding config, data and log (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn post_query(&self, db: Option<&str>, q: &str) -> (u16, String) {
        let url = format!("{}/query", self.url());
        let mut form = vec![("q", q.to_owned())];
        if let Some(db) = db {
            form.push(("db", db.to_owned()));
        }
        http::send(move |client| client.post(url).form(&form))
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"))
    }

    /// The config from shared/SERVICES.md, with our ports and directories.
    fn write_config(&self) {
        let dir = self.dir.path().display();
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false{http_extra}
[logging]
  level = "warn"
"#,
            rpc_port = self.rpc_port,
            port = self.port,
            // Nothing at all when there is nothing to add: the same file as always.
            http_extra = match self.http_extra.trim_end() {
                "" => String::new(),
                extra => format!("\n{extra}"),
            },
        );
        std::fs::write(&self.config_path, config).expect("write influxdb.conf");
    }

    /// Spawns influxd with the current config and waits for `/ping` to answer 204.
    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let mut child = process::spawn_service(
            &self.exe,
            &["-config".as_ref(), self.config_path.as_os_str()],
            self.dir.path(),
            &self.log_path,
        )?;
        let ping = format!("{}/ping", self.url());
        process::wait_ready(
            &mut child,
            "influxd",
            START_TIMEOUT,
            Duration::from_millis(50),
            || {
                let url = ping.clone();
                matches!(http::send(move |client| client.get(url)), Ok((204, _)))
            },
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            // Never started (start-up panicked, quoting the log) or already stopped.
            return;
        };
        process::kill(&mut child);
        if std::thread::panicking() {
            eprintln!(
                "--- influxd log (port {}) ---\n{}",
                self.port,
                process::tail(&self.log(), 8000)
            );
        }
    }
}

/// The first `error` among the statement results of a `/query` answer.
fn statement_error(json: &Value) -> Option<&str> {
    json["results"]
        .as_array()?
        .iter()
        .find_map(|result| result["error"].as_str())
}

/// An InfluxQL identifier in double quotes, with `\` and `"` escaped.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_identifier("energy"), "\"energy\"");
        assert_eq!(quote_identifier(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn statement_errors_are_found() {
        let json =
            serde_json::json!({"results": [{"statement_id": 0, "error": "database not found: x"}]});
        assert_eq!(statement_error(&json), Some("database not found: x"));
        assert_eq!(
            statement_error(&serde_json::json!({"results": [{"statement_id": 0}]})),
            None
        );
    }
}
