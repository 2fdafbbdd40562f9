//! What more than one endpoint answers: one panel's live state ([`RealtimePanel`], an entry of
//! `/api/panel/realtime`'s `panels` and the data of `/api/panel/stream`'s `panel` events) and
//! the one way every answer writes an instant ([`rfc3339`]).
//!
//! Like every answer, they are typed structs deriving `ToSchema`, so the OpenAPI document
//! (`crate::openapi`) describes exactly what is serialized.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use energy_core::status::{seconds_since, status};
use energy_core::{Meters, Status};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::Latest;

/// RFC 3339 UTC: whole seconds when the instant has no fraction, else milliseconds.
pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.trunc_subsecs(3)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The schema of [`Status`] as it serializes (the core knows nothing of OpenAPI).
pub(crate) fn status_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let names = [Status::Online, Status::Offline]
        .map(|status| serde_json::to_value(status).expect("a status serializes"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .description(Some(
            "ONLINE while `seconds_since_last_seen <= offline_after_secs`, else OFFLINE",
        ))
        .build()
}

/// Whether an entry of an answer is a panel (a meter that publishes readings) or a virtual
/// meter (its members' figures combined: docs/meters.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Panel,
    Virtual,
}

impl Kind {
    /// What `name` is under `meters`.
    pub(crate) fn of(meters: &Meters, name: &str) -> Kind {
        if meters.get(name).is_some() {
            Kind::Virtual
        } else {
            Kind::Panel
        }
    }
}

/// One entry of `/api/panel/realtime`'s `panels`, and of `/api/panel/stream`'s `panel` events.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct RealtimePanel {
    pub panel: String,
    pub kind: Kind,
    /// For a virtual meter: ONLINE only while every member is.
    #[schema(schema_with = status_schema)]
    pub status: Status,
    /// The latest reading's power; for a virtual meter, its expression over the members'
    /// latest power (rounded to 3 decimals; negative for a difference whose subtracted members
    /// draw more).
    pub power_kw: f64,
    /// The latest reading's energy register; for a virtual meter, its expression over the
    /// members' registers (rounded to 3 decimals).
    pub energy_kwh: f64,
    /// When the latest reading was taken; for a virtual meter, the oldest of its members'.
    #[schema(format = DateTime)]
    pub last_seen: String,
    #[schema(minimum = 0)]
    pub seconds_since_last_seen: i64,
    /// A virtual meter's members that are OFFLINE or have never written a reading (absent
    /// for a panel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_members: Option<Vec<String>>,
}

impl RealtimePanel {
    pub fn new(
        panel: String,
        latest: &Latest,
        now: DateTime<Utc>,
        offline_after_secs: u64,
    ) -> Self {
        RealtimePanel {
            panel,
            kind: Kind::Panel,
            status: status(latest.time, now, offline_after_secs),
            power_kw: latest.power_kw,
            energy_kwh: latest.energy_kwh,
            last_seen: rfc3339(latest.time),
            seconds_since_last_seen: seconds_since(latest.time, now),
            offline_members: None,
        }
    }
}
