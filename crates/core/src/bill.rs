//! What energy costs under a tariff (docs/tariffs.md): per window, and the month's bill.
//!
//! A figure's cost is a sum of lines, each rounded once: the energy of each window (of each
//! version) times its rate. The bill adds, per version in force in the month, its demand,
//! fixed and minimum charges for the days it was in force, then its taxes in the order listed.
//! A month that spans a new version is billed as two short months: the charges of each are
//! those of its days.

use chrono::NaiveDate;

use crate::cost::{amount, Cost, Price};
use crate::tariff::{PriceKey, Tariffs};
use crate::usage::{Energy, Load, Usage};

/// The energy of one window of one version in a period, and what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowFigure {
    pub key: PriceKey,
    pub energy: Energy,
    /// `energy.usage × rate`, rounded once.
    pub cost: Cost,
    /// `energy.estimated × rate`, rounded once: the part of `cost` that is estimated.
    pub estimated_cost: Cost,
}

/// A period's energy priced by window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Priced {
    /// Sorted by version, then by the window's place in the version.
    pub windows: Vec<WindowFigure>,
    pub energy: Energy,
    /// The sum of the windows' costs.
    pub cost: Cost,
    pub estimated_cost: Cost,
}

impl Tariffs {
    /// The cost of `energy` in the window `key` of `plan` (its usage, then its estimated
    /// part), each rounded once to the file's decimals.
    pub fn window_cost(&self, plan: usize, key: PriceKey, energy: Energy) -> (Cost, Cost) {
        let rate = self.plans[plan].versions[key.version].windows[key.window].rate;
        let of = |usage: Usage| amount(&[usage.nano_kwh()], &[rate], -9, 1, self.decimals);
        (of(energy.usage), of(energy.estimated))
    }

    /// `parts` (the pieces of a cut period and their energies) priced under `plan`.
    pub fn price(
        &self,
        plan: usize,
        parts: impl IntoIterator<Item = (PriceKey, Energy)>,
    ) -> Priced {
        let mut by_key: std::collections::BTreeMap<PriceKey, Energy> = Default::default();
        for (key, energy) in parts {
            *by_key.entry(key).or_default() += energy;
        }
        let mut priced = Priced::default();
        for (key, energy) in by_key {
            let (cost, estimated_cost) = self.window_cost(plan, key, energy);
            priced.energy += energy;
            priced.cost += cost;
            priced.estimated_cost += estimated_cost;
            priced.windows.push(WindowFigure {
                key,
                energy,
                cost,
                estimated_cost,
            });
        }
        priced
    }
}

/// What a bill line charges for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A window's energy × its rate.
    Energy,
    /// The largest 15-minute demand (kW) × the rate per kW.
    Demand,
    Fixed,
    /// What brings the energy lines up to the minimum charge.
    MinimumTopUp,
    Tax,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Energy => "energy",
            LineKind::Demand => "demand",
            LineKind::Fixed => "fixed",
            LineKind::MinimumTopUp => "minimum_top_up",
            LineKind::Tax => "tax",
        }
    }
}

/// One line of a bill.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub kind: LineKind,
    /// The version (an index into the plan's versions) whose prices the line applies.
    pub version: usize,
    /// The window's or the tax's name, or what the charge is.
    pub name: String,
    /// kWh (energy), kW (demand), days in force (fixed, minimum), the base (tax).
    pub quantity: f64,
    pub unit: &'static str,
    /// The rate per unit (per kWh, per kW, per month, percent).
    pub rate: Price,
    pub amount: Cost,
    /// The energy of an energy line.
    pub energy: Option<Energy>,
    /// The estimated part of an energy line's amount.
    pub estimated_amount: Option<Cost>,
}

