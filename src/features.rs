//! Causal features of one series: what the forest sees at each point.
//!
//! Every feature at time t uses only points up to t, so a point is scored exactly as it would
//! have been live, and `backtest` replays the daemon faithfully. The rolling statistics describe
//! the window *before* the current point, so a spike does not dampen its own z-score.
//!
//! Beside the window's mean and standard deviation, the robust z-score measures the point against
//! the median of the last [`ROBUST_POINTS`] values, in units of their median absolute deviation
//! (MAD): a spike or a short burst moves the mean and the standard deviation for as long as it is
//! in the window, but barely moves the median and the MAD, so the points after it are not
//! measured against it.

use std::collections::VecDeque;

/// Names of the features, in the order [`FeatureWindow::push`] returns them.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] =
    ["value", "rolling_mean", "rolling_std", "delta", "zscore", "robust_zscore"];

/// Number of features per point.
pub const FEATURE_COUNT: usize = 6;

/// Values before a point whose median and MAD the robust z-score reads, whatever the window's
/// length: about a day of hourly points, or 25 minutes at 15 s.
pub const ROBUST_POINTS: usize = 100;

/// The MAD times this estimates a normal distribution's standard deviation, so the robust
/// z-score reads like the z-score on well-behaved data.
pub(crate) const MAD_TO_STD: f64 = 1.4826;

/// The MAD is floored at this share of its values' range: a series that sits on one value most of
/// the time (a counter's rate of 0, a gauge at its ceiling) has a MAD of 0, and every move off
/// that value would otherwise score the cap.
const MAD_RANGE_FLOOR: f64 = 0.05;

/// A z-score is capped here: beyond it, "how far" carries no more information, and an unbounded
/// value (a flat series that moves) would dominate the forest's splits.
const ZSCORE_CAP: f64 = 50.0;

/// A departing value whose squared offset from the shift is this many times the rest of the
/// window's spread (their squared deviations from their own mean) took the rest's low-order bits
/// with it when it left the running sums: they are then counted again from the window.
const DOMINANT_RATIO: f64 = 1024.0;

/// A series' features over its last `capacity` values: the rolling statistics of a
/// [`RollingWindow`] and the robust z-score of a [`RollingMedian`] of the last [`ROBUST_POINTS`].
#[derive(Debug, Clone)]
pub struct FeatureWindow {
    rolling: RollingWindow,
    recent: RollingMedian,
    /// The median and MAD of the values before the last one pushed, read by the detector's surge
    /// rule: computed for the robust z-score anyway.
    center_before_last: Option<RobustCenter>,
}

/// Where the last [`ROBUST_POINTS`] values before a point sit: their median and median absolute
/// deviation (MAD), and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustCenter {
    /// The values' median.
    pub median: f64,
    /// The median of their absolute deviations from it.
    pub mad: f64,
    /// How many values (at most [`ROBUST_POINTS`]).
    pub values: usize,
    /// When the median is 0 (a series at 0 most of the time: a latency in hours without calls, a
    /// rare error's count), where the values above 0 sit; `None` for any other median, or when no
    /// value is above 0. A median of 0 measures nothing there, so the surge rule measures against
    /// these instead.
    pub above_zero: Option<AboveZeroCenter>,
}

/// The median and MAD of the values above 0 of a window whose median is 0, how many there are,
/// and the smallest difference between two of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AboveZeroCenter {
    /// Their median.
    pub median: f64,
    /// The median of their absolute deviations from it.
    pub mad: f64,
    /// How many there are.
    pub values: usize,
    /// The smallest difference between two distinct ones (0 when all are equal): the data's
    /// resolution, 1 for a count. Counts of 1, 1, 1, 2 have a MAD of 0, and a 3 is not 14 standard
    /// deviations above them; a spread below the resolution is not a spread.
    pub step: f64,
}

