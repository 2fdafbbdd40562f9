//! The publisher's settings (README, "Settings"): every one a flag with an environment twin.
//!
//! Each value is checked here, by clap, so a bad one stops the program before anything starts,
//! with clap's one-line error naming the flag and the value.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use clap::Parser;
use energy_core::PanelId;
use energy_influx::InfluxSettings;
use energy_service::logging::LogFormat;
use energy_service::mqtt::MqttSettings;

/// Longest accepted interval: one reading a day. Beyond that the simulation makes no sense, and
/// a huge value would overflow the timer.
pub const MAX_PUBLISH_INTERVAL_SECS: u64 = 86_400;

/// Longest history `--backfill` generates: ten years.
pub const MAX_BACKFILL_DAYS: f64 = 3_660.0;

/// Simulates power meters (panels) and publishes one reading per panel per interval to
/// <prefix>/<PANEL_ID> over MQTT. A .env file in the working directory is read if present.
#[derive(Clone, Debug, Parser)]
#[command(name = "sensor-publisher", version)]
pub struct Settings {
    #[command(flatten)]
    pub mqtt: MqttSettings,

    /// Comma-separated panel ids to simulate, each 1-64 characters from [A-Za-z0-9_.-].
    #[arg(long, env = "PANELS", default_value = "PANEL_LANTAI_1,PANEL_LANTAI_2,PANEL_LANTAI_3",
          value_parser = parse_panels)]
    pub panels: Panels,

    /// Whole seconds between two readings of a panel (1 to 86400).
    #[arg(long, env = "PUBLISH_INTERVAL_SECS", default_value = "60",
          value_parser = parse_interval)]
    pub publish_interval_secs: PublishInterval,

    /// IANA time zone of the building; the simulated load is higher in its working hours
    /// (08:00-18:00, Monday to Friday).
    #[arg(long, env = "TIMEZONE", default_value = "Asia/Jakarta", value_parser = parse_timezone)]
    pub timezone: Tz,

    /// JSON file that keeps each panel's energy register across restarts; written after every
    /// round of readings.
    #[arg(long, env = "STATE_FILE", default_value = "sensor-publisher-state.json",
          value_parser = parse_state_file)]
    pub state_file: PathBuf,

    /// Log format: text or json. The level comes from RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Instead of publishing live: generate the history of the DAYS days ending now (fractions
    /// allowed) for PANELS at PUBLISH_INTERVAL_SECS, continuing the registers of STATE_FILE,
    /// save the registers and exit. Through the broker (QoS 1), or with --direct into InfluxDB.
    #[arg(long, value_name = "DAYS", value_parser = parse_backfill_days)]
    pub backfill: Option<f64>,

    /// With --backfill: N random meter resets per panel over the period (the register drops
    /// to 0 and counts up again).
    #[arg(long, value_name = "N", requires = "backfill", default_value_t = 0)]
    pub resets: u32,

    /// With --backfill: write straight to InfluxDB (INFLUX_* settings) instead of publishing
    /// through the broker.
    #[arg(long, requires = "backfill")]
    pub direct: bool,

    /// InfluxDB, used only by --backfill --direct.
    #[command(flatten)]
    pub influx: InfluxSettings,
}

/// The panels to simulate: at least one, no id twice, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panels(pub Vec<PanelId>);

/// The time between two rounds of readings, at least one second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishInterval(pub Duration);

fn parse_panels(s: &str) -> Result<Panels, String> {
    let mut panels = Vec::new();
    let mut seen = HashSet::new();
    for (index, entry) in s.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(format!(
                "{s:?}: entry {} is empty; give comma-separated panel ids",
                index + 1
            ));
        }
        let panel = PanelId::parse(entry).map_err(|e| format!("{entry:?}: {e}"))?;
        if !seen.insert(panel.clone()) {
            return Err(format!("{s:?}: panel {entry:?} is listed twice"));
        }
        panels.push(panel);
    }
    Ok(Panels(panels))
}

fn parse_interval(s: &str) -> Result<PublishInterval, String> {
    let secs: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of seconds"))?;
    if !(1..=MAX_PUBLISH_INTERVAL_SECS).contains(&secs) {
        return Err(format!(
            "{secs} is out of range; give 1 to {MAX_PUBLISH_INTERVAL_SECS} seconds"
        ));
    }
    Ok(PublishInterval(Duration::from_secs(secs)))
}

fn parse_timezone(s: &str) -> Result<Tz, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IANA time zone name such as Asia/Jakarta"))
}

