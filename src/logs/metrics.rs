//! The self-metrics of log queries, registered under `anomaly_exporter_logs_…` by
//! [`crate::export::SelfMetrics`]. No service or message label: their cardinality is the
//! reader's, not ours.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Correlation;

/// `{code}`: the HTTP status of a `/logs` answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabels {
    /// The status code, such as `200` or `404`.
    pub code: String,
}

/// Counters and the duration histogram of log queries. Clones share the same series.
#[derive(Debug, Clone)]
pub struct LogsMetrics {
    /// `/logs` requests by status code.
    pub requests: Family<StatusLabels, Counter>,
    /// Log lines read by queries.
    pub lines_read: Counter,
    /// Corrupt, truncated or overlong lines skipped.
    pub lines_skipped: Counter,
    /// Bytes of log text read.
    pub bytes_read: Counter,
    /// Duration of correlation queries.
    pub query_duration: Histogram,
    /// Queries refused because `logs.max_concurrent_queries` were reading already.
    pub queries_rejected: Counter,
}

impl Default for LogsMetrics {
    fn default() -> Self {
        LogsMetrics {
            requests: Family::default(),
            lines_read: Counter::default(),
            lines_skipped: Counter::default(),
            bytes_read: Counter::default(),
            query_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            queries_rejected: Counter::default(),
        }
    }
}

impl LogsMetrics {
    /// Registers the metrics in `registry` (already prefixed `anomaly_exporter`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("logs_requests", "Requests to /logs, by HTTP status code", self.requests.clone());
        registry.register("logs_lines_read", "Log lines read by log queries", self.lines_read.clone());
        registry.register(
            "logs_lines_skipped",
            "Log lines skipped by log queries as corrupt, truncated or too long",
            self.lines_skipped.clone(),
        );
        registry.register_with_unit(
            "logs_read",
            "Bytes of log text read by log queries",
            Unit::Bytes,
            self.bytes_read.clone(),
        );
        registry.register_with_unit(
            "logs_query_duration",
            "Duration of log correlation queries",
            Unit::Seconds,
            self.query_duration.clone(),
        );
        registry.register(
            "logs_queries_rejected",
            "Log queries refused with 429 because logs.max_concurrent_queries were running already",
            self.queries_rejected.clone(),
        );
    }

    /// Counts what one answer read.
    pub fn observe(&self, correlation: &Correlation) {
        self.lines_read.inc_by(correlation.lines_read);
        self.lines_skipped.inc_by(correlation.lines_skipped);
        self.bytes_read.inc_by(correlation.bytes_read);
        self.query_duration.observe(correlation.duration_seconds);
    }

    /// Counts a request and its status.
    pub fn count_request(&self, code: u16) {
        self.requests.get_or_create(&StatusLabels { code: code.to_string() }).inc();
    }
}
