//! `anomaly-exporter backtest`: replay history through the daemon's per-series pipeline.
//!
//! Each series goes through exactly what the daemon does with it: a [`SeriesDetector`] built from
//! the config's `detector:` parameters, fed point by point with the signal's [`AlarmGate`]
//! (`min_deviation` and `detection_direction`; each row scored only from the rows before it,
//! models refitted by the data's own clock), and
//! the severity of [`classify::severity`] from the signal's thresholds and the `anomaly_levels`.
//! Sources: a CSV file, a directory of CSV files (in parallel, with a progress bar on a
//! terminal), or a configured signal's history in Prometheus (`--from/--to`).
//!
//! With `--report nab`, labelled input is also scored with the Numenta Anomaly Benchmark's rules
//! ([`crate::evaluate::nab`]) beside the naive "new all-time high or low" rule, and the command
//! prints the table and the pipeline's throughput. `--write-synthetic DIR` writes the labelled
//! synthetic corpus ([`crate::evaluate::synthetic`]) to replay the same way.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;

use crate::classify::{self, AnomalyLevels, Severity, Thresholds};
use crate::config::{Config, ConfigError, default_signals};
use crate::detect::{AlarmGate, DetectorParams, SeriesDetector};
use crate::engine::SeriesKey;
use crate::evaluate::nab::{self, Corpus, PROFILES};
use crate::evaluate::synthetic;
use crate::source::{PrometheusClient, SourceError};

/// Arguments of `backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// A CSV file (`timestamp,value`, other columns ignored) or a directory of them (searched
    /// with its subdirectories, whose layout the output repeats). Timestamps:
    /// RFC 3339, a date and time without an offset (read as UTC, as in NAB's files), epoch
    /// seconds or epoch milliseconds.
    #[arg(long, required_unless_present_any = ["from", "write_synthetic"])]
    pub input: Option<PathBuf>,
    /// Where to write `timestamp,value,anomaly_score,severity`: a file for a file, a directory
    /// for a directory or for `--from/--to` (one file per service).
    #[arg(long, required_unless_present = "write_synthetic")]
    pub output: Option<PathBuf>,
    /// The configuration whose `detector:`, `anomaly_levels:` and signal apply (default: the
    /// built-in defaults, with no thresholds and no minimum deviation).
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
    /// The signal whose thresholds, `min_deviation` and `detection_direction` apply (from the
    /// config file, or from the built-in Spring Boot signals without one).
    #[arg(long)]
    pub signal: Option<String>,
    /// The label column (1 = anomalous) of labelled input, needed by `--report nab`.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// After replaying, score labelled input with NAB's rules and print the table.
    #[arg(long, value_enum)]
    pub report: Option<BacktestReport>,
    /// Replay the signal's history in Prometheus from this time (RFC 3339, UTC date and time,
    /// epoch seconds or epoch milliseconds).
    #[arg(long, requires_all = ["to", "signal", "config_file"], conflicts_with = "input")]
    pub from: Option<String>,
    /// End of the replayed history (RFC 3339, UTC date and time, epoch seconds or epoch
    /// milliseconds).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Write the labelled synthetic corpus (CSV files `timestamp,value,label`) to this directory
    /// and exit.
    #[arg(long, conflicts_with_all = ["input", "from"])]
    pub write_synthetic: Option<PathBuf>,
    /// The seed of the synthetic corpus `--write-synthetic` writes (default 2015, the README's
    /// tables' seed; others check that a change does not merely fit that one draw).
    #[arg(long)]
    pub synthetic_seed: Option<u64>,
    /// Files replayed at once in directory mode (default: every core).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
}

/// What `--report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BacktestReport {
    /// NAB scores (standard, reward_low_FP, reward_low_FN) of ours and of the naive rule.
    Nab,
}

