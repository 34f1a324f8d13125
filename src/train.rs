//! Training models from the datasets: one-off (`anomaly-exporter train`), scheduled in the
//! daemon, or asked for over HTTP (`POST /retrain`).
//!
//! A model is fitted through the detector's own path ([`SeriesDetector::warm_up`]: the same
//! features, parameters and training-set size as live refits) on the series' history over the
//! training window, then written under `datasets/models/<service>/<signal>/model-<n>.aem`, `n`
//! counting that series' models (the last [`MODELS_KEPT`] are kept). In the daemon, a
//! [`Trainer`] runs jobs off the async runtime (`spawn_blocking`), never trains one series twice
//! at once (a request touching a series in training gets 409), and hands each fitted model to
//! the engine, which swaps it in between cycles. This module does not score: it fits and files.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

use crate::detect::{DetectorParams, SeriesDetector, read_metadata};
use crate::engine::SeriesKey;
use crate::export::DatasetMetrics;
use crate::store::{DatasetKind, Datasets, StoreError, list_files, write_bytes_atomically};

/// Model files kept per series; older ones are deleted after a successful training.
pub const MODELS_KEPT: usize = 3;

/// Why a series could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading the history or writing the model failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too little history in the window to fit a model.
    #[error("{rows} rows in the training window, {needed} needed")]
    NotEnoughRows {
        /// Rows found.
        rows: usize,
        /// `detector.min_training_points` plus the feature window's first points.
        needed: usize,
    },
}

/// A model fitted and written.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    /// The series.
    pub key: SeriesKey,
    /// History rows read.
    pub rows: usize,
    /// Rows the model was fitted on (the most recent `detector.training_points`).
    pub training_rows: usize,
    /// The model file's number.
    pub number: u64,
    /// The file.
    pub path: PathBuf,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// A series' model files, oldest first, with their numbers.
pub fn model_files(datasets: &Datasets, key: &SeriesKey) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut files: Vec<(u64, PathBuf)> = list_files(&datasets.model_directory(key))?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let number = name.strip_prefix("model-")?.strip_suffix(".aem")?.parse().ok()?;
            Some((number, path))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The newest model file of a series that this build can read, with its number; unreadable
/// files are logged and skipped (the caller retrains).
pub fn latest_model(datasets: &Datasets, key: &SeriesKey) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let Some((number, path)) = model_files(datasets, key)?.pop() else { return Ok(None) };
    let bytes = std::fs::read(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
    match read_metadata(&bytes) {
        Ok(_) => Ok(Some((number, bytes))),
        Err(error) => {
            warn!(path = %path.display(), %error, "model file unusable; the series will be retrained");
            Ok(None)
        }
    }
}

/// The series with a history dataset, restricted to `service` and `signal` when given.
pub fn select_series(
    datasets: &Datasets,
    service: Option<&str>,
    signal: Option<&str>,
) -> Result<Vec<SeriesKey>, StoreError> {
    let mut keys: Vec<SeriesKey> = datasets
        .series()?
        .into_iter()
        .filter(|k| service.is_none_or(|s| s == k.service) && signal.is_none_or(|s| s == k.signal))
        .collect();
    keys.sort();
    Ok(keys)
}

