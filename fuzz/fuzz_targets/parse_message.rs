//! Fuzzes MQTT message validation and line-protocol encoding: see `energy_fuzz::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = energy_fuzz::check(data);
});
