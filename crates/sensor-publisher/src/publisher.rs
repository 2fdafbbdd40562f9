//! The publishing loop: one round of readings per interval, one reading per panel, each round
//! saved to the state file; on SIGINT/SIGTERM a last save and a clean disconnect.

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use energy_core::Reading;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rumqttc::{AsyncClient, QoS};
use tokio::time::{Instant, MissedTickBehavior};

use crate::connection::Connection;
use crate::message::Message;
use crate::settings::Settings;
use crate::simulation::{self, Meter};
use crate::state::{State, StateError, StateFile};

/// The name the MQTT client id is derived from.
const PROGRAM: &str = "sensor-publisher";

/// How long a shutdown waits for the broker to acknowledge what was published.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs until SIGINT or SIGTERM. Fails only at start, when the state file cannot be used.
pub async fn run(settings: Settings) -> Result<(), StateError> {
    let state_file = StateFile::new(&settings.state_file);
    let mut state = load_state(&state_file)?;
    let mut meters = meters(&settings, &state);
    // Writing once before anything is published proves the file can be written, so a bad
    // STATE_FILE stops the program now rather than after a day of registers it could not keep.
    state_file.save(&state)?;

    tracing::info!(
        broker = %format_args!("{}:{}", settings.mqtt.mqtt_url.host, settings.mqtt.mqtt_url.port),
        tls = settings.mqtt.mqtt_url.tls,
        topic_prefix = settings.mqtt.mqtt_topic_prefix,
        panels = meters.len(),
        interval_secs = settings.publish_interval_secs.0.as_secs(),
        timezone = %settings.timezone,
        "sensor-publisher starting"
    );
    let connection = Connection::start(&settings.mqtt, PROGRAM);
    let mut rng = StdRng::from_entropy();
    let mut ticks = tokio::time::interval(settings.publish_interval_secs.0);
    // After a stall (a suspended laptop), carry on at the normal pace instead of bursting.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = energy_service::shutdown::signal();
    tokio::pin!(shutdown);

    let mut previous_round: Option<Instant> = None;
    let mut published: u64 = 0;
    let mut saving_fails = false;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // The first tick completes at once: the first round goes out at start.
            _ = ticks.tick() => {}
        }
        // Elapsed time comes from the monotonic clock, so a wall-clock step (NTP) neither adds
        // nor removes energy. The first round after a start has nothing elapsed: the time the
        // program was down is not simulated, and the registers continue where they stopped.
        let started = Instant::now();
        let elapsed = previous_round.map_or(Duration::ZERO, |previous| started - previous);
        previous_round = Some(started);
        // Millisecond precision, the same as the published timestamp.
        let now = Utc::now().trunc_subsecs(3);

        for meter in &mut meters {
            let reading = meter.read(now, elapsed, settings.timezone, &mut rng);
            let topic = settings.mqtt.topic(reading.panel.as_str());
            if publish(&connection.client, topic, &reading) {
                published += 1;
            }
            // Even a reading that could not be queued advanced the register; the next one
            // that reaches the broker carries the energy.
            state.record(&reading);
        }
        // Logged when saving starts and stops failing, not every round.
        match state_file.save(&state) {
            Ok(()) if saving_fails => {
                saving_fails = false;
                tracing::info!(path = %state_file.path().display(), "state file saved again");
            }
            Ok(()) => {}
            Err(error) if !saving_fails => {
                saving_fails = true;
                tracing::error!(
                    "{error}; publishing goes on, but a restart would resume older registers"
                );
            }
            Err(_) => {}
        }
    }

    tracing::info!("shutting down");
    if let Err(error) = state_file.save(&state) {
        tracing::error!("{error}");
    }
    let unacknowledged = connection.close(published, SHUTDOWN_GRACE).await;
    if unacknowledged > 0 {
        tracing::warn!(
            unacknowledged,
            "readings not acknowledged by the broker before shutdown"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

pub(crate) fn load_state(state_file: &StateFile) -> Result<State, StateError> {
    let path = state_file.path().display();
    match state_file.load()? {
        Some(state) => {
            tracing::info!(%path, panels = state.panels.len(), "loaded state file");
            Ok(state)
        }
        None => {
            tracing::info!(%path, "no state file yet; new registers start at a plausible value");
            Ok(State::default())
        }
    }
}

/// One meter per configured panel, each continuing its saved register or, for a panel never
/// seen, starting at a plausible register derived from its id.
pub(crate) fn meters(settings: &Settings, state: &State) -> Vec<Meter> {
    settings
        .panels
        .0
        .iter()
        .map(|panel| {
            let energy_kwh = match state.energy_kwh(panel) {
                Some(saved) => {
                    tracing::info!(%panel, energy_kwh = saved, "continuing saved register");
                    saved
                }
                None => {
                    let start = simulation::initial_register_kwh(panel);
                    tracing::info!(%panel, energy_kwh = start, "starting new register");
                    start
                }
            };
            Meter::new(panel.clone(), energy_kwh)
        })
        .collect()
}

/// Hands one reading to the MQTT client: QoS 1, not retained. Never waits for the broker;
/// returns whether the reading was queued.
fn publish(client: &AsyncClient, topic: String, reading: &Reading) -> bool {
    let message = Message::from_reading(reading);
    match client.try_publish(topic.clone(), QoS::AtLeastOnce, false, message.to_payload()) {
        Ok(()) => {
            tracing::info!(
                panel = %reading.panel,
                power_kw = message.power_kw,
                energy_kwh = message.energy_kwh,
                // Not `timestamp`: JSON logs already have that key for the log line's time.
                reading_time = message.timestamp,
                topic,
                "published reading"
            );
            true
        }
        Err(error) => {
            // The only way this fails in practice is a full queue after a long broker outage.
            tracing::warn!(
                panel = %reading.panel,
                topic,
                %error,
                "reading dropped: the queue of unsent readings is full"
            );
            false
        }
    }
}
