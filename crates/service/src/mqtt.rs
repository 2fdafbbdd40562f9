//! MQTT connection settings shared by the publisher and the subscriber (README, "Settings").

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, Transport};

use crate::secret::Secret;

/// The broker flags, flattened into each program's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct MqttSettings {
    /// Broker URL: mqtt://host[:port] or mqtts://host[:port] (TLS, system CA roots).
    #[arg(long, env = "MQTT_URL", default_value = "mqtt://broker.hivemq.com:1883",
          value_parser = BrokerUrl::parse)]
    pub mqtt_url: BrokerUrl,

    /// Broker user name.
    #[arg(long, env = "MQTT_USERNAME")]
    pub mqtt_username: Option<String>,

    /// Broker password (never logged).
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<Secret>,

    /// Topic prefix: readings are published to <prefix>/<PANEL_ID>.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", default_value = "DATA/PM",
          value_parser = parse_topic_prefix)]
    pub mqtt_topic_prefix: String,

    /// MQTT client id [default: <program>-<hostname>, stable per host and program].
    #[arg(long, env = "MQTT_CLIENT_ID")]
    pub mqtt_client_id: Option<String>,

    /// PEM file of the CA to trust for mqtts:// instead of the system roots (a private broker
    /// with its own certificate authority).
    #[arg(long, env = "MQTT_CA_FILE", value_parser = CaFile::read)]
    pub mqtt_ca_file: Option<CaFile>,
}

/// A CA certificate file, read and checked when the settings are parsed so that a missing or
/// unreadable file stops the program at start, naming the setting.
#[derive(Clone, Debug)]
pub struct CaFile {
    pub path: PathBuf,
    pem: Vec<u8>,
}

impl CaFile {
    fn read(path: &str) -> Result<Self, String> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};

        let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{path:?} is not a valid PEM file: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{path:?} holds no PEM certificate"));
        }
        // What the TLS connector does with the file: otherwise a damaged certificate would only
        // show at the first connection, as a broker outage retried forever.
        let (valid, _) = rustls::RootCertStore::empty().add_parsable_certificates(certs);
        if valid == 0 {
            return Err(format!("{path:?} holds no valid certificate"));
        }
        Ok(Self {
            path: PathBuf::from(path),
            pem,
        })
    }
}

/// Whether the broker refused our credentials. Retrying cannot help, so the programs stop
/// with a clear error instead of looping quietly.
pub fn credentials_refused(error: &ConnectionError) -> bool {
    matches!(
        error,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        )
    )
}

/// A parsed broker URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(format!("{s:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') || rest.contains('/') || rest.contains('?') {
            return Err(format!(
                "{s:?} must be scheme://host[:port]; give credentials as MQTT_USERNAME/MQTT_PASSWORD"
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{s:?} has a bad port {port:?}"))?;
                (host, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

fn parse_topic_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the topic prefix must not be empty".into());
    }
    if s.contains(['#', '+', '\0']) {
        return Err(format!("{s:?} must not contain MQTT wildcards (# or +)"));
    }
    if s.ends_with('/') || s.starts_with('/') {
        return Err(format!("{s:?} must not start or end with '/'"));
    }
    Ok(s.to_owned())
}

impl MqttSettings {
    /// The client id to use: the configured one, or `<program>-<hostname>`, which stays the same
    /// across restarts so a persistent session finds its queued messages again.
    pub fn client_id(&self, program: &str) -> String {
        self.mqtt_client_id.clone().unwrap_or_else(|| {
            let host: String = hostname()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect();
            format!("{program}-{host}")
        })
    }

    /// rumqttc options for this broker. Keep-alive is short so a dead connection is noticed
    /// within seconds, not minutes.
    pub fn options(&self, program: &str) -> MqttOptions {
        let url = &self.mqtt_url;
        let mut options = MqttOptions::new(self.client_id(program), url.host.clone(), url.port);
        options.set_keep_alive(Duration::from_secs(15));
        if url.tls {
            // rustls needs one process-wide crypto provider; a second install is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            options.set_transport(match &self.mqtt_ca_file {
                Some(ca) => Transport::tls(ca.pem.clone(), None, None),
                None => Transport::tls_with_default_config(),
            });
        }
        if let Some(user) = &self.mqtt_username {
            let password = self
                .mqtt_password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        options
    }

    /// The topic of one panel.
    pub fn topic(&self, panel: &str) -> String {
        format!("{}/{panel}", self.mqtt_topic_prefix)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports() {
        assert_eq!(
            BrokerUrl::parse("mqtt://broker.hivemq.com").unwrap(),
            BrokerUrl {
                tls: false,
                host: "broker.hivemq.com".into(),
                port: 1883
            }
        );
        assert_eq!(
            BrokerUrl::parse("mqtts://h:8884").unwrap(),
            BrokerUrl {
                tls: true,
                host: "h".into(),
                port: 8884
            }
        );
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1884").unwrap().host, "::1");
    }

    #[test]
    fn bad_broker_urls_say_why() {
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u:p@h",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn wildcards_are_not_a_prefix() {
        assert!(parse_topic_prefix("DATA/#").is_err());
        assert!(parse_topic_prefix("DATA/PM/").is_err());
        assert!(parse_topic_prefix("DATA/PM").is_ok());
    }
}
