//! Dataset writing at scale: rows written per second, and the file count and bytes a simulated
//! day leaves at 10,000 series, before and after compaction.
//!
//! `cargo bench --bench datasets [-- SERIES FLUSHES]` (defaults 10000 and 12). A day of 15 s
//! points (5,760 per series) is written in FLUSHES flushes instead of the daemon's 1,440
//! one-minute flushes, so the run stays within minutes: each flush writes one file per series
//! (plus an anomalies file for the ~0.2% of series-flushes that hold an anomaly), exactly as
//! the writer does. The daemon's file count is therefore `series × flushes per day` (14.4 M
//! files at 10,000 series and 1 m flushes before compaction, 10,000 after): the table gives the
//! measured rows/s and bytes per row, from which other settings follow. Compaction then merges
//! each finished day into one file per series.

use std::collections::HashMap;
use std::time::Instant;

use anomaly_exporter::engine::SeriesKey;
use anomaly_exporter::store::maintain::maintain;
use anomaly_exporter::store::writer::{DatasetWriter, StoredPoint, write_pending};
use anomaly_exporter::store::{DAY_MS, Datasets};

const POINTS_PER_DAY: i64 = 5760;
const STEP_MS: i64 = 15_000;

fn count_files(directory: &std::path::Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(directory).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            let (f, b) = count_files(&entry.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += entry.metadata().unwrap().len();
        }
    }
    (files, bytes)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it:
    // then a smoke run of 100 series in 2 flushes, so the suite stays fast and the code path runs.
    let benchmark = std::env::args().any(|a| a == "--bench");
    let series_count = args.first().copied().unwrap_or(if benchmark { 10_000 } else { 100 });
    let flushes = args.get(1).copied().unwrap_or(if benchmark { 12 } else { 2 }).max(1) as i64;
    let dir = tempfile::tempdir_in(std::env::var_os("DATASETS_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into))
        .unwrap();
    let datasets = Datasets::new(dir.path());
    let keys: Vec<SeriesKey> = (0..series_count)
        .map(|i| SeriesKey {
            service: format!("service-{:05}", i / 4),
            signal: ["cpu", "memory", "latency", "error_ratio"][i % 4].to_owned(),
        })
        .collect();
    let mut writer = DatasetWriter::open(datasets.clone(), 20, &HashMap::new());
    // A finished day (yesterday, by a fixed clock), so compaction takes it.
    let day_start = 20_000 * DAY_MS;
    let per_flush = POINTS_PER_DAY / flushes;
    let mut rows = 0u64;
    let mut write_seconds = Vec::new();
    for flush in 0..flushes {
        for (index, key) in keys.iter().enumerate() {
            let points = (0..per_flush)
                .map(|i| {
                    let n = flush * per_flush + i;
                    let value = 0.3 + 0.05 * ((n as f64) / 40.0 + index as f64).sin();
                    // ~1 anomaly per 500 flushes of a series.
                    let anomalous = (n as usize * 7919 + index * 104_729).is_multiple_of(500 * per_flush as usize);
                    StoredPoint {
                        key: key.clone(),
                        timestamp_ms: day_start + n * STEP_MS,
                        value,
                        anomaly_score: Some(if anomalous { 2.0 } else { 0.6 + value / 10.0 }),
                        severity: u8::from(anomalous) * 2,
                        model_version: Some(3),
                    }
                })
                .collect();
            rows += writer.accept(points) as u64;
        }
        let started = Instant::now();
        let (report, failed, errors) = write_pending(&datasets, writer.take_pending());
        assert!(errors.is_empty() && failed.is_empty(), "{errors:?}");
        let seconds = started.elapsed().as_secs_f64();
        write_seconds.push((report.history_rows as f64 / seconds, seconds));
        eprintln!("flush {}/{flushes}: {} rows in {seconds:.1} s", flush + 1, report.history_rows);
    }
    let (files_before, bytes_before) = count_files(dir.path());
    let started = Instant::now();
    let report = maintain(&datasets, 30 * DAY_MS, day_start + DAY_MS + 1).unwrap();
    let compaction_seconds = started.elapsed().as_secs_f64();
    let (files_after, bytes_after) = count_files(dir.path());
    let mut rates: Vec<f64> = write_seconds.iter().map(|r| r.0).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!("| series | flushes/day | rows/day | rows written/s (median flush) | files | bytes | bytes/row |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {series_count} | {flushes} | {rows} | {median:.0} | {files_before} | {bytes_before} | {:.1} |",
        bytes_before as f64 / rows as f64
    );
    println!(
        "| {series_count} | after compaction ({compaction_seconds:.0} s, {} files merged) | {rows} | – | {files_after} | {bytes_after} | {:.1} |",
        report.files_compacted,
        bytes_after as f64 / rows as f64
    );
}
