//! The worked examples of the usage rule, in Asia/Jakarta (UTC+7): a pair of readings is spread
//! over the time between them, so the pair across local midnight is shared by both days, a
//! reading at exactly midnight ends the old day, and a long outage is shared by every day it
//! spans, all of it estimated.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Jakarta;
use energy_core::period::{day, month};
use energy_core::rollup::buckets;
use energy_core::usage::{usage_in, usage_in_periods, Energy, EstimateAfter, Rules};
use energy_core::{EnergyPoint, Period, Usage};

fn rules() -> Rules {
    Rules::new("5000".parse().unwrap(), EstimateAfter::DEFAULT)
}

fn jakarta(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Jakarta
        .with_ymd_and_hms(2026, m, d, h, min, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn reading(time: DateTime<Utc>, energy_kwh: f64) -> EnergyPoint {
    EnergyPoint { time, energy_kwh }
}

fn days(m: u32, from: u32, count: u32) -> Vec<Period> {
    (from..from + count)
        .map(|d| day(NaiveDate::from_ymd_opt(2026, m, d).unwrap(), Jakarta))
        .collect()
}

fn kwh(usage: f64, estimated: f64) -> Energy {
    Energy {
        usage: Usage::from_kwh(usage),
        estimated: Usage::from_kwh(estimated),
    }
}

#[test]
fn a_pair_across_midnight_gives_each_day_its_part() {
    // 23:50 → 1000.0 kWh, 00:10 → 1002.0 kWh: 2 kWh over 20 minutes, 10 of them on each day.
    // Twenty minutes is more than ESTIMATE_AFTER_SECS (900 s): the shares are estimated too.
    let points = [
        reading(jakarta(11, 26, 23, 50), 1000.0),
        reading(jakarta(11, 27, 0, 10), 1002.0),
    ];
    let [old, new] = usage_in_periods(&points, &days(11, 26, 2), rules())[..] else {
        unreachable!()
    };
    assert_eq!(old, kwh(1.0, 1.0));
    assert_eq!(new, kwh(1.0, 1.0));
    // The two quarter hours either side of midnight (16:45 and 17:00 UTC).
    let quarter = |h: u32, min: u32| Period {
        start: jakarta(11, 26, h, min),
        end: jakarta(11, 26, h, min) + chrono::Duration::minutes(15),
    };
    assert_eq!(
        quarter(23, 45).start.to_rfc3339(),
        "2026-11-26T16:45:00+00:00"
    );
    assert_eq!(usage_in(&points, quarter(23, 45), rules()), kwh(1.0, 1.0));
    assert_eq!(
        usage_in(
            &points,
            Period {
                start: jakarta(11, 27, 0, 0),
                end: jakarta(11, 27, 0, 15)
            },
            rules()
        ),
        kwh(1.0, 1.0)
    );
}

#[test]
fn a_32_hour_outage_is_shared_by_the_three_days_it_spans_all_estimated() {
    // 22:00 on 1 March → 1000 kWh, 06:00 on 3 March → 1320 kWh: 10 kWh an hour for 2, 24 and
    // 6 hours of 1, 2 and 3 March.
    let points = [
        reading(jakarta(3, 1, 22, 0), 1000.0),
        reading(jakarta(3, 3, 6, 0), 1320.0),
    ];
    let by_day = usage_in_periods(&points, &days(3, 1, 3), rules());
    assert_eq!(
        by_day,
        vec![kwh(20.0, 20.0), kwh(240.0, 240.0), kwh(60.0, 60.0)]
    );
    assert_eq!(
        usage_in(&points, month(2026, 3, Jakarta).unwrap(), rules()),
        kwh(320.0, 320.0)
    );
    assert_eq!(
        usage_in(&points, month(2026, 2, Jakarta).unwrap(), rules()),
        Energy::ZERO
    );
    assert_eq!(usage_in(&points, days(3, 4, 1)[0], rules()), Energy::ZERO);
    // The rollup's buckets say the same: 2.5 kWh in each of 128 quarter hours, and then the
    // bucket of the later reading, with nothing in it.
    let window = Period {
        start: days(3, 1, 1)[0].start,
        end: days(3, 3, 1)[0].end,
    };
    let quarters = buckets(&points, window, rules());
    assert_eq!(quarters.len(), 129);
    assert!(quarters[..128].iter().all(|b| b.energy() == kwh(2.5, 2.5)));
    assert_eq!(quarters[0].start, jakarta(3, 1, 22, 0));
    assert_eq!(quarters[128].start, jakarta(3, 3, 6, 0));
    assert_eq!(quarters[128].energy(), Energy::ZERO);
    assert_eq!(quarters[128].readings, 1);
}

#[test]
fn a_reading_at_midnight_ends_the_old_day() {
    // 23:59 → 500.0 kWh, 00:00 → 500.5 kWh: the whole 0.5 kWh is the old day's, none the
    // new day's (the old rule put the pair in the day of its later reading).
    let points = [
        reading(jakarta(11, 26, 23, 59), 500.0),
        reading(jakarta(11, 27, 0, 0), 500.5),
    ];
    let by_day = usage_in_periods(&points, &days(11, 26, 2), rules());
    assert_eq!(by_day, vec![kwh(0.5, 0.0), Energy::ZERO]);
    // Even when the readings are the only ones the new day's query would be given.
    assert_eq!(usage_in(&points, days(11, 27, 1)[0], rules()), Energy::ZERO);
}