impl FeatureWindow {
    /// A window over the last `capacity` points (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self { rolling: RollingWindow::new(capacity), recent: RollingMedian::new(), center_before_last: None }
    }

    /// Points the window holds when full.
    pub fn capacity(&self) -> usize {
        self.rolling.capacity
    }

    /// Points before a point that its features read: the window's, or the robust z-score's
    /// [`ROBUST_POINTS`] when more. Features recomputed from a series' values must start this
    /// many points earlier to equal the live ones.
    pub fn lookback(&self) -> usize {
        Self::lookback_for(self.capacity())
    }

    /// The [`lookback`](Self::lookback) of a window over `capacity` points.
    pub fn lookback_for(capacity: usize) -> usize {
        capacity.max(2).max(ROBUST_POINTS)
    }

    /// Points currently in the window.
    pub fn len(&self) -> usize {
        self.rolling.values.len()
    }

    /// Whether the window holds no point yet.
    pub fn is_empty(&self) -> bool {
        self.rolling.values.is_empty()
    }

    /// Adds `value` and returns its features, or `None` while fewer than two earlier points exist
    /// (no spread to compare against yet). Non-finite values are not added and give `None`.
    pub fn push(&mut self, value: f64) -> Option<[f32; FEATURE_COUNT]> {
        if !value.is_finite() {
            self.center_before_last = None;
            return None;
        }
        self.center_before_last = self.recent.center();
        let robust_zscore = self.center_before_last.map(|center| self.recent.robust_zscore_around(value, center));
        self.recent.push(value);
        self.rolling.push(value, robust_zscore)
    }

    /// The median and MAD of the values before the last one [`push`](Self::push)ed (`None` when
    /// it was not finite, or had no value before it).
    pub fn center_before_last(&self) -> Option<RobustCenter> {
        self.center_before_last
    }
}

/// The last `capacity` values of a series and their running sums: every feature but the robust
/// z-score, which a caller computing the features of several windows over the same values (a
/// fit's two views) reads once from one [`RollingMedian`].
///
/// The sums are of each value's offset from `shift`, a recent mean of the window: plain sums of
/// squares lose a series' spread when its level is far above it (a gauge near 1e9 moving by tens:
/// Σv² − (Σv)²/n cancels every significant digit). Running sums also keep the rounding of every
/// value that ever passed through them, so they are counted again from the window, around its
/// mean, every `capacity` points (twice the additions, amortised) and as soon as a value that
/// dwarfed the rest leaves (a spike 1e8 times the level would otherwise erase the other values'
/// contribution for good).
#[derive(Debug, Clone)]
pub(crate) struct RollingWindow {
    values: VecDeque<f64>,
    capacity: usize,
    shift: f64,
    sum: f64,
    sum_of_squares: f64,
    /// Points to add before the sums are counted again.
    until_recount: usize,
}

impl RollingWindow {
    /// A window over the last `capacity` points (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
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

    /// Adds a finite `value` and returns its features, with `robust_zscore` (the value's, from
    /// the values before it) as the last: `None` while fewer than two earlier points exist, or
    /// without a robust z-score.
    pub(crate) fn push(&mut self, value: f64, robust_zscore: Option<f64>) -> Option<[f32; FEATURE_COUNT]> {
        let features = robust_zscore.and_then(|robust_zscore| self.features_of(value, robust_zscore));
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

    fn features_of(&self, value: f64, robust_zscore: f64) -> Option<[f32; FEATURE_COUNT]> {
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
        let features = [value, mean, std, delta, zscore, robust_zscore];
        let narrowed = features.map(|f| f as f32);
        narrowed.iter().all(|f| f.is_finite()).then_some(narrowed)
    }
}

/// The last `capacity` values, kept in arrival order and sorted: a value comes in and the oldest
/// leaves by a binary search and a shift of the sorted copy (O(capacity) moves of 8 bytes, a few
/// hundred nanoseconds at 100), and the median and MAD are then read without selecting
/// ([`RollingMedian::robust_zscore`]).
#[derive(Debug, Clone)]
pub(crate) struct RollingMedian {
    arrival: VecDeque<f64>,
    sorted: Vec<f64>,
    capacity: usize,
}

impl RollingMedian {
    /// Empty, for the last [`ROBUST_POINTS`] values.
    pub(crate) fn new() -> Self {
        let capacity = ROBUST_POINTS;
        Self { arrival: VecDeque::with_capacity(capacity + 1), sorted: Vec::with_capacity(capacity + 1), capacity }
    }

