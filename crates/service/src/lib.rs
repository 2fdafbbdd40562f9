//! What the three programs share at run time but the pure core must not know about: reading
//! `.env`, starting tracing, MQTT connection settings, secrets and the shutdown signal.

pub mod allocator;
pub mod logging;
pub mod mqtt;
pub mod secret;
pub mod shutdown;

pub use secret::Secret;

/// Reads `.env` from the working directory if there is one. Variables already set in the
/// environment win, so `FOO=1 program` overrides the file.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}
