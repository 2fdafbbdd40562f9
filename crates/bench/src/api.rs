//! The real `api-server` under measurement: started fresh (so its answer cache is empty), timed
//! single requests, and `wrk` runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_support::wrk::{Wrk, WrkOptions, WrkReport};
use test_support::{free_port, Program};

use crate::history::{tail, Binaries, Stack};
use crate::DATABASE;

/// The endpoints measured, by a short name and their path. Monthly without `year` answers the
/// current year in `TIMEZONE` (the default, Asia/Jakarta).
pub const ENDPOINTS: [(&str, &str); 5] = [
    ("realtime", "/api/panel/realtime"),
    ("today-usage", "/api/panel/today-usage"),
    ("summary", "/api/panel/summary"),
    ("monthly", "/api/energy/monthly"),
    ("health", "/health"),
];

/// How long the api-server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one timed request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

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
        let port = free_port();
        let mut envs = vec![
            ("INFLUX_URL", stack.influx.url()),
            ("INFLUX_DATABASE", DATABASE.to_owned()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ];
        if let Some(ms) = query_cache_ms {
            envs.push(("QUERY_CACHE_MS", ms.to_string()));
        }
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
/// request itself is timed.
pub fn timed_get(port: u16, path: &str) -> Result<Timed, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send GET {path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read the answer to GET {path}: {e}"))?;
    let took = started.elapsed();
    let status = status_code(&answer)
        .ok_or_else(|| format!("no HTTP status line in the answer to GET {path}"))?;
    Ok(Timed { status, took })
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

/// One endpoint measured on a freshly started api-server: the cold request, then wrk.
#[derive(Clone, Debug)]
pub struct EndpointRun {
    pub name: &'static str,
    pub path: &'static str,
    pub cold: Result<Timed, String>,
    pub wrk: Result<WrkReport, String>,
    /// api-server `VmRSS` in KiB right after it listened, idle after the cold request (before
    /// wrk), and idle after wrk; "idle" = [`IDLE_AFTER`] after the last answer.
    pub rss_after_start: Option<u64>,
    pub rss_before_load: Option<u64>,
    pub rss_after_load: Option<u64>,
}

impl EndpointRun {
    /// Starts a fresh api-server (default `QUERY_CACHE_MS`), times the first request to `path`
    /// (nothing cached), runs wrk against it, and stops the server.
    pub fn measure(
        binaries: &Binaries,
        stack: &Stack,
        wrk: &Wrk,
        options: &WrkOptions,
        (name, path): (&'static str, &'static str),
    ) -> EndpointRun {
        let api = ApiServer::start(binaries, stack, None);
        let rss_after_start = api.rss_kib();
        let cold = api.get(path);
        std::thread::sleep(IDLE_AFTER);
        let rss_before_load = api.rss_kib();
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
            wrk,
            rss_after_start,
            rss_before_load,
            rss_after_load,
        }
    }

    /// The larger of the two samples taken while the server is idle: right after it listened,
    /// and after its first (cold) request (KiB).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
