//! `mqtt-subscriber` started for a test.

use std::time::Duration;

use crate::{Influx, Mosquitto, Program};

/// Starts `mqtt-subscriber` against `broker` and `influx` (database `energy`, a 2 s InfluxDB
/// timeout, a summary line every second), with the settings in `extra` added or replacing
/// those, and waits until it has subscribed.
pub fn start_subscriber(
    broker: &Mosquitto,
    influx: &Influx,
    client_id: &str,
    extra: &[(&str, String)],
) -> Program {
    let mut envs = vec![
        ("MQTT_URL", broker.url()),
        ("MQTT_CLIENT_ID", client_id.to_owned()),
        ("INFLUX_URL", influx.url()),
        ("INFLUX_DATABASE", "energy".to_owned()),
        ("INFLUX_TIMEOUT_MS", "2000".to_owned()),
        ("SUMMARY_INTERVAL_SECS", "1".to_owned()),
    ];
    for (key, value) in extra {
        envs.retain(|(k, _)| k != key);
        envs.push((key, value.clone()));
    }
    let program = Program::start("mqtt-subscriber", &envs);
    program.wait_for_output("subscribed", Duration::from_secs(30));
    program
}
