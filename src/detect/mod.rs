//! The per-series detector: causal features, a forest of the series' own, and its calibration.
//!
//! Each (service, signal) series keeps a window of recent values ([`FeatureWindow`]), the values
//! of its recent points (the training set, with the points before them that their windows read:
//! the `training` module), and an isolation forest fitted on their features, recomputed at each
//! fit by the live path's own code. A point is scored by the model trained *before* it, then
//! joins the training set; the model is refitted every `retrain_every_points` points by the
//! data's own clock, so the daemon and `backtest` behave identically.
//!
//! The raw anomaly score has two parts, and is the larger of them:
//! - the forest's score divided by its decision threshold (the score of the training points' top
//!   `contamination` share), so 1.0 is the model's own boundary;
//! - how far the point lies beyond the range its training points spanned, in units of that range:
//!   `1 + excess − range_tolerance`. An isolation forest cannot tell "far outside everything seen"
//!   from "at the edge of what was seen" (a split threshold never lies outside the training
//!   range, so every point beyond it lands in the same edge leaf); this term restores that.
//!
//! A second forest of the series' own sees the same features over a long window
//! (`long_window` points, 300 by default, against the short `window`'s 10): a point that is
//! ordinary against the last ten but not against the last three hundred (a slow drift's end, a
//! burst in a bursty series) shows there. It is scored with the same two parts and calibrated
//! on its own; the exported score is the larger of the two calibrated scores.
//!
//! Beside them, two terms read the series' recent values directly (the `history` module): a new
//! extreme over the last `extreme_horizon` (NAB's naive rule, done robustly), and, when the
//! series repeats daily or weekly, the deviation from the same time a period ago. The raw score
//! is the largest of the four.
//!
//! That raw score is then calibrated against the series' own recent scores (the `calibrate`
//! module), keeping 1.0 as the boundary. Beside the calibrated scores, not divided by anything, a
//! surge term scores a value far above its recent median that has lasted an hour by the data's
//! clock (the `surge` module): calibration would otherwise hide the second of two incidents a
//! few days apart. The largest is exported, quieted for a few points after an alarm.
//!
//! Above 1 is anomalous, the convention vmanomaly users already alert on. Two settings of the
//! signal ([`AlarmGate`]) keep a point at or below 1 whatever the model says:
//! - a deviation from its window's mean smaller than `min_deviation`: on low-volume or
//!   mostly-flat series (an error ratio that is 0 but for one failed request), any move is
//!   "unusual" to the model, and none is worth a page;
//! - a deviation the wrong way for the signal's `detection_direction`: a JVM heap falls at every
//!   garbage collection, and a fall that deep is rare enough in a short history for the model to
//!   flag, yet it is the heap being healthy.

mod persist;

pub use persist::{MODEL_FORMAT_VERSION, ModelFileError, ModelMetadata, read_metadata};
mod calibrate;
mod history;
mod surge;
mod training;

pub use history::Season;

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use self::calibrate::Calibration;
use self::history::{RecentRange, StepClock};
use self::surge::SurgeRun;
use self::training::TrainingValues;
use crate::features::{FEATURE_COUNT, FeatureWindow};
use crate::forest::{Contamination, Forest, ForestParams, Matrix};

/// Which way a point must depart from its window's mean to be anomalous: a signal's setting
/// (`detection_direction`), like vmanomaly's `detection_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionDirection {
    /// Rises and falls (what an unknown signal needs: a request rate that drops is news).
    #[default]
    Both,
    /// Only rises (heap usage, latency, errors: their falls are recoveries).
    Up,
    /// Only falls (throughput, free space).
    Down,
}

/// What a signal lets raise a series' score above 1; every other point scores at most 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmGate {
    /// A deviation from the window's mean smaller than this (in the signal's unit) is never
    /// anomalous: the floor against low-volume noise.
    pub min_deviation: f64,
    /// Which way a deviation must go to be anomalous.
    pub direction: DetectionDirection,
}

impl AlarmGate {
    /// Every deviation may alarm: a series of no named signal (a benchmark's, in `backtest`).
    pub const ANY: AlarmGate = AlarmGate { min_deviation: 0.0, direction: DetectionDirection::Both };

    /// Whether a point at `value` may score above 1, against the mean of the window before it.
    /// A NaN comparison admits the point, as the model's own score decides then.
    fn admits(&self, value: f64, window_mean: f64) -> bool {
        let departure = value - window_mean;
        let wrong_way = match self.direction {
            DetectionDirection::Both => false,
            DetectionDirection::Up => departure < 0.0,
            DetectionDirection::Down => departure > 0.0,
        };
        !(departure.abs() < self.min_deviation || wrong_way)
    }
}

