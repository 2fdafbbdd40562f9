//! Virtual meters (docs/meters.md) against a real InfluxDB 1.6 and the real api-server, with
//! and without the subscriber's usage rollup: a building that is the sum of three panels and
//! an unmetered loss that is the main meter minus two of them, over a hand-worked day with a
//! member whose register resets, a member whose meter is silent for two hours, and a quarter
//! hour where the sub-meters are ahead of the main one (a negative loss); and meters files
//! that are refused at start.
//!
//! Every expected figure is worked out below by hand (kWh in the comments), with no code of
//! the programs. Usage follows docs/accounting.md: a pair's increase is spread evenly over its
//! time, a pair longer than 900 s is estimated, a drop of the register (a reset) counts as 0.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use test_support::{run_to_exit, start_subscriber, wait_until, ApiServer, Influx, Mosquitto};

const METERS: &str = r#"
[panels.MAIN]
building = "Tower A"
floor = "Ground"

[panels.A]
building = "Tower A"
floor = "1"
tenant = "PT Alpha"

[panels.B]
building = "Tower A"
floor = "2"
tenant = "PT Beta"

[panels.C]
building = "Tower A"
floor = "2"

[meters.BUILDING]
expression = "A + B + C"
building = "Tower A"

[meters.SUBS]
expression = "A + B"

[meters.LOSS]
expression = "MAIN - SUBS"
building = "Tower A"

[meters.AC]
expression = "A + C"
tenant = "PT Alpha"
"#;

/// One price all day and a demand charge, in whole rupiah: every figure below is
/// `kWh × 1500` and `kW × 10 000`.
const TARIFF: &str = r#"
currency = "IDR"
decimals = 0

[[tariffs.FLAT.versions]]
valid_from = "2026-01-01"
demand_charge_per_kw = 10000
windows = [{ name = "ALL", rate = 1500, every_day = ["00:00-24:00"] }]
"#;

fn jakarta() -> Tz {
    "Asia/Jakarta".parse().unwrap()
}

/// 10 June 2026, `h:m` in Jakarta (UTC+7); `h = 24` is midnight at its end.
fn local(h: u32, m: u32) -> DateTime<Utc> {
    jakarta()
        .with_ymd_and_hms(2026, 6, 10, 0, 0, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
        + Span::minutes(i64::from(h * 60 + m))
}

fn line(panel: &str, power_kw: f64, milli_kwh: i64, time: DateTime<Utc>) -> String {
    format!(
        "energy_data,panel={panel} power_kw={power_kw},energy_kwh={} {}\n",
        milli_kwh as f64 / 1000.0,
        time.timestamp_nanos_opt().unwrap()
    )
}

/// The readings, every 15 minutes from 23:45 on 9 June to midnight ending 10 June (Jakarta):
///
/// - A draws 4 kW (1 kWh a quarter hour), 12 kW (3 kWh) from 08:00 to 08:15; its register
///   restarts from 0 at 10:00, so 09:45–10:00 counts 0.
/// - B draws 2 kW (0.5 kWh); its meter sends nothing between 12:00 and 14:00 but keeps
///   counting: one pair of 2 h, 4 kWh spread as 0.5 kWh a quarter hour, estimated.
/// - C draws 1 kW (0.25 kWh), 5 kW (1.25 kWh) from 20:00 to 20:15.
/// - MAIN feeds A and B and loses 0.1 kWh a quarter hour: 1.6 kWh a quarter hour (3.6 while
///   A spikes), except that its register lags: 1.0 kWh counted from 16:00 to 16:15 and 2.2
///   from 16:15 to 16:30.
fn day_readings() -> String {
    let mut lines = String::new();
    let (mut a, mut b, mut c, mut main) = (100_000_i64, 50_000_i64, 20_000_i64, 500_000_i64);
    let mut time = local(0, 0) - Span::minutes(15);
    for (panel, value) in [("A", a), ("B", b), ("C", c), ("MAIN", main)] {
        lines += &line(panel, 1.0, value, time);
    }
    while time < local(24, 0) {
        let start = time;
        time += Span::minutes(15);
        let a_step = if start == local(8, 0) { 3000 } else { 1000 };
        a += a_step;
        if time == local(10, 0) {
            a = 0;
        }
        b += 500;
        c += if start == local(20, 0) { 1250 } else { 250 };
        main += if start == local(16, 0) {
            1000
        } else if start == local(16, 15) {
            2200
        } else {
            a_step + 600
        };
        lines += &line("A", a_step as f64 * 4.0 / 1000.0, a, time);
        if time <= local(12, 0) || time >= local(14, 0) {
            lines += &line("B", 2.0, b, time);
        }
        lines += &line("C", 1.0, c, time);
        lines += &line("MAIN", 6.4, main, time);
    }
    lines
}

/// The readings of now: every register at 0 (a reset, so the months between count nothing),
/// B's an hour old (OFFLINE after 300 s), the others' 10 s old.
fn current_readings(now: DateTime<Utc>) -> String {
    let fresh = now - Span::seconds(10);
    line("A", 4.0, 0, fresh)
        + &line("B", 2.0, 0, now - Span::hours(1))
        + &line("C", 1.5, 0, fresh)
        + &line("MAIN", 7.0, 0, fresh)
}

fn entry<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["panel"] == id)
        .unwrap_or_else(|| panic!("no {id} in {answer}"))
}