/// A panel's bill for a month.
#[derive(Clone, Debug, PartialEq)]
pub struct Bill {
    pub lines: Vec<Line>,
    /// Every line but the taxes.
    pub subtotal: Cost,
    pub taxes: Cost,
    pub total: Cost,
    pub energy: Energy,
    /// The estimated share of the energy lines' amounts.
    pub estimated_amount: Cost,
    /// The versions used, in date order, with the days of the month each was in force.
    pub versions: Vec<(usize, u32)>,
    /// The month's largest quarter-hour usage (× 4 is the demand in kW).
    pub peak: Usage,
    /// What the bill could not charge, and why (a minimum charge without a contracted kVA).
    pub notes: Vec<String>,
}

impl Tariffs {
    /// The bill of a panel on `plan` for the month whose local dates are `dates`, from the
    /// month cut by [`Tariffs::cut`] (`parts`: each piece's price key and load).
    pub fn bill(
        &self,
        plan: usize,
        dates: &[NaiveDate],
        parts: &[(PriceKey, Load)],
        contracted_kva: Option<Price>,
    ) -> Bill {
        let plan_ref = &self.plans[plan];
        let month_days = dates.len() as u128;
        let mut versions: Vec<(usize, u32)> = Vec::new();
        for date in dates {
            let version = plan_ref.version_on(*date);
            match versions.last_mut() {
                Some((v, days)) if *v == version => *days += 1,
                _ => versions.push((version, 1)),
            }
        }
        let d = self.decimals;
        let mut bill = Bill {
            lines: Vec::new(),
            subtotal: Cost::ZERO,
            taxes: Cost::ZERO,
            total: Cost::ZERO,
            energy: Energy::ZERO,
            estimated_amount: Cost::ZERO,
            versions: versions.clone(),
            peak: parts
                .iter()
                .map(|(_, l)| l.peak)
                .max()
                .unwrap_or(Usage::ZERO),
            notes: Vec::new(),
        };
        for &(version, days) in &versions {
            let v = &plan_ref.versions[version];
            let mut lines: Vec<Line> = Vec::new();
            let in_version = || parts.iter().filter(move |(k, _)| k.version == version);
            let priced = self.price(plan, in_version().map(|(k, l)| (*k, l.energy)));
            for w in &priced.windows {
                let window = &v.windows[w.key.window];
                lines.push(Line {
                    kind: LineKind::Energy,
                    version,
                    name: window.name.clone(),
                    quantity: w.energy.usage.kwh_rounded(),
                    unit: "kWh",
                    rate: window.rate,
                    amount: w.cost,
                    energy: Some(w.energy),
                    estimated_amount: Some(w.estimated_cost),
                });
            }
            bill.energy += priced.energy;
            bill.estimated_amount += priced.estimated_cost;
            let energy_amount = priced.cost;
            let share = |ints: &[i128], prices: &[Price], exponent: i32| {
                amount(ints, prices, exponent, month_days, d)
            };
            let part_of_month = if u128::from(days) == month_days {
                String::new()
            } else {
                format!(" ({days} of {month_days} days)")
            };
            if let Some(rate) = v.demand_per_kw {
                let peak = in_version()
                    .map(|(_, l)| l.peak)
                    .max()
                    .unwrap_or(Usage::ZERO);
                // kW = the quarter hour's kWh × 4.
                let nano_kw = peak.nano_kwh().saturating_mul(4);
                lines.push(Line {
                    kind: LineKind::Demand,
                    version,
                    name: format!("maximum 15-minute demand{part_of_month}"),
                    quantity: crate::cost::round_to(nano_kw as f64 / 1e9, 3),
                    unit: "kW",
                    rate,
                    amount: share(&[nano_kw, i128::from(days)], &[rate], -9),
                    energy: None,
                    estimated_amount: None,
                });
            }
            if let Some(rate) = v.fixed_monthly {
                lines.push(Line {
                    kind: LineKind::Fixed,
                    version,
                    name: format!("fixed monthly charge{part_of_month}"),
                    quantity: f64::from(days),
                    unit: "days",
                    rate,
                    amount: share(&[i128::from(days)], &[rate], 0),
                    energy: None,
                    estimated_amount: None,
                });
            }
            if let Some(minimum) = &v.minimum {
                match contracted_kva {
                    Some(kva) => {
                        let floor =
                            share(&[i128::from(days)], &[minimum.hours, kva, minimum.rate], 0);
                        if energy_amount < floor {
                            lines.push(Line {
                                kind: LineKind::MinimumTopUp,
                                version,
                                name: format!(
                                    "minimum charge {} h × {} kVA × {}{part_of_month}: {} \
                                     less the energy lines",
                                    minimum.hours,
                                    kva,
                                    minimum.rate,
                                    floor.with_decimals(d)
                                ),
                                quantity: f64::from(days),
                                unit: "days",
                                rate: minimum.rate,
                                amount: floor - energy_amount,
                                energy: None,
                                estimated_amount: None,
                            });
                        }
                    }
                    None => bill.notes.push(format!(
                        "version {}: no minimum charge, the panel has no contracted_kva in the \
                         tariff file",
                        v.label()
                    )),
                }
            }
            let subtotal: Cost = lines.iter().map(|l| l.amount).sum();
            let mut taxes = Cost::ZERO;
            for tax in &v.taxes {
                let base = if tax.compound {
                    subtotal + taxes
                } else {
                    subtotal
                };
                // base in hundredths × percent / 100.
                let charged = amount(&[base.minor_units()], &[tax.percent], -4, 1, d);
                taxes += charged;
                lines.push(Line {
                    kind: LineKind::Tax,
                    version,
                    name: tax.name.clone(),
                    quantity: base.to_f64(),
                    unit: "base",
                    rate: tax.percent,
                    amount: charged,
                    energy: None,
                    estimated_amount: None,
                });
            }
            bill.subtotal += subtotal;
            bill.taxes += taxes;
            bill.lines.extend(lines);
        }
        bill.total = bill.subtotal + bill.taxes;
        bill
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOU: &str = r#"currency = "IDR"
decimals = 0
[[tariffs.B.versions]]
valid_from = "2026-01-01"
demand_charge_per_kw = 30000
fixed_monthly = 45000
minimum = { hours = 40, rate = 1000 }
taxes = [{ name = "PPJ", percent = 3 }, { name = "VAT", percent = 10, compound = true }]
windows = [
  { name = "LWBP", rate = 1000, every_day = ["00:00-17:00", "22:00-24:00"] },
  { name = "WBP", rate = 1500, every_day = ["17:00-22:00"] },
]
[[tariffs.B.versions]]
valid_from = "2026-11-16"
windows = [
  { name = "LWBP", rate = 1200, every_day = ["00:00-17:00", "22:00-24:00"] },
  { name = "WBP", rate = 1800, every_day = ["17:00-22:00"] },
]
"#;

    fn kwh(k: f64) -> Energy {
        Energy {
            usage: Usage::from_kwh(k),
            estimated: Usage::ZERO,
        }
    }

    fn load(k: f64, peak_kwh: f64) -> Load {
        Load {
            energy: kwh(k),
            peak: Usage::from_kwh(peak_kwh),
        }
    }

    fn key(version: usize, window: usize) -> PriceKey {
        PriceKey { version, window }
    }

    fn november() -> Vec<NaiveDate> {
        (1..=30)
            .map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap())
            .collect()
    }

