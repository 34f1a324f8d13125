//! Batching points into files: the engine sends, this task buffers and flushes.
//!
//! The engine hands each cycle's scored points (and backfilled ones) over an unbounded channel,
//! so a slow disk never delays a cycle. The writer keeps, per series, the newest timestamp it
//! has accepted (flushed or pending) and drops anything at or before it, so a backfill that
//! overlaps what was flushed before a crash writes no duplicate. It also keeps a
//! [`FeatureWindow`] per series, fed every point in order, so stored features are the ones the
//! detector computed. Every `flush_interval` (and when the channel closes, at shutdown) the
//! pending rows are written, one file per series and day, with the I/O in `spawn_blocking`.
//!
//! A flush that fails (a full disk, a directory made read-only) keeps its rows for the next one,
//! but not without bound: past [`MAX_PENDING_ROWS`] the oldest unwritten rows of each series are
//! dropped, counted in `anomaly_exporter_dataset_rows_dropped_total` and logged, so a datasets
//! directory that stays unwritable costs a bounded amount of memory (about 150 bytes a row) while
//! the detector goes on. A series that sends nothing for [`FORGET_IDLE_AFTER`] (a service scaled
//! away, a label value that churns) has its feature window dropped too; only its last timestamp
//! is kept, so a backfill that brings it back still writes no duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::{debug, info, warn};

use super::DatasetsConfig;
use super::{DatasetKind, Datasets, PointRow, StoreError, partition_name, rows_to_batch, write_batch_atomically};
use crate::config::Signal;
use crate::engine::SeriesKey;
use crate::export::DatasetMetrics;
use crate::features::FeatureWindow;

/// One point as the engine hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    /// The series.
    pub key: SeriesKey,
    /// Evaluation time, ms since the epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
    /// The anomaly score, `None` when not scored (warming up, backfilled).
    pub anomaly_score: Option<f64>,
    /// Severity, 0–3.
    pub severity: u8,
    /// Generation of the model that scored it.
    pub model_version: Option<u64>,
}

/// The engine's end of the writer's channel, with what it needs to know for backfills.
#[derive(Debug, Clone)]
pub struct StoreSink {
    sender: UnboundedSender<Vec<StoredPoint>>,
    /// Each series' newest point: on disk at start, then as handed to the writer. Kept up to
    /// date because a series the engine dropped (gone for longer than `service_grace`, or every
    /// series after an outage of Prometheus) is backfilled from here when it comes back: from the
    /// start's snapshot, that was as far back as the daemon's start (a range query over every
    /// service of the signal for days), and a series first seen after the start had no entry at
    /// all (a hole when it was gone for longer than `backfill`).
    newest_points: Arc<Mutex<HashMap<SeriesKey, i64>>>,
    retention: Duration,
}

impl StoreSink {
    /// A sink sending on `sender`; `last_flushed` is each series' newest timestamp on disk at
    /// start, and `retention` bounds how far back a backfill reaches.
    pub fn new(
        sender: UnboundedSender<Vec<StoredPoint>>,
        last_flushed: HashMap<SeriesKey, i64>,
        retention: Duration,
    ) -> Self {
        Self { sender, newest_points: Arc::new(Mutex::new(last_flushed)), retention }
    }

    /// Hands points to the writer; never blocks. After the writer stopped (shutdown) they are
    /// dropped, and the next start backfills them.
    pub fn send(&self, points: Vec<StoredPoint>) {
        {
            let mut newest = self.newest_points.lock().unwrap_or_else(PoisonError::into_inner);
            for point in &points {
                match newest.get_mut(&point.key) {
                    Some(timestamp_ms) => *timestamp_ms = (*timestamp_ms).max(point.timestamp_ms),
                    None => {
                        newest.insert(point.key.clone(), point.timestamp_ms);
                    }
                }
            }
        }
        let _ = self.sender.send(points);
    }

