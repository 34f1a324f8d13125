//! What `/metrics` shows: the anomaly series (built fresh from the latest snapshot on every
//! scrape) and the exporter's own metrics.
//!
//! Scores follow node_exporter's collector pattern: [`ScoresCollector`] encodes const gauges from
//! the engine's latest [`Snapshot`], so a series that vanished upstream disappears by itself and
//! a scrape never waits for a cycle. Self-metrics are ordinary registered handles in
//! [`SelfMetrics`]. No sample carries a timestamp.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::classify::{Severity, Thresholds};

/// One (service, signal) series as of the last cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesState {
    /// The service (the value of the signal's service label).
    pub service: String,
    /// The signal's name.
    pub signal: String,
    /// The value scored.
    pub value: f64,
    /// The anomaly score (1.0 = decision threshold), `None` while warming up.
    pub anomaly_score: Option<f64>,
    /// max(threshold level, anomaly level).
    pub severity: Severity,
    /// The thresholds that applied.
    pub thresholds: Thresholds,
    /// When its model was last fitted (ms since the epoch, by the data's clock).
    pub model_trained_at_ms: Option<i64>,
    /// Points that model was fitted on.
    pub model_rows: usize,
}

/// Everything the last cycle produced, swapped in whole.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Series present in the last successful answer of their signal, sorted by service, signal.
    pub series: Vec<SeriesState>,
    /// When the cycle evaluated (seconds since the epoch); `None` before the first.
    pub evaluated_at_seconds: Option<f64>,
}

/// The latest snapshot, shared by the engine (writer) and scrapes and handlers (readers). The
/// lock is held only to clone or replace an `Arc`.
#[derive(Debug, Default)]
pub struct SnapshotCell(RwLock<Arc<Snapshot>>);

impl SnapshotCell {
    /// The latest snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the snapshot.
    pub fn store(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        match self.0.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

// Label sets borrow from the snapshot, so a scrape copies no strings. The derive macro does not
// take lifetimes, hence the hand-written `EncodeLabelSet` impls.

/// `{service, signal}` of a series.
#[derive(Debug, Clone, Copy)]
struct SeriesLabels<'a> {
    service: &'a str,
    signal: &'a str,
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("service", self.service), ("signal", self.signal)].encode(encoder)
    }
}

/// No labels: a single series.
#[derive(Debug, Clone, Copy)]
struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(&self, _encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// `{service, signal, level}` of a static threshold.
#[derive(Debug, Clone, Copy)]
struct ThresholdLabels<'a> {
    service: &'a str,
    signal: &'a str,
    level: &'a str,
}

impl EncodeLabelSet for ThresholdLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("service", self.service), ("signal", self.signal), ("level", self.level)].encode(encoder)
    }
}

/// Encodes the anomaly series from the latest snapshot on every scrape.
#[derive(Debug)]
pub struct ScoresCollector {
    snapshot: Arc<SnapshotCell>,
    interval_seconds: f64,
}

impl ScoresCollector {
    /// A collector reading `snapshot`; `interval_seconds` is stated in the HELP texts, since the
    /// values are computed on our schedule, not at scrape time.
    pub fn new(snapshot: Arc<SnapshotCell>, interval_seconds: f64) -> Self {
        Self { snapshot, interval_seconds }
    }
}

