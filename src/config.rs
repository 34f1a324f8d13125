//! The YAML configuration file (`--config.file`): what to watch and how to judge it.
//!
//! The file describes the pipeline (source, signals, thresholds, detector); runtime knobs such
//! as the listen address are flags. Reading happens in two stages, as ripgrep does with its
//! arguments: [`RawConfig`] is what serde parses (unknown keys refused), and [`Config`] is the
//! validated result, every duration parsed and every threshold checked, with errors that name the
//! key: `config: signals.latency.query: empty PromQL expression`.
//!
//! A file with no `signals:` key watches the shipped Spring Boot / Micrometer defaults
//! ([`default_signals`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::classify::{AnomalyLevels, Direction, Thresholds};
use crate::detect::{AlarmGate, DetectionDirection, DetectorParams};
use crate::logs::config::SERVICE_PLACEHOLDER;
use crate::source::{MAX_RANGE_POINTS, SourceConfig, parse_duration};
use crate::store::{DatasetsConfig, RawDatasetsConfig};

/// Why a configuration was refused. The message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Not valid YAML, or a key of the wrong type or unknown.
    #[error("config: {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// Parsed, but a value is not acceptable.
    #[error("config: {key}: {problem}")]
    Invalid {
        /// The key, dotted (`signals.cpu.thresholds`).
        key: String,
        /// What is wrong and what would be right.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

/// A section's own error, whose message already names the key (`detector.trees: must be…`): that
/// key is the error's, so the message does not say the section twice.
fn invalid_in(section: &str, message: String) -> ConfigError {
    match message.split_once(": ") {
        Some((key, problem)) if key.starts_with(section) && !key.contains(' ') => invalid(key, problem),
        _ => invalid(section, message),
    }
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The Prometheus-compatible API to read.
    pub source: SourceConfig,
    /// How often every signal is queried and scored.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How long a service may be absent before its series are dropped.
    #[serde(default = "default_service_grace")]
    pub service_grace: String,
    /// How much history a new series is backfilled with, to fit its first model at once.
    #[serde(default = "default_backfill")]
    pub backfill: String,
    /// The per-series detector.
    #[serde(default)]
    pub detector: DetectorParams,
    /// Where the anomaly score turns into warning, high and critical.
    #[serde(default)]
    pub anomaly_levels: AnomalyLevels,
    /// The signals, by name. Absent: the Spring Boot defaults.
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize_optional")]
    pub signals: Option<BTreeMap<String, RawSignal>>,
    /// Parquet datasets and model training.
    #[serde(default)]
    pub datasets: RawDatasetsConfig,
    /// The alert webhook and incidents.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// Log files by service, for `/logs` and alert correlation. Absent: no log correlation.
    #[serde(default)]
    pub logs: Option<crate::logs::LogsConfig>,
}

fn default_interval() -> String {
    "15s".to_owned()
}
fn default_service_grace() -> String {
    "5m".to_owned()
}
fn default_backfill() -> String {
    "6h".to_owned()
}
fn default_service_label() -> String {
    "application".to_owned()
}

/// One signal as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignal {
    /// PromQL returning one series per service, labelled with `service_label`.
    pub query: String,
    /// The label whose value names the service (Micrometer's `application`, or `job`).
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// Static thresholds on the value.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Per-service thresholds replacing the signal's own.
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize")]
    pub overrides: BTreeMap<String, ThresholdsOverride>,
    /// A deviation from the recent mean smaller than this is never anomalous (in the signal's
    /// unit): the floor against low-volume noise.
    #[serde(default)]
    pub min_deviation: f64,
    /// Which way a point must depart from the recent mean to be anomalous: `both` (the
    /// default), `up` or `down`.
    #[serde(default)]
    pub detection_direction: DetectionDirection,
}

