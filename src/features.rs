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

/// A departing value whose squared offset from the shift is this many times the rest of the
/// window's spread (their squared deviations from their own mean) took the rest's low-order bits
/// with it when it left the running sums: they are then counted again from the window.
const DOMINANT_RATIO: f64 = 1024.0;

/// The last `capacity` values of a series and their running sums.
///
/// The sums are of each value's offset from `shift`, a recent mean of the window: plain sums of
/// squares lose a series' spread when its level is far above it (a gauge near 1e9 moving by tens:
/// Σv² − (Σv)²/n cancels every significant digit). Running sums also keep the rounding of every
/// value that ever passed through them, so they are counted again from the window, around its
/// mean, every `capacity` points (twice the additions, amortised) and as soon as a value that
/// dwarfed the rest leaves (a spike 1e8 times the level would otherwise erase the other values'
/// contribution for good).
#[derive(Debug, Clone)]
pub struct FeatureWindow {
    values: VecDeque<f64>,
    capacity: usize,
    shift: f64,
    sum: f64,
    sum_of_squares: f64,
    /// Points to add before the sums are counted again.
    until_recount: usize,
}

impl FeatureWindow {
    /// A window over the last `capacity` points (at least 2).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Self {
            values: VecDeque::with_capacity(capacity + 1),
            capacity,
            shift: 0.0,
            sum: 0.0,
            sum_of_squares: 0.0,
            until_recount: capacity,
        }
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
        if self.values.is_empty() {
            self.shift = value;
        }
        self.values.push_back(value);
        let offset = value - self.shift;
        self.sum += offset;
        self.sum_of_squares += offset * offset;
        self.until_recount -= 1;
        if self.values.len() > self.capacity
            && let Some(oldest) = self.values.pop_front()
        {
            let offset = oldest - self.shift;
            self.sum -= offset;
            self.sum_of_squares -= offset * offset;
            // Compared with the rest's spread around their own mean, not around the shift: a
            // recount while a spike was in the window put the shift far from the rest.
            let rest_spread = self.sum_of_squares - self.sum * self.sum / self.values.len() as f64;
            if offset * offset > DOMINANT_RATIO * rest_spread {
                self.recount();
            }
        }
        if self.until_recount == 0 {
            self.recount();
        }
        features
    }

    /// Counts the sums again from the window's values, as offsets from their mean.
    fn recount(&mut self) {
        let count = self.values.len().max(1) as f64;
        self.shift = self.values.iter().sum::<f64>() / count;
        let offsets = self.values.iter().map(|v| v - self.shift);
        (self.sum, self.sum_of_squares) = offsets.fold((0.0, 0.0), |(sum, squares), d| (sum + d, squares + d * d));
        self.until_recount = self.capacity;
    }

    fn features_of(&self, value: f64) -> Option<[f32; FEATURE_COUNT]> {
        let n = self.values.len();
        if n < 2 {
            return None;
        }
        let count = n as f64;
        let mean_offset = self.sum / count;
        let mean = self.shift + mean_offset;
        // Running sums drift by rounding; a tiny negative variance is zero.
        let variance = ((self.sum_of_squares - self.sum * mean_offset) / (count - 1.0)).max(0.0);
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

    /// Pushes `series` through a window of `capacity` points and checks, from point `from` on, that
    /// each point's rolling mean and std are those of the `capacity` values before it, counted
    /// directly (two passes): the mean to f32's precision, the std within `tolerance` of itself.
    fn assert_rolling_statistics_exact(series: &[f64], capacity: usize, from: usize, tolerance: f64) {
        let mut window = FeatureWindow::new(capacity);
        for (i, &v) in series.iter().enumerate() {
            let features = window.push(v);
            if i < from {
                continue;
            }
            let before = &series[i - capacity..i];
            let mean = before.iter().sum::<f64>() / capacity as f64;
            let squares: f64 = before.iter().map(|v| (v - mean) * (v - mean)).sum();
            let std = (squares / (capacity - 1) as f64).sqrt();
            let [_, got_mean, got_std, ..] = features.unwrap();
            assert_eq!(got_mean, mean as f32, "point {i}");
            assert!((f64::from(got_std) - std).abs() < tolerance * std, "point {i}: std {got_std}, exact {std}");
        }
    }

    #[test]
    fn a_spread_far_below_the_level_is_kept() {
        // A gauge near 1e9 moving by ±10: plain sums of squares (≈ 1e19) cannot hold a variance of
        // about 100 (their rounding step is about 2,000).
        let series: Vec<f64> = (0..500).map(|i| 1e9 + ((i * 37) % 21) as f64 - 10.0).collect();
        assert_rolling_statistics_exact(&series, 20, 20, 1e-3);
    }

    #[test]
    fn a_huge_spike_leaves_no_trace_once_it_has_left_the_window() {
        let series: Vec<f64> = (0..60).map(|i| if i == 25 { 1e12 } else { 100.0 + (i % 7) as f64 }).collect();
        // From point 36, whose window (26..36) no longer holds the spike.
        assert_rolling_statistics_exact(&series, 10, 36, 1e-6);
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
