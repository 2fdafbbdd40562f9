//! A private Mosquitto broker for one test: its own free loopback port, config, persistence
//! directory and log, all inside a temporary directory that is removed when it is dropped.

use std::io;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use tempfile::TempDir;

use crate::mqtt;
use crate::process;

/// How long the broker may take to accept connections (it usually takes a few milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` gives the broker to save its persistence file after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Start attempts with a fresh port when the broker dies at start-up (e.g. the port chosen by
/// [`crate::free_port`] was taken in the meantime by a parallel test).
const START_ATTEMPTS: usize = 3;

/// A running `mosquitto` started by this test.
///
/// The config is `listener <port> 127.0.0.1`, anonymous access, persistence in the temp dir (so
/// [`Mosquitto::restart`] keeps persistent sessions and queued messages), and
/// `max_queued_messages 0`: the default of 1000 per client silently drops messages in bursts.
pub struct Mosquitto {
    /// The loopback port the broker listens on; it stays the same across restarts.
    pub port: u16,
    exe: PathBuf,
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    // Declared last so it is removed after the broker has been killed (fields drop in order,
    // after `Drop::drop`).
    dir: TempDir,
}

impl Mosquitto {
    /// Starts a broker with the standard test config and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Like [`Mosquitto::start`], with `extra_config` lines appended to the config file.
    pub fn start_with(extra_config: &str) -> Self {
        let exe = process::require_executable("mosquitto");
        let dir = tempfile::Builder::new()
            .prefix("test-mosquitto-")
            .tempdir()
            .expect("create a temp dir for mosquitto");
        let mut broker = Mosquitto {
            port: 0,
            exe,
            child: None,
            config_path: dir.path().join("mosquitto.conf"),
            log_path: dir.path().join("mosquitto.log"),
            stderr_path: dir.path().join("mosquitto.stderr"),
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            broker.port = crate::free_port();
            broker.write_config(extra_config);
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "mosquitto did not start on port {} ({e}); retrying",
                        broker.port
                    )
                }
                Err(e) => panic!(
                    "mosquitto did not start on port {}: {e}\nconfig:\n{}\nlog:\n{}",
                    broker.port,
                    std::fs::read_to_string(&broker.config_path).unwrap_or_default(),
                    broker.log()
                ),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `mqtt://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Like [`Mosquitto::start`], but the listener speaks TLS with `security`'s server
    /// certificate and, when it has a password file, refuses anonymous clients. Keep `security`
    /// alive as long as the broker. The test-support MQTT client speaks plain TCP only, so
    /// [`Mosquitto::publish`] and [`Mosquitto::subscribe`] cannot be used on such a broker.
    pub fn start_secure(security: &crate::BrokerSecurity) -> Self {
        Self::start_with(&security.mosquitto_config())
    }

    /// `mqtts://127.0.0.1:<port>`, for a broker started with [`Mosquitto::start_secure`].
    pub fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, so it saves its persistence file; SIGKILL after 5 s).
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::terminate(&mut child, STOP_GRACE);
        }
    }

    /// Stops the broker if it is running and starts it again on the same port with the same
    /// config and persistence directory.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!(
                "mosquitto did not restart on port {}: {e}\nlog:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Publishes `payload` to `topic` at `qos` (0, 1 or 2) and returns once the broker has
    /// accepted it. Uses the raw client in [`crate::mqtt`], so topic and payload go out byte for
    /// byte (invalid UTF-8 payloads included). Panics if the broker does not accept it.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: u8) {
        self.publish_with(topic, payload, qos, false);
    }

    /// [`Mosquitto::publish`] with the retain flag.
    pub fn publish_with(&self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        if let Err(e) = mqtt::publish(self.port, topic.as_bytes(), payload, qos, retain) {
            panic!(
                "publish to {topic:?} (QoS {qos}) on {} failed: {e}\nbroker log:\n{}",
                self.url(),
                process::tail(&self.log(), 4000)
            );
        }
    }

    /// Subscribes to `topic_filter` (QoS 1); the subscription is active when this returns, so
    /// messages published afterwards are delivered to it. Collect them with
    /// [`mqtt::Subscriber::collect`].
    pub fn subscribe(&self, topic_filter: &str) -> mqtt::Subscriber {
        mqtt::Subscriber::new(self.port, topic_filter).unwrap_or_else(|e| {
            panic!(
                "subscribe to {topic_filter:?} on {} failed: {e}",
                self.url()
            )
        })
    }

    /// Subscribes to `topic_filter` and collects up to `count` messages within `timeout`, as
    /// `(topic, payload)`. For messages published by someone else *after* this call starts
    /// (e.g. a running sensor-publisher); to publish yourself, use [`Mosquitto::subscribe`]
    /// first so nothing is published before the subscription exists.
    pub fn subscribe_collect(
        &self,
        topic_filter: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<(String, Vec<u8>)> {
        let mut subscriber = self.subscribe(topic_filter);
        subscriber
            .collect(count, timeout)
            .unwrap_or_else(|e| panic!("receiving from {topic_filter:?} failed: {e}"))
    }

    /// The broker's log so far: its log file plus anything it printed to stderr.
    pub fn log(&self) -> String {
        let mut log = process::read_lossy(&self.log_path);
        log.push_str(&process::read_lossy(&self.stderr_path));
        log
    }

    /// The directory holding config, persistence file and log (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn write_config(&self, extra_config: &str) {
        let dir = self.dir.path().display();
        let mut config = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             max_queued_messages 0\n\
             log_dest file {log}\n",
            port = self.port,
            log = self.log_path.display(),
        );
        // Started as root, mosquitto switches to the `mosquitto` user and then cannot write its
        // log or persistence file in our (root-owned, 0700) temp dir. `user root` keeps it as
        // root; as any other user the option is ignored, so only add it when it matters.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            config.push_str("user root\n");
        }
        config.push_str(extra_config);
        config.push('\n');
        std::fs::write(&self.config_path, config).expect("write mosquitto.conf");
    }

    /// Spawns the broker with the current config and waits until its port accepts connections.
    /// On failure the child is reaped and the error says why.
    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let mut child = process::spawn_service(
            &self.exe,
            &["-c".as_ref(), self.config_path.as_os_str()],
            self.dir.path(),
            &self.stderr_path,
        )?;
        let port = self.port;
        process::wait_ready(
            &mut child,
            "mosquitto",
            START_TIMEOUT,
            Duration::from_millis(20),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            // Never started (start-up panicked, quoting the log) or already stopped.
            return;
        };
        process::kill(&mut child);
        // A failing test's own message rarely says what the broker saw; its log usually does.
        if std::thread::panicking() {
            eprintln!(
                "--- mosquitto log (port {}) ---\n{}",
                self.port,
                process::tail(&self.log(), 8000)
            );
        }
    }
}
