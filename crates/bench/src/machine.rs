//! Facts printed with every result, because a figure means little without them: how many cores,
//! how busy the machine was, which build of which binary was measured.

use std::path::Path;

use serde_json::{json, Value};

/// The CPU cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The 1, 5 and 15 minute load averages, e.g. `0.42 0.57 0.83`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// `release` or `debug`: the cargo profile directory `exe` was built into.
pub fn profile(exe: &Path) -> String {
    exe.parent()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// One line about the machine, e.g. `2 cores, load average 0.42 0.57 0.83`.
pub fn describe() -> String {
    format!("{} cores, load average {}", cores(), load_average())
}

/// The same as JSON.
pub fn to_json() -> Value {
    json!({ "cores": cores(), "load_average": load_average() })
}

/// A warning for stderr when `exe` is not a release build: debug figures are not comparable.
pub fn warn_unless_release(exe: &Path) {
    if profile(exe) != "release" {
        eprintln!(
            "WARNING: {} is a {} build; benchmark figures are only meaningful for release \
             builds (`cargo build --release --workspace`, then `cargo run --release -p \
             energy-bench --bin …`)",
            exe.display(),
            profile(exe)
        );
    }
}
