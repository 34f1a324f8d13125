//! The fleet's options: one struct that is both the `simulate` command's flags and the argument of
//! [`start`](super::start) in tests and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::SimulateError;
// One duration syntax across the product: flags read like the config file's durations.
use crate::source::parse_duration;

/// Largest fleet: beyond this the fleet is a load generator, which is not its job.
const MAX_SERVICES: usize = 1000;

/// How to run the simulated fleet.
#[derive(Debug, Clone, Args)]
pub struct FleetOptions {
    /// Number of services to run.
    #[arg(long, default_value_t = 3)]
    pub services: usize,
    /// Address of the control API (faults, targets). Outside the Prometheus exporter port range.
    #[arg(long, default_value = "127.0.0.1:10111")]
    pub listen_address: SocketAddr,
    /// First service port; service i listens on base-port + i. 0 gives every service an ephemeral
    /// port (discover them with GET /targets).
    #[arg(long, default_value_t = 18080)]
    pub base_port: u16,
    /// Directory of the service logs, one `<service>/app.log` each.
    #[arg(long, default_value = "simulate-logs")]
    pub log_dir: PathBuf,
    /// Structured log format of the service logs.
    #[arg(long, value_enum, default_value_t = LogFormat::Logstash)]
    pub log_format: LogFormat,
    /// Rotate a log file once it exceeds this many bytes (to app.log.1, app.log.2, ...); 0 never.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub log_max_file_bytes: u64,
    /// Number of rotated files kept beside app.log.
    #[arg(long, default_value_t = 3)]
    pub log_max_files: u32,
    /// Seed of every random stream, so a run can be replayed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Period of the daily traffic rhythm; compress it (e.g. 10m) to show a whole day in a demo.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub day_length: Duration,
    /// How often the services advance their state (traffic, memory, logs).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub tick: Duration,
    /// Inject a fault of a random kind into a random service this often (e.g. 10m).
    #[arg(long, value_parser = parse_duration)]
    pub fault_every: Option<Duration>,
    /// How long each scheduled fault lasts.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub fault_duration: Duration,
}

impl Default for FleetOptions {
    /// The command line's defaults.
    fn default() -> Self {
        Self {
            services: 3,
            listen_address: SocketAddr::from(([127, 0, 0, 1], 10111)),
            base_port: 18080,
            log_dir: PathBuf::from("simulate-logs"),
            log_format: LogFormat::Logstash,
            log_max_file_bytes: 50 * 1024 * 1024,
            log_max_files: 3,
            seed: 0,
            day_length: Duration::from_secs(24 * 3600),
            tick: Duration::from_secs(1),
            fault_every: None,
            fault_duration: Duration::from_secs(120),
        }
    }
}

impl FleetOptions {
    /// Options for tests: `services` services and the control API on ephemeral loopback ports,
    /// logs under `log_dir`, a fast tick, and no scheduled faults.
    pub fn ephemeral(services: usize, log_dir: impl Into<PathBuf>) -> Self {
        Self {
            services,
            listen_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_port: 0,
            log_dir: log_dir.into(),
            tick: Duration::from_millis(100),
            ..Self::default()
        }
    }

    /// Checks the ranges clap cannot express.
    pub(crate) fn validate(&self) -> Result<(), SimulateError> {
        let invalid = |option, reason: String| Err(SimulateError::InvalidOption { option, reason });
        if self.services == 0 || self.services > MAX_SERVICES {
            return invalid("--services", format!("{} is out of range: expected 1 to {MAX_SERVICES}", self.services));
        }
        if self.base_port != 0 && usize::from(self.base_port) + self.services - 1 > usize::from(u16::MAX) {
            return invalid(
                "--base-port",
                format!("{} + {} services goes past port 65535", self.base_port, self.services),
            );
        }
        if self.tick.is_zero() {
            return invalid("--tick", "must be longer than zero".into());
        }
        if self.day_length < self.tick * 10 {
            return invalid("--day-length", "must be at least ten ticks, or the rhythm is only noise".into());
        }
        if self.fault_every.is_some_and(|every| every.is_zero()) {
            return invalid("--fault-every", "must be longer than zero".into());
        }
        if self.fault_duration.is_zero() {
            return invalid("--fault-duration", "must be longer than zero".into());
        }
        // Each scheduled fault is injected as the control API's are, which refuses longer ones.
        if self.fault_duration.as_secs_f64() > super::fault::MAX_FAULT_SECONDS {
            return invalid("--fault-duration", "must be at most 7d, the longest fault the fleet takes".into());
        }
        Ok(())
    }
}

/// Structured log formats a Spring Boot service can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// logstash-logback-encoder: `@timestamp`, `@version`, `message`, `logger_name`, `level`, ...
    Logstash,
    /// Elastic Common Schema with flat dotted keys (`log.level`), as Spring Boot 3.4 writes it.
    Ecs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_services_is_not() {
        assert!(FleetOptions::default().validate().is_ok());
        let error = FleetOptions { services: 0, ..FleetOptions::default() }.validate().unwrap_err();
        assert!(error.is_usage_error());
        assert!(error.to_string().contains("--services"), "{error}");
    }

    #[test]
    fn base_port_range_must_fit() {
        let options = FleetOptions { services: 10, base_port: 65530, ..FleetOptions::default() };
        assert!(options.validate().is_err());
    }

    #[test]
    fn a_fault_duration_the_fleet_would_refuse_is_refused_at_start() {
        let week = Duration::from_secs(7 * 86_400);
        let options = FleetOptions { fault_duration: week, ..FleetOptions::default() };
        assert!(options.validate().is_ok());
        let options = FleetOptions { fault_duration: week + Duration::from_secs(1), ..FleetOptions::default() };
        let error = options.validate().unwrap_err();
        assert!(error.is_usage_error());
        assert!(error.to_string().contains("--fault-duration") && error.to_string().contains("7d"), "{error}");
    }
}