/// How every series' detector is built. At the defaults a series holds two models (the short and
/// the long window's) of about 64 KiB each and its training set's values (3,180 × 8 bytes): 165
/// KiB of resident memory in all, 1.57 GiB at 10,000 series; 91 KiB without the long window
/// (measured, `benches/detector_memory.rs`, README Cycle cost).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorParams {
    /// Points in the rolling window the features describe.
    pub window: usize,
    /// Points in the long window a second forest's features describe (0: no second forest). The
    /// default, 300, lifts the Microsoft KPIs' NAB score by about 3 points and SMD's low-FP score
    /// by about 3 over no second forest, and beats 200 on low FP (README, Detection quality); it
    /// doubles the detector's CPU per point (two forests score every point and fit at every
    /// refit) and adds about 74 KiB of memory per series (a second model; the training values are
    /// shared).
    pub long_window: usize,
    /// Trees per model. The default, 100, scores above 50 on SMD (1.4 points standard, the mean
    /// over six detector seeds) and the Microsoft KPIs (0.5), and varies less from seed to seed,
    /// for twice the models' memory and fitting time (README, Detection quality).
    pub trees: usize,
    /// Rows drawn for each tree (ψ).
    pub sample_size: usize,
    /// Most recent points a model is trained on.
    pub training_points: usize,
    /// Points needed before the first model is fitted (until then the series is warming up).
    pub min_training_points: usize,
    /// Points between refits.
    pub retrain_every_points: usize,
    /// Expected share of anomalous points: where the decision threshold (score 1.0) lies.
    pub contamination: f64,
    /// How far beyond its training range (as a share of that range) a feature may go before the
    /// point counts as anomalous for that reason alone.
    pub range_tolerance: f64,
    /// Base seed; each series mixes in its own key, so models differ but are reproducible.
    pub seed: u64,
    /// Raw scores of the series' own recent points its scores are calibrated against (0: off);
    /// see the `calibrate` module.
    pub calibration_points: usize,
    /// The quantile of those recent scores that scales a series' scores down when above 1.0.
    pub calibration_quantile: f64,
    /// Points after an alarm whose scores are capped at 1.0 unless worse than the alarm (0: off).
    /// The default, 6, scores about a point above 5 on the Microsoft KPIs (every NAB profile, the
    /// mean over six detector seeds) and the same on SMD and the synthetic corpus; the response
    /// to it is jagged (README, Detection quality: 4 and 5 lie in a dip, 10 falls off).
    pub quiet_points: usize,
    /// How far back a new high or low is judged (at least `min_training_points` points, at most
    /// the training set; `0`: off); see the `history` module.
    #[serde(deserialize_with = "duration_text")]
    pub extreme_horizon: Duration,
    /// How far beyond that horizon's range (as a share of it) a value may go before it is
    /// anomalous for that reason alone.
    pub extreme_tolerance: f64,
    /// A seasonal deviation of this many robust standard deviations scores 1.0 (0: off).
    pub seasonal_z: f64,
    /// The autocorrelation at a day or a week that makes the series seasonal.
    pub seasonal_min_autocorrelation: f64,
    /// A value this many robust standard deviations above the median of the 100 values before it
    /// scores 1.0 beside the calibrated score, once it has lasted `surge_duration` (0: off); see
    /// the `surge` module. The default, 5, lifts the Microsoft KPIs' NAB scores from 57.7 / 50.0 /
    /// 62.0 to 76.2 / 65.8 / 81.6 (means over detector seeds 0–2; 74.5 / 64.2 / 79.9 before a
    /// series at 0 most of the time was measured against its values above 0) and leaves SMD's and
    /// the synthetic corpus' unchanged (README, Detection quality, rounds 8 and 9).
    pub surge_z: f64,
    /// How long, by the data's clock, every point of a surge must have been at `surge_z` before
    /// it scores: one point of hourly data, sixty of minute data. Shorter spans page on the blips
    /// of minute-level machine metrics (SMD 77.9 / 67.9 at 30 minutes, 75.8 / 63.4 at 15).
    #[serde(deserialize_with = "duration_text")]
    pub surge_duration: Duration,
}

/// Reads a duration written as the rest of the file writes them (`72h`, `3d`, `0`).
fn duration_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::source::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            window: 10,
            long_window: 300,
            trees: 100,
            sample_size: 128,
            training_points: 2880,
            min_training_points: 60,
            retrain_every_points: 240,
            contamination: 0.01,
            range_tolerance: 0.25,
            seed: 0,
            calibration_points: 100,
            calibration_quantile: 0.99,
            quiet_points: 6,
            extreme_horizon: Duration::from_secs(3 * 86_400),
            extreme_tolerance: 0.1,
            seasonal_z: 4.0,
            seasonal_min_autocorrelation: 0.6,
            surge_z: 5.0,
            surge_duration: Duration::from_secs(3600),
        }
    }
}

/// The longest rolling window accepted: 10,000 points is 42 hours at a 15 s step.
const MAX_WINDOW: usize = 10_000;

/// The most trees a series' model takes (the default is 100).
const MAX_SERIES_TREES: usize = 1_000;

/// The most points a series keeps to train on, or to calibrate against: each is kept per series.
const MAX_SERIES_POINTS: usize = 100_000;

impl DetectorParams {
    /// Checks the parameters; the message names the key under `detector.`.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.window >= 2, "window: must be at least 2"),
            // Every series allocates its windows up front: a typo's billion points would fail
            // allocation in the first cycle instead of here.
            (self.window <= MAX_WINDOW, "window: must be at most 10000"),
            (self.long_window != 1, "long_window: must be 0 (off) or at least 2"),
            (self.long_window <= MAX_WINDOW, "long_window: must be at most 10000"),
            (self.trees >= 1, "trees: must be at least 1"),
            // Per series, like the windows: a typo's million trees would exhaust memory at the
            // first fits rather than be refused here.
            (self.trees <= MAX_SERIES_TREES, "trees: must be at most 1000"),
            (
                (1..=crate::forest::MAX_SAMPLE_SIZE).contains(&self.sample_size),
                "sample_size: must be between 1 and 32768",
            ),
            (self.min_training_points >= 2, "min_training_points: must be at least 2"),
            (self.training_points >= self.min_training_points, "training_points: must be at least min_training_points"),
            (self.training_points <= MAX_SERIES_POINTS, "training_points: must be at most 100000"),
            (self.calibration_points <= MAX_SERIES_POINTS, "calibration_points: must be at most 100000"),
            (self.retrain_every_points >= 1, "retrain_every_points: must be at least 1"),
            (self.contamination > 0.0 && self.contamination <= 0.5, "contamination: must be in (0, 0.5]"),
            (self.range_tolerance >= 0.0 && self.range_tolerance.is_finite(), "range_tolerance: must be at least 0"),
            (
                self.calibration_quantile > 0.0 && self.calibration_quantile <= 1.0,
                "calibration_quantile: must be in (0, 1]",
            ),
            (
                self.extreme_tolerance >= 0.0 && self.extreme_tolerance.is_finite(),
                "extreme_tolerance: must be at least 0",
            ),
            (self.seasonal_z >= 0.0 && self.seasonal_z.is_finite(), "seasonal_z: must be at least 0"),
            (self.surge_z >= 0.0 && self.surge_z.is_finite(), "surge_z: must be at least 0"),
            (
                self.seasonal_min_autocorrelation > 0.0 && self.seasonal_min_autocorrelation <= 1.0,
                "seasonal_min_autocorrelation: must be in (0, 1]",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, problem)) => Err(format!("detector.{problem}")),
            None => Ok(()),
        }
    }
}

