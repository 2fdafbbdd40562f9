//! The dashboard in a real browser: the whole pipeline with real processes (Mosquitto, influxd,
//! mqtt-subscriber, sensor-publisher every 2 s, api-server, all private on free loopback ports),
//! and `tests/browser/dashboard.test.mjs` opening the page in headless Chromium through
//! playwright-core. The script compares every card, today's figures, the settings, each
//! panel's load curve and daily bars, the monthly chart and the CSV downloads with what the API
//! answers at the same time, waits for a reading to arrive through the live stream without a
//! reload, downloads the CSV files again from a second api-server that asks for a token, and
//! saves a screenshot.
//!
//! The first api-server reads a `METERS_FILE` ([`METERS`], docs/meters.md): the three simulated
//! panels are the floors of one building, with a virtual building total and a virtual loss
//! (one panel minus the two others: the simulator's panels are independent, so the loss is
//! usually negative, which the page must show as it is), and a tenant's virtual meter without
//! a building. The script checks the building view on it: the groups start collapsed, opening
//! one shows its floors and panels, the search box filters and counts, a virtual meter's card
//! says "virtual" and shows its expression, the loss's figures (sign included) are the API's,
//! and a virtual meter picked for the one-panel view draws its negative quarter hours below
//! the axis. The second api-server (with a token) has no `METERS_FILE`: its page keeps the flat
//! list of cards.
//!
//! Both api-servers price with a time-of-use tariff file written here (see [`tariff_file`]):
//! the script checks what the page says each tariff charges now and each cost's split by
//! window, then opens the bill page of the last whole month, prints it to PDF and finds every
//! panel's total and the grand total of `/api/bill` in the PDF's text, one panel per page.
//!
//! The first api-server also reads an `ALERTS_FILE` ([`ALERTS`], docs/alerts.md), evaluated
//! every second: a rule that fires at the first evaluation and one that never fires. The
//! script checks the page's Alerts section against `GET /api/alerts` (the active alert, the
//! marker on its panel's card, the quiet rule not active, the firing in the recent events) and
//! that an alert becoming active later is listed, marked and announced without a reload.
//!
//! A second test ([`the_dashboard_stays_responsive_with_1000_panels`]) writes 1 000 panels in
//! 10 buildings straight into InfluxDB and checks that the page stays small: the buildings
//! collapsed, no card of a collapsed group created, a few charts only, and the time from
//! navigation to the first group and the number of `svg` elements printed. The two tests run
//! one after the other (their timings would otherwise measure each other).
//!
//! Needs Node.js, Debian's `chromium` and `npm ci` in `tests/browser` (playwright-core, and
//! pdfjs-dist to read the PDF); `scripts/test.sh` provides all three. Without them the test
//! fails and says what is missing: a browser test that skips itself would pass in CI without
//! ever having run.
//!
//! `SCREENSHOT_OUT=<path.png>` also copies the screenshot of the first test there (a relative
//! path is taken from the workspace root); `docs/dashboard.png` is made that way.
//! `SCREENSHOT_MANY_OUT=<path.png>` does the same for the page with 1 000 panels.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Days, Duration as Span, NaiveDate, TimeZone, Timelike, Utc};
use test_support::{
    find_program, run_to_exit, start_subscriber, wait_until, ApiServer, Influx, Mosquitto, Program,
};

/// The two tests run one after the other: each starts its own services and browser, and the
/// second measures how fast the page is.
static SERIAL: Mutex<()> = Mutex::new(());

const PANELS: [&str; 3] = ["PANEL_LANTAI_1", "PANEL_LANTAI_2", "PANEL_LANTAI_3"];
/// History written before the live run, so the charts have bars: most of a year, one reading
/// per panel every 15 minutes (about 29 000 readings per panel, a few seconds) — except the last
/// panel, read every 30 minutes. That is longer than `ESTIMATE_AFTER_SECS` (900 s by default),
/// so its history is estimated and the others' is not: the page has both kinds to show.
const HISTORY_DAYS: &str = "300";
const HISTORY: [(&[&str], &str); 2] = [
    (&["PANEL_LANTAI_1", "PANEL_LANTAI_2"], "900"),
    (&["PANEL_LANTAI_3"], "1800"),
];
/// Where the simulated panels are (docs/meters.md): the floors of one building, its total, its
/// unmetered loss (the first panel, as if it were the main meter, minus the two others: the
/// simulator's panels are independent, so this is usually below zero), and a tenant who rents
/// two floors, whose meter has no building (the page lists it under "No building").
const METERS: &str = r#"
[panels.PANEL_LANTAI_1]
building = "Tower A"
floor = "1"
tenant = "PT Maju Jaya"

