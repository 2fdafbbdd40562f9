//! `api-server`: the REST API of the README's "REST API" over what the subscriber stored in InfluxDB, a
//! live stream of the panels' state, and the dashboard that shows them.

mod access_log;
mod alerts;
mod answers;
mod auth;
mod billing;
mod cache;
mod cors;
mod csv;
mod dashboard;
mod error;
mod intervals;
mod ledger;
mod limits;
mod live;
mod metrics;
mod openapi;
mod pricing;
mod rendered;
mod routes;
mod server;
mod settings;
mod state;
mod store;
mod stream;
mod virtual_meters;

use std::sync::Arc;

use energy_influx::InfluxClient;

use crate::live::LiveFeed;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Store;

// jemalloc, not glibc's malloc: see `energy_service::allocator`.
energy_service::use_jemalloc!();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    energy_service::load_dotenv();
    let settings = Settings::load();
    energy_service::logging::init(settings.log_format);

    let influx = match InfluxClient::new(&settings.influx) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the InfluxDB client");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.api_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, addr = %settings.api_addr, "cannot listen on API_ADDR");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Before anything records, so that nothing is recorded into the void.
    let metrics = crate::metrics::install();
    tokio::spawn(crate::metrics::upkeep(metrics.clone()));
    let state = Arc::new(AppState {
        store: Store::new(influx.clone(), &settings),
        answers: Arc::new(crate::cache::QueryCache::new(settings.query_cache())),
        timezone: settings.timezone,
        tariffs: settings.tariffs(),
        meters: settings.meters(),
        offline_after_secs: settings.offline_after_secs,
        alerts: settings.alerts().map(|loaded| crate::alerts::AlertRules {
            alerts: loaded.alerts,
            evaluator: settings.alerts_evaluator,
            journal: influx.clone(),
        }),
        live: LiveFeed::new(),
        metrics,
    });
    if let Some(loaded) = settings.alerts().filter(|_| settings.alerts_evaluator) {
        let (deliver, entries) = tokio::sync::mpsc::channel(crate::alerts::delivery::QUEUE);
        let mqtt = loaded.alerts.mqtt.as_ref().map(|target| {
            let prefix = target
                .topic_prefix
                .clone()
                .unwrap_or_else(|| settings.mqtt.mqtt_topic_prefix.clone());
            (settings.mqtt.clone(), prefix)
        });
        let targets =
            crate::alerts::delivery::Targets::new(&loaded.alerts.webhooks, &loaded.secrets, mqtt);
        tokio::spawn(crate::alerts::delivery::run(
            targets,
            influx.clone(),
            entries,
        ));
        let every = std::time::Duration::from_secs(settings.alerts_interval_secs);
        tokio::spawn(crate::alerts::evaluator::run(state.clone(), every, deliver));
    }
    let sweeper = state.clone();
    tokio::spawn(async move { sweeper.store.sweep_cache().await });
    let sweeper = state.clone();
    tokio::spawn(async move { sweeper.answers.sweep().await });
    let policy = settings.policy();
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        influx = %settings.influx.influx_url,
        database = %settings.influx.influx_database,
        timezone = %settings.timezone,
        tariffs = %state.tariffs.plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
        tariff_file = %settings.tariff_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        virtual_meters = state.meters.virtual_meters().count(),
        authentication = if policy.api_token.is_some() { "bearer token" } else { "none" },
        cors = ?policy.cors_origins,
        "listening"
    );
    let app = server::protect(openapi::app(state.clone()), &policy);
    let shutdown = async move {
        energy_service::shutdown::signal().await;
        // Live streams never finish by themselves: end them, so that shutdown waits only for
        // ordinary requests.
        state.live.close();
    };
    server::serve(listener, app, shutdown).await;
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}
