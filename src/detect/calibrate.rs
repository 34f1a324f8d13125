//! What turns a model's raw score into the exported one: calibration against the series' own
//! recent scores, and a quiet period after an alarm.
//!
//! - **Calibration.** Some series live near their model's boundary (a sparse crash counter, a
//!   bursty ingress rate): their raw scores cross 1.0 every day, and every crossing would page.
//!   The exported score is the raw score divided by the `calibration_quantile` of the series' last
//!   `calibration_points` raw scores whenever that quantile is above 1.0, so 1.0 stays the decision
//!   boundary and means "beyond what this series' model usually says *and* beyond what this series
//!   usually scores". A quiet series (quantile below 1) is left as the model scores it.
//! - **Quiet period.** After a point above 1.0, the next `quiet_points` points are capped at 1.0
//!   unless they score above the alarm that opened the period: an incident is one page, not one
//!   per point, yet a worsening incident still shows. The score marks an incident's onset: a lasting incident is above 1.0 at its start (and when
//!   it worsens), so alerting rules use `max_over_time(anomaly_score[…]) > 1` rather than `for:`.
//!
//! The combination was chosen by measurement on the labelled corpora (README, "Detection
//! quality"): each part alone scored lower, and so did freezing the divisor during an alarm.
//!
//! Both are causal (they use scores of earlier points only) and cost O(`calibration_points`) per
//! point at most. Not for deciding what is anomalous: that is the model's job in the parent module.

use std::collections::VecDeque;

/// The calibration state of one series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Calibration {
    recent: VecDeque<f32>,
    scratch: Vec<f32>,
    quiet_left: usize,
    alarm_peak: f64,
}

/// Raw scores needed before the quantile is trusted.
const MIN_CALIBRATION_POINTS: usize = 50;

impl Calibration {
    /// Calibrates `raw` against the scores before it, then remembers it.
    pub(crate) fn calibrate(&mut self, raw: f64, points: usize, quantile: f64) -> f64 {
        if points == 0 {
            return raw;
        }
        let divisor = if self.recent.len() >= MIN_CALIBRATION_POINTS.min(points) {
            self.scratch.clear();
            self.scratch.extend(self.recent.iter().copied());
            let rank = ((self.scratch.len() - 1) as f64 * quantile).round() as usize;
            let (_, q, _) = self.scratch.select_nth_unstable_by(rank, f32::total_cmp);
            f64::from(*q).max(1.0)
        } else {
            1.0
        };
        self.recent.push_back(raw as f32);
        if self.recent.len() > points {
            self.recent.pop_front();
        }
        raw / divisor
    }

    /// How many recent raw scores it holds.
    #[cfg(test)]
    pub(crate) fn recorded(&self) -> usize {
        self.recent.len()
    }

    /// Ends a quiet period, if one is open.
    pub(crate) fn end_quiet(&mut self) {
        self.quiet_left = 0;
    }

    /// Applies the quiet period to an exported score, and opens one after an alarm.
    pub(crate) fn quiet(&mut self, score: f64, quiet_points: usize) -> f64 {
        if self.quiet_left > 0 {
            self.quiet_left -= 1;
            if score <= self.alarm_peak {
                return score.min(1.0);
            }
        }
        if score > 1.0 && quiet_points > 0 {
            self.quiet_left = quiet_points;
            self.alarm_peak = score;
        }
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_that_often_scores_high_is_scaled_down() {
        let mut calibration = Calibration::default();
        for i in 0..100 {
            calibration.calibrate(if i % 10 == 0 { 2.0 } else { 0.5 }, 100, 0.95);
        }
        // The 95th percentile is 2.0: a 2.0 is ordinary for this series, a 5.0 is not.
        assert_eq!(calibration.calibrate(2.0, 100, 0.95), 1.0);
        assert_eq!(calibration.calibrate(5.0, 100, 0.95), 2.5);
        // A quiet series keeps its raw scores.
        let mut quiet = Calibration::default();
        for _ in 0..100 {
            quiet.calibrate(0.4, 100, 0.95);
        }
        assert_eq!(quiet.calibrate(1.7, 100, 0.95), 1.7);
        // Off: raw scores pass.
        assert_eq!(Calibration::default().calibrate(3.0, 0, 0.95), 3.0);
    }

    #[test]
    fn an_alarm_opens_a_quiet_period_that_a_worse_point_breaks() {
        let mut calibration = Calibration::default();
        assert_eq!(calibration.quiet(2.0, 3), 2.0);
        assert_eq!(calibration.quiet(1.8, 3), 1.0);
        assert_eq!(calibration.quiet(0.5, 3), 0.5);
        assert_eq!(calibration.quiet(3.0, 3), 3.0, "worse than the alarm");
        for _ in 0..3 {
            assert_eq!(calibration.quiet(2.5, 3), 1.0);
        }
        assert_eq!(calibration.quiet(2.5, 3), 2.5, "the period is over");
        assert_eq!(Calibration::default().quiet(2.0, 0), 2.0);
    }

    #[test]
    fn a_lasting_incident_alarms_at_its_onset_and_when_it_worsens() {
        let mut calibration = Calibration::default();
        let mut step = |raw: f64| {
            let score = calibration.calibrate(raw, 100, 0.99);
            calibration.quiet(score, 4)
        };
        for _ in 0..100 {
            step(0.5);
        }
        // Twenty points at 4.0: one alarm at the onset; once the quiet period is over the
        // incident's own scores are the series' top percent, so it is not paged again...
        let alarms: Vec<usize> = (0..20).filter(|_| step(4.0) > 1.0).collect();
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        // ...unless it gets clearly worse.
        assert!(step(12.0) > 1.0);
    }
}