    #[test]
    fn a_month_across_a_new_version_is_billed_as_two_short_months() {
        let t = Tariffs::parse(TOU, "t.toml").unwrap();
        let parts = [
            (key(0, 0), load(100.0, 2.5)),
            (key(0, 1), load(10.5, 1.0)),
            (key(1, 0), load(50.0, 0.5)),
            (key(1, 1), load(20.25, 3.0)),
        ];
        let bill = t.bill(0, &november(), &parts, Some(Price::new(5, 0)));
        let amounts: Vec<(LineKind, usize, String)> = bill
            .lines
            .iter()
            .map(|l| (l.kind, l.version, l.amount.to_string()))
            .collect();
        // Version 1, the 1st–15th (15 of 30 days):
        //   LWBP 100 × 1000 = 100 000; WBP 10.5 × 1500 = 15 750;
        //   demand: peak 2.5 kWh in a quarter hour = 10 kW × 30 000 × 15/30 = 150 000;
        //   fixed 45 000 × 15/30 = 22 500; minimum 40 h × 5 kVA × 1000 × 15/30 = 100 000 <
        //   115 750 of energy: no top-up. Subtotal 288 250; PPJ 3 % = 8 647.5 → 8 648;
        //   VAT 10 % of 296 898 = 29 689.8 → 29 690.
        // Version 2 (the 16th–30th) has none of those charges: LWBP 50 × 1200 = 60 000,
        //   WBP 20.25 × 1800 = 36 450.
        assert_eq!(
            amounts,
            [
                (LineKind::Energy, 0, "100000.00".into()),
                (LineKind::Energy, 0, "15750.00".into()),
                (LineKind::Demand, 0, "150000.00".into()),
                (LineKind::Fixed, 0, "22500.00".into()),
                (LineKind::Tax, 0, "8648.00".into()),
                (LineKind::Tax, 0, "29690.00".into()),
                (LineKind::Energy, 1, "60000.00".into()),
                (LineKind::Energy, 1, "36450.00".into()),
            ]
        );
        assert_eq!(bill.subtotal.to_string(), "384700.00");
        assert_eq!(bill.taxes.to_string(), "38338.00");
        assert_eq!(bill.total.to_string(), "423038.00");
        assert_eq!(bill.versions, [(0, 15), (1, 15)]);
        assert_eq!(bill.energy.usage, Usage::from_kwh(180.75));
        assert_eq!(bill.lines[2].quantity, 10.0);
    }

