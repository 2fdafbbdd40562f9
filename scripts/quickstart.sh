#!/usr/bin/env bash
# The whole pipeline on this machine with one command: installs Mosquitto and InfluxDB 1.x
# from the OS packages if missing, starts them with their data in ./.run, builds and starts
# mqtt-subscriber, api-server and sensor-publisher, and prints where to look. Ctrl-C stops
# everything it started.
#
# Ports and the publish interval can be changed: MQTT_PORT (1883), INFLUX_PORT (8086),
# API_PORT (3000), PUBLISH_INTERVAL_SECS (5 here, so the demo moves; the program's default is 60).
# Every other setting is passed on, e.g. TARIFF_FILE=docs/tariffs/pln-example.toml for the
# example time-of-use tariff (docs/tariffs.md).
set -euo pipefail
cd "$(dirname "$0")/.."

MQTT_PORT=${MQTT_PORT:-1883}
INFLUX_PORT=${INFLUX_PORT:-8086}
INFLUX_RPC_PORT=${INFLUX_RPC_PORT:-8088}
API_PORT=${API_PORT:-3000}
PUBLISH_INTERVAL_SECS=${PUBLISH_INTERVAL_SECS:-5}
RUN=$PWD/.run

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$MQTT_PORT" "$INFLUX_PORT" "$INFLUX_RPC_PORT" "$API_PORT"; do
    if port_in_use "$port"; then
        echo "Port $port is already in use. Stop what listens there, or choose other ports:" >&2
        echo "  MQTT_PORT=11883 INFLUX_PORT=18086 INFLUX_RPC_PORT=18088 API_PORT=13000 $0" >&2
        exit 1
    fi
done

./scripts/install-services.sh
echo "Building (release)…"
cargo build --release --quiet --bin sensor-publisher --bin mqtt-subscriber --bin api-server

mkdir -p "$RUN/mosquitto" "$RUN/influxdb"
pids=()
cleanup() {
    trap - EXIT INT TERM
    echo; echo "Stopping…"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Mosquitto: loopback only, persistent sessions, queues sized for a subscriber that is away.
{
    echo "listener $MQTT_PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $RUN/mosquitto/"
    echo "max_queued_messages 100000"
    echo "max_inflight_messages 1000"
    # Running as root, Mosquitto would switch to its own user, who cannot write here.
    [ "$(id -u)" = 0 ] && echo "user root"
} > "$RUN/mosquitto.conf"
mosquitto -c "$RUN/mosquitto.conf" > "$RUN/mosquitto.log" 2>&1 &
pids+=($!)

cat > "$RUN/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"
[meta]
  dir = "$RUN/influxdb/meta"
[data]
  dir = "$RUN/influxdb/data"
  wal-dir = "$RUN/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
[logging]
  level = "warn"
CONF
influxd -config "$RUN/influxdb.conf" > "$RUN/influxdb.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$INFLUX_PORT/ping" >/dev/null && break
    sleep 0.2
done

export MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"
export INFLUX_URL="http://127.0.0.1:$INFLUX_PORT"
export API_ADDR="127.0.0.1:$API_PORT"
export PUBLISH_INTERVAL_SECS
export STATE_FILE="$RUN/sensor-publisher-state.json"
./target/release/mqtt-subscriber > "$RUN/mqtt-subscriber.log" 2>&1 &
pids+=($!)
./target/release/api-server > "$RUN/api-server.log" 2>&1 &
pids+=($!)
./target/release/sensor-publisher > "$RUN/sensor-publisher.log" 2>&1 &
pids+=($!)

cat <<INFO

Energy monitor running (publishing every ${PUBLISH_INTERVAL_SECS}s):
  dashboard: http://127.0.0.1:$API_PORT/
  curl http://127.0.0.1:$API_PORT/api/panel/realtime
  curl http://127.0.0.1:$API_PORT/api/panel/today-usage
  curl http://127.0.0.1:$API_PORT/api/panel/summary
  curl http://127.0.0.1:$API_PORT/api/energy/monthly
  curl http://127.0.0.1:$API_PORT/api/energy/daily
  curl http://127.0.0.1:$API_PORT/api/panel/PANEL_LANTAI_1/intervals
  curl 'http://127.0.0.1:$API_PORT/api/bill?month=$(TZ="${TIMEZONE:-Asia/Jakarta}" date +%Y-%m)'
  curl http://127.0.0.1:$API_PORT/health
  curl http://127.0.0.1:$API_PORT/api/openapi.json
Logs: $RUN/*.log    Broker: $MQTT_URL    InfluxDB: $INFLUX_URL (database "energy")
Press Ctrl-C to stop everything.
INFO
wait -n "${pids[@]}" || true
echo "A process exited; see the logs in $RUN." >&2
