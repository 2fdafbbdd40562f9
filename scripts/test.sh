#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing (Mosquitto,
# InfluxDB 1.x, wrk and openssl from the OS packages on Debian/Ubuntu), then builds and runs
# the whole suite.
# The tests start their own private Mosquitto and influxd on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-services.sh --for-tests
# Integration tests run the real binaries of every crate, so build them all first.
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- "$@"
