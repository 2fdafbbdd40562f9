//! Virtual meters in the answers (docs/meters.md). A virtual meter is never stored: each of its
//! figures is its members' figures combined by its expression (`energy_core::meters`), from
//! what the store read for the panels in the same request, so it always agrees with them.
//!
//! Energy adds up exactly, piece by piece. A largest quarter hour does not (the members' peaks
//! need not fall in the same quarter hour), so a virtual meter's demand is the largest quarter
//! hour of its members' quarter-hour series combined ([`Store::quarter_series`]).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use energy_core::meters::{Tags, VirtualMeter};
use energy_core::status::{seconds_since, status};
use energy_core::{Energy, Load, Meters, Period, Status, Usage};
use energy_influx::InfluxError;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::{rfc3339, Kind, RealtimePanel};
use crate::store::{ByPanel, Latest, Store};

/// How many members' days the intervals of one virtual meter read side by side.
const MEMBERS_SIDE_BY_SIDE: usize = 4;

/// The realtime entries of the panels in `latest` and of every virtual meter one of whose
/// members has written a reading, sorted by id.
pub(crate) fn realtime(
    meters: &Meters,
    latest: &ByPanel<Latest>,
    now: DateTime<Utc>,
    offline_after_secs: u64,
) -> BTreeMap<String, RealtimePanel> {
    let mut entries: BTreeMap<String, RealtimePanel> = latest
        .iter()
        .map(|(id, latest)| {
            let entry = RealtimePanel::new(id.clone(), latest, now, offline_after_secs);
            (id.clone(), entry)
        })
        .collect();
    for meter in meters.virtual_meters() {
        if let Some(entry) = realtime_of(meter, |p| latest.get(p), now, offline_after_secs) {
            entries.insert(meter.name.clone(), entry);
        }
    }
    entries
}

/// A virtual meter's live state from its members' latest readings (`latest`): ONLINE only
/// while every member is; `None` when no member has written a reading.
pub(crate) fn realtime_of<'a>(
    meter: &VirtualMeter,
    latest: impl Fn(&str) -> Option<&'a Latest>,
    now: DateTime<Utc>,
    offline_after_secs: u64,
) -> Option<RealtimePanel> {
    let mut oldest: Option<DateTime<Utc>> = None;
    let mut offline = Vec::new();
    for term in &meter.terms {
        match latest(&term.panel) {
            Some(reading) => {
                oldest = Some(oldest.map_or(reading.time, |o| o.min(reading.time)));
                if status(reading.time, now, offline_after_secs) == Status::Offline {
                    offline.push(term.panel.clone());
                }
            }
            None => offline.push(term.panel.clone()),
        }
    }
    let oldest = oldest?;
    let round = |value| energy_core::cost::round_to(value, 3);
    Some(RealtimePanel {
        panel: meter.name.clone(),
        kind: Kind::Virtual,
        status: if offline.is_empty() {
            Status::Online
        } else {
            Status::Offline
        },
        power_kw: round(meter.value(|p| latest(p).map_or(0.0, |l| l.power_kw))),
        energy_kwh: round(meter.value(|p| latest(p).map_or(0.0, |l| l.energy_kwh))),
        last_seen: rfc3339(oldest),
        seconds_since_last_seen: seconds_since(oldest, now),
        offline_members: Some(offline),
    })
}

/// Whether any member of `meter` is among `panels` (a virtual meter appears in an answer
/// beside the panels when one of its members does).
pub(crate) fn has_member_in<T>(meter: &VirtualMeter, panels: &ByPanel<T>) -> bool {
    meter.terms.iter().any(|t| panels.contains_key(&t.panel))
}

/// Every virtual meter of `meters`, sorted by name: what an answer about all of them shows.
pub(crate) fn all(meters: &Meters) -> Vec<&VirtualMeter> {
    meters.virtual_meters().collect()
}

