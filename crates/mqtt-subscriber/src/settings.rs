//! The subscriber's settings (CONTRACT §2): flags with environment twins.

use std::net::SocketAddr;
use std::time::Duration;

use energy_influx::InfluxSettings;
use energy_service::logging::LogFormat;
use energy_service::mqtt::MqttSettings;

/// Subscribes to <prefix>/# and writes every valid reading to InfluxDB.
#[derive(Debug, clap::Parser)]
#[command(name = "mqtt-subscriber", version, about, long_about = None)]
pub struct Settings {
    #[command(flatten)]
    pub mqtt: MqttSettings,

    #[command(flatten)]
    pub influx: InfluxSettings,

    /// Largest number of points written to InfluxDB in one request.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 5000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub batch_size: usize,

    /// Longest time a reading waits in a batch before the batch is written, in milliseconds.
    #[arg(long, env = "FLUSH_INTERVAL_MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub flush_interval_ms: u64,

    /// Most messages held in memory while InfluxDB is slow or down; beyond it the subscriber
    /// stops taking messages and the broker keeps them.
    #[arg(long, env = "MAX_BUFFERED", default_value_t = 20_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub max_buffered: usize,

    /// Seconds between one-line summaries in the log (received, written, rejected, retries).
    #[arg(long, env = "SUMMARY_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub summary_interval_secs: u64,

    /// Most distinct panels accepted; messages for further new panel ids are rejected, so a
    /// flood of made-up ids cannot explode InfluxDB's series cardinality.
    #[arg(long, env = "MAX_PANELS", default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub max_panels: usize,

    /// Shared-subscription group: subscribe $share/<group>/<prefix>/# so that several
    /// subscriber replicas split one stream (each message goes to one of them).
    #[arg(long, env = "MQTT_SHARED_GROUP", value_parser = parse_group)]
    pub mqtt_shared_group: Option<String>,

    /// An increase implying more power than this (kW) is a glitch and counts as 0. The usage
    /// rollup is computed with it, so set the same value as the api-server's.
    #[arg(long, env = "MAX_POWER_KW", default_value_t = 5000.0, value_parser = energy_service::parse_max_power)]
    pub max_power_kw: f64,

    /// Whether this subscriber keeps the usage rollup: reads the invalidation log every
    /// subscriber writes beside its readings and recomputes what it names. Exactly one
    /// subscriber of a database must (docs/rollup.md): with MQTT_SHARED_GROUP set, say it on
    /// every replica, true on one and false on the others. Default without a group: true.
    #[arg(long, env = "ROLLUP_WRITER", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub rollup_writer: Option<bool>,

    /// Recompute the whole usage rollup from the raw readings at start (it is otherwise kept
    /// up to date as readings are written, and rebuilt by itself when MAX_POWER_KW changes).
    #[arg(long)]
    pub rebuild_rollup: bool,

    /// Serve Prometheus metrics at http://<this address>/metrics (e.g. 127.0.0.1:9464). Unset:
    /// no metrics listener.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    /// Checks what one flag cannot check alone. The error names the settings.
    pub fn check(&self) -> Result<(), String> {
        if self.mqtt_shared_group.is_some() && self.rollup_writer.is_none() {
            return Err(
                "MQTT_SHARED_GROUP is set, so several replicas may share the stream: set \
                        ROLLUP_WRITER=true on exactly one of them and ROLLUP_WRITER=false on the \
                        others (one writer keeps the usage rollup)"
                    .into(),
            );
        }
        if self.rebuild_rollup && !self.is_rollup_writer() {
            return Err("--rebuild-rollup needs ROLLUP_WRITER=true".into());
        }
        Ok(())
    }

    /// Whether this subscriber keeps the usage rollup.
    pub fn is_rollup_writer(&self) -> bool {
        self.rollup_writer.unwrap_or(true)
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    pub fn summary_interval(&self) -> Duration {
        Duration::from_secs(self.summary_interval_secs)
    }
}

fn parse_group(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['/', '+', '#', '\0']) {
        return Err(format!(
            "{s:?} must be a non-empty name without '/', '+' or '#'"
        ));
    }
    Ok(s.to_owned())
}

impl Settings {
    /// The topic filter to subscribe: `<prefix>/#`, or `$share/<group>/<prefix>/#`.
    pub fn topic_filter(&self) -> String {
        let filter = format!("{}/#", self.mqtt.mqtt_topic_prefix);
        match &self.mqtt_shared_group {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::try_parse_from(["mqtt-subscriber"]).unwrap();
        assert_eq!(s.mqtt.mqtt_topic_prefix, "DATA/PM");
        assert_eq!(s.influx.influx_database, "energy");
        assert_eq!(s.batch_size, 5000);
    }

    #[test]
    fn a_shared_group_prefixes_the_filter() {
        let s = Settings::try_parse_from(["mqtt-subscriber"]).unwrap();
        assert_eq!(s.topic_filter(), "DATA/PM/#");
        let s =
            Settings::try_parse_from(["mqtt-subscriber", "--mqtt-shared-group", "ingest"]).unwrap();
        assert_eq!(s.topic_filter(), "$share/ingest/DATA/PM/#");
        assert!(
            Settings::try_parse_from(["mqtt-subscriber", "--mqtt-shared-group", "a/b"]).is_err()
        );
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let s = Settings::try_parse_from(["mqtt-subscriber"]).unwrap();
        assert_eq!(s.metrics_addr, None);
        let s = Settings::try_parse_from(["mqtt-subscriber", "--metrics-addr", "127.0.0.1:9464"])
            .unwrap();
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let err = Settings::try_parse_from(["mqtt-subscriber", "--metrics-addr", "localhost"])
            .unwrap_err();
        assert!(err.to_string().contains("--metrics-addr"), "{err}");
    }

    #[test]
    fn a_shared_group_needs_an_explicit_rollup_writer() {
        let parse = |args: &[&str]| {
            let mut all = vec!["mqtt-subscriber"];
            all.extend_from_slice(args);
            Settings::try_parse_from(all).unwrap()
        };
        assert!(parse(&[]).check().is_ok());
        assert!(parse(&[]).is_rollup_writer());
        let err = parse(&["--mqtt-shared-group", "g"]).check().unwrap_err();
        assert!(err.contains("ROLLUP_WRITER"), "{err}");
        for (value, writer) in [
            ("true", true),
            ("false", false),
            ("yes", true),
            ("0", false),
        ] {
            let s = parse(&["--mqtt-shared-group", "g", "--rollup-writer", value]);
            assert!(s.check().is_ok());
            assert_eq!(s.is_rollup_writer(), writer);
        }
        let err = parse(&["--rollup-writer", "false", "--rebuild-rollup"])
            .check()
            .unwrap_err();
        assert!(err.contains("--rebuild-rollup"), "{err}");
        assert!(Settings::try_parse_from(["x", "--rollup-writer", "maybe"]).is_err());
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = Settings::try_parse_from(["mqtt-subscriber", "--batch-size", "0"]).unwrap_err();
        assert!(err.to_string().contains("--batch-size"), "{err}");
    }
}
