//! The rollup kept in a real InfluxDB equals the raw maths, whatever order and however often
//! the readings arrive, and a rebuild from scratch gives the same points: buckets, days and
//! months (the histories cross the end of March).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use energy_core::rollup::{
    buckets, day_of, month_of, DAY_MEASUREMENT, MONTH_MEASUREMENT, QUARTER_MEASUREMENT,
};
use energy_core::{EnergyPoint, MaxPower, Usage};
use energy_influx::{InfluxClient, InfluxSettings};
use energy_rollup::{Dirty, Rollup};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use test_support::history::{Meter, Schedule};
use test_support::Influx;

fn kw(kw: f64) -> MaxPower {
    MaxPower::from_kw(kw).unwrap()
}

/// `MAX_POWER_KW`'s default.
fn max_kw() -> MaxPower {
    kw(5000.0)
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

/// What the rollup must hold: (measurement, panel, start) -> (usage, readings).
type Expected = BTreeMap<(String, String, DateTime<Utc>), (Usage, u64)>;

fn expected(histories: &BTreeMap<String, Vec<EnergyPoint>>) -> Expected {
    expected_at(histories, max_kw())
}

fn expected_at(histories: &BTreeMap<String, Vec<EnergyPoint>>, max_power_kw: MaxPower) -> Expected {
    let mut out = Expected::new();
    for (panel, points) in histories {
        for bucket in buckets(points, DateTime::<Utc>::MIN_UTC, max_power_kw) {
            out.insert(
                (QUARTER_MEASUREMENT.into(), panel.clone(), bucket.start),
                (bucket.usage, bucket.readings),
            );
            for (measurement, start) in [
                (DAY_MEASUREMENT, day_of(bucket.start).start),
                (MONTH_MEASUREMENT, month_of(bucket.start).start),
            ] {
                let sum = out
                    .entry((measurement.into(), panel.clone(), start))
                    .or_insert((Usage::ZERO, 0));
                sum.0 += bucket.usage;
                sum.1 += bucket.readings;
            }
        }
    }
    out
}

/// The rollup as stored, in the shape of [`Expected`].
fn stored(influx: &Influx, database: &str) -> Expected {
    let mut out = Expected::new();
    for measurement in [QUARTER_MEASUREMENT, DAY_MEASUREMENT, MONTH_MEASUREMENT] {
        for (panel, periods) in influx.usage_rollup(database, measurement) {
            for (start, (usage_nkwh, readings)) in periods {
                let usage = Usage::from_nano_kwh(usage_nkwh.into());
                out.insert(
                    (measurement.into(), panel.clone(), start),
                    (usage, readings),
                );
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
        "{what}: rollup points without readings: {extra:?}"
    );
    assert!(!expected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_kept_up_to_date_through_late_duplicated_shuffled_writes_equals_the_raw_maths() {
    let influx = tokio::task::spawn_blocking(Influx::start).await.unwrap();
    for seed in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let database = format!("energy_{seed}");
        let rollup = Rollup::new(client(&influx, &database), max_kw());
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
        assert_same(
            &format!("seed {seed}, live"),
            &stored(&influx, &database),
            &expected,
        );

        // A rebuild of the same readings in a fresh database gives the same rollup.
        let fresh = format!("rebuilt_{seed}");
        let rebuilt = Rollup::new(client(&influx, &fresh), max_kw());
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
    let rollup = Rollup::new(client(&influx, "energy"), kw(1234.5));
    assert_eq!(rollup.state().await.unwrap(), None);
    let until: DateTime<Utc> = "2026-11-27T03:20:05.123456789Z".parse().unwrap();
    rollup.save_state(until, 42).await.unwrap();
    let state = rollup.state().await.unwrap().unwrap();
    assert_eq!(state.complete_until, until);
    assert_eq!(state.log_until, Some(42));
    assert_eq!(state.max_power_kw, kw(1234.5));
    assert!(state.months, "this version keeps month sums");
    // A recorded threshold that is no power (written by hand, say) is no usable state.
    let later = (Utc::now() + Duration::hours(2))
        .timestamp_nanos_opt()
        .unwrap();
    for bad in ["0", "-5"] {
        influx.write(
            "energy",
            &format!(
                "energy_rollup_state complete_until=1i,max_power_kw={bad},format=2i,log_until=1i {later}\n"
            ),
        );
        assert_eq!(rollup.state().await.unwrap(), None, "max_power_kw={bad}");
    }
    // A missing database is no state, not an error.
    let missing = InfluxClient::new(&InfluxSettings {
        influx_url: influx.url(),
        influx_database: "missing".into(),
        influx_token: None,
        influx_timeout_ms: 5_000,
    })
    .unwrap();
    assert_eq!(Rollup::new(missing, kw(1.0)).state().await.unwrap(), None);
}

/// Readings already in InfluxDB when mqtt-subscriber first starts (an upgrade from another
/// writer, or `sensor-publisher --backfill --direct`) are rolled up by its catch-up, and rolled
/// up again when MAX_POWER_KW changes.
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
            "SELECT last(complete_until), last(max_power_kw) FROM energy_rollup_state",
        );
        let row = &answer["results"][0]["series"][0]["values"][0];
        (row[1].as_i64(), row[2].as_f64())
    };
    for max_power_kw in [max_kw(), kw(50.0)] {
        let mut subscriber = test_support::Program::start(
            "mqtt-subscriber",
            &[
                ("MQTT_URL", broker.url()),
                ("INFLUX_URL", influx.url()),
                ("MAX_POWER_KW", max_power_kw.to_string()),
            ],
        );
        test_support::wait_until(
            std::time::Duration::from_secs(120),
            "the rollup to be recorded complete",
            || {
                // Recorded only once the catch-up is done; each run records its own threshold.
                let (until, max) = state(&influx);
                until.is_some() && max == Some(max_power_kw.kw())
            },
        );
        let mut expected = expected(&histories);
        if max_power_kw != max_kw() {
            expected = expected_at(&histories, max_power_kw);
        }
        assert_same(
            &format!("catch-up at {max_power_kw} kW"),
            &stored(&influx, "energy"),
            &expected,
        );
        assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
        assert!(
            subscriber.output().contains("usage rollup caught up"),
            "{}",
            subscriber.output()
        );
    }
}

/// A rollup recorded by a version that kept no month sums (its state has no `format`) gets them
/// from its days when mqtt-subscriber starts, and is then recorded as keeping them.
#[test]
fn a_rollup_recorded_without_month_sums_gets_them_at_the_next_start() {
    let broker = test_support::Mosquitto::start();
    let influx = Influx::start();
    let histories = random_histories(11, "UP", 3);
    let body = all_lines(&histories);
    influx.create_database("energy");
    influx.write("energy", &body);
    // The old rollup: buckets and days, no months, a state without a format.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rollup = Rollup::new(client(&influx, "energy"), max_kw());
    let until = base() + Duration::days(4);
    runtime
        .block_on(rollup.rebuild(base(), until, |_, _| {}))
        .unwrap();
    influx.query("energy", "DROP MEASUREMENT energy_usage_1mo");
    let old_state = format!(
        "energy_rollup_state complete_until={}i,max_power_kw={:?} {}\n",
        until.timestamp_nanos_opt().unwrap(),
        max_kw().kw(),
        until.timestamp_nanos_opt().unwrap()
    );
    influx.write("energy", &old_state);
    let old = runtime.block_on(rollup.state()).unwrap().unwrap();
    assert!(!old.months);
    let without_months: Expected = expected(&histories)
        .into_iter()
        .filter(|((measurement, _, _), _)| measurement != MONTH_MEASUREMENT)
        .collect();
    assert_same("old rollup", &stored(&influx, "energy"), &without_months);

    let mut subscriber = test_support::Program::start(
        "mqtt-subscriber",
        &[("MQTT_URL", broker.url()), ("INFLUX_URL", influx.url())],
    );
    test_support::wait_until(
        std::time::Duration::from_secs(60),
        "the rollup to be recorded with month sums",
        || {
            runtime
                .block_on(rollup.state())
                .ok()
                .flatten()
                .is_some_and(|state| state.months)
        },
    );
    assert_same(
        "after the upgrade",
        &stored(&influx, "energy"),
        &expected(&histories),
    );
    assert_eq!(subscriber.terminate(), Some(0), "{}", subscriber.output());
    assert!(
        subscriber
            .output()
            .contains("added month sums to the usage rollup"),
        "{}",
        subscriber.output()
    );
}