/// Adds each of `meters` with a member in `loads` to it: one load per piece of `pieces` (as the
/// store read the panels'), its energy the members' combined by the expression, and with
/// `peaks` its largest quarter hour in the piece, from the members' quarter-hour series
/// combined.
pub(crate) async fn add_loads(
    meters: &[&VirtualMeter],
    store: &Store,
    pieces: &[Period],
    peaks: bool,
    loads: &mut ByPanel<Vec<Load>>,
) -> Result<(), InfluxError> {
    let shown: Vec<&VirtualMeter> = meters
        .iter()
        .copied()
        .filter(|meter| has_member_in(meter, loads))
        .collect();
    if shown.is_empty() {
        return Ok(());
    }
    let series = match span_of(pieces) {
        Some(span) if peaks => Some(QuarterSeries::read(store, &shown, span).await?),
        _ => None,
    };
    let mut added = Vec::with_capacity(shown.len());
    for (index, meter) in shown.iter().enumerate() {
        let combined = series.as_ref().map(|s| s.of(index));
        let meter_loads: Vec<Load> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| Load {
                energy: meter.energy(|p| {
                    loads
                        .get(p)
                        .and_then(|l| l.get(i))
                        .map_or(Energy::ZERO, |l| l.energy)
                }),
                peak: combined
                    .as_ref()
                    .map_or(Usage::ZERO, |c| largest_within(c, *piece)),
            })
            .collect();
        added.push((meter.name.clone(), meter_loads));
    }
    loads.extend(added);
    Ok(())
}

/// From the earliest start to the latest end of `pieces`.
fn span_of(pieces: &[Period]) -> Option<Period> {
    Some(Period {
        start: pieces.iter().map(|p| p.start).min()?,
        end: pieces.iter().map(|p| p.end).max()?,
    })
}

/// The quarter-hour series of several virtual meters, read as few sums as they need: each
/// meter's members grouped by coefficient (`A + B - C` is the group {A, B} minus the group
/// {C}), each distinct group summed once per quarter hour by InfluxDB.
struct QuarterSeries {
    sums: Vec<BTreeMap<i64, Usage>>,
    /// Per meter: (coefficient, index into `sums`).
    meters: Vec<Vec<(i64, usize)>>,
}

impl QuarterSeries {
    async fn read(
        store: &Store,
        meters: &[&VirtualMeter],
        span: Period,
    ) -> Result<QuarterSeries, InfluxError> {
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut plans = Vec::with_capacity(meters.len());
        for meter in meters {
            let mut by_coefficient: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            for term in &meter.terms {
                by_coefficient
                    .entry(term.coefficient)
                    .or_default()
                    .push(term.panel.clone());
            }
            let plan = by_coefficient
                .into_iter()
                .map(|(coefficient, group)| {
                    let index = match groups.iter().position(|g| *g == group) {
                        Some(index) => index,
                        None => {
                            groups.push(group);
                            groups.len() - 1
                        }
                    };
                    (coefficient, index)
                })
                .collect();
            plans.push(plan);
        }
        Ok(QuarterSeries {
            sums: store.quarter_sums(&groups, span).await?,
            meters: plans,
        })
    }

    /// Meter `index`'s usage per quarter hour (by its start in epoch milliseconds), over every
    /// quarter hour any of its members has.
    fn of(&self, index: usize) -> BTreeMap<i64, Usage> {
        let mut combined: BTreeMap<i64, Usage> = BTreeMap::new();
        for (coefficient, group) in &self.meters[index] {
            for (time, usage) in &self.sums[*group] {
                let entry = combined.entry(*time).or_insert(Usage::ZERO);
                *entry += usage.times(*coefficient);
            }
        }
        combined
    }
}

/// The largest of `series`'s quarter hours that start in `piece` (zero when none does).
fn largest_within(series: &BTreeMap<i64, Usage>, piece: Period) -> Usage {
    series
        .range(piece.start.timestamp_millis()..piece.end.timestamp_millis())
        .map(|(_, usage)| *usage)
        .max()
        .unwrap_or(Usage::ZERO)
}

