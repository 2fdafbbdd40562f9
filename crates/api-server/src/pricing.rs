//! Costs by tariff window in every answer (docs/tariffs.md): each period is cut where a price
//! changes ([`Tariffs::cut`]), the store reads the usage of every piece, and each panel's
//! pieces are priced by its tariff, window by window, each window's cost rounded once.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use energy_core::bill::Priced;
use energy_core::meters::{Meters, VirtualMeter};
use energy_core::tariff::{Cut, PriceKey};
use energy_core::{Cost, Energy, Load, PanelId, Period, Tariffs};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::query_param;
use crate::store::{ByPanel, Store};
use crate::virtual_meters;

/// Periods cut where any tariff's price changes, as one list of pieces for the store.
pub(crate) struct CutPeriods {
    cuts: Vec<Cut>,
    /// Where each period's pieces start in `pieces`.
    offsets: Vec<usize>,
    pieces: Vec<Period>,
}

/// A period's pieces for one panel: where its tariff prices each, and its load there.
pub(crate) type Parts = Vec<(PriceKey, Load)>;

impl CutPeriods {
    pub(crate) fn new(tariffs: &Tariffs, periods: &[Period], tz: Tz) -> CutPeriods {
        let plans: Vec<usize> = (0..tariffs.plans.len()).collect();
        let mut cuts = Vec::with_capacity(periods.len());
        let mut offsets = Vec::with_capacity(periods.len());
        let mut pieces = Vec::new();
        for period in periods {
            let cut = tariffs.cut(*period, tz, &plans);
            offsets.push(pieces.len());
            pieces.extend_from_slice(&cut.pieces);
            cuts.push(cut);
        }
        CutPeriods {
            cuts,
            offsets,
            pieces,
        }
    }

    /// Every piece of every period, in order.
    pub(crate) fn pieces(&self) -> &[Period] {
        &self.pieces
    }

    /// Per period, `plan`'s keys of its pieces with their loads from `loads` (one per piece,
    /// as the store answered them; none for a panel without data).
    pub(crate) fn parts(&self, plan: usize, loads: Option<&Vec<Load>>) -> Vec<Parts> {
        self.cuts
            .iter()
            .zip(&self.offsets)
            .map(|(cut, &offset)| {
                cut.keys[plan]
                    .iter()
                    .enumerate()
                    .map(|(i, key)| {
                        let load = loads
                            .and_then(|l| l.get(offset + i))
                            .copied()
                            .unwrap_or(Load::ZERO);
                        (*key, load)
                    })
                    .collect()
            })
            .collect()
    }
}

/// Per panel that ever wrote a reading, and per virtual meter of `meters` one of whose members
/// did, and
/// per period: its pieces, [`CutPeriods::parts`] of the usage the store read for `periods`
/// (with each piece's largest quarter hour when `peaks` is set).
pub(crate) async fn parts(
    store: &Store,
    tariffs: &Tariffs,
    meters: &[&VirtualMeter],
    tz: Tz,
    periods: &[Period],
    peaks: bool,
) -> Result<ByPanel<Vec<Parts>>, energy_influx::InfluxError> {
    let cut = CutPeriods::new(tariffs, periods, tz);
    let (latest, mut loads) = store.latest_and_loads(cut.pieces(), peaks).await?;
    virtual_meters::add_loads(meters, store, cut.pieces(), peaks, &mut loads).await?;
    let shown = latest.keys().chain(
        meters
            .iter()
            .filter(|meter| virtual_meters::has_member_in(meter, &latest))
            .map(|meter| &meter.name),
    );
    Ok(shown
        .map(|panel| {
            let plan = tariffs.plan_of(panel);
            (panel.clone(), cut.parts(plan, loads.get(panel)))
        })
        .collect())
}

/// The `panel` parameter of the answers about periods (daily, monthly, bill): one panel or
/// virtual meter, or every one when absent. The answer is the same figures as in the answer
/// about all, only fewer of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selection(Option<String>);

impl Selection {
    /// Reads `panel` from a query string. An id no panel could have is a 404, as is one no
    /// panel has (that one found by [`Selection::select`]).
    pub(crate) fn from_query(query: Option<&str>) -> Result<Selection, ApiError> {
        let only = query_param(query, "panel");
        if let Some(panel) = &only {
            PanelId::parse(panel).map_err(|_| ApiError::UnknownPanel(panel.clone()))?;
        }
        Ok(Selection(only))
    }

    /// What an answer cache's key carries of it.
    pub(crate) fn key(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// The virtual meters to compute: every one, the selected one, or none when a panel is
    /// selected.
    pub(crate) fn meters<'m>(&self, meters: &'m Meters) -> Vec<&'m VirtualMeter> {
        match &self.0 {
            None => virtual_meters::all(meters),
            Some(name) => meters.get(name).into_iter().collect(),
        }
    }

    /// `parts` as the answer shows them: all, or only the selected one's; a 404 when it has
    /// none (no such panel or virtual meter, or none of its members has written a reading).
    pub(crate) fn select<T>(&self, mut parts: ByPanel<T>) -> Result<ByPanel<T>, ApiError> {
        let Some(only) = &self.0 else {
            return Ok(parts);
        };
        let found = parts
            .remove(only)
            .ok_or_else(|| ApiError::UnknownPanel(only.clone()))?;
        Ok(ByPanel::from([(only.clone(), found)]))
    }

    /// A download's name: `{stem}.csv`, or `{stem}-{panel}.csv` for one panel.
    pub(crate) fn file_name(&self, stem: &str) -> String {
        match &self.0 {
            None => format!("{stem}.csv"),
            Some(panel) => format!("{stem}-{panel}.csv"),
        }
    }
}

