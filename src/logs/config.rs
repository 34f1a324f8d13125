//! `logs:` in the configuration file: which files belong to which service, and the query limits.
//!
//! ```yaml
//! logs:
//!   services:                       # explicit: a service and the globs of its files
//!     checkout: ["/var/log/checkout/app.log*", "/var/log/checkout/app.*.log.gz"]
//!   service_files: "/var/log/apps/{service}/app.log*"   # or: one directory per service
//!   max_window: 24h
//!   default_before: 5m
//!   default_after: 1m
//!   baseline_factor: 4
//!   max_lines_held: 100000
//!   max_bytes_held: 67108864        # 64 MiB of held line text per query
//!   max_concurrent_queries: 4
//!   grafana_url: http://grafana:3000/d/anomalies
//! ```
//!
//! Globs take `*` and `?` in the file name only; directories are literal. A relative glob is
//! relative to the config file's directory ([`Config::load`](crate::config::Config::load) joins
//! it on). In `service_files`,
//! `{service}` stands for one whole directory name: every directory there is a service, named
//! after it. A request's service is looked up among the configured or listed names, so request
//! values never become part of a path.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::source::parse_duration;

/// The `{service}` placeholder of `service_files`.
pub const SERVICE_PLACEHOLDER: &str = "{service}";

/// `logs:` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Service name → globs of its log files (the live file and the rotated ones).
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize")]
    pub services: BTreeMap<String, Vec<String>>,
    /// One glob for every service, with `{service}` as a directory name; explicit `services`
    /// entries win over it.
    #[serde(default)]
    pub service_files: Option<String>,
    /// The widest window a query may ask for.
    #[serde(default = "default_max_window")]
    pub max_window: String,
    /// Window start before `time` when the query gives none.
    #[serde(default = "default_before")]
    pub default_before: String,
    /// Window end after `time` when the query gives none.
    #[serde(default = "default_after")]
    pub default_after: String,
    /// The baseline is this many window lengths just before the window.
    #[serde(default = "default_baseline_factor")]
    pub baseline_factor: u32,
    /// Most lines held for one answer; a window with more lines is still counted in full, and the
    /// answer says it was truncated.
    #[serde(default = "default_max_lines_held")]
    pub max_lines_held: usize,
    /// Most bytes of line text held for one answer. A line is at most 1 MiB
    /// ([`super::search::MAX_LINE_BYTES`]), so `max_lines_held` alone would let one query over a
    /// window of long lines (stack traces) hold gigabytes; past this budget the answer is
    /// truncated as it is past `max_lines_held`.
    #[serde(default = "default_max_bytes_held")]
    pub max_bytes_held: usize,
    /// Most `/logs` queries reading files at once; one more is refused with 429 and
    /// `Retry-After` rather than queued, so a burst of requests can neither pile up blocking
    /// threads nor hold more than this many times `max_bytes_held`.
    #[serde(default = "default_max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// The Grafana dashboard the HTML page links back to.
    #[serde(default)]
    pub grafana_url: Option<String>,
}

fn default_max_window() -> String {
    "24h".into()
}
fn default_before() -> String {
    "5m".into()
}
fn default_after() -> String {
    "1m".into()
}
fn default_baseline_factor() -> u32 {
    4
}
fn default_max_lines_held() -> usize {
    100_000
}
/// 64 MiB: room for the 100 000 lines of `max_lines_held` at 670 bytes each (a logstash line with
/// trace ids is 300 to 500), or for 64 lines of the longest kind.
fn default_max_bytes_held() -> usize {
    64 << 20
}
/// Four: a dashboard's log links are opened a few at a time; four queries of up to two threads
/// each already outnumber a small host's cores, and hold at most 4 × `max_bytes_held` (256 MiB).
fn default_max_concurrent_queries() -> usize {
    4
}

/// `logs:` validated: durations parsed, globs checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsSettings {
    /// Service → globs.
    pub services: BTreeMap<String, Vec<String>>,
    /// The per-service glob with `{service}`.
    pub service_files: Option<String>,
    /// The widest window.
    pub max_window: Duration,
    /// Default window start before `time`.
    pub default_before: Duration,
    /// Default window end after `time`.
    pub default_after: Duration,
    /// Baseline length in windows.
    pub baseline_factor: u32,
    /// Most lines held for one answer.
    pub max_lines_held: usize,
    /// Most bytes of line text held for one answer.
    pub max_bytes_held: usize,
    /// Most `/logs` queries reading at once.
    pub max_concurrent_queries: usize,
    /// The dashboard to link back to.
    pub grafana_url: Option<String>,
}

impl Default for LogsConfig {
    /// No services, and the documented defaults.
    fn default() -> Self {
        LogsConfig {
            services: BTreeMap::new(),
            service_files: None,
            max_window: default_max_window(),
            default_before: default_before(),
            default_after: default_after(),
            baseline_factor: default_baseline_factor(),
            max_lines_held: default_max_lines_held(),
            max_bytes_held: default_max_bytes_held(),
            max_concurrent_queries: default_max_concurrent_queries(),
            grafana_url: None,
        }
    }
}

impl Default for LogsSettings {
    fn default() -> Self {
        LogsSettings {
            services: BTreeMap::new(),
            service_files: None,
            max_window: Duration::from_secs(24 * 3600),
            default_before: Duration::from_secs(300),
            default_after: Duration::from_secs(60),
            baseline_factor: default_baseline_factor(),
            max_lines_held: default_max_lines_held(),
            max_bytes_held: default_max_bytes_held(),
            max_concurrent_queries: default_max_concurrent_queries(),
            grafana_url: None,
        }
    }
}

