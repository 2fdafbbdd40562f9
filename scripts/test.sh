#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing (Mosquitto,
# InfluxDB 1.x, wrk, openssl, python3-venv, curl and docker-compose from the OS packages on
# Debian/Ubuntu), checks docker-compose.yml, then builds and runs the whole suite, then fuzzes
# the api-server with schemathesis.
# The tests start their own private Mosquitto and influxd on free loopback ports.
# The browser test also needs Chromium and Node.js (installed when missing) and its Node
# packages (`npm ci` in tests/browser).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-services.sh --for-tests
# docker-compose.yml, for users with Docker, checked against the Compose specification
# (unknown keys, wrong types, bad references) without an engine, which this machine lacks.
docker-compose --file docker-compose.yml config --quiet
# playwright-core for the browser test, as pinned in its package-lock.json (it drives the
# system's Chromium and downloads no browser).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
# Integration tests run the real binaries of every crate, so build them all first.
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- "$@"
# The api-server fuzzed against its own OpenAPI document (about 15 s).
./scripts/schemathesis.sh
