//! What the series' own recent values say beyond the forest: a new extreme over the recent
//! horizon, and the deviation from the same time one period ago.
//!
//! - **New extreme.** NAB's naive rule ("alarm on a new all-time high or low") scores well on
//!   real series because many incidents *are* the highest or lowest value in a long while. Done
//!   robustly: the horizon is the last `extreme_horizon` by the data's clock (three days by
//!   default: long enough to hold every hour of a daily cycle, short enough that last month's
//!   incident does not hide today's), and a point beyond that horizon's range scores
//!   `1 + excess − extreme_tolerance`, the excess in units of the horizon's range, like the
//!   model's range term. Unlike that term, the horizon is the current one, not the one the
//!   model was fitted on up to `retrain_every_points` ago.
//! - **Seasonal deviation.** When the training values repeat daily or weekly (by the data's
//!   clock; autocorrelation at that lag of at least `seasonal_min_autocorrelation`), the point is
//!   compared with the one a period before it: the difference, less the training set's median
//!   difference, in units of their robust spread (1.4826 × MAD), divided by `seasonal_z`. A
//!   daily peak that fails to come (broken seasonality) is invisible to a window of ten points
//!   and plain to this term.
//!
//! Both read the training set's values, and use only points before the one scored. The
//! seasonal term reads one value a period back; the new-extreme term reads the horizon's range
//! from [`RecentRange`], monotonic deques over the same values, in O(log n) per point rather than
//! a scan of up to `training_points` values (the same scores, measured faster in README). The step
//! between points is the median of the last few steps, so one missed scrape does not halve the
//! period.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// A period found in a series' training values, and what a difference across it usually is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Season {
    /// The period, in points.
    pub period_points: usize,
    /// The median of `value[t] − value[t − period]` over the training set.
    pub median_difference: f64,
    /// 1.4826 × their median absolute deviation (a standard deviation, robustly), floored.
    pub difference_scale: f64,
}

/// The periods looked for, by the data's clock: a day and a week.
const CANDIDATE_PERIODS_MS: [i64; 2] = [86_400_000, 7 * 86_400_000];

/// Steps remembered for the median step.
const STEPS_KEPT: usize = 7;

/// The median of a series' last few steps between points.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepClock {
    steps: [i64; STEPS_KEPT],
    seen: usize,
}

impl StepClock {
    /// Records the step from the previous point to this one.
    pub(crate) fn record(&mut self, step_ms: i64) {
        if step_ms > 0 {
            self.steps[self.seen % STEPS_KEPT] = step_ms;
            self.seen += 1;
        }
    }

    /// The median of the recorded steps, `None` before any.
    pub(crate) fn step_ms(&self) -> Option<i64> {
        let count = self.seen.min(STEPS_KEPT);
        if count == 0 {
            return None;
        }
        let mut steps = self.steps;
        let steps = &mut steps[..count];
        steps.sort_unstable();
        Some(steps[count / 2])
    }

    /// How many points `span_ms` holds at the current step (0 before any step is known).
    pub(crate) fn points_in(&self, span_ms: u128) -> usize {
        self.step_ms().map_or(0, |step| usize::try_from(span_ms / step as u128).unwrap_or(usize::MAX))
    }
}

/// The smallest and largest of the last `n` values of a bounded window, for any `n`, in O(log n)
/// per query and O(1) amortised per value (monotonic deques: a value that is not the minimum of
/// any suffix can never be one again, so it is dropped).
///
/// Each deque holds (index, value) pairs, the indices increasing and the values strictly
/// increasing (minima) or decreasing (maxima): the minimum of the last `n` values is the first
/// entry whose index falls among them. Entries leave at the front only when their value leaves
/// the window, so a horizon that grows again (the series' step shrank) is still answered
/// exactly. Memory is two entries per value in the worst case (a monotonic series keeps every
/// value in one deque), a few on noisy series.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecentRange {
    /// Index the next value gets (wrapping: only differences between indices are used).
    next: u32,
    minima: VecDeque<(u32, f32)>,
    maxima: VecDeque<(u32, f32)>,
}

impl RecentRange {
    /// Appends `value`, then forgets values beyond the last `capacity`.
    pub(crate) fn push(&mut self, value: f32, capacity: usize) {
        while self.minima.back().is_some_and(|&(_, v)| v >= value) {
            self.minima.pop_back();
        }
        while self.maxima.back().is_some_and(|&(_, v)| v <= value) {
            self.maxima.pop_back();
        }
        self.minima.push_back((self.next, value));
        self.maxima.push_back((self.next, value));
        self.next = self.next.wrapping_add(1);
        let next = self.next;
        let too_old = |&(index, _): &(u32, f32)| next.wrapping_sub(index) as usize > capacity;
        while self.minima.front().is_some_and(too_old) {
            self.minima.pop_front();
        }
        while self.maxima.front().is_some_and(too_old) {
            self.maxima.pop_front();
        }
    }

