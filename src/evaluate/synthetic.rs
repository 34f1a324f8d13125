//! Labelled synthetic series for the benchmark: the kinds of change a service metric shows
//! (spikes, level shifts, trend changes, variance changes, broken seasonality), each on a noisy
//! daily-seasonal base, generated from a fixed seed so every run and every machine sees the same
//! corpus. Not for tests of the detector's internals: these are whole series to replay.
//!
//! A generator of our own (SplitMix64 and Box–Muller) rather than `rand`'s: `rand` does not
//! promise the same stream across versions, and the corpus must not change under a dependency
//! update.

/// The kinds of anomaly the corpus holds, one file per kind and variant.
pub const KINDS: [&str; 5] = ["spikes", "level_shift", "trend_change", "variance_change", "broken_seasonality"];

/// Rows per synthetic series (5-minute points: two weeks).
pub const ROWS: usize = 4032;
/// Rows per season (one day of 5-minute points).
const PERIOD: usize = 288;

/// One generated series: values and their labels (true = anomalous).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSeries {
    /// A file-name-safe name: `<kind>_<variant>`.
    pub name: String,
    /// One value per row.
    pub values: Vec<f64>,
    /// One label per row.
    pub labels: Vec<bool>,
}

/// SplitMix64: tiny, fast, and stable forever.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is dropped for simplicity).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Uniform integer in `range`.
    fn between(&mut self, range: std::ops::Range<usize>) -> usize {
        range.start + (self.uniform() * (range.end - range.start) as f64) as usize
    }
}

/// The whole corpus: `variants` series of each kind, from `seed`.
pub fn corpus(seed: u64, variants: usize) -> Vec<LabelledSeries> {
    KINDS
        .iter()
        .enumerate()
        .flat_map(|(k, kind)| (0..variants).map(move |v| series(kind, seed ^ ((k as u64) << 32 | v as u64), v)))
        .collect()
}

/// One series of `kind` (one of [`KINDS`]).
///
/// The base is `level + amplitude × sin(2π t / day) + noise`, with level, amplitude and noise
/// drawn per series. Anomalies start in the second half of the first week or later, so a detector
/// has seen at least a few days; the labelled rows are where an operator would want the page: the
/// spike itself, the first rows after a shift, the drifting stretch, the noisy stretch.
pub fn series(kind: &str, seed: u64, variant: usize) -> LabelledSeries {
    let mut rng = SplitMix(seed);
    let level = 50.0 + 100.0 * rng.uniform();
    let amplitude = level * (0.1 + 0.3 * rng.uniform());
    let noise = level * (0.01 + 0.03 * rng.uniform());
    let mut values: Vec<f64> = (0..ROWS)
        .map(|t| level + amplitude * (std::f64::consts::TAU * t as f64 / PERIOD as f64).sin() + noise * rng.normal())
        .collect();
    let mut labels = vec![false; ROWS];
    let label = |range: std::ops::Range<usize>, labels: &mut Vec<bool>| {
        let end = range.end.min(ROWS);
        labels[range.start.min(end)..end].fill(true);
    };
    match kind {
        "spikes" => {
            for _ in 0..3 {
                let at = rng.between(1500..ROWS - 10);
                let width = rng.between(1..4);
                let sign = if rng.uniform() < 0.7 { 1.0 } else { -1.0 };
                let height = sign * (amplitude + noise * (6.0 + 6.0 * rng.uniform()));
                for value in &mut values[at..at + width] {
                    *value += height;
                }
                label(at..at + width, &mut labels);
            }
        }
        "level_shift" => {
            let at = rng.between(1500..3000);
            let sign = if rng.uniform() < 0.5 { 1.0 } else { -1.0 };
            let shift = sign * (0.5 * amplitude + noise * (5.0 + 5.0 * rng.uniform()));
            for value in &mut values[at..] {
                *value += shift;
            }
            label(at..at + 12, &mut labels);
        }
        "trend_change" => {
            let at = rng.between(1500..3000);
            // Reaches one amplitude above the old level in about half a day.
            let slope = amplitude / (PERIOD as f64 / 2.0) * (0.5 + rng.uniform());
            let sign = if rng.uniform() < 0.5 { 1.0 } else { -1.0 };
            for (offset, value) in values[at..].iter_mut().enumerate() {
                *value += sign * slope * offset as f64;
            }
            label(at..at + PERIOD / 2, &mut labels);
        }
        "variance_change" => {
            let at = rng.between(1500..3200);
            let length = rng.between(100..300);
            let factor = 4.0 + 4.0 * rng.uniform();
            for value in &mut values[at..(at + length).min(ROWS)] {
                *value += noise * factor * rng.normal();
            }
            label(at..at + length.min(60), &mut labels);
        }
        "broken_seasonality" => {
            // The daily cycle stops for a while: the value stays at the day's mean.
            let at = rng.between(1500..3200);
            let length = rng.between(PERIOD / 2..PERIOD);
            for (offset, value) in values[at..(at + length).min(ROWS)].iter_mut().enumerate() {
                let t = at + offset;
                *value -= amplitude * (std::f64::consts::TAU * t as f64 / PERIOD as f64).sin();
            }
            label(at..at + length.min(PERIOD / 4), &mut labels);
        }
        other => panic!("unknown synthetic kind {other:?}"),
    }
    LabelledSeries { name: format!("{kind}_{variant:02}"), values, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_reproducible_and_labelled() {
        let first = corpus(7, 2);
        assert_eq!(first, corpus(7, 2));
        assert_eq!(first.len(), KINDS.len() * 2);
        for series in &first {
            assert_eq!(series.values.len(), ROWS);
            assert!(series.values.iter().all(|v| v.is_finite()));
            let labelled = series.labels.iter().filter(|&&l| l).count();
            assert!(labelled > 0 && labelled < ROWS / 10, "{}: {labelled} labelled rows", series.name);
            // Nothing labelled in the first days: the detector must have history first.
            assert!(!series.labels[..1500].contains(&true), "{}", series.name);
        }
        assert_ne!(corpus(8, 1)[0].values, first[0].values);
    }

    #[test]
    fn a_spike_stands_out_from_its_neighbours() {
        let spikes = series("spikes", 1, 0);
        let mut steps: Vec<f64> = spikes.values.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        steps.sort_by(f64::total_cmp);
        let typical_step = steps[steps.len() / 2];
        let row = spikes.labels.iter().position(|&l| l).unwrap();
        assert!((spikes.values[row] - spikes.values[row - 1]).abs() > 4.0 * typical_step);
    }
}