fn gauge_family<'a, L: EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl Iterator<Item = (L, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, ConstGauge::new(0.0).metric_type())?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ScoresCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot.load();
        let every = format!("evaluated every {}s", self.interval_seconds);
        let series = &snapshot.series;
        fn labels(s: &SeriesState) -> SeriesLabels<'_> {
            SeriesLabels { service: &s.service, signal: &s.signal }
        }
        gauge_family(
            &mut encoder,
            "anomaly_score",
            &format!(
                "Anomaly score of the series; 1.0 is the model's decision threshold, above 1 is anomalous ({every})"
            ),
            None,
            series.iter().filter_map(|s| Some((labels(s), s.anomaly_score?))),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_severity",
            &format!(
                "Severity: 0 normal, 1 warning, 2 high, 3 critical; the larger of the threshold and anomaly levels ({every})"
            ),
            None,
            series.iter().map(|s| (labels(s), f64::from(s.severity as u8))),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_value",
            &format!("The value scored, as the signal's query returned it ({every})"),
            None,
            series.iter().map(|s| (labels(s), s.value)),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_threshold",
            "Static threshold of the series for each configured level",
            None,
            series.iter().flat_map(|s| {
                s.thresholds.levels().map(move |(level, value)| {
                    (ThresholdLabels { service: &s.service, signal: &s.signal, level: level.as_str() }, value)
                })
            }),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_model_warmup",
            "1 while the series has no model yet (its score is not exported), else 0",
            None,
            series.iter().map(|s| (labels(s), if s.model_trained_at_ms.is_some() { 0.0 } else { 1.0 })),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_model_trained_timestamp_seconds",
            "When the series' model was last fitted, by the data's clock",
            None,
            series.iter().filter_map(|s| Some((labels(s), s.model_trained_at_ms? as f64 / 1000.0))),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_service_score",
            &format!(
                "Largest anomaly score over the service's signals; `signal` names the one that drives it ({every})"
            ),
            None,
            // `signal` names the signal with the largest score: what drives the service's score.
            service_scores(series)
                .into_iter()
                .map(|(service, signal, score)| (SeriesLabels { service, signal }, score)),
        )?;
        gauge_family(
            &mut encoder,
            "anomaly_exporter_last_evaluation_timestamp_seconds",
            "When the scores now exported were computed",
            None,
            snapshot.evaluated_at_seconds.map(|t| (NoLabels, t)).into_iter(),
        )?;
        Ok(())
    }
}

/// For each service, its largest score and the signal that has it (series are sorted by
/// service, so one pass suffices).
pub fn service_scores(series: &[SeriesState]) -> Vec<(&str, &str, f64)> {
    let mut out: Vec<(&str, &str, f64)> = Vec::new();
    for s in series {
        let Some(score) = s.anomaly_score else { continue };
        match out.last_mut() {
            Some(last) if last.0 == s.service => {
                if score > last.2 {
                    *last = (&s.service, &s.signal, score);
                }
            }
            _ => out.push((&s.service, &s.signal, score)),
        }
    }
    out
}

/// Labels of per-signal self-metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    /// The signal's name.
    pub signal: String,
}

/// Labels of per-signal error counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalErrorLabels {
    /// The signal's name.
    pub signal: String,
    /// A short, stable reason (`timeout`, `connect`, `bad_data`, ...).
    pub reason: String,
}

/// The exporter's own metrics, under `anomaly_exporter_`.
#[derive(Debug, Clone)]
pub struct SelfMetrics {
    /// Duration of whole cycles.
    pub cycle_duration: Histogram,
    /// Cycles run.
    pub cycles: Counter,
    /// Duration of Prometheus queries, by signal.
    pub query_duration: Family<SignalLabels, Histogram>,
    /// Failed Prometheus queries, by signal and reason.
    pub query_errors: Family<SignalErrorLabels, Counter>,
    /// Answers that carried warnings or were partial, by signal.
    pub query_warnings: Family<SignalLabels, Counter>,
    /// 1 when the last cycle's queries all succeeded.
    pub source_up: Gauge,
    /// (service, signal) series held in memory.
    pub series_tracked: Gauge,
    /// Models fitted (first fits and refits).
    pub models_trained: Counter,
    /// When the last cycle whose queries all succeeded finished.
    pub last_successful_cycle: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Points that could not be scored (NaN, infinite), by signal.
    pub points_skipped: Family<SignalLabels, Counter>,
    /// Query samples without the signal's service label (skipped), by signal.
    pub samples_unlabelled: Family<SignalLabels, Counter>,
    /// The datasets and model training.
    pub datasets: DatasetMetrics,
    /// Log queries (`/logs` and the alert notifier's correlation).
    pub logs: crate::logs::LogsMetrics,
    /// Slack notifications of the alert webhook.
    pub slack: crate::alerts::slack::SlackMetrics,
    /// The alert webhook's and the incidents' self-metrics.
    pub webhook: crate::alerts::WebhookMetrics,
}

