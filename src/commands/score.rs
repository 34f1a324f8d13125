//! `anomaly-exporter score`: fit a forest on a table and score every row of it.
//!
//! This is the protocol of the isolation forest paper (fit and score on all rows) and the contract
//! `../shared/bench/compare_forest.py` relies on: one score per input row, in order, in a CSV
//! column `score`, and with `--report json` one JSON line of timings measured inside the process.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::evaluate::roc_auc;
use crate::forest::{Contamination, Forest, ForestError, ForestParams, available_threads, start_workers};
use crate::table::{TableError, TableSpec, read_table};

/// Arguments of `score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// CSV (with a header) or Parquet file; every numeric column but the label is a feature.
    #[arg(long)]
    pub input: PathBuf,
    /// CSV file to write: one row per input row, columns `score` and `anomaly`.
    #[arg(long)]
    pub output: PathBuf,
    /// Number of trees.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Rows drawn for each tree (default: min(256, rows)).
    #[arg(long)]
    pub sample_size: Option<usize>,
    /// Seed of the random streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decision threshold: `auto` (score > 0.5) or the expected share of anomalies, in (0, 0.5].
    #[arg(long, default_value = "auto", value_parser = parse_contamination)]
    pub contamination: Contamination,
    /// The column holding labels (1 = anomaly, 0 = normal); it is not a feature. Named explicitly,
    /// it must exist.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Threads for fitting and scoring (default: every core). 1 keeps all the work on one thread;
    /// above 1, up to that many helper threads share it with the calling one.
    #[arg(long)]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Print a one-line report on stdout.
    #[arg(long, value_enum)]
    pub report: Option<ReportFormat>,
}

/// Formats of the `--report` line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    /// One JSON object: rows, features, fit_seconds, score_seconds, and auc when labelled.
    Json,
}

fn parse_contamination(text: &str) -> Result<Contamination, String> {
    if text == "auto" {
        return Ok(Contamination::Auto);
    }
    match text.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 0.5 => Ok(Contamination::Fraction(f)),
        _ => Err(format!("{text:?}: expected 'auto' or a fraction in (0, 0.5]")),
    }
}

/// Why `score` failed. Every variant is a problem with the input or the arguments (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The input table could not be read.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The forest refused a parameter or the data.
    #[error("{0}")]
    Forest(#[from] ForestError),
    /// The output is the input file: writing the scores would replace the data.
    #[error("--output {path}: is the input file; the scores would overwrite it: choose another path")]
    OutputIsInput {
        /// The output as given.
        path: PathBuf,
    },
    /// The output is named as another format than the CSV written.
    #[error("--output {path}: scores are written as CSV; name the file .csv")]
    OutputNotCsv {
        /// The output as given.
        path: PathBuf,
    },
    /// The output could not be written.
    #[error("{path}: cannot write scores: {source}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The `--report json` line.
#[derive(Debug, Serialize)]
struct Report {
    rows: usize,
    features: usize,
    fit_seconds: f64,
    score_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auc: Option<f64>,
    trees: usize,
    sample_size: usize,
    model_bytes: usize,
    threshold: f64,
    anomalies: usize,
}

/// Runs `score`.
pub fn run(args: &ScoreArgs) -> Result<(), ScoreError> {
    let params = ForestParams {
        trees: args.trees,
        sample_size: args.sample_size,
        seed: args.seed,
        contamination: args.contamination,
    };
    // Refuse bad parameters before spending time on the file.
    params.validate()?;
    if super::is_same_file(&args.input, &args.output) {
        return Err(ScoreError::OutputIsInput { path: args.output.clone() });
    }
    if args.output.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("parquet")) {
        return Err(ScoreError::OutputNotCsv { path: args.output.clone() });
    }
    // The helper threads start while the table is read, so they are parked and ready to share the
    // fit and the scoring; a thread started at the fit would arrive after most of it (see
    // `forest::workers`).
    if args.threads.is_none_or(|threads| threads.get() > 1) {
        start_workers();
    }
    let spec = match &args.label_column {
        Some(name) => TableSpec { label_column: name.clone(), label_required: true },
        None => TableSpec::default(),
    };
    let table = read_table(&args.input, &spec)?;

    let fit_started = Instant::now();
    let threads = args.threads.unwrap_or_else(available_threads);
    let forest = Forest::fit_with_threads(&table.features, &params, threads)?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    let score_started = Instant::now();
    let scores = forest.score_batch_with_threads(&table.features, threads)?;
    let score_seconds = score_started.elapsed().as_secs_f64();

    let anomalies = write_scores(&args.output, &scores, &forest)?;
    if let Some(ReportFormat::Json) = args.report {
        let report = Report {
            rows: table.features.rows(),
            features: table.features.columns(),
            fit_seconds,
            score_seconds,
            auc: table.labels.as_deref().and_then(|labels| roc_auc(&scores, labels)),
            trees: forest.trees(),
            sample_size: forest.sample_size(),
            model_bytes: forest.memory_bytes(),
            threshold: forest.threshold(),
            anomalies,
        };
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    Ok(())
}

/// Writes `score,anomaly` rows; returns how many rows were anomalous.
fn write_scores(path: &Path, scores: &[f64], forest: &Forest) -> Result<usize, ScoreError> {
    let io = |source| ScoreError::Output { path: path.to_owned(), source };
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    out.write_all(b"score,anomaly\n").map_err(io)?;
    let mut anomalies = 0;
    for &score in scores {
        let anomalous = forest.is_anomalous(score);
        anomalies += usize::from(anomalous);
        writeln!(out, "{score},{}", u8::from(anomalous)).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(anomalies)
}