[panels.PANEL_LANTAI_2]
building = "Tower A"
floor = "2"
tenant = "PT Sejahtera"

[panels.PANEL_LANTAI_3]
building = "Tower A"
floor = "3"
tenant = "PT Sejahtera"

[meters.TOWER_A]
expression = "PANEL_LANTAI_1 + PANEL_LANTAI_2 + PANEL_LANTAI_3"
building = "Tower A"

[meters.LOSS_A]
expression = "PANEL_LANTAI_1 - (PANEL_LANTAI_2 + PANEL_LANTAI_3)"
building = "Tower A"

[meters.SEJAHTERA]
expression = "PANEL_LANTAI_2 + PANEL_LANTAI_3"
tenant = "PT Sejahtera"
"#;
/// The first api-server's alert rules (docs/alerts.md), evaluated every second: one that fires
/// at the first evaluation (a simulated panel always draws some power) and one that cannot
/// fire while the test runs (a panel publishing every 2 s is never OFFLINE for a week). No
/// target: the page shows the journal; nothing is sent anywhere.
const FIRING_RULE: &str = "lantai-1-load";
const QUIET_RULE: &str = "lantai-2-silent-for-a-week";
const ALERTS: &str = r#"
[[rules]]
name = "lantai-1-load"
meter = "PANEL_LANTAI_1"
power_above_kw = 0
notify = []

[[rules]]
name = "lantai-2-silent-for-a-week"
meter = "PANEL_LANTAI_2"
offline_for_minutes = 10080
notify = []
"#;
/// The live publisher's interval: short, so the page sees new readings within the test.
const LIVE_INTERVAL_SECS: &str = "2";
/// The script gives up after 150 s by itself; this only catches a script that hangs anyway.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(200);
/// The token of the second api-server, on which the script checks the downloads that must
/// carry it.
const API_TOKEN: &str = "browser-test-token";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Node.js, Chromium and the script's packages, or a panic saying how to get them.
fn browser_tools(project: &Path) -> (PathBuf, PathBuf) {
    let node = find_program("node").unwrap_or_else(|| {
        panic!(
            "the browser test needs Node.js (`node`), which is not installed: \
             `apt-get install nodejs npm`, or run ./scripts/test.sh, which installs it"
        )
    });
    let chromium = match std::env::var_os("CHROMIUM") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "CHROMIUM={} is not a file", path.display());
            path
        }
        None => find_program("chromium").unwrap_or_else(|| {
            panic!(
                "the browser test needs Chromium (`chromium`), which is not installed: \
                 `apt-get install chromium`, or run ./scripts/test.sh, which installs it \
                 (or set CHROMIUM to a Chromium executable)"
            )
        }),
    };
    for package in ["playwright-core", "pdfjs-dist"] {
        assert!(
            project
                .join("node_modules")
                .join(package)
                .join("package.json")
                .is_file(),
            "the browser test needs {package} in {}: run `npm ci` there \
             (./scripts/test.sh does)",
            project.display()
        );
    }
    (node, chromium)
}

/// The time zone of both api-servers, named explicitly: the tariff's dates are local dates.
const TIMEZONE: &str = "Asia/Jakarta";