fn parse_backfill_days(s: &str) -> Result<f64, String> {
    let days: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of days"))?;
    if !(days.is_finite() && days > 0.0 && days <= MAX_BACKFILL_DAYS) {
        return Err(format!(
            "{s} is out of range; give more than 0 and at most {MAX_BACKFILL_DAYS} days"
        ));
    }
    Ok(days)
}

fn parse_state_file(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        return Err("the state file path must not be empty".into());
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("sensor-publisher").chain(args.iter().copied()))
    }

    fn error_text(args: &[&str]) -> String {
        parse(args).expect_err("accepted").to_string()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let settings = parse(&[]).unwrap();
        let ids: Vec<&str> = settings.panels.0.iter().map(PanelId::as_str).collect();
        assert_eq!(ids, ["PANEL_LANTAI_1", "PANEL_LANTAI_2", "PANEL_LANTAI_3"]);
        assert_eq!(settings.publish_interval_secs.0, Duration::from_secs(60));
        assert_eq!(settings.timezone, chrono_tz::Asia::Jakarta);
        assert_eq!(
            settings.state_file,
            PathBuf::from("sensor-publisher-state.json")
        );
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!(settings.backfill, None);
        assert_eq!(settings.resets, 0);
        assert!(!settings.direct);
    }

    #[test]
    fn backfill_flags_are_checked() {
        let settings = parse(&["--backfill", "1.5", "--resets", "2", "--direct"]).unwrap();
        assert_eq!(settings.backfill, Some(1.5));
        assert_eq!(settings.resets, 2);
        assert!(settings.direct);
        for bad in ["0", "-1", "abc", "NaN", "inf", "3661"] {
            let text = error_text(&[&format!("--backfill={bad}")]);
            assert!(text.contains("--backfill") && text.contains(bad), "{text}");
        }
        // --resets and --direct only make sense with --backfill.
        assert!(parse(&["--direct"]).is_err());
        assert!(parse(&["--resets", "1"]).is_err());
    }

    #[test]
    fn panels_are_trimmed_and_keep_their_order() {
        let settings = parse(&["--panels", "B, A ,C"]).unwrap();
        let ids: Vec<&str> = settings.panels.0.iter().map(PanelId::as_str).collect();
        assert_eq!(ids, ["B", "A", "C"]);
    }

    #[test]
    fn a_bad_interval_names_the_setting_and_the_value() {
        for bad in ["abc", "0", "1.5", "-3", "86401"] {
            let text = error_text(&[&format!("--publish-interval-secs={bad}")]);
            assert!(text.contains("--publish-interval-secs"), "{text}");
            assert!(text.contains(bad), "{text}");
        }
    }

    #[test]
    fn bad_panel_lists_are_rejected_with_the_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("A,,B", "empty"),
            ("A,", "empty"),
            ("A,B,A", "twice"),
            ("PANEL 1", "' '"),
            ("A/B", "'/'"),
            (&"X".repeat(65), "more than 64"),
        ] {
            let text = error_text(&["--panels", bad]);
            assert!(text.contains("--panels"), "{text}");
            assert!(text.contains(reason), "{bad:?}: {text}");
        }
    }

    #[test]
    fn an_unknown_timezone_is_rejected() {
        let text = error_text(&["--timezone", "Mars/Olympus"]);
        assert!(
            text.contains("--timezone") && text.contains("Mars/Olympus"),
            "{text}"
        );
        assert_eq!(
            parse(&["--timezone", "Europe/Berlin"]).unwrap().timezone,
            chrono_tz::Europe::Berlin
        );
    }

    #[test]
    fn log_format_and_state_file_are_checked() {
        let text = error_text(&["--log-format", "xml"]);
        assert!(
            text.contains("--log-format") && text.contains("xml"),
            "{text}"
        );
        assert!(parse(&["--state-file", ""]).is_err());
        assert_eq!(
            parse(&["--log-format", "json"]).unwrap().log_format,
            LogFormat::Json
        );
    }

    #[test]
    fn every_setting_has_an_environment_twin_in_help() {
        use clap::CommandFactory;
        let help = Settings::command().render_long_help().to_string();
        for name in [
            "MQTT_URL",
            "MQTT_USERNAME",
            "MQTT_PASSWORD",
            "MQTT_TOPIC_PREFIX",
            "MQTT_CLIENT_ID",
            "PANELS",
            "PUBLISH_INTERVAL_SECS",
            "TIMEZONE",
            "STATE_FILE",
            "LOG_FORMAT",
        ] {
            assert!(
                help.contains(&format!("env: {name}")),
                "{name} missing from --help"
            );
        }
    }
}
