//! `POST /retrain` (optionally `?service=&signal=`) and `GET /retrain/{id}`: training jobs over
//! HTTP. Both need the admin role; the caller layers [`crate::web::auth::Authenticator::require`]
//! with [`crate::web::auth::Role::Admin`] on [`retrain_routes`].
//!
//! `POST` answers 202 with the job's status (`{"job": 1, "state": "running", "total": …}`), 404
//! when no series with a dataset matches, and 409 when a matching series is already being
//! trained by another job (the same model is never trained twice at once; retry later).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use crate::train::{SubmitError, Trainer};

/// The query of `POST /retrain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrainQuery {
    service: Option<String>,
    signal: Option<String>,
}

/// The retrain routes, to be merged into the main router under the admin role.
pub fn retrain_routes(trainer: Arc<Trainer>) -> Router {
    Router::new().route("/retrain", post(start)).route("/retrain/{id}", get(status)).with_state(trainer)
}

async fn start(
    State(trainer): State<Arc<Trainer>>,
    query: Result<Query<RetrainQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::bad_request("the query takes only service= and signal=").into_response();
    };
    // A filter sent as a body (`{"service": "a"}`) would otherwise be ignored, and every series
    // retrained.
    if !body.iter().all(u8::is_ascii_whitespace) {
        return ApiError::bad_request(
            "POST /retrain takes its filter as query parameters (?service=S&signal=X), not a body",
        )
        .into_response();
    }
    // Listing the datasets is file I/O: off the async runtime.
    let submitted =
        tokio::task::spawn_blocking(move || trainer.submit(query.service.as_deref(), query.signal.as_deref(), "api"))
            .await;
    match submitted {
        Ok(Ok(status)) => (StatusCode::ACCEPTED, Json(status)).into_response(),
        Ok(Err(error @ SubmitError::NoSeries { .. })) => ApiError::not_found(error.to_string()).into_response(),
        Ok(Err(error @ SubmitError::Busy(..))) => {
            ApiError { status: StatusCode::CONFLICT, code: "conflict", message: error.to_string() }.into_response()
        }
        Ok(Err(error)) => ApiError::internal(error).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

async fn status(State(trainer): State<Arc<Trainer>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return ApiError::bad_request(format!("job id {id:?} is not a number")).into_response();
    };
    match trainer.status(id) {
        Some(status) => Json(status).into_response(),
        None => ApiError::not_found(format!("no job {id} (the last 100 finished jobs are kept)")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, header};
    use base64::Engine as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::detect::DetectorParams;
    use crate::engine::SeriesKey;
    use crate::export::DatasetMetrics;
    use crate::store::Datasets;
    use crate::store::writer::{DatasetWriter, StoredPoint, write_pending};
    use crate::web::auth::{Authenticator, Role};
    use crate::web::web_config::WebConfig;

    /// The routes as `run` layers them: reader for everything, admin for /retrain; alice is admin.
    fn app(dir: &std::path::Path) -> (Router, tokio::sync::mpsc::UnboundedReceiver<crate::train::ModelSwap>) {
        let datasets = Datasets::new(dir.join("datasets"));
        let key = SeriesKey { service: "checkout".into(), signal: "cpu".into() };
        let mut writer = DatasetWriter::open(datasets.clone(), 10, &Default::default());
        writer.accept(
            (0..200)
                .map(|i| StoredPoint {
                    key: key.clone(),
                    timestamp_ms: crate::train::now_ms() - 300_000 + i * 1000,
                    value: (i as f64 / 9.0).sin(),
                    anomaly_score: None,
                    severity: 0,
                    model_version: None,
                })
                .collect(),
        );
        assert!(write_pending(&datasets, writer.take_pending()).2.is_empty());
        let (swaps, swapped) = tokio::sync::mpsc::unbounded_channel();
        let params = DetectorParams { min_training_points: 50, ..DetectorParams::default() };
        let trainer =
            Arc::new(Trainer::new(datasets, params, Duration::from_secs(3600), DatasetMetrics::default(), swaps));
        let yaml = format!(
            "basic_auth_users:\n  alice: {}\n  prometheus: {}\nadmin_users: [alice]\n",
            bcrypt::hash("alice-pw", 4).unwrap(),
            bcrypt::hash("prom-pw", 4).unwrap(),
        );
        let auth = Authenticator::new(Some(&WebConfig::parse(&yaml, &dir.join("web.yml")).unwrap())).unwrap();
        let app = retrain_routes(trainer).route_layer(auth.require(Role::Admin)).layer(auth.require(Role::Reader));
        (app, swapped)
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        user: &str,
        password: &str,
    ) -> (StatusCode, serde_json::Value) {
        send(app, method, uri, user, password, Body::empty()).await
    }

    /// A POST by the admin with a JSON body.
    async fn call_with_body(app: &Router, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        send(app, "POST", uri, "alice", "alice-pw", Body::from(body.to_owned())).await
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        user: &str,
        password: &str,
        body: Body,
    ) -> (StatusCode, serde_json::Value) {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Basic {credentials}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_starts_a_job_and_follows_it_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (app, mut swapped) = app(dir.path());
        let (status, body) = call(&app, "POST", "/retrain", "prometheus", "prom-pw").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

        let (status, body) = call(&app, "POST", "/retrain?service=checkout", "alice", "alice-pw").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(
            (body["job"].as_u64(), body["total"].as_u64(), body["state"].as_str()),
            (Some(1), Some(1), Some("running"))
        );
        let swap = tokio::time::timeout(Duration::from_secs(30), swapped.recv()).await.unwrap().unwrap();
        assert_eq!(swap.key.service, "checkout");
        let mut last = serde_json::Value::Null;
        for _ in 0..100 {
            let (status, body) = call(&app, "GET", "/retrain/1", "alice", "alice-pw").await;
            assert_eq!(status, StatusCode::OK);
            last = body;
            if last["state"] != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!((last["state"].as_str(), last["trained"].as_u64()), (Some("done"), Some(1)), "{last}");

        let (status, body) = call(&app, "POST", "/retrain?service=nope", "alice", "alice-pw").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, body) = call_with_body(&app, "/retrain", r#"{"service":"checkout"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("query parameters"), "{body}");
        let (status, body) = call(&app, "POST", "/retrain?service=nope", "alice", "alice-pw").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, _) = call(&app, "POST", "/retrain?servce=checkout", "alice", "alice-pw").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(&app, "GET", "/retrain/99", "alice", "alice-pw").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&app, "GET", "/retrain/x", "alice", "alice-pw").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
