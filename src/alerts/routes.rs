//! The alerting routes and their thin handlers: `POST /alerts` (Alertmanager's webhook, Webhook
//! role), `GET /incidents` (JSON or HTML, Reader role), `POST /incidents/{id}/ack` and
//! `/resolve` (Admin role). Each route carries its own role, so they can be merged into the main
//! router whatever that one requires.
//!
//! `POST /alerts` answers 2xx once the notification is recorded (duplicates included), 400 with
//! the reason for a payload Alertmanager should not retry, 413 for a body over the limit, and
//! 500 only when the record could not be written, which Alertmanager retries.
//!
//! [`compact_incidents`] keeps the journal to one file and drops old resolved incidents.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tracing::{info, warn};

use super::incidents::{ActionError, Incident, IncidentStatus, IncidentStore, ListQuery, Recorded, SortKey};
use super::payload::parse_webhook;
use super::slack::{OutcomeLabels, SlackNotifier};
use crate::calendar::format_rfc3339_ms;
use crate::web::auth::{Authenticator, Principal, Role};
use crate::web::error::ApiError;
use crate::web::escape::{encode_query, escape_html};

/// What the alerting handlers read.
#[derive(Debug, Clone)]
pub struct AlertsState {
    /// The incidents.
    pub store: Arc<IncidentStore>,
    /// Largest webhook body accepted.
    pub max_body_bytes: usize,
    /// Where new firing and resolved events are posted, if anywhere.
    pub slack: Option<super::slack::SlackNotifier>,
    /// The webhook's self-metrics.
    pub metrics: WebhookMetrics,
}

/// Self-metrics of the webhook and the incidents. Clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct WebhookMetrics {
    /// Webhook requests by outcome: `recorded`, `rejected` (a 4xx Alertmanager must not retry)
    /// or `failed` (a 5xx it retries).
    pub requests: Family<OutcomeLabels, Counter>,
    /// Alerts in accepted requests: `recorded` (a new state) or `duplicate` (a retry or repeat).
    pub alerts: Family<OutcomeLabels, Counter>,
    /// Incidents firing or acknowledged, not resolved yet.
    pub open_incidents: Gauge,
    /// Resolved incidents dropped by the hourly compaction for being older than the retention.
    pub pruned_incidents: Counter,
}

impl WebhookMetrics {
    /// Registers the metrics in `registry` (already prefixed `anomaly_exporter`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "alert_webhook_requests",
            "Alertmanager webhook requests by outcome: recorded, rejected (4xx), failed (5xx)",
            self.requests.clone(),
        );
        registry.register(
            "alert_webhook_alerts",
            "Alerts in accepted webhook requests: recorded (a new state) or duplicate",
            self.alerts.clone(),
        );
        registry.register("incidents_open", "Incidents firing or acknowledged", self.open_incidents.clone());
        registry.register(
            "incidents_pruned",
            "Resolved incidents dropped from the journal for being older than alerts.incident_retention",
            self.pruned_incidents.clone(),
        );
    }

    fn count(family: &Family<OutcomeLabels, Counter>, outcome: &str, by: usize) {
        family.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc_by(by as u64);
    }

    /// Sets the open-incidents gauge from the store.
    pub fn observe_store(&self, store: &IncidentStore) {
        self.open_incidents.set(i64::try_from(store.open_count()).unwrap_or(i64::MAX));
    }
}

/// Compacts the incidents journal now and then every `every` until `stop` turns true: one file
/// instead of one per notification, without the incidents resolved more than `retention` ago,
/// whose lines `slack` then drops from its record of deliveries.
pub async fn compact_incidents(
    store: Arc<IncidentStore>,
    slack: Option<SlackNotifier>,
    retention: Duration,
    every: Duration,
    metrics: WebhookMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let compacting = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || compacting.compact(retention_ms, now_ms())).await {
            Ok(Ok(done)) => {
                metrics.pruned_incidents.inc_by(done.pruned.len() as u64);
                if done.files_replaced > 0 {
                    info!(pruned = done.pruned.len(), files = done.files_replaced, "incidents journal compacted");
                }
                if let Some(slack) = &slack {
                    slack.forget_incidents(&done.pruned).await;
                }
            }
            Ok(Err(error)) => warn!(%error, "incidents journal compaction failed; retrying at the next pass"),
            Err(error) => warn!(%error, "incidents journal compaction stopped"),
        }
    }
}

