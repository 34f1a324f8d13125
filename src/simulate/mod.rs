//! The simulated fleet: fake Spring Boot services on loopback, for the demo and the tests.
//!
//! `anomaly-exporter simulate --services N` starts N services. Each one serves a Micrometer-style
//! `/actuator/prometheus` (CPU, heap, the `http_server_requests_seconds` histogram, all with the
//! `application` label) and writes structured JSON logs (logstash shape, or ECS) to
//! `<log-dir>/<service>/app.log`. Traffic has noise and a daily rhythm, every service has its own
//! base levels, and all randomness is seeded, so the forest has something honest to learn and
//! tests replay exactly. Faults (CPU spike, memory leak, latency, error burst) are injected over
//! the control API, on a schedule (`--fault-every`), or in-process through [`FleetHandle`]; each
//! shows in the metrics and writes its own characteristic log lines.
//!
//! This module is a test double, not a load generator or a JVM emulator: requests are simulated
//! inside the process, and only the shape of the output follows Spring Boot.
//!
//! ```no_run
//! # async fn demo() -> Result<(), anomaly_exporter::simulate::SimulateError> {
//! use anomaly_exporter::simulate::{FaultKind, FaultRequest, FleetOptions, start};
//! let fleet = start(FleetOptions::ephemeral(3, "/tmp/fleet-logs")).await?;
//! let service = fleet.services()[0].name.clone();
//! fleet.inject_fault(FaultRequest { service, kind: FaultKind::Latency, duration_seconds: 60.0, magnitude: None })?;
//! fleet.shutdown().await
//! # }
//! ```

mod control;
mod error;
mod exposition;
mod fault;
mod fleet;
mod logs;
mod model;
mod options;

pub use error::SimulateError;
pub use fault::{Fault, FaultKind, FaultRequest};
pub use fleet::{FleetHandle, ServiceEndpoint, start};
pub use options::{FleetOptions, LogFormat};

/// Runs the fleet until Ctrl-C or SIGTERM: the `simulate` command.
///
/// Prints where every service listens and logs, and the control URL, on standard output.
pub fn run(options: FleetOptions) -> Result<(), SimulateError> {
    init_tracing();
    options.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(SimulateError::Runtime)?;
    runtime.block_on(async {
        let fleet = start(options).await?;
        print_fleet(&fleet);
        wait_for_termination().await?;
        tracing::info!("stopping the fleet");
        fleet.shutdown().await
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only when a subscriber is already installed, which is then the one to keep.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn print_fleet(fleet: &FleetHandle) {
    let width = fleet.services().iter().map(|service| service.name.len()).max().unwrap_or(0);
    for service in fleet.services() {
        println!("{:width$}  {}  logs: {}", service.name, service.metrics_url, service.log_file.display());
    }
    let control = fleet.control_url();
    println!("control: {control}/faults  (POST {{\"service\", \"kind\", \"duration_seconds\"}})");
    println!("targets: {control}/targets  (Prometheus http_sd_configs)");
}

async fn wait_for_termination() -> Result<(), SimulateError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(SimulateError::Runtime)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(SimulateError::Runtime),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(SimulateError::Runtime)
    }
}

#[cfg(test)]
mod tests;
