//! The api-server's settings (README, "Settings"): flags with environment twins.

use std::net::SocketAddr;
use std::time::Duration;

use chrono_tz::Tz;
use energy_core::alerts::Alerts;
use energy_core::{EstimateAfter, MaxPower, Meters, Price, Rules, Tariffs};
use energy_influx::InfluxSettings;
use energy_service::logging::LogFormat;
use energy_service::mqtt::MqttSettings;
use energy_service::Secret;

use crate::cors::CorsOrigins;
use crate::server::Policy;

/// The alerts file as read, with each webhook's signing key.
#[derive(Clone, Debug)]
pub struct LoadedAlerts {
    pub alerts: Alerts,
    /// By webhook name (`Secret` never prints itself).
    pub secrets: std::collections::BTreeMap<String, Secret>,
}

/// REST API over the energy readings stored in InfluxDB.
#[derive(Debug, clap::Parser)]
#[command(name = "api-server", version, about, long_about = None)]
pub struct Settings {
    #[command(flatten)]
    pub influx: InfluxSettings,

    /// IANA time zone that defines "today" and "month" (e.g. Asia/Jakarta, Europe/Berlin).
    #[arg(long, env = "TIMEZONE", default_value = "Asia/Jakarta", value_parser = parse_timezone)]
    pub timezone: Tz,

    /// Price of one kWh, a decimal number >= 0 (e.g. 1500, 0.25 or 1444.70); costs are computed
    /// from it exactly.
    #[arg(long, env = "TARIFF_PER_KWH", default_value = "1500", value_parser = parse_tariff)]
    pub tariff_per_kwh: Price,

    /// Currency shown next to every cost.
    #[arg(long, env = "CURRENCY", default_value = "IDR", value_parser = parse_currency)]
    pub currency: String,

    /// A tariff file (TOML, see docs/tariffs.md): time-of-use windows, dated versions, demand,
    /// fixed and minimum charges, taxes, and which panel pays which tariff. When set, it
    /// replaces `TARIFF_PER_KWH` and `CURRENCY`; a file that is not valid stops the server at
    /// start, naming its line and field.
    #[arg(long, env = "TARIFF_FILE")]
    pub tariff_file: Option<std::path::PathBuf>,

    /// The tariffs `load` read (from `TARIFF_FILE`, or the flat shortcut).
    #[arg(skip)]
    loaded_tariffs: Option<Tariffs>,

    /// A meters file (TOML, see docs/meters.md): the building's panels with their building,
    /// floor and tenant, and virtual meters (sums and differences of panels and of other
    /// virtual meters) that every answer shows beside the panels. A file that is not valid
    /// (a cycle, an unknown panel) stops the server at start, naming its line and field.
    #[arg(long, env = "METERS_FILE")]
    pub meters_file: Option<std::path::PathBuf>,

    /// The meters `load` read from `METERS_FILE` (none without it).
    #[arg(skip)]
    loaded_meters: Option<Meters>,

    /// An alerts file (TOML, see docs/alerts.md): rules on a panel or virtual meter (offline
    /// too long, power above a limit, today's usage or cost above a budget, power above a limit
    /// in a tariff window) and where their notifications go (webhooks, MQTT). A file that is not
    /// valid stops the server at start, naming its line and field.
    #[arg(long, env = "ALERTS_FILE")]
    pub alerts_file: Option<std::path::PathBuf>,

    /// Whether this server evaluates the alert rules and sends their notifications. With
    /// several api-servers, set it true on exactly one (each event is then notified once) and
    /// false on the others, which still answer `GET /api/alerts`.
    #[arg(long, env = "ALERTS_EVALUATOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub alerts_evaluator: bool,

    /// Seconds between two evaluations of the alert rules (1–3600).
    #[arg(long, env = "ALERTS_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub alerts_interval_secs: u64,

    /// The alerts `load` read, with each webhook's secret.
    #[arg(skip)]
    loaded_alerts: Option<LoadedAlerts>,

    /// The broker alerts are published to, when the alerts file has an `[mqtt]` table.
    #[command(flatten)]
    pub mqtt: MqttSettings,

