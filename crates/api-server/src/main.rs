//! `api-server`: the REST API of CONTRACT §6 over what the subscriber stored in InfluxDB, a
//! live stream of the panels' state, and the dashboard that shows them.

mod access_log;
mod auth;
mod cache;
mod cors;
mod dashboard;
mod error;
mod limits;
mod metrics;
mod openapi;
mod routes;
mod server;
mod settings;
mod store;
mod stream;

use std::sync::Arc;

use energy_influx::InfluxClient;

use crate::routes::AppState;
use crate::settings::Settings;
use crate::store::Store;
use crate::stream::LiveFeed;

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
        store: Store::new(
            influx,
            settings.max_power_kw,
            std::time::Duration::from_millis(settings.query_cache_ms),
        ),
        timezone: settings.timezone,
        tariff: settings.tariff(),
        offline_after_secs: settings.offline_after_secs,
        live: LiveFeed::new(),
        metrics,
    });
    let policy = settings.policy();
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        influx = %settings.influx.influx_url,
        database = %settings.influx.influx_database,
        timezone = %settings.timezone,
        authentication = if policy.api_token.is_some() { "bearer token" } else { "none" },
        cors = ?policy.cors_origins,
        "listening"
    );
    let app = server::protect(routes::app(state.clone()), &policy);
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
