//! The Numenta Anomaly Benchmark's scoring rules (Lavin & Ahmad, 2015, and NAB's README), for
//! judging a streaming detector's per-row scores against labelled anomalies.
//!
//! The rules, as NAB's scorer applies them:
//! - each labelled anomaly gets a window of `floor(10% × rows / anomalies)` rows centred on it;
//!   overlapping windows merge into one;
//! - the first 15% of a series (at most 750 rows) is probationary: its rows are not scored, and a
//!   window lying wholly inside it does not count;
//! - a row is a detection when its score is at or above the threshold. Inside a window only the
//!   best, that is the earliest, detection counts, rewarded `A_TP × σ(position) / σ(−1)` where
//!   `σ(x) = 2 / (1 + e^{5x}) − 1` is the scaled sigmoid and the position runs from −1 (the
//!   window's first row) towards 0 (past its last row); a window without detection costs `A_FN`;
//!   every detection outside a window costs `A_FP × σ(distance past the previous window's end, in
//!   window widths)`, so a late detection just after a window costs little and one far from any
//!   window costs the full `A_FP`;
//! - one threshold per profile is chosen for the whole corpus, the one maximising the raw total;
//! - the total is normalised so that never detecting scores 0 and detecting every window at its
//!   first row without a false positive scores 100.
//!
//! NAB labels are points in time; ours are labelled rows, often in runs (an incident lasting an
//! hour). A maximal run of consecutive labelled rows is **one anomaly**, and its window is the
//! union of the NAB windows centred on each of its rows: from `first − half` to `last + half`,
//! `half = floor(window_rows / 2)`, clipped to the series. A single labelled row gets exactly
//! NAB's window. This module only scores: it knows nothing of detectors or files.

/// Share of a series' rows that its windows cover in total (NAB's `windowSize`).
const WINDOW_SHARE: f64 = 0.10;
/// Share of a series' rows, from its start, that is not scored (NAB's `probationPercent`).
const PROBATIONARY_SHARE: f64 = 0.15;
/// The probationary period never exceeds this many rows (NAB: 15% of 5,000).
const MAX_PROBATIONARY_ROWS: usize = 750;
/// Past this many window widths after a window, a false positive costs the full weight.
const FAR_PAST_WINDOW: f64 = 3.0;

/// The weights of one NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// NAB's name for it.
    pub name: &'static str,
    /// Reward for a window detected at its very first row (`A_TP`).
    pub true_positive: f64,
    /// Cost of a detection far from any window (`A_FP`).
    pub false_positive: f64,
    /// Cost of a window without detection (`A_FN`).
    pub false_negative: f64,
}

/// NAB's three profiles: standard, reward_low_FP, reward_low_FN.
pub const PROFILES: [Profile; 3] = [
    Profile { name: "standard", true_positive: 1.0, false_positive: 0.11, false_negative: 1.0 },
    Profile { name: "reward_low_FP", true_positive: 1.0, false_positive: 0.22, false_negative: 1.0 },
    Profile { name: "reward_low_FN", true_positive: 1.0, false_positive: 0.11, false_negative: 2.0 },
];

/// An anomaly window: rows `first..=last` of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its first row.
    pub first: usize,
    /// Its last row (inclusive).
    pub last: usize,
}

impl Window {
    fn width(&self) -> usize {
        self.last - self.first + 1
    }
}

/// Rows at the start of a series of `rows` rows that are not scored.
pub fn probationary_rows(rows: usize) -> usize {
    ((PROBATIONARY_SHARE * rows as f64).floor() as usize).min(MAX_PROBATIONARY_ROWS)
}

/// The anomaly windows of a series labelled row by row (true = anomalous), as the module
/// documentation describes: one anomaly per run of labelled rows, NAB's window length, merged
/// when they overlap.
pub fn windows_from_labels(labels: &[bool]) -> Vec<Window> {
    let mut runs: Vec<Window> = Vec::new();
    for (row, &labelled) in labels.iter().enumerate() {
        if !labelled {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.last + 1 == row => run.last = row,
            _ => runs.push(Window { first: row, last: row }),
        }
    }
    if runs.is_empty() {
        return runs;
    }
    let window_rows = (WINDOW_SHARE * labels.len() as f64 / runs.len() as f64).floor() as usize;
    let half = window_rows / 2;
    let mut windows: Vec<Window> = Vec::with_capacity(runs.len());
    for run in runs {
        let widened = Window { first: run.first.saturating_sub(half), last: (run.last + half).min(labels.len() - 1) };
        match windows.last_mut() {
            Some(previous) if widened.first <= previous.last => previous.last = previous.last.max(widened.last),
            _ => windows.push(widened),
        }
    }
    windows
}