/// Why `backtest` failed.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The configuration file was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--signal` names no signal.
    #[error("--signal {name}: no such signal (known: {known})")]
    UnknownSignal {
        /// The name given.
        name: String,
        /// The signals there are.
        known: String,
    },
    /// An input file could not be read or parsed.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when there is one.
        message: String,
    },
    /// An output could not be written.
    #[error("{path}: cannot write: {source}")]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A flag's value is unusable.
    #[error("{flag}: {message}")]
    Argument {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Prometheus could not be read.
    #[error("prometheus: {0}")]
    Source(#[from] SourceError),
    /// Files of a directory that could not be replayed; every other file was.
    #[error("{} of {total} files not replayed (the others were written):\n  {}", failed.len(), list_errors(failed))]
    Files {
        /// What went wrong with each, in path order.
        failed: Vec<BacktestError>,
        /// Files in the directory.
        total: usize,
    },
}

fn list_errors(errors: &[BacktestError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
}

impl BacktestError {
    /// 2 for a mistake in the arguments, the configuration or the input; 1 for a failure to write
    /// or to reach Prometheus.
    pub fn exit_code(&self) -> u8 {
        match self {
            // A range the client refuses before any request (too many points) is the flags' fault.
            Self::Source(SourceError::InvalidArgument(_)) => 2,
            Self::Output { .. } | Self::Source(_) => 1,
            Self::Files { failed, .. } => failed.iter().map(Self::exit_code).max().unwrap_or(2),
            _ => 2,
        }
    }
}

/// What applies to every replayed series: the daemon's parameters for one signal.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The detector's parameters.
    pub detector: DetectorParams,
    /// Where the anomaly score turns into levels.
    pub anomaly_levels: AnomalyLevels,
    /// The signal's name (part of each series' seed, as in the daemon).
    pub signal: String,
    /// Static thresholds on the value.
    pub thresholds: Thresholds,
    /// Which deviations may score above 1 (the signal's; without one, every deviation).
    pub alarm_gate: AlarmGate,
}

/// One scored row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredRow {
    /// The anomaly score, as the daemon exports it; `None` while warming up.
    pub anomaly_score: Option<f64>,
    /// The severity the daemon would give the point.
    pub severity: Severity,
}

impl Pipeline {
    /// The pipeline of `signal` in `config`, or the defaults.
    fn from_args(args: &BacktestArgs) -> Result<(Self, Option<Config>), BacktestError> {
        let config = args.config_file.as_deref().map(Config::load).transpose()?;
        let (detector, anomaly_levels) = match &config {
            Some(config) => (config.detector.clone(), config.anomaly_levels),
            None => (DetectorParams::default(), AnomalyLevels::default()),
        };
        let mut pipeline = Self {
            detector,
            anomaly_levels,
            signal: "value".to_owned(),
            thresholds: Thresholds::default(),
            alarm_gate: AlarmGate::ANY,
        };
        if let Some(name) = &args.signal {
            let found = match &config {
                Some(config) => config.signals.iter().find(|s| &s.name == name).map(|s| (s.thresholds, s.alarm_gate())),
                None => default_signals().get(name).map(|s| (s.thresholds, s.alarm_gate())),
            };
            let known = match &config {
                Some(config) => config.signals.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                None => default_signals().into_keys().collect(),
            };
            let (thresholds, alarm_gate) =
                found.ok_or_else(|| BacktestError::UnknownSignal { name: name.clone(), known: known.join(", ") })?;
            pipeline.signal = name.clone();
            pipeline.thresholds = thresholds;
            pipeline.alarm_gate = alarm_gate;
        }
        Ok((pipeline, config))
    }

    /// Replays one series (`service` seeds its models as the daemon's would), `history` first as
    /// the daemon's backfill ([`SeriesDetector::backfill`]), then `points` scored one by one.
    pub fn replay(&self, service: &str, history: &[(i64, f64)], points: &[(i64, f64)]) -> Vec<ScoredRow> {
        let key = SeriesKey { service: service.to_owned(), signal: self.signal.clone() };
        let mut detector = SeriesDetector::new(&self.detector, key.seed());
        if !history.is_empty() {
            detector.backfill(&self.detector, history.iter().copied());
        }
        points
            .iter()
            .map(|&(timestamp_ms, value)| {
                let anomaly_score = detector
                    .observe(&self.detector, self.alarm_gate, timestamp_ms, value)
                    .and_then(|observation| observation.anomaly_score);
                let anomaly_level = anomaly_score.map_or(Severity::Normal, |score| self.anomaly_levels.level(score));
                let severity = classify::severity(self.thresholds.level(value), anomaly_level);
                ScoredRow { anomaly_score, severity }
            })
            .collect()
    }
}

