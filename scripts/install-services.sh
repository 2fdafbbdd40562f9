#!/usr/bin/env bash
# Installs what the pipeline and its tests need from the OS packages when it is missing
# (Debian/Ubuntu): Mosquitto, InfluxDB 1.x, and for the tests wrk (load test), openssl
# (test certificates), python3-venv and curl (scripts/schemathesis.sh), docker-compose
# (scripts/test.sh checks docker-compose.yml with it). Starts nothing.
# For the browser test also Chromium, Node.js and npm (crates/api-server/tests/browser.rs).
set -euo pipefail

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || missing+=(influxdb)
if [ "${1:-}" = "--for-tests" ]; then
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    # crates/api-server/tests/browser.rs: the dashboard in headless Chromium, driven from Node.js.
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # scripts/schemathesis.sh: a venv for schemathesis, and curl to wait for the servers.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # scripts/test.sh: docker-compose.yml checked against the Compose specification without
    # a Docker engine (`docker-compose config`, the Python tool Debian packages).
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "Please install ${missing[*]} and run again." >&2
    exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "Installing ${missing[*]} from the OS packages…"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
