//! The daemon on real components: a simulated fleet, a real Prometheus scraping it and the
//! exporter, and anomaly-exporter reading Prometheus. A latency fault in one service must show,
//! read back through Prometheus as a dashboard would, as that service's latency series alone
//! having `anomaly_score > 1` and `anomaly_severity >= 2`.

mod common;

use std::time::Duration;

use anomaly_exporter::simulate::{self, FaultKind, FaultRequest, FleetOptions};
use common::{Exporter, Prometheus, assert_promtool_accepts, fetch_text, free_port, wait_until};

/// Instant query through Prometheus's API: the `service` label of every series in the answer.
async fn services_matching(prometheus: &Prometheus, promql: &str) -> Vec<String> {
    let url = format!("{}/api/v1/query?query={}", prometheus.url(), urlencode(promql));
    let body: serde_json::Value = serde_json::from_str(&fetch_text(&url).await).unwrap_or_default();
    let mut services: Vec<String> = body["data"]["result"]
        .as_array()
        .map(|r| r.iter().filter_map(|s| s["metric"]["service"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if std::env::var_os("DEBUG_FLAGGED").is_some() {
        eprintln!("{promql}: {}", body["data"]["result"]);
    }
    services.sort();
    services
}

/// The last ten minutes of `service`'s values, scores and severities, one line per series and
/// second, so a false positive can be replayed with `backtest`.
async fn recent_history(prometheus: &Prometheus, service: &str) -> String {
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut out = String::new();
    for metric in ["anomaly_value", "anomaly_score", "anomaly_severity"] {
        let query = urlencode(&format!("{metric}{{service=\"{service}\"}}"));
        let url = format!("{}/api/v1/query_range?query={query}&start={}&end={end}&step=1", prometheus.url(), end - 600);
        let body: serde_json::Value = serde_json::from_str(&fetch_text(&url).await).unwrap_or_default();
        for series in body["data"]["result"].as_array().into_iter().flatten() {
            let points: Vec<String> = series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{},{}", p[0], p[1].as_str().unwrap_or("")))
                .collect();
            out += &format!("{metric} {}: {}\n", series["metric"], points.join(" "));
        }
    }
    out
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_fault_flags_only_that_services_latency() {
    let dir = tempfile::tempdir().unwrap();
    let fleet =
        simulate::start(FleetOptions { seed: 7, ..FleetOptions::ephemeral(3, dir.path().join("logs")) }).await.unwrap();
    let exporter_config = dir.path().join("anomaly-exporter.yml");
    let exporter_log = dir.path().join("exporter.log");

    let targets: Vec<String> = fleet.services().iter().map(|s| format!("'{}'", s.address)).collect();
    let exporter_address = format!("127.0.0.1:{}", free_port());
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: springboot\n  metrics_path: /actuator/prometheus\n  static_configs:\n  - targets: [{}]\n\
         - job_name: anomaly-exporter\n  honor_labels: true\n  static_configs:\n  - targets: ['{exporter_address}']\n",
        targets.join(", ")
    ))
    .await;

    std::fs::write(&exporter_config, common::fast_exporter_config(prometheus.url())).unwrap();
    // Bound where Prometheus already looks for it.
    let exporter = Exporter::start(&exporter_config, &exporter_address, &exporter_log);

    // Every service's latency model trained, as Prometheus sees it.
    let warmed = wait_until(Duration::from_secs(150), || async {
        services_matching(&prometheus, r#"anomaly_model_warmup{signal="latency"} == 0"#).await.len() == 3
    })
    .await;
    let log = || std::fs::read_to_string(&exporter_log).unwrap_or_default();
    assert!(warmed, "latency models did not train in time; exporter log:\n{}", log());

    let target = fleet.services()[1].name.clone();
    fleet
        .inject_fault(FaultRequest {
            service: target.clone(),
            kind: FaultKind::Latency,
            duration_seconds: 90.0,
            magnitude: None,
        })
        .unwrap();

    let flagged = r#"(anomaly_score{signal="latency"} > 1) and on (service, signal) (anomaly_severity >= 2)"#;
    let detected = wait_until(Duration::from_secs(60), || async {
        services_matching(&prometheus, flagged).await == [target.clone()]
    })
    .await;
    assert!(
        detected,
        "latency fault in {target} not flagged; now flagged: {:?}; exporter log:\n{}",
        services_matching(&prometheus, flagged).await,
        log()
    );

    // While it is flagged, no other service is, on latency or on any other signal.
    for _ in 0..5 {
        let any_signal = "(anomaly_score > 1) and on (service, signal) (anomaly_severity >= 2)";
        let others: Vec<String> =
            services_matching(&prometheus, any_signal).await.into_iter().filter(|s| *s != target).collect();
        if !others.is_empty() {
            let url = format!(
                "{}/api/v1/query?query={}",
                prometheus.url(),
                urlencode("anomaly_severity >= 1 or anomaly_score > 1")
            );
            let mut history = String::new();
            for service in &others {
                history += &recent_history(&prometheus, service).await;
            }
            panic!("services flagged without a fault: {others:?}\n{}\n{history}", fetch_text(&url).await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let metrics = fetch_text(&format!("http://{exporter_address}/metrics")).await;
    assert!(metrics.contains("anomaly_exporter_source_up 1"), "{metrics}");
    assert_promtool_accepts(&metrics);
    drop(exporter);
    fleet.shutdown().await.unwrap();
}