/// NAB's scaled sigmoid: 0.98661 at the left edge of a window (−1), 0 at its right edge (0),
/// −1 from three widths past it.
pub fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position >= FAR_PAST_WINDOW { -1.0 } else { 2.0 / (1.0 + (5.0 * relative_position).exp()) - 1.0 }
}

/// Where a scorable row lies relative to the windows.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In window number `window` (numbered across the corpus), with the unweighted sigmoid of its
    /// position in it.
    InWindow { window: usize, sigmoid: f64 },
    /// Outside every window, with the (negative) unweighted sigmoid of its distance past the last.
    Outside { sigmoid: f64 },
}

#[derive(Debug, Clone, Copy)]
struct ScorableRow {
    score: f64,
    place: Place,
}

/// A labelled corpus with a detector's scores, ready to be scored under any profile.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    rows: Vec<ScorableRow>,
    /// For each window that has scorable rows, the unweighted sigmoid of its first scorable row
    /// (what a perfect detector earns there).
    best_sigmoid: Vec<f64>,
    series: usize,
}

/// The outcome of one profile on a corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileScore {
    /// The profile.
    pub profile: Profile,
    /// The threshold that maximised the raw total (`+∞`: never detecting was best).
    pub threshold: f64,
    /// The raw total at that threshold.
    pub raw: f64,
    /// What never detecting earns (`−A_FN` per window).
    pub null: f64,
    /// What a perfect detector earns.
    pub perfect: f64,
    /// `100 × (raw − null) / (perfect − null)`; 0 for a corpus without windows.
    pub normalized: f64,
    /// Windows with a detection at that threshold.
    pub detected_windows: usize,
    /// Windows that count (outside the probationary periods).
    pub windows: usize,
    /// Detections outside every window at that threshold.
    pub false_positives: usize,
}

impl Corpus {
    /// An empty corpus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Series added so far.
    pub fn series(&self) -> usize {
        self.series
    }

    /// Adds one series: a score per row (`None`: no score, never a detection) and a label per row.
    pub fn add_series(&mut self, scores: &[Option<f64>], labels: &[bool]) {
        assert_eq!(scores.len(), labels.len(), "one label per score");
        self.series += 1;
        let windows = windows_from_labels(labels);
        let probation = probationary_rows(labels.len());
        let mut next_window = windows.iter().peekable();
        let mut current: Option<(Window, usize)> = None;
        let mut previous: Option<Window> = None;
        for (row, score) in scores.iter().enumerate() {
            if current.is_none()
                && let Some(window) = next_window.next_if(|w| w.first == row)
            {
                current = Some((*window, usize::MAX));
            }
            let place = match &mut current {
                Some((window, id)) => {
                    let position = -((window.last - row + 1) as f64) / window.width() as f64;
                    let sigmoid = scaled_sigmoid(position);
                    if row >= probation && *id == usize::MAX {
                        *id = self.best_sigmoid.len();
                        self.best_sigmoid.push(sigmoid);
                    }
                    Place::InWindow { window: *id, sigmoid }
                }
                None => {
                    let position = previous.map_or(FAR_PAST_WINDOW, |w| {
                        (row - w.last) as f64 / (w.width().saturating_sub(1).max(1)) as f64
                    });
                    Place::Outside { sigmoid: scaled_sigmoid(position) }
                }
            };
            if row >= probation
                && let Some(score) = score.filter(|s| !s.is_nan())
            {
                self.rows.push(ScorableRow { score, place });
            }
            if let Some((window, _)) = current
                && window.last == row
            {
                previous = Some(window);
                current = None;
            }
        }
    }

    /// Scores the corpus under `profile`, with the threshold that maximises the raw total.
    pub fn score(&self, profile: Profile) -> ProfileScore {
        let max_true_positive = scaled_sigmoid(-1.0);
        let windows = self.best_sigmoid.len();
        let null = -profile.false_negative * windows as f64;
        let perfect = self.best_sigmoid.iter().map(|s| profile.true_positive * s / max_true_positive).sum::<f64>();
        let mut order: Vec<&ScorableRow> = self.rows.iter().collect();
        order.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
        // Each window's part of the total: −A_FN until detected, then its best detection's reward.
        let mut window_part = vec![-profile.false_negative; windows];
        let mut detected = vec![false; windows];
        let (mut total, mut detected_windows, mut false_positives) = (null, 0, 0);
        let mut best = (total, f64::INFINITY, 0, 0);
        let mut i = 0;
        while i < order.len() {
            let threshold = order[i].score;
            while i < order.len() && order[i].score == threshold {
                match order[i].place {
                    Place::InWindow { window, sigmoid } => {
                        let reward = profile.true_positive * sigmoid / max_true_positive;
                        if reward > window_part[window] {
                            total += reward - window_part[window];
                            window_part[window] = reward;
                        }
                        if !detected[window] {
                            detected[window] = true;
                            detected_windows += 1;
                        }
                    }
                    Place::Outside { sigmoid } => {
                        total += profile.false_positive * sigmoid;
                        false_positives += 1;
                    }
                }
                i += 1;
            }
            if total > best.0 {
                best = (total, threshold, detected_windows, false_positives);
            }
        }
        let (raw, threshold, detected_windows, false_positives) = best;
        let normalized = if perfect > null { 100.0 * (raw - null) / (perfect - null) } else { 0.0 };
        ProfileScore { profile, threshold, raw, null, perfect, normalized, detected_windows, windows, false_positives }
    }
}

