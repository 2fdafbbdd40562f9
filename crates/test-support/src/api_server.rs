//! The api-server program on a free port, reading a given InfluxDB, for tests that talk to it
//! over HTTP.

use std::time::Duration;

use serde_json::Value;

use crate::{free_port, http_get, try_http_get, wait_until, Program};

/// A running api-server (killed when dropped) and its base URL.
pub struct ApiServer {
    program: Program,
    base: String,
}

impl ApiServer {
    /// Starts api-server on a free loopback port, reading database `database` of the InfluxDB at
    /// `influx_url`, with `extra` settings on top (e.g. `("API_TOKEN", "…")`). Returns once it
    /// answers `/health` (with any status: InfluxDB may be down on purpose).
    pub fn start(influx_url: &str, database: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut envs = vec![
            ("INFLUX_URL", influx_url.to_owned()),
            ("INFLUX_DATABASE", database.to_owned()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
        ];
        envs.extend(
            extra
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        let program = Program::start("api-server", &envs);
        let base = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "api-server to listen", || {
            try_http_get(&format!("{base}/health")).is_ok()
        });
        ApiServer { program, base }
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`: status and body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let (status, body, _) = http_get(&self.url(path));
        (status, body)
    }

    /// GET `path`, which must answer 200; its JSON body.
    pub fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The process, e.g. to stop it with [`Program::terminate`] or read its output.
    pub fn program(&mut self) -> &mut Program {
        &mut self.program
    }
}
