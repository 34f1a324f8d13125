//! The cycle: source → features → detect → classify → export.
//!
//! Every `interval` the engine sends one instant query per signal (however many services there
//! are), splits each answer by the signal's service label, feeds each (service, signal) series'
//! detector, classifies the result and swaps a new [`Snapshot`] in for scrapes to read. A series
//! seen for the first time is backfilled with one range query per signal and gets its first model
//! at once. The stages never call back into the engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::classify::{self, Severity};
use crate::config::{Config, Signal};
use crate::detect::{Observation, SeriesDetector};
use crate::export::{SelfMetrics, SeriesState, SignalErrorLabels, SignalLabels, Snapshot, SnapshotCell, unix_seconds};
use crate::source::{PrometheusClient, Sample, Series, SourceError};
use crate::store::writer::{StoreSink, StoredPoint};
use crate::train::ModelSwap;

/// A series' identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The service (value of the signal's service label).
    pub service: String,
    /// The signal's name.
    pub signal: String,
}

impl SeriesKey {
    /// A stable 64-bit mix of the key, so each series' models get their own reproducible seed.
    pub fn seed(&self) -> u64 {
        let bytes = self.service.bytes().chain([0xFF]).chain(self.signal.bytes());
        bytes.fold(0xCBF2_9CE4_8422_2325u64, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
    }
}

#[derive(Debug)]
struct TrackedSeries {
    detector: SeriesDetector,
    last: Option<Observation>,
    /// When the series was last in its signal's answer.
    last_seen: Instant,
    /// The cycle in which it was last seen: only series in the latest answer are exported.
    seen_in_cycle: u64,
}

/// What one cycle did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    /// Signals whose query failed.
    pub failed_signals: Vec<String>,
    /// Series in the snapshot.
    pub exported_series: usize,
    /// Series seen for the first time.
    pub new_series: usize,
    /// Series dropped after the grace period.
    pub dropped_series: usize,
}

/// The detection loop's state.
#[derive(Debug)]
pub struct Engine {
    config: Arc<Config>,
    client: PrometheusClient,
    metrics: SelfMetrics,
    snapshot: Arc<SnapshotCell>,
    series: HashMap<SeriesKey, TrackedSeries>,
    cycle: u64,
    /// Where scored and backfilled points go, when datasets are enabled.
    store: Option<StoreSink>,
    /// The last cycle's evaluation time (ms), for the evaluation grid.
    last_evaluation_ms: Option<u64>,
    /// Models fitted by training jobs, swapped in between cycles.
    model_swaps: Option<tokio::sync::mpsc::UnboundedReceiver<ModelSwap>>,
    /// Models for series not started yet (loaded at start, before their first answer).
    pending_models: HashMap<SeriesKey, Vec<u8>>,
}

/// How many intervals a late engine catches up point by point before it skips to now.
const MAX_CATCH_UP_INTERVALS: u64 = 10;

/// One signal's answer: the value per service.
type Answer = BTreeMap<String, Sample>;

impl Engine {
    /// An engine reading through `client` and publishing into `snapshot`.
    pub fn new(
        config: Arc<Config>,
        client: PrometheusClient,
        metrics: SelfMetrics,
        snapshot: Arc<SnapshotCell>,
    ) -> Self {
        Self {
            config,
            client,
            metrics,
            snapshot,
            series: HashMap::new(),
            cycle: 0,
            store: None,
            last_evaluation_ms: None,
            model_swaps: None,
            pending_models: HashMap::new(),
        }
    }

    /// Swaps in models that training jobs send on `swaps`, between cycles.
    pub fn with_model_swaps(mut self, swaps: tokio::sync::mpsc::UnboundedReceiver<ModelSwap>) -> Self {
        self.model_swaps = Some(swaps);
        self
    }

