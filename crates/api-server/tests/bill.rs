//! The bill of a hand-worked month against a real InfluxDB 1.6 and the real api-server, with
//! and without the subscriber's usage rollup, and a tariff file that is refused at start.
//!
//! The rules (docs/tariffs.md): every quarter hour is priced at the rate of the window and
//! version in force during it; each line is rounded once (here to whole rupiah, `decimals =
//! 0`), half away from zero; a month that spans a new version is billed as two short months,
//! the monthly charges (demand, fixed, minimum) of each for its share of the month's days;
//! the minimum tops the energy lines up to `hours × contracted kVA × rate`; PPJ is a
//! percentage of each short month's subtotal. Usage follows docs/accounting.md: a pair's
//! increase is spread evenly over its time, a pair longer than 900 s is estimated, a drop of
//! the register (a meter reset) counts as 0.
//!
//! Every expected figure is worked out below by hand (kWh in the comments) and priced here in
//! integers, with no code of the programs.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use test_support::{run_to_exit, start_subscriber, wait_until, ApiServer, Influx, Mosquitto};

/// The tariff of the month: LWBP/WBP (17:00–22:00), every day but holidays (all LWBP); a new
/// version on 15 June; a demand charge, a fixed charge, a minimum of 40 h × kVA × the LWBP
/// rate, PPJ 3 %. A third version, far ahead, is the next change today-usage announces.
const TARIFF: &str = r#"
currency = "IDR"
decimals = 0
holidays = ["2026-06-01"]
default_tariff = "B-3"

[panels.BUSY]
contracted_kva = 197

[panels.IDLE]
contracted_kva = 23

[[tariffs.B-3.versions]]
valid_from = "2026-01-01"
demand_charge_per_kw = 35000
fixed_monthly = 50000
minimum = { hours = 40, rate = 1035.78 }
taxes = [{ name = "PPJ", percent = 3 }]
windows = [
  { name = "LWBP", rate = 1035.78, weekdays = ["00:00-17:00", "22:00-24:00"], saturdays = ["00:00-17:00", "22:00-24:00"], sundays = ["00:00-17:00", "22:00-24:00"], holidays = ["00:00-24:00"] },
  { name = "WBP", rate = 1553.67, weekdays = ["17:00-22:00"], saturdays = ["17:00-22:00"], sundays = ["17:00-22:00"] },
]

[[tariffs.B-3.versions]]
valid_from = "2026-06-15"
demand_charge_per_kw = 35000
fixed_monthly = 50000
minimum = { hours = 40, rate = 1114.74 }
taxes = [{ name = "PPJ", percent = 3 }]
windows = [
  { name = "LWBP", rate = 1114.74, weekdays = ["00:00-17:00", "22:00-24:00"], saturdays = ["00:00-17:00", "22:00-24:00"], sundays = ["00:00-17:00", "22:00-24:00"], holidays = ["00:00-24:00"] },
  { name = "WBP", rate = 1672.11, weekdays = ["17:00-22:00"], saturdays = ["17:00-22:00"], sundays = ["17:00-22:00"] },
]

[[tariffs.B-3.versions]]
valid_from = "2099-01-01"
windows = [{ name = "LWBP", rate = 1200, every_day = ["00:00-24:00"] }]
"#;

fn jakarta() -> Tz {
    "Asia/Jakarta".parse().unwrap()
}

