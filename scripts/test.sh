#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing (Mosquitto and
# InfluxDB 1.x from the OS packages on Debian/Ubuntu), then builds and runs the whole suite.
# The tests start their own private Mosquitto and influxd on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || missing+=(influxdb)
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "The tests need ${missing[*]} (Mosquitto 2.x and InfluxDB 1.x); install them and run again." >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "Installing ${missing[*]} from the OS packages…"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Integration tests run the real binaries of every crate, so build them all first.
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- "$@"
