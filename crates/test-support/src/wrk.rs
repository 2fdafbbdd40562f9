//! `wrk`, the HTTP load generator, run as a child process and its report read back.
//!
//! `wrk -t<threads> -c<connections> -d<secs>s --timeout <secs>s --latency <url>` prints a short
//! report; [`parse_report`] reads requests, requests/s, the latency percentiles, the
//! "Non-2xx or 3xx responses" count and the "Socket errors" line (both absent when zero).
//!
//! wrk leaves requests that got no answer within its timeout out of its latency figures and
//! counts them as socket `timeout` errors instead, so a run with timeouts has percentiles that
//! look better than the truth: check [`SocketErrors::timeout`] before quoting them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How one wrk run is shaped.
#[derive(Clone, Debug)]
pub struct WrkOptions {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    /// A request without an answer after this long is a socket `timeout` error.
    pub timeout: Duration,
}

impl Default for WrkOptions {
    /// `-t2 -c16 -d15s --timeout 2s` (2 s is wrk's own default timeout).
    fn default() -> Self {
        WrkOptions {
            threads: 2,
            connections: 16,
            duration: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
        }
    }
}

/// What one wrk run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// "Non-2xx or 3xx responses" (0 when wrk prints no such line).
    pub non_2xx_3xx: u64,
    pub socket_errors: SocketErrors,
    /// wrk's whole report, for a failure message.
    pub output: String,
}

/// wrk's "Socket errors" line (absent when all are zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    /// Requests without an answer within the timeout; their latency is not in the percentiles.
    pub timeout: u64,
}

impl SocketErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// The `wrk` executable.
#[derive(Clone, Debug)]
pub struct Wrk {
    exe: PathBuf,
}

impl Wrk {
    /// Finds `wrk` in `PATH` (or the usual system directories).
    pub fn find() -> Option<Wrk> {
        crate::process::find_executable("wrk").map(|exe| Wrk { exe })
    }

    /// Like [`Wrk::find`], but a missing wrk is a panic saying how to install it.
    pub fn require() -> Wrk {
        Self::find().unwrap_or_else(|| {
            panic!("`wrk` is not installed: install it with `apt-get install -y wrk`")
        })
    }

    /// Runs wrk against `url` and reads its report. An `Err` says why wrk failed (it could not
    /// connect at all, it hung for a minute past its duration, or its report was unreadable).
    pub fn run(&self, url: &str, options: &WrkOptions) -> Result<WrkReport, String> {
        let mut child = Command::new(&self.exe)
            .arg(format!("-t{}", options.threads))
            .arg(format!("-c{}", options.connections))
            .arg(format!("-d{}s", options.duration.as_secs().max(1)))
            .arg(format!("--timeout={}s", options.timeout.as_secs().max(1)))
            .arg("--latency")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        // wrk stops by itself after its duration; only a hung wrk is still running past this.
        let deadline = Instant::now() + options.duration + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "wrk against {url} was still running 60 s after its {:?}",
                        options.duration
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("waiting for wrk: {e}")),
            }
        }
        // The report is a few hundred bytes, far less than a pipe holds, so reading it after
        // the exit cannot have blocked wrk.
        let output = child
            .wait_with_output()
            .map_err(|e| format!("reading wrk's report: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "wrk against {url} failed ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        parse_report(&stdout).map_err(|e| format!("unreadable wrk report ({e}):\n{stdout}"))
    }
}

