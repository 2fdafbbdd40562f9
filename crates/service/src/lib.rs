//! What the three programs share at run time but the pure core must not know about: reading
//! `.env`, starting tracing, MQTT connection settings, secrets and the shutdown signal.

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

/// Parses `MAX_POWER_KW`, the glitch threshold of the usage maths (docs/accounting.md), which the
/// subscriber (for the rollup) and the api-server must agree on.
pub fn parse_max_power(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a power in kW (a finite number > 0)")),
    }
}
