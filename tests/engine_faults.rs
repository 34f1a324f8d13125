//! The engine against a source that fails: down, 5xx, garbage, NaN. It must keep serving the
//! last good state of nothing (no stale series), report the source down, count the errors by
//! reason, and recover by itself when the source answers again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use anomaly_exporter::config::Config;
use anomaly_exporter::engine::Engine;
use anomaly_exporter::export::{ScoresCollector, SelfMetrics, SnapshotCell};
use anomaly_exporter::source::PrometheusClient;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use prometheus_client::registry::Registry;

/// What the fake API answers, switched by the test.
const DOWN_503: usize = 0;
const GARBAGE: usize = 1;
const HEALTHY: usize = 2;
const NAN_VALUES: usize = 3;
/// An aggregation that dropped the service label (`sum(x)` for `sum by (application) (x)`).
const UNLABELLED: usize = 4;

fn vector(value: &str) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"application":"checkout"}},"value":[{},"{value}"]}}]}}}}"#,
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
    )
}

async fn start_source(mode: Arc<AtomicUsize>) -> String {
    let answer = move || {
        let mode = Arc::clone(&mode);
        async move {
            match mode.load(Ordering::SeqCst) {
                DOWN_503 => (StatusCode::SERVICE_UNAVAILABLE, "unavailable".to_owned()).into_response(),
                GARBAGE => (StatusCode::OK, "<html>proxy error</html>".to_owned()).into_response(),
                NAN_VALUES => (StatusCode::OK, vector("NaN")).into_response(),
                UNLABELLED => {
                    (StatusCode::OK, vector("0.25").replace(r#""application":"checkout""#, "")).into_response()
                }
                _ => (StatusCode::OK, vector("0.25")).into_response(),
            }
        }
    };
    let app = Router::new().route("/api/v1/query", post(answer.clone())).route(
        "/api/v1/query_range",
        post(|| async { (StatusCode::OK, r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#) }),
    );
    format!("http://{}", common::serve_on_loopback(app).await)
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry).unwrap();
    text
}

#[tokio::test]
async fn source_failures_are_reported_and_recovered_from() {
    let mode = Arc::new(AtomicUsize::new(HEALTHY));
    let url = start_source(Arc::clone(&mode)).await;
    let config = Config::from_yaml(
        &format!("source:\n  url: {url}\n  timeout: 2s\nsignals:\n  cpu:\n    query: process_cpu_usage\n"),
        std::path::Path::new("test.yml"),
    )
    .unwrap();
    let snapshot = Arc::new(SnapshotCell::default());
    let mut registry = Registry::default();
    let metrics = SelfMetrics::register(&mut registry);
    registry.register_collector(Box::new(ScoresCollector::new(Arc::clone(&snapshot), 15.0)));
    let client = PrometheusClient::new(&config.source).unwrap();
    let mut engine = Engine::new(Arc::new(config), client, metrics, Arc::clone(&snapshot));

    let report = engine.run_cycle(SystemTime::now()).await;
    assert!(report.failed_signals.is_empty());
    let text = scrape(&registry);
    assert!(text.contains("anomaly_value{service=\"checkout\",signal=\"cpu\"} 0.25"), "{text}");
    assert!(text.contains("anomaly_exporter_source_up 1"));

    for (failure, reason) in [(DOWN_503, "http_5xx"), (GARBAGE, "decode")] {
        mode.store(failure, Ordering::SeqCst);
        let report = engine.run_cycle(SystemTime::now()).await;
        assert_eq!(report.failed_signals, ["cpu"]);
        let text = scrape(&registry);
        assert!(text.contains("anomaly_exporter_source_up 0"), "{text}");
        assert!(
            text.contains(&format!("anomaly_exporter_query_errors_total{{signal=\"cpu\",reason=\"{reason}\"}} 1")),
            "{reason}: {text}"
        );
        // Not frozen at the last value: a series missing from the latest answer is not exported.
        assert!(!text.contains("anomaly_value{"), "{text}");
    }

    mode.store(NAN_VALUES, Ordering::SeqCst);
    engine.run_cycle(SystemTime::now()).await;
    let text = scrape(&registry);
    assert!(text.contains("anomaly_exporter_points_skipped_total{signal=\"cpu\"} 1"), "{text}");
    assert!(text.contains("anomaly_exporter_source_up 1"));
    assert!(!text.contains("anomaly_value{"), "a NaN point is not exported as the last number: {text}");

    mode.store(UNLABELLED, Ordering::SeqCst);
    engine.run_cycle(SystemTime::now()).await;
    let text = scrape(&registry);
    assert!(text.contains("anomaly_exporter_samples_unlabelled_total{signal=\"cpu\"} 1"), "{text}");
    assert!(!text.contains("anomaly_value{"), "{text}");

    mode.store(HEALTHY, Ordering::SeqCst);
    let report = engine.run_cycle(SystemTime::now()).await;
    assert!(report.failed_signals.is_empty());
    let text = scrape(&registry);
    assert!(text.contains("anomaly_exporter_source_up 1"));
    assert!(text.contains("anomaly_value{service=\"checkout\",signal=\"cpu\"} 0.25"), "{text}");
}

#[tokio::test]
async fn unreachable_source_counts_connect_errors() {
    // A port nothing listens on: bind one, note it, and close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let config = Config::from_yaml(
        &format!("source:\n  url: http://{address}\n  timeout: 1s\nsignals:\n  cpu:\n    query: up\n"),
        std::path::Path::new("test.yml"),
    )
    .unwrap();
    let mut registry = Registry::default();
    let metrics = SelfMetrics::register(&mut registry);
    let client = PrometheusClient::new(&config.source).unwrap();
    let mut engine = Engine::new(Arc::new(config), client, metrics, Arc::new(SnapshotCell::default()));
    let report = engine.run_cycle(SystemTime::now()).await;
    assert_eq!(report.failed_signals, ["cpu"]);
    let text = scrape(&registry);
    assert!(text.contains("anomaly_exporter_query_errors_total{signal=\"cpu\",reason=\"connect\"} 1"), "{text}");
}

#[tokio::test]
async fn services_appear_and_vanish_after_the_grace_period() {
    // The fake source answers with two services, then only one.
    let both = Arc::new(AtomicUsize::new(1));
    let answer = {
        let both = Arc::clone(&both);
        move || {
            let both = Arc::clone(&both);
            async move {
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
                let mut result = vec![format!(r#"{{"metric":{{"application":"a"}},"value":[{now},"1"]}}"#)];
                if both.load(Ordering::SeqCst) == 1 {
                    result.push(format!(r#"{{"metric":{{"application":"b"}},"value":[{now},"2"]}}"#));
                }
                format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, result.join(","))
            }
        }
    };
    let app = Router::new().route("/api/v1/query", post(answer)).route(
        "/api/v1/query_range",
        post(|| async { r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"# }),
    );
    let address = common::serve_on_loopback(app).await;

    let config = Config::from_yaml(
        &format!(
            "source:\n  url: http://{address}\ninterval: 1s\nservice_grace: 1s\nsignals:\n  cpu:\n    query: up\n"
        ),
        std::path::Path::new("test.yml"),
    )
    .unwrap();
    let snapshot = Arc::new(SnapshotCell::default());
    let mut registry = Registry::default();
    let metrics = SelfMetrics::register(&mut registry);
    let client = PrometheusClient::new(&config.source).unwrap();
    let mut engine = Engine::new(Arc::new(config), client, metrics, Arc::clone(&snapshot));

    let report = engine.run_cycle(SystemTime::now()).await;
    assert_eq!((report.new_series, report.exported_series), (2, 2));
    assert!(scrape(&registry).contains("anomaly_exporter_series_tracked 2"));

    both.store(0, Ordering::SeqCst);
    let report = engine.run_cycle(SystemTime::now()).await;
    // Gone from the answer: no longer exported at once, but kept (its history) within the grace.
    assert_eq!((report.exported_series, report.dropped_series), (1, 0));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = engine.run_cycle(SystemTime::now()).await;
    assert_eq!(report.dropped_series, 1);
    assert!(scrape(&registry).contains("anomaly_exporter_series_tracked 1"));
    assert_eq!(snapshot.load().series.iter().map(|s| s.service.as_str()).collect::<Vec<_>>(), ["a"]);
}