/// Fits `key`'s model on its history over `window` before `now_ms` and writes it.
pub fn train_series(
    datasets: &Datasets,
    key: &SeriesKey,
    params: &DetectorParams,
    window: Duration,
    now_ms: i64,
) -> Result<TrainedModel, TrainError> {
    let from_ms = now_ms - window.as_millis() as i64;
    let rows = datasets.read_series(key, DatasetKind::History, from_ms, now_ms + 1)?;
    let mut detector = SeriesDetector::new(params, key.seed());
    detector.warm_up(params, rows.iter().map(|r| (r.timestamp_ms, r.value)));
    let needed = params.min_training_points + 2;
    let Some(info) = detector.model_info() else {
        return Err(TrainError::NotEnoughRows { rows: rows.len(), needed });
    };
    let existing = model_files(datasets, key)?;
    let number = existing.last().map_or(1, |(n, _)| n + 1);
    detector.set_model_generation(number);
    let window_ms = rows.first().zip(rows.last()).map(|(a, b)| (a.timestamp_ms, b.timestamp_ms));
    let bytes = detector.export_model(window_ms).ok_or(TrainError::NotEnoughRows { rows: rows.len(), needed })?;
    let directory = datasets.model_directory(key);
    let name = format!("model-{number:010}.aem");
    write_bytes_atomically(&directory, &name, &bytes)?;
    // Older models beyond the kept few go; the one just written is never among them.
    let stale = existing.len().saturating_sub(MODELS_KEPT - 1);
    for (_, path) in existing.into_iter().take(stale) {
        let _ = std::fs::remove_file(path);
    }
    Ok(TrainedModel {
        key: key.clone(),
        rows: rows.len(),
        training_rows: info.rows,
        number,
        path: directory.join(name),
        bytes,
    })
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A fitted model for the engine to swap in between cycles.
#[derive(Debug, Clone)]
pub struct ModelSwap {
    /// The series.
    pub key: SeriesKey,
    /// The model file's bytes.
    pub bytes: Vec<u8>,
}

/// A training job's progress, as `GET /retrain/<id>` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobStatus {
    /// The job's id.
    pub job: u64,
    /// `running`, `done` (every model trained) or `failed` (some could not be).
    pub state: &'static str,
    /// Why it was started: `api`, `schedule` or `startup`.
    pub reason: &'static str,
    /// Models to train.
    pub total: usize,
    /// Models trained.
    pub trained: usize,
    /// Models that failed.
    pub failed: usize,
    /// Series a scheduled or start-up job left alone for want of history in the training window:
    /// new ones still warming up live, and gone ones (no longer scraped, whose dataset stays until
    /// `retention`). Not failures: counting them as such fired `AnomalyExporterTrainingFailures`
    /// every day for every service that had gone away. A job asked for with `POST /retrain`
    /// reports them as failures, since someone asked for those models.
    pub skipped: usize,
    /// The first few failures, `service/signal: reason`.
    pub errors: Vec<String>,
}

/// `service="checkout" signal=any`, as a user typed the query, not as Rust prints an `Option`.
fn describe_filter(service: Option<&str>, signal: Option<&str>) -> String {
    let part = |name: &str, value: Option<&str>| match value {
        Some(value) => format!("{name}={value:?}"),
        None => format!("{name}=any"),
    };
    format!("{} {}", part("service", service), part("signal", signal))
}

/// Why a job was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmitError {
    /// No series matches.
    #[error("no series with a dataset matches {}", describe_filter(service.as_deref(), signal.as_deref()))]
    NoSeries {
        /// The service asked for.
        service: Option<String>,
        /// The signal asked for.
        signal: Option<String>,
    },
    /// Some matching series are being trained by another job.
    #[error("{0} of the series asked for are being trained by job {1}; retry when it is done")]
    Busy(usize, u64),
    /// The datasets could not be read.
    #[error("{0}")]
    Store(String),
}

#[derive(Debug, Default)]
struct JobTable {
    next_id: u64,
    jobs: BTreeMap<u64, JobStatus>,
    /// Series in training, and the job training them.
    busy: BTreeMap<SeriesKey, u64>,
}

impl JobTable {
    /// Records job `id` as running on `keys`, each marked busy with it; returns its status.
    fn start_job(&mut self, id: u64, reason: &'static str, keys: &[SeriesKey]) -> JobStatus {
        for key in keys {
            self.busy.insert(key.clone(), id);
        }
        let status = JobStatus {
            job: id,
            state: "running",
            reason,
            total: keys.len(),
            trained: 0,
            failed: 0,
            skipped: 0,
            errors: Vec::new(),
        };
        self.jobs.insert(id, status.clone());
        status
    }
}

/// Jobs kept for `GET /retrain/<id>` after they end.
const FINISHED_JOBS_KEPT: usize = 100;

/// Failures a job's status lists (the count goes on past them).
const MAX_JOB_ERRORS: usize = 10;

