//! Property tests of time-of-use pricing (docs/tariffs.md), over tariff files generated here
//! (random windows on quarter hours per day type, random versions and holidays) and random
//! meter readings:
//!
//! - cutting a month where prices change covers it exactly, each piece in one window of one
//!   version (checked minute by minute against the file's ranges, read back here);
//! - the bill's energy lines add up to the month's usage exactly, to the nano-kWh;
//! - with one flat window, every figure equals the flat tariff's (`Tariff::cost`).

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use energy_core::tariff::PriceKey;
use energy_core::usage::{usage_in, usage_in_periods};
use energy_core::{period, EnergyPoint, EstimateAfter, Load, MaxPower, Price, Rules, Tariff};
use energy_core::{Energy, Tariffs, Usage};
use proptest::prelude::*;

const DAY_TYPES: [&str; 4] = ["weekdays", "saturdays", "sundays", "holidays"];

/// One version: per day type, the cut minutes (sorted, on quarter hours, inside the day) and
/// the window of each range between them.
#[derive(Clone, Debug)]
struct VersionSpec {
    from_day: u32,
    rates: Vec<u32>,
    days: Vec<(Vec<u16>, Vec<usize>)>,
}

fn version_spec() -> impl Strategy<Value = VersionSpec> {
    (1usize..=3, 1u32..=28).prop_flat_map(|(windows, from_day)| {
        let day = (
            proptest::collection::btree_set(1u16..96, 0..5),
            proptest::collection::vec(0..windows, 6),
        )
            .prop_map(|(cuts, owners)| {
                let cuts: Vec<u16> = cuts.into_iter().map(|q| q * 15).collect();
                let owners = owners[..=cuts.len()].to_vec();
                (cuts, owners)
            });
        (
            Just(from_day),
            proptest::collection::vec(0u32..500_000, windows),
            proptest::collection::vec(day, 4),
        )
            .prop_map(|(from_day, rates, days)| VersionSpec {
                from_day,
                rates,
                days,
            })
    })
}

fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The tariff file of `versions` (the first valid from 1 January, the others from their day
/// of March, distinct), with `holiday` (a day of March) listed.
fn file_of(versions: &[VersionSpec], holiday: u32) -> String {
    let mut text =
        format!("currency = \"IDR\"\ndecimals = 2\nholidays = [\"2026-03-{holiday:02}\"]\n");
    let mut used = std::collections::BTreeSet::new();
    for (index, version) in versions.iter().enumerate() {
        let valid_from = if index == 0 {
            "2026-01-01".to_owned()
        } else if used.insert(version.from_day) {
            format!("2026-03-{:02}", version.from_day)
        } else {
            continue;
        };
        text += &format!("[[tariffs.T.versions]]\nvalid_from = \"{valid_from}\"\nwindows = [\n");
        for (window, rate) in version.rates.iter().enumerate() {
            text += &format!(
                "  {{ name = \"W{window}\", rate = \"{}.{:02}\"",
                rate / 100,
                rate % 100
            );
            for (day_type, (cuts, owners)) in DAY_TYPES.iter().zip(&version.days) {
                let bounds: Vec<u16> = std::iter::once(0)
                    .chain(cuts.iter().copied())
                    .chain(std::iter::once(1440))
                    .collect();
                let ranges: Vec<String> = bounds
                    .windows(2)
                    .zip(owners)
                    .filter(|(_, owner)| **owner == window)
                    .map(|(b, _)| format!("\"{}-{}\"", clock(b[0]), clock(b[1])))
                    .collect();
                text += &format!(", {day_type} = [{}]", ranges.join(", "));
            }
            text += " },\n";
        }
        text += "]\n";
    }
    text
}

/// The window (its name's number) of `minute` on a day of type `day_type` in `version`, from
/// the spec (not from the parsed file).
fn window_in_spec(version: &VersionSpec, day_type: usize, minute: u16) -> usize {
    let (cuts, owners) = &version.days[day_type];
    owners[cuts.iter().filter(|c| **c <= minute).count()]
}

/// The spec of the version in force on `date`: the latest first day not after it.
fn spec_on(versions: &[VersionSpec], date: NaiveDate) -> &VersionSpec {
    let mut chosen = &versions[0];
    let mut chosen_from = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for version in &versions[1..] {
        if !used.insert(version.from_day) {
            continue;
        }
        let from = NaiveDate::from_ymd_opt(2026, 3, version.from_day).unwrap();
        if from <= date && from > chosen_from {
            chosen = version;
            chosen_from = from;
        }
    }
    chosen
}

fn rules() -> Rules {
    Rules::new(MaxPower::from_kw(5000.0).unwrap(), EstimateAfter::DEFAULT)
}

/// Readings over March (and a little either side): random steps and increases, a reset now
/// and then.
fn readings() -> impl Strategy<Value = Vec<EnergyPoint>> {
    proptest::collection::vec((60i64..20_000, 0u32..4_000, 0u8..100), 100..400).prop_map(|steps| {
        let mut time = Utc.with_ymd_and_hms(2026, 2, 28, 10, 0, 0).unwrap();
        let mut energy = 100.0;
        let mut points = vec![EnergyPoint {
            time,
            energy_kwh: energy,
        }];
        for (step, increase, reset) in steps {
            // Spread the steps over the whole month.
            time += Duration::seconds(step * 2);
            energy = if reset == 0 {
                0.0
            } else {
                energy + f64::from(increase) / 1000.0
            };
            points.push(EnergyPoint {
                time,
                energy_kwh: energy,
            });
        }
        points
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_cut_month_is_covered_exactly_each_piece_in_one_window(
        versions in proptest::collection::vec(version_spec(), 1..=3),
        holiday in 1u32..=31,
        zone in prop::sample::select(vec!["Asia/Jakarta", "Europe/Berlin", "Asia/Kathmandu", "America/Santiago"]),
    ) {
        let text = file_of(&versions, holiday);
        let tariffs = Tariffs::parse(&text, "generated").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let tz: Tz = zone.parse().unwrap();
        let march = period::month(2026, 3, tz).unwrap();
        let cut = tariffs.cut(march, tz, &[0]);
        prop_assert_eq!(cut.pieces.first().unwrap().start, march.start);
        prop_assert_eq!(cut.pieces.last().unwrap().end, march.end);
        for pair in cut.pieces.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
        // Every minute of the month is in the piece whose key the spec gives it.
        let holiday = NaiveDate::from_ymd_opt(2026, 3, holiday).unwrap();
        let mut piece = 0;
        let mut minute_at = march.start;
        while minute_at < march.end {
            while cut.pieces[piece].end <= minute_at {
                piece += 1;
            }
            let local = minute_at.with_timezone(&tz);
            let date = local.date_naive();
            let day_type = if date == holiday {
                3
            } else {
                match date.weekday() {
                    chrono::Weekday::Sat => 1,
                    chrono::Weekday::Sun => 2,
                    _ => 0,
                }
            };
            let minute = (local.hour() * 60 + local.minute()) as u16;
            let spec = spec_on(&versions, date);
            let window = window_in_spec(spec, day_type, minute);
            let key: PriceKey = cut.keys[0][piece];
            let plan = &tariffs.plans[0];
            let version = &plan.versions[key.version];
            prop_assert_eq!(&version.windows[key.window].name, &format!("W{window}"),
                "{} ({} local)", minute_at, local);
            prop_assert_eq!(version.windows[key.window].rate,
                format!("{}.{:02}", spec.rates[window] / 100, spec.rates[window] % 100).parse::<Price>().unwrap());
            minute_at += Duration::minutes(1);
        }
    }

    #[test]
    fn the_bills_energy_lines_add_up_to_the_months_usage(
        versions in proptest::collection::vec(version_spec(), 1..=3),
        holiday in 1u32..=31,
        points in readings(),
    ) {
        let text = file_of(&versions, holiday);
        let tariffs = Tariffs::parse(&text, "generated").unwrap();
        let tz: Tz = "Asia/Jakarta".parse().unwrap();
        let march = period::month(2026, 3, tz).unwrap();
        let cut = tariffs.cut(march, tz, &[0]);
        let energies = usage_in_periods(&points, &cut.pieces, rules());
        let parts: Vec<(PriceKey, Load)> = cut.keys[0]
            .iter()
            .zip(&energies)
            .map(|(key, energy)| (*key, Load::quarter(*energy)))
            .collect();
        let dates: Vec<NaiveDate> = (1..=31).map(|d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap()).collect();
        let bill = tariffs.bill(0, &dates, &parts, None);
        let lines: Energy = bill.lines.iter().filter_map(|l| l.energy).sum();
        let month = usage_in(&points, march, rules());
        prop_assert_eq!(lines, month);
        prop_assert_eq!(bill.energy, month);
        // With no other charge, the total is the energy lines' amounts.
        let amounts: energy_core::Cost = bill.lines.iter().map(|l| l.amount).sum();
        prop_assert_eq!(bill.total, amounts);
    }

    #[test]
    fn one_flat_window_prices_as_the_flat_tariff(
        rate in 0u64..10_000_000_000,
        decimals in 0u32..=6,
        usages in proptest::collection::vec(0i128..10_000_000_000_000, 1..20),
    ) {
        let written = format!("{}.{:0width$}", rate / 10u64.pow(decimals), rate % 10u64.pow(decimals), width = decimals as usize);
        let written = if decimals == 0 { (rate).to_string() } else { written };
        let text = format!("currency = \"EUR\"\n[[tariffs.F.versions]]\nvalid_from = \"2026-01-01\"\n\
            windows = [{{ name = \"all\", rate = \"{written}\", every_day = [\"00:00-24:00\"] }}]\n");
        let from_file = Tariffs::parse(&text, "flat").unwrap();
        let shortcut = Tariffs::flat(written.parse().unwrap(), "EUR");
        let flat = Tariff { per_kwh: written.parse().unwrap(), currency: "EUR".into() };
        for nano in usages {
            let energy = Energy { usage: Usage::from_nano_kwh(nano), estimated: Usage::ZERO };
            let expected = flat.cost(energy.usage);
            for tariffs in [&from_file, &shortcut] {
                let priced = tariffs.price(0, [(PriceKey::default(), energy)]);
                prop_assert_eq!(priced.cost, expected);
                prop_assert_eq!(priced.windows.len(), 1);
                let march = period::month(2026, 3, "UTC".parse().unwrap()).unwrap();
                prop_assert_eq!(tariffs.cut(march, "UTC".parse().unwrap(), &[0]).pieces, vec![march]);
            }
        }
    }
}
