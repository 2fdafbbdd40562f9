//! The dashboard in a real browser: the whole pipeline with real processes (Mosquitto, influxd,
//! mqtt-subscriber, sensor-publisher every 2 s, api-server, all private on free loopback ports),
//! and `tests/browser/dashboard.test.mjs` opening the page in headless Chromium through
//! playwright-core. The script compares every card, today's figures, the settings, each
//! panel's load curve and daily bars, the monthly chart and the CSV downloads with what the API
//! answers at the same time, waits for a reading to arrive through the live stream without a
//! reload, downloads the CSV files again from a second api-server that asks for a token, and
//! saves a screenshot.
//!
//! Both api-servers price with a time-of-use tariff file written here (see [`tariff_file`]):
//! the script checks what the page says each tariff charges now and each cost's split by
//! window, then opens the bill page of the last whole month, prints it to PDF and finds every
//! panel's total and the grand total of `/api/bill` in the PDF's text, one panel per page.
//!
//! Needs Node.js, Debian's `chromium` and `npm ci` in `tests/browser` (playwright-core, and
//! pdfjs-dist to read the PDF); `scripts/test.sh` provides all three. Without them the test
//! fails and says what is missing: a browser test that skips itself would pass in CI without
//! ever having run.
//!
//! `SCREENSHOT_OUT=<path.png>` also copies the screenshot there (a relative path is taken from
//! the workspace root); `docs/dashboard.png` is made that way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Datelike, Days, NaiveDate, Utc};
use test_support::{find_program, run_to_exit, wait_until, ApiServer, Influx, Mosquitto, Program};

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

#[test]
fn the_dashboard_shows_every_panel_live_in_headless_chromium() {
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
    let zone: chrono_tz::Tz = TIMEZONE.parse().expect("a time zone");
    let today = Utc::now().with_timezone(&zone).date_naive();
    std::fs::write(&tariffs, tariff_file(today)).expect("write the tariff file");

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
    let priced = [("TARIFF_FILE", tariffs.as_str()), ("TIMEZONE", TIMEZONE)];
    let api = ApiServer::start(&influx.url(), "energy", &priced);
    let guarded = ApiServer::start(
        &influx.url(),
        "energy",
        &[priced[0], priced[1], ("API_TOKEN", API_TOKEN)],
    );
    wait_until(
        Duration::from_secs(30),
        "a live reading of every panel",
        || {
            let body = api.ok("/api/panel/realtime");
            let panels = body["panels"].as_array().cloned().unwrap_or_default();
            panels.len() == PANELS.len()
                && panels.iter().all(|p| {
                    p["seconds_since_last_seen"]
                        .as_u64()
                        .is_some_and(|s| s <= 5)
                })
        },
    );
    let services_ready = started.elapsed();

    let screenshot = scratch.path().join("dashboard.png");
    let bill_pdf = scratch.path().join("bill.pdf");
    let mut command = Command::new(&node);
    command
        .current_dir(&project)
        .arg("dashboard.test.mjs")
        .arg(api.url("/"))
        .arg("--panels")
        .arg(PANELS.join(","))
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--bill-pdf")
        .arg(&bill_pdf)
        .arg("--token-url")
        .arg(guarded.url("/"))
        .env("CHROMIUM", &chromium)
        .env("DASHBOARD_TOKEN", API_TOKEN);
    let script_started = Instant::now();
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

    let png = std::fs::read(&screenshot).expect("the script saved a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a PNG of the page ({} bytes)",
        screenshot.display(),
        png.len()
    );
    let pdf = std::fs::read(&bill_pdf).expect("the script saved the bill as PDF");
    assert!(
        pdf.starts_with(b"%PDF-") && pdf.len() > 5_000,
        "{} is not a PDF of the bill ({} bytes)",
        bill_pdf.display(),
        pdf.len()
    );
    if let Some(out) = std::env::var_os("SCREENSHOT_OUT") {
        let out = root.join(out);
        std::fs::write(&out, &png)
            .unwrap_or_else(|e| panic!("cannot write the screenshot to {}: {e}", out.display()));
        println!("screenshot copied to {}", out.display());
    }
    println!(
        "services ready after {:.1} s, browser checks {:.1} s, total {:.1} s",
        services_ready.as_secs_f64(),
        script_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
