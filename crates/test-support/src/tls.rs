//! A secured private broker for one test: a throw-away certificate authority and server
//! certificate made with the `openssl` CLI, and a Mosquitto password file made with
//! `mosquitto_passwd`, all in a temporary directory that is removed when it is dropped.
//!
//! Start the broker with [`crate::Mosquitto::start_secure`] and keep the [`BrokerSecurity`]
//! alive as long as the broker (Mosquitto reads the files again when it restarts).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::process::{self, INSTALL_HINT};

/// The names the server certificate is valid for: rustls checks an IP address against the
/// certificate's IP SANs, a host name against its DNS SANs, so both are there.
const SERVER_NAMES: &str = "IP:127.0.0.1,DNS:localhost";

/// A CA, a server certificate it signed (for 127.0.0.1 and localhost), and optionally a
/// password file, for a TLS listener of a private Mosquitto.
pub struct BrokerSecurity {
    /// PEM certificate of the CA; what clients must trust (`MQTT_CA_FILE`).
    pub ca_file: PathBuf,
    /// PEM server certificate signed by the CA.
    pub cert_file: PathBuf,
    /// PEM private key of the server certificate (unencrypted).
    pub key_file: PathBuf,
    /// Mosquitto password file, if users were given; anonymous clients are refused then.
    pub password_file: Option<PathBuf>,
    dir: TempDir,
}

impl BrokerSecurity {
    /// Generates a fresh CA and server certificate (ECDSA P-256, valid from now for two days),
    /// and, unless `users` is empty, a password file with these `(user, password)` pairs.
    pub fn generate(users: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("test-broker-tls-")
            .tempdir()
            .expect("create a temp dir for certificates");
        let path = |name: &str| dir.path().join(name);
        let (ca_file, ca_key) = (path("ca.pem"), path("ca.key"));
        let (cert_file, key_file) = (path("server.pem"), path("server.key"));
        let (csr, extensions) = (path("server.csr"), path("server.ext"));

        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=energy-monitoring test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &show(&ca_key),
                "-out",
                &show(&ca_file),
            ],
        );
        openssl(
            dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &show(&key_file),
                "-out",
                &show(&csr),
            ],
        );
        std::fs::write(
            &extensions,
            format!(
                "basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\n\
                 subjectAltName={SERVER_NAMES}\n"
            ),
        )
        .expect("write the certificate extensions file");
        // A random serial: two CAs of parallel tests must not issue look-alike certificates.
        let serial = format!(
            "0x{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &show(&csr),
                "-CA",
                &show(&ca_file),
                "-CAkey",
                &show(&ca_key),
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &show(&extensions),
                "-out",
                &show(&cert_file),
            ],
        );

        let password_file = (!users.is_empty()).then(|| {
            let file = path("passwords");
            for (i, (user, password)) in users.iter().enumerate() {
                // -c creates (truncates) the file: only for the first user.
                let mut args = vec!["-b"];
                if i == 0 {
                    args.push("-c");
                }
                let file_arg = show(&file);
                args.extend([file_arg.as_str(), user, password]);
                run("mosquitto_passwd", dir.path(), &args);
            }
            file
        });

        BrokerSecurity {
            ca_file,
            cert_file,
            key_file,
            password_file,
            dir,
        }
    }

    /// Mosquitto config lines that put the listener configured just before them on TLS with
    /// these files and, with a password file, refuse anonymous clients.
    pub fn mosquitto_config(&self) -> String {
        let mut config = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            self.ca_file.display(),
            self.cert_file.display(),
            self.key_file.display()
        );
        if let Some(file) = &self.password_file {
            config.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                file.display()
            ));
        }
        config
    }

    /// The directory holding the files (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

fn openssl(dir: &Path, args: &[&str]) {
    run("openssl", dir, args);
}

/// Runs a tool to completion; panics with its output if it is missing or fails.
fn run(tool: &str, dir: &Path, args: &[&str]) {
    let exe = process::find_executable(tool).unwrap_or_else(|| {
        panic!("`{tool}` is not installed: install it with `{INSTALL_HINT} openssl`")
    });
    let output = Command::new(&exe)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    if !output.status.success() {
        panic!(
            "{tool} {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
