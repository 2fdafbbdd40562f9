//! Smoke tests for the helpers themselves, against the real services: if these fail, every
//! integration test built on them would fail for reasons that have nothing to do with the code
//! under test.

use std::time::Duration;

use test_support::{free_port, wait_until, Influx, Mosquitto, Program};

/// Tests hand these to other threads (e.g. a subscriber thread), so they must stay `Send`.
#[test]
fn handles_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Mosquitto>();
    assert_send::<Influx>();
    assert_send::<Program>();
    assert_send::<test_support::mqtt::Subscriber>();
}

#[test]
fn free_port_is_bindable_on_loopback() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
}

#[test]
#[should_panic(expected = "waiting for the impossible")]
fn wait_until_panics_with_what_on_timeout() {
    wait_until(Duration::from_millis(120), "the impossible", || false);
}

#[test]
fn influx_writes_queries_and_survives_a_restart() {
    let mut influx = Influx::start();
    assert_ne!(influx.port, 8086);
    assert!(influx.url().starts_with("http://127.0.0.1:"));

    // Before the database exists, counting is 0 rather than an error (tests poll this).
    assert_eq!(influx.count_points("energy"), 0);
    influx.create_database("energy");
    assert_eq!(influx.count_points("energy"), 0);

    influx.write(
        "energy",
        "energy_data,panel_id=p1 energy_kwh=1.5 1700000000000000000\n\
         energy_data,panel_id=p2 energy_kwh=2.0 1700000000000000000",
    );
    assert_eq!(influx.count_points("energy"), 2);

    let json = influx.query(
        "energy",
        "SELECT energy_kwh FROM energy_data WHERE panel_id = 'p1'",
    );
    let values = &json["results"][0]["series"][0]["values"];
    assert_eq!(values[0][1], 1.5, "answer: {json}");

    let port = influx.port;
    influx.restart();
    assert_eq!(influx.port, port);
    assert_eq!(influx.count_points("energy"), 2, "data survives a restart");
}

#[test]
fn stored_readings_and_the_usage_rollup_read_back() {
    let influx = Influx::start();
    // Before the database exists: nothing, rather than an error (tests poll these).
    assert!(influx.readings("energy").is_empty());
    assert!(influx.readings_by_panel("energy").is_empty());
    assert!(influx.panels("energy").is_empty());
    assert!(influx.usage_rollup("energy", "energy_usage_15m").is_empty());
    influx.create_database("energy");
    influx.write(
        "energy",
        "energy_data,panel=B power_kw=1,energy_kwh=7.25 1700000000123000000\n\
         energy_data,panel=A power_kw=2.5,energy_kwh=3 1700000060000000000\n\
         energy_data,panel=A power_kw=0.5,energy_kwh=1.5 1700000000000000000\n\
         energy_usage_15m,panel=A usage_nkwh=1500000000i,readings=2i 1699999200000000000\n\
         energy_usage_15m,panel=B usage_nkwh=7i,readings=1i 1699999200000000000\n\
         energy_usage_1d,panel=A usage_nkwh=9i,readings=3i 1699920000000000000\n",
    );
    let t = 1_700_000_000_000;
    assert_eq!(
        influx.readings("energy"),
        [
            ("A".to_owned(), t, 0.5, 1.5),
            ("A".to_owned(), t + 60_000, 2.5, 3.0),
            ("B".to_owned(), t + 123, 1.0, 7.25),
        ]
    );
    let by_panel = influx.readings_by_panel("energy");
    assert_eq!(by_panel.len(), 2);
    assert_eq!(by_panel["A"], [(t, 0.5, 1.5), (t + 60_000, 2.5, 3.0)]);
    assert_eq!(by_panel["B"], [(t + 123, 1.0, 7.25)]);
    assert_eq!(influx.panels("energy"), ["A", "B"]);

    let quarter = chrono::DateTime::from_timestamp(1_699_999_200, 0).unwrap();
    let buckets = influx.usage_rollup("energy", "energy_usage_15m");
    assert_eq!(buckets.len(), 2);
    assert_eq!(
        buckets["A"].iter().collect::<Vec<_>>(),
        [(&quarter, &(1_500_000_000, 2))]
    );
    assert_eq!(
        buckets["B"].iter().collect::<Vec<_>>(),
        [(&quarter, &(7, 1))]
    );
    let day = chrono::DateTime::from_timestamp(1_699_920_000, 0).unwrap();
    let days = influx.usage_rollup("energy", "energy_usage_1d");
    assert_eq!(days.keys().collect::<Vec<_>>(), ["A"]);
    assert_eq!(days["A"][&day], (9, 3));
    assert!(influx.usage_rollup("energy", "energy_usage_1mo").is_empty());
}