    /// Takes in the models training sent since the last cycle.
    fn swap_models(&mut self) {
        let Some(swaps) = self.model_swaps.as_mut() else { return };
        while let Ok(swap) = swaps.try_recv() {
            match self.series.get_mut(&swap.key) {
                Some(tracked) => import_model(&mut tracked.detector, &swap.key, &swap.bytes),
                None => {
                    self.pending_models.insert(swap.key, swap.bytes);
                }
            }
        }
    }

    /// Sends every scored and backfilled point to the datasets writer, and backfills series
    /// known to the datasets from their last flushed point.
    pub fn with_store(mut self, sink: StoreSink) -> Self {
        self.store = Some(sink);
        self
    }

    /// The next cycle's evaluation time: a multiple of the interval, so live points and
    /// backfilled points (range queries on the same grid) share timestamps. A cycle that starts
    /// late takes the next grid point rather than skipping one (the loop then runs without
    /// sleeping until it has caught up), unless it is more than ten intervals behind.
    fn next_evaluation_ms(&self, wall: SystemTime) -> u64 {
        let interval_ms = (self.config.interval.as_millis() as u64).max(1);
        let wall_ms = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        next_on_grid(self.last_evaluation_ms, wall_ms, interval_ms)
    }

    /// Runs cycles until `shutdown` resolves, calling `on_first_cycle` once the first cycle is
    /// done (readiness). Failing cycles back off (doubling, up to eight intervals) and the loop
    /// recovers by itself when the source answers again.
    pub async fn run_with_ready(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        on_first_cycle: impl FnOnce(),
    ) {
        tokio::pin!(shutdown);
        let mut on_first_cycle = Some(on_first_cycle);
        let mut consecutive_failures = 0u32;
        loop {
            let cycle_started = Instant::now();
            let evaluation_ms = self.next_evaluation_ms(SystemTime::now());
            self.last_evaluation_ms = Some(evaluation_ms);
            let evaluation = UNIX_EPOCH + Duration::from_millis(evaluation_ms);
            let report = tokio::select! {
                () = &mut shutdown => break,
                report = self.run_cycle(evaluation) => report,
            };
            if let Some(mark_ready) = on_first_cycle.take() {
                mark_ready();
            }
            let all_failed = report.failed_signals.len() == self.config.signals.len();
            consecutive_failures = if all_failed { consecutive_failures.saturating_add(1) } else { 0 };
            let backoff = self.config.interval * 2u32.saturating_pow(consecutive_failures.min(3));
            if consecutive_failures > 0 {
                warn!(
                    failures = consecutive_failures,
                    wait_seconds = backoff.as_secs_f64(),
                    "source unavailable, backing off"
                );
            }
            // Cycles start every interval, at the next grid point, not an interval after the
            // previous one ended.
            let wait = if consecutive_failures > 0 {
                backoff.saturating_sub(cycle_started.elapsed())
            } else {
                (evaluation + self.config.interval).duration_since(SystemTime::now()).unwrap_or_default()
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        info!("engine stopped");
    }

    /// One cycle at `now`: query, backfill new series, score, classify, publish.
    pub async fn run_cycle(&mut self, now: SystemTime) -> CycleReport {
        let started = Instant::now();
        self.cycle += 1;
        self.swap_models();
        let mut report = CycleReport::default();
        let config = Arc::clone(&self.config);

        let mut answers: Vec<(&Signal, Answer)> = Vec::with_capacity(config.signals.len());
        for signal in &config.signals {
            match self.query_signal(signal, now).await {
                Ok(answer) => answers.push((signal, answer)),
                Err(error) => {
                    warn!(signal = %signal.name, reason = error.reason(), %error, "query failed");
                    report.failed_signals.push(signal.name.clone());
                }
            }
        }

        // Fits counted as the change in model generations, first fits from backfill included.
        let generations_before: u64 =
            self.series.values().filter_map(|s| s.detector.model_info()).map(|m| m.generation).sum();
        for (signal, answer) in &answers {
            let new_services: Vec<&String> = answer
                .keys()
                .filter(|service| {
                    !self.series.contains_key(&SeriesKey { service: (*service).clone(), signal: signal.name.clone() })
                })
                .collect();
            if new_services.is_empty() {
                continue;
            }
            report.new_series += new_services.len();
            let new_services: HashSet<String> = new_services.into_iter().cloned().collect();
            self.start_series(signal, &new_services, now).await;
        }

        let detector_params = &config.detector;
        let cycle = self.cycle;
        let levels = &config.anomaly_levels;
        let mut stored: Vec<StoredPoint> = Vec::new();
        for (signal, answer) in &answers {
            for (service, sample) in answer {
                let key = SeriesKey { service: service.clone(), signal: signal.name.clone() };
                let Some(tracked) = self.series.get_mut(&key) else { continue };
                tracked.last_seen = Instant::now();
                if !sample.value.is_finite() {
                    // Still alive (no grace countdown), but there is nothing to export this cycle.
                    self.metrics.points_skipped.get_or_create(&SignalLabels { signal: signal.name.clone() }).inc();
                    continue;
                }
                tracked.seen_in_cycle = cycle;
                // The model that scores the point: observe may refit after scoring it.
                let scoring_generation = tracked.detector.model_info().map(|m| m.generation);
                if let Some(observation) =
                    tracked.detector.observe(detector_params, signal.alarm_gate(), sample.timestamp_ms, sample.value)
                {
                    tracked.last = Some(observation);
                    if self.store.is_some() {
                        let anomaly_level = observation.anomaly_score.map_or(Severity::Normal, |s| levels.level(s));
                        let threshold_level = signal.thresholds_for(service).level(observation.value);
                        stored.push(StoredPoint {
                            key,
                            timestamp_ms: observation.timestamp_ms,
                            value: observation.value,
                            anomaly_score: observation.anomaly_score,
                            severity: classify::severity(threshold_level, anomaly_level) as u8,
                            model_version: observation.anomaly_score.and(scoring_generation),
                        });
                    }
                }
            }
        }
        if let Some(store) = &self.store
            && !stored.is_empty()
        {
            store.send(stored);
        }
        let generations_after: u64 =
            self.series.values().filter_map(|s| s.detector.model_info()).map(|m| m.generation).sum();
        self.metrics.models_trained.inc_by(generations_after.saturating_sub(generations_before));

        let grace = self.config.service_grace;
        let count_before = self.series.len();
        self.series.retain(|key, tracked| {
            let keep = tracked.last_seen.elapsed() <= grace;
            if !keep {
                info!(service = %key.service, signal = %key.signal, "series gone for longer than the grace period, dropped");
            }
            keep
        });
        report.dropped_series = count_before - self.series.len();

        let snapshot = self.build_snapshot(now);
        report.exported_series = snapshot.series.len();
        self.snapshot.store(snapshot);

        self.metrics.series_tracked.set(self.series.len() as i64);
        self.metrics.cycles.inc();
        let succeeded = report.failed_signals.is_empty();
        self.metrics.source_up.set(i64::from(succeeded));
        if succeeded {
            self.metrics.last_successful_cycle.set(unix_seconds(SystemTime::now()));
        }
        self.metrics.cycle_duration.observe(started.elapsed().as_secs_f64());
        debug!(?report, seconds = started.elapsed().as_secs_f64(), "cycle done");
        report
    }

    /// Queries one signal and splits the answer by service.
    async fn query_signal(&self, signal: &Signal, now: SystemTime) -> Result<Answer, SourceError> {
        let labels = SignalLabels { signal: signal.name.clone() };
        let started = Instant::now();
        let result = self.client.query(&signal.query, now).await;
        self.metrics.query_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        let vector = result.inspect_err(|error| {
            let labels = SignalErrorLabels { signal: signal.name.clone(), reason: error.reason().to_owned() };
            self.metrics.query_errors.get_or_create(&labels).inc();
        })?;
        if !vector.warnings.is_empty() {
            warn!(signal = %signal.name, warnings = ?vector.warnings.messages, partial = vector.warnings.partial, "query answered with warnings");
            self.metrics.query_warnings.get_or_create(&labels).inc();
        }
        let samples = vector.samples.len();
        let (answer, unlabelled) = split_by_service(&signal.service_label, vector.samples);
        if unlabelled > 0 {
            self.metrics.samples_unlabelled.get_or_create(&labels).inc_by(unlabelled as u64);
            // Every sample without the label: the signal yields no series at all, most likely a
            // query that aggregates the label away (`sum(x)` for `sum by (application) (x)`).
            if unlabelled == samples {
                warn!(
                    signal = %signal.name,
                    service_label = %signal.service_label,
                    samples,
                    "no sample of the query carries the service label: the signal has no series \
                     (keep the label in the query, e.g. `sum by (<label>) (…)`)"
                );
            }
        }
        Ok(answer)
    }

    /// Creates detectors for new services of `signal`, backfilled with one range query.
    async fn start_series(&mut self, signal: &Signal, services: &HashSet<String>, now: SystemTime) {
        let mut history: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        // Series with a dataset are backfilled from their last flushed point (within retention),
        // so a restart leaves no hole in their history.
        let resume_from = self.store.as_ref().and_then(|store| store.resume_from(signal, services, now));
        if !self.config.backfill.is_zero() || resume_from.is_some() {
            let start = now.checked_sub(self.config.backfill).unwrap_or(SystemTime::UNIX_EPOCH);
            let start = resume_from.map_or(start, |resume| resume.min(start));
            // End one step before now: the instant query of this cycle provides the last point.
            // At the interval: the detector's history is on the live points' grid.
            let step = self.config.interval;
            let end = now.checked_sub(step).unwrap_or(start).max(start);
            match self.client.query_range(&signal.query, start, end, step).await {
                Ok(matrix) => history = history_by_service(&signal.service_label, services, matrix.series),
                Err(error) => {
                    let labels = SignalErrorLabels { signal: signal.name.clone(), reason: error.reason().to_owned() };
                    self.metrics.query_errors.get_or_create(&labels).inc();
                    warn!(signal = %signal.name, %error, "backfill failed; new series will warm up live");
                }
            }
        }
        let params = &self.config.detector;
        for service in services {
            let key = SeriesKey { service: service.clone(), signal: signal.name.clone() };
            let mut detector = SeriesDetector::new(params, key.seed());
            let points = history.remove(service).unwrap_or_default();
            let backfilled = points.len();
            if let Some(store) = &self.store
                && !points.is_empty()
            {
                let thresholds = signal.thresholds_for(service);
                store.send(
                    points
                        .iter()
                        .map(|&(timestamp_ms, value)| StoredPoint {
                            key: key.clone(),
                            timestamp_ms,
                            value,
                            anomaly_score: None,
                            severity: thresholds.level(value) as u8,
                            model_version: None,
                        })
                        .collect(),
                );
            }
            detector.backfill(params, points);
            if let Some(bytes) = self.pending_models.remove(&key) {
                import_model(&mut detector, &key, &bytes);
            }
            info!(service = %service, signal = %signal.name, backfilled, model = detector.model_info().is_some(), "new series");
            self.series
                .insert(key, TrackedSeries { detector, last: None, last_seen: Instant::now(), seen_in_cycle: 0 });
        }
    }

    fn build_snapshot(&self, now: SystemTime) -> Snapshot {
        let signals: HashMap<&str, &Signal> = self.config.signals.iter().map(|s| (s.name.as_str(), s)).collect();
        let levels = &self.config.anomaly_levels;
        let mut series: Vec<SeriesState> = self
            .series
            .iter()
            .filter(|(_, tracked)| tracked.seen_in_cycle == self.cycle)
            .filter_map(|(key, tracked)| {
                let observation = tracked.last?;
                let signal = signals.get(key.signal.as_str())?;
                let thresholds = *signal.thresholds_for(&key.service);
                let anomaly_level = observation.anomaly_score.map_or(Severity::Normal, |score| levels.level(score));
                let model = tracked.detector.model_info();
                Some(SeriesState {
                    service: key.service.clone(),
                    signal: key.signal.clone(),
                    value: observation.value,
                    anomaly_score: observation.anomaly_score,
                    severity: classify::severity(thresholds.level(observation.value), anomaly_level),
                    thresholds,
                    model_trained_at_ms: model.map(|m| m.trained_at_ms),
                    model_rows: model.map_or(0, |m| m.rows),
                })
            })
            .collect();
        series.sort_by(|a, b| (&a.service, &a.signal).cmp(&(&b.service, &b.signal)));
        Snapshot { series, evaluated_at_seconds: Some(unix_seconds(now)) }
    }
}

/// The evaluation time after `last` on the grid of `interval_ms`, given the wall clock; see
/// [`Engine::next_evaluation_ms`].
fn next_on_grid(last: Option<u64>, wall_ms: u64, interval_ms: u64) -> u64 {
    let floor = wall_ms - wall_ms % interval_ms;
    match last {
        Some(last) if last <= wall_ms && floor <= last + MAX_CATCH_UP_INTERVALS * interval_ms => last + interval_ms,
        Some(last) if last > wall_ms => {
            warn!(last, wall_ms, "wall clock went back; evaluation grid restarts at now");
            floor
        }
        Some(last) => {
            warn!(skipped_points = (floor - last) / interval_ms - 1, "engine far behind; skipping to now");
            floor
        }
        None => floor,
    }
}

/// Replaces a detector's model with a trained one, numbered after its current model; a file
/// that does not load is logged and the detector keeps its own model.
fn import_model(detector: &mut SeriesDetector, key: &SeriesKey, bytes: &[u8]) {
    let generation = detector.model_info().map_or(1, |m| m.generation + 1);
    match detector.import_model(bytes, generation) {
        Ok(info) => {
            info!(service = %key.service, signal = %key.signal, generation, rows = info.rows, "trained model swapped in")
        }
        Err(error) => {
            warn!(service = %key.service, signal = %key.signal, %error, "trained model refused; keeping the current one")
        }
    }
}

/// One sample per service. A service with several series (the query did not aggregate by the
/// service label) keeps the largest value, the conservative choice for "bad is up" signals;
/// samples without the label are skipped, and counted in the second value returned.
fn split_by_service(service_label: &str, samples: Vec<Sample>) -> (Answer, usize) {
    let mut answer = Answer::new();
    let mut unlabelled = 0usize;
    for sample in samples {
        let Some(service) = sample.labels.get(service_label).cloned() else {
            unlabelled += 1;
            continue;
        };
        let replaces = answer.get(&service).is_none_or(|existing| keeps_over(sample.value, existing.value));
        if replaces {
            answer.insert(service, sample);
        }
    }
    (answer, unlabelled)
}

/// Whether `candidate` wins over `kept` as a service's one value at a time: the larger number,
/// and any number over NaN (a NaN never replaces a number).
fn keeps_over(candidate: f64, kept: f64) -> bool {
    candidate > kept || (kept.is_nan() && !candidate.is_nan())
}

/// The backfilled points of each of `services`, in time order, merged as [`split_by_service`]
/// merges a live answer: at each timestamp, the largest finite value of the service's series.
/// Appending the series one after another instead would leave the detector learning only the
/// first (it skips points not after the last one it took) while the live path scores the
/// largest.
fn history_by_service(
    service_label: &str,
    services: &HashSet<String>,
    series: Vec<Series>,
) -> HashMap<String, Vec<(i64, f64)>> {
    let mut merged: HashMap<String, BTreeMap<i64, f64>> = HashMap::new();
    for series in series {
        let Some(service) = series.labels.get(service_label).filter(|service| services.contains(*service)) else {
            continue;
        };
        let points = merged.entry(service.clone()).or_default();
        for point in series.points.iter().filter(|p| p.value.is_finite()) {
            let value = points.entry(point.timestamp_ms).or_insert(point.value);
            if keeps_over(point.value, *value) {
                *value = point.value;
            }
        }
    }
    merged.into_iter().map(|(service, points)| (service, points.into_iter().collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Labels;

    fn sample(service: Option<&str>, value: f64) -> Sample {
        let mut labels = Labels::new();
        if let Some(service) = service {
            labels.insert("application".into(), service.into());
        }
        Sample { labels, timestamp_ms: 0, value }
    }

    #[test]
    fn answers_split_by_service_keeping_the_largest() {
        let (answer, unlabelled) = split_by_service(
            "application",
            vec![sample(Some("a"), 1.0), sample(Some("a"), 3.0), sample(Some("b"), 2.0), sample(None, 9.0)],
        );
        assert_eq!(unlabelled, 1, "counted for the self-metric");
        assert_eq!(answer.len(), 2);
        assert_eq!(answer["a"].value, 3.0);
        assert_eq!(answer["b"].value, 2.0);
    }

    #[test]
    fn a_number_replaces_a_nan_whichever_comes_first() {
        for values in [[f64::NAN, 5.0], [5.0, f64::NAN]] {
            let (answer, _) = split_by_service("application", values.map(|v| sample(Some("a"), v)).to_vec());
            assert_eq!(answer["a"].value, 5.0, "{values:?}");
        }
    }

    #[test]
    fn backfilled_history_merges_a_services_series_as_live_answers_do() {
        let series = |service: &str, instance: &str, points: &[(i64, f64)]| {
            let mut labels = Labels::new();
            labels.insert("application".into(), service.into());
            labels.insert("instance".into(), instance.into());
            Series {
                labels,
                points: points
                    .iter()
                    .map(|&(timestamp_ms, value)| crate::source::Point { timestamp_ms, value })
                    .collect(),
            }
        };
        let services = HashSet::from(["s".to_owned()]);
        let history = history_by_service(
            "application",
            &services,
            vec![
                series("s", "a", &[(1000, 1.0), (2000, 1.1), (3000, 1.2)]),
                series("s", "b", &[(1000, 100.0), (2000, f64::NAN), (4000, 101.0)]),
                series("other", "a", &[(1000, 7.0)]),
            ],
        );
        assert_eq!(history.len(), 1, "only the services asked for");
        assert_eq!(history["s"], [(1000, 100.0), (2000, 1.1), (3000, 1.2), (4000, 101.0)]);
    }

    #[test]
    fn evaluation_times_stay_on_the_grid_without_skipping() {
        // First cycle: the grid point at or before now.
        assert_eq!(next_on_grid(None, 15_700, 1000), 15_000);
        // On time, early by a few ms, or late: always the next grid point.
        assert_eq!(next_on_grid(Some(15_000), 16_001, 1000), 16_000);
        assert_eq!(next_on_grid(Some(15_000), 15_998, 1000), 16_000);
        assert_eq!(next_on_grid(Some(15_000), 19_500, 1000), 16_000);
        // Far behind: skip to now; the clock went back: restart at now.
        assert_eq!(next_on_grid(Some(15_000), 40_500, 1000), 40_000);
        assert_eq!(next_on_grid(Some(15_000), 9_500, 1000), 9_000);
    }

    #[test]
    fn series_seeds_differ_and_are_stable() {
        let a = SeriesKey { service: "a".into(), signal: "cpu".into() };
        let b = SeriesKey { service: "a".into(), signal: "memory".into() };
        assert_ne!(a.seed(), b.seed());
        assert_eq!(a.seed(), a.clone().seed());
    }
}
