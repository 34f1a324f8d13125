//! What can go wrong talking to Prometheus, with a stable reason for the error-counter label.

use std::path::PathBuf;
use std::time::Duration;

/// An error from the source: configuration, transport, HTTP status, API error or decoding.
///
/// Messages say what happened and what to do. [`SourceError::reason`] gives a short, stable label
/// value for `anomaly_exporter_source_errors_total{reason}`; it never carries free text, so the
/// label's cardinality stays bounded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A key of the `source:` config is wrong.
    #[error("source.{key}: {problem}")]
    Config {
        /// The key below `source.`, such as `timeout` or `basic_auth.username`.
        key: &'static str,
        /// What is wrong and, where it helps, what would be right.
        problem: String,
    },
    /// A secret file could not be read or is empty.
    #[error("source.{key}: cannot read {path:?}: {problem}")]
    Secret {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        problem: String,
    },
    /// The HTTP client could not be built (for example, the CA file holds no valid certificate).
    #[error("source: cannot build the HTTP client: {0}")]
    Client(String),
    /// A query's arguments were refused before sending (end before start, zero step).
    #[error("source: invalid query arguments: {0}")]
    InvalidArgument(String),
    /// No answer within the client's timeout.
    #[error("no answer from {endpoint} within {after:?}: raise source.timeout or make the query cheaper")]
    Timeout {
        /// The API endpoint, without query string.
        endpoint: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The server evaluated the query past its own timeout (`errorType` `timeout` or `canceled`).
    #[error(
        "prometheus timed out evaluating the query ({message}): make the query cheaper or raise its --query.timeout"
    )]
    QueryTimeout {
        /// The server's error text.
        message: String,
    },
    /// No connection could be made.
    #[error("cannot connect to {endpoint}: is the server up and source.url right? ({detail})")]
    Connect {
        /// The API endpoint, without query string.
        endpoint: String,
        /// The transport's explanation.
        detail: String,
    },
    /// The connection broke while sending or receiving.
    #[error("request to {endpoint} failed: {detail}")]
    Transport {
        /// The API endpoint, without query string.
        endpoint: String,
        /// The transport's explanation.
        detail: String,
    },
    /// 401 or 403.
    #[error("got HTTP {status} from {endpoint}: check source.basic_auth or source.bearer_token_file")]
    Auth {
        /// The HTTP status.
        status: u16,
        /// The API endpoint.
        endpoint: String,
    },
    /// 404: almost always a wrong URL or a missing path prefix.
    #[error(
        "got a 404 from {endpoint}: check source.url; it must be the API's base URL including any path \
         prefix (such as /prometheus for Mimir), without /api/v1"
    )]
    NotFound {
        /// The API endpoint.
        endpoint: String,
    },
    /// The server refused the query as malformed (`bad_data`, usually a PromQL syntax error).
    #[error("prometheus refused the query (bad_data): {message}: fix the PromQL expression")]
    BadData {
        /// The server's error text.
        message: String,
    },
    /// The query was valid but failed while being evaluated (`execution`, 422).
    #[error("the query failed during evaluation (execution): {message}")]
    Execution {
        /// The server's error text.
        message: String,
    },
    /// Another HTTP error status, with the start of the body (5xx from the server or a proxy, 429).
    #[error("got HTTP {status} from {endpoint}{}: {message}", error_type.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: u16,
        /// The API endpoint.
        endpoint: String,
        /// The API's `errorType`, when the body was an API error.
        error_type: Option<String>,
        /// The API's error text, or the start of the body.
        message: String,
    },
    /// The body is not a Prometheus API answer (garbage, truncated JSON, a proxy's HTML page).
    #[error(
        "cannot decode the answer from {endpoint}: {detail}; body starts with {snippet:?}: \
         is source.url a Prometheus-compatible API?"
    )]
    Decode {
        /// The API endpoint.
        endpoint: String,
        /// What the decoder expected.
        detail: String,
        /// The first bytes of the body, lossily decoded.
        snippet: String,
    },
    /// A well-formed answer of a kind this client does not use (a string result, native
    /// histograms, a range vector from an instant query).
    #[error("{endpoint} answered with {what}, which this client does not handle: {hint}")]
    UnsupportedResult {
        /// The API endpoint.
        endpoint: String,
        /// What came back.
        what: String,
        /// How to change the query.
        hint: &'static str,
    },
}

impl SourceError {
    /// A short, stable label value for error counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config { .. } | Self::Secret { .. } | Self::Client(_) => "config",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Timeout { .. } | Self::QueryTimeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Transport { .. } => "transport",
            Self::Auth { .. } => "auth",
            Self::NotFound { .. } => "not_found",
            Self::BadData { .. } => "bad_data",
            Self::Execution { .. } => "execution",
            Self::Status { status: 429, .. } => "rate_limited",
            Self::Status { status: 500..=599, .. } => "http_5xx",
            Self::Status { .. } => "http_4xx",
            Self::Decode { .. } => "decode",
            Self::UnsupportedResult { .. } => "unsupported_result",
        }
    }

    /// Whether the same request may succeed later without a change of config or query: timeouts,
    /// connection failures, 5xx and 429. The caller still backs off between attempts.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::QueryTimeout { .. }
                | Self::Connect { .. }
                | Self::Transport { .. }
                | Self::Status { status: 429 | 500..=599, .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable_labels() {
        let status =
            |status| SourceError::Status { status, endpoint: "e".into(), error_type: None, message: "m".into() };
        assert_eq!(status(503).reason(), "http_5xx");
        assert!(status(503).is_retryable());
        assert_eq!(status(429).reason(), "rate_limited");
        assert!(status(429).is_retryable());
        assert_eq!(status(418).reason(), "http_4xx");
        assert!(!status(418).is_retryable());
        let bad = SourceError::BadData { message: "parse error".into() };
        assert_eq!(bad.reason(), "bad_data");
        assert!(!bad.is_retryable());
    }

    #[test]
    fn status_message_names_the_error_type_when_known() {
        let err = SourceError::Status {
            status: 503,
            endpoint: "http://h/api/v1/query".into(),
            error_type: Some("unavailable".into()),
            message: "not ready".into(),
        };
        assert_eq!(err.to_string(), "got HTTP 503 from http://h/api/v1/query (unavailable): not ready");
    }
}