/// The alerting routes, each behind the role it needs.
pub fn routes(state: AlertsState, authenticator: &Authenticator) -> Router {
    Router::new()
        .route("/alerts", post(receive_alerts).layer(authenticator.require(Role::Webhook)))
        .route("/incidents", get(list_incidents).layer(authenticator.require(Role::Reader)))
        .route("/incidents/{id}/ack", post(acknowledge).layer(authenticator.require(Role::Admin)))
        .route("/incidents/{id}/resolve", post(resolve).layer(authenticator.require(Role::Admin)))
        .with_state(state)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn too_large(limit: usize) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: format!("the body exceeds alerts.max_body_bytes ({limit} bytes)"),
    }
}

async fn receive_alerts(State(state): State<AlertsState>, request: Request) -> Result<Json<Recorded>, ApiError> {
    let answer = record_alerts(&state, request).await;
    let outcome = match &answer {
        Ok(_) => "recorded",
        Err(error) if error.status.is_client_error() => "rejected",
        Err(_) => "failed",
    };
    WebhookMetrics::count(&state.metrics.requests, outcome, 1);
    answer
}

async fn record_alerts(state: &AlertsState, request: Request) -> Result<Json<Recorded>, ApiError> {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > state.max_body_bytes) {
        return Err(too_large(state.max_body_bytes));
    }
    let body = axum::body::to_bytes(request.into_body(), state.max_body_bytes)
        .await
        .map_err(|_| too_large(state.max_body_bytes))?;
    let alerts = parse_webhook(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = Arc::clone(&state.store);
    let received_at = now_ms();
    let total = alerts.len();
    let fresh = tokio::task::spawn_blocking(move || store.record(&alerts, received_at))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if let Some(slack) = &state.slack {
        slack.notify(&fresh);
    }
    let recorded = Recorded { recorded: fresh.len(), duplicates: total - fresh.len() };
    WebhookMetrics::count(&state.metrics.alerts, "recorded", recorded.recorded);
    WebhookMetrics::count(&state.metrics.alerts, "duplicate", recorded.duplicates);
    state.metrics.observe_store(&state.store);
    tracing::debug!(recorded = recorded.recorded, duplicates = recorded.duplicates, "alert notification");
    Ok(Json(recorded))
}

const LIST_PARAMETERS: [&str; 9] = ["service", "severity", "status", "q", "sort", "order", "format", "limit", "offset"];

/// Incidents per page unless `limit` says otherwise, and the most a page may hold.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Which slice of the matching incidents a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    offset: usize,
    limit: usize,
}

fn page_of(params: &BTreeMap<String, String>) -> Result<Page, ApiError> {
    let number = |key: &str, default: usize| match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("{key}: {text:?} is not a non-negative integer"))),
    };
    let limit = number("limit", DEFAULT_PAGE)?;
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: {limit} is not between 1 and {MAX_PAGE}")));
    }
    Ok(Page { offset: number("offset", 0)?, limit })
}

fn list_query(params: &BTreeMap<String, String>) -> Result<ListQuery, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !LIST_PARAMETERS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown parameter {unknown:?}; known: {}",
            LIST_PARAMETERS.join(", ")
        )));
    }
    let non_empty = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let status = match non_empty("status").as_deref() {
        None => None,
        Some("firing") => Some(IncidentStatus::Firing),
        Some("acknowledged") => Some(IncidentStatus::Acknowledged),
        Some("resolved") => Some(IncidentStatus::Resolved),
        Some(other) => {
            return Err(ApiError::bad_request(format!("status: {other:?} is not firing, acknowledged or resolved")));
        }
    };
    let sort = match non_empty("sort") {
        None => SortKey::default(),
        Some(text) => SortKey::parse(&text).ok_or_else(|| {
            ApiError::bad_request(format!("sort: {text:?} is not open, starts_at, severity or service"))
        })?,
    };
    let descending = match non_empty("order").as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(ApiError::bad_request(format!("order: {other:?} is not asc or desc"))),
    };
    Ok(ListQuery {
        service: non_empty("service"),
        severity: non_empty("severity"),
        status,
        text: non_empty("q"),
        sort,
        descending,
    })
}

fn wants_html(params: &BTreeMap<String, String>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match params.get("format").map(String::as_str) {
        Some("json") => Ok(false),
        Some("html") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("format: {other:?} is not json or html"))),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))),
    }
}

