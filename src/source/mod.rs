//! Where data comes in: a client for the Prometheus HTTP API (`query`, `query_range`, label
//! values), its `source:` config, and its errors.
//!
//! It speaks to anything that implements the API: Prometheus, Thanos, Mimir and Cortex (with
//! `X-Scope-OrgID` in [`SourceConfig::headers`]) and VictoriaMetrics. Results come back as plain
//! data ([`InstantVector`], [`RangeMatrix`], [`LabelValues`]) with the server's [`Warnings`], so
//! the stages after it never see HTTP or JSON.
//!
//! It is not a scheduler: it sends what it is asked, once. Retries, backoff and the
//! "source up" metric belong to the caller, helped by [`SourceError::is_retryable`] and
//! [`SourceError::reason`].
//!
//! ```no_run
//! # async fn example() -> Result<(), anomaly_exporter::source::SourceError> {
//! use anomaly_exporter::source::{PrometheusClient, SourceConfig};
//! let client = PrometheusClient::new(&SourceConfig::new("http://127.0.0.1:9090"))?;
//! let cpu = client.query("process_cpu_usage", std::time::SystemTime::now()).await?;
//! for sample in &cpu.samples {
//!     println!("{:?} {}", sample.labels.get("application"), sample.value);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod response;
mod split;
#[cfg(test)]
mod tests;

pub use client::PrometheusClient;
pub use config::{BasicAuthConfig, InvalidDuration, MAX_DURATION, SourceConfig, parse_duration};
pub use error::SourceError;
pub use response::{InstantVector, LabelValues, Labels, Point, RangeMatrix, Sample, Series, Warnings};
pub use split::{Chunk, MAX_POINTS_PER_QUERY, MAX_RANGE_POINTS, range_points, split_range};