/// A job being run: it ends the job in the table when dropped, whether the job ran to its end
/// or a panic unwound out of one series' training. Without it such a panic (a decoder bug the
/// store did not catch, say) left that series and every later one of the job busy, answering
/// `POST /retrain` with 409 and skipped by the schedule, and the job `running`, until a restart.
struct JobInProgress<'a> {
    trainer: &'a Trainer,
    id: u64,
    keys: &'a [SeriesKey],
    /// How many of `keys` are done with (trained or failed) and released.
    next: usize,
}

impl Drop for JobInProgress<'_> {
    fn drop(&mut self) {
        let mut table = self.trainer.table();
        let unfinished = &self.keys[self.next..];
        for key in unfinished {
            // Only this job's own entries: a key it no longer holds may be another job's by now.
            if table.busy.get(key) == Some(&self.id) {
                table.busy.remove(key);
            }
        }
        let Some(status) = table.jobs.get_mut(&self.id) else { return };
        if let Some(interrupted) = unfinished.first() {
            // Unwinding: the series being trained panicked, and the ones after it were not tried.
            status.failed += unfinished.len();
            self.trainer.metrics.training_failures.inc_by(unfinished.len() as u64);
            if status.errors.len() < MAX_JOB_ERRORS {
                status.errors.push(format!(
                    "{}/{}: training panicked; the job stopped there, {} series after it not trained",
                    interrupted.service,
                    interrupted.signal,
                    unfinished.len() - 1
                ));
            }
            warn!(
                job = self.id,
                service = %interrupted.service,
                signal = %interrupted.signal,
                "training panicked; the job is marked failed and its series released"
            );
        }
        status.state = if status.failed == 0 { "done" } else { "failed" };
        info!(
            job = self.id,
            trained = status.trained,
            failed = status.failed,
            reason = status.reason,
            skipped = status.skipped,
            "training job finished"
        );
    }
}

/// Runs training jobs for the daemon.
#[derive(Debug)]
pub struct Trainer {
    datasets: Datasets,
    params: DetectorParams,
    window: Duration,
    metrics: DatasetMetrics,
    swaps: UnboundedSender<ModelSwap>,
    table: Mutex<JobTable>,
}