/// Why `logs:` was refused: the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("logs.{key}: {problem}")]
pub struct LogsConfigError {
    /// The key under `logs.`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> LogsConfigError {
    LogsConfigError { key: key.into(), problem: problem.into() }
}

fn check_glob(key: &str, glob: &str, allow_placeholder: bool) -> Result<(), LogsConfigError> {
    if glob.trim().is_empty() {
        return Err(invalid(key, "empty glob"));
    }
    let path = std::path::Path::new(glob);
    let directory = path.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    if directory.contains(['*', '?', '[']) {
        return Err(invalid(key, format!("{glob:?}: wildcards are allowed in the file name only")));
    }
    if allow_placeholder {
        let components: Vec<_> = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let whole = components.iter().filter(|c| *c == SERVICE_PLACEHOLDER).count();
        if whole != 1 || glob.matches(SERVICE_PLACEHOLDER).count() != 1 {
            return Err(invalid(key, format!("{glob:?}: needs {SERVICE_PLACEHOLDER} once, as a whole directory name")));
        }
        if components.last().is_some_and(|c| c == SERVICE_PLACEHOLDER) {
            return Err(invalid(
                key,
                format!("{glob:?}: {SERVICE_PLACEHOLDER} must be a directory, not the file name"),
            ));
        }
    } else if glob.contains(SERVICE_PLACEHOLDER) {
        return Err(invalid(key, format!("{glob:?}: {SERVICE_PLACEHOLDER} belongs in logs.service_files")));
    }
    Ok(())
}

impl LogsConfig {
    /// Checks every value and parses the durations; errors name the key.
    pub fn validate(&self) -> Result<LogsSettings, LogsConfigError> {
        let duration = |key: &str, text: &str| parse_duration(text).map_err(|e| invalid(key, e.to_string()));
        let max_window = duration("max_window", &self.max_window)?;
        let default_before = duration("default_before", &self.default_before)?;
        let default_after = duration("default_after", &self.default_after)?;
        if max_window.is_zero() {
            return Err(invalid("max_window", "must be longer than zero"));
        }
        if default_before + default_after > max_window {
            return Err(invalid("default_before", "default_before + default_after is wider than max_window"));
        }
        if !(1..=100).contains(&self.baseline_factor) {
            return Err(invalid("baseline_factor", "must be 1 to 100 window lengths"));
        }
        if self.max_lines_held == 0 {
            return Err(invalid("max_lines_held", "must be at least 1"));
        }
        if self.max_bytes_held == 0 {
            return Err(invalid("max_bytes_held", "must be at least 1 byte"));
        }
        if self.max_concurrent_queries == 0 {
            return Err(invalid("max_concurrent_queries", "must be at least 1"));
        }
        for (service, globs) in &self.services {
            let key = format!("services.{service}");
            if service.is_empty() {
                return Err(invalid("services", "empty service name"));
            }
            if globs.is_empty() {
                return Err(invalid(key, "no globs: name at least one file"));
            }
            for glob in globs {
                check_glob(&key, glob, false)?;
            }
        }
        if let Some(glob) = &self.service_files {
            check_glob("service_files", glob, true)?;
        }
        if let Some(url) = &self.grafana_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("grafana_url", "must be an http:// or https:// URL"));
        }
        Ok(LogsSettings {
            services: self.services.clone(),
            service_files: self.service_files.clone(),
            max_window,
            default_before,
            default_after,
            baseline_factor: self.baseline_factor,
            max_lines_held: self.max_lines_held,
            max_bytes_held: self.max_bytes_held,
            max_concurrent_queries: self.max_concurrent_queries,
            grafana_url: self.grafana_url.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<LogsSettings, String> {
        let raw: LogsConfig = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_24h_5m_1m_and_four_windows() {
        let settings = parse("services: {a: [/tmp/a.log]}").unwrap();
        assert_eq!(settings.max_window, Duration::from_secs(86_400));
        assert_eq!(settings.default_before, Duration::from_secs(300));
        assert_eq!(settings.default_after, Duration::from_secs(60));
        assert_eq!(settings.baseline_factor, 4);
        assert_eq!(settings.max_bytes_held, 64 << 20);
        assert_eq!(settings.max_concurrent_queries, 4);
        assert_eq!(LogsConfig::default().validate().unwrap(), LogsSettings::default());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("servics: {}", "unknown field `servics`"),
            ("max_window: 1 day", "logs.max_window: invalid duration"),
            ("services: {a: []}", "logs.services.a: no globs"),
            (
                "services: {a: ['/var/*/app.log']}",
                "logs.services.a: \"/var/*/app.log\": wildcards are allowed in the file name only",
            ),
            ("service_files: /var/log/app.log", "logs.service_files: \"/var/log/app.log\": needs {service} once"),
            ("service_files: '/var/log/x{service}/app.log'", "logs.service_files"),
            ("service_files: '/var/log/{service}'", "must be a directory"),
            ("baseline_factor: 0", "logs.baseline_factor"),
            ("max_bytes_held: 0", "logs.max_bytes_held: must be at least 1 byte"),
            ("max_concurrent_queries: 0", "logs.max_concurrent_queries: must be at least 1"),
            ("grafana_url: grafana:3000", "logs.grafana_url"),
            ("max_window: 5m\ndefault_before: 5m", "logs.default_before"),
        ];
        for (yaml, expected) in cases {
            let message = parse(yaml).unwrap_err();
            assert!(message.contains(expected), "{yaml}: expected {expected:?} in {message:?}");
        }
        assert!(parse("service_files: '/var/log/{service}/app.log*'").is_ok());
    }

    #[test]
    fn a_service_named_twice_is_refused_not_merged() {
        let message = parse("services:\n  a: [/x]\n  a: [/y]\n").unwrap_err();
        assert!(message.starts_with("services: duplicate key \"a\""), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }
}