    /// Adds a finite `value`, dropping the oldest beyond the capacity: one shift of the sorted
    /// values between where the oldest was and where `value` goes. Values are ordered by
    /// `total_cmp`, so a value that leaves is found again bit for bit (-0.0 and 0.0 included).
    pub(crate) fn push(&mut self, value: f64) {
        let insert_at = self.sorted.partition_point(|x| x.total_cmp(&value).is_lt());
        self.arrival.push_back(value);
        let leaving = if self.arrival.len() > self.capacity { self.arrival.pop_front() } else { None };
        let Some(oldest) = leaving else {
            self.sorted.insert(insert_at, value);
            return;
        };
        match self.sorted.binary_search_by(|x| x.total_cmp(&oldest)) {
            // The values between the two places move one step towards the oldest's.
            Ok(removed_at) if removed_at < insert_at => {
                self.sorted.copy_within(removed_at + 1..insert_at, removed_at);
                self.sorted[insert_at - 1] = value;
            }
            Ok(removed_at) => {
                self.sorted.copy_within(insert_at..removed_at, insert_at + 1);
                self.sorted[insert_at] = value;
            }
            // Unreachable (every value in `arrival` is in `sorted`); kept correct all the same.
            Err(_) => self.sorted.insert(insert_at, value),
        }
    }

    /// How far `value` lies from the values' median, in units of 1.4826 × their MAD (floored at
    /// [`MAD_RANGE_FLOOR`] of their range, and relative to the median's size for a flat series),
    /// capped at ±[`ZSCORE_CAP`]; `None` without values.
    pub(crate) fn robust_zscore(&self, value: f64) -> Option<f64> {
        Some(self.robust_zscore_around(value, self.center()?))
    }

    /// [`robust_zscore`](Self::robust_zscore) with the values' [`center`](Self::center) at hand.
    fn robust_zscore_around(&self, value: f64, center: RobustCenter) -> f64 {
        let RobustCenter { median, mad, .. } = center;
        let range = self.sorted.last().zip(self.sorted.first()).map_or(0.0, |(last, first)| last - first);
        let scale = (MAD_TO_STD * mad.max(MAD_RANGE_FLOOR * range)).max(median.abs() * 1e-6).max(1e-12);
        ((value - median) / scale).clamp(-ZSCORE_CAP, ZSCORE_CAP)
    }

    /// The values' median and MAD; `None` without values.
    pub(crate) fn center(&self) -> Option<RobustCenter> {
        let median = median_of_sorted(&self.sorted)?;
        let mad = median_absolute_deviation(&self.sorted, median)?;
        let above_zero = if median == 0.0 { self.above_zero_center() } else { None };
        Some(RobustCenter { median, mad, values: self.sorted.len(), above_zero })
    }

    /// The [`AboveZeroCenter`] of the values above 0 (`None` without any): a suffix of the
    /// sorted values, so their median and MAD are read as the whole window's are, and the step is
    /// one pass over at most [`ROBUST_POINTS`] values (only on a series whose median is 0).
    fn above_zero_center(&self) -> Option<AboveZeroCenter> {
        let above = &self.sorted[self.sorted.partition_point(|&x| x <= 0.0)..];
        let median = median_of_sorted(above)?;
        let mad = median_absolute_deviation(above, median)?;
        let step =
            above.windows(2).map(|pair| pair[1] - pair[0]).filter(|&gap| gap > 0.0).fold(f64::INFINITY, f64::min);
        Some(AboveZeroCenter { median, mad, values: above.len(), step: if step.is_finite() { step } else { 0.0 } })
    }
}

/// The median of sorted values (the mean of the two middle ones for an even count).
fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The median of |x − `median`| over sorted values, without sorting the deviations: those of the
/// values below the median grow leftwards from it and those of the others rightwards, two sorted
/// runs whose middle deviations a binary search finds (O(log n); merging the runs took half the
/// values' steps, and was most of the feature's cost).
fn median_absolute_deviation(sorted: &[f64], median: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let split = sorted.partition_point(|&x| x < median);
    // The i-th smallest deviation of each run (from 0).
    let below = |i: usize| median - sorted[split - 1 - i];
    let above = |j: usize| sorted[split + j] - median;
    // The largest of the `count` smallest deviations (count ≥ 1): those are the first `i` of
    // `below` and the first `count − i` of `above`, for the smallest `i` whose next `below` is no
    // smaller than the last `above` taken.
    let largest_of_smallest = |count: usize| {
        let (mut low, mut high) = (count.saturating_sub(n - split), split.min(count));
        while low < high {
            let i = (low + high) / 2;
            if below(i) < above(count - i - 1) {
                low = i + 1;
            } else {
                high = i;
            }
        }
        match (low, count - low) {
            (0, j) => above(j - 1),
            (i, 0) => below(i - 1),
            (i, j) => below(i - 1).max(above(j - 1)),
        }
    };
    // The middle one (odd count) or the mean of the middle two: the n/2-th and (n/2 + 1)-th
    // smallest, counting from 1.
    let upper_middle = largest_of_smallest(n / 2 + 1);
    Some(if n % 2 == 1 { upper_middle } else { (largest_of_smallest(n / 2) + upper_middle) / 2.0 })
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
        let [value, mean, std, delta, zscore, _] = window.push(10.0).unwrap();
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
        let [.., zscore, robust_zscore] = window.push(6.0).unwrap();
        assert_eq!(zscore, ZSCORE_CAP as f32);
        assert_eq!(robust_zscore, ZSCORE_CAP as f32);
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

    /// The robust z-score of `value` against `before` (the values before it), counted plainly:
    /// sort, take the median, sort the absolute deviations, take their median.
    fn two_pass_robust_zscore(before: &[f64], value: f64) -> f64 {
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
        };
        let mut values = before.to_vec();
        let center = median(&mut values);
        let mut deviations: Vec<f64> = before.iter().map(|v| (v - center).abs()).collect();
        let mad = median(&mut deviations);
        let range = values[values.len() - 1] - values[0];
        let scale = (MAD_TO_STD * mad.max(MAD_RANGE_FLOOR * range)).max(center.abs() * 1e-6).max(1e-12);
        ((value - center) / scale).clamp(-ZSCORE_CAP, ZSCORE_CAP)
    }