fn local(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    let (month, day) = if d == 0 {
        (5, 31)
    } else if d > 30 {
        (7, d - 30)
    } else {
        (6, d)
    };
    jakarta()
        .with_ymd_and_hms(2026, month, day, h, m, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn line(panel: &str, power_kw: f64, energy_kwh: f64, time: DateTime<Utc>) -> String {
    format!(
        "energy_data,panel={panel} power_kw={power_kw},energy_kwh={energy_kwh} {}\n",
        time.timestamp_nanos_opt().unwrap()
    )
}

/// The readings of the month, every 15 minutes from 23:00 on 31 May to 01:00 on 1 July
/// (Jakarta, UTC+7):
///
/// - BUSY draws 8 kW (2 kWh a quarter hour) outside 17:00–22:00 and 20 kW (5 kWh) inside,
///   every day; 40 kW (10 kWh) from 18:00 to 18:15 on 10 June. Its meter sends nothing
///   between 12:00 on 20 June and 12:00 on 23 June (an outage of 72 h, over three WBP windows)
///   but keeps counting; at 10:00 on 25 June the register restarts from 0.
/// - IDLE draws 0.16 kW (0.04 kWh a quarter hour) all month.
fn readings() -> String {
    let mut lines = String::new();
    let (outage_from, outage_to) = (local(20, 12, 0), local(23, 12, 0));
    let reset = local(25, 10, 0);
    let spike = local(10, 18, 0);
    let mut busy = 1000.0;
    let mut idle_quarters: i64 = 0;
    let mut time = local(0, 23, 0);
    lines += &line("BUSY", 8.0, busy, time);
    lines += &line("IDLE", 0.16, 1000.0, time);
    while time < local(31, 1, 0) {
        let hour = time.with_timezone(&jakarta()).hour();
        let power = if time == spike {
            40.0
        } else if (17..22).contains(&hour) {
            20.0
        } else {
            8.0
        };
        time += Span::minutes(15);
        busy += power / 4.0;
        if time == reset {
            busy = 0.0;
        }
        if time <= outage_from || time >= outage_to {
            lines += &line("BUSY", power, busy, time);
        }
        idle_quarters += 1;
        // 1000 + 0.04 n kWh, as the nearest double to the decimal.
        let idle = (1_000_000 + 40 * idle_quarters) as f64 / 1000.0;
        lines += &line("IDLE", 0.16, idle, time);
    }
    lines
}

/// `numerator / denominator` rounded half away from zero (both positive): how every line of
/// the bill is rounded, to whole rupiah.
fn rupiah(numerator: i128, denominator: i128) -> i128 {
    (2 * numerator + denominator) / (2 * denominator)
}

/// A short month's lines by hand: (kind, name, amount) in the bill's order, and its subtotal
/// and PPJ.
struct ShortMonth {
    lines: Vec<(&'static str, &'static str, i128)>,
}

/// Rates in hundredths of a rupiah.
struct Rates {
    lwbp: i128,
    wbp: i128,
}

const V1: Rates = Rates {
    lwbp: 103_578,
    wbp: 155_367,
};
const V2: Rates = Rates {
    lwbp: 111_474,
    wbp: 167_211,
};

/// The lines of `days` of a 30-day month at `rates`: LWBP and WBP energy (milli-kWh), the
/// demand (milli-kW), the fixed charge, the minimum for `kva`, then PPJ.
fn short_month(
    rates: &Rates,
    days: i128,
    lwbp_mkwh: i128,
    wbp_mkwh: i128,
    demand_mkw: i128,
    kva: i128,
) -> ShortMonth {
    let lwbp = rupiah(lwbp_mkwh * rates.lwbp, 1000 * 100);
    let wbp = rupiah(wbp_mkwh * rates.wbp, 1000 * 100);
    let demand = rupiah(demand_mkw * 35_000 * days, 1000 * 30);
    let fixed = rupiah(50_000 * days, 30);
    let minimum = rupiah(40 * kva * rates.lwbp * days, 100 * 30);
    let mut lines = vec![
        ("energy", "LWBP", lwbp),
        ("energy", "WBP", wbp),
        ("demand", "", demand),
        ("fixed", "", fixed),
    ];
    if lwbp + wbp < minimum {
        lines.push(("minimum_top_up", "", minimum - lwbp - wbp));
    }
    let subtotal: i128 = lines.iter().map(|l| l.2).sum();
    lines.push(("tax", "PPJ", rupiah(subtotal * 3, 100)));
    ShortMonth { lines }
}

fn hand_bill(first: ShortMonth, second: ShortMonth) -> Vec<(&'static str, &'static str, i128)> {
    first.lines.into_iter().chain(second.lines).collect()
}

/// The bill of `panel` in `bills` as (kind, name, amount), names of non-energy, non-tax lines
/// left out (they describe the charge).
fn lines_of(panel: &Value) -> Vec<(String, String, i128)> {
    panel["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let kind = l["kind"].as_str().unwrap().to_owned();
            let name = match kind.as_str() {
                "energy" | "tax" => l["name"].as_str().unwrap().to_owned(),
                _ => String::new(),
            };
            (kind, name, amount(&l["amount"]))
        })
        .collect()
}

/// A whole-rupiah amount of the answer.
fn amount(value: &Value) -> i128 {
    let f = value.as_f64().unwrap();
    assert_eq!(f.fract(), 0.0, "{f} is not whole rupiah");
    f as i128
}

fn panel<'a>(bills: &'a Value, id: &str) -> &'a Value {
    bills["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["panel"] == id)
        .unwrap_or_else(|| panic!("no {id} in {bills}"))
}

