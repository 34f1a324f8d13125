//! The command line: one subcommand per job the binary does.

use clap::{Parser, Subcommand};

use crate::commands::score::ScoreArgs;
use crate::simulate::FleetOptions;

/// Anomaly detection companion for Prometheus.
#[derive(Debug, Parser)]
#[command(name = "anomaly-exporter", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit an isolation forest on a CSV or Parquet table and write each row's anomaly score.
    Score(ScoreArgs),
    /// Run a simulated fleet of Spring Boot services for demos and tests.
    Simulate(FleetOptions),
}