    #[test]
    fn a_nearly_idle_panel_pays_the_minimum() {
        let t = Tariffs::parse(TOU, "t.toml").unwrap();
        let parts = [(key(0, 0), load(3.0, 0.1))];
        let october: Vec<NaiveDate> = (1..=31)
            .map(|d| NaiveDate::from_ymd_opt(2026, 10, d).unwrap())
            .collect();
        let bill = t.bill(0, &october, &parts, Some(Price::new(5, 0)));
        // Energy 3 × 1000 = 3 000; minimum 40 × 5 × 1000 = 200 000: top-up 197 000.
        let top_up = bill
            .lines
            .iter()
            .find(|l| l.kind == LineKind::MinimumTopUp)
            .unwrap();
        assert_eq!(top_up.amount.to_string(), "197000.00");
        // The file charges whole rupiah: the minimum in the line's name is written so.
        assert!(
            top_up.name.ends_with(": 200000 less the energy lines"),
            "{}",
            top_up.name
        );
        // Without a contracted kVA there is no minimum, and the bill says so.
        let bill = t.bill(0, &october, &parts, None);
        assert!(bill.lines.iter().all(|l| l.kind != LineKind::MinimumTopUp));
        assert_eq!(bill.notes.len(), 1);
    }

    #[test]
    fn windows_are_priced_and_rounded_each_once() {
        let t = Tariffs::parse(TOU, "t.toml").unwrap();
        let priced = t.price(
            0,
            [
                (key(0, 1), kwh(0.0005)),
                (key(0, 1), kwh(0.0005)),
                (
                    key(0, 0),
                    Energy {
                        usage: Usage::from_kwh(2.0004),
                        estimated: Usage::from_kwh(1.0),
                    },
                ),
            ],
        );
        // WBP: 0.001 kWh × 1500 = 1.5 → 2 (whole units); LWBP 2.0004 × 1000 = 2000.4 → 2000,
        // of which 1 kWh estimated: 1000.
        assert_eq!(priced.windows.len(), 2);
        assert_eq!(priced.windows[0].cost.to_string(), "2000.00");
        assert_eq!(priced.windows[0].estimated_cost.to_string(), "1000.00");
        assert_eq!(priced.windows[1].cost.to_string(), "2.00");
        assert_eq!(priced.cost.to_string(), "2002.00");
    }
}