/// A series read from a CSV file.
#[derive(Debug, Clone, Default)]
pub struct CsvSeries {
    /// The timestamps as written, echoed in the output.
    pub timestamps: Vec<String>,
    /// `(ms since the epoch, value)` per row.
    pub points: Vec<(i64, f64)>,
    /// The labels, when the file has the label column.
    pub labels: Option<Vec<bool>>,
}

/// Reads `timestamp,value[,label]` (columns found by name, others ignored).
pub fn read_series(path: &Path, label_column: &str) -> Result<CsvSeries, BacktestError> {
    let fail = |message: String| BacktestError::Input { path: path.to_owned(), message };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    let headers = reader.headers().map_err(|e| fail(format!("cannot read the header: {e}")))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let time_column = column("timestamp").ok_or_else(|| fail("no 'timestamp' column in the header".to_owned()))?;
    let value_column = column("value").ok_or_else(|| fail("no 'value' column in the header".to_owned()))?;
    let label = column(label_column);
    let mut series = CsvSeries { labels: label.map(|_| Vec::new()), ..CsvSeries::default() };
    let mut previous: Option<(i64, usize)> = None;
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|e| fail(format!("line {line}: {e}")))?;
        let text = record.get(time_column).unwrap_or_default();
        let timestamp_ms = parse_timestamp(text).map_err(|e| fail(format!("line {line}: timestamp {text:?}: {e}")))?;
        // Each row is scored from the rows before it, as the daemon scores a stream: a row out of
        // order or repeated would be skipped without a word, as the daemon skips a stale sample.
        if let Some((previous_ms, previous_line)) = previous
            && timestamp_ms <= previous_ms
        {
            let what = if timestamp_ms == previous_ms { "repeats" } else { "is before" };
            return Err(fail(format!(
                "line {line}: timestamp {text:?} {what} line {previous_line}'s: rows must be in time order \
                 without repeats (sort the file by time)"
            )));
        }
        previous = Some((timestamp_ms, line));
        let value_text = record.get(value_column).unwrap_or_default();
        // An empty value is a gap (NaN): the detector skips it, as the daemon skips a NaN sample.
        let value = if value_text.is_empty() {
            f64::NAN
        } else {
            let value = value_text
                .parse::<f64>()
                .map_err(|_| fail(format!("line {line}: value {value_text:?} is not a number")))?;
            // NaN is a gap, as the daemon takes it; an infinite value (or 1e400) is a mistake.
            if value.is_infinite() {
                return Err(fail(format!("line {line}: value {value_text:?} is not finite")));
            }
            value
        };
        if let (Some(column), Some(labels)) = (label, series.labels.as_mut()) {
            let text = record.get(column).unwrap_or_default();
            let labelled = match text {
                "1" | "true" | "True" | "1.0" => true,
                "0" | "false" | "False" | "0.0" | "" => false,
                other => return Err(fail(format!("line {line}: label {other:?} is not 0 or 1"))),
            };
            labels.push(labelled);
        }
        series.timestamps.push(text.to_owned());
        series.points.push((timestamp_ms, value));
    }
    Ok(series)
}

/// Epoch numbers at or past this are milliseconds (Grafana's `${__from}`, Java's
/// `System.currentTimeMillis()`): as seconds they would be after the year 5000, and as
/// milliseconds they are after 1973.
const EPOCH_MILLISECONDS_FROM: f64 = 1e11;

/// Parses an RFC 3339 time (`2024-01-01T00:00:00Z`, `…T00:00:00.250+02:00`), a date and time
/// without an offset, read as UTC (`2024-01-01 00:00:00`: the Numenta Anomaly Benchmark's files,
/// pandas' CSV export), epoch seconds (`1704067200`, `1704067200.25`) or epoch milliseconds
/// (`1704067200250`: any number of 1e11 or more) into milliseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    if let Ok(number) = text.parse::<f64>() {
        return if !number.is_finite() || number.abs() >= 1e17 {
            Err("epoch seconds or milliseconds out of range".to_owned())
        } else if number.abs() >= EPOCH_MILLISECONDS_FROM {
            Ok(number.round() as i64)
        } else {
            Ok((number * 1000.0).round() as i64)
        };
    }
    crate::calendar::parse_rfc3339_or_utc_ms(text).ok_or_else(|| {
        "expected RFC 3339 (2024-01-01T00:00:00Z), a UTC date and time (2024-01-01 00:00:00), epoch seconds or \
         epoch milliseconds"
            .to_owned()
    })
}