/// The naive baseline the issue compares against: 1 on a new all-time high or low of the series
/// (strictly beyond every earlier value), 0 otherwise; the first row has no score.
pub fn all_time_extreme_scores(values: &[f64]) -> Vec<Option<f64>> {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    values
        .iter()
        .enumerate()
        .map(|(row, &value)| {
            let score = (row > 0).then_some(if value > high || value < low { 1.0 } else { 0.0 });
            low = low.min(value);
            high = high.max(value);
            score
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Profile = PROFILES[0];
    const LOW_FP: Profile = PROFILES[1];
    const LOW_FN: Profile = PROFILES[2];

    fn labels(rows: usize, anomalous: &[usize]) -> Vec<bool> {
        (0..rows).map(|row| anomalous.contains(&row)).collect()
    }

    /// Scores of `rows` rows: `score` at the given rows, 0 elsewhere.
    fn fires(rows: usize, at: &[(usize, f64)]) -> Vec<Option<f64>> {
        (0..rows).map(|row| Some(at.iter().find(|(r, _)| *r == row).map_or(0.0, |(_, s)| *s))).collect()
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probationary_rows(10), 1);
        assert_eq!(probationary_rows(1000), 150);
        assert_eq!(probationary_rows(4999), 749);
        assert_eq!(probationary_rows(100_000), 750);
    }

    #[test]
    fn windows_are_centred_sized_by_anomaly_count_and_merged() {
        // One anomaly in 100 rows: a window of 10 rows, 5 on each side.
        assert_eq!(windows_from_labels(&labels(100, &[50])), [Window { first: 45, last: 55 }]);
        // Two anomalies in 200 rows: still 10 rows each; a run of three rows is one anomaly,
        // widened on both sides.
        assert_eq!(
            windows_from_labels(&labels(200, &[20, 21, 22, 70])),
            [Window { first: 15, last: 27 }, Window { first: 65, last: 75 }]
        );
        // Windows that overlap merge; the series' ends clip them.
        assert_eq!(windows_from_labels(&labels(100, &[10, 14])), [Window { first: 8, last: 16 }]);
        assert_eq!(windows_from_labels(&labels(100, &[0])), [Window { first: 0, last: 5 }]);
        assert_eq!(windows_from_labels(&labels(100, &[])), []);
    }

    #[test]
    fn scaled_sigmoid_matches_nab_reference_points() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614).abs() < 1e-6);
        assert!((scaled_sigmoid(-0.5) - 0.848_284).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(1.0) + 0.986_614).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn detection_at_window_start_is_perfect_and_never_is_null() {
        let labelled = labels(100, &[50]);
        let mut perfect = Corpus::new();
        perfect.add_series(&fires(100, &[(45, 1.0)]), &labelled);
        let score = perfect.score(STANDARD);
        assert_eq!((score.raw, score.null, score.perfect), (1.0, -1.0, 1.0));
        assert_eq!(score.normalized, 100.0);
        let mut silent = Corpus::new();
        silent.add_series(&vec![None; 100], &labelled);
        assert_eq!(silent.score(STANDARD).normalized, 0.0);
        assert_eq!(silent.score(STANDARD).threshold, f64::INFINITY);
    }

    #[test]
    fn late_detection_earns_less_and_only_the_earliest_counts() {
        // Window [45, 55], width 11. A detection at its last row sits at −1/11:
        // σ = 2 / (1 + e^(−5/11)) − 1 = 0.223_44, over σ(−1) = 0.986_61 gives 0.226_47.
        let mut late = Corpus::new();
        late.add_series(&fires(100, &[(55, 1.0)]), &labels(100, &[50]));
        assert!((late.score(STANDARD).raw - 0.226_47).abs() < 1e-5);
        // Detections at 45 and 55: one window, rewarded once, for the earlier one.
        let mut both = Corpus::new();
        both.add_series(&fires(100, &[(45, 1.0), (55, 1.0)]), &labels(100, &[50]));
        assert_eq!(both.score(STANDARD).raw, 1.0);
        assert_eq!(both.score(STANDARD).detected_windows, 1);
    }

    #[test]
    fn false_positives_cost_by_distance_from_the_previous_window() {
        // Row 20 lies before any window: the full −A_FP. Row 60 is 5 rows past a window of
        // width 11: position 5 / 10 = 0.5, σ = −0.848_28, times 0.11 = −0.093_31.
        let mut corpus = Corpus::new();
        corpus.add_series(&fires(100, &[(20, 1.0), (45, 1.0), (60, 1.0)]), &labels(100, &[50]));
        let score = corpus.score(STANDARD);
        assert!((score.raw - (1.0 - 0.11 - 0.093_311)).abs() < 1e-5, "{}", score.raw);
        assert_eq!(score.false_positives, 2);
    }

    #[test]
    fn threshold_is_optimised_per_profile() {
        // The window's start scores 0.9; a false positive far from it scores 0.95.
        // Threshold 0.95: −1 − A_FP. Threshold 0.9: 1 − A_FP. Never: −1 (−A_FN).
        let scores = fires(100, &[(20, 0.95), (45, 0.9)]);
        let mut corpus = Corpus::new();
        corpus.add_series(&scores, &labels(100, &[50]));
        let standard = corpus.score(STANDARD);
        assert_eq!(standard.threshold, 0.9);
        assert!((standard.normalized - 100.0 * 1.89 / 2.0).abs() < 1e-9);
        assert!((corpus.score(LOW_FP).normalized - 100.0 * 1.78 / 2.0).abs() < 1e-9);
        // Low FN: null −2, perfect 1, raw 0.89.
        assert!((corpus.score(LOW_FN).normalized - 100.0 * 2.89 / 3.0).abs() < 1e-9);
        // A false positive that costs more than the window earns: never detecting wins.
        let mut noisy = Corpus::new();
        let many_false: Vec<(usize, f64)> = (16..40).map(|r| (r, 1.0)).chain([(45, 1.0)]).collect();
        noisy.add_series(&fires(100, &many_false), &labels(100, &[50]));
        assert_eq!(noisy.score(STANDARD).threshold, f64::INFINITY);
        assert_eq!(noisy.score(STANDARD).normalized, 0.0);
    }

    #[test]
    fn probationary_rows_are_not_scored() {
        // 100 rows: rows 0..15 are probationary. A window inside them does not count at all.
        let mut corpus = Corpus::new();
        corpus.add_series(&fires(100, &[(3, 1.0), (50, 1.0)]), &labels(100, &[5]));
        let score = corpus.score(STANDARD);
        assert_eq!(score.windows, 0);
        // Row 50 is a false positive; detecting nothing (0) beats it.
        assert_eq!((score.raw, score.false_positives), (0.0, 0));
        // A window straddling the period's end counts from its first scorable row: window
        // [10, 20] (label 15), first scorable row 15 at position −6/11, which a perfect detector
        // earns.
        let mut straddling = Corpus::new();
        straddling.add_series(&fires(100, &[(15, 1.0)]), &labels(100, &[15]));
        let score = straddling.score(STANDARD);
        assert_eq!(score.windows, 1);
        assert!((score.perfect - scaled_sigmoid(-6.0 / 11.0) / scaled_sigmoid(-1.0)).abs() < 1e-12);
        assert!((score.normalized - 100.0).abs() < 1e-9);
    }

    #[test]
    fn thresholds_are_shared_across_the_corpus() {
        // Series A needs threshold 0.5 to detect its window; series B then has a false positive
        // at 0.6. Together: 1 + 1 − 0.11 beats 1 − 1 (threshold 0.6 alone misses A).
        let mut corpus = Corpus::new();
        corpus.add_series(&fires(100, &[(45, 0.5)]), &labels(100, &[50]));
        corpus.add_series(&fires(100, &[(20, 0.6), (45, 0.7)]), &labels(100, &[50]));
        let score = corpus.score(STANDARD);
        assert_eq!(score.threshold, 0.5);
        assert!((score.raw - 1.89).abs() < 1e-12);
        assert_eq!(corpus.series(), 2);
    }

    #[test]
    fn naive_rule_fires_on_new_extremes_only() {
        let scores = all_time_extreme_scores(&[5.0, 6.0, 5.5, 4.0, 6.0, 7.0]);
        assert_eq!(scores, [None, Some(1.0), Some(0.0), Some(1.0), Some(0.0), Some(1.0)]);
    }
}