/// The query string as a map, refusing a parameter given twice (`limit=1&limit=2`): a map would
/// keep the last silently, and the two spellings of a link would show different pages.
fn unique_parameters(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    for (key, value) in pairs {
        if params.contains_key(&key) {
            return Err(ApiError::bad_request(format!("{key}: given more than once")));
        }
        params.insert(key, value);
    }
    Ok(params)
}

async fn list_incidents(
    State(state): State<AlertsState>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = unique_parameters(pairs)?;
    let query = list_query(&params)?;
    let page = page_of(&params)?;
    let html = wants_html(&params, &headers)?;
    let matching = state.store.list(&query);
    let total = matching.len();
    let incidents: Vec<Incident> = matching.into_iter().skip(page.offset).take(page.limit).collect();
    if html {
        let mut response = Html(render_html(&incidents, total, page, &params)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
        );
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        Ok(response)
    } else {
        Ok(Json(serde_json::json!({
            "incidents": incidents,
            "total": total,
            "offset": page.offset,
            "limit": page.limit,
        }))
        .into_response())
    }
}

/// The body of an acknowledgement or hand resolution; empty or absent is allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    note: Option<String>,
}

const MAX_NOTE_CHARS: usize = 2000;

async fn act(
    state: AlertsState,
    id: String,
    resolve: bool,
    principal: Option<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Incident>, ApiError> {
    let action: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body: expected {{\"note\": \"...\"}}: {e}")))?
    };
    if action.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::bad_request(format!("note: longer than {MAX_NOTE_CHARS} characters")));
    }
    let actor = match principal {
        Some(Principal::User { name, .. }) => Some(name),
        _ => None,
    };
    let store = Arc::clone(&state.store);
    let result = tokio::task::spawn_blocking(move || store.act(&id, resolve, action.note, actor, now_ms()))
        .await
        .map_err(ApiError::internal)?;
    state.metrics.observe_store(&state.store);
    match result {
        Ok(incident) => Ok(Json(incident)),
        Err(ActionError::NotFound(id)) => Err(ApiError::not_found(format!("no incident {id}; see GET /incidents"))),
        Err(conflict @ ActionError::Conflict { .. }) => {
            Err(ApiError { status: StatusCode::CONFLICT, code: "conflict", message: conflict.to_string() })
        }
        Err(ActionError::Journal(error)) => Err(ApiError::internal(error)),
    }
}

async fn acknowledge(
    State(state): State<AlertsState>,
    Path(id): Path<String>,
    principal: Option<Extension<Principal>>,
    body: axum::body::Bytes,
) -> Result<Json<Incident>, ApiError> {
    act(state, id, false, principal.map(|Extension(p)| p), body).await
}

async fn resolve(
    State(state): State<AlertsState>,
    Path(id): Path<String>,
    principal: Option<Extension<Principal>>,
    body: axum::body::Bytes,
) -> Result<Json<Incident>, ApiError> {
    act(state, id, true, principal.map(|Extension(p)| p), body).await
}

/// A link only when the annotation is an http(s) URL: annotations are not ours to trust.
fn link(url: Option<&String>, text: &str) -> String {
    match url {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            format!("<a href=\"{}\" rel=\"noopener noreferrer\">{text}</a> ", escape_html(url))
        }
        _ => String::new(),
    }
}

/// "previous" and "next" links that keep the request's filters, for the pages that exist.
fn page_links(total: usize, page: Page, params: &BTreeMap<String, String>) -> String {
    let link_to = |offset: usize, text: &str| {
        let mut query: BTreeMap<&str, String> =
            params.iter().map(|(key, value)| (key.as_str(), value.clone())).collect();
        query.insert("offset", offset.to_string());
        query.insert("limit", page.limit.to_string());
        query.insert("format", "html".to_owned());
        let encoded = encode_query(query.iter().map(|(key, value)| (*key, value.as_str())));
        format!(" <a href=\"?{}\">{text}</a>", escape_html(&encoded))
    };
    let mut links = String::new();
    if page.offset > 0 {
        links.push_str(&link_to(page.offset.saturating_sub(page.limit), "previous"));
    }
    if page.offset.saturating_add(page.limit) < total {
        links.push_str(&link_to(page.offset + page.limit, "next"));
    }
    links
}