/// The first line of every scores file.
const SCORES_HEADER: &str = "timestamp,value,anomaly_score,severity";

/// Writes `timestamp,value,anomaly_score,severity`.
fn write_scores(
    path: &Path,
    timestamps: &[String],
    points: &[(i64, f64)],
    rows: &[ScoredRow],
) -> Result<(), BacktestError> {
    let io = |source| BacktestError::Output { path: path.to_owned(), source };
    let mut out = BufWriter::with_capacity(1 << 16, File::create(path).map_err(io)?);
    out.write_all(SCORES_HEADER.as_bytes()).and_then(|()| out.write_all(b"\n")).map_err(io)?;
    for ((timestamp, (_, value)), row) in timestamps.iter().zip(points).zip(rows) {
        match row.anomaly_score {
            Some(score) => writeln!(out, "{timestamp},{value},{score:.6},{}", row.severity.as_str()),
            None => writeln!(out, "{timestamp},{value},,{}", row.severity.as_str()),
        }
        .map_err(io)?;
    }
    out.flush().map_err(io)
}

/// One replayed file's results, kept for the report.
#[derive(Debug)]
struct Replayed {
    scores: Vec<Option<f64>>,
    values: Vec<f64>,
    labels: Option<Vec<bool>>,
    replay_time: Duration,
}

/// Replays one CSV file into one output file.
fn backtest_file(
    pipeline: &Pipeline,
    input: &Path,
    output: &Path,
    label_column: &str,
) -> Result<Replayed, BacktestError> {
    let series = read_series(input, label_column)?;
    let service = input.file_stem().map_or_else(String::new, |stem| stem.to_string_lossy().into_owned());
    let started = Instant::now();
    let rows = pipeline.replay(&service, &[], &series.points);
    let replay_time = started.elapsed();
    write_scores(output, &series.timestamps, &series.points, &rows)?;
    Ok(Replayed {
        scores: rows.iter().map(|row| row.anomaly_score).collect(),
        values: series.points.iter().map(|&(_, value)| value).collect(),
        labels: series.labels,
        replay_time,
    })
}

/// The CSV files under a directory, its subdirectories included (NAB's `data/` holds one per
/// source), sorted by path and given relative to `dir`. Hidden entries are skipped, and so is
/// `output` when it lies inside `dir`: a second run must not read the first run's scores as input.
/// Symbolic links to directories are not followed, so a link cannot make the walk loop.
fn csv_files(dir: &Path, output: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let output = std::fs::canonicalize(output).ok();
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let listed = dir.join(&relative);
        let entries = std::fs::read_dir(&listed)
            .map_err(|e| BacktestError::Input { path: listed.clone(), message: format!("cannot list: {e}") })?;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                if output.is_none() || std::fs::canonicalize(&path).ok() != output {
                    pending.push(relative.join(&name));
                }
            } else if path.is_file() && path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("csv")) {
                files.push(relative.join(&name));
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(BacktestError::Input {
            path: dir.to_owned(),
            message: "no .csv file in this directory or below it".to_owned(),
        });
    }
    Ok(files)
}

/// Replays every file, `threads` at a time, with a progress bar when stderr is a terminal.
fn backtest_dir(
    pipeline: &Pipeline,
    input_dir: &Path,
    files: &[PathBuf],
    output_dir: &Path,
    label_column: &str,
    threads: NonZeroUsize,
) -> Result<Vec<Replayed>, BacktestError> {
    std::fs::create_dir_all(output_dir)
        .map_err(|source| BacktestError::Output { path: output_dir.to_owned(), source })?;
    let progress = indicatif::ProgressBar::new(files.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} files {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Replayed, BacktestError>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.get().min(files.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(relative) = files.get(index) else { break };
                    let output = output_dir.join(relative);
                    let result = create_parent(&output)
                        .and_then(|()| refuse_to_overwrite_other_files(&output))
                        .and_then(|()| backtest_file(pipeline, &input_dir.join(relative), &output, label_column));
                    progress.inc(1);
                    // A bad file does not stop the others: a corpus run reports every bad file at
                    // once, and keeps the scores of every good one.
                    if let Ok(mut slots) = results.lock() {
                        slots[index] = Some(result);
                    }
                }
            });
        }
    });
    progress.finish_and_clear();
    let slots = results.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (replayed, failed): (Vec<_>, Vec<_>) = slots.into_iter().flatten().partition(Result::is_ok);
    if failed.is_empty() {
        Ok(replayed.into_iter().flatten().collect())
    } else {
        Err(BacktestError::Files { failed: failed.into_iter().filter_map(Result::err).collect(), total: files.len() })
    }
}

