//! The rollup kept in a real InfluxDB equals the usage rule (every pair's increase spread over
//! its time, by quarter hour; see `test_support::reference`), whatever order and however often
//! the readings arrive, and a rebuild from scratch gives the same points: buckets, hours, days
//! and months (the histories cross the end of March), usage and its estimated part.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use energy_core::rollup::{
    day_of, month_of, DAY_MEASUREMENT, HOUR_MEASUREMENT, MONTH_MEASUREMENT, QUARTER_MEASUREMENT,
};
use energy_core::{EnergyPoint, EstimateAfter, MaxPower, Rules};
use energy_influx::{InfluxClient, InfluxSettings};
use energy_rollup::{Dirty, Rollup, State};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use test_support::history::{Meter, Schedule};
use test_support::reference::{self, Rule};
use test_support::Influx;

fn kw(kw: f64) -> MaxPower {
    MaxPower::from_kw(kw).unwrap()
}

/// `MAX_POWER_KW`'s default.
fn max_kw() -> MaxPower {
    kw(5000.0)
}

/// The rules with `ESTIMATE_AFTER_SECS`' default.
fn rules(max_power_kw: MaxPower) -> Rules {
    Rules::new(max_power_kw, EstimateAfter::DEFAULT)
}

/// A quarter hour in nanoseconds.
const QUARTER_NS: i64 = 900_000_000_000;

/// The start of the UTC quarter hour holding `time`.
fn quarter_of(time: DateTime<Utc>) -> DateTime<Utc> {
    let ns = time.timestamp_nanos_opt().unwrap();
    Utc.timestamp_nanos(ns - ns.rem_euclid(QUARTER_NS))
}

/// The start of the UTC hour holding `time`.
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(time.timestamp().div_euclid(3600) * 3600, 0)
        .unwrap()
}

fn client(influx: &Influx, database: &str) -> InfluxClient {
    influx.create_database(database);
    InfluxClient::new(&InfluxSettings {
        influx_url: influx.url(),
        influx_database: database.to_owned(),
        influx_token: None,
        influx_timeout_ms: 30_000,
    })
    .unwrap()
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 30, 20, 0, 0).unwrap()
}

/// A random history for one panel over ~3 days: irregular spacing (a second to 4 minutes in
/// whole milliseconds, and gaps of 15 minutes to 4 hours, so some buckets are empty and some
/// runs of buckets are long), resets, zero glitches and spikes.
fn history(rng: &mut StdRng) -> Vec<EnergyPoint> {
    let meter = Meter {
        register: 0.0..=5000.0,
        increase: 0.0..=2.0,
        reset: 0.02,
        zero: 0.02,
        spike: 0.02,
        spike_kwh: 1e6,
        ..Meter::default()
    };
    let from = base() + Duration::seconds(rng.gen_range(0..600));
    let schedule = Schedule::new(
        from,
        base() + Duration::days(3),
        Duration::seconds(1)..=Duration::minutes(4),
    )
    .with_gaps(0.03, Duration::minutes(15)..=Duration::hours(4));
    meter
        .readings(rng, &[schedule])
        .into_iter()
        .map(|r| EnergyPoint {
            time: r.time,
            energy_kwh: r.energy_kwh,
        })
        .collect()
}

fn line(panel: &str, point: &EnergyPoint) -> String {
    format!(
        "energy_data,panel={panel} power_kw=1.0,energy_kwh={:?} {}\n",
        point.energy_kwh,
        point.time.timestamp_nanos_opt().unwrap()
    )
}

/// `count` panels named `<prefix>0`, `<prefix>1`, … with random histories from `seed`.
fn random_histories(seed: u64, prefix: &str, count: usize) -> BTreeMap<String, Vec<EnergyPoint>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| (format!("{prefix}{i}"), history(&mut rng)))
        .collect()
}

/// Every reading of `histories` as line protocol.
fn all_lines(histories: &BTreeMap<String, Vec<EnergyPoint>>) -> String {
    histories
        .iter()
        .flat_map(|(panel, points)| points.iter().map(move |p| line(panel, p)))
        .collect()
}

/// A rollup point's figures: (usage nano-kWh, estimated nano-kWh, readings).
type Figures = (i64, i64, u64);

/// What the rollup must hold: (measurement, panel, start) -> figures.
type Expected = BTreeMap<(String, String, DateTime<Utc>), Figures>;