fn render_html(incidents: &[Incident], total: usize, page: Page, params: &BTreeMap<String, String>) -> String {
    let value = |key: &str| escape_html(params.get(key).map_or("", String::as_str));
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Incidents: anomaly-exporter</title>\
         <style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;\
         padding:.3em .5em;text-align:left;vertical-align:top}.firing{color:#b00}.acknowledged{color:#b60}\
         .resolved{color:#080}</style></head><body><h1>Incidents</h1>",
    );
    let _ = write!(
        html,
        "<form method=\"get\">service <input name=\"service\" value=\"{}\"> severity <input name=\"severity\" value=\"{}\"> \
         status <input name=\"status\" value=\"{}\"> text <input name=\"q\" value=\"{}\"> sort <input name=\"sort\" value=\"{}\"> \
         <input type=\"hidden\" name=\"format\" value=\"html\"><button>filter</button></form>",
        value("service"),
        value("severity"),
        value("status"),
        value("q"),
        value("sort"),
    );
    let shown_from = if incidents.is_empty() { 0 } else { page.offset + 1 };
    let _ = write!(
        html,
        "<p>{shown_from}–{} of {total} incidents.{}</p><table><tr><th>status</th><th>severity</th><th>service</th><th>alert</th>\
         <th>started</th><th>ended</th><th>summary</th><th>links</th><th>id</th></tr>",
        page.offset + incidents.len(),
        page_links(total, page, params),
    );
    for incident in incidents {
        let status = incident.status.as_str();
        let _ = write!(
            html,
            "<tr><td class=\"{status}\">{status}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            escape_html(&incident.severity),
            escape_html(&incident.service),
            escape_html(&incident.alertname),
            format_rfc3339_ms(incident.starts_at_ms),
            incident.ends_at_ms.map(format_rfc3339_ms).unwrap_or_default(),
            escape_html(incident.annotations.get("summary").map_or("", String::as_str)),
            link(incident.annotations.get("logs_url"), "logs"),
            link(incident.annotations.get("dashboard_url"), "dashboard"),
            escape_html(&incident.id),
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request as HttpRequest};
    use tower::ServiceExt as _;

    fn app(dir: &std::path::Path) -> Router {
        app_with_metrics(dir, WebhookMetrics::default())
    }

    fn app_with_metrics(dir: &std::path::Path, metrics: WebhookMetrics) -> Router {
        let store = Arc::new(IncidentStore::open(dir).unwrap());
        routes(AlertsState { store, max_body_bytes: 64 * 1024, slack: None, metrics }, &Authenticator::disabled())
    }

    fn counted(family: &Family<OutcomeLabels, Counter>, outcome: &str) -> u64 {
        family.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).get()
    }

    async fn call(app: &Router, method: Method, uri: &str, body: Vec<u8>, accept: &str) -> (StatusCode, String) {
        let request = HttpRequest::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, accept)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn webhook_records_once_and_incidents_show_the_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = WebhookMetrics::default();
        let app = app_with_metrics(dir.path(), metrics.clone());
        let (firing, resolved) = crate::alerts::payload::firing_and_resolved_fixture();
        let (status, body) = call(&app, Method::POST, "/alerts", firing.clone(), "*/*").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"recorded":1,"duplicates":0}"#));
        let (status, body) = call(&app, Method::POST, "/alerts", firing, "*/*").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"recorded":0,"duplicates":1}"#));

        assert_eq!((counted(&metrics.alerts, "recorded"), counted(&metrics.alerts, "duplicate")), (1, 1));
        assert_eq!(metrics.open_incidents.get(), 1);

        let (_, listed) = call(&app, Method::GET, "/incidents?service=checkout", vec![], "application/json").await;
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let id = listed["incidents"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(listed["incidents"][0]["status"], "firing");

        let (status, acked) =
            call(&app, Method::POST, &format!("/incidents/{id}/ack"), br#"{"note":"on it"}"#.to_vec(), "*/*").await;
        assert_eq!(status, StatusCode::OK, "{acked}");
        assert!(acked.contains(r#""status":"acknowledged""#) && acked.contains("on it"), "{acked}");
        let (status, _) = call(&app, Method::POST, &format!("/incidents/{id}/ack"), vec![], "*/*").await;
        assert_eq!(status, StatusCode::CONFLICT);

        assert_eq!(call(&app, Method::POST, "/alerts", resolved, "*/*").await.0, StatusCode::OK);
        let (_, listed) = call(&app, Method::GET, "/incidents?status=resolved", vec![], "*/*").await;
        assert!(listed.contains(&id), "{listed}");
        let (status, _) = call(&app, Method::POST, &format!("/incidents/{id}/resolve"), vec![], "*/*").await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = call(&app, Method::POST, "/incidents/nope/resolve", vec![], "*/*").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(metrics.open_incidents.get(), 0, "resolved by Alertmanager");
        assert_eq!(counted(&metrics.requests, "recorded"), 3);
        assert_eq!(call(&app, Method::POST, "/alerts", b"{".to_vec(), "*/*").await.0, StatusCode::BAD_REQUEST);
        assert_eq!((counted(&metrics.requests, "rejected"), counted(&metrics.requests, "failed")), (1, 0));
    }

    #[tokio::test]
    async fn incidents_are_listed_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let (firing, _) = crate::alerts::payload::firing_and_resolved_fixture();
        let mut payload: serde_json::Value = serde_json::from_slice(&firing).unwrap();
        let template = payload["alerts"][0].clone();
        payload["alerts"] = (0..5)
            .map(|n| {
                let mut alert = template.clone();
                alert["fingerprint"] = format!("f{n}").into();
                alert["startsAt"] = format!("2026-11-24T13:3{n}:00Z").into();
                alert
            })
            .collect();
        let (status, body) = call(&app, Method::POST, "/alerts", serde_json::to_vec(&payload).unwrap(), "*/*").await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let page = |query: &'static str| {
            let app = app.clone();
            async move {
                let (status, body) = call(&app, Method::GET, query, vec![], "application/json").await;
                assert_eq!(status, StatusCode::OK, "{query}: {body}");
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                let ids: Vec<String> = body["incidents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["id"].as_str().unwrap().to_owned())
                    .collect();
                (body["total"].as_u64().unwrap(), ids)
            }
        };
        let (total, all) = page("/incidents?sort=starts_at").await;
        assert_eq!((total, all.len()), (5, 5));
        assert_eq!(page("/incidents?sort=starts_at&limit=2").await, (5, all[..2].to_vec()));
        assert_eq!(page("/incidents?sort=starts_at&limit=2&offset=2").await, (5, all[2..4].to_vec()));
        assert_eq!(page("/incidents?sort=starts_at&limit=2&offset=4").await, (5, all[4..].to_vec()));
        assert_eq!(page("/incidents?sort=starts_at&offset=9").await, (5, vec![]));

        let (_, html) =
            call(&app, Method::GET, "/incidents?sort=starts_at&limit=2&offset=2&format=html", vec![], "*/*").await;
        assert!(html.contains("3–4 of 5 incidents."), "{html}");
        assert!(html.contains("limit=2&amp;offset=0&amp;sort=starts_at\">previous</a>"), "{html}");
        assert!(html.contains("limit=2&amp;offset=4&amp;sort=starts_at\">next</a>"), "{html}");
        // An offset far past the end: an empty page with a way back, no overflow.
        let far = format!("/incidents?sort=starts_at&offset={}&format=html", usize::MAX);
        let (status, html) = call(&app, Method::GET, &far, vec![], "*/*").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("previous</a>") && !html.contains("next</a>"), "{html}");
        for bad in ["/incidents?limit=0", "/incidents?limit=1001", "/incidents?offset=-1", "/incidents?limit=ten"] {
            let (status, body) = call(&app, Method::GET, bad, vec![], "*/*").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(body.contains("limit:") || body.contains("offset:"), "{bad}: {body}");
        }
    }

    #[tokio::test]
    async fn bad_requests_get_the_reason_in_the_json_error_shape() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let cases: [(Method, &str, Vec<u8>, StatusCode, &str); 6] = [
            (Method::POST, "/alerts", b"{".to_vec(), StatusCode::BAD_REQUEST, "not an Alertmanager webhook payload"),
            (Method::POST, "/alerts", br#"{"version":"3"}"#.to_vec(), StatusCode::BAD_REQUEST, "version"),
            (Method::POST, "/alerts", vec![b' '; 70 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "max_body_bytes"),
            (Method::GET, "/incidents?status=open", vec![], StatusCode::BAD_REQUEST, "status:"),
            (Method::GET, "/incidents?colour=red", vec![], StatusCode::BAD_REQUEST, "unknown parameter \\\"colour\\\""),
            (Method::GET, "/incidents?limit=1&limit=2", vec![], StatusCode::BAD_REQUEST, "limit: given more than once"),
        ];
        for (method, uri, body, wanted_status, wanted) in cases {
            let (status, answer) = call(&app, method, uri, body, "*/*").await;
            assert_eq!(status, wanted_status, "{uri}: {answer}");
            assert!(answer.starts_with(r#"{"error":{"code":"#) && answer.contains(wanted), "{uri}: {answer}");
        }
    }

    #[tokio::test]
    async fn html_escapes_what_alerts_carry_and_links_only_http() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let payload = br#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"<script>x</script>","service":"a&b","severity":"high"},
            "annotations":{"summary":"\"quoted\"","logs_url":"javascript:alert(1)","dashboard_url":"http://grafana/d/x?a=1&b=2"},
            "startsAt":"2026-11-24T13:32:20Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f00"}]}"#;
        assert_eq!(call(&app, Method::POST, "/alerts", payload.to_vec(), "*/*").await.0, StatusCode::OK);
        let request =
            HttpRequest::builder().uri("/incidents").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'none'"));
        let page =
            String::from_utf8(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;x&lt;/script&gt;"), "{page}");
        assert!(page.contains("a&amp;b") && page.contains("&quot;quoted&quot;"));
        assert!(!page.contains("javascript:"), "{page}");
        assert!(page.contains(r#"<a href="http://grafana/d/x?a=1&amp;b=2""#), "{page}");
    }

    /// The layering of `run`: the main router behind Reader, the alerting routes merged after.
    #[tokio::test]
    async fn each_route_requires_its_role() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am-token"), "tok\n").unwrap();
        let yaml = format!(
            "basic_auth_users:\n  alice: {}\n  prometheus: {}\nadmin_users: [alice]\nwebhook_bearer_token_file: am-token\n",
            bcrypt::hash("alice-pw", 4).unwrap(),
            bcrypt::hash("prom-pw", 4).unwrap(),
        );
        let web_config = crate::web::web_config::WebConfig::parse(&yaml, &dir.path().join("web.yml")).unwrap();
        let auth = Authenticator::new(Some(&web_config)).unwrap();
        let store = Arc::new(IncidentStore::open(dir.path().join("incidents")).unwrap());
        let app = Router::new()
            .route("/services", get(|| async { "services" }))
            .layer(auth.require(Role::Reader))
            .merge(routes(
                AlertsState { store, max_body_bytes: 64 * 1024, slack: None, metrics: WebhookMetrics::default() },
                &auth,
            ));
        let basic = |user: &str, password: &str| {
            use base64::Engine as _;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        };
        let (firing, _) = crate::alerts::payload::firing_and_resolved_fixture();
        let send = |method: Method, uri: &str, authorization: Option<String>, body: Vec<u8>| {
            let mut request = HttpRequest::builder().method(method).uri(uri);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let request = request.body(Body::from(body)).unwrap();
            let app = app.clone();
            async move { app.oneshot(request).await.unwrap().status() }
        };
        let token = Some("Bearer tok".to_owned());
        assert_eq!(send(Method::POST, "/alerts", None, firing.clone()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(send(Method::POST, "/alerts", token.clone(), firing.clone()).await, StatusCode::OK);
        assert_eq!(send(Method::POST, "/alerts", Some(basic("prometheus", "prom-pw")), firing).await, StatusCode::OK);
        // The webhook token opens the webhook only.
        assert_eq!(send(Method::GET, "/incidents", token.clone(), vec![]).await, StatusCode::FORBIDDEN);
        assert_eq!(send(Method::GET, "/services", token.clone(), vec![]).await, StatusCode::FORBIDDEN);
        assert_eq!(send(Method::GET, "/incidents", Some(basic("prometheus", "prom-pw")), vec![]).await, StatusCode::OK);
        let id = "6c8c497f7610565a-1795527140492";
        let ack = format!("/incidents/{id}/ack");
        assert_eq!(send(Method::POST, &ack, token, vec![]).await, StatusCode::FORBIDDEN);
        assert_eq!(send(Method::POST, &ack, Some(basic("prometheus", "prom-pw")), vec![]).await, StatusCode::FORBIDDEN);
        assert_eq!(send(Method::POST, &ack, Some(basic("alice", "alice-pw")), vec![]).await, StatusCode::OK);
    }
}
