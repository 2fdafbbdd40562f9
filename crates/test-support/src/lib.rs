//! Blocking helpers for this workspace's integration tests.
//!
//! Integration tests exercise the real pipeline (sensor-publisher -> Mosquitto -> mqtt-subscriber
//! -> InfluxDB -> api-server), so they need real services and the real program binaries. This
//! crate starts and stops those, each on free loopback ports with its own temporary directory, so
//! tests can run in parallel and never touch a developer's own broker or database:
//!
//! - [`Mosquitto`]: a private broker, plus a tiny raw MQTT 3.1.1 client ([`mqtt`]) to publish
//!   arbitrary bytes and to subscribe.
//! - [`Influx`]: a private InfluxDB 1.x (`influxd`) with write/query helpers, and the stored
//!   readings and usage rollup read back.
//! - [`Program`], [`run_to_exit`] and [`binary`]: the workspace's own binaries, started with a
//!   clean environment and their output captured.
//! - [`http_get`]: a minimal GET for api-server tests; [`http_request`] for any method, with
//!   request headers and body, returning the response headers too.
//! - [`BrokerSecurity`]: a throw-away CA, server certificate and password file for a broker on
//!   TLS with authentication ([`Mosquitto::start_secure`]).
//! - [`ApiServer`]: the api-server program on a free port against a given InfluxDB, and
//!   [`EventStream`] to read its Server-Sent Events.
//! - [`wrk`]: the `wrk` load generator, run and its report read back.
//! - [`history`]: random meter histories (irregular steps, gaps, resets, glitches) for tests
//!   that compute the expected usage themselves.
//! - [`sibling_binary`] and [`Program::start_exe`]: the same programs for a caller that is itself
//!   a workspace binary (the benchmarks in `crates/bench`).
//!
//! Everything here is blocking on purpose: tests read top to bottom, and the HTTP helpers run
//! their requests on a helper thread so they also work when called from inside a Tokio runtime
//! (e.g. a `#[tokio::test]`), where `reqwest::blocking` would otherwise panic.
//!
//! Only processes started here are ever signalled, always by their own pid, and a process is only
//! signalled while it is still our un-reaped child (so its pid cannot have been reused).

mod api_server;
pub mod history;
mod http;
mod influx;
mod mosquitto;
pub mod mqtt;
mod process;
mod program;
pub mod reference;
mod settings;
mod sse;
mod subscriber;
mod tls;
pub mod wrk;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use api_server::ApiServer;
pub use http::{http_get, http_request, try_http_get, try_http_request, Headers};
pub use influx::Influx;
pub use mosquitto::Mosquitto;
pub use program::{binary, run_to_exit, sibling_binary, Program};
pub use settings::{assert_bad_settings_stop, assert_help_documents};
pub use sse::{EventStream, Next, SseEvent};
pub use subscriber::start_subscriber;
pub use tls::BrokerSecurity;

/// A TCP port that is free on 127.0.0.1 right now: bind port 0, read what the kernel chose, drop.
///
/// Another process could take the port before our service binds it; the service starters retry
/// with a fresh port when a service dies during start-up for that reason.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// Finds the executable `name` in `PATH`, then in the system directories (`/usr/sbin`, …), e.g.
/// `mosquitto_sub`; `None` when it is not installed.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    process::find_executable(name)
}

/// Now, as milliseconds since the Unix epoch (the `timestamp` of a test's MQTT payloads).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls `f` every 50 ms until it returns true; panics naming `what` after `timeout`.
///
/// `f` is always called at least once, and once more at the deadline, so a condition that became
/// true during the last sleep is not reported as a timeout.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
    }
}
