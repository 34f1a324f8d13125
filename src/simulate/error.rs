//! Why the simulated fleet could not do what was asked.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the simulated fleet: bad options, refused fault requests, and I/O failures.
///
/// [`SimulateError::is_usage_error`] tells the CLI which ones are the caller's mistake (exit 2)
/// and which ones are runtime failures (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A fleet option is out of range.
    #[error("simulate: {option}: {reason}")]
    InvalidOption {
        /// The flag, as typed on the command line.
        option: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A fault request names a service the fleet does not run.
    #[error("unknown service {name:?}: the fleet runs {known}")]
    UnknownService {
        /// The requested name.
        name: String,
        /// The names the fleet runs, comma-separated.
        known: String,
    },
    /// A fault request is malformed or out of range.
    #[error("invalid fault request: {0}")]
    InvalidFault(String),
    /// No active fault has this id (it never existed, ended, or was stopped).
    #[error("no active fault with id {0}")]
    UnknownFault(u64),
    /// A listening socket could not be opened.
    #[error(
        "cannot listen on {address}: {reason}; is another process using it? pick another port with \
         --base-port or --listen-address, or 0 for an ephemeral one"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's reason. Not a `source`: the message already says it, and the
        /// CLI prints the whole chain.
        reason: std::io::Error,
    },
    /// A log file or its directory could not be created or written.
    #[error("{path}: cannot write the service log: {reason}")]
    LogFile {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason. Not a `source`: the message already says it, and the
        /// CLI prints the whole chain.
        reason: std::io::Error,
    },
    /// The async runtime or the signal handlers could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl SimulateError {
    /// True when the error is a mistake in the caller's input (the CLI exits with 2), false for
    /// failures of the machine (ports, files; the CLI exits with 1).
    pub fn is_usage_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidOption { .. } | Self::UnknownService { .. } | Self::InvalidFault(_) | Self::UnknownFault(_)
        )
    }
}