/// A time-of-use tariff file whose dates follow today (in [`TIMEZONE`]), so that the last
/// whole month, which the bill page shows first, has two versions (a new one from its 15th,
/// with a demand and a fixed charge and a compound tax) and a holiday, and today's tariff has
/// a next version (the first of next month). `PANEL_LANTAI_1` has a contracted power (its
/// minimum is below its usage), `PANEL_LANTAI_2` none (its bill notes that it has no minimum),
/// and `PANEL_LANTAI_3` pays a second, one-window tariff with a minimum above its usage (a
/// top-up line). The rates are example values, like those of docs/tariffs/pln-example.toml.
fn tariff_file(today: NaiveDate) -> String {
    let this_month = today.with_day(1).expect("day 1 exists");
    let last_month = (this_month - Days::new(1))
        .with_day(1)
        .expect("day 1 exists");
    let new_version = last_month.with_day(15).expect("day 15 exists");
    let holiday = last_month.with_day(10).expect("day 10 exists");
    let next_version = (this_month + Days::new(32))
        .with_day(1)
        .expect("day 1 exists");
    let windows = |lwbp: &str, wbp: &str| {
        format!(
            r#"windows = [
  {{ name = "LWBP", rate = {lwbp}, weekdays = ["00:00-17:00", "22:00-24:00"], saturdays = ["00:00-17:00", "22:00-24:00"], sundays = ["00:00-17:00", "22:00-24:00"], holidays = ["00:00-24:00"] }},
  {{ name = "WBP", rate = {wbp}, weekdays = ["17:00-22:00"], saturdays = ["17:00-22:00"], sundays = ["17:00-22:00"] }},
]"#
        )
    };
    format!(
        r#"currency = "IDR"
decimals = 0
holidays = ["{holiday}"]
default_tariff = "B-3"

[panels.PANEL_LANTAI_1]
contracted_kva = 197

[panels.PANEL_LANTAI_3]
tariff = "S-2"
contracted_kva = 1000

[[tariffs.B-3.versions]]
valid_from = "2020-01-01"
minimum = {{ hours = 40, rate = 1035.78 }}
taxes = [{{ name = "PPJ", percent = 3 }}]
{first}

[[tariffs.B-3.versions]]
valid_from = "{new_version}"
demand_charge_per_kw = 35000
fixed_monthly = 50000
minimum = {{ hours = 40, rate = 1114.74 }}
taxes = [{{ name = "PPJ", percent = 3 }}, {{ name = "VAT", percent = 11, compound = true }}]
{second}

[[tariffs.B-3.versions]]
valid_from = "{next_version}"
minimum = {{ hours = 40, rate = 1200 }}
taxes = [{{ name = "PPJ", percent = 3 }}]
{third}

[[tariffs.S-2.versions]]
valid_from = "2020-01-01"
fixed_monthly = 25000
minimum = {{ hours = 40, rate = 1444.7 }}
windows = [{{ name = "all day", rate = 1444.7, every_day = ["00:00-24:00"] }}]
"#,
        first = windows("1035.78", "1553.67"),
        second = windows("1114.74", "1672.11"),
        third = windows("1200", "1800.5"),
    )
}

