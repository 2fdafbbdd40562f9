//! What the three benchmark programs share.
//!
//! The benchmarks (`bench-ingest`, `bench-api`, `bench-growth` in `src/bin/`) are run by hand,
//! not in CI: each starts its own Mosquitto and influxd on free loopback ports (never 1883 or
//! 8086) through `test-support`, runs the workspace's real release binaries found next to its own
//! executable, and stops only what it started. Each prints a human table and then exactly one
//! line `JSON {…}` with every figure; figures that have a target are marked PASS or FAIL.
//! BENCHMARKS.md at the workspace root says how to run them and what they measure.
//!
//! - [`report`]: the tables, the verdicts and the JSON line.
//! - [`history`]: a measurement's private services, history loaded with the real
//!   `sensor-publisher --backfill --direct`, the real `mqtt-subscriber` and the wait for its
//!   usage rollup (shared by `bench-api` and `bench-growth`).
//! - [`api`]: the real `api-server`, timed single requests and `wrk` runs against it.
//! - [`machine`]: facts about the machine and the binaries, printed with every result.

pub mod api;
pub mod history;
pub mod machine;
pub mod report;

/// The InfluxDB database every measurement writes to (in its own private influxd).
pub const DATABASE: &str = "energy";

/// The topic prefix of every measurement (on its own private broker); topics are
/// `<prefix>/<PANEL_ID>` (README, "MQTT messages").
pub const TOPIC_PREFIX: &str = "DATA/PM";

/// `count` panel ids, `PANEL_001`, `PANEL_002`, … (zero-padded to at least three digits, so they
/// sort the way the API lists them).
pub fn panel_ids(count: usize) -> Vec<String> {
    let width = count.to_string().len().max(3);
    (1..=count)
        .map(|number| format!("PANEL_{number:0width$}"))
        .collect()
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[std::time::Duration]) -> Option<std::time::Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn panel_ids_sort_in_numeric_order() {
        assert_eq!(panel_ids(3), ["PANEL_001", "PANEL_002", "PANEL_003"]);
        let many = panel_ids(1200);
        assert_eq!(many[0], "PANEL_0001");
        let mut sorted = many.clone();
        sorted.sort();
        assert_eq!(sorted, many);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[ms(5), ms(1), ms(3)]), Some(ms(3)));
        assert_eq!(
            median(&[ms(4), ms(1), ms(3), ms(2)]),
            Some(Duration::from_micros(2500))
        );
    }
}
