//! `mqtt-subscriber --check-rollup FROM..TO [--repair]`: the usage rollup against the raw maths
//! over a range of UTC days, every difference printed (docs/rollup.md, "Checking it").
//!
//! The command writes no sum: with `--repair` it writes log entries naming what differs, and
//! the subscriber that keeps the rollup recomputes them, so there is never a second writer.

use std::process::ExitCode;

use chrono::{NaiveTime, TimeZone, Utc};
use energy_core::invalidation::Dirty;
use energy_core::Rules;
use energy_influx::InfluxClient;
use energy_rollup::Rollup;

use crate::settings::DayRange;

/// Names the entries a repair writes in the rollup's log.
const REPAIR_WRITER: &str = "mqtt-subscriber-check";

pub async fn run(influx: &InfluxClient, rules: Rules, range: DayRange, repair: bool) -> ExitCode {
    let rollup = Rollup::new(influx.clone(), rules);
    let from = Utc.from_utc_datetime(&range.first.and_time(NaiveTime::MIN));
    let to =
        Utc.from_utc_datetime(&range.last.and_time(NaiveTime::MIN)) + chrono::Duration::days(1);
    match rollup.state().await {
        Ok(Some(state)) if !state.computed_with(rules) => {
            println!(
                "note: the rollup was computed with MAX_POWER_KW={}, ESTIMATE_AFTER_SECS={} \
                 (format {}) and this check uses {}, {} (format {}): give the check the \
                 writer's values, or let the writer rebuild it",
                state.max_power_kw,
                state
                    .estimate_after
                    .map_or_else(|| "(none)".to_owned(), |e| e.to_string()),
                state.format,
                rules.max_power_kw,
                rules.estimate_after,
                energy_core::rollup::FORMAT_HOURS,
            );
        }
        Ok(None) => println!("note: no usage rollup is recorded in this database"),
        Ok(Some(_)) => {}
        Err(error) => {
            eprintln!("error: could not read the rollup's state: {error}");
            return ExitCode::from(3);
        }
    }
    let clock = std::time::Instant::now();
    let differences = match rollup.check(from, to).await {
        Ok(differences) => differences,
        Err(error) => {
            eprintln!("error: could not check the usage rollup: {error}");
            return ExitCode::from(3);
        }
    };
    for d in &differences {
        println!(
            "difference panel={} level={} start={} rollup_kwh={} raw_kwh={} rollup_readings={} raw_readings={}",
            d.panel,
            d.level.name(),
            d.start.to_rfc3339(),
            d.rollup.usage.kwh(),
            d.expected.usage.kwh(),
            d.rollup.readings,
            d.expected.readings,
        );
    }
    println!(
        "checked {} to {} (UTC days) in {:.1} s: {} difference(s)",
        range.first,
        range.last,
        clock.elapsed().as_secs_f64(),
        differences.len()
    );
    if differences.is_empty() {
        return ExitCode::SUCCESS;
    }
    if !repair {
        return ExitCode::from(1);
    }
    let mut dirty = Dirty::default();
    for difference in &differences {
        difference.mark(&mut dirty);
    }
    match rollup.request_recompute(&dirty, REPAIR_WRITER).await {
        Ok(()) => {
            println!(
                "repair requested: the subscriber that keeps the rollup (ROLLUP_WRITER) recomputes \
                 {} bucket(s) and their days and months within seconds; check again to confirm",
                dirty.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: could not request the repair: {error}");
            ExitCode::from(3)
        }
    }
}
