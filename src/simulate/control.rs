//! The control API of the fleet: inject and list faults, and let Prometheus discover the services.
//!
//! - `POST /faults` with `{"service", "kind", "duration_seconds", "magnitude"?}` → 202 and the fault;
//! - `GET /faults` → `{"faults": [...]}`; `DELETE /faults/{id}` → 200 and the stopped fault;
//! - `GET /targets` → Prometheus HTTP service discovery (`http_sd_configs`) groups, one a service;
//! - `GET /services` → name, metrics URL and log file of every service;
//! - `POST /slack/{channel}` → records a Slack incoming-webhook post and answers `ok` as Slack does;
//!   `GET /slack` → `{"posts": [...]}`, the last [`SLACK_POSTS_KEPT`]. Slack can't be reached from a
//!   demo or a test machine; this stands in for it, so the demo shows what would reach the channel.
//!
//! Errors are `{"error": {"code", "message"}}` with a 4xx status. Handlers stay thin: the fault
//! book validates.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Serialize;

use super::fault::{Fault, FaultBook, FaultRequest};
use super::{ServiceEndpoint, SimulateError};

/// Slack posts the stand-in keeps, newest last; older ones are dropped.
pub(crate) const SLACK_POSTS_KEPT: usize = 500;

/// What the control API reads and changes.
#[derive(Debug)]
pub(crate) struct FleetState {
    pub(crate) faults: FaultBook,
    pub(crate) services: Vec<ServiceEndpoint>,
    pub(crate) slack_posts: Mutex<VecDeque<SlackPost>>,
}

/// One post the Slack stand-in received.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SlackPost {
    /// The path's last segment, so a demo can tell Alertmanager's posts from the exporter's.
    channel: String,
    /// When it arrived (ms since the epoch).
    received_at_ms: u128,
    /// The body as JSON, or as text when it is not JSON.
    body: serde_json::Value,
}

/// The control API's routes.
pub(crate) fn control_router(state: Arc<FleetState>) -> Router {
    Router::new()
        .route("/faults", get(list_faults).post(inject_fault))
        .route("/faults/{id}", delete(stop_fault))
        .route("/targets", get(targets))
        .route("/services", get(services))
        .route("/slack", get(list_slack_posts))
        .route("/slack/{channel}", axum::routing::post(record_slack_post))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint: see GET /services, /targets, /faults")
        })
        .with_state(state)
}

#[derive(Serialize)]
struct FaultList {
    faults: Vec<Fault>,
}

async fn list_faults(State(fleet): State<Arc<FleetState>>) -> Json<FaultList> {
    Json(FaultList { faults: fleet.faults.active(SystemTime::now()) })
}

async fn inject_fault(
    State(fleet): State<Arc<FleetState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Fault>), ApiError> {
    // Parsed here rather than with the `Json` extractor, whose rejections are plain text; serde's
    // message names the field or the unknown kind.
    let request: FaultRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("fault request: {error}"))
    })?;
    let fault = fleet.faults.inject(request, SystemTime::now())?;
    tracing::info!(id = fault.id, service = %fault.service, kind = fault.kind.name(), magnitude = fault.magnitude, "fault injected");
    Ok((StatusCode::ACCEPTED, Json(fault)))
}

async fn stop_fault(State(fleet): State<Arc<FleetState>>, Path(id): Path<String>) -> Result<Json<Fault>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("fault id {id:?} is not a number"))
    })?;
    let fault = fleet.faults.stop(id, SystemTime::now())?;
    tracing::info!(id, service = %fault.service, kind = fault.kind.name(), "fault stopped");
    Ok(Json(fault))
}

/// One group of Prometheus's HTTP service discovery format.
#[derive(Serialize)]
struct TargetGroup {
    targets: [String; 1],
    labels: TargetLabels,
}

#[derive(Serialize)]
struct TargetLabels {
    application: String,
    #[serde(rename = "__metrics_path__")]
    metrics_path: &'static str,
}

async fn targets(State(fleet): State<Arc<FleetState>>) -> Json<Vec<TargetGroup>> {
    Json(
        fleet
            .services
            .iter()
            .map(|service| TargetGroup {
                targets: [service.address.to_string()],
                // The metrics path rides along so a scrape config needs no `metrics_path`.
                labels: TargetLabels { application: service.name.clone(), metrics_path: "/actuator/prometheus" },
            })
            .collect(),
    )
}

async fn record_slack_post(
    State(fleet): State<Arc<FleetState>>,
    Path(channel): Path<String>,
    body: Bytes,
) -> &'static str {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let received_at_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
    let text = body.get("text").and_then(serde_json::Value::as_str).unwrap_or_default();
    tracing::info!(%channel, text = %text.lines().next().unwrap_or_default(), "slack post received");
    let mut posts = fleet.slack_posts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if posts.len() == SLACK_POSTS_KEPT {
        posts.pop_front();
    }
    posts.push_back(SlackPost { channel, received_at_ms, body });
    // Slack's incoming webhooks answer a plain `ok`.
    "ok"
}

#[derive(Serialize)]
struct SlackPostList {
    posts: Vec<SlackPost>,
}

async fn list_slack_posts(State(fleet): State<Arc<FleetState>>) -> Json<SlackPostList> {
    let posts = fleet.slack_posts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(SlackPostList { posts: posts.iter().cloned().collect() })
}

async fn services(State(fleet): State<Arc<FleetState>>) -> Json<Vec<ServiceEndpoint>> {
    Json(fleet.services.clone())
}

/// An error answer: `{"error": {"code", "message"}}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl From<SimulateError> for ApiError {
    fn from(error: SimulateError) -> Self {
        let (status, code) = match &error {
            SimulateError::UnknownService { .. } => (StatusCode::NOT_FOUND, "unknown_service"),
            SimulateError::UnknownFault(_) => (StatusCode::NOT_FOUND, "unknown_fault"),
            SimulateError::InvalidFault(_) | SimulateError::InvalidOption { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            SimulateError::Bind { .. } | SimulateError::LogFile { .. } | SimulateError::Runtime(_) => {
                tracing::warn!(error = %error, "control request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Self::new(status, code, error.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } }))
            .into_response()
    }
}