impl SelfMetrics {
    /// Creates the metrics and registers them, with build info and process metrics, in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            cycle_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            cycles: Counter::default(),
            query_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))),
            query_errors: Family::default(),
            query_warnings: Family::default(),
            source_up: Gauge::default(),
            series_tracked: Gauge::default(),
            models_trained: Counter::default(),
            last_successful_cycle: Gauge::default(),
            points_skipped: Family::default(),
            samples_unlabelled: Family::default(),
            datasets: DatasetMetrics::default(),
            logs: crate::logs::LogsMetrics::default(),
            slack: crate::alerts::slack::SlackMetrics::default(),
            webhook: crate::alerts::WebhookMetrics::default(),
        };
        let own = registry.sub_registry_with_prefix("anomaly_exporter");
        own.register(
            "build",
            "Build information: version, git revision and compiler",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("revision", env!("ANOMALY_EXPORTER_REVISION").to_owned()),
                ("rustc", env!("ANOMALY_EXPORTER_RUSTC").to_owned()),
            ]),
        );
        own.register_with_unit(
            "cycle_duration",
            "Duration of a whole cycle: query, score, export",
            Unit::Seconds,
            metrics.cycle_duration.clone(),
        );
        own.register("cycles", "Cycles run", metrics.cycles.clone());
        own.register_with_unit(
            "query_duration",
            "Duration of Prometheus queries, by signal",
            Unit::Seconds,
            metrics.query_duration.clone(),
        );
        own.register("query_errors", "Failed Prometheus queries, by signal and reason", metrics.query_errors.clone());
        own.register(
            "query_warnings",
            "Prometheus answers that carried warnings or were partial, by signal",
            metrics.query_warnings.clone(),
        );
        own.register("source_up", "1 when every query of the last cycle succeeded, else 0", metrics.source_up.clone());
        own.register("series_tracked", "(service, signal) series held in memory", metrics.series_tracked.clone());
        own.register("models_trained", "Models fitted, first fits and refits", metrics.models_trained.clone());
        own.register_with_unit(
            "last_successful_cycle_timestamp",
            "When the last cycle whose queries all succeeded finished",
            Unit::Seconds,
            metrics.last_successful_cycle.clone(),
        );
        own.register(
            "points_skipped",
            "Points not scored because their value was NaN or infinite, by signal",
            metrics.points_skipped.clone(),
        );
        own.register(
            "samples_unlabelled",
            "Query samples skipped because they lack the signal's service label, by signal",
            metrics.samples_unlabelled.clone(),
        );
        metrics.datasets.register(own);
        metrics.logs.register(own);
        metrics.slack.register(own);
        metrics.webhook.register(own);
        registry.register_collector(Box::new(ProcessCollector));
        metrics
    }
}

/// Labels of per-dataset counters: `history` or `anomalies`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasetLabels {
    /// The dataset's directory name.
    pub dataset: String,
}

