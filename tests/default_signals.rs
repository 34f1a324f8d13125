//! The shipped Spring Boot / Micrometer signals against real actuator output (Boot 2 and Boot 3,
//! `../shared/fixtures/springboot/`), scraped by a real Prometheus: every default query must
//! return one finite value per application.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anomaly_exporter::config::default_signals;
use anomaly_exporter::source::{PrometheusClient, SourceConfig};
use axum::Router;
use axum::routing::get;
use common::{Prometheus, wait_until};

const FIXTURES: [(&str, &str); 2] =
    [("boot2", "actuator_prometheus_sb2_selimhorri.txt"), ("boot3", "actuator_prometheus_sb3_venzersiz.txt")];

/// Counters of a fixture multiplied by the scrape number, so rates are real numbers; everything
/// else as captured.
fn advance(fixture: &str, scrape: u64) -> String {
    fixture
        .lines()
        .map(|line| {
            let Some((series, value)) = line.rsplit_once(' ') else { return line.to_owned() };
            let name = series.split('{').next().unwrap_or(series);
            let counter = ["_count", "_sum", "_bucket", "_total"].iter().any(|suffix| name.ends_with(suffix));
            match value.parse::<f64>() {
                Ok(v) if counter && !line.starts_with('#') => format!("{series} {}", v * (scrape + 1) as f64),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

async fn serve_fixture(text: String) -> String {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/actuator/prometheus",
        get(move || {
            let scrape = scrapes.fetch_add(1, Ordering::SeqCst);
            let body = advance(&text, scrape);
            async move { ([("content-type", "text/plain; version=0.0.4")], body) }
        }),
    );
    common::serve_on_loopback(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_signals_answer_for_boot_2_and_boot_3() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/springboot");
    let mut jobs = String::new();
    for (application, file) in FIXTURES {
        let text = std::fs::read_to_string(fixtures.join(file)).expect("shared fixtures next to the repository");
        let address = serve_fixture(text).await;
        // Micrometer adds `application` only when the app sets it; here the scrape config does,
        // as a target label, which is the other common way.
        jobs.push_str(&format!(
            "- job_name: {application}\n  metrics_path: /actuator/prometheus\n  static_configs:\n  - targets: ['{address}']\n    labels: {{application: {application}}}\n"
        ));
    }
    let prometheus = Prometheus::start(&format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}")).await;
    let client = PrometheusClient::new(&SourceConfig::new(prometheus.url())).unwrap();

    for (name, signal) in default_signals() {
        let answered = wait_until(Duration::from_secs(30), || async {
            let Ok(vector) = client.query(&signal.query, SystemTime::now()).await else { return false };
            let mut apps: Vec<(String, f64)> =
                vector.samples.iter().filter_map(|s| Some((s.labels.get("application")?.clone(), s.value))).collect();
            apps.sort_by(|a, b| a.0.cmp(&b.0));
            apps.len() == 2 && apps[0].0 == "boot2" && apps[1].0 == "boot3" && apps.iter().all(|(_, v)| v.is_finite())
        })
        .await;
        let last = client.query(&signal.query, SystemTime::now()).await;
        assert!(answered, "signal {name}: expected one finite value for boot2 and boot3, got {last:?}");
    }
}
