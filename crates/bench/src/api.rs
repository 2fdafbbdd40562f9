//! The real `api-server` under measurement: started fresh (so its answer cache is empty), timed
//! single requests, and `wrk` runs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use test_support::wrk::{Wrk, WrkOptions, WrkReport};
use test_support::{free_port, Program};

use crate::history::{tail, Binaries, Stack};
use crate::DATABASE;

/// The names of the endpoints measured, in order (see [`endpoints`]).
pub const ENDPOINT_NAMES: [&str; 8] = [
    "realtime",
    "today-usage",
    "summary",
    "monthly",
    "daily",
    "bill",
    "intervals",
    "health",
];

/// What ends the name of an endpoint measured on an api-server with a time-of-use tariff
/// (`TARIFF_FILE`) rather than the flat one (`TARIFF_PER_KWH`, the default).
pub const TIME_OF_USE_SUFFIX: &str = " (time-of-use)";

/// The endpoints measured again with a time-of-use tariff, in order (see
/// [`time_of_use_endpoints`]): each name of [`ENDPOINT_NAMES`] and its name there.
pub const TIME_OF_USE_NAMES: [(&str, &str); 4] = [
    ("today-usage", "today-usage (time-of-use)"),
    ("bill", "bill (time-of-use)"),
    ("monthly", "monthly (time-of-use)"),
    ("daily", "daily (time-of-use)"),
];

/// The time zone the api-server answers in (its default `TIMEZONE`).
const TIMEZONE: chrono_tz::Tz = chrono_tz::Asia::Jakarta;

/// The endpoints measured at `now` over `panels` panels, by a short name and their path, in the
/// order of [`ENDPOINT_NAMES`]. Monthly without `year` answers the current year; daily asks for
/// the last whole month, and so does bill (every panel's bill), and intervals for yesterday's
/// quarter hours of the first panel (a whole day, the most one answer holds), all in
/// Asia/Jakarta.
pub fn endpoints(now: DateTime<Utc>, panels: usize) -> Vec<(&'static str, String)> {
    let today = now.with_timezone(&TIMEZONE).date_naive();
    let yesterday = today.pred_opt().unwrap_or(today);
    let last_month = today
        .with_day(1)
        .and_then(|d| d.pred_opt())
        .unwrap_or(today);
    let panel = crate::panel_ids(panels.max(1)).remove(0);
    ENDPOINT_NAMES
        .iter()
        .map(|&name| {
            let path = match name {
                "realtime" => "/api/panel/realtime".to_owned(),
                "today-usage" => "/api/panel/today-usage".to_owned(),
                "summary" => "/api/panel/summary".to_owned(),
                "monthly" => "/api/energy/monthly".to_owned(),
                "daily" => format!("/api/energy/daily?month={}", last_month.format("%Y-%m")),
                "bill" => format!("/api/bill?month={}", last_month.format("%Y-%m")),
                "intervals" => format!("/api/panel/{panel}/intervals?date={yesterday}"),
                _ => "/health".to_owned(),
            };
            (name, path)
        })
        .collect()
}

/// The endpoints of [`TIME_OF_USE_NAMES`] at `now` over `panels` panels, by their time-of-use
/// name and the same path as in [`endpoints`], to be asked of an api-server started with a
/// time-of-use `TARIFF_FILE`.
pub fn time_of_use_endpoints(now: DateTime<Utc>, panels: usize) -> Vec<(&'static str, String)> {
    let flat = endpoints(now, panels);
    TIME_OF_USE_NAMES
        .iter()
        .filter_map(|&(name, time_of_use)| {
            flat.iter()
                .find(|(flat_name, _)| *flat_name == name)
                .map(|(_, path)| (time_of_use, path.clone()))
        })
        .collect()
}

/// The example time-of-use tariff in the workspace (`docs/tariffs/pln-example.toml`): PLN-style
/// LWBP / WBP windows, two dated versions, a minimum charge and a tax.
pub fn example_tariff_file() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tariffs/pln-example.toml");
    path.canonicalize().unwrap_or(path)
}

/// How long the api-server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one timed request may take before it counts as failed. Far above any target: an
/// answer from raw readings (no rollup yet) may legitimately take seconds, and such an answer
/// should be timed, not cut off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How a timed request that got no answer within [`REQUEST_TIMEOUT`] is reported: its error
/// starts with this, so a table can say "timed out" rather than "failed" (see [`timed_out`]).
const TIMED_OUT: &str = "timed out";

