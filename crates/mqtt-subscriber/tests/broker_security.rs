//! Broker security end to end: both MQTT programs against a private Mosquitto that speaks only
//! TLS (with a certificate from a CA made for the test) and only to known users (README, "Settings":
//! `mqtts://`, `MQTT_CA_FILE`, `MQTT_USERNAME`, `MQTT_PASSWORD`, secrets never logged).
//!
//! The test-support MQTT client speaks plain TCP only, so the sensor-publisher is the client that
//! puts readings on the secured broker.

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::{
    free_port, run_to_exit, wait_until, BrokerSecurity, Influx, Mosquitto, Program,
};

const DB: &str = "energy";
const USER: &str = "energy-meter";
/// The broker password, also the string that must never show up in any output.
const PASSWORD: &str = "mqtt-SECRET-789";
const WRONG_PASSWORD: &str = "mqtt-WRONG-SECRET-321";
const INFLUX_TOKEN: &str = "influx-SECRET-456";

/// How long a program that the broker refuses may take to give up (it connects within
/// milliseconds on loopback; the rest is slack for a loaded machine).
const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);

/// A broker on TLS that knows one user, [`USER`] with [`PASSWORD`].
fn secured() -> BrokerSecurity {
    BrokerSecurity::generate(&[(USER, PASSWORD)])
}

/// The broker settings of either program: `url`, the CA to trust (none = system roots) and the
/// credentials (none = anonymous).
fn mqtt_env(
    url: String,
    ca_file: Option<&Path>,
    credentials: Option<(&str, &str)>,
) -> Vec<(&'static str, String)> {
    let mut env = vec![("MQTT_URL", url)];
    if let Some(ca) = ca_file {
        env.push(("MQTT_CA_FILE", ca.display().to_string()));
    }
    if let Some((user, password)) = credentials {
        env.push(("MQTT_USERNAME", user.to_owned()));
        env.push(("MQTT_PASSWORD", password.to_owned()));
    }
    env
}

/// Subscriber settings on top of `mqtt`: InfluxDB at `influx_url`, a one-second summary.
fn subscriber_env(
    mut mqtt: Vec<(&'static str, String)>,
    client_id: &str,
    influx_url: String,
) -> Vec<(&'static str, String)> {
    mqtt.extend([
        ("MQTT_CLIENT_ID", client_id.to_owned()),
        ("INFLUX_URL", influx_url),
        ("INFLUX_DATABASE", DB.to_owned()),
        ("INFLUX_TIMEOUT_MS", "2000".to_owned()),
        ("SUMMARY_INTERVAL_SECS", "1".to_owned()),
    ]);
    mqtt
}

/// Publisher settings on top of `mqtt`: `panels`, one reading per panel a second.
fn publisher_env(
    mut mqtt: Vec<(&'static str, String)>,
    client_id: &str,
    panels: &str,
) -> Vec<(&'static str, String)> {
    mqtt.extend([
        ("MQTT_CLIENT_ID", client_id.to_owned()),
        ("PANELS", panels.to_owned()),
        ("PUBLISH_INTERVAL_SECS", "1".to_owned()),
    ]);
    mqtt
}

/// The same settings with one variable added or replaced.
fn with(
    mut env: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.to_owned()));
    env
}

/// A URL whose port nobody listens on: InfluxDB is not needed before the broker lets us in.
fn no_influx() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Panics if `output` of `what` contains any of the secrets.
fn assert_no_secret(what: &str, output: &str) {
    for secret in [PASSWORD, WRONG_PASSWORD, INFLUX_TOKEN] {
        assert!(
            !output.contains(secret),
            "{what} printed the secret {secret:?}:\n{output}"
        );
    }
}