/// A service's thresholds in place of its signal's. Without a `direction` it keeps the signal's:
/// an override of a `down` signal that names only its levels is meant the same way, and read as
/// `up` (the default of a signal's own thresholds) it would put a healthy service at critical.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsOverride {
    /// Warning from here.
    #[serde(default)]
    pub warning: Option<f64>,
    /// High from here.
    #[serde(default)]
    pub high: Option<f64>,
    /// Critical from here.
    #[serde(default)]
    pub critical: Option<f64>,
    /// Which way is bad; the signal's direction when absent.
    #[serde(default)]
    pub direction: Option<Direction>,
}

impl ThresholdsOverride {
    /// The thresholds it stands for under a signal whose own thresholds are `signal`.
    pub fn under(&self, signal: &Thresholds) -> Thresholds {
        Thresholds {
            warning: self.warning,
            high: self.high,
            critical: self.critical,
            direction: self.direction.unwrap_or(signal.direction),
        }
    }
}

/// A validated signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Its name: the `signal` label of every exported series.
    pub name: String,
    /// PromQL returning one series per service.
    pub query: String,
    /// The label naming the service.
    pub service_label: String,
    /// Static thresholds on the value.
    pub thresholds: Thresholds,
    /// Per-service thresholds.
    pub overrides: BTreeMap<String, Thresholds>,
    /// Deviations below this are never anomalous.
    pub min_deviation: f64,
    /// Deviations the other way are never anomalous.
    pub detection_direction: DetectionDirection,
}

impl RawSignal {
    /// What may raise this signal's scores above 1 (for a built-in signal, which needs no
    /// validation).
    pub fn alarm_gate(&self) -> AlarmGate {
        AlarmGate { min_deviation: self.min_deviation, direction: self.detection_direction }
    }
}

impl Signal {
    /// What may raise this signal's scores above 1.
    pub fn alarm_gate(&self) -> AlarmGate {
        AlarmGate { min_deviation: self.min_deviation, direction: self.detection_direction }
    }