/// In directory mode the user names a directory, not each file written in it: a file already at
/// one of those paths is replaced only if it is a scores file (a previous run's). Anything else
/// there (an `--output` inside the input, over its series) is refused rather than lost. An empty
/// file (a run stopped before its first write) holds nothing to lose, and is replaced.
fn refuse_to_overwrite_other_files(output: &Path) -> Result<(), BacktestError> {
    let Ok(file) = File::open(output) else { return Ok(()) };
    if file.metadata().is_ok_and(|metadata| metadata.len() == 0) {
        return Ok(());
    }
    let mut first_line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(std::io::Read::take(file, 256)), &mut first_line);
    if first_line.trim_end() == SCORES_HEADER {
        Ok(())
    } else {
        Err(BacktestError::Argument {
            flag: "--output",
            message: format!("{} exists and is not a scores file: not overwritten", output.display()),
        })
    }
}

/// Creates the directory a scores file goes in (the input's subdirectory, mirrored).
fn create_parent(output: &Path) -> Result<(), BacktestError> {
    match output.parent() {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|source| BacktestError::Output { path: parent.to_owned(), source })
        }
        None => Ok(()),
    }
}

/// Runs `backtest`.
pub fn run(args: &BacktestArgs) -> Result<(), BacktestError> {
    // Checked here: clap's `requires = "write_synthetic"` on the flag let it through (tried), and
    // a seed silently ignored would make a user believe they scored another corpus.
    if args.synthetic_seed.is_some() && args.write_synthetic.is_none() {
        return Err(BacktestError::Argument {
            flag: "--synthetic-seed",
            message: "only applies with --write-synthetic".to_owned(),
        });
    }
    if let Some(dir) = &args.write_synthetic {
        return write_synthetic(dir, args.synthetic_seed.unwrap_or(SYNTHETIC_SEED));
    }
    let (pipeline, config) = Pipeline::from_args(args)?;
    let output =
        args.output.as_deref().ok_or(BacktestError::Argument { flag: "--output", message: "required".to_owned() })?;
    if let (Some(from), Some(to), Some(config)) = (&args.from, &args.to, &config) {
        return backtest_prometheus(&pipeline, config, from, to, output);
    }
    let Some(input) = args.input.as_deref() else {
        return Err(BacktestError::Argument { flag: "--input", message: "required".to_owned() });
    };
    check_output(input, output)?;
    let started = Instant::now();
    let replayed = if input.is_dir() {
        let files = csv_files(input, output)?;
        let threads = args.threads.unwrap_or_else(crate::forest::available_threads);
        backtest_dir(&pipeline, input, &files, output, &args.label_column, threads)?
    } else {
        vec![backtest_file(&pipeline, input, output, &args.label_column)?]
    };
    let wall = started.elapsed();
    if args.report == Some(BacktestReport::Nab) {
        print_nab_report(input, &args.label_column, &replayed, wall)?;
    }
    Ok(())
}

fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Refuses an `--output` that would destroy the input or cannot take the results: the input
/// itself (a file, or in directory mode the input directory, whose files would be overwritten by
/// their scores), a directory for one file's scores, a file for a directory's.
fn check_output(input: &Path, output: &Path) -> Result<(), BacktestError> {
    let refuse = |message: String| Err(BacktestError::Argument { flag: "--output", message });
    if super::is_same_file(input, output) {
        return refuse(format!(
            "{} is the input {}: the scores would overwrite it; choose another path",
            output.display(),
            if input.is_dir() { "directory" } else { "file" }
        ));
    }
    match (input.is_dir(), output.is_dir()) {
        (true, false) if output.exists() => refuse(format!(
            "{} is a file: with a directory as --input, --output is a directory (one scores file per input)",
            output.display()
        )),
        (false, true) => {
            refuse(format!("{} is a directory: with a file as --input, --output is a file", output.display()))
        }
        _ => Ok(()),
    }
}