/// Runs `command` to its end or until `timeout`; its exit code (`None` if it was killed) and
/// everything it printed.
fn run_with_timeout(
    mut command: Command,
    output: &Path,
    timeout: Duration,
) -> (Option<i32>, String) {
    let file = std::fs::File::create(output).expect("create the script's output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone a file handle"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status.code();
        }
        if Instant::now() >= deadline {
            // Our own child, not yet reaped: its pid is still its own.
            child.kill().expect("kill the script");
            child.wait().expect("reap the script");
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read(output).unwrap_or_default();
    (code, String::from_utf8_lossy(&printed).into_owned())
}

/// Runs the script with `args` (after the dashboard's URL) until it ends; panics with its output
/// when it fails, keeping `scratch` (screenshots, PDF, output) to be looked at. Returns what it
/// printed.
fn run_script(
    node: &Path,
    chromium: &Path,
    project: &Path,
    scratch: tempfile::TempDir,
    url: &str,
    args: &[&std::ffi::OsStr],
) -> (tempfile::TempDir, String) {
    let mut command = Command::new(node);
    command
        .current_dir(project)
        .arg("dashboard.test.mjs")
        .arg(url)
        .args(args)
        .env("CHROMIUM", chromium)
        .env("DASHBOARD_TOKEN", API_TOKEN);
    let (code, output) =
        run_with_timeout(command, &scratch.path().join("script.log"), SCRIPT_TIMEOUT);
    if code != Some(0) {
        // Kept, so the screenshot of the failing page can be looked at.
        let kept = scratch.keep();
        panic!(
            "the browser test failed ({}; screenshot, bill PDF and output kept in {}):\n{output}",
            match code {
                Some(code) => format!("exit code {code}"),
                None => format!("killed after {SCRIPT_TIMEOUT:?}"),
            },
            kept.display()
        );
    }
    println!("{output}");
    (scratch, output)
}

/// The screenshot the script saved, which must be a PNG of a page, copied to the path in the
/// environment variable `copy_to` if it is set.
fn keep_screenshot(root: &Path, screenshot: &Path, copy_to: &str) {
    let png = std::fs::read(screenshot).expect("the script saved a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a PNG of the page ({} bytes)",
        screenshot.display(),
        png.len()
    );
    if let Some(out) = std::env::var_os(copy_to) {
        let out = root.join(out);
        std::fs::write(&out, &png)
            .unwrap_or_else(|e| panic!("cannot write the screenshot to {}: {e}", out.display()));
        println!("screenshot copied to {}", out.display());
    }
}

#[test]
fn the_dashboard_shows_every_panel_live_in_headless_chromium() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let root = workspace_root();
    let project = root.join("tests/browser");
    let (node, chromium) = browser_tools(&project);
    let scratch = tempfile::Builder::new()
        .prefix("test-browser-")
        .tempdir()
        .expect("create a temp dir");
    let state_file = scratch.path().join("sensor-publisher-state.json");
    let tariffs = scratch.path().join("tariffs.toml");
    let meters = scratch.path().join("meters.toml");
    let alerts = scratch.path().join("alerts.toml");
    let zone: chrono_tz::Tz = TIMEZONE.parse().expect("a time zone");
    let today = Utc::now().with_timezone(&zone).date_naive();
    std::fs::write(&tariffs, tariff_file(today)).expect("write the tariff file");
    std::fs::write(&meters, METERS).expect("write the meters file");
    std::fs::write(&alerts, ALERTS).expect("write the alerts file");

    let broker = Mosquitto::start();
    let influx = Influx::start();

    // History first, straight into InfluxDB, and the subscriber after it: the subscriber builds
    // the usage rollup from every reading when it starts and finds none recorded yet. Both
    // backfills keep their registers in the one state file, which holds every panel's.
    for (panels, interval_secs) in HISTORY {
        let (code, output) = run_to_exit(
            "sensor-publisher",
            &["--backfill", HISTORY_DAYS, "--direct"],
            &[
                ("INFLUX_URL", influx.url()),
                ("PANELS", panels.join(",")),
                ("PUBLISH_INTERVAL_SECS", interval_secs.to_owned()),
                ("STATE_FILE", state_file.display().to_string()),
                // Never used by --direct; the private broker, never a public one.
                ("MQTT_URL", broker.url()),
            ],
            Duration::from_secs(120),
        );
        assert_eq!(code, Some(0), "backfill of {panels:?} failed:\n{output}");
    }
    let subscriber = Program::start(
        "mqtt-subscriber",
        &[
            ("MQTT_URL", broker.url()),
            ("INFLUX_URL", influx.url()),
            ("MQTT_CLIENT_ID", "browser-test-subscriber".to_owned()),
        ],
    );
    subscriber.wait_for_output("subscribed", Duration::from_secs(20));
    subscriber.wait_for_output("usage rollup caught up", Duration::from_secs(120));

    // The live publisher continues the backfilled registers (same state file).
    let _publisher = Program::start(
        "sensor-publisher",
        &[
            ("MQTT_URL", broker.url()),
            ("PANELS", PANELS.join(",")),
            ("PUBLISH_INTERVAL_SECS", LIVE_INTERVAL_SECS.to_owned()),
            ("STATE_FILE", state_file.display().to_string()),
        ],
    );
    let tariffs = tariffs.display().to_string();
    let meters = meters.display().to_string();
    let alerts = alerts.display().to_string();
    let priced = [("TARIFF_FILE", tariffs.as_str()), ("TIMEZONE", TIMEZONE)];
    let api = ApiServer::start(
        &influx.url(),
        "energy",
        &[
            priced[0],
            priced[1],
            ("METERS_FILE", meters.as_str()),
            ("ALERTS_FILE", alerts.as_str()),
            ("ALERTS_INTERVAL_SECS", "1"),
        ],
    );
    // Without a meters file: its page keeps the flat list of cards.
    let guarded = ApiServer::start(
        &influx.url(),
        "energy",
        &[priced[0], priced[1], ("API_TOKEN", API_TOKEN)],
    );
    let declared = api.ok("/api/meters");
    let virtual_meters = declared["meters"].as_array().map_or(0, Vec::len);
    assert_eq!(virtual_meters, 3, "GET /api/meters: {declared}");
    wait_until(
        Duration::from_secs(30),
        "a live reading of every panel and virtual meter",
        || {
            let body = api.ok("/api/panel/realtime");
            let panels = body["panels"].as_array().cloned().unwrap_or_default();
            panels.len() == PANELS.len() + virtual_meters
                && panels.iter().all(|p| {
                    p["seconds_since_last_seen"]
                        .as_u64()
                        .is_some_and(|s| s <= 5)
                })
        },
    );
    wait_until(
        Duration::from_secs(30),
        &format!("{FIRING_RULE} firing in /api/alerts"),
        || {
            let body = api.ok("/api/alerts");
            body["active"]
                .as_array()
                .is_some_and(|active| active.iter().any(|e| e["rule"] == FIRING_RULE))
        },
    );
    let services_ready = started.elapsed();

    let screenshot = scratch.path().join("dashboard.png");
    let bill_pdf = scratch.path().join("bill.pdf");
    let panels = PANELS.join(",");
    let token_url = guarded.url("/");
    let script_started = Instant::now();
    let (scratch, _) = run_script(
        &node,
        &chromium,
        &project,
        scratch,
        &api.url("/"),
        &[
            "--panels".as_ref(),
            panels.as_ref(),
            "--screenshot".as_ref(),
            screenshot.as_os_str(),
            "--bill-pdf".as_ref(),
            bill_pdf.as_os_str(),
            "--token-url".as_ref(),
            token_url.as_ref(),
            "--firing-rule".as_ref(),
            FIRING_RULE.as_ref(),
            "--quiet-rule".as_ref(),
            QUIET_RULE.as_ref(),
        ],
    );

    keep_screenshot(&root, &screenshot, "SCREENSHOT_OUT");
    let pdf = std::fs::read(&bill_pdf).expect("the script saved the bill as PDF");
    assert!(
        pdf.starts_with(b"%PDF-") && pdf.len() > 5_000,
        "{} is not a PDF of the bill ({} bytes)",
        bill_pdf.display(),
        pdf.len()
    );
    drop(scratch);
    println!(
        "services ready after {:.1} s, browser checks {:.1} s, total {:.1} s",
        services_ready.as_secs_f64(),
        script_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---- 1 000 panels ------------------------------------------------------------------------

/// The large site: buildings × floors × panels per floor.
const MANY_BUILDINGS: u32 = 10;
const MANY_FLOORS: u32 = 10;
const MANY_PER_FLOOR: u32 = 10;
/// Days of history before today, one reading per panel at each local midnight (so the monthly
/// chart has figures before today; estimated, as the readings are a day apart). Few: the
/// subscriber's rollup holds a bucket per panel and quarter hour, 96 000 a day here.
const MANY_HISTORY_DAYS: u64 = 10;
/// Lines of line protocol per write request.
const MANY_LINES_PER_WRITE: usize = 20_000;

/// A panel of the large site: `B03-F07-P02` is the second panel on floor 7 of building 3. The
/// first panel of a building (`Bxx-F01-P01`) is its main meter.
fn many_panel(building: u32, floor: u32, index: u32) -> String {
    format!("B{building:02}-F{floor:02}-P{index:02}")
}

/// The large site's meters file: every panel with its building, floor and tenant (one per
/// floor), and for each building a virtual total of its sub-meters (`B03_SUBS`, every panel but
/// the main meter) and the unmetered loss (`B03_LOSS`, the main meter minus the total).
fn many_meters_file() -> String {
    let mut file = String::new();
    for building in 1..=MANY_BUILDINGS {
        let mut subs = Vec::new();
        for floor in 1..=MANY_FLOORS {
            for index in 1..=MANY_PER_FLOOR {
                let panel = many_panel(building, floor, index);
                writeln!(
                    file,
                    "[panels.{panel}]\nbuilding = \"Building {building:02}\"\nfloor = \"{floor}\"\n\
                     tenant = \"Tenant {building:02}-{floor:02}\"\n"
                )
                .expect("write to a string");
                if (floor, index) != (1, 1) {
                    subs.push(panel);
                }
            }
        }
        writeln!(
            file,
            "[meters.B{building:02}_SUBS]\nexpression = \"{}\"\nbuilding = \"Building {building:02}\"\n\n\
             [meters.B{building:02}_LOSS]\nexpression = \"{} - B{building:02}_SUBS\"\n\
             building = \"Building {building:02}\"\n",
            subs.join(" + "),
            many_panel(building, 1, 1),
        )
        .expect("write to a string");
    }
    file
}

/// What a sub-meter counts in quarter hour `quarter` of the local day, in Wh: 500 to 1 400,
/// 300 more from 08:00 to 18:00.
fn sub_wh(building: u32, floor: u32, index: u32, quarter: u32) -> i64 {
    let base = 500 + i64::from((building * 7 + floor * 3 + index) % 10) * 100;
    base + if (32..72).contains(&quarter) { 300 } else { 0 }
}

/// What the main meter counts beyond its sub-meters in a quarter hour, in Wh: 800, except
/// every third quarter hour, when its register lags by 600 (the loss is negative then). In
/// building 3 the main meter lags all day: its loss is negative every quarter hour.
fn loss_wh(building: u32, quarter: u32) -> i64 {
    match (building, quarter % 3) {
        (3, 0) => -600,
        (3, _) => -200,
        (_, 0) => -600,
        _ => 800,
    }
}

/// Whether a panel stopped sending two hours ago (OFFLINE): floor 10 of building 2.
fn many_offline(building: u32, floor: u32) -> bool {
    building == 2 && floor == MANY_FLOORS
}

/// The large site's readings, as requests of line protocol: a reading per panel at each local
/// midnight of the last [`MANY_HISTORY_DAYS`] days, then every quarter hour of today and one at
/// `now` minus 5 s (the panels of [`many_offline`] stop two hours before).
fn many_readings(now: DateTime<Utc>, zone: chrono_tz::Tz) -> Vec<String> {
    let today = now.with_timezone(&zone).date_naive();
    let midnight = |date: NaiveDate| {
        zone.from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .earliest()
            .expect("a local midnight")
            .with_timezone(&Utc)
    };
    let first = midnight(today - Days::new(MANY_HISTORY_DAYS));
    let today_start = midnight(today);
    let last = now - Span::seconds(5);
    let panels: Vec<(u32, u32, u32)> = (1..=MANY_BUILDINGS)
        .flat_map(|b| {
            (1..=MANY_FLOORS).flat_map(move |f| (1..=MANY_PER_FLOOR).map(move |p| (b, f, p)))
        })
        .collect();
    // Registers in Wh, advanced quarter hour by quarter hour (the last one in part).
    let mut registers: Vec<i64> = panels
        .iter()
        .map(|&(b, f, p)| i64::from(b * 100_000 + f * 1_000 + p))
        .collect();
    let mut lines = Vec::new();
    let emit = |time: DateTime<Utc>, registers: &[i64], lines: &mut Vec<String>| {
        let nanos = time.timestamp_nanos_opt().expect("a time in range");
        for (&(b, f, p), &wh) in panels.iter().zip(registers) {
            if many_offline(b, f) && time > now - Span::hours(2) {
                continue;
            }
            let kw = (sub_wh(b, f, p, 40) as f64) * 4.0 / 1000.0;
            lines.push(format!(
                "energy_data,panel={} power_kw={kw},energy_kwh={} {nanos}",
                many_panel(b, f, p),
                wh as f64 / 1000.0
            ));
        }
    };
    let mut time = first;
    emit(time, &registers, &mut lines);
    while time < last {
        let local = time.with_timezone(&zone);
        let quarter = (local.hour() * 60 + local.minute()) / 15;
        let next = (time + Span::minutes(15)).min(last);
        let share = (next - time).num_seconds() as f64 / 900.0;
        for (register, &(b, f, p)) in registers.iter_mut().zip(&panels) {
            let wh = if (f, p) == (1, 1) {
                let subs: i64 = (1..=MANY_FLOORS)
                    .flat_map(|f| (1..=MANY_PER_FLOOR).map(move |p| (f, p)))
                    .filter(|&fp| fp != (1, 1))
                    .map(|(f, p)| sub_wh(b, f, p, quarter))
                    .sum();
                subs + loss_wh(b, quarter)
            } else {
                sub_wh(b, f, p, quarter)
            };
            *register += (wh as f64 * share).round() as i64;
        }
        time = next;
        let local = time.with_timezone(&zone);
        let at_midnight = local.hour() == 0 && local.minute() == 0;
        if at_midnight || time >= today_start {
            emit(time, &registers, &mut lines);
        }
    }
    lines
        .chunks(MANY_LINES_PER_WRITE)
        .map(|chunk| chunk.join("\n") + "\n")
        .collect()
}

#[test]
fn the_dashboard_stays_responsive_with_1000_panels() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let root = workspace_root();
    let project = root.join("tests/browser");
    let (node, chromium) = browser_tools(&project);
    let scratch = tempfile::Builder::new()
        .prefix("test-browser-many-")
        .tempdir()
        .expect("create a temp dir");
    let meters = scratch.path().join("meters.toml");
    std::fs::write(&meters, many_meters_file()).expect("write the meters file");
    let zone: chrono_tz::Tz = TIMEZONE.parse().expect("a time zone");

    let broker = Mosquitto::start();
    let influx = Influx::start();
    influx.create_database("energy");
    let requests = many_readings(Utc::now(), zone);
    let lines: usize = requests.iter().map(|r| r.lines().count()).sum();
    for request in &requests {
        influx.write("energy", request);
    }
    let written = started.elapsed();
    // The subscriber builds the usage rollup from them, as it would on a real site (a rollup of
    // 1 000 panels takes a while: one bucket per panel and quarter hour of the history).
    let subscriber = start_subscriber(&broker, &influx, "browser-test-many", &[]);
    subscriber.wait_for_output("usage rollup caught up", Duration::from_secs(240));
    let meters = meters.display().to_string();
    let api = ApiServer::start(
        &influx.url(),
        "energy",
        &[("METERS_FILE", meters.as_str()), ("TIMEZONE", TIMEZONE)],
    );
    let panels = (MANY_BUILDINGS * MANY_FLOORS * MANY_PER_FLOOR) as usize;
    let virtual_meters = 2 * MANY_BUILDINGS as usize;
    let body = api.ok("/api/panel/realtime");
    assert_eq!(
        body["panels"].as_array().map_or(0, Vec::len),
        panels + virtual_meters,
        "every panel and virtual meter in /api/panel/realtime"
    );
    let services_ready = started.elapsed();

    let screenshot = scratch.path().join("dashboard-many.png");
    let count = panels.to_string();
    let script_started = Instant::now();
    let (scratch, _) = run_script(
        &node,
        &chromium,
        &project,
        scratch,
        &api.url("/"),
        &[
            "--many".as_ref(),
            count.as_ref(),
            "--screenshot".as_ref(),
            screenshot.as_os_str(),
        ],
    );
    keep_screenshot(&root, &screenshot, "SCREENSHOT_MANY_OUT");
    drop(scratch);
    println!(
        "{lines} readings written in {:.1} s, services ready after {:.1} s, browser checks {:.1} s, \
         total {:.1} s",
        written.as_secs_f64(),
        services_ready.as_secs_f64(),
        script_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
