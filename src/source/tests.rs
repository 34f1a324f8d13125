//! End-to-end tests of the client against a local axum server that answers like Prometheus,
//! and like the things that go wrong in front of it: 503, 400, a plain-text 404, garbage, HTML
//! from a proxy, a slow answer, a closed port.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use reqwest::Url;

use super::*;

#[derive(Default)]
struct Seen {
    range_queries: AtomicUsize,
}

fn form(body: &str) -> HashMap<String, String> {
    let url = Url::parse(&format!("http://form/?{body}")).unwrap();
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn seconds_to_ms(text: &str) -> i64 {
    (text.parse::<f64>().unwrap() * 1000.0).round() as i64
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

async fn instant_query(headers: HeaderMap, body: String) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0ken") {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    }
    let form = form(&body);
    assert_eq!(form["query"], "sum by (application) (rate(x[1m]))");
    assert_eq!(form["time"], "1700000000.500");
    assert_eq!(form["timeout"], "2.000");
    assert_eq!(headers["x-scope-orgid"], "tenant-a");
    json(
        StatusCode::OK,
        r#"{"status":"success","warnings":["partial answer"],"data":{"resultType":"vector","result":[
            {"metric":{"application":"a"},"value":[1700000000.5,"1"]},
            {"metric":{"application":"b"},"value":[1700000000.5,"NaN"]}]}}"#
            .to_owned(),
    )
}

/// Answers like Prometheus: one point per step grid time, two series, refusing too many points.
async fn range_query(State(seen): State<Arc<Seen>>, body: String) -> Response {
    seen.range_queries.fetch_add(1, Ordering::SeqCst);
    let form = form(&body);
    let (start, end, step) = (seconds_to_ms(&form["start"]), seconds_to_ms(&form["end"]), seconds_to_ms(&form["step"]));
    if (end - start) / step > 11_000 {
        let error = r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries"}"#;
        return json(StatusCode::BAD_REQUEST, error.to_owned());
    }
    let values: Vec<String> = (0..)
        .map(|i| start + i * step)
        .take_while(|&t| t <= end)
        .map(|t| format!(r#"[{},"{}"]"#, t as f64 / 1000.0, t))
        .collect();
    let values = values.join(",");
    json(
        StatusCode::OK,
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[
                {{"metric":{{"application":"a"}},"values":[{values}]}},{{"metric":{{"application":"b"}},"values":[{values}]}}]}}}}"#
        ),
    )
}

async fn label_values(RawQuery(query): RawQuery) -> Response {
    let query = form(&query.unwrap_or_default());
    assert_eq!(query["match[]"], "process_cpu_usage");
    json(StatusCode::OK, r#"{"status":"success","data":["a","b"]}"#.to_owned())
}

async fn plain_404() -> Response {
    (StatusCode::NOT_FOUND, [("content-type", "text/plain; charset=utf-8")], "404 page not found\n").into_response()
}

/// Starts the fake server on a free loopback port and gives its base URL.
async fn start_fake_prometheus(seen: Arc<Seen>) -> String {
    let router = Router::new()
        .route("/ok/api/v1/query", post(instant_query))
        .route("/ok/api/v1/query_range", post(range_query))
        .route("/ok/api/v1/label/application/values", get(label_values))
        .route(
            "/overloaded/api/v1/query",
            post(|| async {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#
                        .to_owned(),
                )
            }),
        )
        .route(
            "/bad/api/v1/query",
            post(|| async {
                json(
                    StatusCode::BAD_REQUEST,
                    r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#
                        .to_owned(),
                )
            }),
        )
        .route("/garbage/api/v1/query", post(|| async { (StatusCode::OK, "\u{0}garbage{\"status\"") }))
        .route(
            "/proxy/api/v1/query",
            post(|| async { (StatusCode::BAD_GATEWAY, "<html><body><h1>502 Bad Gateway</h1></body></html>") }),
        )
        .route(
            "/slow/api/v1/query",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "too late"
            }),
        )
        .fallback(plain_404)
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

fn client(url: String, timeout: &str) -> PrometheusClient {
    let mut config = SourceConfig::new(url);
    config.timeout = timeout.to_owned();
    PrometheusClient::new(&config).unwrap()
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
}

