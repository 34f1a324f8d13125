//! The routes and their thin handlers: `/metrics` (or `--web.telemetry-path`), `/-/healthy`,
//! `/-/ready`, `/services` and a landing page. Handlers read shared state and format it; they
//! hold no logic of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::error::ApiError;
use crate::export::{SnapshotCell, service_scores};

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The latest scores.
    pub snapshot: Arc<SnapshotCell>,
    /// Self-metrics and the scores collector; encoding only reads it, so no lock.
    pub registry: Arc<Registry>,
    /// Set once the first cycle has run.
    pub ready: Arc<AtomicBool>,
    /// Where metrics are served, for the landing page.
    pub telemetry_path: String,
    /// `/logs`; `None` when the configuration has no `logs:` section.
    pub logs: Option<Arc<super::logs::LogsState>>,
}

/// Builds the router. `telemetry_path` must start with `/`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(&state.telemetry_path.clone(), get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/services", get(services))
        .route("/logs", get(super::logs::logs))
        .route("/", get(landing))
        .fallback(|| async { ApiError::not_found("no such route; see / for the endpoints") })
        .with_state(state)
}

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Text format 0.0.4 by default (what `promtool check metrics` reads); OpenMetrics when the
/// scraper asks for it, as Prometheus does.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let mut body = String::with_capacity(64 * 1024);
    let (encoded, content_type) = if wants_openmetrics {
        (prometheus_client::encoding::text::encode(&mut body, &state.registry), OPENMETRICS_CONTENT_TYPE)
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, &state.registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response(),
        Err(error) => ApiError::internal(format!("encoding metrics: {error}")).into_response(),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: first cycle not run yet\n").into_response()
    }
}

#[derive(Debug, Serialize)]
struct ServiceView {
    service: String,
    /// Largest score over the service's signals, and that signal.
    score: Option<f64>,
    driving_signal: Option<String>,
    severity: u8,
    signals: Vec<SignalView>,
}

#[derive(Debug, Serialize)]
struct SignalView {
    signal: String,
    value: f64,
    anomaly_score: Option<f64>,
    severity: &'static str,
    model: ModelView,
}

#[derive(Debug, Serialize)]
struct ModelView {
    warmup: bool,
    trained_at_seconds: Option<f64>,
    rows: usize,
}

/// `GET /services`: every service with its signals and model state, as JSON.
async fn services(State(state): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = state.snapshot.load();
    let scores = service_scores(&snapshot.series);
    let mut views: Vec<ServiceView> = Vec::new();
    for s in &snapshot.series {
        if views.last().is_none_or(|v| v.service != s.service) {
            let top = scores.iter().find(|(service, _, _)| *service == s.service);
            views.push(ServiceView {
                service: s.service.clone(),
                score: top.map(|t| t.2),
                driving_signal: top.map(|t| t.1.to_owned()),
                severity: 0,
                signals: Vec::new(),
            });
        }
        if let Some(view) = views.last_mut() {
            view.severity = view.severity.max(s.severity as u8);
            view.signals.push(SignalView {
                signal: s.signal.clone(),
                value: s.value,
                anomaly_score: s.anomaly_score,
                severity: s.severity.as_str(),
                model: ModelView {
                    warmup: s.model_trained_at_ms.is_none(),
                    trained_at_seconds: s.model_trained_at_ms.map(|ms| ms as f64 / 1000.0),
                    rows: s.model_rows,
                },
            });
        }
    }
    Json(serde_json::json!({ "evaluated_at_seconds": snapshot.evaluated_at_seconds, "services": views }))
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let path = &state.telemetry_path;
    Html(format!(
        "<!doctype html><html><head><title>anomaly-exporter</title></head><body>\
         <h1>anomaly-exporter</h1><ul>\
         <li><a href=\"{path}\">{path}</a>: anomaly scores and self-metrics</li>\
         <li><a href=\"/services\">/services</a>: services, signals and model state (JSON)</li>\
         <li>/logs?service=…&amp;time=…: a service's log lines around a moment, the most telling first</li>\
         <li><a href=\"/-/healthy\">/-/healthy</a>, <a href=\"/-/ready\">/-/ready</a></li>\
         </ul></body></html>"
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::classify::{Severity, Thresholds};
    use crate::export::{ScoresCollector, SeriesState, Snapshot};

    fn state() -> AppState {
        let snapshot = Arc::new(SnapshotCell::default());
        snapshot.store(Snapshot {
            series: vec![
                SeriesState {
                    service: "checkout".into(),
                    signal: "cpu".into(),
                    value: 0.4,
                    anomaly_score: Some(0.8),
                    severity: Severity::Normal,
                    thresholds: Thresholds { warning: Some(0.7), ..Thresholds::default() },
                    model_trained_at_ms: Some(1_700_000_000_000),
                    model_rows: 500,
                },
                SeriesState {
                    service: "checkout".into(),
                    signal: "latency".into(),
                    value: 2.5,
                    anomaly_score: Some(1.4),
                    severity: Severity::Critical,
                    thresholds: Thresholds::default(),
                    model_trained_at_ms: Some(1_700_000_000_000),
                    model_rows: 500,
                },
            ],
            evaluated_at_seconds: Some(1_700_000_015.0),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ScoresCollector::new(Arc::clone(&snapshot), 15.0)));
        crate::export::SelfMetrics::register(&mut registry);
        AppState {
            snapshot,
            registry: Arc::new(registry),
            ready: Arc::new(AtomicBool::new(true)),
            telemetry_path: "/metrics".into(),
            logs: None,
        }
    }

    async fn get_text(app: Router, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
        let mut request = Request::get(uri);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = String::from_utf8(to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn metrics_text_format_has_scores_and_no_timestamps() {
        let (status, content_type, body) = get_text(router(state()), "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        assert!(body.contains("anomaly_score{service=\"checkout\",signal=\"latency\"} 1.4\n"), "{body}");
        assert!(body.contains("anomaly_severity{service=\"checkout\",signal=\"latency\"} 3.0\n"), "{body}");
        assert!(body.contains("anomaly_threshold{service=\"checkout\",signal=\"cpu\",level=\"warning\"} 0.7\n"));
        assert!(body.contains("anomaly_service_score{service=\"checkout\",signal=\"latency\"} 1.4\n"));
        assert!(body.contains("anomaly_model_warmup{service=\"checkout\",signal=\"cpu\"} 0.0\n"));
        assert!(body.contains("anomaly_exporter_build_info{"));
        assert!(!body.contains("# EOF"));
    }

    #[tokio::test]
    async fn metrics_negotiates_openmetrics() {
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let (_, content_type, body) = get_text(router(state()), "/metrics", Some(accept)).await;
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        assert!(body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn services_lists_signals_and_the_driving_one() {
        let (status, _, body) = get_text(router(state()), "/services", None).await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let service = &json["services"][0];
        assert_eq!(service["service"], "checkout");
        assert_eq!(service["driving_signal"], "latency");
        assert_eq!(service["severity"], 3);
        assert_eq!(service["signals"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn unknown_route_is_json_404_and_readiness_waits_for_first_cycle() {
        let (status, _, body) = get_text(router(state()), "/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
        let not_ready = AppState { ready: Arc::new(AtomicBool::new(false)), ..state() };
        let (status, _, _) = get_text(router(not_ready), "/-/ready", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
