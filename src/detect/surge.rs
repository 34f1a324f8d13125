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
//! move of a sizeable share of that level. A series at 0 most of the time (a dependency's latency
//! in hours without calls, a rare error's count) has a median of 0, which measures nothing; it is
//! measured against its values above 0 instead, once there are [`MIN_VALUES_ABOVE_ZERO`], with
//! the MAD also floored at their resolution (1 for a count). On the Microsoft KPIs this catches
//! latency spikes of four to eight times the usual level on two dependencies that are idle most
//! hours, which the median of 0 hid (README, Detection quality, round 9).
//!
//! A surge must have lasted `surge_duration` by the data's clock (every point since it began at
//! `surge_z` or more): on hourly data one point is an hour; on minute data sixty points in a row,
//! which keeps the rule from paging on the blips that minute-level machine metrics are full of
//! (SMD scored lower with shorter durations).
//!
//! [`ROBUST_POINTS`]: crate::features::ROBUST_POINTS

use crate::features::{MAD_TO_STD, ROBUST_POINTS, RobustCenter};

/// The MAD is floored at this share of the median's size: with a MAD of 1 ms on a latency of
/// 100 ms, 5 robust standard deviations would be 7% of the level, not a surge. At 0.2 a surge at
/// `surge_z` 5 is at least 1.5 times the median above it.
const MEDIAN_SHARE_FLOOR: f64 = 0.2;

/// Values needed before the median and MAD are trusted: half the robust window.
const MIN_VALUES: usize = ROBUST_POINTS / 2;

/// Values above 0 needed before a window whose median is 0 is measured against them: a tenth of
/// the robust window. With fewer, the window's median (0) and MAD stand.
const MIN_VALUES_ABOVE_ZERO: usize = ROBUST_POINTS / 10;

/// How far above its recent median `value` lies, in robust standard deviations (the MAD, floored
/// at [`MEDIAN_SHARE_FLOOR`] of the median, times 1.4826); for a window whose median is 0, how
/// far above the median of its values above 0 (their MAD floored at that share and at their
/// resolution too). `None` when the values before it are too few, or have no scale to measure in
/// (all 0, or 0 but for a few).
pub(crate) fn surge_zscore(value: f64, center: RobustCenter) -> Option<f64> {
    let (median, spread) = match center.above_zero {
        Some(above) if above.values >= MIN_VALUES_ABOVE_ZERO => (above.median, above.mad.max(above.step)),
        _ => (center.median, center.mad),
    };
    let scale = MAD_TO_STD * spread.max(MEDIAN_SHARE_FLOOR * median.abs());
    (center.values >= MIN_VALUES && scale > 0.0).then(|| (value - median) / scale)
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
    use crate::features::AboveZeroCenter;

    fn center(median: f64, mad: f64) -> RobustCenter {
        RobustCenter { median, mad, values: ROBUST_POINTS, above_zero: None }
    }

    /// A window of 100 values, 0 at the median, with `above` values above 0 centered on
    /// `median` with a MAD of `mad` and a resolution of `step`.
    fn mostly_zero(above: usize, median: f64, mad: f64, step: f64) -> RobustCenter {
        RobustCenter {
            median: 0.0,
            mad: 0.0,
            values: ROBUST_POINTS,
            above_zero: Some(AboveZeroCenter { median, mad, values: above, step }),
        }
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
        let few = RobustCenter { median: 1.0, mad: 1.0, values: MIN_VALUES - 1, above_zero: None };
        assert_eq!(surge_zscore(50.0, few), None);
    }

    #[test]
    fn a_series_mostly_at_zero_is_measured_against_its_values_above_zero() {
        // A latency of about 700 ms (MAD 60) in the 40 hours of 100 that had calls: 3,000 ms is a
        // surge, 1,000 ms is not.
        let idle_most_hours = mostly_zero(40, 700.0, 60.0, 0.5);
        let z = surge_zscore(3_000.0, idle_most_hours).unwrap();
        assert!((z - 2_300.0 / (MAD_TO_STD * 140.0)).abs() < 1e-9, "MAD floored at 0.2 × 700: {z}");
        assert!(surge_zscore(1_000.0, idle_most_hours).unwrap() < 5.0);
        // Counts of 1 and 2 (MAD 0, resolution 1): a 3 is 1.35 robust deviations, not 6.7.
        let rare_errors = mostly_zero(30, 1.0, 0.0, 1.0);
        let z = surge_zscore(3.0, rare_errors).unwrap();
        assert!((z - 2.0 / MAD_TO_STD).abs() < 1e-12, "{z}");
        assert!(surge_zscore(12.0, rare_errors).unwrap() > 5.0);
        // Fewer than a tenth of the values above 0: the median of 0 stands, with no scale.
        assert_eq!(surge_zscore(3_000.0, mostly_zero(MIN_VALUES_ABOVE_ZERO - 1, 700.0, 60.0, 0.5)), None);
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
