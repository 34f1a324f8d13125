//! The `datasets:` section of the configuration file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::source::parse_duration;

/// `datasets:` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatasetsConfig {
    /// Whether the daemon keeps datasets at all.
    pub enabled: bool,
    /// Root directory; relative paths are relative to the config file's directory.
    pub path: PathBuf,
    /// How long day partitions are kept.
    pub retention: String,
    /// How often buffered points are written out.
    pub flush_interval: String,
    /// History a model is trained on.
    pub training_window: String,
    /// How often each model is retrained by the daemon (`0s`: never).
    pub retrain_every: String,
}

impl Default for RawDatasetsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("datasets"),
            retention: "30d".to_owned(),
            flush_interval: "15m".to_owned(),
            training_window: "7d".to_owned(),
            retrain_every: "1d".to_owned(),
        }
    }
}

/// The validated `datasets:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetsConfig {
    /// Whether the daemon keeps datasets.
    pub enabled: bool,
    /// Root directory, resolved against the config file's directory.
    pub path: PathBuf,
    /// How long day partitions are kept.
    pub retention: Duration,
    /// How often buffered points are written out.
    pub flush_interval: Duration,
    /// History a model is trained on.
    pub training_window: Duration,
    /// How often the daemon retrains each model; zero disables scheduled retraining.
    pub retrain_every: Duration,
}

impl RawDatasetsConfig {
    /// Validates the section; `base` is the config file's directory. Errors are `(key, problem)`
    /// with the key relative to `datasets.`.
    pub fn validate(&self, base: &Path) -> Result<DatasetsConfig, (String, String)> {
        let duration = |key: &str, text: &str| parse_duration(text).map_err(|e| (key.to_owned(), e.to_string()));
        let retention = duration("retention", &self.retention)?;
        let flush_interval = duration("flush_interval", &self.flush_interval)?;
        let training_window = duration("training_window", &self.training_window)?;
        let retrain_every = duration("retrain_every", &self.retrain_every)?;
        if retention < Duration::from_secs(86_400) {
            return Err(("retention".into(), "must be at least 1d (partitions are days)".into()));
        }
        if flush_interval < Duration::from_millis(100) || flush_interval > Duration::from_secs(3600) {
            return Err(("flush_interval".into(), "must be between 100ms and 1h".into()));
        }
        if training_window.is_zero() || training_window > retention {
            return Err(("training_window".into(), "must be positive and at most the retention".into()));
        }
        // The schedule looks for due series once a minute (`train::run_schedule`): a shorter
        // spacing would silently mean every minute.
        if !retrain_every.is_zero() && retrain_every < Duration::from_secs(60) {
            return Err(("retrain_every".into(), "must be 0s (never) or at least 1m".into()));
        }
        if self.path.as_os_str().is_empty() {
            return Err(("path".into(), "must not be empty".into()));
        }
        if self.path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(("path".into(), "must not contain a NUL byte".into()));
        }
        Ok(DatasetsConfig {
            enabled: self.enabled,
            path: base.join(&self.path),
            retention,
            flush_interval,
            training_window,
            retrain_every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_path() {
        let config = RawDatasetsConfig::default().validate(Path::new("/etc/ae")).unwrap();
        assert_eq!(config.path, Path::new("/etc/ae/datasets"));
        assert_eq!(config.retention, Duration::from_secs(30 * 86_400));
        assert_eq!(config.flush_interval, Duration::from_secs(15 * 60));
        assert_eq!(config.training_window, Duration::from_secs(7 * 86_400));
        let absolute = RawDatasetsConfig { path: "/var/lib/ae".into(), ..Default::default() };
        assert_eq!(absolute.validate(Path::new("/etc")).unwrap().path, Path::new("/var/lib/ae"));
    }

    #[test]
    fn errors_name_the_key() {
        let raw = RawDatasetsConfig { path: "a\0b".into(), ..Default::default() };
        assert_eq!(raw.validate(Path::new(".")).unwrap_err(), ("path".into(), "must not contain a NUL byte".into()));
        let raw = RawDatasetsConfig { retention: "2h".into(), ..Default::default() };
        assert_eq!(raw.validate(Path::new(".")).unwrap_err().0, "retention");
        let raw = RawDatasetsConfig { flush_interval: "soon".into(), ..Default::default() };
        assert_eq!(raw.validate(Path::new(".")).unwrap_err().0, "flush_interval");
        let raw = RawDatasetsConfig { retrain_every: "30s".into(), ..Default::default() };
        assert_eq!(raw.validate(Path::new(".")).unwrap_err().0, "retrain_every");
        // Past a century the duration itself is refused: it once wrapped to a negative retention
        // and deleted every earlier day.
        let raw = RawDatasetsConfig { retention: "18446744073709551615ms".into(), ..Default::default() };
        let (key, problem) = raw.validate(Path::new(".")).unwrap_err();
        assert_eq!(key, "retention");
        assert!(problem.contains("out of range"), "{problem}");
        assert!(
            RawDatasetsConfig { retrain_every: "0s".into(), ..Default::default() }.validate(Path::new(".")).is_ok()
        );
    }
}