#[test]
fn mosquitto_delivers_binary_qos1_and_keeps_its_port_across_a_restart() {
    let mut broker = Mosquitto::start();
    assert_ne!(broker.port, 1883);
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port));

    // Invalid UTF-8 and a NUL must arrive byte for byte.
    let payload: &[u8] = &[0xff, 0xfe, 0x00, b'k', b'W', b'h', 0xc3];
    let mut subscriber = broker.subscribe("energy/#");
    broker.publish("energy/panel-1", payload, 1);
    broker.publish("other/topic", b"not for us", 0);
    let received = subscriber.collect(1, Duration::from_secs(5)).unwrap();
    assert_eq!(
        received,
        vec![("energy/panel-1".to_string(), payload.to_vec())]
    );
    drop(subscriber);

    // A retained message is kept in the persistence file across a restart.
    broker.publish_with("energy/status", b"online", 1, true);
    let port = broker.port;
    broker.restart();
    assert_eq!(broker.port, port);
    assert!(broker.dir().join("mosquitto.db").exists());
    assert_eq!(
        broker.subscribe_collect("energy/status", 1, Duration::from_secs(5)),
        vec![("energy/status".to_string(), b"online".to_vec())]
    );

    // After the restart, subscribe_collect on a thread while this thread publishes: the
    // publisher keeps going until the subscriber has what it needs, since it may subscribe late.
    let received = std::thread::scope(|scope| {
        let collector =
            scope.spawn(|| broker.subscribe_collect("energy/panel-2", 1, Duration::from_secs(10)));
        while !collector.is_finished() {
            broker.publish("energy/panel-2", b"after restart", 1);
            std::thread::sleep(Duration::from_millis(100));
        }
        collector.join().unwrap()
    });
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, "energy/panel-2");
    assert_eq!(received[0].1, b"after restart");

    let log = broker.log();
    assert!(log.contains("running"), "log: {log}");
}

#[test]
fn mosquitto_extra_config_is_applied() {
    let broker = Mosquitto::start_with("max_packet_size 100");
    let mut subscriber = broker.subscribe("t");
    broker.publish("t", &[7u8; 10], 1);
    assert_eq!(
        subscriber.collect(1, Duration::from_secs(5)).unwrap(),
        vec![("t".to_string(), vec![7u8; 10])]
    );
    // Too large for the configured limit: the broker drops the connection instead of PUBACK.
    let err = test_support::mqtt::publish(broker.port, b"t", &[7u8; 500], 1, false);
    assert!(err.is_err(), "oversized publish was accepted");
}

#[test]
#[should_panic(expected = "binary no-such-program not found at")]
fn missing_binary_names_the_build_command() {
    test_support::binary("no-such-program");
}

/// A stand-in for a workspace binary: a shell script placed where `binary()` looks, removed
/// when the test ends. The real programs are tested by their own crates.
struct FakeBinary(std::path::PathBuf);

impl FakeBinary {
    fn new(name: &str, script: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let exe = std::env::current_exe().unwrap();
        let path = exe.parent().unwrap().parent().unwrap().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeBinary(path)
    }
}

impl Drop for FakeBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn program_runs_with_a_clean_env_and_reports_exit_codes() {
    let name = format!("test-support-fake-{}", std::process::id());
    let _fake = FakeBinary::new(
        &name,
        r#"#!/bin/sh
echo "out: GREETING=$GREETING"
echo "err: RUST_LOG=$RUST_LOG HOME=${HOME-unset} cwd=$(pwd)" >&2
if [ "$1" = "--fail" ]; then exit 3; fi
trap 'echo "got TERM"; exit 7' TERM
echo ready
while :; do sleep 0.05; done
"#,
    );