    /// The thresholds that apply to `service`.
    pub fn thresholds_for(&self, service: &str) -> &Thresholds {
        self.overrides.get(service).unwrap_or(&self.thresholds)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The source, as written (its client validates and opens it).
    pub source: SourceConfig,
    /// Query and scoring period.
    pub interval: Duration,
    /// Absence after which a service's series are dropped.
    pub service_grace: Duration,
    /// History fetched for a new series.
    pub backfill: Duration,
    /// The detector's parameters.
    pub detector: DetectorParams,
    /// Anomaly score levels.
    pub anomaly_levels: AnomalyLevels,
    /// The signals, sorted by name.
    pub signals: Vec<Signal>,
    /// Parquet datasets and model training (`path` resolved against the config file's directory).
    pub datasets: DatasetsConfig,
    /// The alert webhook and incidents.
    pub alerts: crate::alerts::AlertsConfig,
    /// Log correlation, when configured.
    pub logs: Option<crate::logs::LogsSettings>,
}

/// The Spring Boot / Micrometer signals watched when the file names none. Each returns one
/// series per `application`; `or` falls back where a form of the metric is not published.
pub fn default_signals() -> BTreeMap<String, RawSignal> {
    let signal = |query: &str, warning, high, critical, min_deviation| RawSignal {
        query: query.to_owned(),
        service_label: default_service_label(),
        thresholds: Thresholds {
            warning: Some(warning),
            high: Some(high),
            critical: Some(critical),
            direction: Direction::Up,
        },
        overrides: BTreeMap::new(),
        min_deviation,
        // Each is bad only when it rises: a heap falls at every collection, latency and errors
        // fall as a service recovers, CPU falls with traffic (a lost service is `up == 0`).
        detection_direction: DetectionDirection::Up,
    };
    BTreeMap::from([
        ("cpu".to_owned(), signal("max by (application) (process_cpu_usage)", 0.7, 0.85, 0.95, 0.05)),
        (
            "memory".to_owned(),
            // Pools without a limit report max = -1; only real limits count.
            signal(
                r#"sum by (application) (jvm_memory_used_bytes{area="heap"}) / sum by (application) (jvm_memory_max_bytes{area="heap"} > 0)"#,
                0.8,
                0.9,
                0.97,
                0.05,
            ),
        ),
        (
            "latency".to_owned(),
            // p95 from the histogram where Boot publishes buckets, else the mean from _sum/_count.
            signal(
                "histogram_quantile(0.95, sum by (application, le) (rate(http_server_requests_seconds_bucket[1m]))) \
                 or sum by (application) (rate(http_server_requests_seconds_sum[1m])) \
                 / sum by (application) (rate(http_server_requests_seconds_count[1m]))",
                0.5,
                1.0,
                2.0,
                0.05,
            ),
        ),
        (
            "error_ratio".to_owned(),
            // `status` exists in Boot 2 and 3 (`outcome` only from 2.2); a service without any
            // 5xx series gets 0 rather than no series at all.
            signal(
                r#"(sum by (application) (rate(http_server_requests_seconds_count{status=~"5.."}[1m])) or sum by (application) (rate(http_server_requests_seconds_count[1m])) * 0) / sum by (application) (rate(http_server_requests_seconds_count[1m]))"#,
                0.01,
                0.05,
                0.2,
                0.01,
            ),
        ),
    ])
}

fn is_label_value_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| invalid(key, e.to_string()))
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        raw.source.validate().map_err(|e| invalid_in("source", e.to_string()))?;
        let interval = duration("interval", &raw.interval)?;
        if interval < Duration::from_secs(1) {
            return Err(invalid("interval", "must be at least 1s"));
        }
        let service_grace = duration("service_grace", &raw.service_grace)?;
        if service_grace < interval {
            return Err(invalid("service_grace", "must be at least the interval"));
        }
        let backfill = duration("backfill", &raw.backfill)?;
        // `source.validate` above has checked its form.
        if let Some(text) = &raw.source.step
            && duration("source.step", text)? != interval
        {
            return Err(invalid(
                "source.step",
                format!(
                    "{text} differs from interval {}: backfilled history must be on the live points' grid; \
                     leave source.step out (range queries run at the interval)",
                    raw.interval
                ),
            ));
        }
        let backfill_points = backfill.as_millis() / interval.as_millis().max(1);
        if backfill_points > MAX_RANGE_POINTS as u128 {
            return Err(invalid(
                "backfill",
                format!(
                    "{} at interval {} is {backfill_points} points a series: at most {MAX_RANGE_POINTS}",
                    raw.backfill, raw.interval
                ),
            ));
        }
        raw.detector.validate().map_err(|message| invalid_in("detector", message))?;
        raw.anomaly_levels.validate().map_err(|problem| invalid("anomaly_levels", problem))?;
        raw.alerts.validate().map_err(|(key, problem)| invalid(key, problem))?;

        let raw_signals = raw.signals.unwrap_or_else(default_signals);
        if raw_signals.is_empty() {
            return Err(invalid(
                "signals",
                "no signals: name at least one, or remove the key for the Spring Boot defaults",
            ));
        }
        let mut signals = Vec::with_capacity(raw_signals.len());
        for (name, signal) in raw_signals {
            let key = format!("signals.{name}");
            if !is_label_value_name(&name) {
                return Err(invalid(
                    key,
                    "a signal name must be letters, digits and underscores, not starting with a digit",
                ));
            }
            if signal.query.trim().is_empty() {
                return Err(invalid(format!("{key}.query"), "empty PromQL expression"));
            }
            if signal.service_label.is_empty() || !is_label_value_name(&signal.service_label) {
                return Err(invalid(format!("{key}.service_label"), "must be a Prometheus label name"));
            }
            signal.thresholds.validate().map_err(|problem| invalid(format!("{key}.thresholds"), problem))?;
            if !(signal.min_deviation >= 0.0 && signal.min_deviation.is_finite()) {
                return Err(invalid(format!("{key}.min_deviation"), "must be a number at least 0"));
            }
            let mut overrides = BTreeMap::new();
            for (service, written) in signal.overrides {
                let thresholds = written.under(&signal.thresholds);
                thresholds.validate().map_err(|problem| invalid(format!("{key}.overrides.{service}"), problem))?;
                overrides.insert(service, thresholds);
            }
            signals.push(Signal {
                name,
                query: signal.query,
                service_label: signal.service_label,
                thresholds: signal.thresholds,
                overrides,
                min_deviation: signal.min_deviation,
                detection_direction: signal.detection_direction,
            });
        }
        // Relative to the working directory here; `Config::from_yaml` rebases it on the file's.
        let datasets = raw
            .datasets
            .validate(Path::new(""))
            .map_err(|(key, problem)| invalid(format!("datasets.{key}"), problem))?;
        let logs = raw
            .logs
            .map(|logs| logs.validate())
            .transpose()
            .map_err(|e| invalid(format!("logs.{}", e.key), e.problem))?;
        Ok(Config {
            datasets,
            logs,
            source: raw.source,
            interval,
            service_grace,
            backfill,
            detector: raw.detector,
            anomaly_levels: raw.anomaly_levels,
            signals,
            alerts: raw.alerts,
        })
    }
}

