//! Causal features of one series: what the forest sees at each point.
//!
//! Every feature at time t uses only points up to t, so a point is scored exactly as it would
//! have been live, and `backtest` replays the daemon faithfully. The rolling statistics describe
//! the window *before* the current point, so a spike does not dampen its own z-score.

use std::collections::VecDeque;

/// Names of the features, in the order [`FeatureWindow::push`] returns them.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = ["value", "rolling_mean", "rolling_std", "delta", "zscore"];

/// Number of features per point.
pub const FEATURE_COUNT: usize = 5;

/// A z-score is capped here: beyond it, "how far" carries no more information, and an unbounded
/// value (a flat series that moves) would dominate the forest's splits.
const ZSCORE_CAP: f64 = 50.0;

/// The last `capacity` values of a series and their running sums.
#[derive(Debug, Clone)]
pub struct FeatureWindow {
    values: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    sum_of_squares: f64,
}

impl FeatureWindow {
    /// A window over the last `capacity` points (at least 2).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Self { values: VecDeque::with_capacity(capacity + 1), capacity, sum: 0.0, sum_of_squares: 0.0 }
    }

    /// Points the window holds when full.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Points currently in the window.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the window holds no point yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds `value` and returns its features, or `None` while fewer than two earlier points exist
    /// (no spread to compare against yet). Non-finite values are not added and give `None`.
    pub fn push(&mut self, value: f64) -> Option<[f32; FEATURE_COUNT]> {
        if !value.is_finite() {
            return None;
        }
        let features = self.features_of(value);
        self.values.push_back(value);
        self.sum += value;
        self.sum_of_squares += value * value;
        if self.values.len() > self.capacity
            && let Some(oldest) = self.values.pop_front()
        {
            self.sum -= oldest;
            self.sum_of_squares -= oldest * oldest;
        }
        features
    }

    fn features_of(&self, value: f64) -> Option<[f32; FEATURE_COUNT]> {
        let n = self.values.len();
        if n < 2 {
            return None;
        }
        let count = n as f64;
        let mean = self.sum / count;
        // Running sums drift by rounding; a tiny negative variance is zero.
        let variance = ((self.sum_of_squares - self.sum * mean) / (count - 1.0)).max(0.0);
        let std = variance.sqrt();
        let previous = *self.values.back()?;
        let delta = value - previous;
        let deviation = value - mean;
        // Relative floor: a perfectly flat window still gives a finite, meaningful z-score.
        let scale = std.max(mean.abs() * 1e-6).max(1e-12);
        let zscore = (deviation / scale).clamp(-ZSCORE_CAP, ZSCORE_CAP);
        let features = [value, mean, std, delta, zscore];
        let narrowed = features.map(|f| f as f32);
        narrowed.iter().all(|f| f.is_finite()).then_some(narrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_two_points_have_no_features() {
        let mut window = FeatureWindow::new(5);
        assert_eq!(window.push(1.0), None);
        assert_eq!(window.push(2.0), None);
        assert!(window.push(3.0).is_some());
    }

    #[test]
    fn features_describe_the_window_before_the_point() {
        let mut window = FeatureWindow::new(4);
        for v in [1.0, 2.0, 3.0, 4.0] {
            window.push(v);
        }
        // The window is now [1, 2, 3, 4]: mean 2.5, sample std 1.2910, previous 4.
        let [value, mean, std, delta, zscore] = window.push(10.0).unwrap();
        assert_eq!(value, 10.0);
        assert_eq!(mean, 2.5);
        assert!((std - 1.290_994_4).abs() < 1e-5);
        assert_eq!(delta, 6.0);
        assert!((zscore - 7.5 / 1.290_994_4).abs() < 1e-4);
        // The oldest point fell out: [2, 3, 4, 10].
        let [_, mean, ..] = window.push(0.0).unwrap();
        assert_eq!(mean, 4.75);
    }

    #[test]
    fn flat_series_gives_finite_capped_zscore() {
        let mut window = FeatureWindow::new(10);
        for _ in 0..10 {
            window.push(5.0);
        }
        let [.., zscore] = window.push(6.0).unwrap();
        assert_eq!(zscore, ZSCORE_CAP as f32);
        let mut zeros = FeatureWindow::new(10);
        for _ in 0..10 {
            zeros.push(0.0);
        }
        assert!(zeros.push(0.0).unwrap().iter().all(|f| f.is_finite()));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut window = FeatureWindow::new(3);
        window.push(1.0);
        window.push(2.0);
        assert_eq!(window.push(f64::NAN), None);
        assert_eq!(window.push(f64::INFINITY), None);
        assert_eq!(window.len(), 2);
    }
}
