//! `GET /api/bill`: each panel's bill for a local month, line by line (docs/tariffs.md, "The
//! bill"), as JSON or CSV; the dashboard's printable bill page reads it.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, NaiveDate};
use energy_core::bill::Bill;
use energy_core::{period, Period};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::Kind;
use crate::csv::{number, Csv, Format};
use crate::error::{ApiError, ErrorBody};
use crate::intervals::{demand_kw, parse_month};
use crate::pricing;
use crate::rendered;
use crate::routes::query_param;
use crate::state::AppState;

type Shared = State<Arc<AppState>>;

/// One line of a bill.
#[derive(Serialize, ToSchema)]
struct BillLine {
    /// `energy`, `demand`, `fixed`, `minimum_top_up` or `tax`.
    #[schema(pattern = "^(energy|demand|fixed|minimum_top_up|tax)$")]
    kind: &'static str,
    /// The `valid_from` of the tariff version whose prices the line applies.
    version: String,
    /// The window's or tax's name, or what the charge is.
    name: String,
    /// kWh (energy), kW (demand), days in force (fixed, minimum top-up) or the base (tax).
    quantity: f64,
    /// `kWh`, `kW`, `days` or `base`.
    unit: &'static str,
    /// Per kWh, per kW, per month, per month's minimum (× hours × kVA), or percent (tax).
    rate: f64,
    /// Rounded once to the tariff file's decimals.
    amount: f64,
    /// An energy line's estimated kWh.
    estimated_kwh: Option<f64>,
    /// The part of an energy line's amount that is estimated.
    estimated_amount: Option<f64>,
}

/// A tariff version used by a bill and the days of the month it was in force.
#[derive(Serialize, ToSchema)]
struct VersionUsed {
    valid_from: String,
    days: u32,
}

/// One panel's bill.
#[derive(Serialize, ToSchema)]
struct PanelBill {
    panel: String,
    kind: Kind,
    tariff: String,
    /// From the tariff file, for the minimum charge.
    contracted_kva: Option<f64>,
    versions: Vec<VersionUsed>,
    lines: Vec<BillLine>,
    usage_kwh: f64,
    estimated_kwh: f64,
    /// The estimated share of the energy lines' amounts.
    estimated_amount: f64,
    /// The month's largest quarter-hour usage × 4, rounded to 3 decimals.
    max_demand_kw: f64,
    /// Every line but the taxes.
    subtotal: f64,
    taxes: f64,
    /// `subtotal + taxes`.
    total: f64,
    /// What the bill could not charge, and why.
    notes: Vec<String>,
}

/// The answer of `GET /api/bill`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Bills {
    /// `YYYY-MM`, in `timezone`.
    month: String,
    timezone: &'static str,
    currency: String,
    /// The decimals every amount is rounded to.
    decimals: u32,
    /// Every panel that has ever written a reading and every virtual meter one of whose
    /// members has (or the one asked for), sorted by id.
    panels: Vec<PanelBill>,
    /// The sum of the panels' totals (virtual meters are not added: their members are
    /// already counted).
    total: f64,
}