/// Beyond this many ranges, "how far beyond" carries no more information; an unbounded excess (a
/// flat series that moves) would only make graphs unreadable. High enough that the terms of
/// different incidents stay apart: at 10, a spike and the ten points after it (whose rolling
/// features carry it) all tied at the cap, and a series' 99th percentile of raw scores became
/// that cap for its next `calibration_points` points, hiding the next incident (README).
pub(crate) const EXCESS_CAP: f64 = 100.0;

/// The range term's cap per feature. The window's mean and standard deviation carry a spike for
/// `window` points after it, and the delta of the point after it is the way back down: beyond
/// `EXCESS_CAP` ranges these echoes would outscore the spike itself and reopen its quiet period
/// (a second page for one spike); capped at 10 ranges (the cap of every feature before) they stay
/// below any spike that mattered, which the value and its z-scores still measure up to the cap
/// (the robust z-score's median and MAD barely carry a spike: it needs no lower cap).
const EXCESS_CAPS: [f64; FEATURE_COUNT] = [EXCESS_CAP, 10.0, 10.0, 10.0, EXCESS_CAP, EXCESS_CAP];

/// What a model knows about itself, for `/services` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInfo {
    /// When it was fitted, by the data's clock (ms since the epoch).
    pub trained_at_ms: i64,
    /// Points it was fitted on.
    pub rows: usize,
    /// How many times this series' model has been fitted.
    pub generation: u64,
}

/// The verdict on one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// When (ms since the epoch).
    pub timestamp_ms: i64,
    /// The value scored.
    pub value: f64,
    /// The anomaly score (1.0 = decision threshold), or `None` while warming up or for a value
    /// that could not be scored (NaN, the first points of a window).
    pub anomaly_score: Option<f64>,
}

/// A fitted model: the forest and the range of each feature over its training points.
#[derive(Debug, Clone)]
struct Model {
    forest: Forest,
    feature_min: [f32; FEATURE_COUNT],
    feature_max: [f32; FEATURE_COUNT],
    info: ModelInfo,
    season: Option<Season>,
}

impl Model {
    fn anomaly_score(&self, features: &[f32; FEATURE_COUNT], range_tolerance: f64) -> Option<f64> {
        let forest_score = self.forest.score_row(features).ok()? / self.forest.threshold();
        let excess = (0..FEATURE_COUNT)
            .map(|f| {
                let (low, high, x) =
                    (f64::from(self.feature_min[f]), f64::from(self.feature_max[f]), f64::from(features[f]));
                let range = (high - low).max(high.abs().max(low.abs()) * 1e-3).max(1e-9);
                ((x - high).max(low - x) / range).max(0.0).min(EXCESS_CAPS[f])
            })
            .fold(0.0, f64::max);
        Some(forest_score.max(1.0 + excess - range_tolerance))
    }
}

impl Model {
    /// Fits a model on `rows` (features, row-major, oldest first); `None` (logged) when the
    /// forest cannot be fitted, which would be a bug: features are finite by construction and
    /// the parameters were validated with the config.
    fn fit(rows: Vec<f32>, params: &DetectorParams, seed: u64, info: ModelInfo) -> Option<Self> {
        let mut feature_min = [f32::INFINITY; FEATURE_COUNT];
        let mut feature_max = [f32::NEG_INFINITY; FEATURE_COUNT];
        for row in rows.chunks_exact(FEATURE_COUNT) {
            for f in 0..FEATURE_COUNT {
                feature_min[f] = feature_min[f].min(row[f]);
                feature_max[f] = feature_max[f].max(row[f]);
            }
        }
        let forest_params = ForestParams {
            trees: params.trees,
            sample_size: Some(params.sample_size),
            seed,
            contamination: Contamination::Fraction(params.contamination),
        };
        let fitted = Matrix::from_row_major(rows, FEATURE_COUNT)
            .and_then(|matrix| Forest::fit_with_threads(&matrix, &forest_params, std::num::NonZeroUsize::MIN));
        let forest = match fitted {
            Ok(forest) => forest,
            Err(error) => {
                tracing::warn!(%error, "model fit failed; keeping the previous model");
                return None;
            }
        };
        Some(Self { forest, feature_min, feature_max, info, season: None })
    }
}

/// The long window's own features, forest and calibration; its training rows are recomputed
/// from the series' training values when it is fitted.
#[derive(Debug, Clone)]
struct LongView {
    window: FeatureWindow,
    model: Option<Model>,
    calibration: Calibration,
}

/// The long forest's seed differs from the short one's for the same series and generation.
const LONG_SEED_OFFSET: u64 = 0x9E37_79B9_7F4A_7C15;

impl LongView {
    fn new(params: &DetectorParams) -> Option<Self> {
        (params.long_window >= 2).then(|| Self {
            window: FeatureWindow::new(params.long_window),
            model: None,
            calibration: Calibration::default(),
        })
    }

    /// Scores a point's long-window `features` (calibrated on this view's own recent scores).
    /// `None` before this view's first model.
    fn score(&mut self, params: &DetectorParams, features: &[f32; FEATURE_COUNT]) -> Option<f64> {
        let raw = self.model.as_ref()?.anomaly_score(features, params.range_tolerance)?;
        Some(self.calibration.calibrate(raw, params.calibration_points, params.calibration_quantile))
    }
}

/// One series' detector.
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    window: FeatureWindow,
    /// The training points' values, and the points before them that both views' features read.
    training: TrainingValues,
    model: Option<Model>,
    points_since_fit: usize,
    seed: u64,
    last_timestamp_ms: Option<i64>,
    calibration: Calibration,
    clock: StepClock,
    /// The range of the training set's recent values, for the new-extreme term.
    recent_range: RecentRange,
    /// The second forest over the long window (`None` when `long_window` is 0).
    long: Option<LongView>,
    /// The points in a row, up to now, at the surge bar.
    surge: SurgeRun,
}

impl SeriesDetector {
    /// A fresh detector; `series_seed` distinguishes this series' models from others'.
    pub fn new(params: &DetectorParams, series_seed: u64) -> Self {
        let window = FeatureWindow::new(params.window);
        let long = LongView::new(params);
        // The training values keep what the longest-reaching view's features read.
        let lookback = window.lookback().max(long.as_ref().map_or(0, |long| long.window.lookback()));
        Self {
            window,
            training: TrainingValues::new(params.training_points, lookback),
            model: None,
            points_since_fit: 0,
            seed: params.seed ^ series_seed,
            last_timestamp_ms: None,
            calibration: Calibration::default(),
            clock: StepClock::default(),
            recent_range: RecentRange::default(),
            long,
            surge: SurgeRun::default(),
        }
    }