    /// A panel is ONLINE while its last reading is at most this many seconds old.
    #[arg(long, env = "OFFLINE_AFTER_SECS", default_value_t = 300)]
    pub offline_after_secs: u64,

    /// An increase implying more power than this (kW) is a glitch and counts as 0.
    #[arg(long, env = "MAX_POWER_KW", default_value = "5000")]
    pub max_power_kw: MaxPower,

    /// Two readings further apart than this (seconds) are a gap: the usage spread over it is
    /// reported as estimated. The usage rollup records it, so set the same value on the
    /// api-server and the subscriber.
    #[arg(long, env = "ESTIMATE_AFTER_SECS", default_value = "900")]
    pub estimate_after_secs: EstimateAfter,

    /// Listen address.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:3000")]
    pub api_addr: SocketAddr,

    /// How long an InfluxDB answer is reused, in milliseconds; concurrent identical requests
    /// also share one query. 0 turns the cache off.
    #[arg(long, env = "QUERY_CACHE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub query_cache_ms: u64,

    /// How far behind now the usage rollup may have got before this server stops using it and
    /// answers from its own sums of the raw readings (its writer stopped or fell behind; see
    /// docs/accounting.md). A writer records its progress every 2 s at the least.
    #[arg(long, env = "ROLLUP_STALE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub rollup_stale_secs: u64,

    /// Bearer token every /api request must carry (`Authorization: Bearer <token>`); /health
    /// stays open for load balancers. Unset: no authentication. Never logged.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// Origins allowed to call the API from a browser (CORS), comma-separated, e.g.
    /// `https://dash.example.com,http://localhost:5173`, or `*` for any origin. Empty (the
    /// default): no CORS headers, so browsers only allow pages served by this host.
    #[arg(long, env = "CORS_ORIGINS", default_value = "", hide_default_value = true,
          value_parser = CorsOrigins::parse)]
    pub cors_origins: CorsOrigins,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How much longer than `INFLUX_TIMEOUT_MS` a whole request may take before the safety-net
/// timeout answers 503: every InfluxDB call has its own timeout, so this only fires when
/// something else hangs.
const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

impl Settings {
    /// The usage rules (`MAX_POWER_KW`, `ESTIMATE_AFTER_SECS`) every figure follows.
    pub fn rules(&self) -> Rules {
        Rules::new(self.max_power_kw, self.estimate_after_secs)
    }

    /// Parses the command line and the environment, and exits with status 2 and a message
    /// naming the setting when a value is unusable (as clap does for the others).
    pub fn load() -> Self {
        let mut settings = <Self as clap::Parser>::parse();
        let checked = settings.check_api_token().and_then(|()| {
            let tariffs = settings.read_tariffs()?;
            let meters = settings.read_meters()?;
            let alerts = settings.read_alerts(&meters, &tariffs)?;
            Ok((tariffs, meters, alerts))
        });
        match checked {
            Ok((tariffs, meters, alerts)) => {
                settings.loaded_tariffs = Some(tariffs);
                settings.loaded_meters = Some(meters);
                settings.loaded_alerts = alerts;
            }
            Err(message) => <Self as clap::CommandFactory>::command()
                .error(clap::error::ErrorKind::ValueValidation, message)
                .exit(),
        }
        settings
    }

