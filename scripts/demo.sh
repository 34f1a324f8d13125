#!/usr/bin/env bash
# The whole stack on loopback: a simulated Spring Boot fleet, a real Prometheus scraping it and
# anomaly-exporter scoring it. Prints the URLs; Ctrl-C stops everything and removes the temporary
# data. Ports can be changed through the environment variables below.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=${SERVICES:-5}
FLEET_CONTROL=${FLEET_CONTROL:-127.0.0.1:10111}
FLEET_BASE_PORT=${FLEET_BASE_PORT:-18080}
PROMETHEUS=${PROMETHEUS:-127.0.0.1:19090}
EXPORTER=${EXPORTER:-127.0.0.1:10110}

scripts/install-deps.sh
cargo build --release --quiet
BIN=target/release/anomaly-exporter

WORK=$(mktemp -d -t anomaly-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping the demo"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cat > "$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: springboot
    metrics_path: /actuator/prometheus
    http_sd_configs:
      - url: http://$FLEET_CONTROL/targets
        refresh_interval: 10s
  - job_name: anomaly-exporter
    # Our series carry their own service label: keep it rather than renaming it exported_service.
    honor_labels: true
    static_configs:
      - targets: ['$EXPORTER']
YAML

cat > "$WORK/anomaly-exporter.yml" <<YAML
source:
  url: http://$PROMETHEUS
  step: 5s
interval: 5s
service_grace: 1m
backfill: 1h
detector:
  min_training_points: 60
  retrain_every_points: 120
logs:
  service_files: $WORK/logs/{service}/app.log*
YAML

"$BIN" simulate --services "$SERVICES" --listen-address "$FLEET_CONTROL" --base-port "$FLEET_BASE_PORT" \
  --log-dir "$WORK/logs" --day-length 30m --fault-every 4m --fault-duration 90s >"$WORK/fleet.log" 2>&1 &
PIDS+=($!)
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="$PROMETHEUS" --web.external-url="http://$PROMETHEUS/" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
"$BIN" run --config.file "$WORK/anomaly-exporter.yml" --web.listen-address "$EXPORTER" >"$WORK/exporter.log" 2>&1 &
PIDS+=($!)

cat <<TEXT
anomaly-exporter demo is running ($SERVICES simulated Spring Boot services). Logs in $WORK.
  Prometheus         http://$PROMETHEUS/graph?g0.expr=anomaly_score&g0.tab=0
  anomaly-exporter   http://$EXPORTER/metrics   http://$EXPORTER/services
  logs               http://$EXPORTER/logs?service=order-service   (a service's lines of the last 5 minutes, ranked)
  fleet control      http://$FLEET_CONTROL/targets   (POST /faults to inject one)
Models warm up after about 5 minutes of data; a fault is injected every 4 minutes.
Press Ctrl-C to stop.
TEXT
wait -n "${PIDS[@]}" || true
echo "a component exited; see the logs in $WORK"