    /// Scores the point at `timestamp_ms` with the current model, then learns from it (and
    /// refits when due). Points at or before the last one seen are ignored (a replayed backfill
    /// overlapping live data), and give `None`.
    pub fn observe(
        &mut self,
        params: &DetectorParams,
        gate: AlarmGate,
        timestamp_ms: i64,
        value: f64,
    ) -> Option<Observation> {
        if self.last_timestamp_ms.is_some_and(|last| timestamp_ms <= last) {
            return None;
        }
        self.tick(timestamp_ms);
        let features = self.window.push(value);
        // The long window takes every value the short one takes, as in `warm_up`.
        let long_features = self.long.as_mut().and_then(|long| long.window.push(value));
        let surge_score = self.surge_score(params, value);
        let Some(features) = features else {
            self.learn(params, value, None);
            return Some(Observation { timestamp_ms, value, anomaly_score: None });
        };
        let admitted = gate.admits(value, f64::from(features[1]));
        let long_score = match (self.long.as_mut(), long_features) {
            (Some(long), Some(long_features)) => long.score(params, &long_features),
            _ => None,
        };
        let anomaly_score = self
            .model
            .as_ref()
            .and_then(|model| model.anomaly_score(&features, params.range_tolerance))
            .map(|raw| raw.max(self.history_score(params, value)));
        let anomaly_score = anomaly_score.map(|raw| {
            let score = self.calibration.calibrate(raw, params.calibration_points, params.calibration_quantile);
            let score = long_score.map_or(score, |long| score.max(long)).max(surge_score);
            let score = if admitted { score } else { score.min(1.0) };
            self.calibration.quiet(score, params.quiet_points)
        });
        self.learn(params, value, Some(features));
        self.points_since_fit += 1;
        let due = match self.model {
            None => self.training.len() >= params.min_training_points,
            Some(_) => self.points_since_fit >= params.retrain_every_points,
        };
        if due {
            self.fit(params, timestamp_ms);
        }
        Some(Observation { timestamp_ms, value, anomaly_score })
    }

    /// Learns from history without scoring it (cold start), then fits at once if there is enough:
    /// a model of the whole history, what `train` writes.
    pub fn warm_up(&mut self, params: &DetectorParams, points: impl IntoIterator<Item = (i64, f64)>) {
        let mut last = None;
        for (timestamp_ms, value) in points {
            if self.last_timestamp_ms.is_some_and(|seen| timestamp_ms <= seen) {
                continue;
            }
            self.tick(timestamp_ms);
            last = Some(timestamp_ms);
            let features = self.window.push(value);
            if let Some(long) = self.long.as_mut() {
                long.window.push(value);
            }
            self.learn(params, value, features);
        }
        if let Some(now) = last
            && self.training.len() >= params.min_training_points
        {
            self.fit(params, now);
        }
    }

    /// Takes a new series' history (the daemon's backfill): as [`warm_up`](Self::warm_up), and
    /// the series' calibration starts from its own recent scores. The history's last
    /// `calibration_points` are scored as live points (by a model fitted on the points before
    /// them), their scores dropped, before the model is fitted on the whole history. Without
    /// them the first `calibration_points` scores after every restart are raw, and a restart
    /// raises more alarms (`benches/restart_calibration.rs`, README "How a value becomes a score
    /// and a severity"; so did leaving the model fitted before those points). It costs a second
    /// fit. The quiet period does not carry over.
    pub fn backfill(&mut self, params: &DetectorParams, points: impl IntoIterator<Item = (i64, f64)>) {
        let points: Vec<(i64, f64)> = points.into_iter().collect();
        // What a first model needs: its training points, and the window before the first.
        let first_model_points = params.min_training_points + params.window;
        let replayed = params.calibration_points.min(points.len().saturating_sub(first_model_points));
        let (learned, replayed) = points.split_at(points.len() - replayed);
        self.warm_up(params, learned.iter().copied());
        if replayed.is_empty() {
            return;
        }
        for &(timestamp_ms, value) in replayed {
            self.observe(params, AlarmGate::ANY, timestamp_ms, value);
        }
        self.calibration.end_quiet();
        if let Some(now) = self.last_timestamp_ms
            && self.training.len() >= params.min_training_points
        {
            self.fit(params, now);
            // Spread as after a first fit: series that start together must not refit together.
            self.points_since_fit = self.refit_offset(params);
        }
    }

    /// Moves the series' clock to `timestamp_ms`, a point after the last one.
    fn tick(&mut self, timestamp_ms: i64) {
        if let Some(last) = self.last_timestamp_ms {
            self.clock.record(timestamp_ms - last);
        }
        self.last_timestamp_ms = Some(timestamp_ms);
    }

    /// The surge term of the value just pushed into the window (0 when the rule is off or the
    /// value is not a lasting surge); see the `surge` module. Every point counts towards a run,
    /// scored or not, so a run's length is the data's.
    fn surge_score(&mut self, params: &DetectorParams, value: f64) -> f64 {
        if params.surge_z == 0.0 {
            return 0.0;
        }
        let zscore = self.window.center_before_last().and_then(|center| surge::surge_zscore(value, center));
        let needed = self.clock.points_in(params.surge_duration.as_millis());
        self.surge.score(zscore, params.surge_z, needed)
    }

    /// The larger of the new-extreme and seasonal terms for `value`, from the training set's
    /// values (the points before it, newest last); 0 when neither applies.
    fn history_score(&self, params: &DetectorParams, value: f64) -> f64 {
        let extreme = if params.extreme_horizon.is_zero() {
            0.0
        } else {
            let horizon = self.clock.points_in(params.extreme_horizon.as_millis()).max(params.min_training_points);
            history::extreme_score(value, self.recent_range.last(horizon), params.extreme_tolerance)
        };
        let seasonal = match self.model.as_ref().and_then(|model| model.season) {
            Some(season) if params.seasonal_z > 0.0 => match self.training.value_ago(season.period_points) {
                Some(a_period_ago) => history::seasonal_score(value, a_period_ago, &season, params.seasonal_z),
                None => 0.0,
            },
            _ => 0.0,
        };
        extreme.max(seasonal)
    }