/// The load of a period from its pieces.
pub(crate) fn load_of(parts: &[(PriceKey, Load)]) -> Load {
    parts
        .iter()
        .fold(Load::ZERO, |total, (_, load)| total.join(*load))
}

/// One window's share of a figure.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct WindowCost {
    /// The tariff (`flat` for `TARIFF_PER_KWH`).
    tariff: String,
    /// The version's `valid_from` (`always` for `TARIFF_PER_KWH`).
    version: String,
    /// The time-of-use window (`all day` for `TARIFF_PER_KWH`).
    window: String,
    /// The price of one kWh in this window.
    rate: f64,
    usage_kwh: f64,
    estimated_kwh: f64,
    /// `usage × rate`, from the exact usage, rounded once to the tariff's decimals.
    cost: f64,
    /// The estimated part of `cost` (`estimated × rate`, rounded once).
    estimated_cost: f64,
}

/// An amount of energy and what it costs, window by window.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct UsageFigure {
    /// kWh, rounded to 3 decimals.
    pub(crate) usage_kwh: f64,
    /// The part of `usage_kwh` spread over gaps between readings longer than
    /// `ESTIMATE_AFTER_SECS` (estimated), rounded to 3 decimals.
    pub(crate) estimated_kwh: f64,
    /// The sum of `by_window`'s costs.
    pub(crate) cost: f64,
    /// The estimated part of `cost`.
    pub(crate) estimated_cost: f64,
    /// The cost per tariff window: each window's exact usage × its rate, rounded once.
    pub(crate) by_window: Vec<WindowCost>,
}

/// Energy per tariff and window, summed before it is priced: the figure of several panels,
/// or of a panel's periods together (a year).
#[derive(Default)]
pub(crate) struct Tally {
    by_key: BTreeMap<(usize, PriceKey), Energy>,
}

impl Tally {
    pub(crate) fn add(&mut self, plan: usize, parts: &[(PriceKey, Load)]) {
        for (key, load) in parts {
            *self.by_key.entry((plan, *key)).or_default() += load.energy;
        }
    }

    /// The tally priced: each window's summed energy × its rate, rounded once.
    pub(crate) fn figure(&self, tariffs: &Tariffs) -> UsageFigure {
        let mut plans: BTreeMap<usize, Vec<(PriceKey, Energy)>> = BTreeMap::new();
        for ((plan, key), energy) in &self.by_key {
            plans.entry(*plan).or_default().push((*key, *energy));
        }
        let priced: Vec<(usize, Priced)> = plans
            .into_iter()
            .map(|(plan, parts)| (plan, tariffs.price(plan, parts)))
            .collect();
        UsageFigure::of(tariffs, &priced)
    }
}

impl UsageFigure {
    /// One panel's period under `plan`.
    pub(crate) fn new(tariffs: &Tariffs, plan: usize, parts: &[(PriceKey, Load)]) -> UsageFigure {
        let priced = tariffs.price(plan, parts.iter().map(|(k, l)| (*k, l.energy)));
        UsageFigure::of(tariffs, &[(plan, priced)])
    }

    fn of(tariffs: &Tariffs, priced: &[(usize, Priced)]) -> UsageFigure {
        let mut energy = Energy::ZERO;
        let mut cost = Cost::ZERO;
        let mut estimated_cost = Cost::ZERO;
        let mut by_window = Vec::new();
        for (plan, p) in priced {
            energy += p.energy;
            cost += p.cost;
            estimated_cost += p.estimated_cost;
            let plan_ref = &tariffs.plans[*plan];
            for w in &p.windows {
                let version = &plan_ref.versions[w.key.version];
                let window = &version.windows[w.key.window];
                by_window.push(WindowCost {
                    tariff: plan_ref.name.clone(),
                    version: version.label(),
                    window: window.name.clone(),
                    rate: window.rate.to_f64(),
                    usage_kwh: w.energy.usage.kwh_rounded(),
                    estimated_kwh: w.energy.estimated.kwh_rounded(),
                    cost: w.cost.to_f64(),
                    estimated_cost: w.estimated_cost.to_f64(),
                });
            }
        }
        UsageFigure {
            usage_kwh: energy.usage.kwh_rounded(),
            estimated_kwh: energy.estimated.kwh_rounded(),
            cost: cost.to_f64(),
            estimated_cost: estimated_cost.to_f64(),
            by_window,
        }
    }
}

/// The one price of a kWh when every panel pays the same at all times (`TARIFF_PER_KWH`, or
/// a file that amounts to it); none under time-of-use or several tariffs.
pub(crate) fn flat_rate(tariffs: &Tariffs) -> Option<f64> {
    tariffs
        .is_flat()
        .then(|| tariffs.plans[0].versions[0].windows[0].rate.to_f64())
}
