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
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::bad_request("the query takes only service= and signal=").into_response();
    };
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
