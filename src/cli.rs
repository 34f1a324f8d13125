//! The command line: one subcommand per job the binary does; `run` is the default.

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::backtest::BacktestArgs;
use crate::commands::run::RunArgs;
use crate::commands::score::ScoreArgs;
use crate::commands::train::TrainArgs;
use crate::simulate::FleetOptions;

/// Anomaly detection companion for Prometheus.
#[derive(Debug, Parser)]
#[command(name = "anomaly-exporter", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The daemon's flags, when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: query Prometheus, score every series, serve /metrics (the default).
    Run(RunArgs),
    /// Check the configuration file and exit: 0 when valid, 2 with the key and problem when not.
    CheckConfig(RunArgs),
    /// Fit an isolation forest on a CSV or Parquet table and write each row's anomaly score.
    Score(ScoreArgs),
    /// Train models from the datasets (all series, or those --service/--signal select).
    Train(TrainArgs),
    /// Replay history (CSV files, or a signal in Prometheus) through the daemon's per-series
    /// detector and write each point's anomaly score and severity.
    Backtest(BacktestArgs),
    /// Run a simulated fleet of Spring Boot services for demos and tests.
    Simulate(FleetOptions),
}

/// Logging flags, shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Only log messages at or above this level.
    #[arg(long = "log.level", global = true, default_value = "info", value_enum)]
    pub level: LogLevel,
    /// Output format of log messages.
    #[arg(long = "log.format", global = true, default_value = "logfmt", value_enum)]
    pub format: LogFormat,
}

/// Log levels, as Prometheus's own flags name them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-cycle details.
    Debug,
    /// Start, stop, new and dropped series.
    Info,
    /// Failures that the daemon recovers from.
    Warn,
    /// Lost data or required operator action.
    Error,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// `key=value` text lines.
    Logfmt,
    /// One JSON object per line.
    Json,
}
