//! The HTTP side: building requests, sending them, and mapping transport failures.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Certificate, RequestBuilder, Url};
use tracing::debug;

use super::config::CheckedSource;
use super::response::{self, InstantVector, LabelValues, RangeMatrix};
use super::split::{MAX_RANGE_POINTS, merge_chunks, range_points, split_range};
use super::{SourceConfig, SourceError};

/// A client for one Prometheus-compatible HTTP API.
///
/// Every method asks for all series of an expression in one request (one per chunk for long
/// ranges), so the number of requests per cycle depends on the number of signals, never on the
/// number of services. Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base_url: Url,
    timeout: Duration,
    credentials: Option<Credentials>,
}

/// Secrets read from their files; never printed.
#[derive(Clone)]
enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.credentials {
            None => "none",
            Some(Credentials::Basic { .. }) => "basic",
            Some(Credentials::Bearer(_)) => "bearer",
        };
        f.debug_struct("PrometheusClient")
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

impl PrometheusClient {
    /// Validates `config`, reads its secret and CA files, and builds the client. No request is
    /// sent: an unreachable server shows up on the first query, not here.
    pub fn new(config: &SourceConfig) -> Result<Self, SourceError> {
        let CheckedSource { base_url, timeout, headers } = config.check()?;
        let credentials = match (&config.basic_auth, &config.bearer_token_file) {
            (Some(auth), _) => Some(Credentials::Basic {
                username: auth.username.clone(),
                password: read_secret("basic_auth.password_file", &auth.password_file)?,
            }),
            (None, Some(path)) => Some(Credentials::Bearer(read_secret("bearer_token_file", path)?)),
            (None, None) => None,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("anomaly-exporter/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers.into_iter().collect::<HeaderMap>());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| secret_error("ca_file", path, e.to_string()))?;
            let certificates = Certificate::from_pem_bundle(&pem)
                .map_err(|e| secret_error("ca_file", path, format!("not a PEM certificate bundle: {e}")))?;
            if certificates.is_empty() {
                return Err(secret_error("ca_file", path, "holds no PEM certificate".to_owned()));
            }
            // Only these roots, as Prometheus's own tls_config.ca_file does.
            builder = builder.tls_certs_only(certificates);
        }
        if config.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| SourceError::Client(error_chain(&e)))?;
        Ok(Self { http, base_url, timeout, credentials })
    }

    /// Evaluates `expr` at `at` (`POST /api/v1/query`). A scalar result becomes one sample
    /// without labels; string and range-vector results are refused.
    pub async fn query(&self, expr: &str, at: SystemTime) -> Result<InstantVector, SourceError> {
        let endpoint = self.endpoint(&["api", "v1", "query"]);
        let form = [("query", expr.to_owned()), ("time", format_seconds(epoch_ms(at))), self.timeout_param()];
        let request = self.http.post(endpoint.clone()).form(&form);
        let (status, body) = self.send(request, &endpoint).await?;
        response::decode_instant(endpoint.as_str(), status, body.as_ref())
    }