    // Only PATH, RUST_LOG and what we pass: HOME (set for the test runner) is not inherited.
    let mut program = Program::start(&name, &[("GREETING", "hello".to_string())]);
    program.wait_for_output("ready", Duration::from_secs(10));
    let output = program.output();
    assert!(output.contains("out: GREETING=hello"), "{output}");
    assert!(output.contains("RUST_LOG=info HOME=unset"), "{output}");
    assert!(
        output.contains("/work"),
        "runs in its own work dir: {output}"
    );
    assert!(program.pid() > 0);
    assert_eq!(program.wait_exit(Duration::from_millis(100)), None);
    assert_eq!(program.terminate(), Some(7));
    assert!(program.output().contains("got TERM"));

    let mut killed = Program::start(&name, &[("RUST_LOG", "debug".to_string())]);
    killed.wait_for_output("RUST_LOG=debug", Duration::from_secs(10));
    killed.kill();
    assert_eq!(
        killed.wait_exit(Duration::from_secs(1)),
        None,
        "a signal has no exit code"
    );

    let dir = tempfile::tempdir().unwrap();
    let in_dir = Program::start_in(&name, dir.path(), &[]);
    in_dir.wait_for_output("ready", Duration::from_secs(10));
    let canonical = dir.path().canonicalize().unwrap();
    assert!(
        in_dir.output().contains(&*canonical.to_string_lossy()),
        "{}",
        in_dir.output()
    );
    drop(in_dir);

    let (code, output) =
        test_support::run_to_exit(&name, &["--fail"], &[], Duration::from_secs(10));
    assert_eq!(code, Some(3), "{output}");
    assert!(output.contains("out: GREETING="), "{output}");

    let (code, _) = test_support::run_to_exit(&name, &[], &[], Duration::from_millis(300));
    assert_eq!(code, None, "killed after the timeout");
}

#[test]
#[should_panic(expected = "mosquitto did not start")]
fn mosquitto_with_a_bad_config_fails_loudly() {
    Mosquitto::start_with("no_such_option true");
}

#[test]
fn http_get_parses_json_and_reports_unreachable_servers() {
    let influx = Influx::start();
    let (status, json, body) =
        test_support::http_get(&format!("{}/query?q=SHOW%20DATABASES", influx.url()));
    assert_eq!(status, 200, "{body}");
    assert!(json["results"].is_array(), "{body}");

    let (status, json, body) = test_support::http_get(&format!("{}/ping", influx.url()));
    assert_eq!(
        (status, json, body.as_str()),
        (204, serde_json::Value::Null, "")
    );

    let closed = format!("http://127.0.0.1:{}/", free_port());
    assert!(test_support::try_http_get(&closed).is_err());
}

/// `reqwest::blocking` panics on a runtime thread; the helpers must not.
#[tokio::test]
async fn helpers_work_inside_a_tokio_runtime() {
    let influx = Influx::start();
    influx.create_database("energy");
    influx.write("energy", "energy_data,panel_id=p1 energy_kwh=1.0 1");
    assert_eq!(influx.count_points("energy"), 1);
    let (status, _, _) = test_support::http_get(&format!("{}/ping", influx.url()));
    assert_eq!(status, 204);
}

#[test]
fn a_sibling_binary_runs_and_reports_its_cpu_time_and_memory() {
    let name = format!("test-support-sibling-{}", std::process::id());
    // Busy, so that it has used some CPU time by the time we look.
    let _fake = FakeBinary::new(&name, "#!/bin/sh\necho ready\nwhile :; do :; done\n");
    // A test runs from target/<profile>/deps/: the binary is found one directory up.
    let exe = test_support::sibling_binary(&name);
    let mut program = Program::start_exe(&exe, &[], &[]);
    program.wait_for_output("ready", Duration::from_secs(10));
    wait_until(Duration::from_secs(10), "CPU time to be counted", || {
        program.cpu_time().is_some_and(|cpu| cpu > Duration::ZERO)
    });
    let rss = program.rss_kib().expect("VmRSS of a running program");
    let peak = program.peak_rss_kib().expect("VmHWM of a running program");
    assert!(rss > 0 && peak >= rss, "VmRSS {rss} KiB, VmHWM {peak} KiB");
    program.kill();
    assert_eq!(
        program.cpu_time(),
        None,
        "nothing is read once it has exited"
    );
    assert_eq!(program.peak_rss_kib(), None);
}

#[test]
#[should_panic(expected = "cargo build --release --workspace")]
fn a_missing_sibling_binary_names_the_build_command() {
    test_support::sibling_binary("no-such-program-anywhere");
}
