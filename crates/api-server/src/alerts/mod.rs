//! Alerts (docs/alerts.md): the rules of `ALERTS_FILE` (`energy_core::alerts`), evaluated by
//! this server every `ALERTS_INTERVAL_SECS` on the same figures its answers show
//! ([`evaluator`]); each firing and resolution recorded in the alert journal in InfluxDB
//! (`energy_rollup::alerts`) before it is sent, and sent to every target of the rule by
//! [`delivery`], which retries without holding up anything else. `GET /api/alerts` answers
//! from the journal, so every replica answers the same.
//!
//! Why here: the rules are about the figures only this program computes (a virtual meter's
//! power, today's cost by the tariff file, the tariff window in force); the subscriber knows
//! readings, not prices. Why one evaluator: with several api-servers behind a load balancer,
//! `ALERTS_EVALUATOR=true` on exactly one of them makes exactly one notification per event;
//! the others answer `GET /api/alerts` from the same journal.

pub(crate) mod delivery;
pub(crate) mod evaluator;

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{Duration, Utc};
use energy_core::alerts::{Alerts, Condition, Transition};
use energy_influx::InfluxClient;
use energy_rollup::alerts::{self as journal, Entry};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::rfc3339;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// How far back `GET /api/alerts` lists events.
const RECENT_DAYS: i64 = 7;
/// At most this many events per rule in `recent`.
const RECENT_PER_RULE: usize = 20;

/// What the server knows of alerts: the rules, and where the journal is.
pub struct AlertRules {
    pub alerts: Alerts,
    /// Whether this server evaluates them (`ALERTS_EVALUATOR`).
    pub evaluator: bool,
    pub journal: InfluxClient,
}

/// A rule and its state now.
#[derive(Serialize, ToSchema)]
struct RuleNow {
    rule: String,
    meter: String,
    /// The condition, in words.
    condition: String,
    /// `firing` while the rule's last recorded event is a firing, else `ok`.
    #[schema(pattern = "^(firing|ok)$")]
    state: &'static str,
    /// When the current firing began (null when `ok`).
    #[schema(format = DateTime)]
    since: Option<String>,
}

/// One recorded firing or resolution.
#[derive(Serialize, ToSchema)]
struct AlertEvent {
    /// The idempotency key sent with every notification of this event.
    id: String,
    rule: String,
    meter: String,
    #[schema(pattern = "^(fired|resolved)$")]
    transition: &'static str,
    #[schema(format = DateTime)]
    at: String,
    /// When the firing this event belongs to began.
    #[schema(format = DateTime)]
    fired_at: String,
    /// What the condition compared (minutes offline, kW, kWh or currency).
    value: f64,
    threshold: f64,
    message: String,
    /// Targets not reached yet (retried with backoff).
    pending: Vec<String>,
}

impl From<&Entry> for AlertEvent {
    fn from(entry: &Entry) -> AlertEvent {
        AlertEvent {
            id: entry.id.clone(),
            rule: entry.rule.clone(),
            meter: entry.meter.clone(),
            transition: entry.transition.name(),
            at: rfc3339(entry.at),
            fired_at: rfc3339(entry.fired_at),
            value: entry.value,
            threshold: entry.threshold,
            message: entry.message.clone(),
            pending: entry.pending.clone(),
        }
    }
}

/// The answer of `GET /api/alerts`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlertsAnswer {
    /// Whether this server evaluates the rules (`ALERTS_EVALUATOR`); every server answers
    /// from the same journal.
    evaluator: bool,
    /// Every rule of `ALERTS_FILE`, in the file's order.
    rules: Vec<RuleNow>,
    /// The firing events of the rules firing now.
    active: Vec<AlertEvent>,
    /// The events of the last 7 days, newest first (at most 20 per rule).
    recent: Vec<AlertEvent>,
}

/// The condition of a rule, in words.
pub(crate) fn describe(condition: &Condition) -> String {
    match condition {
        Condition::Offline { minutes } => format!("OFFLINE for more than {minutes} min"),
        Condition::PowerAbove {
            kw,
            for_minutes,
            window,
        } => {
            let mut text = format!("power above {kw} kW");
            if *for_minutes > 0 {
                text += &format!(" for {for_minutes} min");
            }
            if let Some(window) = window {
                text += &format!(" in window {window}");
            }
            text
        }
        Condition::TodayUsageAbove { limit } => format!("today's usage above {} kWh", limit.kwh()),
        Condition::TodayCostAbove { limit } => format!("today's cost above {limit}"),
    }
}

/// The rules, which are firing, and the recent events.
#[utoipa::path(
    get,
    path = "/api/alerts",
    tag = "panels",
    responses(
        (status = 200, description = "The rules, the active alerts and the last 7 days' events",
            body = AlertsAnswer),
        (status = 503, description = crate::routes::UNAVAILABLE, body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
) -> Result<Json<AlertsAnswer>, ApiError> {
    let Some(rules) = &state.alerts else {
        return Ok(Json(AlertsAnswer {
            evaluator: false,
            rules: Vec::new(),
            active: Vec::new(),
            recent: Vec::new(),
        }));
    };
    let since = Utc::now() - Duration::days(RECENT_DAYS);
    let statements = [
        journal::last_per_rule(),
        journal::recent(since, RECENT_PER_RULE),
    ];
    let results = match rules.journal.query(&statements.join(";\n")).await {
        Ok(results) => results,
        // Nothing recorded yet.
        Err(error) if error.is_database_missing() => Vec::new(),
        Err(error) => return Err(crate::metrics::influx_failed(error).into()),
    };
    let last: Vec<Entry> = results
        .first()
        .map(journal::parse_entries)
        .unwrap_or_default();
    let mut recent: Vec<Entry> = results
        .get(1)
        .map(journal::parse_entries)
        .unwrap_or_default();
    recent.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.rule.cmp(&b.rule)));
    let firing = |rule: &str| {
        last.iter()
            .find(|e| e.rule == rule && e.transition == Transition::Fired)
    };
    let answer = AlertsAnswer {
        evaluator: rules.evaluator,
        rules: rules
            .alerts
            .rules
            .iter()
            .map(|rule| {
                let fired = firing(&rule.name);
                RuleNow {
                    rule: rule.name.clone(),
                    meter: rule.meter.clone(),
                    condition: describe(&rule.condition),
                    state: if fired.is_some() { "firing" } else { "ok" },
                    since: fired.map(|e| rfc3339(e.fired_at)),
                }
            })
            .collect(),
        active: rules
            .alerts
            .rules
            .iter()
            .filter_map(|rule| firing(&rule.name))
            .map(AlertEvent::from)
            .collect(),
        recent: recent.iter().map(AlertEvent::from).collect(),
    };
    Ok(Json(answer))
}
