//! The `anomaly-exporter` binary: parses the command line and hands off to a command.
//! This is the one place where `anyhow` is used: every module below has its own error type.

use std::process::ExitCode;

use anomaly_exporter::cli::{Cli, Command, LogArgs, LogFormat, LogLevel};
use anomaly_exporter::commands;
use anomaly_exporter::simulate;
use clap::Parser;

/// Exit code for a mistake in the input, the configuration or the arguments (as clap uses).
const USAGE_ERROR: u8 = 2;
/// Exit code for a failure while running (a port taken, a file not writable).
const RUNTIME_FAILURE: u8 = 1;

fn init_logging(log: &LogArgs) {
    let level = match log.level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Logfmt => builder.with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let outcome: Result<(), (u8, anyhow::Error)> = match cli.command {
        Some(Command::Backtest(args)) => commands::backtest::run(&args).map_err(|e| (e.exit_code(), e.into())),
        Some(Command::Score(args)) => commands::score::run(&args).map_err(|e| (USAGE_ERROR, e.into())),
        Some(Command::CheckConfig(args)) => commands::run::check_config(&args)
            .map(|(config, web)| {
                let web = if web.is_some() { ", web config valid" } else { "" };
                println!("{}: valid, {} signals{web}", args.config_file.display(), config.signals.len());
            })
            .map_err(|e| (e.exit_code(), e.into())),
        Some(Command::Train(args)) => commands::train::run(&args).map_err(|e| (e.exit_code(), e.into())),
        Some(Command::Run(args)) => run_daemon(args),
        None => run_daemon(cli.run),
        Some(Command::Simulate(options)) => simulate::run(options)
            .map_err(|e| (if e.is_usage_error() { USAGE_ERROR } else { RUNTIME_FAILURE }, e.into())),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, error)) => {
            // Our error messages already carry their causes; printing the chain would repeat them.
            eprintln!("anomaly-exporter: error: {error}");
            ExitCode::from(code)
        }
    }
}

fn run_daemon(args: commands::run::RunArgs) -> Result<(), (u8, anyhow::Error)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(commands::run::run(args));
    // A blocking task still running (a bcrypt check for a request the shutdown gave up on) is
    // not waited for: everything worth keeping was flushed before `run` returned.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome.map_err(|e| (e.exit_code(), e.into()))
}