fn expected(histories: &BTreeMap<String, Vec<EnergyPoint>>) -> Expected {
    expected_with(histories, Rule::default())
}

/// The rollup by the reference rule: each quarter hour's shares of every pair, and its count of
/// readings. The rollup keeps a bucket for every quarter hour a pair overlaps (also when its
/// share is 0: a glitch, a dropped register) or a reading lies in, so every quarter hour from
/// the first reading's to the last reading's; days and months are the sums of their buckets.
fn expected_with(histories: &BTreeMap<String, Vec<EnergyPoint>>, rule: Rule) -> Expected {
    let mut out = Expected::new();
    for (panel, points) in histories {
        let mut quarters: BTreeMap<DateTime<Utc>, Figures> = BTreeMap::new();
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            continue;
        };
        let mut quarter = quarter_of(first.time);
        while quarter <= quarter_of(last.time) {
            quarters.insert(quarter, (0, 0, 0));
            quarter += Duration::minutes(15);
        }
        for point in points {
            quarters.get_mut(&quarter_of(point.time)).unwrap().2 += 1;
        }
        let readings: Vec<(DateTime<Utc>, f64)> =
            points.iter().map(|p| (p.time, p.energy_kwh)).collect();
        for (start, shares) in reference::quarter_shares(&readings, rule) {
            let start = Utc.timestamp_nanos(i64::try_from(start).unwrap());
            let figures = quarters
                .get_mut(&start)
                .unwrap_or_else(|| panic!("{panel}: a share outside the readings at {start}"));
            figures.0 += i64::try_from(shares.usage).unwrap();
            figures.1 += i64::try_from(shares.estimated).unwrap();
        }
        for (start, figures) in quarters {
            out.insert((QUARTER_MEASUREMENT.into(), panel.clone(), start), figures);
            for (measurement, start) in [
                (HOUR_MEASUREMENT, hour_of(start)),
                (DAY_MEASUREMENT, day_of(start).start),
                (MONTH_MEASUREMENT, month_of(start).start),
            ] {
                let sum = out
                    .entry((measurement.into(), panel.clone(), start))
                    .or_insert((0, 0, 0));
                sum.0 += figures.0;
                sum.1 += figures.1;
                sum.2 += figures.2;
            }
        }
    }
    out
}

/// Asserts that `expected` has estimated usage, so that its checks of it can fail.
fn assert_some_estimated(expected: &Expected) {
    assert!(
        expected.values().any(|figures| figures.1 > 0),
        "the histories have gaps longer than 900 s: some usage must be estimated"
    );
}

/// Starts mqtt-subscriber on `broker` and `influx` and waits (up to a minute) until the state it
/// records satisfies `done`.
fn subscriber_until(
    broker: &test_support::Mosquitto,
    influx: &Influx,
    runtime: &tokio::runtime::Runtime,
    rollup: &Rollup,
    what: &str,
    done: impl Fn(&State) -> bool,
) -> test_support::Program {
    let subscriber = test_support::Program::start(
        "mqtt-subscriber",
        &[("MQTT_URL", broker.url()), ("INFLUX_URL", influx.url())],
    );
    test_support::wait_until(std::time::Duration::from_secs(60), what, || {
        runtime
            .block_on(rollup.state())
            .ok()
            .flatten()
            .is_some_and(|state| done(&state))
    });
    subscriber
}

/// The rollup as stored, in the shape of [`Expected`].
fn stored(influx: &Influx, database: &str) -> Expected {
    let mut out = Expected::new();
    for measurement in [
        QUARTER_MEASUREMENT,
        HOUR_MEASUREMENT,
        DAY_MEASUREMENT,
        MONTH_MEASUREMENT,
    ] {
        for (panel, periods) in influx.usage_rollup_figures(database, measurement) {
            for (start, figures) in periods {
                out.insert((measurement.into(), panel.clone(), start), figures);
            }
        }
    }
    out
}