    /// Adds a point to the training set (a value the windows took: every finite one),
    /// forgetting the oldest beyond its size; `features`, the point's short-window row, says it
    /// is a training point for the new-extreme term.
    fn learn(&mut self, params: &DetectorParams, value: f64, features: Option<[f32; FEATURE_COUNT]>) {
        if !value.is_finite() {
            return;
        }
        self.training.push(value);
        if let Some(features) = features {
            self.recent_range.push(features[0], params.training_points);
        }
    }

    fn fit(&mut self, params: &DetectorParams, now_ms: i64) {
        let generation = self.model.as_ref().map_or(0, |model| model.info.generation) + 1;
        // Both views' rows in one pass over the training values (their robust z-scores are the
        // same, counted once).
        let (rows, long_rows) = match self.long.as_ref().map(|long| long.window.capacity()) {
            Some(long_window) => {
                let [rows, long_rows] = self.training.rows_of_views([params.window, long_window]);
                (rows, Some(long_rows))
            }
            None => {
                let [rows] = self.training.rows_of_views([params.window]);
                (rows, None)
            }
        };
        let info = ModelInfo { trained_at_ms: now_ms, rows: rows.len() / FEATURE_COUNT, generation };
        let Some(mut model) = Model::fit(rows, params, self.seed.wrapping_add(generation), info) else {
            return;
        };
        if params.seasonal_z > 0.0 {
            let values: Vec<f64> = self.training.values().collect();
            model.season = history::detect_season(&values, self.clock.step_ms(), params.seasonal_min_autocorrelation);
        }
        self.model = Some(model);
        // The long view is refitted with the short one, on the same training points' features
        // over its own window (as many rows: both windows give features from a series' third
        // point).
        if let (Some(long), Some(rows)) = (self.long.as_mut(), long_rows)
            && !self.training.is_empty()
        {
            let info = ModelInfo { rows: rows.len() / FEATURE_COUNT, ..info };
            let seed = self.seed.wrapping_add(generation) ^ LONG_SEED_OFFSET;
            if let Some(model) = Model::fit(rows, params, seed, info) {
                long.model = Some(model);
            }
        }
        self.points_since_fit = if generation == 1 { self.refit_offset(params) } else { 0 };
    }

    /// Where a series starts counting towards its next refit after a first fit: series that start
    /// together (a daemon restart, a backfill) would all refit in the same cycle forever; a
    /// per-series offset spreads them.
    fn refit_offset(&self, params: &DetectorParams) -> usize {
        (self.seed % params.retrain_every_points as u64) as usize
    }

