//! The `anomaly-exporter` binary: parses the command line and hands off to a command.

use std::process::ExitCode;

use anomaly_exporter::cli::{Cli, Command};
use anomaly_exporter::commands;
use anomaly_exporter::simulate;
use clap::Parser;

/// Exit code for a mistake in the input or the arguments (as clap uses for bad flags).
const USAGE_ERROR: u8 = 2;
/// Exit code for a failure while running (a port taken, a file not writable).
const RUNTIME_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome: Result<(), (u8, anyhow::Error)> = match &cli.command {
        Command::Score(args) => commands::score::run(args).map_err(|e| (USAGE_ERROR, e.into())),
        Command::Simulate(options) => simulate::run(options.clone())
            .map_err(|e| (if e.is_usage_error() { USAGE_ERROR } else { RUNTIME_FAILURE }, e.into())),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, error)) => {
            eprintln!("anomaly-exporter: error: {error:#}");
            ExitCode::from(code)
        }
    }
}