/// Writes the synthetic corpus as `timestamp,value,label` files, 5-minute steps from 2024-01-01.
fn write_synthetic(dir: &Path, seed: u64) -> Result<(), BacktestError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BacktestError::Output { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let start_seconds = 1_704_067_200; // 2024-01-01T00:00:00Z
    for series in synthetic::corpus(seed, SYNTHETIC_VARIANTS) {
        let path = dir.join(format!("{}.csv", series.name));
        let mut out = BufWriter::new(File::create(&path).map_err(io(&path))?);
        out.write_all(b"timestamp,value,label\n").map_err(io(&path))?;
        for (row, (value, label)) in series.values.iter().zip(&series.labels).enumerate() {
            writeln!(out, "{},{value:.4},{}", start_seconds + 300 * row, u8::from(*label)).map_err(io(&path))?;
        }
        out.flush().map_err(io(&path))?;
    }
    println!("{}: {} series written", dir.display(), synthetic::KINDS.len() * SYNTHETIC_VARIANTS);
    Ok(())
}

/// Seed of the synthetic corpus: fixed, so the README's table can be reproduced.
const SYNTHETIC_SEED: u64 = 2015;
/// Series per kind in the synthetic corpus.
const SYNTHETIC_VARIANTS: usize = 4;

/// Prints the NAB table (ours and the naive rule) and the throughput.
fn print_nab_report(
    input: &Path,
    label_column: &str,
    replayed: &[Replayed],
    wall: Duration,
) -> Result<(), BacktestError> {
    let (mut ours, mut naive) = (Corpus::new(), Corpus::new());
    for series in replayed {
        let Some(labels) = &series.labels else {
            return Err(BacktestError::Argument {
                flag: "--report nab",
                message: format!("needs labelled input: a file of {} has no {label_column:?} column", input.display()),
            });
        };
        ours.add_series(&series.scores, labels);
        naive.add_series(&nab::all_time_extreme_scores(&series.values), labels);
    }
    let rows: usize = replayed.iter().map(|s| s.values.len()).sum();
    let replay_seconds: f64 = replayed.iter().map(|s| s.replay_time.as_secs_f64()).sum();
    println!("corpus {}: {} series, {rows} rows", input.display(), replayed.len());
    println!(
        "| detector | standard | reward_low_FP | reward_low_FN | windows detected (standard) | threshold (standard) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, corpus) in [("anomaly-exporter", &ours), ("naive all-time high/low", &naive)] {
        let scores = PROFILES.map(|profile| corpus.score(profile));
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {}/{} ({} FP rows) | {:.3} |",
            scores[0].normalized,
            scores[1].normalized,
            scores[2].normalized,
            scores[0].detected_windows,
            scores[0].windows,
            scores[0].false_positives,
            scores[0].threshold,
        );
    }
    println!(
        "throughput: {:.0} rows/s per core in the detector ({rows} rows in {replay_seconds:.2} s of replay), {:.2} s wall in all",
        rows as f64 / replay_seconds.max(1e-9),
        wall.as_secs_f64()
    );
    Ok(())
}