    /// Pushes `series` through a window and checks every point's robust z-score against the
    /// two-pass count over the (up to) [`ROBUST_POINTS`] values before it.
    fn assert_robust_zscore_matches_two_pass(series: &[f64], capacity: usize) {
        let mut window = FeatureWindow::new(capacity);
        for (i, &v) in series.iter().enumerate() {
            let features = window.push(v);
            if i < 2 {
                assert_eq!(features, None);
                continue;
            }
            let before = &series[i.saturating_sub(ROBUST_POINTS)..i];
            let expected = two_pass_robust_zscore(before, v) as f32;
            let [.., got] = features.unwrap();
            assert_eq!(got, expected, "point {i} of {}", series.len());
        }
    }

    #[test]
    fn robust_zscore_is_the_two_pass_median_and_mad_of_the_values_before() {
        // A wave with noise (distinct values), small integers (many ties, odd and even counts of
        // each), a mostly-flat series with rare spikes (MAD 0: the range floor), and signed zeros.
        let wave: Vec<f64> = (0..400).map(|i| (i as f64 / 7.0).sin() * 10.0 + ((i * 7919) % 13) as f64 * 0.1).collect();
        let ties: Vec<f64> = (0..400).map(|i| ((i * 31) % 5) as f64).collect();
        let spiky: Vec<f64> = (0..400).map(|i| if i % 97 == 50 { 1_000.0 } else { 3.0 }).collect();
        let zeros: Vec<f64> = (0..300).map(|i| if i % 3 == 0 { -0.0 } else { f64::from(i % 2) * 0.0 }).collect();
        for series in [&wave, &ties, &spiky, &zeros] {
            for capacity in [2, 10, 200] {
                assert_robust_zscore_matches_two_pass(series, capacity);
            }
        }
    }

    #[test]
    fn robust_zscore_ignores_a_spike_that_moves_the_mean() {
        // After a spike, the rolling z-score of an ordinary point is dragged by the spike in the
        // window; the robust one still sees the point as ordinary.
        let mut window = FeatureWindow::new(10);
        for i in 0..50 {
            window.push(10.0 + f64::from(i % 3));
        }
        window.push(1_000.0);
        let [.., zscore, robust_zscore] = window.push(11.0).unwrap();
        assert!(zscore < -0.2, "the spike in the window drags the mean: {zscore}");
        assert!(robust_zscore.abs() < 0.5, "the median and MAD barely move: {robust_zscore}");
    }

