//! The surge rule: a value far above its series' recent median, for long enough by the data's
//! clock, is anomalous whatever the series' recent scores were.
//!
//! Calibration (the `calibrate` module) divides a series' scores by the top of its last
//! `calibration_points` raw scores, which keeps bursty series quiet. On a series whose bursts are
//! all incidents it also hides the second incident in that span: on an hourly crash count two
//! bursts set the divisor for the next four days, and the Microsoft KPIs' labelled bursts of 10 to
//! 200 times the usual level then exported 0.22–0.53 (README, Detection quality, round 8). The
//! surge term is exported beside the calibrated score, not divided by it.
//!
//! The surge is measured against the median and MAD of the [`ROBUST_POINTS`] values before the
//! point (the robust z-score column's), with the MAD floored at [`MEDIAN_SHARE_FLOOR`] of the
//! median's size, so a series whose spread is tiny against its level (a steady latency) needs a
//! move of a sizeable share of that level. It must have lasted `surge_duration` by the data's
//! clock (every point since it began at `surge_z` or more): on hourly data one point is an hour;
//! on minute data sixty points in a row, which keeps the rule from paging on the blips that
//! minute-level machine metrics are full of (SMD scored lower with shorter durations).
//!
//! [`ROBUST_POINTS`]: crate::features::ROBUST_POINTS

use crate::features::{MAD_TO_STD, ROBUST_POINTS, RobustCenter};

/// The MAD is floored at this share of the median's size: with a MAD of 1 ms on a latency of
/// 100 ms, 5 robust standard deviations would be 7% of the level, not a surge. At 0.2 a surge at
/// `surge_z` 5 is at least 1.5 times the median above it.
const MEDIAN_SHARE_FLOOR: f64 = 0.2;

/// Values needed before the median and MAD are trusted: half the robust window.
const MIN_VALUES: usize = ROBUST_POINTS / 2;

/// How far above its recent median `value` lies, in robust standard deviations (the MAD, floored
/// at [`MEDIAN_SHARE_FLOOR`] of the median, times 1.4826); `None` when the values before it are
/// too few, or all equal to a median of 0 (no scale to measure in).
pub(crate) fn surge_zscore(value: f64, center: RobustCenter) -> Option<f64> {
    let RobustCenter { median, mad, values } = center;
    let scale = MAD_TO_STD * mad.max(MEDIAN_SHARE_FLOOR * median.abs());
    (values >= MIN_VALUES && scale > 0.0).then(|| (value - median) / scale)
}

/// How many points in a row, up to the current one, have been at the surge bar.
#[derive(Debug, Clone, Default)]
pub(crate) struct SurgeRun {
    points: usize,
}

impl SurgeRun {
    /// The surge term of a point whose surge z-score is `zscore` (`None`: not measurable, which
    /// ends a run): `zscore / bar` (1.0 at the bar) once `needed` points in a row, this one
    /// included, have been at the bar or above; 0 otherwise.
    pub(crate) fn score(&mut self, zscore: Option<f64>, bar: f64, needed: usize) -> f64 {
        match zscore {
            Some(zscore) if zscore >= bar => {
                self.points += 1;
                if self.points >= needed.max(1) { zscore / bar } else { 0.0 }
            }
            _ => {
                self.points = 0;
                0.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn center(median: f64, mad: f64) -> RobustCenter {
        RobustCenter { median, mad, values: ROBUST_POINTS }
    }

    #[test]
    fn the_zscore_counts_robust_standard_deviations_above_the_median() {
        let z = surge_zscore(40.0 + 10.0 * MAD_TO_STD * 5.0, center(40.0, 10.0)).unwrap();
        assert!((z - 5.0).abs() < 1e-12, "{z}");
        // Below the median is negative: a drop is not a surge.
        assert!(surge_zscore(0.0, center(40.0, 10.0)).unwrap() < 0.0);
    }

    #[test]
    fn a_small_spread_is_floored_at_a_share_of_the_median() {
        // MAD 1 on a level of 100: the scale is 0.2 × 100, not 1.
        let z = surge_zscore(130.0, center(100.0, 1.0)).unwrap();
        assert!((z - 30.0 / (MAD_TO_STD * 20.0)).abs() < 1e-12, "{z}");
    }

    #[test]
    fn no_scale_or_too_few_values_measure_nothing() {
        assert_eq!(surge_zscore(5.0, center(0.0, 0.0)), None, "a series of zeros");
        assert!(surge_zscore(5.0, center(3.0, 0.0)).is_some(), "a flat non-zero level has the median's share");
        let few = RobustCenter { median: 1.0, mad: 1.0, values: MIN_VALUES - 1 };
        assert_eq!(surge_zscore(50.0, few), None);
    }

    #[test]
    fn a_surge_scores_once_it_has_lasted_long_enough() {
        let mut run = SurgeRun::default();
        // Three points needed: the first two at the bar score nothing, the third its z / bar.
        assert_eq!(run.score(Some(6.0), 5.0, 3), 0.0);
        assert_eq!(run.score(Some(10.0), 5.0, 3), 0.0);
        assert_eq!(run.score(Some(7.5), 5.0, 3), 1.5);
        assert_eq!(run.score(Some(5.0), 5.0, 3), 1.0);
        // A point below the bar, or one that cannot be measured, ends the run.
        assert_eq!(run.score(Some(4.9), 5.0, 3), 0.0);
        assert_eq!(run.score(Some(9.0), 5.0, 3), 0.0);
        assert_eq!(run.score(None, 5.0, 3), 0.0);
        assert_eq!(run.score(Some(9.0), 5.0, 3), 0.0);
        // One point is enough when one point lasts the duration (hourly data, an hour).
        assert_eq!(SurgeRun::default().score(Some(10.0), 5.0, 1), 2.0);
        assert_eq!(SurgeRun::default().score(Some(10.0), 5.0, 0), 2.0, "0 needed means 1");
    }
}