/// Runs `program` until it exits on its own and checks it stopped because the broker refused
/// its credentials: exit code 1 within [`REFUSAL_DEADLINE`], an error naming both settings, and
/// no secret in the output.
fn assert_refused(program: &str, env: &[(&str, String)]) {
    let started = Instant::now();
    let (code, output) = run_to_exit(program, &[], env, REFUSAL_DEADLINE + Duration::from_secs(5));
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{program} exit code; output:\n{output}");
    assert!(
        took < REFUSAL_DEADLINE,
        "{program} took {took:?} to give up"
    );
    for needle in ["MQTT_USERNAME", "MQTT_PASSWORD", "refused"] {
        assert!(
            output.contains(needle),
            "{program} did not say {needle:?}:\n{output}"
        );
    }
    assert_no_secret(program, &output);
}

#[test]
fn mqtts_with_a_private_ca_and_a_password_ingests() {
    let security = secured();
    let broker = Mosquitto::start_secure(&security);
    let influx = Influx::start();
    let ca = Some(security.ca_file.as_path());
    let login = Some((USER, PASSWORD));

    // The certificate names both 127.0.0.1 (an IP SAN, which rustls needs for an address) and
    // localhost (a DNS SAN): the subscriber uses one, the publisher the other.
    let mut subscriber = Program::start(
        "mqtt-subscriber",
        &subscriber_env(
            mqtt_env(broker.tls_url(), ca, login),
            "tls-subscriber",
            influx.url(),
        ),
    );
    subscriber.wait_for_output("subscribed", Duration::from_secs(20));
    let mut publisher = Program::start(
        "sensor-publisher",
        &publisher_env(
            mqtt_env(format!("mqtts://localhost:{}", broker.port), ca, login),
            "tls-publisher",
            "TLS_A,TLS_B",
        ),
    );
    publisher.wait_for_output("connected to the MQTT broker", Duration::from_secs(20));

    wait_until(Duration::from_secs(20), "readings of both panels", || {
        influx.panels(DB) == ["TLS_A", "TLS_B"]
    });
    assert!(
        subscriber.output().contains("tls=true"),
        "{}",
        subscriber.output()
    );

    assert_eq!(publisher.terminate(), Some(0), "publisher exit code");
    assert_eq!(subscriber.terminate(), Some(0), "subscriber exit code");
    assert_no_secret("the subscriber", &subscriber.output());
    assert_no_secret("the publisher", &publisher.output());
    // The broker saw the user log in over TLS, not an anonymous client.
    assert!(broker.log().contains(USER), "broker log:\n{}", broker.log());
}

#[test]
fn a_wrong_password_fails_with_a_clear_error() {
    let security = secured();
    let broker = Mosquitto::start_secure(&security);
    let ca = Some(security.ca_file.as_path());
    let refused_logins = [
        ("a wrong password", Some((USER, WRONG_PASSWORD))),
        ("an unknown user", Some(("nobody", PASSWORD))),
        // Also proves the broker demands credentials at all.
        ("no credentials", None),
    ];
    for (case, login) in refused_logins {
        eprintln!("case: {case}");
        let mqtt = mqtt_env(broker.tls_url(), ca, login);
        assert_refused(
            "mqtt-subscriber",
            &subscriber_env(mqtt.clone(), "refused-subscriber", no_influx()),
        );
        assert_refused(
            "sensor-publisher",
            &publisher_env(mqtt, "refused-publisher", "P1"),
        );
    }
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let security = secured();
    let broker = Mosquitto::start_secure(&security);
    let influx = Influx::start();
    let login = Some((USER, PASSWORD));

    // A publisher that trusts the CA, so there are readings the subscriber could ingest.
    let trusting = Program::start(
        "sensor-publisher",
        &publisher_env(
            mqtt_env(broker.tls_url(), Some(&security.ca_file), login),
            "trusting-publisher",
            "UNTRUSTED_1",
        ),
    );
    trusting.wait_for_output("connected to the MQTT broker", Duration::from_secs(20));

    // Without MQTT_CA_FILE the system roots decide, and they do not know the test CA.
    let mut subscriber = Program::start(
        "mqtt-subscriber",
        &subscriber_env(
            mqtt_env(broker.tls_url(), None, login),
            "untrusting-subscriber",
            influx.url(),
        ),
    );
    let mut publisher = Program::start(
        "sensor-publisher",
        &publisher_env(
            mqtt_env(broker.tls_url(), None, login),
            "untrusting-publisher",
            "UNTRUSTED_2",
        ),
    );
    for program in [&subscriber, &publisher] {
        program.wait_for_output("UnknownIssuer", Duration::from_secs(20));
    }
    // A TLS failure may be a network problem that passes, so both keep retrying (unlike a
    // refused password), and never get in: nothing is ingested.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        subscriber.wait_exit(Duration::ZERO),
        None,
        "subscriber exited"
    );
    assert_eq!(
        publisher.wait_exit(Duration::ZERO),
        None,
        "publisher exited"
    );
    let subscriber_output = subscriber.output();
    assert!(
        !subscriber_output.contains("connected to the broker")
            && !subscriber_output.contains("subscribed"),
        "{subscriber_output}"
    );
    assert!(
        !publisher.output().contains("connected to the MQTT broker"),
        "{}",
        publisher.output()
    );
    assert_eq!(
        influx.count_points(DB),
        0,
        "{}",
        influx.panels(DB).join(",")
    );
    subscriber.kill();
    publisher.kill();
    assert_no_secret("the subscriber", &subscriber_output);
    assert_no_secret("the publisher", &publisher.output());
}

