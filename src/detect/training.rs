//! A series' training set, kept as its raw values rather than as rows of features.
//!
//! A model is fitted on the features of the series' last `training_points` points. Those rows
//! used to be kept as they were computed (`[f32; FEATURE_COUNT]`, 20 bytes a point), one buffer
//! per view: 57.6 KB each at the defaults, 115 KB with the long window on. [`TrainingValues`]
//! keeps the values instead (8 bytes a point), plus the points before the oldest training point
//! that its features read (the longest of the views' lookbacks: a window, or the robust
//! z-score's 100 values), and recomputes the views' rows when a model is fitted
//! ([`TrainingValues::rows_of_views`]), through the parts the live path's [`FeatureWindow`] is
//! made of: a `RollingWindow` per view, and one `RollingMedian` whose robust z-scores serve both
//! views (the same in each, and most of a refit's recount when counted per view). The
//! recomputed rows are the ones the live path computed, but for the rounding of the window's
//! running sums (both count them again every `window` points, the live window counting from the
//! series' first point, the recomputed one from the oldest value kept, so their recounts fall on
//! different points): a unit test bounds the difference. The robust z-score's median and MAD are
//! exact, so that column is the live one bit for bit.
//!
//! The values are kept as `f64`, as the live window sees them: `f32` would halve the buffer
//! (12 KB a series) but quantise a series whose moves are small beside its level (a gauge near
//! 1e9 moving by tens), whose training deltas and spreads would then not be the live ones.
//!
//! The history terms read the same buffer: the seasonal term the value a period ago, the season
//! search the training points' values.

use std::collections::VecDeque;

use crate::features::{FEATURE_COUNT, FeatureWindow, RollingMedian, RollingWindow};

/// The values of the last `training_points` training points (every point but the series' first
/// two), and of the `lookback` points before them that their windows read.
#[derive(Debug, Clone)]
pub(crate) struct TrainingValues {
    /// Every finite value the live windows took, oldest first; at most `training_points +
    /// lookback`.
    values: VecDeque<f64>,
    /// How many of the newest values are training points: all but the series' first two.
    rows: usize,
    /// The series' first values still to come, which give no feature row.
    before_first_row: u8,
    training_points: usize,
    /// Values kept: `training_points` and the lookback before them.
    limit: usize,
}

impl TrainingValues {
    /// An empty set for `training_points` rows whose features read up to `lookback` earlier
    /// points (the longest window).
    pub(crate) fn new(training_points: usize, lookback: usize) -> Self {
        // Allocated up to a few thousand values at once: a full buffer then never reallocates.
        let limit = training_points.saturating_add(lookback);
        Self { values: VecDeque::with_capacity(limit.min(4096)), rows: 0, before_first_row: 2, training_points, limit }
    }

    /// Appends a value the live windows took (every finite value). The series' first two give
    /// no feature row (no spread before them) and are kept only as the next points' window; every
    /// later one is a training point. The oldest value leaves before the new one comes, so the
    /// buffer never outgrows `training_points + lookback` (pushing first would double its
    /// capacity).
    pub(crate) fn push(&mut self, value: f64) {
        if self.values.len() >= self.limit {
            self.values.pop_front();
        }
        self.values.push_back(value);
        if self.before_first_row > 0 {
            self.before_first_row -= 1;
        } else {
            self.rows = (self.rows + 1).min(self.training_points);
        }
    }