    /// Evaluates `expr` from `start` to `end` every `step` (`POST /api/v1/query_range`).
    ///
    /// Ranges of more than 11,000 steps are split into several queries, sent one after the other,
    /// and merged so the result looks like one answer: each series once, its points in order,
    /// no timestamp twice. `start` and `end` are rounded down to the millisecond, and `step` must
    /// be a whole number of milliseconds, the API's resolution.
    pub async fn query_range(
        &self,
        expr: &str,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<RangeMatrix, SourceError> {
        let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
        if step_ms == 0 || !step.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(SourceError::InvalidArgument(format!("step {step:?} must be a whole number of milliseconds")));
        }
        let (start_ms, end_ms) = (epoch_ms(start), epoch_ms(end));
        if end_ms < start_ms {
            return Err(SourceError::InvalidArgument(format!("end {end_ms}ms is before start {start_ms}ms")));
        }
        let points = range_points(start_ms, end_ms, step_ms);
        if points > i128::from(MAX_RANGE_POINTS) {
            return Err(SourceError::InvalidArgument(format!(
                "{points} points from {start_ms}ms to {end_ms}ms every {step_ms}ms: at most {MAX_RANGE_POINTS}; \
                 use a coarser step or a shorter range"
            )));
        }
        let endpoint = self.endpoint(&["api", "v1", "query_range"]);
        let chunks = split_range(start_ms, end_ms, step_ms);
        let mut answers = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            let form = [
                ("query", expr.to_owned()),
                ("start", format_seconds(chunk.start_ms)),
                ("end", format_seconds(chunk.end_ms)),
                ("step", format_seconds(step_ms)),
                self.timeout_param(),
            ];
            let request = self.http.post(endpoint.clone()).form(&form);
            let (status, body) = self.send(request, &endpoint).await?;
            answers.push(response::decode_matrix(endpoint.as_str(), status, body.as_ref())?);
        }
        if chunks.len() > 1 {
            debug!(chunks = chunks.len(), start_ms, end_ms, step_ms, "range query split to stay under the point limit");
        }
        Ok(merge_chunks(answers))
    }

    /// The values of `label` (`GET /api/v1/label/<label>/values`), restricted to series that
    /// match any of `matchers` (series selectors such as `process_cpu_usage`) when some are given.
    pub async fn label_values(&self, label: &str, matchers: &[&str]) -> Result<LabelValues, SourceError> {
        let endpoint = self.endpoint(&["api", "v1", "label", label, "values"]);
        let params: Vec<(&str, &str)> = matchers.iter().map(|matcher| ("match[]", *matcher)).collect();
        let request = self.http.get(endpoint.clone()).query(&params);
        let (status, body) = self.send(request, &endpoint).await?;
        response::decode_label_values(endpoint.as_str(), status, body.as_ref())
    }

    /// `base_url` with `segments` appended, each percent-encoded (label names may hold anything).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        // Cannot fail: validation accepted only http and https URLs, which always have a path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The server-side evaluation timeout, the same as ours, so the server stops work nobody
    /// waits for any more.
    fn timeout_param(&self) -> (&'static str, String) {
        ("timeout", format_seconds(i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Sends `request` with credentials and reads the whole body, whatever the status.
    async fn send(&self, request: RequestBuilder, endpoint: &Url) -> Result<(u16, impl AsRef<[u8]>), SourceError> {
        let request = match &self.credentials {
            None => request,
            Some(Credentials::Basic { username, password }) => request.basic_auth(username, Some(password)),
            Some(Credentials::Bearer(token)) => request.bearer_auth(token),
        };
        let started = Instant::now();
        let transport_error = |e: reqwest::Error| self.transport_error(&e, endpoint);
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport_error)?;
        debug!(endpoint = %endpoint, status, bytes = body.as_ref().len(), elapsed = ?started.elapsed(), "prometheus answered");
        Ok((status, body))
    }

    fn transport_error(&self, error: &reqwest::Error, endpoint: &Url) -> SourceError {
        let endpoint = endpoint.as_str().to_owned();
        if error.is_timeout() {
            SourceError::Timeout { endpoint, after: self.timeout }
        } else if error.is_connect() {
            SourceError::Connect { endpoint, detail: error_chain(error) }
        } else {
            SourceError::Transport { endpoint, detail: error_chain(error) }
        }
    }
}

/// Reads a secret file and removes the trailing newline editors and `echo` add.
fn read_secret(key: &'static str, path: &Path) -> Result<String, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|e| secret_error(key, path, e.to_string()))?;
    let secret = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if secret.is_empty() {
        return Err(secret_error(key, path, "the file is empty".to_owned()));
    }
    Ok(secret.to_owned())
}

fn secret_error(key: &'static str, path: &Path, problem: String) -> SourceError {
    SourceError::Secret { key, path: path.to_owned(), problem }
}

/// The error and its causes, since reqwest's own message is often only "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Milliseconds since the epoch, negative before it, rounded down to the millisecond.
fn epoch_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Milliseconds as the API's decimal seconds, exactly (`1500` → `"1.500"`).
fn format_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_formatted_exactly() {
        assert_eq!(format_seconds(1_700_000_000_781), "1700000000.781");
        assert_eq!(format_seconds(1500), "1.500");
        assert_eq!(format_seconds(0), "0.000");
        assert_eq!(format_seconds(-1500), "-1.500");
    }

    #[test]
    fn times_before_the_epoch_are_negative() {
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_millis(1500)), -1500);
        assert_eq!(epoch_ms(UNIX_EPOCH + Duration::from_micros(1_999)), 1);
    }

    #[test]
    fn secrets_lose_only_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret \r\n").unwrap();
        assert_eq!(read_secret("bearer_token_file", &path).unwrap(), "s3cret ");
        std::fs::write(&path, "\n").unwrap();
        let err = read_secret("bearer_token_file", &path).unwrap_err();
        assert!(err.to_string().starts_with("source.bearer_token_file: cannot read"), "{err}");
        assert!(read_secret("bearer_token_file", &dir.path().join("missing")).is_err());
    }

    #[tokio::test]
    async fn a_range_of_too_many_points_is_refused_before_any_request() {
        // Nothing listens on port 9: a request would fail with a connection error instead.
        let client = PrometheusClient::new(&SourceConfig::new("http://127.0.0.1:9")).unwrap();
        let start = UNIX_EPOCH;
        let end = UNIX_EPOCH + Duration::from_secs(100_000_000);
        let error = client.query_range("up", start, end, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, SourceError::InvalidArgument(_)), "{error}");
        assert!(
            error.to_string().contains("100000001 points") && error.to_string().contains("at most 10000000"),
            "{error}"
        );
    }

    #[test]
    fn endpoints_keep_the_path_prefix() {
        let client = PrometheusClient::new(&SourceConfig::new("http://mimir:8080/prometheus/")).unwrap();
        assert_eq!(client.endpoint(&["api", "v1", "query"]).as_str(), "http://mimir:8080/prometheus/api/v1/query");
        assert_eq!(
            client.endpoint(&["api", "v1", "label", "a/b", "values"]).as_str(),
            "http://mimir:8080/prometheus/api/v1/label/a%2Fb/values"
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "hunter2\n").unwrap();
        let mut config = SourceConfig::new("http://h:9090");
        config.basic_auth = Some(super::super::BasicAuthConfig { username: "u".into(), password_file: path });
        config.headers.insert("X-Scope-OrgID".into(), "tenant-secret".into());
        let client = PrometheusClient::new(&config).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("tenant-secret"), "{debug}");
    }

    /// A self-signed CA certificate (public part only), made with
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "/CN=anomaly-exporter test CA"`.
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBnjCCAUOgAwIBAgIUZEWOza/BxQOeRkLzw7tqHBEzrfkwCgYIKoZIzj0EAwIw
IzEhMB8GA1UEAwwYYW5vbWFseS1leHBvcnRlciB0ZXN0IENBMCAXDTI2MTEyNDE2
MjEzOFoYDzIxMjYxMDMxMTYyMTM4WjAjMSEwHwYDVQQDDBhhbm9tYWx5LWV4cG9y
dGVyIHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARAA4u1vC4bchnz
rwvgCGju3dsa1i5AVon9K7KG90SWMv5F+OjvEqcH11JiXGBJ53vG0P+nmRUtgN4b
F+GjvH/To1MwUTAdBgNVHQ4EFgQUFAhrzvzSa+1LWcIoUrbCwWSNWJMwHwYDVR0j
BBgwFoAUFAhrzvzSa+1LWcIoUrbCwWSNWJMwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNJADBGAiEAtKnNLAKSD6ZjCIi9IYTyRPDzTqzRVZEILBjt/RJ0ZQwC
IQC6yB8vqcpTmKCPhSn3TulI5wZ+5HmLJhulNT1Aw9w23Q==
-----END CERTIFICATE-----
";

    #[test]
    fn ca_file_with_a_certificate_builds_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, TEST_CA_PEM).unwrap();
        let mut config = SourceConfig::new("https://h:9090");
        config.ca_file = Some(path);
        PrometheusClient::new(&config).unwrap();
        config.ca_file = Some(dir.path().join("missing.pem"));
        let err = PrometheusClient::new(&config).unwrap_err();
        assert!(err.to_string().starts_with("source.ca_file: cannot read"), "{err}");
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut config = SourceConfig::new("https://h:9090");
        config.ca_file = Some(path);
        let err = PrometheusClient::new(&config).unwrap_err();
        assert!(err.to_string().starts_with("source.ca_file: cannot read"), "{err}");
    }
}