/// Joins a relative log glob onto `base`, the config file's directory. Globs are text (their file
/// name is a pattern, not a path), so the directory has to be text too; and a directory holding
/// `{service}` would read as a second placeholder. Both are refused rather than mangled.
fn rebase_glob(base: &Path, glob: &mut String, key: &str) -> Result<(), ConfigError> {
    if base.as_os_str().is_empty() || Path::new(glob.as_str()).is_absolute() {
        return Ok(());
    }
    let Some(directory) = base.to_str() else {
        let problem = format!(
            "{glob:?} is relative and the config file's directory {} is not UTF-8; give an absolute glob",
            base.display()
        );
        return Err(invalid(key, problem));
    };
    if directory.contains(SERVICE_PLACEHOLDER) {
        let problem = format!(
            "{glob:?} is relative and the config file's directory {directory} contains \
             {SERVICE_PLACEHOLDER}; give an absolute glob"
        );
        return Err(invalid(key, problem));
    }
    *glob = Path::new(directory).join(&*glob).display().to_string();
    Ok(())
}

impl Config {
    /// Parses and validates YAML text as if read from `path`: errors name it, and relative paths
    /// in the text resolve against its directory.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let mut config = Config::try_from(raw)?;
        if let Some(base) = path.parent() {
            config.rebase_paths(base)?;
            // Checked at load, not when the daemon first writes there: the incidents journal
            // lives under it even with `enabled: false`, and `check-config` should catch what
            // `run` would trip on.
            if config.datasets.path.exists() && !config.datasets.path.is_dir() {
                let problem = format!("{}: not a directory", config.datasets.path.display());
                return Err(invalid("datasets.path", problem));
            }
            if let Some(incidents) = &config.alerts.incidents_dir
                && incidents.exists()
                && !incidents.is_dir()
            {
                return Err(invalid("alerts.incidents_dir", format!("{}: not a directory", incidents.display())));
            }
        }
        Ok(config)
    }

    /// Joins every relative path the file names onto `base`, the file's directory, as Prometheus
    /// does: the file then means the same whichever directory the daemon starts in, and
    /// `check-config`, `run`, `train` and `backtest` all read the same files. Absolute paths are
    /// kept. Every path-valued key is listed here, so a new one is rebased by adding it.
    fn rebase_paths(&mut self, base: &Path) -> Result<(), ConfigError> {
        let source = &mut self.source;
        let paths = [
            Some(&mut self.datasets.path),
            self.alerts.incidents_dir.as_mut(),
            self.alerts.slack.as_mut().and_then(|slack| slack.url_file.as_mut()),
            source.bearer_token_file.as_mut(),
            source.basic_auth.as_mut().map(|auth| &mut auth.password_file),
            source.ca_file.as_mut(),
        ];
        for path in paths.into_iter().flatten() {
            // `join` keeps an absolute `path` as it is.
            *path = base.join(&*path);
        }
        if let Some(logs) = &mut self.logs {
            for (service, globs) in &mut logs.services {
                for glob in globs {
                    rebase_glob(base, glob, &format!("logs.services.{service}"))?;
                }
            }
            if let Some(glob) = &mut logs.service_files {
                rebase_glob(base, glob, "logs.service_files")?;
            }
        }
        Ok(())
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        // Editors on Windows save a byte-order mark, which the YAML parser reads as a second
        // document ("more than one document is not supported").
        Self::from_yaml(text.strip_prefix('\u{feff}').unwrap_or(&text), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Severity;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("test.yml"))
    }

    #[test]
    fn example_config_in_the_repository_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("anomaly-exporter.yml");
        let config = Config::load(&path).unwrap();
        assert!(config.signals.iter().any(|s| s.name == "latency"));
    }

    #[test]
    fn a_datasets_path_that_is_a_file_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let config_file = dir.path().join("ae.yml");
        std::fs::write(&config_file, "source: {url: \"http://127.0.0.1:9\"}\ndatasets: {path: store}\n").unwrap();
        // Absent, it is made later; a directory is fine.
        assert!(Config::load(&config_file).is_ok());
        std::fs::write(dir.path().join("store"), "not a directory").unwrap();
        let text = Config::load(&config_file).unwrap_err().to_string();
        assert!(text.starts_with("config: datasets.path: ") && text.ends_with("store: not a directory"), "{text}");
        std::fs::write(&config_file, "source: {url: \"http://127.0.0.1:9\"}\nalerts: {incidents_dir: store}\n")
            .unwrap();
        let text = Config::load(&config_file).unwrap_err().to_string();
        assert!(text.contains("alerts.incidents_dir: ") && text.ends_with("store: not a directory"), "{text}");
    }

    #[test]
    fn a_file_saved_with_a_byte_order_mark_loads() {
        let dir = tempfile::tempdir().unwrap();
        let config_file = dir.path().join("ae.yml");
        std::fs::write(&config_file, "\u{feff}source: {url: \"http://127.0.0.1:9\"}\ninterval: 15s\n").unwrap();
        assert_eq!(Config::load(&config_file).unwrap().interval, std::time::Duration::from_secs(15));
    }

    #[test]
    fn minimal_file_gets_defaults_and_spring_boot_signals() {
        let config = parse("source:\n  url: http://127.0.0.1:9090\n").unwrap();
        assert_eq!(config.interval, Duration::from_secs(15));
        let names: Vec<_> = config.signals.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cpu", "error_ratio", "latency", "memory"]);
        assert!(config.signals.iter().all(|s| s.service_label == "application"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("source:\n  url: http://x\nintervall: 5s\n", "unknown field `intervall`"),
            ("source:\n  url: http://x\ninterval: 5 seconds\n", "config: interval: invalid duration"),
            (
                "source:\n  url: http://x\nsignals:\n  cpu:\n    query: ' '\n",
                "config: signals.cpu.query: empty PromQL expression",
            ),
            ("source:\n  url: http://x\nsignals: {}\n", "config: signals: no signals"),
            (
                "source:\n  url: http://x\nsignals:\n  cpu:\n    query: up\n    thresholds: {warning: 2, high: 1}\n",
                "config: signals.cpu.thresholds: warning threshold 2 must be at most the high threshold 1",
            ),
            ("source:\n  url: http://x\nsignals:\n  9cpu:\n    query: up\n", "config: signals.9cpu: a signal name"),
            ("source:\n  url: http://x\ndetector:\n  trees: 0\n", "config: detector.trees: must be at least 1"),
            ("source:\n  url: ''\n", "config: source.url: must not be empty"),
            (
                "source:\n  url: http://x\nsignals:\n  rps:\n    query: up\n    detection_direction: above\n",
                "unknown variant `above`, expected one of `both`, `up`, `down`",
            ),
            // Durations past a century, and backfills of more points than a range is split for.
            ("source:\n  url: http://x\nbackfill: 5215w\n", "config: backfill: duration \"5215w\" is out of range"),
            (
                "source:\n  url: http://x\ninterval: 1s\nbackfill: 3000w\n",
                "config: backfill: 3000w at interval 1s is 1814400000 points a series: at most 10000000",
            ),
            (
                "source:\n  url: http://x\n  step: 15s\ninterval: 1m\n",
                "config: source.step: 15s differs from interval 1m: backfilled history must be on the live points' grid",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?}: expected {expected:?} in {message:?}");
        }
    }

    #[test]
    fn a_signal_or_override_named_twice_is_refused_naming_it() {
        let cases = [
            (
                "source:\n  url: http://x\nsignals:\n  cpu:\n    query: up\n  cpu:\n    query: up\n",
                "signals: duplicate key \"cpu\"",
            ),
            (
                "source:\n  url: http://x\nsignals:\n  cpu:\n    query: up\n    overrides: {a: {warning: 1}, a: {warning: 2}}\n",
                "signals.cpu.overrides: duplicate key \"a\"",
            ),
            (
                "source:\n  url: http://x\n  headers: {X-Scope-OrgID: a, X-Scope-OrgID: b}\n",
                "source.headers: duplicate key \"X-Scope-OrgID\"",
            ),
            ("source:\n  url: http://x\nlogs:\n  services: {a: [/x], a: [/y]}\n", "logs.services: duplicate key \"a\""),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(matches!(error, ConfigError::Parse { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(expected), "{text:?}: expected {expected:?} in {message:?}");
        }
    }

    /// Writes `yaml` as a config file in `dir` and loads it by its path, from the test's own
    /// working directory (the crate root, never `dir`): tests run in parallel, so none changes it.
    fn load_beside(dir: &Path, yaml: &str) -> Result<Config, ConfigError> {
        let file = dir.join("ae.yml");
        std::fs::write(&file, yaml).unwrap();
        assert_ne!(std::env::current_dir().unwrap(), dir);
        Config::load(&file)
    }

    #[test]
    fn source_secret_files_resolve_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let config =
            load_beside(dir.path(), "source:\n  url: http://127.0.0.1:9\n  bearer_token_file: token\n").unwrap();
        assert_eq!(config.source.bearer_token_file.as_deref(), Some(dir.path().join("token").as_path()));
        // The client reads it from there, as check-config and run do.
        crate::source::PrometheusClient::new(&config.source).unwrap();

        let yaml = "source:\n  url: https://127.0.0.1:9\n  ca_file: certs/ca.pem\n  \
                    basic_auth: {username: u, password_file: secrets/password}\n";
        let config = load_beside(dir.path(), yaml).unwrap();
        assert_eq!(config.source.ca_file, Some(dir.path().join("certs/ca.pem")));
        assert_eq!(config.source.basic_auth.unwrap().password_file, dir.path().join("secrets/password"));
    }

    #[test]
    fn slack_url_file_resolves_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("slack-url"), "https://hooks.slack.example/T0\n").unwrap();
        let config =
            load_beside(dir.path(), "source:\n  url: http://127.0.0.1:9\nalerts:\n  slack: {url_file: slack-url}\n")
                .unwrap();
        let slack = config.alerts.slack.unwrap();
        assert_eq!(slack.url_file, Some(dir.path().join("slack-url")));
        assert_eq!(slack.webhook_url().unwrap(), "https://hooks.slack.example/T0");
    }

    #[test]
    fn relative_log_globs_resolve_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "source:\n  url: http://127.0.0.1:9\nlogs:\n  services: {a: ['logs/a/app.log*', /var/log/b.log]}\n  \
                    service_files: 'apps/{service}/app.log*'\n";
        let logs = load_beside(dir.path(), yaml).unwrap().logs.unwrap();
        let base = dir.path().to_str().unwrap();
        assert_eq!(logs.services["a"], [format!("{base}/logs/a/app.log*"), "/var/log/b.log".to_owned()]);
        assert_eq!(logs.service_files, Some(format!("{base}/apps/{{service}}/app.log*")));
    }

    #[test]
    fn a_config_directory_holding_the_service_placeholder_is_refused_for_relative_globs() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("{service}");
        std::fs::create_dir(&odd).unwrap();
        let yaml = "source:\n  url: http://127.0.0.1:9\nlogs:\n  service_files: 'apps/{service}/app.log*'\n";
        let text = load_beside(&odd, yaml).unwrap_err().to_string();
        assert!(text.starts_with("config: logs.service_files: ") && text.ends_with("give an absolute glob"), "{text}");
        // Absolute globs do not use the directory, so they are fine there.
        let yaml = "source:\n  url: http://127.0.0.1:9\nlogs:\n  service_files: '/var/log/{service}/app.log*'\n";
        assert!(load_beside(&odd, yaml).is_ok());
    }

    #[test]
    fn absolute_paths_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "source:\n  url: https://127.0.0.1:9\n  ca_file: /etc/ssl/ca.pem\n  bearer_token_file: /run/token\n\
                    alerts:\n  incidents_dir: /var/lib/incidents\n  slack: {url_file: /run/slack}\n\
                    datasets: {path: /var/lib/ae}\n";
        let config = load_beside(dir.path(), yaml).unwrap();
        assert_eq!(config.source.ca_file.as_deref(), Some(Path::new("/etc/ssl/ca.pem")));
        assert_eq!(config.source.bearer_token_file.as_deref(), Some(Path::new("/run/token")));
        assert_eq!(config.alerts.incidents_dir.as_deref(), Some(Path::new("/var/lib/incidents")));
        assert_eq!(config.alerts.slack.unwrap().url_file.as_deref(), Some(Path::new("/run/slack")));
        assert_eq!(config.datasets.path, Path::new("/var/lib/ae"));
    }

    #[test]
    fn detection_direction_is_both_for_a_new_signal_and_up_for_the_spring_boot_ones() {
        let config = parse(
            "source:\n  url: http://x\nsignals:\n  rps:\n    query: up\n  free:\n    query: up\n    detection_direction: down\n",
        )
        .unwrap();
        let direction = |name: &str| config.signals.iter().find(|s| s.name == name).unwrap().alarm_gate().direction;
        assert_eq!(direction("rps"), DetectionDirection::Both);
        assert_eq!(direction("free"), DetectionDirection::Down);
        let defaults = parse("source:\n  url: http://x\n").unwrap();
        assert!(defaults.signals.iter().all(|s| s.detection_direction == DetectionDirection::Up));
    }

    #[test]
    fn per_service_overrides_apply() {
        let config = parse(
            "source:\n  url: http://x\nsignals:\n  cpu:\n    query: up\n    thresholds: {warning: 0.5}\n    overrides:\n      batch: {warning: 0.9}\n",
        )
        .unwrap();
        let cpu = &config.signals[0];
        assert_eq!(cpu.thresholds_for("web").warning, Some(0.5));
        assert_eq!(cpu.thresholds_for("batch").warning, Some(0.9));
    }

    #[test]
    fn an_override_keeps_its_signals_direction_unless_it_names_one() {
        let config = parse(
            "source:\n  url: http://x\nsignals:\n  tput:\n    query: rate(x[1m])\n    thresholds: {critical: 10, direction: down}\n    overrides:\n      batch: {critical: 5}\n      odd: {critical: 50, direction: up}\n",
        )
        .unwrap();
        let tput = &config.signals[0];
        assert_eq!(tput.thresholds_for("batch").direction, Direction::Down);
        assert_eq!(tput.thresholds_for("batch").level(100.0), Severity::Normal, "plenty of throughput is healthy");
        assert_eq!(tput.thresholds_for("batch").level(4.0), Severity::Critical);
        assert_eq!(tput.thresholds_for("odd").level(100.0), Severity::Critical);
        // Validated in the direction it ends up with: 1 then 5 is out of order for `down`.
        let error = parse(
            "source:\n  url: http://x\nsignals:\n  tput:\n    query: x\n    thresholds: {critical: 10, direction: down}\n    overrides:\n      batch: {warning: 1, critical: 5}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("signals.tput.overrides.batch") && error.contains("at least"), "{error}");
    }
}
