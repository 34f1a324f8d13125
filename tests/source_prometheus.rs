//! The source client against a real Prometheus: it scrapes itself and a tiny exporter started
//! here (Micrometer-style series with an `application` label), and the client reads them back
//! with `query`, a `query_range` long enough to be split, and `label_values`; errors come back
//! typed (a PromQL syntax error is `bad_data`, a wrong URL prefix is `not_found`).

mod common;

use std::time::{Duration, SystemTime};

use anomaly_exporter::source::{PrometheusClient, SourceConfig};
use axum::Router;
use axum::routing::get;
use common::{Alertmanager, Prometheus, fetch_text, metric, wait_until};

const APPLICATIONS: [&str; 3] = ["checkout", "payments", "search"];

/// Serves `/metrics` with a CPU gauge per application, and NaN and +Inf gauges to check that
/// special values survive the whole way. Returns `127.0.0.1:<port>`.
async fn start_tiny_exporter() -> String {
    let body = "# TYPE demo_cpu_usage gauge\n\
                demo_cpu_usage{application=\"checkout\"} 0.25\n\
                demo_cpu_usage{application=\"payments\"} 0.5\n\
                demo_cpu_usage{application=\"search\"} 0.75\n\
                # TYPE demo_odd_value gauge\n\
                demo_odd_value{application=\"checkout\",kind=\"nan\"} NaN\n\
                demo_odd_value{application=\"checkout\",kind=\"inf\"} +Inf\n";
    let router = Router::new().route("/metrics", get(move || async move { body }));
    common::serve_on_loopback(router).await
}

fn prometheus_config(exporter: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["$SELF_ADDRESS"]}}]
  - job_name: demo
    static_configs: [{{targets: ["{exporter}"]}}]
"#
    )
}

fn client_for(url: &str) -> PrometheusClient {
    PrometheusClient::new(&SourceConfig::new(url)).expect("client for a valid config")
}

/// Starts Prometheus with the tiny exporter and waits until all three applications are in.
async fn prometheus_with_demo_data() -> (Prometheus, PrometheusClient) {
    let exporter = start_tiny_exporter().await;
    let rules =
        "groups:\n  - name: demo\n    rules:\n      - record: demo:cpu_usage:sum\n        expr: sum(demo_cpu_usage)\n";
    let prometheus = Prometheus::start_with(&prometheus_config(&exporter), &[("rules.yml", rules)], &[]).await;
    let client = client_for(prometheus.url());
    let scraped = wait_until(Duration::from_secs(30), || async {
        client.query("demo_cpu_usage", SystemTime::now()).await.is_ok_and(|v| v.samples.len() == 3)
    })
    .await;
    assert!(scraped, "prometheus did not scrape the tiny exporter in time\n{}", prometheus.log());
    (prometheus, client)
}