/// A running api-server; killed when dropped.
pub struct ApiServer {
    program: Program,
    port: u16,
}

/// One timed request.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    pub status: u16,
    /// From connecting to the last byte of the answer.
    pub took: Duration,
}

impl ApiServer {
    /// Starts api-server on a free loopback port against `stack`'s InfluxDB and waits until it
    /// listens (by its log line, so no request has been made yet). `query_cache_ms`: `None`
    /// keeps the server's default (`QUERY_CACHE_MS` 1000), `Some(0)` turns the cache off.
    pub fn start(binaries: &Binaries, stack: &Stack, query_cache_ms: Option<u64>) -> ApiServer {
        ApiServer::start_with_env(binaries, stack, query_cache_ms, &[])
    }

    /// [`ApiServer::start`] with more settings in its environment (`TARIFF_FILE`, say); one
    /// named here replaces what `start` would set.
    pub fn start_with_env(
        binaries: &Binaries,
        stack: &Stack,
        query_cache_ms: Option<u64>,
        env: &[(&str, String)],
    ) -> ApiServer {
        let port = free_port();
        let mut envs = vec![
            ("INFLUX_URL", stack.influx.url()),
            ("INFLUX_DATABASE", DATABASE.to_owned()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ];
        if let Some(ms) = query_cache_ms {
            envs.push(("QUERY_CACHE_MS", ms.to_string()));
        }
        envs.retain(|(name, _)| env.iter().all(|(other, _)| other != name));
        envs.extend(env.iter().cloned());
        let program = Program::start_exe(&binaries.api_server, &[], &envs);
        program.wait_for_output("listening", LISTEN_TIMEOUT);
        ApiServer { program, port }
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One GET of `path` on a new connection, timed from connecting to the end of the answer.
    pub fn get(&self, path: &str) -> Result<Timed, String> {
        timed_get(self.port, path)
    }

    /// Resident memory in KiB (`VmRSS`), `None` once the server has exited.
    pub fn rss_kib(&self) -> Option<u64> {
        self.program.rss_kib()
    }

    /// The server's output, for a failure message.
    pub fn output_tail(&self) -> String {
        tail(&self.program.output(), 4000).to_owned()
    }

    /// SIGTERM and wait for the exit (killed after 10 s).
    pub fn stop(mut self) {
        self.program.terminate();
    }
}

/// `GET path HTTP/1.1` with `Connection: close` to 127.0.0.1:`port`, read to the end: the status
/// and how long it all took. A plain socket rather than an HTTP client, so nothing but the
/// request itself is timed. No answer within [`REQUEST_TIMEOUT`] is an error starting with
/// "timed out" (see [`timed_out`]); a server that closes the connection without answering (it
/// crashed, say) is an error saying so.
pub fn timed_get(port: u16, path: &str) -> Result<Timed, String> {
    timed_get_within(port, path, REQUEST_TIMEOUT)
}

/// [`timed_get`] with another timeout (for the tests).
fn timed_get_within(port: u16, path: &str, timeout: Duration) -> Result<Timed, String> {
    let started = Instant::now();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let timed_out_error = |during: &str| {
        format!(
            "{TIMED_OUT}: no answer to GET {path} within {:.1} s ({during})",
            timeout.as_secs_f64()
        )
    };
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(|e| {
        if is_timeout(&e) {
            timed_out_error("connecting")
        } else {
            format!("connect to {address}: {e}")
        }
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    // One write, so the request leaves in one segment (`write!` on the socket writes each piece
    // of the format on its own: a server that reads the first piece and closes would reset the
    // rest).
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| {
        if is_timeout(&e) {
            timed_out_error("sending")
        } else {
            format!("send GET {path}: {e}")
        }
    })?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| {
        if is_timeout(&e) {
            timed_out_error("waiting for the answer")
        } else {
            format!("read the answer to GET {path}: {e}")
        }
    })?;
    let took = started.elapsed();
    if answer.is_empty() {
        return Err(format!(
            "the server closed the connection without answering GET {path} (after {:.1} s)",
            took.as_secs_f64()
        ));
    }
    let status = status_code(&answer)
        .ok_or_else(|| format!("no HTTP status line in the answer to GET {path}"))?;
    Ok(Timed { status, took })
}

/// A socket timeout: `WouldBlock` is what a read timeout gives on Unix, `TimedOut` elsewhere
/// and for a connect timeout.
fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Whether `error` (from [`timed_get`]) is a request that got no answer in time.
pub fn timed_out(error: &str) -> bool {
    error.starts_with(TIMED_OUT)
}

/// The status code of an HTTP/1.x answer: `HTTP/1.1 200 OK` → 200.
fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words
        .next()
        .filter(|version| version.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// How long the server has been idle when its memory is sampled after answering: the target is
/// its RSS at rest, not in the instant after an answer. By then its answer cache has let go of
/// the answers (kept for at most two `QUERY_CACHE_MS`, 2 s by default, and swept every
/// `QUERY_CACHE_MS`), and its allocator has handed the freed pages back (half a second after
/// they fall free; see `malloc_conf` in api-server's main.rs).
pub const IDLE_AFTER: Duration = Duration::from_secs(5);

/// One endpoint measured on a freshly started api-server: the cold request, the warm ones, then
/// wrk.
#[derive(Clone, Debug)]
pub struct EndpointRun {
    pub name: &'static str,
    pub path: String,
    pub cold: Result<Timed, String>,
    /// The same request again, one after another after the cold one, on the same server, each
    /// once the answer caches have let go of the last answer ([`ANSWER_CACHE_EXPIRED`]): an
    /// answer made again from what the server has read before (rollup sums or its ledger) and
    /// InfluxDB's newest readings, not a cached copy. The series stops at the first request
    /// that timed out (each costs [`REQUEST_TIMEOUT`]), so it may be shorter than asked for.
    pub warm: Vec<Result<Timed, String>>,
    pub wrk: Result<WrkReport, String>,
    /// api-server `VmRSS` in KiB right after it listened, idle after the cold and warm requests
    /// (before wrk), and idle after wrk; "idle" = [`IDLE_AFTER`] after the last answer.
    pub rss_after_start: Option<u64>,
    pub rss_before_load: Option<u64>,
    pub rss_after_load: Option<u64>,
}

/// Longer than two of the api-server's default `QUERY_CACHE_MS` (1 s): past that its answer
/// caches serve nothing they hold, not even while refreshing it (docs/operations.md, "The
/// answer caches").
const ANSWER_CACHE_EXPIRED: Duration = Duration::from_millis(2_100);

impl EndpointRun {
    /// Starts a fresh api-server (default `QUERY_CACHE_MS`, and `env` in its environment: a
    /// `TARIFF_FILE`, say), times the first request to `path` (nothing cached), then
    /// `warm_requests` more of the same, runs wrk against it, and stops the server. A request
    /// that fails or times out is recorded, never a panic, so a broken endpoint shows up in the
    /// tables instead of ending the run.
    pub fn measure(
        binaries: &Binaries,
        stack: &Stack,
        env: &[(&str, String)],
        wrk: &Wrk,
        options: &WrkOptions,
        warm_requests: usize,
        (name, path): (&'static str, String),
    ) -> EndpointRun {
        let api = ApiServer::start_with_env(binaries, stack, None, env);
        let rss_after_start = api.rss_kib();
        let cold = api.get(&path);
        let mut warm = Vec::with_capacity(warm_requests);
        if !matches!(&cold, Err(error) if timed_out(error)) {
            for _ in 0..warm_requests {
                std::thread::sleep(ANSWER_CACHE_EXPIRED);
                let answer = api.get(&path);
                let stop = matches!(&answer, Err(error) if timed_out(error));
                warm.push(answer);
                if stop {
                    break;
                }
            }
        }
        if let Some(Err(error)) = std::iter::once(&cold).chain(&warm).find(|a| a.is_err()) {
            eprintln!(
                "GET {path} failed: {error}\napi-server output:\n{}",
                api.output_tail()
            );
        }
        std::thread::sleep(IDLE_AFTER);
        let rss_before_load = api.rss_kib();
        // wrk measures a server that its pollers keep busy, as a dashboard's do: one request
        // first, so that the load does not start on caches emptied by the idle pause above.
        // That first answer after a pause is what `warm` measures. Without it, the 16
        // connections' first requests wait for it together, and wrk (which corrects for
        // "coordinated omission") counts that one wait as hundreds of slow requests: at 1 000
        // panels a 0.2 s wait alone moves a 10 s run's p99 to about 0.1-0.2 s (BENCHMARKS.md).
        let _ = api.get(&path);
        let wrk = wrk.run(&format!("{}{path}", api.base_url()), options);
        std::thread::sleep(IDLE_AFTER);
        let rss_after_load = api.rss_kib();
        if let Err(error) = &wrk {
            eprintln!(
                "wrk on {path} failed: {error}\napi-server output:\n{}",
                api.output_tail()
            );
        }
        api.stop();
        EndpointRun {
            name,
            path,
            cold,
            warm,
            wrk,
            rss_after_start,
            rss_before_load,
            rss_after_load,
        }
    }

    /// How the endpoint is shown in a table or a check: its path, followed by
    /// [`TIME_OF_USE_SUFFIX`] when it was measured with the time-of-use tariff.
    pub fn label(&self) -> String {
        if self.name.ends_with(TIME_OF_USE_SUFFIX) {
            format!("{}{TIME_OF_USE_SUFFIX}", self.path)
        } else {
            self.path.clone()
        }
    }

    /// The warm requests summed up.
    pub fn warm_summary(&self) -> Warm {
        Warm::of(&self.warm)
    }

    /// The larger of the two samples taken while the server is idle: right after it listened,
    /// and after its cold and warm requests (KiB).
    pub fn idle_rss_kib(&self) -> Option<u64> {
        [self.rss_after_start, self.rss_before_load]
            .into_iter()
            .flatten()
            .max()
    }

    /// The largest of the three RSS samples (KiB).
    pub fn max_rss_kib(&self) -> Option<u64> {
        [
            self.rss_after_start,
            self.rss_before_load,
            self.rss_after_load,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// A series of warm requests summed up: median and max over the answers with status 200, and
/// the first that was not one (a status or an error), if any. Only answers that are 200 are
/// timed, so a fast error page cannot pass for a fast answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Warm {
    /// Requests made.
    pub requests: usize,
    /// Of which answered 200.
    pub ok: usize,
    pub median: Option<Duration>,
    pub max: Option<Duration>,
    /// The first request that did not answer 200: `status 503`, or the error (`timed out: …`).
    pub problem: Option<String>,
}

impl Warm {
    pub fn of(answers: &[Result<Timed, String>]) -> Warm {
        let took: Vec<Duration> = answers
            .iter()
            .filter_map(|answer| match answer {
                Ok(timed) if timed.status == 200 => Some(timed.took),
                _ => None,
            })
            .collect();
        let problem = answers.iter().find_map(|answer| match answer {
            Ok(timed) if timed.status == 200 => None,
            Ok(timed) => Some(format!("status {}", timed.status)),
            Err(error) => Some(error.clone()),
        });
        Warm {
            requests: answers.len(),
            ok: took.len(),
            median: crate::median(&took),
            max: took.iter().max().copied(),
            problem,
        }
    }

    /// Every request made answered 200 (true of none: a series cut short is the cold
    /// request's failure, which is reported with it).
    pub fn all_ok(&self) -> bool {
        self.ok == self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_asks_for_the_same_last_whole_month_as_daily() {
        // 00:30 on 1 March in Jakarta (UTC+7) is still February in UTC: the month is local.
        let now = "2026-02-28T17:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let all = endpoints(now, 3);
        let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ENDPOINT_NAMES);
        let path = |wanted: &str| {
            all.iter()
                .find(|(name, _)| *name == wanted)
                .map(|(_, path)| path.clone())
                .unwrap()
        };
        assert_eq!(path("bill"), "/api/bill?month=2026-02");
        assert_eq!(path("daily"), "/api/energy/daily?month=2026-02");
        // In January the last whole month is December of the year before.
        let january = "2026-01-10T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let january = endpoints(january, 3);
        assert!(january.contains(&("bill", "/api/bill?month=2025-12".to_owned())));
    }

    #[test]
    fn the_time_of_use_endpoints_are_the_flat_ones_renamed() {
        let now = "2026-12-05T21:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let flat = endpoints(now, 100);
        let time_of_use = time_of_use_endpoints(now, 100);
        assert_eq!(
            time_of_use
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>(),
            [
                "today-usage (time-of-use)",
                "bill (time-of-use)",
                "monthly (time-of-use)",
                "daily (time-of-use)"
            ]
        );
        for ((name, path), (flat_name, _)) in time_of_use.iter().zip(TIME_OF_USE_NAMES) {
            assert!(name.ends_with(TIME_OF_USE_SUFFIX), "{name}");
            assert_eq!(name.strip_suffix(TIME_OF_USE_SUFFIX), Some(flat_name));
            assert!(flat.contains(&(flat_name, path.clone())), "{name}: {path}");
        }
        assert!(time_of_use.contains(&("bill (time-of-use)", "/api/bill?month=2026-11".into())));
    }

    #[test]
    fn the_example_tariff_file_is_in_the_workspace() {
        assert!(example_tariff_file().is_file());
    }

    #[test]
    fn a_time_of_use_endpoint_is_labelled_as_such() {
        let run = |name: &'static str| EndpointRun {
            name,
            path: "/api/bill?month=2026-11".into(),
            cold: Err("not measured".into()),
            warm: vec![],
            wrk: Err("not measured".into()),
            rss_after_start: None,
            rss_before_load: None,
            rss_after_load: None,
        };
        assert_eq!(run("bill").label(), "/api/bill?month=2026-11");
        assert_eq!(
            run("bill (time-of-use)").label(),
            "/api/bill?month=2026-11 (time-of-use)"
        );
    }

    #[test]
    fn the_status_comes_from_the_status_line() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 OK\r\ncontent-type: x\r\n\r\n{}"),
            Some(200)
        );
        assert_eq!(
            status_code(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"garbage"), None);
        assert_eq!(status_code(b""), None);
    }

    fn answer(status: u16, millis: u64) -> Result<Timed, String> {
        Ok(Timed {
            status,
            took: Duration::from_millis(millis),
        })
    }

    #[test]
    fn warm_figures_come_from_the_answers_that_are_200() {
        let warm = Warm::of(&[
            answer(200, 30),
            answer(200, 10),
            answer(200, 20),
            answer(200, 90),
            answer(200, 40),
        ]);
        assert_eq!(warm.median, Some(Duration::from_millis(30)));
        assert_eq!(warm.max, Some(Duration::from_millis(90)));
        assert_eq!((warm.requests, warm.ok, warm.problem), (5, 5, None));
        assert!(Warm::of(&[answer(200, 1)]).all_ok());
    }

    #[test]
    fn a_warm_answer_that_is_not_200_is_the_problem_and_not_timed() {
        let warm = Warm::of(&[
            answer(200, 50),
            answer(503, 1),
            Err("timed out: no answer".into()),
        ]);
        assert_eq!(warm.median, Some(Duration::from_millis(50)));
        assert_eq!(warm.max, Some(Duration::from_millis(50)));
        assert_eq!((warm.requests, warm.ok), (3, 1));
        assert_eq!(warm.problem.as_deref(), Some("status 503"));
        assert!(!warm.all_ok());
        let none = Warm::of(&[]);
        assert_eq!((none.median, none.max, none.problem), (None, None, None));
    }

    #[test]
    fn a_request_without_an_answer_in_time_is_told_apart() {
        assert!(timed_out(
            "timed out: no answer to GET /x within 60 s (waiting)"
        ));
        assert!(!timed_out("connect to 127.0.0.1:1: Connection refused"));
    }

    /// A server that accepts and never answers: the request ends in an error that says it timed
    /// out, not in a hang or a panic.
    #[test]
    fn a_request_without_an_answer_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(stream);
        });
        let error = timed_get_within(port, "/slow", Duration::from_millis(200)).unwrap_err();
        server.join().unwrap();
        assert!(timed_out(&error), "{error}");
        assert!(error.contains("GET /slow within 0.2 s"), "{error}");
    }

    /// A server that closes the connection without answering (one that crashed, say) is an
    /// error, and not a timeout.
    #[test]
    fn a_connection_closed_without_an_answer_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Read the request first, so closing sends FIN rather than a reset.
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
        });
        let error = timed_get(port, "/x").unwrap_err();
        server.join().unwrap();
        assert!(error.contains("closed the connection"), "{error}");
        assert!(!timed_out(&error));
    }
}