/// Replays a configured signal's history in Prometheus, one output file per service: the daemon's
/// backfill before `from` warms each detector up, then every step from `from` to `to` is scored.
fn backtest_prometheus(
    pipeline: &Pipeline,
    config: &Config,
    from: &str,
    to: &str,
    output_dir: &Path,
) -> Result<(), BacktestError> {
    let time = |flag: &'static str, text: &str| {
        parse_timestamp(text)
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
            .map_err(|message| BacktestError::Argument { flag, message: format!("{text:?}: {message}") })
    };
    let (from, to) = (time("--from", from)?, time("--to", to)?);
    if to <= from {
        return Err(BacktestError::Argument { flag: "--to", message: "must be after --from".to_owned() });
    }
    let signal = config
        .signals
        .iter()
        .find(|s| s.name == pipeline.signal)
        .ok_or_else(|| BacktestError::UnknownSignal { name: pipeline.signal.clone(), known: String::new() })?;
    let client = PrometheusClient::new(&config.source)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BacktestError::Output { path: output_dir.to_owned(), source })?;
    let start = from.checked_sub(config.backfill).unwrap_or(SystemTime::UNIX_EPOCH);
    let matrix = runtime.block_on(client.query_range(&signal.query, start, to, config.interval)).map_err(|error| {
        match error {
            // Said in the flags' terms: the client's message is in epoch milliseconds.
            SourceError::InvalidArgument(message) => BacktestError::Argument {
                flag: "--from",
                message: format!(
                    "{} to {} (with the {}s of warm-up before it, `backfill`) at interval {}s: {message}",
                    crate::calendar::format_rfc3339_ms(epoch_ms(from)),
                    crate::calendar::format_rfc3339_ms(epoch_ms(to)),
                    config.backfill.as_secs(),
                    config.interval.as_secs_f64(),
                ),
            },
            other => BacktestError::Source(other),
        }
    })?;
    std::fs::create_dir_all(output_dir)
        .map_err(|source| BacktestError::Output { path: output_dir.to_owned(), source })?;
    let from_ms = from.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut written = 0;
    for series in matrix.series {
        let Some(service) = series.labels.get(&signal.service_label) else { continue };
        let points: Vec<(i64, f64)> = series.points.iter().map(|p| (p.timestamp_ms, p.value)).collect();
        let split = points.partition_point(|&(t, _)| t < from_ms);
        let (history, scored) = points.split_at(split);
        let history: Vec<(i64, f64)> = history.iter().copied().filter(|(_, v)| v.is_finite()).collect();
        let mut pipeline = pipeline.clone();
        pipeline.thresholds = *signal.thresholds_for(service);
        let rows = pipeline.replay(service, &history, scored);
        let timestamps: Vec<String> = scored.iter().map(|&(t, _)| format!("{:.3}", t as f64 / 1000.0)).collect();
        let file_name: String =
            service.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        write_scores(&output_dir.join(format!("{file_name}.csv")), &timestamps, scored, &rows)?;
        let alarms = rows.iter().filter(|r| r.severity >= Severity::High).count();
        println!("{service}: {} points, {alarms} at severity high or above", rows.len());
        written += 1;
    }
    if written == 0 {
        println!("no series of signal {} between --from and --to", signal.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc3339_utc_date_times_and_epoch_seconds() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_timestamp("2024-01-01T00:00:00Z"), Ok(1_704_067_200_000));
        assert_eq!(parse_timestamp("2024-02-29T12:30:15.25Z"), Ok(1_709_209_815_250));
        assert_eq!(parse_timestamp("2024-01-01T02:00:00+02:00"), Ok(1_704_067_200_000));
        assert_eq!(parse_timestamp("2023-12-31T19:00:00-05:00"), Ok(1_704_067_200_000));
        assert_eq!(parse_timestamp("1704067200"), Ok(1_704_067_200_000));
        assert_eq!(parse_timestamp("1704067200.5"), Ok(1_704_067_200_500));
        // Milliseconds, as Grafana and Java write them, are not read as seconds 1000 times later.
        assert_eq!(parse_timestamp("1704067200250"), Ok(1_704_067_200_250));
        assert_eq!(parse_timestamp("99999999999"), Ok(99_999_999_999_000), "just under 1e11: seconds");
        assert!(parse_timestamp("1e17").is_err());
        // Without an offset, as NAB's files and pandas write them: UTC.
        assert_eq!(parse_timestamp("2024-01-01T00:00:00"), Ok(1_704_067_200_000));
        assert_eq!(parse_timestamp("2024-01-01 00:00:00"), Ok(1_704_067_200_000));
        for bad in ["", "2023-02-29T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01 00:00", "yesterday", "NaN"] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips_epoch_milliseconds(ms in -2_000_000_000_000i64..8_000_000_000_000) {
            let text = crate::calendar::format_rfc3339_ms(ms);
            prop_assert_eq!(parse_timestamp(&text), Ok(ms));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_timestamp(&text);
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_columns_by_name_and_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "a.csv", "value,label,timestamp,other\n1.5,0,1000,x\n2,1,1001,y\n");
        let series = read_series(&good, "label").unwrap();
        assert_eq!(series.points, [(1_000_000, 1.5), (1_001_000, 2.0)]);
        assert_eq!(series.labels, Some(vec![false, true]));
        assert_eq!(read_series(&good, "missing").unwrap().labels, None);
        let infinite = write(dir.path(), "f.csv", "timestamp,value\n1000,1\n1001,1e400\n");
        let error = read_series(&infinite, "label").unwrap_err().to_string();
        assert!(error.contains("line 3") && error.contains("not finite"), "{error}");
        let bad = write(dir.path(), "b.csv", "timestamp,value\n1000,1\n1001,abc\n");
        let error = read_series(&bad, "label").unwrap_err().to_string();
        assert!(error.contains("b.csv") && error.contains("line 3") && error.contains("abc"), "{error}");
        let no_value = write(dir.path(), "c.csv", "timestamp,v\n1000,1\n");
        assert!(read_series(&no_value, "label").unwrap_err().to_string().contains("'value'"));
        // Out of order or repeated: refused with both lines, not skipped without a word.
        let reversed = write(dir.path(), "d.csv", "timestamp,value\n1002,1\n1001,2\n");
        let error = read_series(&reversed, "label").unwrap_err().to_string();
        assert!(error.contains("line 3") && error.contains("is before line 2's"), "{error}");
        let repeated = write(dir.path(), "e.csv", "timestamp,value\n1000,1\n1001,2\n1001,3\n");
        let error = read_series(&repeated, "label").unwrap_err().to_string();
        assert!(error.contains("line 4") && error.contains("repeats line 3's"), "{error}");
    }

    #[test]
    fn an_output_that_would_overwrite_the_input_or_cannot_hold_the_scores_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), "a.csv", "timestamp,value\n1000,1\n");
        let same = dir.path().join(".").join("a.csv");
        for (input, output, expected) in [
            (&input, &same, "is the input file"),
            (&dir.path().to_owned(), &dir.path().join("."), "is the input directory"),
            (&dir.path().to_owned(), &input, "is a file"),
            (&input, &dir.path().to_owned(), "is a directory"),
        ] {
            let error = check_output(input, output).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().starts_with("--output") && error.to_string().contains(expected), "{error}");
        }
        assert!(check_output(&input, &dir.path().join("scores.csv")).is_ok());
        // A range refused before any request is the flags' fault; Prometheus down is not.
        assert_eq!(BacktestError::Source(SourceError::InvalidArgument("too many points".into())).exit_code(), 2);
        assert_eq!(BacktestError::Source(SourceError::Client("no TLS".into())).exit_code(), 1);
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "timestamp,value\n1000,1\n");
    }

    #[test]
    fn replay_matches_the_detector_fed_directly() {
        let pipeline = Pipeline {
            detector: DetectorParams {
                min_training_points: 50,
                retrain_every_points: 100,
                ..DetectorParams::default()
            },
            anomaly_levels: AnomalyLevels::default(),
            signal: "latency".to_owned(),
            thresholds: Thresholds { critical: Some(100.0), ..Thresholds::default() },
            alarm_gate: AlarmGate::ANY,
        };
        let points: Vec<(i64, f64)> =
            (0..400).map(|i| (i * 15_000, if i == 350 { 150.0 } else { 10.0 + (i as f64 / 9.0).sin() })).collect();
        let rows = pipeline.replay("svc", &[], &points);
        let key = SeriesKey { service: "svc".to_owned(), signal: "latency".to_owned() };
        let mut detector = SeriesDetector::new(&pipeline.detector, key.seed());
        for (row, &(t, v)) in rows.iter().zip(&points) {
            let direct = detector.observe(&pipeline.detector, AlarmGate::ANY, t, v).and_then(|o| o.anomaly_score);
            assert_eq!(row.anomaly_score, direct);
        }
        assert_eq!(rows[0].anomaly_score, None, "warming up");
        // The spike crosses the critical threshold and is anomalous.
        assert_eq!(rows[350].severity, Severity::Critical);
        assert!(rows[350].anomaly_score.unwrap() > 1.0);
    }
}