    /// The tariffs of `TARIFF_FILE`, or `TARIFF_PER_KWH` in `CURRENCY` for every kWh.
    fn read_tariffs(&self) -> Result<Tariffs, String> {
        let Some(path) = &self.tariff_file else {
            return Ok(Tariffs::flat(self.tariff_per_kwh, &self.currency));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("invalid value for '--tariff-file <TARIFF_FILE>': cannot read {shown}: {e}")
        })?;
        Tariffs::parse(&text, &shown)
            .map_err(|e| format!("invalid value for '--tariff-file <TARIFF_FILE>': {e}"))
    }

    /// The virtual meters of `METERS_FILE` (none without it).
    fn read_meters(&self) -> Result<Meters, String> {
        let Some(path) = &self.meters_file else {
            return Ok(Meters::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("invalid value for '--meters-file <METERS_FILE>': cannot read {shown}: {e}")
        })?;
        Meters::parse(&text, &shown)
            .map_err(|e| format!("invalid value for '--meters-file <METERS_FILE>': {e}"))
    }

    /// The rules of `ALERTS_FILE` (none without it), and each webhook's secret from the
    /// environment variable the file names (a variable that is not set stops the server; its
    /// value is never printed).
    fn read_alerts(
        &self,
        meters: &Meters,
        tariffs: &Tariffs,
    ) -> Result<Option<LoadedAlerts>, String> {
        let Some(path) = &self.alerts_file else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let invalid =
            |message: String| format!("invalid value for '--alerts-file <ALERTS_FILE>': {message}");
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {shown}: {e}")))?;
        let alerts =
            Alerts::parse(&text, &shown, meters, tariffs).map_err(|e| invalid(e.to_string()))?;
        let mut secrets = std::collections::BTreeMap::new();
        for hook in &alerts.webhooks {
            let Some(variable) = &hook.secret_env else {
                continue;
            };
            match std::env::var(variable) {
                Ok(value) if !value.is_empty() => {
                    secrets.insert(hook.name.clone(), Secret::new(value));
                }
                _ => {
                    return Err(invalid(format!(
                        "{shown}: webhooks.{}.secret_env names {variable}, which is not set or \
                         empty (the webhook's signing key is read from it)",
                        hook.name
                    )))
                }
            }
        }
        Ok(Some(LoadedAlerts { alerts, secrets }))
    }

    /// The alert rules and webhook secrets [`Settings::load`] read (none without
    /// `ALERTS_FILE`, or with settings parsed otherwise, as in tests).
    pub fn alerts(&self) -> Option<LoadedAlerts> {
        self.loaded_alerts.clone()
    }

    /// The panels and virtual meters: what [`Settings::load`] read, or (settings parsed
    /// otherwise, as in tests) read now.
    pub fn meters(&self) -> Meters {
        match &self.loaded_meters {
            Some(meters) => meters.clone(),
            None => self.read_meters().unwrap_or_default(),
        }
    }

    /// What every cost is priced by: what [`Settings::load`] read, or (settings parsed
    /// otherwise, as in tests) read now.
    pub fn tariffs(&self) -> Tariffs {
        match &self.loaded_tariffs {
            Some(tariffs) => tariffs.clone(),
            None => self
                .read_tariffs()
                .unwrap_or_else(|_| Tariffs::flat(self.tariff_per_kwh, &self.currency)),
        }
    }

    /// The token is checked here and not by a clap value parser, because clap quotes the
    /// rejected value in its message and a token must never be printed.
    fn check_api_token(&self) -> Result<(), String> {
        match &self.api_token {
            Some(token) if !is_usable_token(token.expose()) => Err(
                "invalid value for '--api-token <API_TOKEN>' (value not shown): a token is 1 to \
                 1024 visible ASCII characters, without spaces (e.g. from `openssl rand -hex 32`); \
                 leave API_TOKEN unset for no authentication"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// How long the answer caches keep an answer (`QUERY_CACHE_MS`; zero turns them off).
    pub fn query_cache(&self) -> Duration {
        Duration::from_millis(self.query_cache_ms)
    }

    /// How old an invalidation log entry must be before every reading it names can be read:
    /// the writers' `INFLUX_TIMEOUT_MS` (taken to be this server's, as they share one `.env`)
    /// plus a margin, as the subscriber reads it (see docs/rollup.md).
    pub fn log_settle(&self) -> Duration {
        Duration::from_millis(self.influx.influx_timeout_ms) + Duration::from_secs(2)
    }

    /// What the HTTP layers between the socket and the routes enforce.
    pub fn policy(&self) -> Policy {
        Policy {
            api_token: self.api_token.clone(),
            cors_origins: self.cors_origins.clone(),
            request_timeout: Duration::from_millis(self.influx.influx_timeout_ms)
                + REQUEST_TIMEOUT_MARGIN,
        }
    }
}

/// A token a client can send verbatim in an `Authorization` header.
fn is_usable_token(token: &str) -> bool {
    (1..=1024).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

fn parse_timezone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("{s:?} is not an IANA time zone name (e.g. Asia/Jakarta)"))
}

/// Read exactly, as written, so that costs are exact (see `energy_core::cost`).
fn parse_tariff(s: &str) -> Result<Price, String> {
    s.parse::<Price>().map_err(|reason| {
        format!("{s:?} is not a price ({reason}; a finite decimal number >= 0, e.g. 1500 or 0.25)")
    })
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
        assert_eq!(s.tariff_per_kwh, Price::new(1500, 0));
        assert_eq!(s.currency, "IDR");
        assert_eq!(s.offline_after_secs, 300);
        assert_eq!(s.max_power_kw.kw(), 5000.0);
        assert_eq!(s.estimate_after_secs, EstimateAfter::DEFAULT);
        assert_eq!(s.rules().estimate_after.secs(), 900);
        assert_eq!(s.api_addr.to_string(), "127.0.0.1:3000");
        assert!(s.api_token.is_none(), "no authentication unless asked for");
        assert_eq!(s.cors_origins, CorsOrigins::None);
    }

    #[test]
    fn the_request_timeout_sits_just_above_the_influxdb_timeout() {
        let s = Settings::try_parse_from(["api-server", "--influx-timeout-ms", "2500"]).unwrap();
        assert_eq!(s.policy().request_timeout, Duration::from_millis(3500));
    }

    #[test]
    fn a_token_must_be_sendable_in_a_header_and_is_never_quoted() {
        for good in ["tok-SECRET-123", "a", "Zm9vYmFy+/=="] {
            let s = Settings::try_parse_from(["api-server", "--api-token", good]).unwrap();
            assert!(s.check_api_token().is_ok(), "{good}");
        }
        let long = "x".repeat(1025);
        for bad in ["", "two words", "tab\there", "naïve", long.as_str()] {
            let s = Settings::try_parse_from(["api-server", "--api-token", bad]).unwrap();
            let message = s.check_api_token().unwrap_err();
            assert!(message.contains("--api-token"), "{message}");
            if !bad.is_empty() {
                assert!(!message.contains(bad), "the token leaked: {message}");
            }
        }
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let s = Settings::try_parse_from(["api-server", "--api-token", "tok-SECRET-123"]).unwrap();
        assert!(!format!("{s:?}").contains("tok-SECRET-123"));
    }

    #[test]
    fn the_tariff_is_read_exactly_in_every_form_it_was_accepted_in() {
        for (value, mantissa, exponent) in [
            ("1500", 15, 2),
            ("0.25", 25, -2),
            ("1444.70", 14447, -1),
            ("1e3", 1, 3),
            ("2.5E-1", 25, -2),
            ("+7", 7, 0),
            (".5", 5, -1),
            ("5.", 5, 0),
            ("0", 0, 0),
            ("-0", 0, 0),
        ] {
            let arg = format!("--tariff-per-kwh={value}");
            let s = Settings::try_parse_from(["api-server", arg.as_str()]).unwrap();
            assert_eq!(
                s.tariffs().plans[0].versions[0].windows[0].rate,
                Price::new(mantissa, exponent),
                "{value}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_setting_and_the_value() {
        for (flag, value) in [
            ("--timezone", "Mars/Olympus"),
            ("--tariff-per-kwh", "-1"),
            ("--tariff-per-kwh", "-0.01"),
            ("--tariff-per-kwh", "NaN"),
            ("--tariff-per-kwh", "inf"),
            ("--tariff-per-kwh", "1e400"),
            ("--tariff-per-kwh", "1,5"),
            ("--tariff-per-kwh", "0.25 EUR"),
            ("--max-power-kw", "0"),
            ("--max-power-kw", "-5"),
            ("--max-power-kw", "NaN"),
            ("--max-power-kw", "inf"),
            ("--max-power-kw", "abc"),
            ("--estimate-after-secs", "0"),
            ("--estimate-after-secs", "-1"),
            ("--estimate-after-secs", "15m"),
            ("--estimate-after-secs", "31536001"),
            ("--offline-after-secs", "soon"),
            ("--api-addr", "localhost"),
            ("--cors-origins", "dash.example"),
        ] {
            let arg = format!("{flag}={value}");
            let err = Settings::try_parse_from(["api-server", arg.as_str()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag) && err.contains(value), "{err}");
        }
    }
}
