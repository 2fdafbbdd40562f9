//! The state every handler reads: the [`AppState`] the router is built with (see
//! `openapi::app`), made once in `main`.

use std::sync::Arc;

use chrono_tz::Tz;
use energy_core::{Meters, Tariffs};

use crate::live::LiveFeed;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    /// The polled endpoints' rendered answers (see [`crate::rendered`]).
    pub answers: Arc<crate::rendered::Answers>,
    pub timezone: Tz,
    /// Every cost is priced by these (`TARIFF_FILE`, or `TARIFF_PER_KWH` for every kWh).
    pub tariffs: Tariffs,
    /// The panels' places and the virtual meters (`METERS_FILE`; none without it).
    pub meters: Meters,
    pub offline_after_secs: u64,
    /// The alert rules (`ALERTS_FILE`), when there are any.
    pub alerts: Option<crate::alerts::AlertRules>,
    /// The panels' live state for `/api/panel/stream`.
    pub live: LiveFeed,
    /// Renders `/metrics` (see [`crate::metrics`]).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// State whose InfluxDB refuses every connection (nothing listens on port 9).
    pub(crate) fn offline_state() -> Arc<AppState> {
        use clap::Parser;
        let settings = crate::settings::Settings::try_parse_from([
            "api-server",
            "--influx-url",
            "http://127.0.0.1:9",
        ])
        .unwrap();
        let influx = energy_influx::InfluxClient::new(&settings.influx).unwrap();
        Arc::new(AppState {
            store: Store::new(influx, &settings),
            answers: Arc::new(crate::cache::QueryCache::new(settings.query_cache())),
            timezone: settings.timezone,
            tariffs: settings.tariffs(),
            meters: settings.meters(),
            offline_after_secs: settings.offline_after_secs,
            alerts: None,
            live: LiveFeed::new(),
            metrics: crate::metrics::install(),
        })
    }
}
