//! The `backtest` command as a user runs it: CSV files and directories in, scores out, the NAB
//! report, exit codes, and the replay of a signal's history from a real Prometheus.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use common::{Prometheus, serve_on_loopback, wait_until};

fn run_backtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anomaly-exporter")).arg("backtest").args(args).output().expect("binary runs")
}

/// `backtest --input <input> --output <output>` and `more`.
fn replay(input: &Path, output: &Path, more: &[&str]) -> Output {
    let mut args = vec!["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend_from_slice(more);
    run_backtest(&args)
}

/// How `labelled_csv` writes its timestamps.
#[derive(Clone, Copy)]
enum TimestampFormat {
    /// `2024-01-01T00:05:00Z`
    Rfc3339,
    /// `1704067500`
    EpochSeconds,
    /// `2024-01-01 00:05:00`, UTC without saying so: the Numenta Anomaly Benchmark's files.
    NaiveUtc,
}

/// 600 five-minute points of a noisy daily cycle, one labelled spike at row 500.
fn labelled_csv(format: TimestampFormat) -> String {
    let mut text = String::from("timestamp,value,label,host\n");
    for row in 0..600u64 {
        let noise = ((row * 7919) % 101) as f64 / 101.0 - 0.5;
        let spike = if row == 500 { 40.0 } else { 0.0 };
        let value = 20.0 + 5.0 * (row as f64 / 288.0 * std::f64::consts::TAU).sin() + noise + spike;
        let seconds = 1_704_067_200 + 300 * row;
        let (day, hour, minute) = (1 + row / 288, row % 288 / 12, row % 12 * 5);
        let timestamp = match format {
            TimestampFormat::Rfc3339 => format!("2024-01-{day:02}T{hour:02}:{minute:02}:00Z"),
            TimestampFormat::EpochSeconds => seconds.to_string(),
            TimestampFormat::NaiveUtc => format!("2024-01-{day:02} {hour:02}:{minute:02}:00"),
        };
        text.push_str(&format!("{timestamp},{value:.3},{},a\n", u8::from(row == 500)));
    }
    text
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn scores_every_row_and_flags_the_spike() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, labelled_csv(TimestampFormat::Rfc3339)).unwrap();
    let output = dir.path().join("out.csv");
    let result = replay(&input, &output, &[]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    let rows = lines(&output);
    assert_eq!(rows[0], "timestamp,value,anomaly_score,severity");
    assert_eq!(rows.len(), 601);
    assert!(rows[1].starts_with("2024-01-01T00:00:00Z,"), "timestamps echoed: {}", rows[1]);
    // Warming up: no score yet.
    assert!(rows[1].ends_with(",,normal"), "{}", rows[1]);
    let spike: Vec<&str> = rows[501].split(',').collect();
    assert!(spike[2].parse::<f64>().unwrap() > 1.3, "{}", rows[501]);
    assert_eq!(spike[3], "critical");
    // Once the model has a few hundred points of history, nothing else is high or critical.
    let paged: Vec<&String> =
        rows[200..].iter().filter(|row| row.ends_with(",high") || row.ends_with(",critical")).collect();
    assert_eq!(paged, [&rows[501]]);
}

#[test]
fn rfc3339_epoch_seconds_and_naive_utc_replay_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for (name, format) in [
        ("rfc3339", TimestampFormat::Rfc3339),
        ("epoch", TimestampFormat::EpochSeconds),
        ("naive", TimestampFormat::NaiveUtc),
    ] {
        // The same file name: a series' models are seeded by its name, as the daemon's by its key.
        std::fs::create_dir(dir.path().join(name)).unwrap();
        let input = dir.path().join(name).join("series.csv");
        std::fs::write(&input, labelled_csv(format)).unwrap();
        let output = dir.path().join(name).join("scores.csv");
        let result = replay(&input, &output, &[]);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let scores: Vec<String> =
            lines(&output).iter().map(|r| r.split(',').skip(2).collect::<Vec<_>>().join(",")).collect();
        outputs.push(scores);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn directory_mode_with_the_nab_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.csv"), labelled_csv(TimestampFormat::Rfc3339)).unwrap();
    std::fs::write(input.join("b.csv"), labelled_csv(TimestampFormat::EpochSeconds)).unwrap();
    std::fs::write(input.join("notes.txt"), "not a series").unwrap();
    let output = dir.path().join("out");
    let result = replay(&input, &output, &["--report", "nab", "--threads", "2"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(lines(&output.join("a.csv")).len(), 601);
    assert_eq!(lines(&output.join("b.csv")).len(), 601);
    assert!(!output.join("notes.txt").exists());

    let report = String::from_utf8_lossy(&result.stdout);
    assert!(report.contains("2 series, 1200 rows"), "{report}");
    let ours = report.lines().find(|l| l.starts_with("| anomaly-exporter |")).expect(&report);
    // Each file's spike is detected, and nothing else is needed to reach it.
    assert!(ours.contains("| 2/2 ("), "{ours}");
    assert!(report.contains("| naive all-time high/low |"), "{report}");
    assert!(report.contains("rows/s per core"), "{report}");
}

/// NAB's `data/` holds one directory per source: the walk takes them all, the output repeats the
/// layout, and scores written inside the input are not read back as series on the next run.
#[test]
fn directory_mode_walks_subdirectories_and_skips_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data");
    std::fs::create_dir_all(input.join("realKnownCause")).unwrap();
    std::fs::create_dir_all(input.join(".hidden")).unwrap();
    std::fs::write(input.join("top.csv"), labelled_csv(TimestampFormat::NaiveUtc)).unwrap();
    std::fs::write(input.join("realKnownCause").join("nested.csv"), labelled_csv(TimestampFormat::NaiveUtc)).unwrap();
    std::fs::write(input.join(".hidden").join("skipped.csv"), "not,a,series\n").unwrap();
    let output = input.join("scores");
    for run in 0..2 {
        let result = replay(&input, &output, &["--report", "nab"]);
        assert!(result.status.success(), "run {run}: {}", String::from_utf8_lossy(&result.stderr));
        let report = String::from_utf8_lossy(&result.stdout);
        assert!(report.contains("2 series, 1200 rows"), "run {run}: {report}");
    }
    assert_eq!(lines(&output.join("top.csv")).len(), 601);
    assert_eq!(lines(&output.join("realKnownCause").join("nested.csv")).len(), 601);
    assert!(!output.join(".hidden").exists());
    assert!(!output.join("scores").exists(), "the first run's scores were read as input");
}

/// An --output that is a directory of series inside the input (skipped by the walk as the
/// output) does not have them replaced by the scores of the series of the same name above it.
#[test]
fn directory_mode_does_not_overwrite_series_with_scores() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data");
    let series_dir = input.join("sub");
    std::fs::create_dir_all(&series_dir).unwrap();
    std::fs::write(input.join("same.csv"), labelled_csv(TimestampFormat::Rfc3339)).unwrap();
    std::fs::write(input.join("other.csv"), labelled_csv(TimestampFormat::Rfc3339)).unwrap();
    std::fs::write(input.join("blank.csv"), labelled_csv(TimestampFormat::Rfc3339)).unwrap();
    let kept = labelled_csv(TimestampFormat::NaiveUtc);
    std::fs::write(series_dir.join("same.csv"), &kept).unwrap();
    // An empty file (a run stopped before its first write) holds nothing to keep.
    std::fs::write(series_dir.join("blank.csv"), "").unwrap();
    let result = replay(&input, &series_dir, &[]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("1 of 3 files"), "{stderr}");
    assert!(stderr.contains("same.csv exists and is not a scores file: not overwritten"), "{stderr}");
    assert_eq!(std::fs::read_to_string(series_dir.join("same.csv")).unwrap(), kept);
    // The other files were scored, and a second run replaces their scores.
    let scored = |name: &str| std::fs::read_to_string(series_dir.join(name)).unwrap();
    assert!(scored("blank.csv").starts_with("timestamp,value,anomaly_score,severity\n"));
    std::fs::write(series_dir.join("other.csv"), "timestamp,value,anomaly_score,severity\nstale\n").unwrap();
    let result = replay(&input, &series_dir, &[]);
    assert_eq!(result.status.code(), Some(2), "only same.csv is refused again");
    assert!(!String::from_utf8_lossy(&result.stderr).contains("other.csv"));
    assert_eq!(lines(&series_dir.join("other.csv")).len(), 601, "the stale scores were replaced");
}

/// One bad file in a corpus: every bad file is named at once, every good one is still scored.
#[test]
fn directory_mode_replays_every_good_file_and_names_every_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a_bad.csv"), "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,oops\n")
        .unwrap();
    std::fs::write(input.join("b_good.csv"), labelled_csv(TimestampFormat::Rfc3339)).unwrap();
    std::fs::write(input.join("c_bad.csv"), "timestamp,value\n2024-01-01T00:05:00Z,1\n2024-01-01T00:00:00Z,2\n")
        .unwrap();
    let output = dir.path().join("out");
    let result = replay(&input, &output, &[]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("2 of 3 files"), "{stderr}");
    assert!(stderr.contains("a_bad.csv: line 3") && stderr.contains("c_bad.csv: line 3"), "{stderr}");
    assert_eq!(lines(&output.join("b_good.csv")).len(), 601);
}