/// Self-metrics of the datasets (`store`) and of training (`train`).
#[derive(Debug, Clone)]
pub struct DatasetMetrics {
    /// Rows written, by dataset.
    pub rows_written: Family<DatasetLabels, Counter>,
    /// Parquet files written by flushes.
    pub files_written: Counter,
    /// Flushes that failed (retried at the next flush).
    pub flush_errors: Counter,
    /// Unwritten rows dropped because too many were held (the datasets stayed unwritable).
    pub rows_dropped: Counter,
    /// Duration of flushes.
    pub flush_duration: Histogram,
    /// Part files merged away by compaction.
    pub files_compacted: Counter,
    /// Day partitions deleted by retention.
    pub partitions_deleted: Counter,
    /// Partitions (or whole series' datasets) a maintenance pass could not maintain, and whole
    /// passes that failed: each logged, and retried at the next pass. Alert on its rate: a
    /// partition that fails every pass is never compacted or expired.
    pub maintenance_failures: Counter,
    /// Bytes under the datasets root, as of the last maintenance pass.
    pub dataset_bytes: Gauge,
    /// Duration of model training jobs (one model each).
    pub training_duration: Histogram,
    /// Models whose training failed.
    pub training_failures: Counter,
}

impl Default for DatasetMetrics {
    fn default() -> Self {
        Self {
            rows_written: Family::default(),
            files_written: Counter::default(),
            flush_errors: Counter::default(),
            rows_dropped: Counter::default(),
            flush_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            files_compacted: Counter::default(),
            partitions_deleted: Counter::default(),
            maintenance_failures: Counter::default(),
            dataset_bytes: Gauge::default(),
            training_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            training_failures: Counter::default(),
        }
    }
}

impl DatasetMetrics {
    fn register(&self, own: &mut Registry) {
        own.register("dataset_rows_written", "Rows written to the datasets, by dataset", self.rows_written.clone());
        own.register("dataset_files_written", "Parquet files written by dataset flushes", self.files_written.clone());
        own.register("dataset_flush_errors", "Dataset flushes that failed and were retried", self.flush_errors.clone());
        own.register(
            "dataset_rows_dropped",
            "Unwritten dataset rows dropped because the datasets stayed unwritable for too long",
            self.rows_dropped.clone(),
        );
        own.register_with_unit(
            "dataset_flush_duration",
            "Duration of dataset flushes",
            Unit::Seconds,
            self.flush_duration.clone(),
        );
        own.register("dataset_files_compacted", "Part files merged away by compaction", self.files_compacted.clone());
        own.register(
            "dataset_files_set_aside",
            "Dataset part files that could not be read, renamed *.unreadable and skipped",
            crate::store::FILES_SET_ASIDE.clone(),
        );
        own.register(
            "dataset_partitions_deleted",
            "Day partitions deleted by retention",
            self.partitions_deleted.clone(),
        );
        own.register(
            "dataset_maintenance_failures",
            "Dataset partitions (or series, or whole passes) a maintenance pass could not maintain; retried at the next pass",
            self.maintenance_failures.clone(),
        );
        own.register_with_unit(
            "dataset",
            "Bytes under the datasets root, as of the last maintenance pass",
            Unit::Bytes,
            self.dataset_bytes.clone(),
        );
        own.register_with_unit(
            "training_duration",
            "Duration of model training jobs, one model each",
            Unit::Seconds,
            self.training_duration.clone(),
        );
        own.register("training_failures", "Models whose training failed", self.training_failures.clone());
    }
}

/// Seconds since the epoch.
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The standard `process_*` metrics, read from `/proc/self` on Linux (none elsewhere).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = crate::process::ProcessStats::read() else { return Ok(()) };
        let samples: [(&str, &str, f64); 6] = [
            ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds", process.cpu_seconds),
            ("process_resident_memory_bytes", "Resident memory size in bytes", process.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", process.virtual_bytes),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                process.start_time_seconds,
            ),
            ("process_open_fds", "Number of open file descriptors", process.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", process.max_fds),
        ];
        for (name, help, value) in samples {
            if name.ends_with("_total") {
                let counter = prometheus_client::metrics::counter::ConstCounter::new(value);
                let metric =
                    encoder.encode_descriptor(name.trim_end_matches("_total"), help, None, counter.metric_type())?;
                counter.encode(metric)?;
            } else {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}
