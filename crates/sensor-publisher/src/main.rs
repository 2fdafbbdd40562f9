//! `sensor-publisher`: simulates the building's panel power meters and publishes one reading
//! per panel per interval to `<prefix>/<PANEL_ID>` over MQTT (README).

mod backfill;
mod connection;
mod message;
mod publisher;
mod settings;
mod simulation;
mod state;

use std::process::ExitCode;

use clap::Parser;

use crate::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    energy_service::load_dotenv();
    let settings = Settings::parse();
    energy_service::logging::init(settings.log_format);
    let result = match settings.backfill {
        Some(days) => backfill::run(settings, days)
            .await
            .map_err(|e| e.to_string()),
        None => publisher::run(settings).await.map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
