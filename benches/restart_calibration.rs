//! What a restart does to a series' alarms: the 100 points after a restart, scored by a detector
//! that took the history before it, against the same points scored by a detector that never
//! restarted. The history is taken two ways: [`SeriesDetector::backfill`] (the daemon's: the
//! last points replayed, so the calibration starts full) and [`SeriesDetector::warm_up`] (all of
//! it learned, none scored: the calibration starts empty).
//!
//! `cargo bench --bench restart_calibration [-- DIR]` (default: the Microsoft KPIs in
//! `../shared/data/timeseries/microsoft_cloud_monitoring`) restarts every series of 400 points or
//! more at half and at three quarters of its length and prints, per detector, the alarms (score
//! above 1) in the 100 points after each restart, how many of them lie within 5 points of a
//! labelled anomaly, and the time taking the histories took. Under `cargo test` (no `--bench`) it
//! reads three files, so the code path runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anomaly_exporter::commands::backtest::read_series;
use anomaly_exporter::detect::{AlarmGate, DetectorParams, SeriesDetector};

const POINTS_AFTER_RESTART: usize = 100;
const NEAR_LABEL_POINTS: usize = 5;

/// Alarms, and those near a label, over one comparison; and the time taking histories took.
#[derive(Default)]
struct Alarms {
    all: usize,
    near_label: usize,
    taking_history: Duration,
}

impl Alarms {
    fn add(&mut self, alarmed: impl Iterator<Item = usize>, labels: &[bool]) {
        for index in alarmed {
            self.all += 1;
            let from = index.saturating_sub(NEAR_LABEL_POINTS);
            let to = (index + NEAR_LABEL_POINTS + 1).min(labels.len());
            if labels[from..to].iter().any(|&label| label) {
                self.near_label += 1;
            }
        }
    }
}

/// The indices in `range` whose score `detector` puts above 1.
fn alarms(
    detector: &mut SeriesDetector,
    params: &DetectorParams,
    points: &[(i64, f64)],
    range: std::ops::Range<usize>,
) -> Vec<usize> {
    range
        .filter(|&i| {
            let (timestamp_ms, value) = points[i];
            detector
                .observe(params, AlarmGate::ANY, timestamp_ms, value)
                .and_then(|observation| observation.anomaly_score)
                .is_some_and(|score| score > 1.0)
        })
        .collect()
}

fn main() {
    let benchmark = std::env::args().any(|a| a == "--bench");
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| PathBuf::from("../shared/data/timeseries/microsoft_cloud_monitoring"), PathBuf::from);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "csv"))
        .collect();
    files.sort();
    if !benchmark {
        files.truncate(3);
    }
    let params = DetectorParams::default();
    let (mut never_restarted, mut backfilled, mut warmed_up) =
        (Alarms::default(), Alarms::default(), Alarms::default());
    let mut restarts = 0;
    for path in &files {
        let series = read_series(Path::new(path), "label").unwrap_or_else(|e| panic!("{e}"));
        let points = &series.points;
        if points.len() < 400 {
            continue;
        }
        let labels = series.labels.clone().unwrap_or_else(|| vec![false; points.len()]);
        for restart_at in [points.len() / 2, points.len() * 3 / 4] {
            let end = (restart_at + POINTS_AFTER_RESTART).min(points.len());
            let mut live = SeriesDetector::new(&params, 1);
            alarms(&mut live, &params, points, 0..restart_at);
            never_restarted.add(alarms(&mut live, &params, points, restart_at..end).into_iter(), &labels);
            for (alarms_of, backfill) in [(&mut backfilled, true), (&mut warmed_up, false)] {
                let mut restarted = SeriesDetector::new(&params, 1);
                let history = points[..restart_at].iter().copied();
                let started = Instant::now();
                if backfill {
                    restarted.backfill(&params, history);
                } else {
                    restarted.warm_up(&params, history);
                }
                alarms_of.taking_history += started.elapsed();
                alarms_of.add(alarms(&mut restarted, &params, points, restart_at..end).into_iter(), &labels);
            }
            restarts += 1;
        }
    }
    println!(
        "{restarts} restarts in {} files, alarms in the {POINTS_AFTER_RESTART} points after each \
         (within {NEAR_LABEL_POINTS} points of a label):",
        files.len()
    );
    println!("  never restarted:       {:>4} ({:>4})", never_restarted.all, never_restarted.near_label);
    for (name, alarms) in [("backfill (the daemon)", &backfilled), ("warm_up (no replay)", &warmed_up)] {
        println!(
            "  {name:<21}: {:>4} ({:>4}); taking the histories {:.3} s",
            alarms.all,
            alarms.near_label,
            alarms.taking_history.as_secs_f64()
        );
    }
}