#[tokio::test]
async fn client_reads_instant_range_and_label_values_from_real_prometheus() {
    let (prometheus, client) = prometheus_with_demo_data().await;

    // One query answers for every application.
    let now = SystemTime::now();
    let cpu = client.query("demo_cpu_usage", now).await.unwrap();
    let mut by_application: Vec<(String, f64)> =
        cpu.samples.iter().map(|s| (s.labels["application"].clone(), s.value)).collect();
    by_application.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_application,
        [("checkout".to_owned(), 0.25), ("payments".to_owned(), 0.5), ("search".to_owned(), 0.75)]
    );
    assert!(cpu.samples.iter().all(|s| s.labels["job"] == "demo" && s.labels["__name__"] == "demo_cpu_usage"));
    assert!(cpu.warnings.is_empty());

    let odd = client.query("demo_odd_value", now).await.unwrap();
    let value_of = |kind: &str| odd.samples.iter().find(|s| s.labels["kind"] == kind).map(|s| s.value);
    assert!(value_of("nan").is_some_and(f64::is_nan));
    assert_eq!(value_of("inf"), Some(f64::INFINITY));
    let scalar = client.query("scalar(vector(-Inf))", now).await.unwrap();
    assert_eq!(scalar.samples[0].value, f64::NEG_INFINITY);
    assert!(scalar.samples[0].labels.is_empty());

    // 13,001 points at a 2 ms step: more than Prometheus accepts at once, so it is split.
    let step = Duration::from_millis(2);
    let start = now - Duration::from_secs(2);
    let end = start + Duration::from_secs(26);
    let matrix = client.query_range("demo_cpu_usage", start, end, step).await.unwrap();
    assert_eq!(matrix.series.len(), 3);
    for series in &matrix.series {
        let times: Vec<i64> = series.points.iter().map(|p| p.timestamp_ms).collect();
        assert!(times.len() > 11_000, "{} points: the range was not covered", times.len());
        assert!(times.windows(2).all(|w| w[1] - w[0] == 2), "points missing or repeated at a chunk boundary");
        let end_ms = end.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!(*times.last().unwrap() <= end_ms && times.last().unwrap() + 2 > end_ms);
    }

    let mut values = client.label_values("application", &["demo_cpu_usage"]).await.unwrap().values;
    values.sort();
    assert_eq!(values, APPLICATIONS);
    let jobs = client.label_values("job", &["demo_cpu_usage"]).await.unwrap().values;
    assert_eq!(jobs, ["demo"]);
    // Without matchers, every series counts (the self-scrape may not have happened yet).
    let all_jobs = client.label_values("job", &[]).await.unwrap().values;
    assert!(all_jobs.contains(&"demo".to_owned()), "{all_jobs:?}");

    // The rule file the harness wrote beside the config is loaded and evaluated.
    let recorded = wait_until(Duration::from_secs(10), || async {
        let sum = client.query("demo:cpu_usage:sum", SystemTime::now()).await;
        sum.is_ok_and(|v| v.samples.first().is_some_and(|s| s.value == 1.5))
    })
    .await;
    assert!(recorded, "recording rule never evaluated\n{}", prometheus.log());

    // The harness's scrape matcher, on Prometheus's own metrics.
    let scrape = fetch_text(&format!("{}/metrics", prometheus.url())).await;
    metric("prometheus_ready").value(1.0).assert_in(&scrape);
}

#[tokio::test]
async fn real_prometheus_errors_are_typed() {
    let (prometheus, client) = prometheus_with_demo_data().await;
    let now = SystemTime::now();

    let err = client.query("sum(demo_cpu_usage", now).await.unwrap_err();
    assert_eq!(err.reason(), "bad_data", "{err}");
    assert!(!err.is_retryable());

    // Both sides match every series: many-to-many matching fails during evaluation (422).
    let err = client.query("demo_cpu_usage + on() demo_cpu_usage", now).await.unwrap_err();
    assert_eq!(err.reason(), "execution", "{err}");

    let err = client.query("demo_cpu_usage[1m]", now).await.unwrap_err();
    assert_eq!(err.reason(), "unsupported_result", "{err}");

    let wrong_prefix = client_for(&format!("{}/prometheus", prometheus.url()));
    let err = wrong_prefix.query("up", now).await.unwrap_err();
    assert_eq!(err.reason(), "not_found", "{err}");
    assert!(err.to_string().contains("check source.url"), "{err}");
}

/// Not about the source, but the harness must also start Alertmanager for the alerting tests;
/// this keeps that path tested where the harness lives.
#[tokio::test]
async fn harness_starts_a_standalone_alertmanager() {
    let config = "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n";
    let alertmanager = Alertmanager::start(config).await;
    let status = fetch_text(&format!("{}/api/v2/status", alertmanager.url())).await;
    // An empty --cluster.listen-address turns gossip off.
    assert!(status.contains(r#""cluster":{"peers":[],"status":"disabled"}"#), "{status}\n{}", alertmanager.log());
}