/// A virtual meter's usage in each of `pieces` (consecutive, within `day`): its members'
/// ([`Store::panel_intervals`]) combined; `None` when no member has a reading at all.
pub(crate) async fn intervals(
    store: &Store,
    meter: &VirtualMeter,
    day: Period,
    pieces: &[Period],
) -> Result<Option<Vec<Energy>>, InfluxError> {
    // By index: a closure over `&Term` would have to be general over its lifetime, which the
    // server's `Send` future cannot show.
    let members: Vec<Option<Vec<Energy>>> = futures_util::stream::iter(0..meter.terms.len())
        .map(|i| store.panel_intervals(&meter.terms[i].panel, day, pieces))
        .buffered(MEMBERS_SIDE_BY_SIDE)
        .try_collect()
        .await?;
    let by_panel: BTreeMap<&str, Vec<Energy>> = meter
        .terms
        .iter()
        .zip(members)
        .filter_map(|(term, energies)| Some((term.panel.as_str(), energies?)))
        .collect();
    if by_panel.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        (0..pieces.len())
            .map(|i| {
                meter.energy(|p| {
                    by_panel
                        .get(p)
                        .and_then(|e| e.get(i))
                        .copied()
                        .unwrap_or(Energy::ZERO)
                })
            })
            .collect(),
    ))
}

/// Where a panel or meter is (the `METERS_FILE` tags).
#[derive(Serialize, ToSchema)]
struct Place {
    building: Option<String>,
    floor: Option<String>,
    tenant: Option<String>,
}

impl From<&Tags> for Place {
    fn from(tags: &Tags) -> Place {
        Place {
            building: tags.building.clone(),
            floor: tags.floor.clone(),
            tenant: tags.tenant.clone(),
        }
    }
}

/// A declared panel.
#[derive(Serialize, ToSchema)]
struct DeclaredPanel {
    panel: String,
    #[serde(flatten)]
    place: Place,
}

/// One panel of a virtual meter's expression, expanded.
#[derive(Serialize, ToSchema)]
struct MeterTerm {
    panel: String,
    /// How many times the panel counts: negative when subtracted.
    coefficient: i64,
}

/// A virtual meter.
#[derive(Serialize, ToSchema)]
struct DeclaredMeter {
    meter: String,
    /// The expression as written in `METERS_FILE`.
    expression: String,
    /// The expression expanded to panels (nested meters replaced by their own panels).
    terms: Vec<MeterTerm>,
    #[serde(flatten)]
    place: Place,
}

/// The answer of `GET /api/meters`.
#[derive(Serialize, ToSchema)]
pub(crate) struct MetersAnswer {
    /// The panels `METERS_FILE` declares, sorted by id.
    panels: Vec<DeclaredPanel>,
    /// Its virtual meters, sorted by name.
    meters: Vec<DeclaredMeter>,
}

/// The building as `METERS_FILE` declares it: panels with their building, floor and tenant,
/// and virtual meters with their expressions (empty lists without the file).
#[utoipa::path(
    get,
    path = "/api/meters",
    tag = "panels",
    responses((status = 200, description = "The declared panels and virtual meters",
        body = MetersAnswer)),
)]
pub(crate) async fn declared(
    State(state): State<std::sync::Arc<crate::state::AppState>>,
) -> Json<MetersAnswer> {
    let meters = &state.meters;
    Json(MetersAnswer {
        panels: meters
            .panels()
            .iter()
            .map(|(panel, tags)| DeclaredPanel {
                panel: panel.clone(),
                place: tags.into(),
            })
            .collect(),
        meters: meters
            .virtual_meters()
            .map(|meter| DeclaredMeter {
                meter: meter.name.clone(),
                expression: meter.expression.clone(),
                terms: meter
                    .terms
                    .iter()
                    .map(|t| MeterTerm {
                        panel: t.panel.clone(),
                        coefficient: t.coefficient,
                    })
                    .collect(),
                place: (&meter.tags).into(),
            })
            .collect(),
    })
}
