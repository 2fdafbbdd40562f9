//! The subscriber's settings (README, "Settings"): flags with environment twins.

use std::net::SocketAddr;

use chrono::Datelike;
use std::time::Duration;

use energy_core::{EstimateAfter, MaxPower, Rules};
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
    #[arg(long, env = "MAX_POWER_KW", default_value = "5000")]
    pub max_power_kw: MaxPower,

    /// Two readings further apart than this (seconds) are a gap: the usage spread over it is
    /// reported as estimated. The usage rollup records it, so set the same value on the
    /// api-server and the subscriber.
    #[arg(long, env = "ESTIMATE_AFTER_SECS", default_value = "900")]
    pub estimate_after_secs: EstimateAfter,

    /// Whether this subscriber keeps the usage rollup: reads the invalidation log every
    /// subscriber writes beside its readings and recomputes what it names. Exactly one
    /// subscriber of a database must (docs/rollup.md): with MQTT_SHARED_GROUP set, say it on
    /// every replica, true on one and false on the others. Default without a group: true.
    #[arg(long, env = "ROLLUP_WRITER", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub rollup_writer: Option<bool>,

    /// Seconds between checks of yesterday's and today's usage rollup against the raw readings
    /// by the subscriber that keeps it (differences are logged, counted and recomputed);
    /// 0: never.
    #[arg(long, env = "ROLLUP_CHECK_INTERVAL_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub rollup_check_interval_secs: u64,

    /// Check the usage rollup against the raw readings over the UTC days FROM..TO (both
    /// included; `2026-11-01..2026-11-30`, or one day), print every difference and exit: 0
    /// without differences, 1 with, 3 if InfluxDB failed. Nothing else runs.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_day_range)]
    pub check_rollup: Option<DayRange>,

    /// With --check-rollup: have the subscriber that keeps the rollup recompute what differs
    /// (written to the rollup's log; this command writes no sum itself).
    #[arg(long, requires = "check_rollup")]
    pub repair: bool,

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

/// UTC days, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayRange {
    pub first: chrono::NaiveDate,
    pub last: chrono::NaiveDate,
}

fn parse_day_range(s: &str) -> Result<DayRange, String> {
    let (first, last) = s.split_once("..").unwrap_or((s, s));
    let day = |d: &str| {
        chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
            .map_err(|_| format!("{d:?} is not a date like 2026-11-30 (in {s:?})"))
    };
    let range = DayRange {
        first: day(first)?,
        last: day(last)?,
    };
    if range.last < range.first {
        return Err(format!("{s:?} ends before it starts"));
    }
    let limit = chrono::NaiveDate::from_ymd_opt(2262, 4, 10).unwrap_or(chrono::NaiveDate::MAX);
    if range.first.year() < 1970 || range.last > limit {
        return Err(format!("{s:?} must lie between 1970-01-01 and 2262-04-10"));
    }
    Ok(range)
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

    /// How often the rollup writer checks recent days, if at all.
    pub fn rollup_check_interval(&self) -> Option<Duration> {
        (self.rollup_check_interval_secs > 0)
            .then(|| Duration::from_secs(self.rollup_check_interval_secs))
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
    /// The usage rules (`MAX_POWER_KW`, `ESTIMATE_AFTER_SECS`) the rollup is kept with.
    pub fn rules(&self) -> Rules {
        Rules::new(self.max_power_kw, self.estimate_after_secs)
    }

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
    fn a_check_range_is_one_or_two_utc_dates() {
        let parse = |v: &str| Settings::try_parse_from(["x", "--check-rollup", v]);
        let s = parse("2026-11-01..2026-11-30").unwrap();
        let range = s.check_rollup.unwrap();
        assert_eq!(range.first.to_string(), "2026-11-01");
        assert_eq!(range.last.to_string(), "2026-11-30");
        assert_eq!(
            parse("2026-11-05")
                .unwrap()
                .check_rollup
                .unwrap()
                .last
                .to_string(),
            "2026-11-05"
        );
        for bad in [
            "2026-11-30..2026-11-01",
            "yesterday",
            "2026-13-01",
            "1969-12-31",
            "9999-01-01",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("--check-rollup"), "{bad}: {err}");
        }
        assert!(
            Settings::try_parse_from(["x", "--repair"]).is_err(),
            "--repair needs --check-rollup"
        );
    }

    #[test]
    fn the_glitch_threshold_is_parsed_by_the_core() {
        let s = Settings::try_parse_from(["mqtt-subscriber"]).unwrap();
        assert_eq!(s.max_power_kw, "5000".parse::<MaxPower>().unwrap());
        let s = Settings::try_parse_from(["mqtt-subscriber", "--max-power-kw", "1e3"]).unwrap();
        assert_eq!(s.max_power_kw.kw(), 1000.0);
        for bad in ["0", "-5", "NaN", "inf", "abc"] {
            let arg = format!("--max-power-kw={bad}");
            let err = Settings::try_parse_from(["mqtt-subscriber", arg.as_str()])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--max-power-kw")
                    && err.contains(&format!(
                        "{bad:?} is not a power in kW (a finite number > 0)"
                    )),
                "{err}"
            );
        }
    }

    #[test]
    fn the_estimate_threshold_is_parsed_by_the_core() {
        let s = Settings::try_parse_from(["mqtt-subscriber"]).unwrap();
        assert_eq!(s.rules().estimate_after, EstimateAfter::DEFAULT);
        let s =
            Settings::try_parse_from(["mqtt-subscriber", "--estimate-after-secs", "3600"]).unwrap();
        assert_eq!(s.rules().estimate_after.secs(), 3600);
        for bad in ["0", "-5", "1.5", "abc", "31536001"] {
            let arg = format!("--estimate-after-secs={bad}");
            let err = Settings::try_parse_from(["mqtt-subscriber", arg.as_str()])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--estimate-after-secs")
                    && err.contains(&format!(
                        "{bad:?} is not a number of seconds from 1 to 31536000"
                    )),
                "{err}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = Settings::try_parse_from(["mqtt-subscriber", "--batch-size", "0"]).unwrap_err();
        assert!(err.to_string().contains("--batch-size"), "{err}");
    }
}