fn checks_of_the_day(api: &ApiServer) -> Vec<Value> {
    // The day's usage (kWh): A 96 − 1 (the reset) + 2 (the spike) = 97; B 96 × 0.5 = 48, of
    // which 8 × 0.5 = 4 estimated; C 96 × 0.25 + 1 = 25; MAIN 96 × 1.6 + 2 = 155.6.
    // BUILDING = 97 + 48 + 25 = 170 (4 estimated); LOSS = 155.6 − (97 + 48) = 10.6, its
    // estimated part the expression over the members' estimated parts: 0 − 4 = −4.
    let daily = api.ok("/api/energy/daily?month=2026-06");
    let day = |id: &str| entry(&daily, id)["days"][9].clone();
    for (id, kind, usage, estimated, demand) in [
        // Largest quarter hours: A's spike 3 kWh (12 kW); MAIN's 3.6 (14.4 kW).
        ("A", "panel", 97.0, 0.0, 12.0),
        ("MAIN", "panel", 155.6, 0.0, 14.4),
        // BUILDING's quarter hours: 1 + 0.5 + 0.25 = 1.75 kWh, 3.75 while A spikes (08:00),
        // 2.75 while C does (20:00), 0.75 at the reset: 3.75 kWh is 15 kW, not the 12 + 2 + 5
        // = 19 kW of its members' own peaks added up.
        ("BUILDING", "virtual", 170.0, 4.0, 15.0),
        // LOSS's quarter hours: 1.6 − 1.5 = 0.1, 1.1 at the reset (09:45, A counts 0), −0.5
        // at 16:00 and 0.7 at 16:15: the largest is 1.1 kWh, 4.4 kW.
        ("LOSS", "virtual", 10.6, -4.0, 4.4),
    ] {
        let figure = day(id);
        assert_eq!(figure["date"], "2026-06-10", "{id}: {figure}");
        assert_eq!(entry(&daily, id)["kind"], kind, "{id}");
        assert_eq!(figure["usage_kwh"], usage, "{id}: {figure}");
        assert_eq!(figure["estimated_kwh"], estimated, "{id}: {figure}");
        assert_eq!(figure["max_demand_kw"], demand, "{id}: {figure}");
        // One price: kWh × 1500, rounded once.
        let cost = (usage * 1500.0_f64).round();
        assert_eq!(figure["cost"], cost, "{id}: {figure}");
    }

    // LOSS's quarter hours as they are: none clamped, the negative one flagged.
    let intervals = api.ok("/api/panel/LOSS/intervals?date=2026-06-10");
    assert_eq!(intervals["kind"], "virtual");
    let quarters = intervals["intervals"].as_array().unwrap();
    assert_eq!(quarters.len(), 96);
    let at = |h: u32, m: u32| &quarters[(h * 4 + m / 15) as usize];
    assert_eq!(at(9, 45)["usage_kwh"], 1.1);
    assert_eq!(at(16, 0)["usage_kwh"], -0.5);
    assert_eq!(at(16, 0)["negative"], true);
    assert_eq!(at(16, 0)["avg_kw"], -2.0);
    assert_eq!(at(16, 0)["cost"], -750.0);
    assert_eq!(at(16, 15)["usage_kwh"], 0.7);
    assert_eq!(at(16, 15)["negative"], false);
    // B's silent quarter hours: MAIN 1.6 − A 1 − B's estimated 0.5.
    assert_eq!(at(12, 30)["usage_kwh"], 0.1);
    assert_eq!(at(12, 30)["estimated_kwh"], -0.5);
    let negatives: Vec<&str> = quarters
        .iter()
        .filter(|q| q["negative"] == true)
        .map(|q| q["start"].as_str().unwrap())
        .collect();
    assert_eq!(negatives, ["2026-06-10T16:00:00+07:00"]);
    assert_eq!(intervals["total_kwh"], 10.6);
    // A hour of BUILDING at 08:00: 3.75 + 3 × 1.75 = 9 kWh.
    let hours = api.ok("/api/panel/BUILDING/intervals?date=2026-06-10&step=1h");
    assert_eq!(hours["intervals"][8]["usage_kwh"], 9.0);

    // June: the day plus the quarter hour before it (23:45–24:00 on 9 June: A 1, B 0.5,
    // C 0.25, MAIN 1.6 kWh); the current readings' resets add nothing. The bill of the tenant
    // metered as BUILDING: (170 + 1.75) kWh × 1500 = 257 625 and 15 kW × 10 000 = 150 000.
    let bills = api.ok("/api/bill?month=2026-06");
    let building = entry(&bills, "BUILDING");
    assert_eq!(building["kind"], "virtual");
    assert_eq!(building["usage_kwh"], 171.75);
    assert_eq!(building["max_demand_kw"], 15.0);
    assert_eq!(building["total"], 407_625.0, "{building}");
    // LOSS: (10.6 + 0.1) × 1500 = 16 050, 4.4 kW × 10 000 = 44 000.
    assert_eq!(entry(&bills, "LOSS")["total"], 60_050.0);
    // The total adds the panels only: A 98 × 1500 + 12 × 10 000 = 267 000; B 48.5 × 1500 +
    // 2 × 10 000 = 92 750; C 25.25 × 1500 + 5 × 10 000 = 87 875; MAIN 157.2 × 1500 + 14.4 ×
    // 10 000 = 379 800; together 827 425.
    assert_eq!(bills["total"], 827_425.0, "{bills}");
    let one = api.ok("/api/bill?month=2026-06&panel=BUILDING");
    assert_eq!(one["panels"].as_array().unwrap().len(), 1);
    assert_eq!(&one["panels"][0], building);

    let monthly = api.ok("/api/energy/monthly?year=2026");
    let june = |id: &str| entry(&monthly, id)["months"][5].clone();
    assert_eq!(june("BUILDING")["usage_kwh"], 171.75);
    assert_eq!(june("BUILDING")["max_demand_kw"], 15.0);
    assert_eq!(june("LOSS")["usage_kwh"], 10.7);
    assert_eq!(june("LOSS")["max_demand_kw"], 4.4);
    assert_eq!(entry(&monthly, "LOSS")["kind"], "virtual");

    // One panel's or virtual meter's days and months (`panel=`): exactly its entry of the
    // answers about all, checked by hand above.
    for (path, id, all) in [
        (
            "/api/energy/daily?month=2026-06&panel=BUILDING",
            "BUILDING",
            &daily,
        ),
        ("/api/energy/daily?month=2026-06&panel=LOSS", "LOSS", &daily),
        ("/api/energy/daily?month=2026-06&panel=A", "A", &daily),
        ("/api/energy/monthly?year=2026&panel=LOSS", "LOSS", &monthly),
        ("/api/energy/monthly?year=2026&panel=MAIN", "MAIN", &monthly),
    ] {
        let one = api.ok(path);
        assert_eq!(one["panels"].as_array().unwrap().len(), 1, "{path}: {one}");
        assert_eq!(&one["panels"][0], entry(all, id), "{path}");
    }
    for path in [
        "/api/energy/daily?month=2026-06&panel=NOPE",
        "/api/energy/monthly?year=2026&panel=NOPE",
        "/api/energy/monthly?year=2026&panel=not%20an%20id",
    ] {
        let (status, body) = api.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    vec![daily, intervals, hours, bills, monthly]
}

fn checks_of_now(api: &ApiServer) {
    // Realtime: B is OFFLINE, so is every virtual meter it is a member of; AC (A + C) is
    // ONLINE. Power is the expression over the latest power: BUILDING 4 + 2 + 1.5 = 7.5 kW,
    // LOSS 7 − (4 + 2) = 1 kW.
    let realtime = api.ok("/api/panel/realtime");
    let building = entry(&realtime, "BUILDING");
    assert_eq!(building["kind"], "virtual");
    assert_eq!(building["status"], "OFFLINE");
    assert_eq!(building["offline_members"], serde_json::json!(["B"]));
    assert_eq!(building["power_kw"], 7.5);
    assert_eq!(entry(&realtime, "LOSS")["power_kw"], 1.0);
    assert_eq!(entry(&realtime, "LOSS")["status"], "OFFLINE");
    let ac = entry(&realtime, "AC");
    assert_eq!(ac["status"], "ONLINE", "{ac}");
    assert_eq!(ac["offline_members"], serde_json::json!([]));
    assert_eq!(ac["power_kw"], 5.5);
    assert_eq!(entry(&realtime, "A")["kind"], "panel");
    assert!(entry(&realtime, "A").get("offline_members").is_none());

    // Today's total adds the panels only (every register reset to 0: nothing today).
    let today = api.ok("/api/panel/today-usage");
    assert_eq!(entry(&today, "BUILDING")["kind"], "virtual");
    assert_eq!(today["total"]["usage_kwh"], 0.0);

    // The declared building.
    let meters = api.ok("/api/meters");
    let loss = meters["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == "LOSS")
        .unwrap();
    assert_eq!(loss["expression"], "MAIN - SUBS");
    assert_eq!(
        loss["terms"],
        serde_json::json!([
            {"panel": "A", "coefficient": -1},
            {"panel": "B", "coefficient": -1},
            {"panel": "MAIN", "coefficient": 1},
        ])
    );
    assert_eq!(loss["building"], "Tower A");
    assert_eq!(meters["panels"].as_array().unwrap().len(), 4);
}

#[test]
fn a_building_and_its_unmetered_loss_are_their_members_combined() {
    let influx = Influx::start();
    influx.create_database("energy");
    influx.write("energy", &day_readings());
    influx.write("energy", &current_readings(Utc::now()));
    let dir = tempfile::tempdir().unwrap();
    let meters_file = dir.path().join("meters.toml");
    std::fs::write(&meters_file, METERS).unwrap();
    let tariff_file = dir.path().join("tariffs.toml");
    std::fs::write(&tariff_file, TARIFF).unwrap();
    let settings = [
        ("METERS_FILE", meters_file.to_str().unwrap()),
        ("TARIFF_FILE", tariff_file.to_str().unwrap()),
        ("QUERY_CACHE_MS", "0"),
    ];

    // No rollup: the api-server's own sums of the raw readings.
    let api = ApiServer::start(&influx.url(), "energy", &settings);
    let from_readings = checks_of_the_day(&api);
    checks_of_now(&api);

    // The subscriber's usage rollup: the same answers from its sums.
    let broker = Mosquitto::start();
    let started = Utc::now().timestamp_nanos_opt().unwrap();
    let _writer = start_subscriber(&broker, &influx, "virtual-meters-writer", &[]);
    wait_until(Duration::from_secs(120), "the rollup to be built", || {
        influx
            .rollup_complete_until("energy")
            .is_some_and(|until| until > started)
    });
    let mut from_rollup = ApiServer::start(&influx.url(), "energy", &settings);
    let answers = checks_of_the_day(&from_rollup);
    let said = from_rollup.program().output();
    assert!(
        !said.contains("reading raw points instead") && !said.contains("is not being kept"),
        "the api-server did not use the rollup:\n{said}"
    );
    assert_eq!(answers, from_readings);
}

#[test]
fn bad_meters_files_stop_the_server_at_start_naming_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, says) in [
        (
            "cycle",
            "[panels.A]\n[meters.X]\nexpression = \"A + Y\"\n[meters.Y]\nexpression = \"X - A\"\n",
            "line 3, meters.X.expression: X refers to itself: X → Y → X",
        ),
        (
            "unknown",
            "[panels.A]\n[meters.X]\nexpression = \"A + NOPE\"\n",
            "line 3, meters.X.expression: unknown panel or meter \"NOPE\"",
        ),
        (
            "unspaced",
            "[panels.A]\n[panels.B]\n[meters.X]\nexpression = \"A-B\"\n",
            "(a difference needs spaces: \"A - B\")",
        ),
        (
            "dangling",
            "[panels.A]\n[meters.X]\nexpression = \"A +\"\n",
            "line 3, meters.X.expression: expected a panel or meter after '+'",
        ),
        (
            "key",
            "[panels.A]\nbuilding = \"T\"\nwing = \"east\"\n",
            "line 3, panels.A.wing: unknown key",
        ),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let (code, output) = run_to_exit(
            "api-server",
            &[],
            &[
                ("METERS_FILE", path.to_str().unwrap().to_owned()),
                // Never reached: the file is refused first.
                ("INFLUX_URL", "http://127.0.0.1:9".to_owned()),
                ("API_ADDR", "127.0.0.1:0".to_owned()),
            ],
            Duration::from_secs(20),
        );
        assert_eq!(code, Some(2), "{name}: {output}");
        assert!(
            output.contains("invalid value for '--meters-file <METERS_FILE>'"),
            "{name}: {output}"
        );
        assert!(output.contains(says), "{name}: {says:?} not in:\n{output}");
    }
}