    /// The (smallest, largest) of the last `n` values pushed (of all kept when fewer), `None`
    /// for `n = 0` or before any value.
    pub(crate) fn last(&self, n: usize) -> Option<(f64, f64)> {
        let first_of = |deque: &VecDeque<(u32, f32)>| {
            // Ages (how many values ago) decrease along the deque; the first young enough wins.
            let at = deque.partition_point(|&(index, _)| self.next.wrapping_sub(index) as usize > n);
            deque.get(at).map(|&(_, value)| f64::from(value))
        };
        Some((first_of(&self.minima)?, first_of(&self.maxima)?))
    }
}

/// The new-extreme term: `1 + excess − tolerance` when `value` lies beyond `range` (the
/// horizon's smallest and largest values), 0 inside it or without history (`None`).
pub(crate) fn extreme_score(value: f64, range: Option<(f64, f64)>, tolerance: f64) -> f64 {
    let Some((low, high)) = range else {
        return 0.0;
    };
    // The same floor as the model's range term: a flat horizon still gives a finite excess.
    let range = (high - low).max(high.abs().max(low.abs()) * 1e-3).max(1e-9);
    let excess = ((value - high).max(low - value) / range).min(super::EXCESS_CAP);
    if excess > 0.0 { 1.0 + excess - tolerance } else { 0.0 }
}

/// The seasonal term for `value` given the value one period before it.
pub(crate) fn seasonal_score(value: f64, a_period_ago: f64, season: &Season, z: f64) -> f64 {
    let deviation = (value - a_period_ago - season.median_difference).abs() / season.difference_scale;
    // Capped as the range terms are: beyond that, "how far" means nothing more.
    (deviation / z).min(super::EXCESS_CAP + 1.0)
}

/// The daily or weekly period of `values` (oldest first), when their autocorrelation at that
/// lag reaches `min_autocorrelation` and they span at least two periods; the stronger one wins.
///
/// The autocorrelation is the usual biased estimate (lagged products summed over `n − period`
/// pairs, divided by the variance summed over all `n`), which shrinks by `(n − period) / n`: a
/// period is only trusted once the training set holds well over two of them (with the default
/// 0.6, at least 2.5 of a perfect cycle). A minute-resolution series, whose day is half the
/// default training set, is never taken as daily: measured, that is what keeps SMD's scores.
pub(crate) fn detect_season(values: &[f64], step_ms: Option<i64>, min_autocorrelation: f64) -> Option<Season> {
    let step_ms = step_ms?;
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let variance: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    if variance <= 0.0 {
        return None;
    }
    let (period, _) = CANDIDATE_PERIODS_MS
        .iter()
        .map(|span| usize::try_from(span / step_ms).unwrap_or(usize::MAX))
        .filter(|&period| period >= 4 && period.saturating_mul(2) <= n)
        .map(|period| {
            let covariance: f64 = (period..n).map(|i| (values[i] - mean) * (values[i - period] - mean)).sum();
            (period, covariance / variance)
        })
        .filter(|&(_, autocorrelation)| autocorrelation >= min_autocorrelation)
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let mut differences: Vec<f64> = (period..n).map(|i| values[i] - values[i - period]).collect();
    let (median, mad) = median_and_mad(&mut differences);
    let difference_scale = (1.4826 * mad).max(mean.abs() * 1e-3).max(1e-9);
    Some(Season { period_points: period, median_difference: median, difference_scale })
}

