//! The one error type of every handler: `{"error": {"code", "message"}}` with the right status.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer. Client errors (4xx) are not logged; server errors are logged once, here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short, stable, machine-readable code (`not_found`, `bad_request`, ...).
    pub code: &'static str,
    /// What went wrong and what to do, for a person.
    pub message: String,
}

impl ApiError {
    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }

    /// 400 with a message naming the parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }

    /// 429: too many requests of this kind are being served; the answer carries `Retry-After`
    /// ([`RETRY_AFTER_SECONDS`]).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self { status: StatusCode::TOO_MANY_REQUESTS, code: "too_many_requests", message: message.into() }
    }

    /// 500; the cause is logged, the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; see the exporter's log".into(),
        }
    }
}

/// How long a client refused with 429 is asked to wait: the requests refused are queries that
/// take tens of milliseconds to seconds, so one second is a fair turn.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// The most of a plain-text rejection kept as the JSON error's message.
const MAX_REJECTION_BYTES: usize = 4096;

/// Gives the JSON error shape to the client errors that axum answers itself, before any handler
/// runs: a method the route does not take (405, an empty body), a path parameter that is not
/// UTF-8 (400) or a body over the limit (413), which come as plain text. Every handler's own
/// errors are [`ApiError`]s already (JSON), and pass unchanged, as does every other answer. The
/// status and headers (`Allow` on a 405) are kept. Applied to the daemon's whole router with
/// `axum::middleware::map_response`.
pub async fn json_client_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let status = response.status();
    if !status.is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let reason = status.canonical_reason().unwrap_or("client error");
    let message = if text.is_empty() { reason.to_owned() } else { text };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = json!({ "error": { "code": code, "message": message } });
    Response::from_parts(parts, Body::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{DefaultBodyLimit, Path};
    use axum::http::{HeaderMap, Method, Request};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/things", post(|| async { "made" }))
            .route("/things/{id}", get(|Path(id): Path<String>| async move { id }))
            .route("/upload", post(|body: Bytes| async move { body.len().to_string() }))
            .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
            .route("/own", get(|| async { ApiError::bad_request("limit: too big") }))
            .layer(DefaultBodyLimit::max(16))
            .layer(axum::middleware::map_response(json_client_errors))
    }

    async fn call(method: Method, uri: &str, body: &'static [u8]) -> (StatusCode, HeaderMap, serde_json::Value) {
        let request = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn axums_own_rejections_get_the_json_error_shape() {
        let (status, headers, body) = call(Method::GET, "/things", b"").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers.get(header::ALLOW).unwrap(), "POST", "the Allow header is kept");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
        assert_eq!(body["error"]["message"], "Method Not Allowed", "{body}");

        let (status, _, body) = call(Method::GET, "/things/%FF", b"").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("UTF-8"), "{body}");

        let (status, _, body) = call(Method::POST, "/upload", b"seventeen bytes!!").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");

        let (status, _, body) = call(Method::GET, "/teapot", b"").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body["error"]["message"], "short and stout", "{body}");
    }

    #[tokio::test]
    async fn handlers_answers_and_errors_pass_unchanged() {
        let (status, _, body) = call(Method::GET, "/things/abc", b"").await;
        assert_eq!((status, body), (StatusCode::OK, json!("abc")));
        let (status, _, body) = call(Method::POST, "/upload", b"tiny").await;
        assert_eq!((status, body), (StatusCode::OK, json!(4)));
        let (status, _, body) = call(Method::GET, "/own", b"").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": {"code": "bad_request", "message": "limit: too big"}}));
    }
}
