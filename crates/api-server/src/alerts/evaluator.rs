//! The evaluator: every `ALERTS_INTERVAL_SECS`, what each rule's meter shows now (its live
//! state, today's usage and cost, the tariff window in force) from the same store calls and
//! maths as the answers, through each rule's state machine (`energy_core::alerts`). A firing
//! or resolution is recorded in the journal first and only then handed to the delivery, so a
//! crash between the two loses nothing: at start the evaluator takes every rule's state from
//! its last entry (a rule still firing is not announced again) and hands every entry that
//! still owes a notification to the delivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use energy_core::alerts::{Observation, RuleState, Transition};
use energy_core::{period, Cost, Usage};
use energy_influx::InfluxError;
use energy_rollup::alerts::{self as journal, Entry};
use tokio::sync::mpsc;

use crate::answers::RealtimePanel;
use crate::pricing::{self, load_of};
use crate::state::AppState;
use crate::virtual_meters;

/// How far back, at start, entries that still owe a notification are looked for (the
/// delivery gives up on a target a day after the event).
const OWED_LOOKBACK_DAYS: i64 = 2;

/// Pause before asking a silent InfluxDB again for the journal at start.
const START_RETRY: StdDuration = StdDuration::from_secs(5);

/// Evaluates the rules until the process ends.
pub(crate) async fn run(state: Arc<AppState>, every: StdDuration, deliver: mpsc::Sender<Entry>) {
    let Some(rules) = &state.alerts else {
        return;
    };
    let mut states = loop {
        match restore(&state, &deliver).await {
            Ok(states) => break states,
            Err(error) => {
                tracing::warn!(%error, "alerts: cannot read the alert journal yet; trying again");
                tokio::time::sleep(START_RETRY).await;
            }
        }
    };
    tracing::info!(
        rules = rules.alerts.rules.len(),
        firing = states.values().filter(|s| s.firing).count(),
        "alerts: evaluating"
    );
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = evaluate(&state, &mut states, &deliver).await {
            tracing::warn!(%error, "alerts: cannot evaluate the rules now; trying at the next tick");
        }
    }
}

/// Every rule's state from its last journal entry; every entry still owing a notification
/// handed to the delivery.
async fn restore(
    state: &AppState,
    deliver: &mpsc::Sender<Entry>,
) -> Result<BTreeMap<String, RuleState>, InfluxError> {
    let Some(rules) = &state.alerts else {
        return Ok(BTreeMap::new());
    };
    let since = Utc::now() - Duration::days(OWED_LOOKBACK_DAYS);
    let statements = [journal::last_per_rule(), journal::undelivered(since)];
    let results = match rules.journal.query(&statements.join(";\n")).await {
        Ok(results) => results,
        Err(error) if error.is_database_missing() => Vec::new(),
        Err(error) => return Err(error),
    };
    let mut states = BTreeMap::new();
    for entry in results
        .first()
        .map(journal::parse_entries)
        .unwrap_or_default()
    {
        let firing = entry.transition == Transition::Fired;
        crate::metrics::alert_firing(&entry.rule, firing);
        states.insert(
            entry.rule.clone(),
            RuleState {
                firing,
                pending_since: None,
                fired_at: firing.then_some(entry.fired_at),
                value: Some(entry.value),
            },
        );
    }
    for entry in results
        .get(1)
        .map(journal::parse_entries)
        .unwrap_or_default()
    {
        tracing::info!(rule = %entry.rule, id = %entry.id, pending = ?entry.pending,
            "alerts: a notification is still owed; sending it");
        // The channel is as large as the delivery needs; if it is closed the process is ending.
        let _ = deliver.send(entry).await;
    }
    Ok(states)
}

/// One evaluation of every rule.
async fn evaluate(
    state: &AppState,
    states: &mut BTreeMap<String, RuleState>,
    deliver: &mpsc::Sender<Entry>,
) -> Result<(), InfluxError> {
    let Some(rules) = &state.alerts else {
        return Ok(());
    };
    let seen = observe(state, Utc::now()).await?;
    // Events in whole seconds: the journal point of an event is rewritten at exactly its
    // instant, which the journal reads back in milliseconds.
    let now = Utc::now().trunc_subsecs(0);
    for rule in &rules.alerts.rules {
        let before = states.get(&rule.name).cloned().unwrap_or_default();
        let observation = seen.get(&rule.meter).cloned().unwrap_or_default();
        let (after, event) = rule.evaluate(&before, &observation, now);
        let Some(event) = event else {
            states.insert(rule.name.clone(), after);
            continue;
        };
        let entry = Entry {
            rule: rule.name.clone(),
            meter: rule.meter.clone(),
            transition: event.transition,
            at: event.at,
            fired_at: match event.transition {
                Transition::Fired => event.at,
                Transition::Resolved => before.fired_at.unwrap_or(event.at),
            },
            value: event.value,
            threshold: event.threshold,
            message: event.message.clone(),
            id: event.id.clone(),
            pending: rule
                .notify
                .iter()
                .map(|target| target.name().to_owned())
                .collect(),
        };
        // Recorded before it is sent; if the record fails, the state stays as it was and the
        // next tick sees the same transition again.
        rules.journal.write(journal::line(&entry)).await?;
        tracing::info!(rule = %entry.rule, meter = %entry.meter,
            transition = entry.transition.name(), message = %entry.message,
            "alerts: {}", if entry.transition == Transition::Fired { "firing" } else { "resolved" });
        crate::metrics::alert_event(&entry.rule, entry.transition);
        states.insert(rule.name.clone(), after);
        if !entry.pending.is_empty() {
            let _ = deliver.send(entry).await;
        }
    }
    Ok(())
}

/// What every panel and virtual meter shows now, by name.
async fn observe(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Observation>, InfluxError> {
    let (_, today) = period::today(now, state.timezone);
    let tariffs = &state.tariffs;
    let meters = virtual_meters::all(&state.meters);
    let (latest, parts) = futures_util::future::try_join(
        state.store.latest(),
        pricing::parts(
            &state.store,
            tariffs,
            &meters,
            state.timezone,
            &[today],
            false,
        ),
    )
    .await?;
    let live: BTreeMap<String, RealtimePanel> =
        virtual_meters::realtime(&state.meters, &latest, now, state.offline_after_secs);
    let mut seen = BTreeMap::new();
    for (name, entry) in &live {
        let plan = tariffs.plan_of(name);
        let current = tariffs.now(plan, now, state.timezone);
        let window = tariffs.plans[plan].versions[current.version].windows[current.window]
            .name
            .clone();
        let (today_usage, today_cost) = match parts.get(name) {
            Some(periods) => {
                let day = &periods[0];
                let priced = tariffs.price(plan, day.iter().map(|(k, l)| (*k, l.energy)));
                (load_of(day).energy.usage, priced.cost)
            }
            None => (Usage::ZERO, Cost::ZERO),
        };
        seen.insert(
            name.clone(),
            Observation {
                // A virtual meter's is its oldest member's; OFFLINE members make it OFFLINE.
                seconds_since_last_seen: Some(entry.seconds_since_last_seen),
                power_kw: Some(entry.power_kw),
                today_usage,
                today_cost,
                window: Some(window),
            },
        );
    }
    Ok(seen)
}