    /// Where a backfill of `services` of `signal` must start so no stored series has a hole: the
    /// oldest of their newest points, but not before `now − retention`. `None` when none of them
    /// has one (within retention).
    pub fn resume_from(&self, signal: &Signal, services: &HashSet<String>, now: SystemTime) -> Option<SystemTime> {
        let horizon = now.checked_sub(self.retention).unwrap_or(UNIX_EPOCH);
        let horizon_ms = i64::try_from(horizon.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0);
        let mut newest = self.newest_points.lock().unwrap_or_else(PoisonError::into_inner);
        // Series not seen within retention can never be resumed: forget them, so the map holds
        // the series of the last `retention` only.
        newest.retain(|_, timestamp_ms| *timestamp_ms >= horizon_ms);
        let oldest = services
            .iter()
            .filter_map(|service| newest.get(&SeriesKey { service: service.clone(), signal: signal.name.clone() }))
            .min()?;
        let resume = UNIX_EPOCH + Duration::from_millis(u64::try_from(*oldest).unwrap_or(0));
        Some(resume.max(horizon))
    }
}

/// Rows held for writing, over every series, beyond which the oldest are dropped (about 150 MB;
/// at 10,000 series every 15 s, 25 minutes of a datasets directory that cannot be written).
pub const MAX_PENDING_ROWS: usize = 1_000_000;

/// How long a series may send nothing before its feature window is dropped.
pub const FORGET_IDLE_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct SeriesBuffer {
    /// When the last point arrived, for [`DatasetWriter::forget_idle`].
    last_arrival: Instant,
    window: FeatureWindow,
    /// Newest timestamp the feature window has seen.
    window_last_ms: Option<i64>,
    /// Newest timestamp flushed or pending: anything at or before it is a duplicate.
    accepted_last_ms: Option<i64>,
    pending: Vec<PointRow>,
}

/// Rows waiting to be written, taken out of the writer for a flush.
#[derive(Debug, Default)]
pub struct PendingRows(Vec<(SeriesKey, Vec<PointRow>)>);

impl PendingRows {
    /// Rows in it.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, rows)| rows.len()).sum()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Rows written to history.
    pub history_rows: u64,
    /// Rows written to anomalies.
    pub anomaly_rows: u64,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The buffering half of the writer (no I/O of its own but [`DatasetWriter::open`]).
#[derive(Debug)]
pub struct DatasetWriter {
    datasets: Datasets,
    window_points: usize,
    series: HashMap<SeriesKey, SeriesBuffer>,
    /// The newest accepted timestamp of series forgotten as idle: what their duplicates check
    /// needs, without their feature windows.
    forgotten: HashMap<SeriesKey, i64>,
}

impl DatasetWriter {
    /// A writer over `datasets` whose feature windows hold `window_points` points, knowing the
    /// last flushed timestamp of each series already on disk.
    pub fn open(datasets: Datasets, window_points: usize, last_flushed: &HashMap<SeriesKey, i64>) -> Self {
        let series = last_flushed
            .iter()
            .map(|(key, &last)| (key.clone(), SeriesBuffer::new(window_points, Some(last))))
            .collect();
        Self { datasets, window_points, series, forgotten: HashMap::new() }
    }

    /// The datasets written to.
    pub fn datasets(&self) -> &Datasets {
        &self.datasets
    }

    /// Buffers points (in timestamp order per series); returns how many were new.
    pub fn accept(&mut self, points: Vec<StoredPoint>) -> usize {
        let mut accepted = 0;
        for point in points {
            let window_points = self.window_points;
            let forgotten = &mut self.forgotten;
            let buffer = self
                .series
                .entry(point.key)
                .or_insert_with_key(|key| SeriesBuffer::new(window_points, forgotten.remove(key)));
            buffer.last_arrival = Instant::now();
            if buffer.window_last_ms.is_some_and(|last| point.timestamp_ms <= last) {
                continue;
            }
            buffer.window_last_ms = Some(point.timestamp_ms);
            let features = buffer.window.push(point.value);
            if buffer.accepted_last_ms.is_some_and(|last| point.timestamp_ms <= last) {
                continue;
            }
            buffer.accepted_last_ms = Some(point.timestamp_ms);
            buffer.pending.push(PointRow {
                timestamp_ms: point.timestamp_ms,
                value: point.value,
                features: PointRow::features_from(features),
                anomaly_score: point.anomaly_score,
                severity: point.severity,
                model_version: point.model_version,
            });
            accepted += 1;
        }
        accepted
    }

    /// Takes every pending row out, for [`write_pending`].
    pub fn take_pending(&mut self) -> PendingRows {
        PendingRows(
            self.series
                .iter_mut()
                .filter(|(_, buffer)| !buffer.pending.is_empty())
                .map(|(key, buffer)| (key.clone(), std::mem::take(&mut buffer.pending)))
                .collect(),
        )
    }