    /// Training points held (the rows a fit uses, but for a value whose features were not
    /// finite).
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Whether no training point is held yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The training points' values, oldest first.
    pub(crate) fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.values.range(self.values.len() - self.rows..).copied()
    }

    /// The value of the training point `points` before the next one (1: the newest), `None`
    /// beyond the training points held.
    pub(crate) fn value_ago(&self, points: usize) -> Option<f64> {
        (1..=self.rows).contains(&points).then(|| self.values[self.values.len() - points])
    }

    /// The training points' features over a `window`-point window, row-major, oldest first.
    #[cfg(test)]
    pub(crate) fn rows(&self, window: usize) -> Vec<f32> {
        let [rows] = self.rows_of_views([window]);
        rows
    }

    /// The training points' features over each of `windows` (a fit's views), one row-major
    /// buffer per window, oldest row first: the rows the live path computed for them. A value
    /// whose features were not finite gave no row live and gives none here. The robust z-score,
    /// the same in every window, is computed once for all of them: it is most of a recount's cost.
    pub(crate) fn rows_of_views<const VIEWS: usize>(&self, windows: [usize; VIEWS]) -> [Vec<f32>; VIEWS] {
        let first_row = self.values.len() - self.rows;
        // Each window starts one lookback (its window, or the robust z-score's values) before the
        // first row: the points before have no bearing on it.
        let mut views = windows.map(|window| {
            let start = first_row.saturating_sub(FeatureWindow::lookback_for(window));
            (start, RollingWindow::new(window), Vec::with_capacity(self.rows * FEATURE_COUNT))
        });
        let start = views.iter().map(|(start, ..)| *start).min().unwrap_or(first_row);
        let mut recent = RollingMedian::new();
        for (position, &value) in self.values.iter().enumerate().skip(start) {
            let robust_zscore = if position >= first_row { recent.robust_zscore(value) } else { None };
            recent.push(value);
            for (view_start, rolling, rows) in &mut views {
                if position < *view_start {
                    continue;
                }
                if let Some(row) = rolling.push(value, robust_zscore)
                    && position >= first_row
                {
                    rows.extend_from_slice(&row);
                }
            }
        }
        views.map(|(_, _, rows)| rows)
    }

    /// Values the buffer has room for.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.values.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy wave on a large level, so running sums carry rounding.
    fn value(i: usize) -> f64 {
        let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
        1_000.0 + 50.0 * (i as f64 / 40.0).sin() + 3.0 * noise
    }

    /// Feeds `n` values through a live window and the buffer, as the detector does; returns the
    /// live rows (all of them) and the buffer.
    fn live_and_kept(
        n: usize,
        window: usize,
        training_points: usize,
        lookback: usize,
    ) -> (Vec<[f32; FEATURE_COUNT]>, TrainingValues) {
        let mut live = FeatureWindow::new(window);
        let mut kept = TrainingValues::new(training_points, lookback);
        let mut rows = Vec::new();
        for i in 0..n {
            let row = live.push(value(i));
            kept.push(value(i));
            rows.extend(row);
        }
        (rows, kept)
    }

    /// The relative difference allowed between a recomputed feature and the live one: the
    /// running sums' rounding, after narrowing to `f32` (whose own step is 6e-8).
    const TOLERANCE: f32 = 1e-5;

    fn assert_close(recomputed: &[f32], live: &[[f32; FEATURE_COUNT]]) {
        assert_eq!(recomputed.len(), live.len() * FEATURE_COUNT);
        for (row, (got, want)) in recomputed.chunks(FEATURE_COUNT).zip(live).enumerate() {
            for f in 0..FEATURE_COUNT {
                let scale = want[f].abs().max(1.0);
                assert!(
                    (got[f] - want[f]).abs() <= TOLERANCE * scale,
                    "row {row} feature {f}: {} vs {}",
                    got[f],
                    want[f]
                );
            }
        }
    }

    #[test]
    fn recomputed_rows_are_the_live_ones_before_and_after_the_buffer_fills() {
        for (n, window) in [(5, 10), (150, 10), (150, 200), (5_000, 10), (5_000, 200)] {
            let (live, kept) = live_and_kept(n, window, 300, 200);
            let expected = &live[live.len().saturating_sub(300)..];
            assert_eq!(kept.len(), expected.len(), "n {n}");
            assert_close(&kept.rows(window), expected);
        }
    }

    #[test]
    fn the_recomputed_short_window_after_a_long_run_is_exact() {
        // Ten values summed afresh and the live window's sums, which have run 20,000 points:
        // within the tolerance, and most rows identical.
        let (live, kept) = live_and_kept(20_000, 10, 2_880, 200);
        let rows = kept.rows(10);
        assert_close(&rows, &live[live.len() - 2_880..]);
        let identical = rows.chunks(FEATURE_COUNT).zip(&live[live.len() - 2_880..]).filter(|(a, b)| a == b).count();
        assert!(identical > 2_000, "{identical} of 2,880 rows identical");
    }

    #[test]
    fn capacity_stays_bounded_after_the_buffer_fills() {
        let (_, kept) = live_and_kept(3_000, 10, 300, 200);
        assert_eq!(kept.len(), 300);
        assert_eq!(kept.values.len(), 500);
        assert!(kept.capacity() < 600, "capacity {} for 500 values", kept.capacity());
    }

    #[test]
    fn values_and_the_value_a_period_ago_are_the_training_points() {
        let (_, kept) = live_and_kept(1_000, 10, 300, 200);
        let values: Vec<f64> = kept.values().collect();
        assert_eq!(values.len(), 300);
        assert_eq!(values[0], value(700));
        assert_eq!(values[299], value(999));
        assert_eq!(kept.value_ago(1), Some(value(999)));
        assert_eq!(kept.value_ago(300), Some(value(700)));
        assert_eq!(kept.value_ago(301), None, "the lookback is not a training point");
        assert_eq!(kept.value_ago(0), None);
        // The series' first two values give no row, and are not training points.
        let (_, young) = live_and_kept(5, 10, 300, 200);
        assert_eq!(young.values().collect::<Vec<_>>(), [value(2), value(3), value(4)]);
        assert!(TrainingValues::new(300, 200).is_empty());
    }

    #[test]
    fn a_value_without_finite_features_gives_no_row() {
        // Finite, but beyond f32: the live window takes it and gives no row for it, nor for the
        // next point (whose delta is beyond f32 too). It stays a training point.
        let mut live = FeatureWindow::new(10);
        let mut kept = TrainingValues::new(300, 200);
        let mut rows = Vec::new();
        for v in (0..50).map(value).chain([1e39]).chain((50..60).map(value)) {
            let row = live.push(v);
            kept.push(v);
            rows.extend(row);
        }
        assert_eq!((kept.len(), rows.len()), (59, 57));
        assert_eq!(kept.rows(10), rows.concat());
    }

    #[test]
    fn the_recomputed_robust_zscore_is_the_live_one_with_a_short_window() {
        // The window (10 points) is shorter than the robust z-score's values (100): the buffer
        // keeps the window's lookback, and the first training rows read the same 100 values live
        // and recomputed.
        let lookback = FeatureWindow::new(10).lookback();
        let (live, kept) = live_and_kept(2_000, 10, 300, lookback);
        let robust = |row: &[f32]| row[FEATURE_COUNT - 1];
        let recomputed: Vec<f32> = kept.rows(10).chunks(FEATURE_COUNT).map(robust).collect();
        let live: Vec<f32> = live[live.len() - 300..].iter().map(|row| robust(row)).collect();
        assert_eq!(recomputed, live);
    }

    #[test]
    fn both_views_in_one_pass_are_each_view_alone() {
        // One robust z-score for both windows changes no row of either.
        for n in [5, 150, 3_000] {
            let (_, kept) = live_and_kept(n, 10, 300, 200);
            let [short, long] = kept.rows_of_views([10, 200]);
            assert_eq!((short, long), (kept.rows(10), kept.rows(200)), "n {n}");
        }
    }
}
