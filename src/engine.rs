//! The cycle: source → features → detect → classify → export.
//!
//! Every `interval` the engine sends one instant query per signal (however many services there
//! are), splits each answer by the signal's service label, feeds each (service, signal) series'
//! detector, classifies the result and swaps a new [`Snapshot`] in for scrapes to read. A series
//! seen for the first time is backfilled with one range query per signal and gets its first model
//! at once. The stages never call back into the engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::classify::{self, Severity};
use crate::config::{Config, Signal};
use crate::detect::{Observation, SeriesDetector};
use crate::export::{SelfMetrics, SeriesState, SignalErrorLabels, SignalLabels, Snapshot, SnapshotCell, unix_seconds};
use crate::source::{PrometheusClient, Sample, SourceError};

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
}

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
        Self { config, client, metrics, snapshot, series: HashMap::new(), cycle: 0 }
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
            let report = tokio::select! {
                () = &mut shutdown => break,
                report = self.run_cycle(SystemTime::now()) => report,
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
            // Cycles start every interval, not an interval after the previous one ended.
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(backoff.saturating_sub(cycle_started.elapsed())) => {}
            }
        }
        info!("engine stopped");
    }

    /// One cycle at `now`: query, backfill new series, score, classify, publish.
    pub async fn run_cycle(&mut self, now: SystemTime) -> CycleReport {
        let started = Instant::now();
        self.cycle += 1;
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
                if let Some(observation) =
                    tracked.detector.observe(detector_params, signal.min_deviation, sample.timestamp_ms, sample.value)
                {
                    tracked.last = Some(observation);
                }
            }
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
        Ok(split_by_service(&signal.service_label, vector.samples))
    }

    /// Creates detectors for new services of `signal`, backfilled with one range query.
    async fn start_series(&mut self, signal: &Signal, services: &HashSet<String>, now: SystemTime) {
        let mut history: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        if !self.config.backfill.is_zero() {
            let start = now.checked_sub(self.config.backfill).unwrap_or(SystemTime::UNIX_EPOCH);
            // End one step before now: the instant query of this cycle provides the last point.
            let end = now.checked_sub(self.client.step()).unwrap_or(start).max(start);
            match self.client.query_range(&signal.query, start, end, self.client.step()).await {
                Ok(matrix) => {
                    for series in matrix.series {
                        let Some(service) = series.labels.get(&signal.service_label) else { continue };
                        if services.contains(service) {
                            let points =
                                series.points.iter().filter(|p| p.value.is_finite()).map(|p| (p.timestamp_ms, p.value));
                            history.entry(service.clone()).or_default().extend(points);
                        }
                    }
                }
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
            detector.warm_up(params, points);
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

/// One sample per service. A service with several series (the query did not aggregate by the
/// service label) keeps the largest value, the conservative choice for "bad is up" signals;
/// samples without the label are skipped.
fn split_by_service(service_label: &str, samples: Vec<Sample>) -> Answer {
    let mut answer = Answer::new();
    let mut unlabelled = 0usize;
    for sample in samples {
        let Some(service) = sample.labels.get(service_label).cloned() else {
            unlabelled += 1;
            continue;
        };
        match answer.get(&service) {
            // NaN never replaces a number: the comparison is false for it.
            Some(existing) if sample.value.partial_cmp(&existing.value) != Some(std::cmp::Ordering::Greater) => {}
            _ => {
                answer.insert(service, sample);
            }
        }
    }
    if unlabelled > 0 {
        debug!(service_label, unlabelled, "samples without the service label skipped");
    }
    answer
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
        let answer = split_by_service(
            "application",
            vec![sample(Some("a"), 1.0), sample(Some("a"), 3.0), sample(Some("b"), 2.0), sample(None, 9.0)],
        );
        assert_eq!(answer.len(), 2);
        assert_eq!(answer["a"].value, 3.0);
        assert_eq!(answer["b"].value, 2.0);
    }

    #[test]
    fn series_seeds_differ_and_are_stable() {
        let a = SeriesKey { service: "a".into(), signal: "cpu".into() };
        let b = SeriesKey { service: "a".into(), signal: "memory".into() };
        assert_ne!(a.seed(), b.seed());
        assert_eq!(a.seed(), a.clone().seed());
    }
}
