//! The api-server's settings (CONTRACT §2): flags with environment twins.

use std::net::SocketAddr;

use chrono_tz::Tz;
use energy_core::Tariff;
use energy_influx::InfluxSettings;
use energy_service::logging::LogFormat;

/// REST API over the energy readings stored in InfluxDB.
#[derive(Debug, clap::Parser)]
#[command(name = "api-server", version, about, long_about = None)]
pub struct Settings {
    #[command(flatten)]
    pub influx: InfluxSettings,

    /// IANA time zone that defines "today" and "month" (e.g. Asia/Jakarta, Europe/Berlin).
    #[arg(long, env = "TIMEZONE", default_value = "Asia/Jakarta", value_parser = parse_timezone)]
    pub timezone: Tz,

    /// Price of one kWh.
    #[arg(long, env = "TARIFF_PER_KWH", default_value_t = 1500.0, value_parser = parse_tariff)]
    pub tariff_per_kwh: f64,

    /// Currency shown next to every cost.
    #[arg(long, env = "CURRENCY", default_value = "IDR", value_parser = parse_currency)]
    pub currency: String,

    /// A panel is ONLINE while its last reading is at most this many seconds old.
    #[arg(long, env = "OFFLINE_AFTER_SECS", default_value_t = 300)]
    pub offline_after_secs: u64,

    /// An increase implying more power than this (kW) is a glitch and counts as 0.
    #[arg(long, env = "MAX_POWER_KW", default_value_t = 5000.0, value_parser = parse_max_power)]
    pub max_power_kw: f64,

    /// Listen address.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:3000")]
    pub api_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    pub fn tariff(&self) -> Tariff {
        Tariff {
            per_kwh: self.tariff_per_kwh,
            currency: self.currency.clone(),
        }
    }
}

fn parse_timezone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("{s:?} is not an IANA time zone name (e.g. Asia/Jakarta)"))
}

fn parse_tariff(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a price (a finite number >= 0)")),
    }
}

fn parse_max_power(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a power in kW (a finite number > 0)")),
    }
}

fn parse_currency(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 16 || s.chars().any(char::is_control) {
        return Err(format!(
            "{s:?} is not a currency label (1-16 printable characters)"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::try_parse_from(["api-server"]).unwrap();
        assert_eq!(s.timezone, chrono_tz::Asia::Jakarta);
        assert_eq!(s.tariff_per_kwh, 1500.0);
        assert_eq!(s.currency, "IDR");
        assert_eq!(s.offline_after_secs, 300);
        assert_eq!(s.max_power_kw, 5000.0);
        assert_eq!(s.api_addr.to_string(), "127.0.0.1:3000");
    }

    #[test]
    fn bad_values_name_the_setting_and_the_value() {
        for (flag, value) in [
            ("--timezone", "Mars/Olympus"),
            ("--tariff-per-kwh", "-1"),
            ("--tariff-per-kwh", "NaN"),
            ("--max-power-kw", "0"),
            ("--offline-after-secs", "soon"),
            ("--api-addr", "localhost"),
        ] {
            let arg = format!("{flag}={value}");
            let err = Settings::try_parse_from(["api-server", arg.as_str()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag) && err.contains(value), "{err}");
        }
    }
}