    /// The current model's facts, or `None` while warming up.
    pub fn model_info(&self) -> Option<ModelInfo> {
        self.model.as_ref().map(|model| model.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small models that fit early (with the default long window).
    fn params() -> DetectorParams {
        DetectorParams {
            min_training_points: 50,
            retrain_every_points: 100,
            long_window: 200,
            ..DetectorParams::default()
        }
    }

    /// A noisy periodic signal, deterministic.
    fn signal(i: usize) -> f64 {
        let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
        0.3 + 0.05 * (i as f64 / 40.0).sin() + 0.01 * noise
    }

    #[test]
    fn warms_up_then_scores_and_flags_a_spike() {
        let p = params();
        let mut detector = SeriesDetector::new(&p, 1);
        for i in 0..600 {
            let observation = detector.observe(&p, AlarmGate::ANY, i as i64 * 15_000, signal(i)).unwrap();
            // Two points start the window, then 50 points of features train the first model.
            if i < 52 {
                assert_eq!(observation.anomaly_score, None, "point {i} scored before a model exists");
            } else {
                assert!(observation.anomaly_score.is_some());
            }
        }
        // After two full periods of history, ordinary points sit inside the model's boundary.
        let mut scores: Vec<f64> = (600..800)
            .filter_map(|i| detector.observe(&p, AlarmGate::ANY, i as i64 * 15_000, signal(i))?.anomaly_score)
            .collect();
        scores.sort_by(f64::total_cmp);
        let typical = scores[scores.len() / 2];
        let spike = detector.observe(&p, AlarmGate::ANY, 800 * 15_000, 0.9).unwrap().anomaly_score.unwrap();
        assert!(typical < 1.0, "typical point scored {typical}");
        assert!(spike > 1.5, "spike scored {spike}");
        assert!(detector.model_info().unwrap().generation >= 7, "refits every 100 points");
    }

    #[test]
    fn cold_start_fits_from_history_at_once() {
        let p = params();
        let mut detector = SeriesDetector::new(&p, 2);
        detector.warm_up(&p, (0..200).map(|i| (i as i64 * 15_000, signal(i))));
        let info = detector.model_info().expect("model after backfill");
        assert_eq!(info.trained_at_ms, 199 * 15_000);
        // The backfilled range is not replayed: an older point is ignored, a newer one scored.
        assert_eq!(detector.observe(&p, AlarmGate::ANY, 100 * 15_000, 1.0), None);
        assert!(detector.observe(&p, AlarmGate::ANY, 200 * 15_000, signal(200)).unwrap().anomaly_score.is_some());
    }

    #[test]
    fn deviations_below_the_floor_are_never_anomalous() {
        let p = params();
        let mut detector = SeriesDetector::new(&p, 4);
        // A flat zero series (an error ratio without errors)...
        detector.warm_up(&p, (0..200).map(|i| (i as i64, 0.0)));
        // ...then one failed request: unusual to the model, not worth a page.
        let floor = AlarmGate { min_deviation: 0.01, ..AlarmGate::ANY };
        let small = detector.observe(&p, floor, 200, 0.003).unwrap().anomaly_score.unwrap();
        assert!(small <= 1.0, "{small}");
        let big = detector.observe(&p, floor, 201, 0.3).unwrap().anomaly_score.unwrap();
        assert!(big > 1.0, "{big}");
    }

    #[test]
    fn deviations_the_wrong_way_are_never_anomalous() {
        let p = params();
        let scores = |direction, step: f64| {
            let mut detector = SeriesDetector::new(&p, 4);
            detector.warm_up(&p, (0..200).map(|i| (i as i64, signal(i as usize))));
            let gate = AlarmGate { direction, ..AlarmGate::ANY };
            detector.observe(&p, gate, 200, signal(200) + step).unwrap().anomaly_score.unwrap()
        };
        // A fall the model flags (a heap right after a collection) is not news for a signal that
        // is bad only when it rises, and the reverse; a rise is still flagged, as with `both`.
        let (fall, rise) = (scores(DetectionDirection::Both, -0.6), scores(DetectionDirection::Both, 0.6));
        assert!(fall > 1.0 && rise > 1.0, "fall {fall}, rise {rise}");
        assert!(scores(DetectionDirection::Up, -0.6) <= 1.0);
        assert_eq!(scores(DetectionDirection::Up, 0.6), rise);
        assert!(scores(DetectionDirection::Down, 0.6) <= 1.0);
        assert_eq!(scores(DetectionDirection::Down, -0.6), fall);
    }

    #[test]
    fn backfill_leaves_the_calibration_its_history_scores() {
        let p = params();
        let history = |points: usize| (0..points).map(|i| (i as i64 * 15_000, signal(i)));
        let mut detector = SeriesDetector::new(&p, 2);
        detector.backfill(&p, history(400));
        // The last 100 points were scored, by both views, so the first live score is calibrated.
        assert_eq!(detector.calibration.recorded(), p.calibration_points);
        assert_eq!(detector.long.as_ref().unwrap().calibration.recorded(), p.calibration_points);
        // The model is then fitted on all of it, and refits on the spread schedule.
        assert_eq!(detector.model_info().unwrap().trained_at_ms, 399 * 15_000);
        assert_eq!(detector.points_since_fit, detector.refit_offset(&p));
        // A history just long enough for a first model is all learned, none of it scored.
        let mut short = SeriesDetector::new(&p, 2);
        short.backfill(&p, history(p.min_training_points + p.window));
        assert_eq!(short.calibration.recorded(), 0);
        assert!(short.model_info().is_some());
    }

    #[test]
    fn short_history_stays_in_warm_up() {
        let p = params();
        let mut detector = SeriesDetector::new(&p, 3);
        detector.warm_up(&p, (0..10).map(|i| (i as i64, signal(i as usize))));
        assert!(detector.model_info().is_none());
    }

    #[test]
    fn invalid_params_name_the_key() {
        let p = DetectorParams { contamination: 0.0, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.contamination: must be in (0, 0.5]");
        assert!(DetectorParams::default().validate().is_ok());
        let p = DetectorParams { calibration_quantile: 1.5, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.calibration_quantile: must be in (0, 1]");
        let p = DetectorParams { seasonal_min_autocorrelation: 0.0, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.seasonal_min_autocorrelation: must be in (0, 1]");
        let p = DetectorParams { extreme_tolerance: -1.0, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.extreme_tolerance: must be at least 0");
        let p = DetectorParams { surge_z: f64::NAN, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.surge_z: must be at least 0");
        // Sizes kept per series are bounded, so a typo is refused rather than run out of memory.
        let p = DetectorParams { trees: 1_000_000_000, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.trees: must be at most 1000");
        let p = DetectorParams { training_points: 100_001, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.training_points: must be at most 100000");
        let p = DetectorParams { calibration_points: usize::MAX, ..DetectorParams::default() };
        assert_eq!(p.validate().unwrap_err(), "detector.calibration_points: must be at most 100000");
    }

    #[test]
    fn the_extreme_horizon_reads_as_a_duration() {
        let p: DetectorParams =
            serde_yaml_ng::from_str("extreme_horizon: 12h\nseasonal_z: 0\nsurge_duration: 30m").unwrap();
        assert_eq!(p.extreme_horizon, Duration::from_secs(12 * 3600));
        assert_eq!(p.surge_duration, Duration::from_secs(30 * 60));
        assert_eq!(p.seasonal_z, 0.0);
        let error = serde_yaml_ng::from_str::<DetectorParams>("extreme_horizon: soon").unwrap_err().to_string();
        assert!(error.contains("soon"), "{error}");
    }

    /// A daily cycle at 5-minute steps with a little deterministic noise.
    fn daily(i: usize) -> f64 {
        let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
        100.0 + 30.0 * (std::f64::consts::TAU * i as f64 / 288.0).sin() + noise
    }

    const FIVE_MINUTES: i64 = 300_000;

    #[test]
    fn a_missing_daily_peak_is_flagged_only_with_the_seasonal_term() {
        let with = DetectorParams::default();
        let without = DetectorParams { seasonal_z: 0.0, ..DetectorParams::default() };
        let peak_replaced_by_the_mean = |p: &DetectorParams| {
            let mut detector = SeriesDetector::new(p, 6);
            detector.warm_up(p, (0..4 * 288).map(|i| (i as i64 * FIVE_MINUTES, daily(i))));
            // The fifth day stays at the days' mean: no jump, only the peak that does not come.
            (4 * 288..4 * 288 + 100)
                .filter_map(|i| {
                    let value = daily(i) - 30.0 * (std::f64::consts::TAU * i as f64 / 288.0).sin();
                    detector.observe(p, AlarmGate::ANY, i as i64 * FIVE_MINUTES, value)?.anomaly_score
                })
                .fold(0.0, f64::max)
        };
        let (flagged, missed) = (peak_replaced_by_the_mean(&with), peak_replaced_by_the_mean(&without));
        assert!(flagged > 1.5, "with the seasonal term: {flagged}");
        // Without it, the forest sees a flat stretch at the days' mean, a value it learned, at the
        // edge of its boundary (since the robust z-score's column, a few points score 1.00-1.02):
        // at most a warning, never a page.
        let high = crate::classify::AnomalyLevels::default().high;
        assert!(missed < high, "the forest alone sees a plausible value: {missed}");
    }

    #[test]
    fn a_new_high_over_the_horizon_is_flagged_at_once() {
        // A slow ramp: every point is a little above all before it, so the model (fitted up to
        // 100 points ago) sees it beyond its range only by a sliver; the current horizon does not.
        let p = DetectorParams { retrain_every_points: 100, ..DetectorParams::default() };
        let mut detector = SeriesDetector::new(&p, 7);
        let noisy_flat = |i: usize| 10.0 + ((i * 7919) % 101) as f64 / 101.0;
        detector.warm_up(&p, (0..500).map(|i| (i as i64 * FIVE_MINUTES, noisy_flat(i))));
        let typical =
            detector.observe(&p, AlarmGate::ANY, 500 * FIVE_MINUTES, noisy_flat(500)).unwrap().anomaly_score.unwrap();
        let high = detector.observe(&p, AlarmGate::ANY, 501 * FIVE_MINUTES, 11.5).unwrap().anomaly_score.unwrap();
        assert!(typical <= 1.0, "{typical}");
        assert!(high > 1.2, "half a range above everything in three days: {high}");
        let off = DetectorParams { extreme_horizon: Duration::ZERO, ..p.clone() };
        let mut detector = SeriesDetector::new(&off, 7);
        detector.warm_up(&off, (0..501).map(|i| (i as i64 * FIVE_MINUTES, noisy_flat(i))));
        let high_off = detector.observe(&off, AlarmGate::ANY, 501 * FIVE_MINUTES, 11.5).unwrap().anomaly_score.unwrap();
        assert!(high_off < high, "the term adds to what the model says: {high_off} vs {high}");
    }

    #[test]
    fn the_long_window_has_its_own_model_and_can_be_turned_off() {
        let p = params();
        let mut detector = SeriesDetector::new(&p, 8);
        detector.warm_up(&p, (0..400).map(|i| (i as i64 * 15_000, signal(i))));
        let long = detector.long.as_ref().expect("on in these params");
        assert_eq!(long.window.capacity(), p.long_window);
        let (short_model, long_model) = (detector.model.as_ref().unwrap(), long.model.as_ref().unwrap());
        assert_eq!(long_model.info, short_model.info, "fitted together, on as many rows");
        // The long window's rolling mean varies less than the short one's over a slow cycle.
        let span = |m: &Model| m.feature_max[1] - m.feature_min[1];
        assert!(span(long_model) < span(short_model), "{} vs {}", span(long_model), span(short_model));
        let off = DetectorParams { long_window: 0, ..p.clone() };
        assert!(SeriesDetector::new(&off, 8).long.is_none());
        assert!(SeriesDetector::new(&DetectorParams::default(), 8).long.is_some(), "on by default");
        let p = DetectorParams { long_window: 1, ..p };
        assert_eq!(p.validate().unwrap_err(), "detector.long_window: must be 0 (off) or at least 2");
        let p = DetectorParams { long_window: 10_001, ..p };
        assert_eq!(p.validate().unwrap_err(), "detector.long_window: must be at most 10000");
        let p = DetectorParams { long_window: 0, window: 1_000_000_000, ..p };
        assert_eq!(p.validate().unwrap_err(), "detector.window: must be at most 10000");
    }

    #[test]
    fn the_training_values_stay_within_their_span_after_they_fill() {
        // Memory per series is mostly this buffer: one that doubled its capacity on its first
        // overflow would cost 10,000 series a few hundred MiB (benches/detector_memory.rs).
        let p = DetectorParams { training_points: 300, ..params() };
        let mut detector = SeriesDetector::new(&p, 3);
        detector.warm_up(&p, (0..500).map(|i| (i as i64 * 15_000, signal(i))));
        for i in 500..900 {
            detector.observe(&p, AlarmGate::ANY, i as i64 * 15_000, signal(i));
        }
        // 300 training points and the long window's 200 before them.
        assert_eq!(detector.training.len(), 300);
        assert!(detector.training.capacity() < 600, "capacity {} for 500 values", detector.training.capacity());
        let long = detector.long.as_ref().unwrap().model.as_ref().unwrap();
        assert_eq!(long.info.rows, 300);
    }

    #[test]
    fn training_rows_recomputed_at_a_fit_are_the_live_ones() {
        // The features the live path computed for the points a model is fitted on, collected
        // beside a detector, against the model's per-feature range (which comes from the rows
        // recomputed from the kept values).
        let p = DetectorParams { training_points: 300, ..params() };
        let mut detector = SeriesDetector::new(&p, 3);
        let (mut short, mut long) = (FeatureWindow::new(p.window), FeatureWindow::new(p.long_window));
        let (mut short_rows, mut long_rows) = (Vec::new(), Vec::new());
        // A level far from 0 and a long run, so the live windows' running sums carry rounding.
        let value = |i: usize| 1e4 + 100.0 * signal(i);
        for i in 0..5_000 {
            detector.observe(&p, AlarmGate::ANY, i as i64 * 15_000, value(i));
            short_rows.extend(short.push(value(i)));
            long_rows.extend(long.push(value(i)));
        }
        let range = |rows: &[[f32; FEATURE_COUNT]]| {
            let mut range = ([f32::INFINITY; FEATURE_COUNT], [f32::NEG_INFINITY; FEATURE_COUNT]);
            for row in rows {
                for (f, &x) in row.iter().enumerate() {
                    range.0[f] = range.0[f].min(x);
                    range.1[f] = range.1[f].max(x);
                }
            }
            range
        };
        // A fit now is on the live rows of the last 300 points.
        detector.fit(&p, 4_999 * 15_000);
        let model = detector.model.as_ref().unwrap();
        assert_eq!(model.info.rows, 300);
        let long_model = detector.long.as_ref().unwrap().model.as_ref().unwrap();
        for (view, model, rows) in [("short", model, &short_rows), ("long", long_model, &long_rows)] {
            let (low, high) = range(&rows[rows.len() - 300..]);
            for f in 0..FEATURE_COUNT {
                let tolerance = 1e-5 * high[f].abs().max(low[f].abs()).max(1.0);
                assert!(
                    (model.feature_min[f] - low[f]).abs() <= tolerance,
                    "{view} min {f}: {} vs {}",
                    model.feature_min[f],
                    low[f]
                );
                assert!(
                    (model.feature_max[f] - high[f]).abs() <= tolerance,
                    "{view} max {f}: {} vs {}",
                    model.feature_max[f],
                    high[f]
                );
            }
        }
    }

    #[test]
    fn a_restart_from_history_learns_the_live_training_set() {
        // The daemon keeps no training state across a restart: a new detector takes the series'
        // history (backfill or the `history` dataset). It then fits on the same values, so it
        // scores as the one that saw them live.
        let p = DetectorParams { training_points: 300, ..params() };
        let points: Vec<(i64, f64)> = (0..1_000).map(|i| (i as i64 * 15_000, signal(i))).collect();
        let mut live = SeriesDetector::new(&p, 11);
        for &(timestamp_ms, value) in &points {
            live.observe(&p, AlarmGate::ANY, timestamp_ms, value);
        }
        let mut restarted = SeriesDetector::new(&p, 11);
        restarted.backfill(&p, points.iter().copied());
        assert!(restarted.training.values().eq(live.training.values()));
        assert_eq!(restarted.training.rows(p.long_window), live.training.rows(p.long_window));
        // Fitted now, as the same generation (the same seed), both have the same models.
        live.fit(&p, 999 * 15_000);
        let generation = live.model_info().unwrap().generation;
        restarted.set_model_generation(generation - 1);
        restarted.fit(&p, 999 * 15_000);
        assert_eq!(restarted.model_info(), live.model_info());
        let pairs = [
            (live.model.as_ref().unwrap(), restarted.model.as_ref().unwrap()),
            (
                live.long.as_ref().unwrap().model.as_ref().unwrap(),
                restarted.long.as_ref().unwrap().model.as_ref().unwrap(),
            ),
        ];
        for (a, b) in pairs {
            assert_eq!((a.feature_min, a.feature_max, a.season), (b.feature_min, b.feature_max, b.season));
            for i in 0..50 {
                let row = [
                    signal(i) as f32,
                    0.3,
                    0.03,
                    0.01 * (i as f32 - 25.0),
                    0.1 * (i as f32 - 25.0),
                    0.2 * (i as f32 - 25.0),
                ];
                assert_eq!(a.anomaly_score(&row, 0.25), b.anomaly_score(&row, 0.25), "row {row:?}");
            }
        }
    }

    /// A crash count: about 20 an interval, with a burst to 400 every `every` points.
    fn bursty(i: usize, every: usize) -> f64 {
        let noise = ((i * 7919) % 101) as f64 / 10.0;
        if i % every == every - 1 { 400.0 + noise } else { 15.0 + noise }
    }

    /// The score of a burst after 400 points of bursts every 30 points, at `step_ms`.
    fn burst_score(p: &DetectorParams, step_ms: i64) -> f64 {
        let mut detector = SeriesDetector::new(p, 9);
        let mut last = 0.0;
        for i in 0..420 {
            let value = if i == 419 { 420.0 } else { bursty(i, 30) };
            last = detector.observe(p, AlarmGate::ANY, i as i64 * step_ms, value).unwrap().anomaly_score.unwrap_or(0.0);
        }
        last
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_surge_of_an_hour_pages_even_when_the_series_often_bursts() {
        let with = DetectorParams::default();
        let without = DetectorParams { surge_z: 0.0, ..DetectorParams::default() };
        // Hourly: a burst is an hour long. Calibration has learnt that this series bursts and
        // divides the model's score by its last bursts'; the surge term is not divided.
        let (paged, hidden) = (burst_score(&with, HOUR), burst_score(&without, HOUR));
        assert!(hidden <= 1.0, "calibrated only: {hidden}");
        assert!(paged > 1.0, "with the surge term: {paged}");
        // By the minute, one point of a burst is a one-minute blip: the term waits for an hour.
        assert_eq!(burst_score(&with, 60_000), burst_score(&without, 60_000));
    }

    /// The score of the last of `values`, one an hour.
    fn hourly_last_score(p: &DetectorParams, values: impl Iterator<Item = f64>) -> f64 {
        let mut detector = SeriesDetector::new(p, 4);
        let mut last = 0.0;
        for (i, value) in values.enumerate() {
            last = detector.observe(p, AlarmGate::ANY, i as i64 * HOUR, value).unwrap().anomaly_score.unwrap_or(0.0);
        }
        last
    }

    #[test]
    fn a_spike_on_a_series_idle_most_hours_pages_but_a_rare_count_of_three_does_not() {
        let with = DetectorParams::default();
        let without = DetectorParams { surge_z: 0.0, ..DetectorParams::default() };
        // A dependency called in two hours of five, at about 700 ms; a 20 s spike, then 30 hours
        // later one of 3 s. The first spike sets calibration's divisor; the median of the last
        // 100 hours is 0, so only the values above 0 can say how far 3 s is.
        let latency = |i: usize| match i {
            300 => 20_000.0,
            333 => 3_000.0,
            _ if i % 5 < 3 => 0.0,
            _ => 650.0 + ((i * 7919) % 101) as f64,
        };
        let (paged, hidden) =
            (hourly_last_score(&with, (0..334).map(latency)), hourly_last_score(&without, (0..334).map(latency)));
        assert!(hidden <= 1.0, "calibrated only: {hidden}");
        assert!(paged > 1.0, "with the surge term: {paged}");
        // Errors counted 0, 1 or 2 an hour, 4 now and then: a 3 is within a count's resolution of
        // them (measured against a MAD of 0, it would be 6.7 robust deviations), no surge.
        let errors = |i: usize| match i {
            333 => 3.0,
            _ if i % 50 == 25 => 4.0,
            _ => [0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 0.0][i % 7],
        };
        assert_eq!(hourly_last_score(&with, (0..334).map(errors)), hourly_last_score(&without, (0..334).map(errors)));
    }

    #[test]
    fn a_lasting_level_shift_alarms_once_then_stays_quiet() {
        let p = params();
        let mut detector = SeriesDetector::new(&p, 5);
        detector.warm_up(&p, (0..400).map(|i| (i as i64 * 15_000, signal(i))));
        let scores: Vec<f64> = (400..420)
            .filter_map(|i| detector.observe(&p, AlarmGate::ANY, i as i64 * 15_000, signal(i) + 1.0)?.anomaly_score)
            .collect();
        assert!(scores[0] > 1.5, "the shift is flagged at once: {scores:?}");
        // The quiet period, then the series' own recent scores, keep it from paging every point.
        assert!(scores[1..=p.quiet_points].iter().all(|&s| s <= 1.0), "{scores:?}");
    }
}