impl Trainer {
    /// A trainer fitting with `params` over `window`, sending models on `swaps`.
    pub fn new(
        datasets: Datasets,
        params: DetectorParams,
        window: Duration,
        metrics: DatasetMetrics,
        swaps: UnboundedSender<ModelSwap>,
    ) -> Self {
        Self { datasets, params, window, metrics, swaps, table: Mutex::new(JobTable::default()) }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a job training the matching series; answers at once with its status.
    pub fn submit(
        self: &Arc<Self>,
        service: Option<&str>,
        signal: Option<&str>,
        reason: &'static str,
    ) -> Result<JobStatus, SubmitError> {
        let keys = select_series(&self.datasets, service, signal).map_err(|e| SubmitError::Store(e.to_string()))?;
        self.submit_keys(keys, reason).map_err(|e| match e {
            SubmitError::NoSeries { .. } => {
                SubmitError::NoSeries { service: service.map(str::to_owned), signal: signal.map(str::to_owned) }
            }
            other => other,
        })
    }

    /// Starts a job for exactly `keys`.
    pub fn submit_keys(self: &Arc<Self>, keys: Vec<SeriesKey>, reason: &'static str) -> Result<JobStatus, SubmitError> {
        if keys.is_empty() {
            return Err(SubmitError::NoSeries { service: None, signal: None });
        }
        let status = {
            let mut table = self.table();
            let busy: Vec<u64> = keys.iter().filter_map(|k| table.busy.get(k).copied()).collect();
            if let Some(&other) = busy.first() {
                return Err(SubmitError::Busy(busy.len(), other));
            }
            table.next_id += 1;
            let id = table.next_id;
            let status = table.start_job(id, reason, &keys);
            while table.jobs.len() > FINISHED_JOBS_KEPT {
                let Some(oldest) = table.jobs.iter().find(|(_, j)| j.state != "running").map(|(id, _)| *id) else {
                    break;
                };
                table.jobs.remove(&oldest);
            }
            status
        };
        let trainer = Arc::clone(self);
        let id = status.job;
        tokio::task::spawn_blocking(move || trainer.run_job(id, &keys));
        Ok(status)
    }

    fn run_job(&self, id: u64, keys: &[SeriesKey]) {
        self.run_job_with(id, keys, |key| train_series(&self.datasets, key, &self.params, self.window, now_ms()));
    }

    /// Trains `keys` one by one with `train`, recording each outcome in job `id`'s status.
    fn run_job_with(
        &self,
        id: u64,
        keys: &[SeriesKey],
        train: impl Fn(&SeriesKey) -> Result<TrainedModel, TrainError>,
    ) {
        let mut job = JobInProgress { trainer: self, id, keys, next: 0 };
        for key in keys {
            let started = Instant::now();
            let outcome = train(key);
            self.metrics.training_duration.observe(started.elapsed().as_secs_f64());
            let mut table = self.table();
            table.busy.remove(key);
            job.next += 1;
            let Some(status) = table.jobs.get_mut(&id) else { continue };
            match outcome {
                Ok(model) => {
                    status.trained += 1;
                    let _ = self.swaps.send(ModelSwap { key: key.clone(), bytes: model.bytes });
                }
                Err(TrainError::NotEnoughRows { rows, needed }) if status.reason != "api" => {
                    status.skipped += 1;
                    debug!(service = %key.service, signal = %key.signal, rows, needed, "not enough history to retrain: skipped");
                }
                Err(error) => {
                    self.metrics.training_failures.inc();
                    status.failed += 1;
                    if status.errors.len() < MAX_JOB_ERRORS {
                        status.errors.push(format!("{}/{}: {error}", key.service, key.signal));
                    }
                    warn!(service = %key.service, signal = %key.signal, %error, "training failed");
                }
            }
        }
    }

    /// A job's status.
    pub fn status(&self, id: u64) -> Option<JobStatus> {
        self.table().jobs.get(&id).cloned()
    }

    /// Hands every series' stored model to the engine, and trains those with none usable.
    pub async fn load_models(self: &Arc<Self>) {
        let trainer = Arc::clone(self);
        let missing = tokio::task::spawn_blocking(move || {
            let mut missing = Vec::new();
            for key in trainer.datasets.series().unwrap_or_default() {
                match latest_model(&trainer.datasets, &key) {
                    Ok(Some((_, bytes))) => {
                        let _ = trainer.swaps.send(ModelSwap { key, bytes });
                    }
                    _ => missing.push(key),
                }
            }
            missing
        })
        .await
        .unwrap_or_default();
        if !missing.is_empty() {
            let _ = self.submit_keys(missing, "startup");
        }
    }

    /// Retrains each series once every `every`, at its own offset within the period (from its
    /// seed), so thousands of series do not retrain in the same second. Checks every `tick`.
    pub async fn run_schedule(self: Arc<Self>, every: Duration, tick: Duration) {
        if every.is_zero() {
            return;
        }
        let every_ms = every.as_millis().max(1) as i64;
        let mut previous = now_ms();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let now = now_ms();
            let trainer = Arc::clone(&self);
            let keys = tokio::task::spawn_blocking(move || trainer.datasets.series().unwrap_or_default())
                .await
                .unwrap_or_default();
            let due: Vec<SeriesKey> =
                keys.into_iter().filter(|key| slot_passed(key.seed(), every_ms, previous, now)).collect();
            previous = now;
            if due.is_empty() {
                continue;
            }
            // Series still in training from an earlier job are skipped this period.
            let free: Vec<SeriesKey> = {
                let table = self.table();
                let busy: HashSet<&SeriesKey> = table.busy.keys().collect();
                due.into_iter().filter(|k| !busy.contains(k)).collect()
            };
            if !free.is_empty() {
                let _ = self.submit_keys(free, "schedule");
            }
        }
    }
}