    #[test]
    fn robust_zscore_floors_a_zero_mad_at_a_share_of_the_range() {
        // 99 zeros and one 10 before the point: the MAD is 0, the range 10, so the scale is
        // 1.4826 × 0.5 and a value of 1 scores 1 / 0.7413.
        let mut window = FeatureWindow::new(10);
        window.push(10.0);
        for _ in 0..99 {
            window.push(0.0);
        }
        let [.., robust_zscore] = window.push(1.0).unwrap();
        assert!((f64::from(robust_zscore) - 1.0 / (MAD_TO_STD * 0.5)).abs() < 1e-6, "{robust_zscore}");
    }

    /// The window's [`AboveZeroCenter`] after `series`, counted plainly: the values above 0 of
    /// the last [`ROBUST_POINTS`], sorted; their median, MAD and smallest positive difference.
    fn two_pass_above_zero(series: &[f64]) -> Option<AboveZeroCenter> {
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
        };
        let last = &series[series.len().saturating_sub(ROBUST_POINTS)..];
        let mut above: Vec<f64> = last.iter().copied().filter(|&v| v > 0.0).collect();
        if above.is_empty() {
            return None;
        }
        let center = median(&mut above);
        let mut deviations: Vec<f64> = above.iter().map(|v| (v - center).abs()).collect();
        let mad = median(&mut deviations);
        let step = above
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .filter(|&gap| gap > 0.0)
            .fold(0.0, |least: f64, gap| if least == 0.0 { gap } else { least.min(gap) });
        Some(AboveZeroCenter { median: center, mad, values: above.len(), step })
    }

    #[test]
    fn a_window_mostly_at_zero_has_the_center_of_its_values_above_zero() {
        // 60 hours without calls and 40 with latencies of 630–990 ms.
        let mut median = RollingMedian::new();
        for i in 0..100 {
            median.push(if i % 5 < 3 { 0.0 } else { 600.0 + f64::from(i * 10 % 400) });
        }
        let center = median.center().unwrap();
        assert_eq!((center.median, center.mad), (0.0, 0.0));
        let above = center.above_zero.unwrap();
        assert_eq!(above.values, 40);
        assert_eq!((above.median, above.step), (780.0, 10.0));
        // Counts of 1 and 2 (MAD 0) have a step of 1; one repeated value has none.
        let mut counts = RollingMedian::new();
        for i in 0..100 {
            counts.push([0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 0.0][i % 7]);
        }
        let above = counts.center().unwrap().above_zero.unwrap();
        assert_eq!((above.median, above.mad, above.step), (1.0, 0.0, 1.0));
        let mut ones = RollingMedian::new();
        [0.0, 0.0, 1.0].into_iter().for_each(|v| ones.push(v));
        assert_eq!(ones.center().unwrap().above_zero.unwrap().step, 0.0);
        // Any other median: none.
        let mut busy = RollingMedian::new();
        [0.0, 5.0, 7.0].into_iter().for_each(|v| busy.push(v));
        assert_eq!(busy.center().unwrap().above_zero, None);
    }

    #[test]
    fn lookback_covers_the_robust_values() {
        assert_eq!(FeatureWindow::new(10).lookback(), ROBUST_POINTS);
        assert_eq!(FeatureWindow::new(300).lookback(), 300);
    }

    proptest::proptest! {
        #[test]
        fn robust_zscore_matches_the_two_pass_count(
            series in proptest::collection::vec(proptest::prop_oneof![-5i32..5, -1_000_000i32..1_000_000], 3..300),
            capacity in 2usize..150,
        ) {
            let series: Vec<f64> = series.into_iter().map(|v| f64::from(v) / 8.0).collect();
            assert_robust_zscore_matches_two_pass(&series, capacity);
        }

        #[test]
        fn above_zero_center_matches_the_two_pass_count(
            series in proptest::collection::vec(proptest::prop_oneof![3 => proptest::strategy::Just(0i32), 1 => -3i32..40], 1..250),
        ) {
            let series: Vec<f64> = series.into_iter().map(|v| f64::from(v) / 4.0).collect();
            let mut median = RollingMedian::new();
            for (i, &value) in series.iter().enumerate() {
                median.push(value);
                let center = median.center().unwrap();
                let expected = if center.median == 0.0 { two_pass_above_zero(&series[..=i]) } else { None };
                proptest::prop_assert_eq!(center.above_zero, expected, "after point {}", i);
            }
        }
    }
}