#[test]
fn mistakes_exit_2_and_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,oops\n").unwrap();
    let output = dir.path().join("out.csv");
    let result = replay(&input, &output, &[]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("bad.csv") && stderr.contains("line 3") && stderr.contains("oops"), "{stderr}");

    // The report needs labels.
    let unlabelled = dir.path().join("plain.csv");
    std::fs::write(&unlabelled, "timestamp,value\n1,1\n2,2\n").unwrap();
    let result = replay(&unlabelled, &output, &["--report", "nab"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("label"));

    let result = run_backtest(&["--input", input.to_str().unwrap(), "--output", "x.csv", "--signal", "nope"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("--signal nope"));
}

#[test]
fn synthetic_corpus_is_written_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let result = run_backtest(&["--write-synthetic", dir.path().to_str().unwrap()]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let spikes = lines(&dir.path().join("spikes_00.csv"));
    assert_eq!(spikes[0], "timestamp,value,label");
    assert!(spikes.iter().skip(1).any(|row| row.ends_with(",1")));
    // Another seed draws other series of the same kinds.
    let other = tempfile::tempdir().unwrap();
    let result = run_backtest(&["--write-synthetic", other.path().to_str().unwrap(), "--synthetic-seed", "1"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let other_spikes = lines(&other.path().join("spikes_00.csv"));
    assert_eq!(other_spikes[0], spikes[0]);
    assert_ne!(other_spikes, spikes);
    // A seed without the corpus to write is a usage mistake.
    let result = run_backtest(&["--input", "x.csv", "--output", "y.csv", "--synthetic-seed", "1"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("--write-synthetic"));
}

/// A real Prometheus scrapes a stand-in exporter every second for a while; `backtest --from --to`
/// then replays that history, one file per service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_a_signal_from_prometheus() {
    let scrapes = Arc::new(AtomicU64::new(0));
    let counter = scrapes.clone();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move { format!("# TYPE queue_depth gauge\nqueue_depth{{application=\"orders\"}} {}\n", 10 + n % 3) }
        }),
    );
    let exporter = serve_on_loopback(router).await;
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: stand-in\n  static_configs:\n  - targets: ['{exporter}']\n"
    ))
    .await;
    let started = SystemTime::now();
    let scraped = wait_until(Duration::from_secs(120), || async { scrapes.load(Ordering::Relaxed) >= 40 }).await;
    assert!(scraped, "Prometheus did not scrape; log:\n{}", prometheus.log());
    // Let the last samples land in the head block.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let (from, to) = (seconds(started) + 20, seconds(SystemTime::now()));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "source:\n  url: {}\ninterval: 1s\nbackfill: 20s\ndetector:\n  min_training_points: 10\n\
             signals:\n  queue:\n    query: queue_depth\n    thresholds: {{ warning: 100 }}\n",
            prometheus.url()
        ),
    )
    .unwrap();
    let output = dir.path().join("out");
    let (from_text, to_text) = (from.to_string(), to.to_string());
    let result = tokio::task::spawn_blocking(move || {
        run_backtest(&[
            "--config.file",
            config.to_str().unwrap(),
            "--signal",
            "queue",
            "--from",
            &from_text,
            "--to",
            &to_text,
            "--output",
            output.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("orders: "), "{stdout}");
    let rows = lines(&dir.path().join("out").join("orders.csv"));
    assert_eq!(rows[0], "timestamp,value,anomaly_score,severity");
    // One row per step from --from to --to; the first 20 s warmed the model up, so rows score.
    assert!(rows.len() > 15, "{} rows", rows.len());
    let first_time: f64 = rows[1].split(',').next().unwrap().parse().unwrap();
    assert!(first_time >= from as f64, "{first_time} before --from {from}");
    assert!(rows[1..].iter().all(|row| !row.contains(",,")), "every row scored after the backfill: {rows:?}");
}