#[tokio::test]
async fn instant_query_sends_form_auth_and_headers_and_keeps_warnings() {
    let base = start_fake_prometheus(Arc::default()).await;
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "t0ken\n").unwrap();
    let mut config = SourceConfig::new(format!("{base}/ok"));
    config.timeout = "2s".into();
    config.bearer_token_file = Some(token_file);
    config.headers.insert("X-Scope-OrgID".into(), "tenant-a".into());
    let client = PrometheusClient::new(&config).unwrap();

    let vector = client.query("sum by (application) (rate(x[1m]))", at()).await.unwrap();
    assert_eq!(vector.samples.len(), 2);
    assert_eq!(vector.samples[0].labels["application"], "a");
    assert_eq!(vector.samples[0].timestamp_ms, 1_700_000_000_500);
    assert!(vector.samples[1].value.is_nan());
    assert_eq!(vector.warnings.messages, ["partial answer"]);
}

#[tokio::test]
async fn missing_credentials_give_an_auth_error() {
    let base = start_fake_prometheus(Arc::default()).await;
    let err = client(format!("{base}/ok"), "2s").query("up", at()).await.unwrap_err();
    assert_eq!(err.reason(), "auth");
}

#[tokio::test]
async fn long_range_is_split_and_merged_without_duplicates() {
    let seen = Arc::new(Seen::default());
    let base = start_fake_prometheus(seen.clone()).await;
    let client = client(format!("{base}/ok"), "5s");
    let start = at();
    // 25,001 points at 1s: three chunks (11,000 + 11,000 + 3,001).
    let end = start + Duration::from_secs(25_000);
    let matrix = client.query_range("x", start, end, Duration::from_secs(1)).await.unwrap();
    assert_eq!(seen.range_queries.load(Ordering::SeqCst), 3);
    assert_eq!(matrix.series.len(), 2);
    for series in &matrix.series {
        assert_eq!(series.points.len(), 25_001);
        let times: Vec<i64> = series.points.iter().map(|p| p.timestamp_ms).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] == 1000), "points not on a contiguous 1s grid");
        assert_eq!(times[0], 1_700_000_000_500);
        assert_eq!(times[25_000], 1_700_025_000_500);
    }
}

#[tokio::test]
async fn reversed_range_and_sub_millisecond_step_are_refused_before_sending() {
    let seen = Arc::new(Seen::default());
    let base = start_fake_prometheus(seen.clone()).await;
    let client = client(format!("{base}/ok"), "2s");
    let err = client.query_range("x", at(), at() - Duration::from_secs(1), Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(err.reason(), "invalid_argument");
    let err = client.query_range("x", at(), at(), Duration::from_micros(1500)).await.unwrap_err();
    assert_eq!(err.reason(), "invalid_argument");
    assert_eq!(seen.range_queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn label_values_pass_matchers() {
    let base = start_fake_prometheus(Arc::default()).await;
    let values = client(format!("{base}/ok"), "2s").label_values("application", &["process_cpu_usage"]).await.unwrap();
    assert_eq!(values.values, ["a", "b"]);
}

#[tokio::test]
async fn error_answers_map_to_typed_errors() {
    let base = start_fake_prometheus(Arc::default()).await;
    let query = |prefix: &str| {
        let client = client(format!("{base}/{prefix}"), "300ms");
        async move { client.query("up", at()).await.unwrap_err() }
    };

    let err = query("overloaded").await;
    assert_eq!((err.reason(), err.is_retryable()), ("timeout", true), "{err}");

    let err = query("bad").await;
    assert_eq!((err.reason(), err.is_retryable()), ("bad_data", false), "{err}");
    assert!(err.to_string().contains("parse error"), "{err}");

    let err = query("wrong-prefix").await;
    assert_eq!(err.reason(), "not_found", "{err}");
    assert!(err.to_string().contains("/wrong-prefix/api/v1/query"), "{err}");

    let err = query("garbage").await;
    assert_eq!(err.reason(), "decode", "{err}");

    let err = query("proxy").await;
    assert_eq!((err.reason(), err.is_retryable()), ("http_5xx", true), "{err}");
    assert!(err.to_string().contains("502 Bad Gateway"), "{err}");

    let started = std::time::Instant::now();
    let err = query("slow").await;
    assert_eq!((err.reason(), err.is_retryable()), ("timeout", true), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "the client timeout was not applied");
}

#[tokio::test]
async fn closed_port_gives_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let err = client(format!("http://{address}"), "2s").query("up", at()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_retryable()), ("connect", true), "{err}");
    assert!(err.to_string().contains("source.url"), "{err}");
}
