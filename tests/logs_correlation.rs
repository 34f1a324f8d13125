//! Issue 5: `/logs` on what the simulated fleet really writes. The fleet logs (with rotation)
//! for a while, an error burst is injected into one service, and `/logs` for that service at the
//! fault's start ranks the burst's template first, through the real router.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anomaly_exporter::export::{SelfMetrics, SnapshotCell};
use anomaly_exporter::logs::{LogIndex, LogsConfig};
use anomaly_exporter::simulate::{FaultKind, FaultRequest, FleetOptions, LogFormat, start};
use anomaly_exporter::web::logs::LogsState;
use anomaly_exporter::web::router::{AppState, router};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use common::assert_promtool_accepts;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

fn ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn app(log_dir: &std::path::Path) -> (axum::Router, Arc<Registry>) {
    let logs = LogsConfig {
        service_files: Some(format!("{}/{{service}}/app.log*", log_dir.display())),
        ..LogsConfig::default()
    };
    let mut registry = Registry::default();
    let metrics = SelfMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let state = AppState {
        snapshot: Arc::new(SnapshotCell::default()),
        registry: Arc::clone(&registry),
        ready: Arc::new(AtomicBool::new(true)),
        telemetry_path: "/metrics".into(),
        logs: Some(Arc::new(LogsState::new(Arc::new(LogIndex::new(&logs).unwrap()), metrics.logs))),
    };
    (router(state), registry)
}

async fn get(app: &axum::Router, uri: &str, accept: &str) -> (StatusCode, String, axum::http::HeaderMap) {
    let request = Request::get(uri).header(header::ACCEPT, accept).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = to_bytes(response.into_body(), 64 << 20).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_burst_template_ranks_first_at_the_fault_time() {
    let dir = tempfile::tempdir().unwrap();
    let options = FleetOptions {
        log_format: LogFormat::Ecs,
        // Small files, so the window spans rotated files too.
        log_max_file_bytes: 32 * 1024,
        log_max_files: 100,
        ..FleetOptions::ephemeral(3, dir.path())
    };
    let fleet = start(options).await.unwrap();
    let service = fleet.services()[1].name.clone();
    // A baseline of ordinary traffic first.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let fault = fleet
        .inject_fault(FaultRequest {
            service: service.clone(),
            kind: FaultKind::ErrorBurst,
            duration_seconds: 15.0,
            magnitude: None,
        })
        .unwrap();
    tokio::time::sleep(Duration::from_secs(17)).await;
    let (app, registry) = app(dir.path());
    let fault_ms = ms(fault.started_at);
    let uri = format!("/logs?service={service}&time={fault_ms}&before=10s&after=20s&format=json");
    let (status, body, _) = get(&app, &uri, "*/*").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let top = &answer["templates"][0];
    assert_eq!(top["level"], "ERROR", "{top:#}");
    assert!(matches!(top["reason"].as_str(), Some("new_error" | "surging_error")), "{top:#}");
    assert!(top["count"].as_u64().unwrap() >= 10, "{top:#}");
    // It is the burst's: every line of it in the window is from the fault's time.
    let burst_lines: Vec<_> =
        answer["lines"].as_array().unwrap().iter().filter(|line| line["template_rank"] == 0).collect();
    assert!(!burst_lines.is_empty());
    for line in &burst_lines {
        assert!(line["timestamp_ms"].as_i64().unwrap() >= fault_ms - 1000, "{line:#}");
        assert!(line["stack_trace"].as_str().unwrap().contains("\tat "), "{line:#}");
    }
    // Chatter was there before and is not surging.
    let templates = answer["templates"].as_array().unwrap();
    assert!(templates.iter().any(|t| t["reason"] == "steady" && t["baseline_count"].as_u64().unwrap() > 0));
    assert!(answer["problems"].as_array().unwrap().is_empty(), "{:#}", answer["problems"]);
    let summary: serde_json::Value = answer
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "lines" && *k != "templates")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(answer["files"].as_array().unwrap().len() > 1, "the window spans rotated files: {summary:#}");

    // The HTML page: escaped, with the security headers and the same first template.
    let uri = format!("/logs?service={service}&time={fault_ms}&before=10s&after=20s");
    let (status, page, headers) = get(&app, &uri, "text/html,application/xhtml+xml").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(page.contains("new error") || page.contains("surging error"));
    assert!(!page.contains("<script"));

    // Bad input is the project's JSON error shape.
    for (uri, status, needle) in [
        ("/logs?service=no-such-service", StatusCode::NOT_FOUND, "no-such-service"),
        (&*format!("/logs?service={service}&time=yesterday"), StatusCode::BAD_REQUEST, "time:"),
        (&*format!("/logs?service={service}&from=2000&to=1000"), StatusCode::BAD_REQUEST, "from:"),
        (&*format!("/logs?service={service}&from=0&to=90000000000"), StatusCode::BAD_REQUEST, "logs.max_window"),
        ("/logs?service=../../etc", StatusCode::NOT_FOUND, "../../etc"),
        (&*format!("/logs?service={service}&befor=1h"), StatusCode::BAD_REQUEST, "unknown field `befor`"),
    ] {
        let (got, body, _) = get(&app, uri, "text/html").await;
        assert_eq!(got, status, "{uri}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(needle), "{uri}: {body}");
    }

    // What was read shows in the self-metrics, which promtool accepts.
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    assert_promtool_accepts(&text);
    assert!(text.contains("anomaly_exporter_logs_requests_total{code=\"200\"} 2"), "{text}");
    assert!(text.contains("anomaly_exporter_logs_requests_total{code=\"404\"} 2"));
    assert!(!text.contains("anomaly_exporter_logs_lines_read_total 0\n"));
    fleet.shutdown().await.unwrap();
}