/// Each panel's bill for a month: energy per tariff window × rate, demand, fixed and minimum
/// charges, taxes.
#[utoipa::path(
    get,
    path = "/api/bill",
    tag = "energy",
    params(
        ("month" = String, Query, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
            description = "The month (YYYY-MM, 1970-01 to 9999-12) in `TIMEZONE`"),
        ("panel" = Option<String>, Query, description = "One panel's bill; every panel's when \
            absent"),
        ("format" = Option<String>, Query, pattern = "^(json|csv)$",
            description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The month's bills", content(
            (Bills = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`month` is missing or not YYYY-MM, or `format` is not \
            json or csv (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No panel with this id has written a reading \
            (`not_found`)", body = ErrorBody),
        (status = 503, description = crate::routes::UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn bill(
    State(state): Shared,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.as_deref();
    let raw_month = query_param(query, "month")
        .ok_or_else(|| ApiError::BadRequest("month is required (YYYY-MM)".into()))?;
    let (year, month) = parse_month(&raw_month)?;
    let format = Format::parse(query_param(query, "format").as_deref())?;
    let only = pricing::Selection::from_query(query)?;
    let whole = period::month(year, month, state.timezone)
        .ok_or_else(|| ApiError::BadRequest(format!("{raw_month} is not a month")))?;
    let first = NaiveDate::from_ymd_opt(year, month, 1)
        .ok_or_else(|| ApiError::BadRequest(format!("{raw_month} is not a month")))?;
    let key = format!(
        "bill?month={year:04}-{month:02}&format={format:?}&panel={}",
        only.key()
    );
    rendered::response(&state, key, move |state| {
        make_bill(state, whole, first, format, only)
    })
    .await
}

/// The answer of [`bill`] for the month `whole` that starts on `first`, of one panel or
/// virtual meter (`only`) or all.
async fn make_bill(
    state: Arc<AppState>,
    whole: Period,
    first: NaiveDate,
    format: Format,
    only: pricing::Selection,
) -> Result<Response, ApiError> {
    let (year, month) = (first.year(), first.month());
    let dates: Vec<NaiveDate> = first
        .iter_days()
        .take_while(|d| d.month() == month)
        .collect();
    let tariffs = &state.tariffs;
    // One panel's bill needs no virtual meter; a virtual meter's, only its own.
    let meters = only.meters(&state.meters);
    let parts = pricing::parts(
        &state.store,
        tariffs,
        &meters,
        state.timezone,
        &[whole],
        true,
    )
    .await?;
    let parts = only.select(parts)?;
    let mut total = energy_core::Cost::ZERO;
    let panels: Vec<PanelBill> = parts
        .into_iter()
        .map(|(panel, mut months)| {
            let plan = tariffs.plan_of(&panel);
            let kva = tariffs.contracted_kva(&panel);
            let bill = tariffs.bill(plan, &dates, &months.remove(0), kva);
            let kind = Kind::of(&state.meters, &panel);
            if kind == Kind::Panel {
                total += bill.total;
            }
            panel_bill(&state, panel, kind, plan, kva, bill)
        })
        .collect();
    let answer = Bills {
        month: format!("{year:04}-{month:02}"),
        timezone: state.timezone.name(),
        currency: tariffs.currency.clone(),
        decimals: tariffs.decimals,
        panels,
        total: total.to_f64(),
    };
    Ok(match format {
        Format::Json => Json(answer).into_response(),
        Format::Csv => {
            csv_of(&answer).into_response(&only.file_name(&format!("bill-{}", answer.month)))
        }
    })
}

fn panel_bill(
    state: &AppState,
    panel: String,
    kind: Kind,
    plan: usize,
    kva: Option<energy_core::Price>,
    bill: Bill,
) -> PanelBill {
    let plan_ref = &state.tariffs.plans[plan];
    PanelBill {
        panel,
        kind,
        tariff: plan_ref.name.clone(),
        contracted_kva: kva.map(|k| k.to_f64()),
        versions: bill
            .versions
            .iter()
            .map(|(v, days)| VersionUsed {
                valid_from: plan_ref.versions[*v].label(),
                days: *days,
            })
            .collect(),
        lines: bill
            .lines
            .iter()
            .map(|line| BillLine {
                kind: line.kind.as_str(),
                version: plan_ref.versions[line.version].label(),
                name: line.name.clone(),
                quantity: line.quantity,
                unit: line.unit,
                rate: line.rate.to_f64(),
                amount: line.amount.to_f64(),
                estimated_kwh: line.energy.map(|e| e.estimated.kwh_rounded()),
                estimated_amount: line.estimated_amount.map(|a| a.to_f64()),
            })
            .collect(),
        usage_kwh: bill.energy.usage.kwh_rounded(),
        estimated_kwh: bill.energy.estimated.kwh_rounded(),
        estimated_amount: bill.estimated_amount.to_f64(),
        max_demand_kw: demand_kw(bill.peak),
        subtotal: bill.subtotal.to_f64(),
        taxes: bill.taxes.to_f64(),
        total: bill.total.to_f64(),
        notes: bill.notes,
    }
}

/// The bills as CSV: one row per line, then each panel's subtotal, taxes and total.
fn csv_of(answer: &Bills) -> Csv {
    let mut csv = Csv::new(&[
        "month",
        "panel",
        "tariff",
        "version",
        "kind",
        "name",
        "quantity",
        "unit",
        "rate",
        "amount",
        "estimated_amount",
        "currency",
    ]);
    for panel in &answer.panels {
        for line in &panel.lines {
            csv.row([
                answer.month.as_str(),
                &panel.panel,
                &panel.tariff,
                &line.version,
                line.kind,
                &line.name,
                &number(line.quantity),
                line.unit,
                &number(line.rate),
                &number(line.amount),
                &line.estimated_amount.map(number).unwrap_or_default(),
                &answer.currency,
            ]);
        }
        for (kind, amount) in [
            ("subtotal", panel.subtotal),
            ("taxes", panel.taxes),
            ("total", panel.total),
        ] {
            csv.row([
                answer.month.as_str(),
                &panel.panel,
                &panel.tariff,
                "",
                kind,
                "",
                "",
                "",
                "",
                &number(amount),
                "",
                &answer.currency,
            ]);
        }
    }
    csv
}