#[test]
fn a_missing_ca_file_stops_the_program_naming_the_setting() {
    let security = BrokerSecurity::generate(&[]);
    let missing = Path::new("/nonexistent/energy-ca.pem");
    // A PEM file, but of a private key: an easy mistake to make.
    let key = security.key_file.as_path();
    // Certificate armour around bytes that are no certificate (a damaged copy), and text that
    // is not even base64: both must stop the program at start, not at the first connection.
    let damaged = security.dir().join("damaged-ca.pem");
    std::fs::write(
        &damaged,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let garbled = security.dir().join("garbled-ca.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for ca_file in [missing, key, &damaged, &garbled] {
        let mqtt = mqtt_env(
            "mqtts://127.0.0.1:8883".to_owned(),
            Some(ca_file),
            Some((USER, PASSWORD)),
        );
        for (program, env) in [
            (
                "mqtt-subscriber",
                subscriber_env(mqtt.clone(), "ca-subscriber", no_influx()),
            ),
            (
                "sensor-publisher",
                publisher_env(mqtt, "ca-publisher", "P1"),
            ),
        ] {
            let (code, output) = run_to_exit(program, &[], &env, Duration::from_secs(10));
            assert_eq!(
                code,
                Some(2),
                "{program} with {ca_file:?}; output:\n{output}"
            );
            assert!(output.contains("--mqtt-ca-file"), "{program}: {output}");
            assert!(
                output.contains(&ca_file.display().to_string()),
                "{program}: {output}"
            );
            assert_no_secret(program, &output);
        }
    }
}

#[test]
fn secrets_never_appear_in_logs() {
    let security = secured();
    let mut broker = Mosquitto::start_secure(&security);
    let mut influx = Influx::start();
    let ca = Some(security.ca_file.as_path());
    let login = Some((USER, PASSWORD));

    // Two pipelines at debug level, one logging text and one JSON, each on its own topic prefix
    // with its own panel.
    let pipelines: Vec<(Program, Program)> = [("text", "TEXT"), ("json", "JSON")]
        .into_iter()
        .map(|(format, panel)| {
            let mqtt = with(
                mqtt_env(broker.tls_url(), ca, login),
                "MQTT_TOPIC_PREFIX",
                &format!("SECRETS/{panel}"),
            );
            let common = |env| with(with(env, "RUST_LOG", "debug"), "LOG_FORMAT", format);
            let subscriber = Program::start(
                "mqtt-subscriber",
                &with(
                    common(subscriber_env(
                        mqtt.clone(),
                        &format!("secrets-subscriber-{format}"),
                        influx.url(),
                    )),
                    "INFLUX_TOKEN",
                    INFLUX_TOKEN,
                ),
            );
            subscriber.wait_for_output("subscribed", Duration::from_secs(20));
            let publisher = Program::start(
                "sensor-publisher",
                &common(publisher_env(
                    mqtt,
                    &format!("secrets-publisher-{format}"),
                    &format!("SECRETS_{panel}"),
                )),
            );
            (subscriber, publisher)
        })
        .collect();
    let both = ["SECRETS_JSON", "SECRETS_TEXT"];
    wait_until(
        Duration::from_secs(20),
        "readings of both pipelines",
        || influx.panels(DB) == both,
    );

    // Error paths: InfluxDB away (the subscribers retry their writes), then the broker away
    // (both programs reconnect, sending their credentials again).
    influx.stop();
    for (subscriber, _) in &pipelines {
        subscriber.wait_for_output("write failed; retrying", Duration::from_secs(20));
    }
    influx.restart();
    broker.stop();
    for (subscriber, publisher) in &pipelines {
        subscriber.wait_for_output("broker connection lost", Duration::from_secs(20));
        publisher.wait_for_output("MQTT broker unreachable", Duration::from_secs(20));
    }
    broker.restart();
    for (subscriber, publisher) in &pipelines {
        subscriber.wait_for_output("reconnected to the broker", Duration::from_secs(20));
        publisher.wait_for_output("reconnected to the MQTT broker", Duration::from_secs(20));
    }
    let before = influx.count_points(DB);
    wait_until(
        Duration::from_secs(20),
        "new points after the outages",
        || influx.count_points(DB) >= before + 4,
    );

    for (mut subscriber, mut publisher) in pipelines {
        assert_eq!(publisher.terminate(), Some(0), "publisher exit code");
        assert_eq!(subscriber.terminate(), Some(0), "subscriber exit code");
        let (subscriber_output, publisher_output) = (subscriber.output(), publisher.output());
        // Debug level really was on, so the check below covers the chattiest logs.
        assert!(subscriber_output.contains("DEBUG"), "{subscriber_output}");
        assert_no_secret("the subscriber", &subscriber_output);
        assert_no_secret("the publisher", &publisher_output);
    }

    // A refused password, at debug level, in both formats.
    for format in ["text", "json"] {
        let mqtt = mqtt_env(broker.tls_url(), ca, Some((USER, WRONG_PASSWORD)));
        let common = |env| with(with(env, "RUST_LOG", "debug"), "LOG_FORMAT", format);
        assert_refused(
            "mqtt-subscriber",
            &with(
                common(subscriber_env(
                    mqtt.clone(),
                    "wrong-subscriber",
                    influx.url(),
                )),
                "INFLUX_TOKEN",
                INFLUX_TOKEN,
            ),
        );
        assert_refused(
            "sensor-publisher",
            &common(publisher_env(mqtt, "wrong-publisher", "P1")),
        );
    }

    // --help describes the settings, with the environment set, but shows no secret value.
    let mqtt = mqtt_env(broker.tls_url(), ca, login);
    for (program, env) in [
        (
            "mqtt-subscriber",
            with(
                subscriber_env(mqtt.clone(), "help", influx.url()),
                "INFLUX_TOKEN",
                INFLUX_TOKEN,
            ),
        ),
        ("sensor-publisher", publisher_env(mqtt, "help", "P1")),
    ] {
        let (code, output) = run_to_exit(program, &["--help"], &env, Duration::from_secs(10));
        assert_eq!(code, Some(0), "{program} --help: {output}");
        assert!(
            output.contains("MQTT_PASSWORD"),
            "{program} --help: {output}"
        );
        assert_no_secret(&format!("{program} --help"), &output);
    }
}
