//! Severity: static thresholds on the value, and levels on the anomaly score.
//!
//! A series' severity is the larger of two levels: where its value stands against the signal's
//! static thresholds (what an SRE already knows is bad), and how far its anomaly score is above
//! the model's decision threshold (what the model learned is unusual for this series).

use serde::{Deserialize, Serialize};

/// How bad a point is. The numeric value is what `anomaly_severity` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to see.
    #[default]
    Normal = 0,
    /// Worth a look.
    Warning = 1,
    /// Page-worthy during the day.
    High = 2,
    /// Page now.
    Critical = 3,
}

impl Severity {
    /// The levels above normal, in increasing order.
    pub const LEVELS: [Severity; 3] = [Severity::Warning, Severity::High, Severity::Critical];

    /// The severity a `severity` label names, if it names one.
    pub fn from_label(label: &str) -> Option<Severity> {
        [Severity::Normal, Severity::Warning, Severity::High, Severity::Critical]
            .into_iter()
            .find(|severity| severity.as_str() == label)
    }

    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "normal",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Which way is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Values above the thresholds are bad (CPU, latency, errors).
    #[default]
    Up,
    /// Values below the thresholds are bad (throughput, free memory).
    Down,
}

/// Static thresholds of a signal (each optional), and the direction that is bad.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Warning from here.
    #[serde(default)]
    pub warning: Option<f64>,
    /// High from here.
    #[serde(default)]
    pub high: Option<f64>,
    /// Critical from here.
    #[serde(default)]
    pub critical: Option<f64>,
    /// Which way is bad.
    #[serde(default)]
    pub direction: Direction,
}

impl Thresholds {
    /// The configured thresholds with their level, in increasing severity.
    pub fn levels(&self) -> impl Iterator<Item = (Severity, f64)> + '_ {
        Severity::LEVELS.into_iter().zip([self.warning, self.high, self.critical]).filter_map(|(s, t)| Some((s, t?)))
    }

    /// Checks that the thresholds are finite and ordered in the bad direction; the message says
    /// which pair is out of order.
    pub fn validate(&self) -> Result<(), String> {
        let levels: Vec<(Severity, f64)> = self.levels().collect();
        if let Some((severity, _)) = levels.iter().find(|(_, t)| !t.is_finite()) {
            return Err(format!("{} threshold must be a finite number", severity.as_str()));
        }
        for pair in levels.windows(2) {
            let ((lower, a), (higher, b)) = (pair[0], pair[1]);
            let ordered = match self.direction {
                Direction::Up => a <= b,
                Direction::Down => a >= b,
            };
            if !ordered {
                let relation = if self.direction == Direction::Up { "at most" } else { "at least" };
                return Err(format!(
                    "{} threshold {a} must be {relation} the {} threshold {b} (direction {:?})",
                    lower.as_str(),
                    higher.as_str(),
                    self.direction
                ));
            }
        }
        Ok(())
    }

    /// The level of `value`: the highest threshold it reaches.
    pub fn level(&self, value: f64) -> Severity {
        self.levels()
            .filter(|&(_, threshold)| match self.direction {
                Direction::Up => value >= threshold,
                Direction::Down => value <= threshold,
            })
            .map(|(severity, _)| severity)
            .last()
            .unwrap_or(Severity::Normal)
    }
}

/// Where the anomaly score (1.0 = the model's decision threshold) turns into a level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyLevels {
    /// Warning from this score (default 1.0: anything the model calls anomalous).
    #[serde(default = "AnomalyLevels::default_warning")]
    pub warning: f64,
    /// High from this score.
    #[serde(default = "AnomalyLevels::default_high")]
    pub high: f64,
    /// Critical from this score.
    #[serde(default = "AnomalyLevels::default_critical")]
    pub critical: f64,
}

impl AnomalyLevels {
    fn default_warning() -> f64 {
        1.0
    }
    fn default_high() -> f64 {
        1.15
    }
    fn default_critical() -> f64 {
        1.3
    }

    /// Checks the levels are finite, positive and increasing.
    pub fn validate(&self) -> Result<(), String> {
        let ordered = 0.0 < self.warning && self.warning <= self.high && self.high <= self.critical;
        if ordered && self.critical.is_finite() {
            Ok(())
        } else {
            Err(format!(
                "anomaly levels must satisfy 0 < warning <= high <= critical, got {}, {}, {}",
                self.warning, self.high, self.critical
            ))
        }
    }

    /// The level of an anomaly score.
    pub fn level(&self, anomaly_score: f64) -> Severity {
        if anomaly_score >= self.critical {
            Severity::Critical
        } else if anomaly_score >= self.high {
            Severity::High
        } else if anomaly_score > self.warning {
            Severity::Warning
        } else {
            Severity::Normal
        }
    }
}

impl Default for AnomalyLevels {
    fn default() -> Self {
        Self { warning: Self::default_warning(), high: Self::default_high(), critical: Self::default_critical() }
    }
}

/// A series' severity: the larger of its threshold level and its anomaly level.
pub fn severity(threshold_level: Severity, anomaly_level: Severity) -> Severity {
    threshold_level.max(anomaly_level)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(warning: f64, high: f64, critical: f64) -> Thresholds {
        Thresholds { warning: Some(warning), high: Some(high), critical: Some(critical), direction: Direction::Up }
    }

    #[test]
    fn value_reaches_the_highest_threshold_it_crosses() {
        let t = up(0.7, 0.85, 0.95);
        assert_eq!(t.level(0.5), Severity::Normal);
        assert_eq!(t.level(0.7), Severity::Warning);
        assert_eq!(t.level(0.9), Severity::High);
        assert_eq!(t.level(1.0), Severity::Critical);
    }

    #[test]
    fn downward_thresholds_and_missing_levels() {
        let t = Thresholds { warning: Some(100.0), high: None, critical: Some(10.0), direction: Direction::Down };
        assert!(t.validate().is_ok());
        assert_eq!(t.level(150.0), Severity::Normal);
        assert_eq!(t.level(50.0), Severity::Warning);
        assert_eq!(t.level(5.0), Severity::Critical);
        assert_eq!(Thresholds::default().level(1e9), Severity::Normal);
    }

    #[test]
    fn out_of_order_thresholds_are_named() {
        let err = up(0.9, 0.8, 0.95).validate().unwrap_err();
        assert!(err.contains("warning threshold 0.9 must be at most the high threshold 0.8"), "{err}");
        let err = up(0.1, f64::NAN, 0.95).validate().unwrap_err();
        assert!(err.contains("high threshold must be a finite number"), "{err}");
    }

    #[test]
    fn anomaly_levels_start_above_one() {
        let levels = AnomalyLevels::default();
        assert_eq!(levels.level(0.7), Severity::Normal);
        assert_eq!(levels.level(1.0), Severity::Normal);
        assert_eq!(levels.level(1.01), Severity::Warning);
        assert_eq!(levels.level(1.2), Severity::High);
        assert_eq!(levels.level(2.0), Severity::Critical);
        assert!(AnomalyLevels { warning: 1.2, high: 1.1, critical: 1.3 }.validate().is_err());
    }

    #[test]
    fn severity_is_the_larger_level() {
        assert_eq!(severity(Severity::Warning, Severity::Critical), Severity::Critical);
        assert_eq!(severity(Severity::High, Severity::Normal), Severity::High);
    }
}