fn assert_same(what: &str, stored: &Expected, expected: &Expected) {
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(key, value)| stored.get(*key) != Some(value))
        .take(5)
        .map(|(key, value)| format!("{key:?}: expected {value:?}, stored {:?}", stored.get(key)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: wrong or missing rollup points:\n{}",
        wrong.join("\n")
    );
    let extra: Vec<_> = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: rollup points outside the readings: {extra:?}"
    );
    assert!(!expected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_kept_up_to_date_through_late_duplicated_shuffled_writes_equals_the_raw_maths() {
    let influx = tokio::task::spawn_blocking(Influx::start).await.unwrap();
    for seed in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let database = format!("energy_{seed}");
        let rollup = Rollup::new(client(&influx, &database), rules(max_kw()));
        let histories: BTreeMap<String, Vec<EnergyPoint>> = (0..4)
            .map(|i| (format!("P{i}"), history(&mut rng)))
            .collect();

        // Every reading once, a tenth of them twice, in random batches: mostly in time order
        // with some arriving hours late, like a broker redelivering after an outage.
        let mut deliveries: Vec<(f64, String, EnergyPoint)> = Vec::new();
        for (panel, points) in &histories {
            for point in points {
                let late = if rng.gen_range(0..20) == 0 {
                    rng.gen_range(0.0..20_000.0)
                } else {
                    0.0
                };
                let order = point.time.timestamp() as f64 + late;
                deliveries.push((order, panel.clone(), *point));
                if rng.gen_range(0..10) == 0 {
                    deliveries.push((order + rng.gen_range(0.0..5_000.0), panel.clone(), *point));
                }
            }
        }
        deliveries.sort_by(|a, b| a.0.total_cmp(&b.0));
        for batch in deliveries.chunks(rng.gen_range(1..400)) {
            let mut shuffled = batch.to_vec();
            shuffled.shuffle(&mut rng);
            let body: String = shuffled
                .iter()
                .map(|(_, panel, point)| line(panel, point))
                .collect();
            influx.write(&database, &body);
            let mut dirty = Dirty::default();
            for (_, panel, point) in &shuffled {
                dirty.mark(panel, point.time);
            }
            rollup.update(&dirty).await.unwrap();
        }
        let expected = expected(&histories);
        assert_some_estimated(&expected);
        assert_same(
            &format!("seed {seed}, live"),
            &stored(&influx, &database),
            &expected,
        );

        // A rebuild of the same readings in a fresh database gives the same rollup.
        let fresh = format!("rebuilt_{seed}");
        let rebuilt = Rollup::new(client(&influx, &fresh), rules(max_kw()));
        let body = all_lines(&histories);
        influx.write(&fresh, &body);
        let earliest = rebuilt.earliest_reading().await.unwrap().unwrap();
        assert_eq!(
            earliest,
            histories.values().map(|p| p[0].time).min().unwrap()
        );
        let mut days = 0;
        rebuilt
            .rebuild(earliest, base() + Duration::days(4), |_, _| days += 1)
            .await
            .unwrap();
        assert!(days >= 4, "one callback per UTC day, got {days}");
        assert_same(
            &format!("seed {seed}, rebuilt"),
            &stored(&influx, &fresh),
            &expected,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_records_how_far_the_rollup_is_complete_and_with_which_threshold() {
    let influx = tokio::task::spawn_blocking(Influx::start).await.unwrap();
    let rollup = Rollup::new(client(&influx, "energy"), rules(kw(1234.5)));
    assert_eq!(rollup.state().await.unwrap(), None);
    let until: DateTime<Utc> = "2026-11-27T03:20:05.123456789Z".parse().unwrap();
    rollup.save_state(until, 42).await.unwrap();
    let state = rollup.state().await.unwrap().unwrap();
    assert_eq!(state.complete_until, until);
    assert_eq!(state.log_until, Some(42));
    assert_eq!(state.max_power_kw, kw(1234.5));
    assert_eq!(state.estimate_after, Some(EstimateAfter::DEFAULT));
    assert_eq!(
        state.format, 5,
        "this version spreads every pair over its time and keeps peaks and hours"
    );
    assert!(state.months, "this version keeps month sums");
    assert!(state.computed_with(rules(kw(1234.5))));
    assert!(!state.computed_with(rules(kw(5000.0))));
    let other_estimate = Rules::new(kw(1234.5), EstimateAfter::from_secs(1800).unwrap());
    assert!(!state.computed_with(other_estimate));
    // As stored: integers, and the threshold a float.
    let answer = influx.query(
        "energy",
        "SELECT complete_until, max_power_kw, estimate_after_secs, format, log_until \
         FROM energy_rollup_state",
    );
    let row = &answer["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1].as_i64(), until.timestamp_nanos_opt(), "{answer}");
    assert_eq!(row[2].as_f64(), Some(1234.5), "{answer}");
    assert_eq!(row[3].as_i64(), Some(900), "{answer}");
    assert_eq!(row[4].as_i64(), Some(5), "{answer}");
    assert_eq!(row[5].as_i64(), Some(42), "{answer}");

    // A recorded threshold that is no power (written by hand, say) is no usable state.
    let later = (Utc::now() + Duration::hours(2))
        .timestamp_nanos_opt()
        .unwrap();
    for bad in ["0", "-5"] {
        influx.write(
            "energy",
            &format!(
                "energy_rollup_state complete_until=1i,max_power_kw={bad},estimate_after_secs=900i,format=4i,log_until=1i {later}\n"
            ),
        );
        assert_eq!(rollup.state().await.unwrap(), None, "max_power_kw={bad}");
    }
    // A recorded estimate threshold that is no number of seconds from 1 on is a state computed
    // with no usable threshold: no rules match it, so it is rebuilt and not read.
    influx.write(
        "energy",
        &format!(
            "energy_rollup_state complete_until=1i,max_power_kw=1234.5,estimate_after_secs=0i,format=4i,log_until=1i {later}\n"
        ),
    );
    let state = rollup.state().await.unwrap().unwrap();
    assert_eq!(state.estimate_after, None);
    assert!(!state.computed_with(rules(kw(1234.5))));

    // A state of the earlier format (no estimate threshold, format 2) is read as such, and
    // matches no rules.
    let old = Rollup::new(client(&influx, "old"), rules(kw(1234.5)));
    influx.write(
        "old",
        "energy_rollup_state complete_until=5i,max_power_kw=1234.5,format=2i,log_until=7i 1\n",
    );
    let state = old.state().await.unwrap().unwrap();
    assert_eq!(
        (
            state.format,
            state.estimate_after,
            state.months,
            state.log_until
        ),
        (2, None, true, Some(7))
    );
    assert!(!state.computed_with(rules(kw(1234.5))));

    // A missing database is no state, not an error.
    let missing = InfluxClient::new(&InfluxSettings {
        influx_url: influx.url(),
        influx_database: "missing".into(),
        influx_token: None,
        influx_timeout_ms: 5_000,
    })
    .unwrap();
    assert_eq!(
        Rollup::new(missing, rules(kw(1.0))).state().await.unwrap(),
        None
    );
}

/// Readings already in InfluxDB when mqtt-subscriber first starts (an upgrade from another
/// writer, or `sensor-publisher --backfill --direct`) are rolled up by its catch-up, and rolled
/// up again when MAX_POWER_KW or ESTIMATE_AFTER_SECS changes.
#[test]
fn the_subscriber_rolls_up_history_it_never_saw_and_rebuilds_when_the_threshold_changes() {
    let broker = test_support::Mosquitto::start();
    let influx = Influx::start();
    influx.create_database("energy");
    let histories = random_histories(7, "OLD", 3);
    let body = all_lines(&histories);
    influx.write("energy", &body);

    let state = |influx: &Influx| {
        let answer = influx.query(
            "energy",
            "SELECT last(complete_until), last(max_power_kw), last(estimate_after_secs), \
             last(format) FROM energy_rollup_state",
        );
        let row = &answer["results"][0]["series"][0]["values"][0];
        (
            row[1].as_i64(),
            row[2].as_f64(),
            row[3].as_i64(),
            row[4].as_i64(),
        )
    };
    // The gaps of the histories are 15 minutes to 4 hours: an hour's threshold counts fewer of
    // them as estimated, so the last run changes the estimated figures.
    let hour = Rule {
        max_power_kw: 50.0,
        estimate_after_secs: 3600,
    };
    let at_50 = Rule {
        max_power_kw: 50.0,
        ..Rule::default()
    };
    let estimated = |expected: &Expected| -> Vec<i64> { expected.values().map(|f| f.1).collect() };
    assert_ne!(
        estimated(&expected_with(&histories, hour)),
        estimated(&expected_with(&histories, at_50))
    );
    assert_some_estimated(&expected_with(&histories, hour));
    let runs = [
        (Rule::default(), "no rollup recorded yet"),
        (at_50, "MAX_POWER_KW changed"),
        (hour, "ESTIMATE_AFTER_SECS changed"),
    ];
    for (rule, reason) in runs {
        let mut subscriber = test_support::Program::start(
            "mqtt-subscriber",
            &[
                ("MQTT_URL", broker.url()),
                ("INFLUX_URL", influx.url()),
                ("MAX_POWER_KW", rule.max_power_kw.to_string()),
                ("ESTIMATE_AFTER_SECS", rule.estimate_after_secs.to_string()),
            ],
        );
        test_support::wait_until(
            std::time::Duration::from_secs(120),
            "the rollup to be recorded complete",
            || {
                // Recorded only once the catch-up is done; each run records its own thresholds.
                let (until, max, estimate_after, format) = state(&influx);
                until.is_some()
                    && max == Some(rule.max_power_kw)
                    && estimate_after == Some(rule.estimate_after_secs)
                    && format == Some(5)
            },
        );
        let expected = expected_with(&histories, rule);
        assert_some_estimated(&expected);
        assert_same(
            &format!("catch-up with {rule:?}"),
            &stored(&influx, "energy"),
            &expected,
        );
        assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
        for said in ["usage rollup caught up", reason] {
            assert!(
                subscriber.output().contains(said),
                "{said:?} not in:\n{}",
                subscriber.output()
            );
        }
    }
}

/// The rollup an earlier version kept (format 2): each pair's whole increase (0 for a dropped
/// register or more than 5000 kW) in the bucket of its later reading, buckets only where a
/// reading lies, no estimated part; days and months are the sums of their buckets. As
/// (measurement, panel, start) -> (usage nano-kWh, readings).
fn old_rule_rollup(
    histories: &BTreeMap<String, Vec<EnergyPoint>>,
) -> BTreeMap<(String, String, DateTime<Utc>), (i64, u64)> {
    let mut out = BTreeMap::new();
    for (panel, points) in histories {
        let mut quarters: BTreeMap<DateTime<Utc>, (i64, u64)> = BTreeMap::new();
        for (i, b) in points.iter().enumerate() {
            let entry = quarters.entry(quarter_of(b.time)).or_default();
            entry.1 += 1;
            if let Some(a) = i.checked_sub(1).map(|j| &points[j]) {
                let increase = b.energy_kwh - a.energy_kwh;
                let hours = (b.time - a.time).num_nanoseconds().unwrap() as f64 / 3.6e12;
                if increase > 0.0 && increase <= 5000.0 * hours {
                    entry.0 += (increase * 1e9).round() as i64;
                }
            }
        }
        for (start, figures) in quarters {
            out.insert(
                (QUARTER_MEASUREMENT.to_owned(), panel.clone(), start),
                figures,
            );
            for (measurement, start) in [
                (DAY_MEASUREMENT, day_of(start).start),
                (MONTH_MEASUREMENT, month_of(start).start),
            ] {
                let sum: &mut (i64, u64) = out
                    .entry((measurement.to_owned(), panel.clone(), start))
                    .or_default();
                sum.0 += figures.0;
                sum.1 += figures.1;
            }
        }
    }
    out
}

/// A rollup recorded by the previous version (format 2: each pair in the bucket of its later
/// reading, no estimated part, no estimate threshold in its state) is rebuilt whole by the
/// rule of this version when mqtt-subscriber starts, and then recorded in the new format. (This
/// replaces the check that a rollup without month sums got them at the next start: such a
/// rollup is now rebuilt whole, like this one.)
#[test]
fn a_rollup_recorded_in_the_old_format_is_rebuilt_at_the_next_start() {
    let broker = test_support::Mosquitto::start();
    let influx = Influx::start();
    let histories = random_histories(11, "UP", 3);
    let body = all_lines(&histories);
    influx.create_database("energy");
    influx.write("energy", &body);
    // The old rollup, written as the previous version wrote it, with its state.
    let old = old_rule_rollup(&histories);
    let mut lines = String::new();
    for ((measurement, panel, start), (usage, readings)) in &old {
        lines.push_str(&format!(
            "{measurement},panel={panel} usage_nkwh={usage}i,readings={readings}i {}\n",
            start.timestamp_nanos_opt().unwrap()
        ));
    }
    let until = base() + Duration::days(4);
    let until_ns = until.timestamp_nanos_opt().unwrap();
    lines.push_str(&format!(
        "energy_rollup_state complete_until={until_ns}i,max_power_kw={:?},format=2i,log_until={until_ns}i {until_ns}\n",
        max_kw().kw(),
    ));
    influx.write("energy", &lines);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rollup = Rollup::new(client(&influx, "energy"), rules(max_kw()));
    let recorded = runtime.block_on(rollup.state()).unwrap().unwrap();
    assert_eq!((recorded.format, recorded.estimate_after), (2, None));
    assert!(!recorded.computed_with(rules(max_kw())));
    let mut stored_old = BTreeMap::new();
    for measurement in [QUARTER_MEASUREMENT, DAY_MEASUREMENT, MONTH_MEASUREMENT] {
        for (panel, periods) in influx.usage_rollup("energy", measurement) {
            for (start, figures) in periods {
                stored_old.insert((measurement.to_owned(), panel.clone(), start), figures);
            }
        }
    }
    assert_eq!(stored_old, old, "the old rollup as written");
    // The old rule gives other figures than the new one (pairs that straddle a bucket's end are
    // split now), so the rebuild is seen.
    let expected = expected(&histories);
    assert_some_estimated(&expected);
    let differing = old
        .iter()
        .filter(|(key, (usage, _))| expected.get(*key).map(|f| f.0) != Some(*usage))
        .count();
    assert!(differing > 0, "the old and new rules agree on every point");

    let mut subscriber = subscriber_until(
        &broker,
        &influx,
        &runtime,
        &rollup,
        "the rollup to be recorded in the new format",
        |state| state.computed_with(rules(max_kw())),
    );
    let state = runtime.block_on(rollup.state()).unwrap().unwrap();
    assert_eq!(
        (state.format, state.estimate_after, state.months),
        (5, Some(EstimateAfter::DEFAULT), true)
    );
    // Every old point was written again (each old bucket holds a reading, so the new rollup
    // has it too), with the estimated part.
    assert_same("after the upgrade", &stored(&influx, "energy"), &expected);
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
    for said in ["computed by an earlier rule", "usage rollup caught up"] {
        assert!(
            subscriber.output().contains(said),
            "{said:?} not in:\n{}",
            subscriber.output()
        );
    }
}

/// A rollup recorded by the previous version (format 4: buckets, days and months with peaks, no
/// hour sums) is not rebuilt at the next start: its hours are summed from its buckets, and the
/// rollup is then recorded in the current format.
#[test]
fn a_rollup_without_hour_sums_gains_them_from_its_buckets_at_the_next_start() {
    let broker = test_support::Mosquitto::start();
    let influx = Influx::start();
    let histories = random_histories(13, "HOURS", 3);
    influx.create_database("energy");
    influx.write("energy", &all_lines(&histories));
    let expected = expected(&histories);
    // The previous version's rollup: every level but the hours, and its state.
    let mut lines = String::new();
    for ((measurement, panel, start), (usage, estimated, readings)) in &expected {
        if measurement == HOUR_MEASUREMENT {
            continue;
        }
        lines.push_str(&format!(
            "{measurement},panel={panel} usage_nkwh={usage}i,estimated_nkwh={estimated}i,\
             peak_nkwh=0i,readings={readings}i {}\n",
            start.timestamp_nanos_opt().unwrap()
        ));
    }
    let until = histories
        .values()
        .filter_map(|points| points.last())
        .map(|point| point.time)
        .max()
        .unwrap()
        + Duration::minutes(30);
    let until_ns = until.timestamp_nanos_opt().unwrap();
    lines.push_str(&format!(
        "energy_rollup_state complete_until={until_ns}i,max_power_kw={:?},\
         estimate_after_secs=900i,format=4i,log_until={until_ns}i {until_ns}\n",
        max_kw().kw(),
    ));
    influx.write("energy", &lines);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rollup = Rollup::new(client(&influx, "energy"), rules(max_kw()));
    let recorded = runtime.block_on(rollup.state()).unwrap().unwrap();
    assert_eq!(recorded.format, 4);
    assert!(recorded.computed_with(rules(max_kw())));
    assert!(
        !recorded.coverage().hours,
        "readers must not look for hour sums in it"
    );
    assert!(influx
        .usage_rollup_figures("energy", HOUR_MEASUREMENT)
        .is_empty());

    let mut subscriber = subscriber_until(
        &broker,
        &influx,
        &runtime,
        &rollup,
        "the rollup to be recorded with hour sums",
        |state| state.format == 5 && state.coverage().hours,
    );
    assert_same("after adding hours", &stored(&influx, "energy"), &expected);
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
    let output = subscriber.output();
    assert!(
        output.contains("hour sums added to the usage rollup"),
        "{output}"
    );
    assert!(
        !output.contains("rebuilding the usage rollup"),
        "adding hours must not rebuild: {output}"
    );
}