/// Reads a report printed by `wrk --latency`.
pub fn parse_report(text: &str) -> Result<WrkReport, String> {
    let mut requests = None;
    let mut requests_per_sec = None;
    let mut max = None;
    let mut percentiles: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut non_2xx_3xx = 0;
    let mut socket_errors = SocketErrors::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            // "Latency   2.97ms  2.64ms  12.78ms  82.75%" (the thread stats: avg, stdev, max).
            ["Latency", _avg, _stdev, maximum, _] => max = Some(parse_time(maximum)?),
            // "50%    1.54ms" in the latency distribution.
            [share, time] if share.ends_with('%') => {
                percentiles.insert(*share, parse_time(time)?);
            }
            [count, "requests", "in", ..] => {
                requests = Some(number(count, line)?);
            }
            ["Requests/sec:", rate] => {
                requests_per_sec = Some(rate.parse().map_err(|_| format!("bad rate in {line:?}"))?);
            }
            _ => {
                if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
                    non_2xx_3xx = number(count.trim(), line)?;
                } else if let Some(errors) = line.strip_prefix("Socket errors:") {
                    socket_errors = parse_socket_errors(errors, line)?;
                }
            }
        }
    }
    let percentile = |share: &str| {
        percentiles
            .get(share)
            .copied()
            .ok_or_else(|| format!("no {share} latency (run wrk with --latency)"))
    };
    Ok(WrkReport {
        requests: requests.ok_or("no \"N requests in …\" line")?,
        requests_per_sec: requests_per_sec.ok_or("no \"Requests/sec:\" line")?,
        p50: percentile("50%")?,
        p90: percentile("90%")?,
        p99: percentile("99%")?,
        max: max.ok_or("no \"Latency\" line")?,
        non_2xx_3xx,
        socket_errors,
        output: text.to_owned(),
    })
}

/// "connect 0, read 3, write 0, timeout 2"
fn parse_socket_errors(errors: &str, line: &str) -> Result<SocketErrors, String> {
    let mut parsed = SocketErrors::default();
    for part in errors.split(',') {
        let (kind, count) = part
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("bad socket errors in {line:?}"))?;
        let count = number(count.trim(), line)?;
        match kind {
            "connect" => parsed.connect = count,
            "read" => parsed.read = count,
            "write" => parsed.write = count,
            "timeout" => parsed.timeout = count,
            _ => return Err(format!("unknown socket error {kind:?} in {line:?}")),
        }
    }
    Ok(parsed)
}

fn number(text: &str, line: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("bad count {text:?} in {line:?}"))
}

/// A wrk time: a number with `us`, `ms`, `s`, `m` or `h`.
fn parse_time(text: &str) -> Result<Duration, String> {
    let unit_at = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("no unit in time {text:?}"))?;
    let (value, unit) = text.split_at(unit_at);
    let value: f64 = value
        .parse()
        .map_err(|_| format!("bad number in time {text:?}"))?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in time {text:?}")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("bad time {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_report_has_no_errors_and_its_percentiles() {
        let report = parse_report(
            "\
Running 1s test @ http://127.0.0.1:18767/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.97ms    2.64ms  12.78ms   82.75%
    Req/Sec   758.10    181.05     0.98k    60.00%
  Latency Distribution
     50%    1.54ms
     75%    4.81ms
     90%    7.41ms
     99%   10.07ms
  758 requests in 1.01s, 83.65KB read
Requests/sec:    752.66
Transfer/sec:     83.06KB
",
        )
        .unwrap();
        assert_eq!(report.requests, 758);
        assert_eq!(report.requests_per_sec, 752.66);
        assert_eq!(report.p50, Duration::from_micros(1540));
        assert_eq!(report.p90, Duration::from_micros(7410));
        assert_eq!(report.p99, Duration::from_micros(10070));
        assert_eq!(report.max, Duration::from_micros(12780));
        assert_eq!(report.non_2xx_3xx, 0);
        assert_eq!(report.socket_errors.total(), 0);
    }

    #[test]
    fn non_success_answers_and_socket_errors_are_counted() {
        let report = parse_report(
            "\
Running 4s test @ http://127.0.0.1:18767/slow
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us    0.00us     1.20s    -nan%
    Req/Sec     0.00      0.00     0.00    100.00%
  Latency Distribution
     50%  812.00us
     75%    1.20s
     90%    1.20s
     99%    1.20s
  2248 requests in 4.01s, 226.00B read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 2248
Requests/sec:      0.50
Transfer/sec:      56.37B
",
        )
        .unwrap();
        assert_eq!(report.p50, Duration::from_micros(812));
        assert_eq!(report.p99, Duration::from_millis(1200));
        assert_eq!(report.non_2xx_3xx, 2248);
        assert_eq!(
            report.socket_errors,
            SocketErrors {
                read: 3,
                timeout: 2,
                ..SocketErrors::default()
            }
        );
    }

    #[test]
    fn output_without_a_report_is_an_error() {
        assert!(parse_report("unable to connect to 127.0.0.1:1 Connection refused").is_err());
        assert!(parse_time("12").is_err());
        assert!(parse_time("3.5parsecs").is_err());
    }
}