    /// Puts rows back after a failed flush, ahead of anything buffered since; then, if more
    /// than `max_rows` are pending, drops the oldest of each series in proportion to what it
    /// holds (each keeps its newest share). Returns how many rows were dropped.
    pub fn restore_pending(&mut self, pending: PendingRows, max_rows: usize) -> usize {
        for (key, mut rows) in pending.0 {
            if let Some(buffer) = self.series.get_mut(&key) {
                rows.append(&mut buffer.pending);
                buffer.pending = rows;
            }
        }
        let total: usize = self.series.values().map(|b| b.pending.len()).sum();
        if total <= max_rows {
            return 0;
        }
        let mut dropped = 0;
        for buffer in self.series.values_mut() {
            let held = buffer.pending.len();
            // Rounded down, so the total kept never exceeds `max_rows`.
            let keep = (held as u128 * max_rows as u128 / total as u128) as usize;
            buffer.pending.drain(..held - keep);
            dropped += held - keep;
        }
        dropped
    }

    /// Drops the feature windows of series that sent nothing for `idle` and hold nothing to
    /// write, keeping their last timestamp; returns how many were dropped.
    pub fn forget_idle(&mut self, idle: Duration) -> usize {
        let before = self.series.len();
        let forgotten = &mut self.forgotten;
        self.series.retain(|key, buffer| {
            let keep = !buffer.pending.is_empty() || buffer.last_arrival.elapsed() < idle;
            if !keep && let Some(last) = buffer.accepted_last_ms {
                forgotten.insert(key.clone(), last);
            }
            keep
        });
        before - self.series.len()
    }
}

impl SeriesBuffer {
    fn new(window_points: usize, accepted_last_ms: Option<i64>) -> Self {
        SeriesBuffer {
            last_arrival: Instant::now(),
            window: FeatureWindow::new(window_points),
            window_last_ms: None,
            accepted_last_ms,
            pending: Vec::new(),
        }
    }
}

/// Writes pending rows: per series and day, one history file and (when some rows are
/// anomalous) one anomalies file. Series whose write failed are handed back for a retry.
pub fn write_pending(datasets: &Datasets, pending: PendingRows) -> (FlushReport, PendingRows, Vec<StoreError>) {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut report = FlushReport::default();
    let mut failed = PendingRows::default();
    let mut errors = Vec::new();
    let mut sequence = 0u32;
    for (key, rows) in pending.0 {
        let mut start = 0;
        // Rows arrive in timestamp order, so each day is one contiguous run.
        while start < rows.len() {
            let day = partition_name(rows[start].timestamp_ms);
            let end = rows[start..]
                .iter()
                .position(|r| partition_name(r.timestamp_ms) != day)
                .map_or(rows.len(), |n| start + n);
            sequence += 1;
            let file_name = format!("part-{stamp:013}-{sequence:06}.parquet");
            if let Err(error) = write_day(datasets, &key, &day, &file_name, &rows[start..end], &mut report) {
                // Days already written stay written; only the rest is handed back.
                errors.push(error);
                break;
            }
            start = end;
        }
        if start < rows.len() {
            failed.0.push((key, rows[start..].to_vec()));
        }
    }
    (report, failed, errors)
}

fn write_day(
    datasets: &Datasets,
    key: &SeriesKey,
    day: &str,
    file_name: &str,
    rows: &[PointRow],
    report: &mut FlushReport,
) -> Result<(), StoreError> {
    let anomalies: Vec<PointRow> = rows.iter().filter(|r| r.is_anomaly()).copied().collect();
    // Anomalies first: should the history write fail, the retry rewrites both, and an anomaly
    // row duplicated in its own dataset is cheaper than one missing.
    if !anomalies.is_empty() {
        let directory = datasets.series_directory(key, DatasetKind::Anomalies).join(day);
        report.bytes += write_batch_atomically(&directory, file_name, &rows_to_batch(&anomalies)?)?;
        report.files += 1;
        report.anomaly_rows += anomalies.len() as u64;
    }
    let directory = datasets.series_directory(key, DatasetKind::History).join(day);
    report.bytes += write_batch_atomically(&directory, file_name, &rows_to_batch(rows)?)?;
    report.files += 1;
    report.history_rows += rows.len() as u64;
    Ok(())
}

/// The writer task: buffers what arrives on `points`, flushes every `flush_interval`, and
/// flushes one last time when the channel closes (the engine stopped). `maintenance` runs
/// between flushes, on the same task, so it never races a flush.
pub async fn run_writer(
    mut writer: DatasetWriter,
    mut points: UnboundedReceiver<Vec<StoredPoint>>,
    flush_interval: Duration,
    metrics: DatasetMetrics,
    mut maintenance: impl FnMut(&Datasets) + Send + Clone + 'static,
    maintenance_every: Duration,
) {
    let mut ticker = tokio::time::interval(flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_maintenance: Option<Instant> = None;
    loop {
        tokio::select! {
            received = points.recv() => match received {
                Some(batch) => {
                    writer.accept(batch);
                }
                None => break,
            },
            _ = ticker.tick() => {
                flush(&mut writer, &metrics).await;
                let forgotten = writer.forget_idle(FORGET_IDLE_AFTER);
                if forgotten > 0 {
                    debug!(series = forgotten, "feature windows of idle series dropped");
                }
                if last_maintenance.is_none_or(|at| at.elapsed() >= maintenance_every) {
                    last_maintenance = Some(Instant::now());
                    let datasets = writer.datasets().clone();
                    let mut pass = maintenance.clone();
                    let _ = tokio::task::spawn_blocking(move || pass(&datasets)).await;
                }
            }
        }
    }
    flush(&mut writer, &metrics).await;
    let _ = &mut maintenance;
    info!("dataset writer stopped after its last flush");
}

async fn flush(writer: &mut DatasetWriter, metrics: &DatasetMetrics) {
    let pending = writer.take_pending();
    if pending.is_empty() {
        return;
    }
    let rows = pending.len();
    let datasets = writer.datasets().clone();
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || write_pending(&datasets, pending)).await {
        Ok((report, failed, errors)) => {
            metrics.rows_written.get_or_create(&history_labels()).inc_by(report.history_rows);
            metrics.rows_written.get_or_create(&anomalies_labels()).inc_by(report.anomaly_rows);
            metrics.files_written.inc_by(report.files);
            metrics.flush_duration.observe(started.elapsed().as_secs_f64());
            debug!(rows, files = report.files, bytes = report.bytes, "datasets flushed");
            if !errors.is_empty() {
                metrics.flush_errors.inc_by(errors.len() as u64);
                warn!(failed_series = errors.len(), error = %errors[0], "dataset flush failed; retrying next flush");
                let dropped = writer.restore_pending(failed, MAX_PENDING_ROWS);
                if dropped > 0 {
                    metrics.rows_dropped.inc_by(dropped as u64);
                    warn!(
                        dropped,
                        max_pending_rows = MAX_PENDING_ROWS,
                        "datasets unwritable for too long: the oldest unwritten rows were dropped"
                    );
                }
            }
        }
        Err(error) => warn!(%error, "dataset flush task failed"),
    }
}

fn history_labels() -> crate::export::DatasetLabels {
    crate::export::DatasetLabels { dataset: DatasetKind::History.directory().to_owned() }
}

fn anomalies_labels() -> crate::export::DatasetLabels {
    crate::export::DatasetLabels { dataset: DatasetKind::Anomalies.directory().to_owned() }
}

/// How often retention and compaction run (and once at start, which also finishes compactions
/// a crash interrupted).
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// Opens the datasets of `config` (creating the root), reads each series' last flushed point
/// and starts the writer task. Returns the engine's sink and the task, which ends after its
/// last flush once every sink is dropped.
pub async fn start(
    config: &DatasetsConfig,
    window_points: usize,
    metrics: DatasetMetrics,
) -> Result<(StoreSink, tokio::task::JoinHandle<()>), StoreError> {
    let datasets = Datasets::new(&config.path);
    let scan = datasets.clone();
    let last_flushed = tokio::task::spawn_blocking(move || -> Result<HashMap<SeriesKey, i64>, StoreError> {
        std::fs::create_dir_all(scan.root())
            .map_err(|source| StoreError::Io { path: scan.root().to_owned(), source })?;
        let mut last = HashMap::new();
        let now = super::maintain::now_ms();
        for key in scan.series()? {
            // A partition a crash tore mid-compaction is repaired before it is read.
            for (_, partition) in scan.partitions(&key, DatasetKind::History)? {
                super::maintain::recover_partition(&partition)?;
            }
            let found = scan.last_timestamp_until(&key, now)?;
            if let Some(newest_after) = found.newest_after {
                warn!(
                    service = %key.service,
                    signal = %key.signal,
                    rows = found.rows_after,
                    newest = %crate::calendar::format_rfc3339_ms(newest_after),
                    "history has rows dated after now (written while the clock was ahead): they are kept, \
                     and new points are written beside them"
                );
            }
            if let Some(timestamp) = found.newest {
                last.insert(key, timestamp);
            }
        }
        Ok(last)
    })
    .await
    .map_err(|e| StoreError::Io { path: config.path.clone(), source: std::io::Error::other(e.to_string()) })??;
    info!(path = %config.path.display(), series = last_flushed.len(), "datasets opened");
    let writer = DatasetWriter::open(datasets, window_points, &last_flushed);
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let sink = StoreSink::new(sender, last_flushed, config.retention);
    let retention_ms = config.retention.as_millis() as i64;
    let maintenance_metrics = metrics.clone();
    let maintenance = move |datasets: &Datasets| {
        match super::maintain::maintain(datasets, retention_ms, super::maintain::now_ms()) {
            Ok(report) => {
                maintenance_metrics.files_compacted.inc_by(report.files_compacted);
                maintenance_metrics.partitions_deleted.inc_by(report.partitions_deleted);
                maintenance_metrics.maintenance_failures.inc_by(report.partitions_failed);
            }
            Err(error) => {
                warn!(%error, "dataset maintenance failed; retrying at the next pass");
                maintenance_metrics.maintenance_failures.inc();
            }
        }
        if let Ok(bytes) = datasets.total_bytes() {
            maintenance_metrics.dataset_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    };
    let task =
        tokio::spawn(run_writer(writer, receiver, config.flush_interval, metrics, maintenance, MAINTENANCE_EVERY));
    Ok((sink, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(service: &str) -> SeriesKey {
        SeriesKey { service: service.into(), signal: "cpu".into() }
    }

    fn point(service: &str, timestamp_ms: i64, value: f64) -> StoredPoint {
        StoredPoint { key: key(service), timestamp_ms, value, anomaly_score: None, severity: 0, model_version: None }
    }

    #[test]
    fn a_backfill_resumes_from_the_newest_point_handed_to_the_writer_not_the_starts_snapshot() {
        let day_ms = 86_400_000;
        let now = UNIX_EPOCH + Duration::from_millis(10 * day_ms as u64);
        let (sender, _receiver) = tokio::sync::mpsc::unbounded_channel();
        // On disk at start: a three days ago, `old` eight days ago (beyond a 7-day retention).
        let at_start = HashMap::from([(key("a"), 7 * day_ms), (key("old"), 2 * day_ms)]);
        let sink = StoreSink::new(sender, at_start, Duration::from_millis(7 * day_ms as u64));
        let cpu = crate::config::default_signals().remove("cpu").unwrap();
        let signal = Signal {
            name: "cpu".into(),
            query: cpu.query,
            service_label: cpu.service_label,
            thresholds: cpu.thresholds,
            overrides: std::collections::BTreeMap::new(),
            min_deviation: cpu.min_deviation,
            detection_direction: cpu.detection_direction,
        };
        let resume = |services: &[&str]| {
            let services: HashSet<String> = services.iter().map(|s| (*s).to_owned()).collect();
            sink.resume_from(&signal, &services, now).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64)
        };
        assert_eq!(resume(&["a"]), Some(7 * day_ms));
        assert_eq!(resume(&["old"]), None, "gone for longer than the retention: a plain backfill");

        // The daemon runs on: a's points and b's (first seen after the start) reach the writer.
        let newest = 10 * day_ms - 60_000;
        sink.send(vec![point("a", newest - 15_000, 1.0), point("a", newest, 1.0), point("b", newest - 30_000, 1.0)]);
        assert_eq!(resume(&["a"]), Some(newest), "where a stopped, not where the daemon started");
        assert_eq!(resume(&["b"]), Some(newest - 30_000));
        assert_eq!(resume(&["a", "b"]), Some(newest - 30_000), "the oldest of the services' newest points");
        assert_eq!(resume(&["never-seen"]), None);
        // An older point (a backfill) does not move it back.
        sink.send(vec![point("a", 8 * day_ms, 1.0)]);
        assert_eq!(resume(&["a"]), Some(newest));
    }

    #[test]
    fn drops_duplicates_and_already_flushed_points_but_warms_features_on_them() {
        let dir = tempfile::tempdir().unwrap();
        let last_flushed = HashMap::from([(key("a"), 3_000)]);
        let mut writer = DatasetWriter::open(Datasets::new(dir.path()), 5, &last_flushed);
        // A backfill overlapping what was flushed, then live points, one repeated.
        let accepted = writer.accept((0..6).map(|i| point("a", i * 1000, i as f64)).collect());
        assert_eq!(accepted, 2, "4000 and 5000 only");
        assert_eq!(writer.accept(vec![point("a", 5000, 9.0), point("a", 6000, 6.0)]), 1);
        let pending = writer.take_pending();
        let rows = &pending.0[0].1;
        assert_eq!(rows.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(), [4000, 5000, 6000]);
        // Features saw the points before 4000: the window was warm.
        assert!(rows.iter().all(|r| r.complete_features().is_some()));
        assert!(writer.take_pending().is_empty());
    }

    #[test]
    fn rows_held_through_failed_flushes_are_bounded_keeping_each_series_newest() {
        let dir = tempfile::tempdir().unwrap();
        // The datasets root is a file: every write fails.
        let root = dir.path().join("datasets");
        std::fs::write(&root, b"").unwrap();
        let datasets = Datasets::new(&root);
        let mut writer = DatasetWriter::open(datasets.clone(), 5, &HashMap::new());
        writer.accept((0..60).map(|i| point("a", i * 1000, 1.0)).collect());
        writer.accept((0..20).map(|i| point("b", i * 1000, 1.0)).collect());
        let (report, failed, errors) = write_pending(&datasets, writer.take_pending());
        assert_eq!((report.files, failed.len(), errors.len()), (0, 80, 2));
        assert_eq!(writer.restore_pending(failed, 40), 40);
        let pending = writer.take_pending();
        assert_eq!(pending.len(), 40);
        for (key, rows) in &pending.0 {
            let (kept, newest) = if key.service == "a" { (30, 59_000) } else { (10, 19_000) };
            assert_eq!(rows.len(), kept, "{key:?}");
            assert_eq!(rows.last().unwrap().timestamp_ms, newest, "{key:?}: the newest rows are kept");
        }
        // Under the bound nothing is dropped.
        assert_eq!(writer.restore_pending(pending, 40), 0);
        assert_eq!(writer.take_pending().len(), 40);
    }

    #[test]
    fn an_idle_series_loses_its_window_but_not_its_duplicates_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = DatasetWriter::open(Datasets::new(dir.path()), 5, &HashMap::new());
        writer.accept((0..6).map(|i| point("a", i * 1000, 1.0)).collect());
        writer.accept(vec![point("b", 0, 1.0)]);
        let _ = writer.take_pending();
        writer.accept(vec![point("b", 1000, 1.0)]);
        // "b" still holds a row to write, so only "a" is forgotten.
        assert_eq!(writer.forget_idle(Duration::ZERO), 1);
        assert_eq!(writer.series.len(), 1);
        // "a" comes back with a backfill overlapping what it wrote: only the new point is taken.
        assert_eq!(writer.accept(vec![point("a", 5000, 1.0), point("a", 6000, 1.0)]), 1);
        assert_eq!(writer.forget_idle(Duration::from_secs(3600)), 0);
    }

    #[test]
    fn flush_writes_one_file_per_series_and_day_and_anomalies_apart() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let mut writer = DatasetWriter::open(datasets.clone(), 5, &HashMap::new());
        let day = super::super::DAY_MS;
        let mut points: Vec<StoredPoint> = (0..4).map(|i| point("a", day - 2000 + i * 1000, 1.0)).collect();
        points[3].severity = 2;
        points.push(point("b", 10, 1.0));
        writer.accept(points);
        let (report, failed, errors) = write_pending(&datasets, writer.take_pending());
        assert!(errors.is_empty() && failed.is_empty());
        assert_eq!((report.history_rows, report.anomaly_rows, report.files), (5, 1, 4));
        let a = key("a");
        let history = datasets.read_series(&a, DatasetKind::History, 0, 2 * day).unwrap();
        assert_eq!(history.len(), 4);
        assert_eq!(datasets.partitions(&a, DatasetKind::History).unwrap().len(), 2);
        let anomalies = datasets.read_series(&a, DatasetKind::Anomalies, 0, 2 * day).unwrap();
        assert_eq!(anomalies.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(), [day + 1000]);
        assert_eq!(datasets.last_timestamp_until(&a, i64::MAX).unwrap().newest, Some(day + 1000));
    }
}