/// Whether the series' slot (its seed's offset within each period) lies in `(previous, now]`.
fn slot_passed(seed: u64, every_ms: i64, previous: i64, now: i64) -> bool {
    let offset = (seed % every_ms as u64) as i64;
    // The latest slot at or before `now`.
    let latest = now - (now - offset).rem_euclid(every_ms);
    latest > previous
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::{DatasetWriter, StoredPoint, write_pending};

    fn history(datasets: &Datasets, key: &SeriesKey, points: i64) {
        history_from(datasets, key, points, 1_000_000);
    }

    /// `points` points a second apart from `start_ms`.
    fn history_from(datasets: &Datasets, key: &SeriesKey, points: i64, start_ms: i64) {
        let mut writer = DatasetWriter::open(datasets.clone(), 10, &Default::default());
        writer.accept(
            (0..points)
                .map(|i| StoredPoint {
                    key: key.clone(),
                    timestamp_ms: start_ms + i * 1000,
                    value: 0.3 + 0.05 * (i as f64 / 20.0).sin(),
                    anomaly_score: None,
                    severity: 0,
                    model_version: None,
                })
                .collect(),
        );
        let (_, _, errors) = write_pending(datasets, writer.take_pending());
        assert!(errors.is_empty());
    }

    #[test]
    fn trains_from_history_numbers_models_and_keeps_the_last_few() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a/b".into(), signal: "cpu".into() };
        history(&datasets, &key, 300);
        let params = DetectorParams { min_training_points: 50, ..DetectorParams::default() };
        let now = 1_000_000 + 300_000;
        for expected in 1..=5 {
            let model = train_series(&datasets, &key, &params, Duration::from_secs(3600), now).unwrap();
            assert_eq!((model.number, model.rows, model.training_rows), (expected, 300, 298));
        }
        let numbers: Vec<u64> = model_files(&datasets, &key).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [3, 4, 5]);
        let (number, bytes) = latest_model(&datasets, &key).unwrap().unwrap();
        assert_eq!(number, 5);
        let metadata = read_metadata(&bytes).unwrap();
        assert_eq!(metadata.generation, 5);
        assert_eq!(metadata.window_ms, Some((1_000_000, 1_299_000)));
        // A damaged newest file is skipped with a warning, not a crash.
        std::fs::write(datasets.model_directory(&key).join("model-0000000006.aem"), b"garbage").unwrap();
        assert_eq!(latest_model(&datasets, &key).unwrap(), None);
    }

    #[test]
    fn too_little_history_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a".into(), signal: "cpu".into() };
        history(&datasets, &key, 20);
        let error = train_series(&datasets, &key, &DetectorParams::default(), Duration::from_secs(3600), 2_000_000);
        assert!(matches!(error, Err(TrainError::NotEnoughRows { rows: 20, .. })), "{error:?}");
    }

    #[tokio::test]
    async fn a_series_in_training_is_not_trained_twice_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a".into(), signal: "cpu".into() };
        history(&datasets, &key, 20);
        let (swaps, _swapped) = tokio::sync::mpsc::unbounded_channel();
        let trainer = Arc::new(Trainer::new(
            datasets,
            DetectorParams::default(),
            Duration::from_secs(3600),
            DatasetMetrics::default(),
            swaps,
        ));
        trainer.table().busy.insert(key.clone(), 41);
        assert_eq!(trainer.submit(Some("a"), None, "api"), Err(SubmitError::Busy(1, 41)));
        let refused = trainer.submit(Some("b"), None, "api").unwrap_err();
        assert!(matches!(refused, SubmitError::NoSeries { .. }));
        assert_eq!(refused.to_string(), "no series with a dataset matches service=\"b\" signal=any");
        trainer.table().busy.clear();
        assert_eq!(trainer.submit(Some("a"), None, "api").unwrap().job, 1);
    }

    /// A trainer with default settings over the datasets in `dir`; the models it sends are dropped.
    fn trainer_over(dir: &std::path::Path) -> Trainer {
        let (swaps, _swapped) = tokio::sync::mpsc::unbounded_channel();
        Trainer::new(
            Datasets::new(dir),
            DetectorParams::default(),
            Duration::from_secs(3600),
            DatasetMetrics::default(),
            swaps,
        )
    }

    /// The cpu series of `services`.
    fn cpu_series(services: &[&str]) -> Vec<SeriesKey> {
        services.iter().map(|s| SeriesKey { service: (*s).into(), signal: "cpu".into() }).collect()
    }

    #[test]
    fn a_job_that_panics_releases_its_series_and_is_marked_failed() {
        let dir = tempfile::tempdir().unwrap();
        let trainer = trainer_over(dir.path());
        let keys = cpu_series(&["a", "b", "c"]);
        let id = 7;
        trainer.table().start_job(id, "api", &keys);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            trainer.run_job_with(id, &keys, |key| {
                assert_ne!(key.service, "b", "a bug in training b");
                Err(TrainError::NotEnoughRows { rows: 0, needed: 1 })
            })
        }));
        assert!(unwound.is_err());
        // Before, `b` and `c` stayed busy and the job `running` until a restart.
        assert!(trainer.table().busy.is_empty());
        let status = trainer.status(id).unwrap();
        assert_eq!((status.state, status.trained, status.failed), ("failed", 0, 3));
        assert!(status.errors[1].starts_with("b/cpu: training panicked"), "{:?}", status.errors);
        assert_eq!(trainer.metrics.training_failures.get(), 3);
    }

    #[test]
    fn a_scheduled_job_skips_series_without_enough_history_and_an_asked_for_one_fails_them() {
        let dir = tempfile::tempdir().unwrap();
        let trainer = trainer_over(dir.path());
        let keys = cpu_series(&["gone", "new"]);
        for (id, reason) in [(1, "schedule"), (2, "startup"), (3, "api")] {
            trainer.table().start_job(id, reason, &keys);
            // The gone series has no row left in the window, the new one too few.
            trainer.run_job_with(id, &keys, |key| {
                Err(TrainError::NotEnoughRows { rows: if key.service == "gone" { 0 } else { 12 }, needed: 62 })
            });
        }
        for id in [1, 2] {
            let status = trainer.status(id).unwrap();
            assert_eq!((status.state, status.failed, status.skipped), ("done", 0, 2), "{status:?}");
        }
        let asked = trainer.status(3).unwrap();
        assert_eq!((asked.state, asked.failed, asked.skipped), ("failed", 2, 0));
        assert_eq!(trainer.metrics.training_failures.get(), 2, "only the asked-for job's");
    }

    #[tokio::test]
    async fn the_schedule_retrains_every_series_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let keys: Vec<SeriesKey> =
            ["a", "b"].iter().map(|s| SeriesKey { service: (*s).into(), signal: "cpu".into() }).collect();
        for key in &keys {
            history_from(&datasets, key, 120, now_ms() - 200_000);
        }
        let (swaps, mut swapped) = tokio::sync::mpsc::unbounded_channel();
        let params = DetectorParams { min_training_points: 50, ..DetectorParams::default() };
        let trainer = Arc::new(Trainer::new(
            datasets.clone(),
            params,
            Duration::from_secs(3600),
            DatasetMetrics::default(),
            swaps,
        ));
        let period = Duration::from_secs(2);
        let schedule = tokio::spawn(Arc::clone(&trainer).run_schedule(period, Duration::from_millis(50)));
        // Over three periods each series' slot passes three times (twice or four times at the
        // edges of the observation), and never more often.
        let observed = Duration::from_secs(6);
        let deadline = tokio::time::Instant::now() + observed;
        let mut trained: std::collections::HashMap<SeriesKey, usize> = std::collections::HashMap::new();
        while let Ok(Some(swap)) = tokio::time::timeout_at(deadline, swapped.recv()).await {
            *trained.entry(swap.key).or_default() += 1;
        }
        schedule.abort();
        for key in &keys {
            let count = trained.get(key).copied().unwrap_or(0);
            assert!((2..=4).contains(&count), "{key:?} retrained {count} times in {observed:?}: {trained:?}");
            let files = model_files(&datasets, key).unwrap();
            assert!(!files.is_empty(), "{key:?}: no model file written");
        }
    }

    #[test]
    fn slots_spread_over_the_period_and_each_passes_once_per_period() {
        let every = 86_400_000;
        let mut passes = 0;
        let mut previous = 0;
        for minute in 1..=(2 * 1440) {
            let now = minute * 60_000;
            passes += i32::from(slot_passed(12_345_678_901, every, previous, now));
            previous = now;
        }
        assert_eq!(passes, 2);
        let offsets: HashSet<i64> =
            (0..100u64).map(|s| (s.wrapping_mul(0x9E37_79B9_7F4A_7C15) % every as u64) as i64 / 3_600_000).collect();
        assert!(offsets.len() > 15, "seeds spread over the day's hours");
    }
}