/// The median of `values` and their median absolute deviation from it (reorders `values`).
fn median_and_mad(values: &mut [f64]) -> (f64, f64) {
    let middle = values.len() / 2;
    let (_, median, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
    let median = *median;
    for value in values.iter_mut() {
        *value = (*value - median).abs();
    }
    let (_, mad, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
    (median, *mad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn far_new_extremes_stay_apart_up_to_a_hundred_ranges() {
        let (near, far, farther) = (
            extreme_score(3.0, Some((0.0, 1.0)), 0.1),
            extreme_score(30.0, Some((0.0, 1.0)), 0.1),
            extreme_score(1e6, Some((0.0, 1.0)), 0.1),
        );
        assert!((near - 2.9).abs() < 1e-9, "{near}");
        // Once capped at 10 ranges, both of these scored 10.9 and calibration could not tell
        // them apart.
        assert!((far - 29.9).abs() < 1e-9, "{far}");
        assert!((farther - (1.0 + super::super::EXCESS_CAP - 0.1)).abs() < 1e-9, "{farther}");
    }

    use super::*;

    #[test]
    fn the_step_is_the_median_of_recent_steps() {
        let mut clock = StepClock::default();
        assert_eq!(clock.step_ms(), None);
        assert_eq!(clock.points_in(86_400_000), 0);
        for step in [15_000, 15_000, 30_000, 15_000, 0, -5] {
            clock.record(step);
        }
        // One missed scrape (30 s) does not change the step; non-positive steps are ignored.
        assert_eq!(clock.step_ms(), Some(15_000));
        assert_eq!(clock.points_in(86_400_000), 5760);
        for _ in 0..STEPS_KEPT {
            clock.record(60_000);
        }
        assert_eq!(clock.step_ms(), Some(60_000), "a new interval takes over");
    }

    #[test]
    fn a_new_extreme_scores_by_its_excess_over_the_horizon() {
        let mut recent = RecentRange::default();
        for value in [100.0, 3.0, 7.0, 5.0] {
            recent.push(value, 10);
        }
        // Horizon 3: range [3, 7], width 4.
        assert_eq!(recent.last(3), Some((3.0, 7.0)));
        assert_eq!(extreme_score(6.0, recent.last(3), 0.1), 0.0, "inside");
        assert_eq!(extreme_score(9.0, recent.last(3), 0.1), 1.0 + 0.5 - 0.1);
        assert_eq!(extreme_score(1.0, recent.last(3), 0.0), 1.5, "a new low");
        // The old 100 is beyond the horizon; with a longer one it is inside.
        assert_eq!(extreme_score(9.0, recent.last(4), 0.1), 0.0);
        assert_eq!(extreme_score(1e9, recent.last(3), 0.0), 1.0 + super::super::EXCESS_CAP, "capped");
        assert_eq!(extreme_score(9.0, RecentRange::default().last(3), 0.0), 0.0, "no history");
        assert_eq!(recent.last(0), None);
    }

    proptest::proptest! {
        /// The deques answer exactly what a scan of the kept values would, for any horizon
        /// (growing and shrinking) and any capacity.
        #[test]
        fn the_recent_range_equals_a_scan(
            values in proptest::collection::vec(-5i8..5, 1..300),
            horizons in proptest::collection::vec(0usize..80, 1..300),
            capacity in 1usize..60,
        ) {
            let mut recent = RecentRange::default();
            let mut kept: VecDeque<f32> = VecDeque::new();
            for (i, &value) in values.iter().enumerate() {
                let value = f32::from(value) * 0.5;
                recent.push(value, capacity);
                kept.push_back(value);
                if kept.len() > capacity {
                    kept.pop_front();
                }
                let n = horizons[i % horizons.len()];
                let scan = kept.iter().rev().take(n).fold(None, |range: Option<(f64, f64)>, &v| {
                    let v = f64::from(v);
                    Some(range.map_or((v, v), |(low, high)| (low.min(v), high.max(v))))
                });
                proptest::prop_assert_eq!(recent.last(n), scan);
            }
        }
    }

    /// A daily cycle at 5-minute steps (288 points a day), with a little deterministic noise.
    fn daily(points: usize) -> Vec<f64> {
        (0..points)
            .map(|t| {
                let noise = ((t * 7919) % 101) as f64 / 101.0 - 0.5;
                100.0 + 30.0 * (std::f64::consts::TAU * t as f64 / 288.0).sin() + noise
            })
            .collect()
    }

    #[test]
    fn a_daily_cycle_is_found_by_the_clock_and_its_break_scores_high() {
        let values = daily(4 * 288);
        let season = detect_season(&values, Some(300_000), 0.6).expect("daily period");
        assert_eq!(season.period_points, 288);
        assert!(season.median_difference.abs() < 0.5, "{season:?}");
        // An ordinary point is near the point a day before it; a missing peak is not.
        let ordinary = seasonal_score(values[300] + 0.2, values[300 - 288], &season, 4.0);
        assert!(ordinary < 1.0, "{ordinary}");
        let peak_a_day_ago = values[72];
        let broken = seasonal_score(100.0, peak_a_day_ago, &season, 4.0);
        assert!(broken > 3.0, "{broken}");
    }

    #[test]
    fn no_season_without_a_cycle_a_clock_or_two_periods() {
        // Too short: fewer than two days.
        assert_eq!(detect_season(&daily(400), Some(300_000), 0.6), None);
        // The wrong clock: at 10-minute steps a day is 144 points, half this series' cycle.
        assert_eq!(detect_season(&daily(1200), Some(600_000), 0.6), None);
        assert_eq!(detect_season(&daily(1200), None, 0.6), None);
        // Noise only, and a flat series.
        let noise: Vec<f64> = (0..1000).map(|t| ((t * 7919) % 101) as f64).collect();
        assert_eq!(detect_season(&noise, Some(300_000), 0.6), None);
        assert_eq!(detect_season(&[3.0; 1000], Some(300_000), 0.6), None);
    }
}
