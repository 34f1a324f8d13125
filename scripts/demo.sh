#!/usr/bin/env bash
# The whole stack on loopback: a simulated Spring Boot fleet, a real Prometheus scraping it with
# the shipped rules, a real Alertmanager with the shipped config, and anomaly-exporter scoring the
# fleet, recording incidents and posting to Slack. Slack can't be reached from here: the fleet's
# control API stands in for it (GET /slack lists what Alertmanager and the exporter posted).
# Prints the URLs; Ctrl-C (or SIGINT, SIGTERM) stops everything and removes the temporary data.
# Ports can be changed through the environment variables below; ANOMALY_EXPORTER_BIN runs a binary
# already built instead of building the release one (the demo's own test does).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=${SERVICES:-5}
FLEET_CONTROL=${FLEET_CONTROL:-127.0.0.1:10111}
FLEET_BASE_PORT=${FLEET_BASE_PORT:-18080}
PROMETHEUS=${PROMETHEUS:-127.0.0.1:19090}
EXPORTER=${EXPORTER:-127.0.0.1:10110}
ALERTMANAGER=${ALERTMANAGER:-127.0.0.1:19093}
REPO=$(pwd)

scripts/install-deps.sh
BIN=${ANOMALY_EXPORTER_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=target/release/anomaly-exporter
fi

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
rule_files:
  - $REPO/prometheus/rules/*.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['$ALERTMANAGER']
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
datasets:
  path: $WORK/datasets
alerts:
  slack:
    url_file: $WORK/exporter-slack-url
    external_url: http://$EXPORTER
YAML

# The shipped Alertmanager configuration, pointed at loopback: the exporter's webhook, and the
# Slack stand-in for both Alertmanager's own posts and the exporter's.
mkdir -p "$WORK/alertmanager"
cp -r alertmanager/templates "$WORK/alertmanager/"
echo "http://$FLEET_CONTROL/slack/alertmanager" > "$WORK/alertmanager-slack-url"
echo "http://$FLEET_CONTROL/slack/exporter" > "$WORK/exporter-slack-url"
echo "demo-token" > "$WORK/webhook.token"
sed -e "s#http://anomaly-exporter:10110#http://$EXPORTER#" \
    -e "s#/etc/alertmanager/slack-webhook-url#$WORK/alertmanager-slack-url#" \
    -e "s#/etc/alertmanager/anomaly-exporter.token#$WORK/webhook.token#" \
    alertmanager/alertmanager.yml > "$WORK/alertmanager/alertmanager.yml"

"$BIN" simulate --services "$SERVICES" --listen-address "$FLEET_CONTROL" --base-port "$FLEET_BASE_PORT" \
  --log-dir "$WORK/logs" --day-length 30m --fault-every 4m --fault-duration 90s >"$WORK/fleet.log" 2>&1 &
PIDS+=($!)
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="$PROMETHEUS" --web.external-url="http://$PROMETHEUS/" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
prometheus-alertmanager --config.file="$WORK/alertmanager/alertmanager.yml" --storage.path="$WORK/alertmanager-data" \
  --web.listen-address="$ALERTMANAGER" --web.external-url="http://$ALERTMANAGER/" --cluster.listen-address= \
  >"$WORK/alertmanager.log" 2>&1 &
PIDS+=($!)
"$BIN" run --config.file "$WORK/anomaly-exporter.yml" --web.listen-address "$EXPORTER" >"$WORK/exporter.log" 2>&1 &
PIDS+=($!)

cat <<TEXT
anomaly-exporter demo is running ($SERVICES simulated Spring Boot services). Logs in $WORK.
  Prometheus         http://$PROMETHEUS/graph?g0.expr=anomaly_score&g0.tab=0   http://$PROMETHEUS/alerts
  Alertmanager       http://$ALERTMANAGER/
  anomaly-exporter   http://$EXPORTER/metrics   http://$EXPORTER/services   http://$EXPORTER/incidents
  logs               http://$EXPORTER/logs?service=order-service   (a service's lines of the last 5 minutes, ranked)
  Slack stand-in     http://$FLEET_CONTROL/slack   (what Alertmanager and anomaly-exporter posted)
  fleet control      http://$FLEET_CONTROL/targets   (POST /faults to inject one)
Models warm up after about 5 minutes of data; a fault is injected every 4 minutes.
Datasets (Parquet) are written under $WORK/datasets.
Press Ctrl-C to stop.
TEXT
wait -n "${PIDS[@]}" || true
echo "a component exited; see the logs in $WORK"
