//! The detector's memory per series once its history is full, which the cycle benchmark (35 s of
//! history) cannot show: every series' training buffers hold `training_points` rows and its
//! models are fitted on them.
//!
//! `cargo bench --bench detector_memory [-- SERIES]` (default 10,000; 200 under `cargo test`)
//! prints one line per configuration: the detector without the long window (`long_window: 0`) and
//! the default, whose 200-point long window adds a second forest. Each runs in its own process (this program started
//! again), so one's freed memory does not hide the other's. A series learns `training_points`
//! noisy points (a daily wave and noise, at a 15 s step) through the cold-start path, then scores
//! another 200 through the live path, which fills the calibration buffers and refits its models
//! once.

use std::process::Command;
use std::time::Instant;

use anomaly_exporter::detect::{AlarmGate, DetectorParams, SeriesDetector};
use anomaly_exporter::process::ProcessStats;

const STEP_MS: i64 = 15_000;
const LIVE_POINTS: usize = 200;

/// A reproducible noisy value: a daily wave plus hashed noise.
fn value(series: usize, point: usize) -> f64 {
    let day = 86_400_000.0 / STEP_MS as f64;
    let wave = (point as f64 / day * std::f64::consts::TAU).sin();
    let mut hash =
        (series as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (point as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    hash ^= hash >> 32;
    let noise = (hash % 10_000) as f64 / 10_000.0;
    50.0 + 10.0 * wave + 5.0 * noise + (series % 7) as f64
}

fn resident_bytes() -> f64 {
    ProcessStats::read().map_or(f64::NAN, |stats| stats.resident_bytes)
}

/// Builds `series` detectors with full histories and prints what they hold.
fn measure(series: usize, long_window: usize) {
    let params = DetectorParams { long_window, ..DetectorParams::default() };
    let before = resident_bytes();
    let started = Instant::now();
    let mut detectors = Vec::with_capacity(series);
    for s in 0..series {
        let mut detector = SeriesDetector::new(&params, s as u64);
        let history = (0..params.training_points).map(|p| (p as i64 * STEP_MS, value(s, p)));
        detector.warm_up(&params, history);
        for p in params.training_points..params.training_points + LIVE_POINTS {
            detector.observe(&params, AlarmGate::ANY, p as i64 * STEP_MS, value(s, p));
        }
        detectors.push(detector);
    }
    let seconds = started.elapsed().as_secs_f64();
    let grown = resident_bytes() - before;
    let per_series = grown / series as f64;
    println!(
        "long_window {long_window:>3}: {series} series, {} points each: RSS +{:.0} MiB, {:.1} KiB per series, \
         {:.2} GiB at 10,000 series ({seconds:.1} s)",
        params.training_points + LIVE_POINTS,
        grown / (1024.0 * 1024.0),
        per_series / 1024.0,
        per_series * 10_000.0 / (1024.0 * 1024.0 * 1024.0),
    );
    assert!(detectors.iter().all(|d| d.model_info().is_some()), "every series has a model");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let [series, long_window] = args.as_slice()
        && std::env::var_os("DETECTOR_MEMORY_CHILD").is_some()
    {
        measure(series.parse().expect("a series count"), long_window.parse().expect("a window"));
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it: then
    // a smoke run of 200 series, so the suite stays fast (and under 100 MiB) and the code path runs.
    let benchmark = std::env::args().any(|a| a == "--bench");
    let series = args.first().map_or(if benchmark { 10_000 } else { 200 }, |n| n.parse().expect("SERIES: a number"));
    for long_window in [0, DetectorParams::default().long_window] {
        let status = Command::new(std::env::current_exe().expect("this program"))
            .args([series.to_string(), long_window.to_string()])
            .env("DETECTOR_MEMORY_CHILD", "1")
            .status()
            .expect("start the measurement");
        assert!(status.success(), "the measurement with long_window {long_window} failed");
    }
}