fn check_hand_worked_month(bills: &Value) {
    assert_eq!(bills["month"], "2026-06");
    assert_eq!(bills["currency"], "IDR");
    assert_eq!(bills["decimals"], 0);

    // BUSY, 1–14 June (version 1, 14 of 30 days). 1 June is a holiday, all LWBP:
    //   19 h × 8 kW + 5 h × 20 kW = 252 kWh. 2–14 June, 13 days of 19 h × 8 = 152 kWh LWBP and
    //   5 h × 20 = 100 kWh WBP, plus 10 − 5 = 5 kWh more in WBP for the spike on the 10th:
    //   LWBP 252 + 13 × 152 = 2 228 kWh, WBP 13 × 100 + 5 = 1 305 kWh.
    //   Demand: the spike's quarter hour, 10 kWh × 4 = 40 kW.
    //   Minimum 40 h × 197 kVA × 1035.78 × 14/30 = 3 808 908, below the energy: no top-up.
    let busy_1 = short_month(&V1, 14, 2_228_000, 1_305_000, 40_000, 197);
    // BUSY, 15–30 June (version 2, 16 days): 16 × 152 = 2 432 kWh LWBP, 16 × 100 = 1 600 kWh
    //   WBP as drawn, but the outage (20 June 12:00 → 23 June 12:00, 288 quarter hours) is one
    //   pair whose 3 × 252 = 756 kWh are spread evenly, 756 / 288 = 2.625 kWh a quarter hour:
    //   its 60 WBP quarter hours (17:00–22:00 on the 20th, 21st, 22nd) hold 157.5 kWh
    //   (instead of 300 drawn), its 228 LWBP ones 598.5 (instead of 456), all estimated.
    //   The reset loses the 2 kWh of 09:45–10:00 on the 25th (LWBP).
    //   LWBP 2 432 + 598.5 − 456 − 2 = 2 572.5 kWh; WBP 1 600 + 157.5 − 300 = 1 457.5 kWh.
    //   Demand: 5 kWh quarter hours, 20 kW (the outage's are 2.625 kWh, 10.5 kW).
    let busy_2 = short_month(&V2, 16, 2_572_500, 1_457_500, 20_000, 197);
    let busy_hand = hand_bill(busy_1, busy_2);
    // IDLE, version 1: 1 June 96 × 0.04 = 3.84 kWh LWBP; 2–14 June 13 × 76 × 0.04 = 39.52
    //   LWBP and 13 × 20 × 0.04 = 10.4 WBP: LWBP 43.36, WBP 10.4; demand 0.04 × 4 = 0.16 kW.
    //   Minimum 40 × 23 × 1035.78 × 14/30 = 444 695 > 44 911 + 16 158: topped up.
    let idle_1 = short_month(&V1, 14, 43_360, 10_400, 160, 23);
    // IDLE, version 2: 16 × 76 × 0.04 = 48.64 kWh LWBP, 16 × 20 × 0.04 = 12.8 WBP.
    let idle_2 = short_month(&V2, 16, 48_640, 12_800, 160, 23);
    let idle_hand = hand_bill(idle_1, idle_2);
    assert!(idle_hand.iter().any(|l| l.0 == "minimum_top_up"));
    assert!(busy_hand.iter().all(|l| l.0 != "minimum_top_up"));

    let mut grand_total = 0;
    for (id, hand, usage, estimated, estimated_amount) in [
        (
            "BUSY",
            &busy_hand,
            2228.0 + 1305.0 + 2572.5 + 1457.5,
            598.5 + 157.5,
            // 598.5 × 1114.74 = 667 171.89 → 667 172; 157.5 × 1672.11 = 263 357.3 → 263 357.
            rupiah(598_500 * V2.lwbp, 100_000) + rupiah(157_500 * V2.wbp, 100_000),
        ),
        ("IDLE", &idle_hand, 43.36 + 10.4 + 48.64 + 12.8, 0.0, 0),
    ] {
        let bill = panel(bills, id);
        let want: Vec<(String, String, i128)> = hand
            .iter()
            .map(|(k, n, a)| (k.to_string(), n.to_string(), *a))
            .collect();
        assert_eq!(lines_of(bill), want, "{id}: {bill}");
        let subtotal: i128 = hand.iter().filter(|l| l.0 != "tax").map(|l| l.2).sum();
        let taxes: i128 = hand.iter().filter(|l| l.0 == "tax").map(|l| l.2).sum();
        assert_eq!(amount(&bill["subtotal"]), subtotal, "{id}");
        assert_eq!(amount(&bill["taxes"]), taxes, "{id}");
        assert_eq!(amount(&bill["total"]), subtotal + taxes, "{id}");
        grand_total += subtotal + taxes;
        assert_eq!(bill["usage_kwh"], usage, "{id}");
        assert_eq!(bill["estimated_kwh"], estimated, "{id}");
        assert_eq!(amount(&bill["estimated_amount"]), estimated_amount, "{id}");
        assert_eq!(bill["tariff"], "B-3");
        let versions: Vec<(String, u64)> = bill["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["valid_from"].as_str().unwrap().to_owned(),
                    v["days"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            versions,
            [("2026-01-01".to_owned(), 14), ("2026-06-15".to_owned(), 16)]
        );
    }
    // The energy lines' kWh, each the window's exact usage rounded to 3 decimals.
    let busy = panel(bills, "BUSY");
    let kwh: Vec<f64> = busy["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "energy")
        .map(|l| l["quantity"].as_f64().unwrap())
        .collect();
    assert_eq!(kwh, [2228.0, 1305.0, 2572.5, 1457.5]);
    assert_eq!(busy["max_demand_kw"], 40.0);
    assert_eq!(amount(&bills["total"]), grand_total);
}

#[test]
fn a_hand_worked_month_is_billed_line_by_line_with_and_without_the_rollup() {
    let influx = Influx::start();
    influx.create_database("energy");
    influx.write("energy", &readings());
    let dir = tempfile::tempdir().unwrap();
    let tariff_file = dir.path().join("tariffs.toml");
    std::fs::write(&tariff_file, TARIFF).unwrap();
    let tariff_path = tariff_file.to_str().unwrap();
    let settings = [("TARIFF_FILE", tariff_path), ("QUERY_CACHE_MS", "0")];

    // No rollup: the api-server's own sums of the raw readings.
    let api = ApiServer::start(&influx.url(), "energy", &settings);
    let from_readings = api.ok("/api/bill?month=2026-06");
    check_hand_worked_month(&from_readings);

    // One panel, and as CSV: the same lines and totals.
    let one = api.ok("/api/bill?month=2026-06&panel=IDLE");
    assert_eq!(one["panels"].as_array().unwrap().len(), 1);
    assert_eq!(&one["panels"][0], panel(&from_readings, "IDLE"));
    let (status, _, csv, _) = test_support::http_request(
        "GET",
        &api.url("/api/bill?month=2026-06&format=csv"),
        &[],
        None,
    );
    assert_eq!(status, 200);
    for id in ["BUSY", "IDLE"] {
        // Numbers as the JSON writes them.
        let total = panel(&from_readings, id)["total"].to_string();
        let row = format!("2026-06,{id},B-3,,total,,,,,{total},,IDR\r\n");
        assert!(csv.contains(&row), "no {row:?} in\n{csv}");
    }
    let ppj_rows = csv.lines().filter(|l| l.contains(",tax,PPJ,")).count();
    assert_eq!(ppj_rows, 4, "two short months for each of two panels");

    // The month's cost in the monthly answer is the sum of its energy lines.
    let monthly = api.ok("/api/energy/monthly?year=2026");
    let june = &monthly["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["panel"] == "BUSY")
        .unwrap()["months"][5];
    let energy: i128 = lines_of(panel(&from_readings, "BUSY"))
        .iter()
        .filter(|l| l.0 == "energy")
        .map(|l| l.2)
        .sum();
    assert_eq!(amount(&june["cost"]), energy, "{june}");
    assert_eq!(june["by_window"].as_array().unwrap().len(), 4, "{june}");
    assert!(monthly["tariff_per_kwh"].is_null());

    // What is charged now, and the next version (2099).
    let today = api.ok("/api/panel/today-usage");
    let now = &today["tariffs"][0];
    assert_eq!(now["tariff"], "B-3");
    assert_eq!(now["version"], "2026-06-15");
    assert_eq!(now["next_version"]["valid_from"], "2099-01-01");
    let hour = Utc::now().with_timezone(&jakarta()).hour();
    let window = if (17..22).contains(&hour) {
        "WBP"
    } else {
        "LWBP"
    };
    // (Unless today is a listed holiday, which 2026-06-01 is not any more.)
    assert_eq!(now["window"], window, "{now}");

    // The subscriber's usage rollup: the same bill from its sums.
    let broker = Mosquitto::start();
    let started = Utc::now().timestamp_nanos_opt().unwrap();
    let _writer = start_subscriber(&broker, &influx, "bill-rollup-writer", &[]);
    wait_until(Duration::from_secs(120), "the rollup to be built", || {
        influx
            .rollup_complete_until("energy")
            .is_some_and(|until| until > started)
    });
    let mut from_rollup = ApiServer::start(&influx.url(), "energy", &settings);
    let bills = from_rollup.ok("/api/bill?month=2026-06");
    let said = from_rollup.program().output();
    assert!(
        !said.contains("reading raw points instead") && !said.contains("is not being kept"),
        "the api-server did not use the rollup:\n{said}"
    );
    check_hand_worked_month(&bills);
    assert_eq!(bills, from_readings);
}

#[test]
fn bad_tariff_files_stop_the_server_at_start_naming_line_and_field() {
    let good_windows = r#"windows = [
  { name = "LWBP", rate = 1, every_day = ["00:00-17:00", "22:00-24:00"] },
  { name = "WBP", rate = 2, every_day = ["17:00-22:00"] },
]"#;
    let file = |windows: &str, valid_from: &str| {
        format!(
            "currency = \"IDR\"\n[[tariffs.T.versions]]\nvalid_from = {valid_from}\n{windows}\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, text, says) in [
        (
            "overlap",
            file(
                &good_windows.replace("\"17:00-22:00\"", "\"16:45-22:00\""),
                "\"2026-01-01\"",
            ),
            "line 6, tariffs.T.versions[0].windows[1].every_day[0]: 16:45-22:00 overlaps \
             window \"LWBP\" on weekdays: 16:45–17:00 is in both",
        ),
        (
            "gap",
            file(
                &good_windows.replace("\"00:00-17:00\"", "\"00:00-16:59\""),
                "\"2026-01-01\"",
            ),
            "line 4, tariffs.T.versions[0].windows: weekdays 16:59–17:00 is in no window",
        ),
        (
            "no-rates",
            file("", "\"2026-01-01\""),
            "line 2, tariffs.T.versions[0].windows: is missing: a version needs its rates",
        ),
        (
            "day-type",
            file(
                &good_windows.replace("every_day = [\"17:00", "fridays = [\"17:00"),
                "\"2026-01-01\"",
            ),
            "line 6, tariffs.T.versions[0].windows[1].fridays: unknown day type or key",
        ),
        (
            "negative",
            file(
                &good_windows.replace("rate = 2", "rate = -2"),
                "\"2026-01-01\"",
            ),
            "line 6, tariffs.T.versions[0].windows[1].rate: -2 is negative",
        ),
        (
            "date",
            file(good_windows, "\"2026-13-01\""),
            "line 3, tariffs.T.versions[0].valid_from: \"2026-13-01\" is not a date YYYY-MM-DD",
        ),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let (code, output) = run_to_exit(
            "api-server",
            &[],
            &[
                ("TARIFF_FILE", path.to_str().unwrap().to_owned()),
                // Never reached: the file is refused first.
                ("INFLUX_URL", "http://127.0.0.1:9".to_owned()),
                ("API_ADDR", "127.0.0.1:0".to_owned()),
            ],
            Duration::from_secs(20),
        );
        assert_eq!(code, Some(2), "{name}: {output}");
        let expected = format!("{} {says}", path.display());
        assert!(
            output.contains(&expected),
            "{name}: {expected:?} not in:\n{output}\n{text}"
        );
    }
    // A file that cannot be read says so, too.
    let (code, output) = run_to_exit(
        "api-server",
        &[],
        &[("TARIFF_FILE", "/nonexistent/tariffs.toml".to_owned())],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("cannot read /nonexistent/tariffs.toml"),
        "{output}"
    );
}
