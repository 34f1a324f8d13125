//! `anomaly-exporter train`: fits models from the datasets, once, and prints a summary.
//!
//! Trains every series with a history dataset (or those `--service`/`--signal` select) over
//! `datasets.training_window`, with the config's detector parameters, and writes the models
//! where the daemon loads them. A progress bar on a terminal, one log line per model otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::store::{Datasets, StoreError};
use crate::train::{TrainError, now_ms, select_series, train_series};

/// Flags of `train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The YAML configuration file (its `datasets:` and `detector:` sections are used).
    #[arg(long = "config.file", default_value = "anomaly-exporter.yml")]
    pub config_file: PathBuf,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this signal.
    #[arg(long)]
    pub signal: Option<String>,
}

/// Why `train` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainCommandError {
    /// The configuration was refused (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `datasets.path` does not exist or cannot be read (exit 2).
    #[error("datasets.path: {0}")]
    Datasets(StoreError),
    /// A daemon holds the datasets (exit 2): both would number their models alike.
    #[error(
        "datasets.path: {path} is in use by a running anomaly-exporter ({holder}): retrain through it \
         (POST /retrain) or stop it first"
    )]
    InUse {
        /// The datasets root.
        path: PathBuf,
        /// The lock's holder, `pid N`.
        holder: String,
    },
    /// Nothing matches the flags (exit 2).
    #[error("no series with a dataset under {path} matches{flags}")]
    NoSeries {
        /// The datasets root.
        path: PathBuf,
        /// The flags given, ` --service X --signal Y`.
        flags: String,
    },
    /// Some models could not be trained (exit 1).
    #[error("{failed} of {total} models failed to train")]
    Failed {
        /// Models that failed.
        failed: usize,
        /// Models attempted.
        total: usize,
    },
}

impl TrainCommandError {
    /// 2 for configuration and flag mistakes, 1 when training itself failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            TrainCommandError::Failed { .. } => 1,
            _ => 2,
        }
    }
}

/// Runs `train`.
pub fn run(args: &TrainArgs) -> Result<(), TrainCommandError> {
    let config = Config::load(&args.config_file)?;
    let root = &config.datasets.path;
    if !root.is_dir() {
        return Err(TrainCommandError::Datasets(StoreError::Io {
            path: root.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no datasets directory (has the daemon run?)"),
        }));
    }
    // Held until the models are written.
    let _lock = crate::store::lock_directory(root).map_err(|error| match error {
        StoreError::Locked { path, holder } => TrainCommandError::InUse { path, holder },
        other => TrainCommandError::Datasets(other),
    })?;
    let datasets = Datasets::new(root);
    let keys = select_series(&datasets, args.service.as_deref(), args.signal.as_deref())
        .map_err(TrainCommandError::Datasets)?;
    if keys.is_empty() {
        let mut flags = String::new();
        if let Some(service) = &args.service {
            flags.push_str(&format!(" --service {service:?}"));
        }
        if let Some(signal) = &args.signal {
            flags.push_str(&format!(" --signal {signal:?}"));
        }
        return Err(TrainCommandError::NoSeries { path: root.clone(), flags });
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(keys.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg} (eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let now = now_ms();
    let mut lines: Vec<[String; 6]> = Vec::with_capacity(keys.len());
    let mut failed = 0;
    for key in &keys {
        let started = Instant::now();
        let outcome = train_series(&datasets, key, &config.detector, config.datasets.training_window, now);
        let seconds = format!("{:.2}", started.elapsed().as_secs_f64());
        let line = match &outcome {
            Ok(model) => {
                info!(service = %key.service, signal = %key.signal, rows = model.rows, model = model.number, "trained");
                [
                    key.service.clone(),
                    key.signal.clone(),
                    model.rows.to_string(),
                    model.number.to_string(),
                    seconds,
                    "ok".to_owned(),
                ]
            }
            Err(error) => {
                failed += 1;
                warn!(service = %key.service, signal = %key.signal, %error, "training failed");
                let reason = match error {
                    TrainError::NotEnoughRows { rows, .. } => rows.to_string(),
                    TrainError::Store(_) => "-".to_owned(),
                };
                [key.service.clone(), key.signal.clone(), reason, "-".into(), seconds, error.to_string()]
            }
        };
        lines.push(line);
        if let Some(bar) = &bar {
            bar.set_message(format!("{}/{}", key.service, key.signal));
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_summary(&lines);
    if failed > 0 {
        return Err(TrainCommandError::Failed { failed, total: keys.len() });
    }
    Ok(())
}

fn print_summary(lines: &[[String; 6]]) {
    let header = ["SERVICE", "SIGNAL", "ROWS", "MODEL", "SECONDS", "RESULT"];
    let mut widths = header.map(str::len);
    for line in lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |cells: &[&str]| {
        let row: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", row.join("  ").trim_end());
    };
    print(&header);
    for line in lines {
        print(&line.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
