//! The pure core of the energy monitor: everything the three programs agree on, with no I/O
//! and no clock of its own (callers pass "now").
//!
//! One reading flows through it like this: an MQTT topic and payload become a validated
//! [`Reading`] ([`reading::parse_message`]), which becomes one line of line protocol
//! ([`line_protocol::encode`]). On the way back, rows read from InfluxDB become
//! [`usage::EnergyPoint`]s, whose pairs the usage maths ([`usage`]) turns into [`usage::Usage`]
//! per local-time [`period::Period`], priced by a [`cost::Tariff`].

pub mod alerts;
pub mod apportion;
pub mod bill;
pub mod cost;
pub mod influxql;
pub mod invalidation;
pub mod line_protocol;
pub mod meters;
pub mod panel;
pub mod period;
pub mod reading;
pub mod rollup;
pub mod status;
pub mod tariff;
mod toml_file;
pub mod usage;

pub use cost::{Cost, Price, Tariff};
pub use meters::Meters;
pub use panel::PanelId;
pub use period::Period;
pub use reading::{Reading, Rejection};
pub use status::Status;
pub use tariff::Tariffs;
pub use usage::{Energy, EnergyPoint, EstimateAfter, Load, MaxPower, Rules, Usage};

/// The InfluxDB measurement every reading is written to (README, "Which InfluxDB versions, and why").
pub const MEASUREMENT: &str = "energy_data";
