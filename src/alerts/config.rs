//! The `alerts:` section of the configuration: where incidents are recorded, how long resolved
//! ones are kept, and how large a webhook body may be.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `alerts:` as written and validated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Directory of the incident events (Parquet). Absent: `incidents/` in the datasets
    /// directory, beside the services' history; a relative path is relative to the config file's
    /// directory, as `datasets.path` is.
    #[serde(default)]
    pub incidents_dir: Option<PathBuf>,
    /// How long a resolved incident is kept after its last event (`90d`); the journal is
    /// compacted hourly, dropping older ones.
    #[serde(default = "default_incident_retention", deserialize_with = "duration_text")]
    pub incident_retention: Duration,
    /// Largest webhook body accepted; Alertmanager's notifications are a few KiB per alert.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Posting firing and resolved incidents to Slack; absent: no Slack posts from here.
    #[serde(default)]
    pub slack: Option<super::slack::SlackConfig>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

fn default_incident_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}

/// Reads a duration written as the rest of the file writes them (`90d`, `2160h`).
fn duration_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::source::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            incidents_dir: None,
            incident_retention: default_incident_retention(),
            max_body_bytes: default_max_body_bytes(),
            slack: None,
        }
    }
}

impl AlertsConfig {
    /// Where incident events are written: `incidents_dir`, else `<datasets>/incidents`.
    pub fn incidents_dir_in(&self, datasets: &Path) -> PathBuf {
        self.incidents_dir.clone().unwrap_or_else(|| datasets.join("incidents"))
    }

    /// The problem with the section, naming the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.incidents_dir.as_ref().is_some_and(|dir| dir.as_os_str().is_empty()) {
            return Err(("alerts.incidents_dir".into(), "must name a directory".into()));
        }
        if self.incident_retention < Duration::from_secs(86_400) {
            return Err(("alerts.incident_retention".into(), "must be at least 1d".into()));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(("alerts.max_body_bytes".into(), "must be between 1024 and 67108864".into()));
        }
        self.slack.as_ref().map_or(Ok(()), super::slack::SlackConfig::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let parsed: AlertsConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(parsed, AlertsConfig::default());
        assert!(parsed.validate().is_ok());
        let tiny: AlertsConfig = serde_yaml_ng::from_str("max_body_bytes: 10").unwrap();
        assert_eq!(tiny.validate().unwrap_err().0, "alerts.max_body_bytes");
        assert!(serde_yaml_ng::from_str::<AlertsConfig>("slack: x").is_err());
        let short: AlertsConfig = serde_yaml_ng::from_str("incident_retention: 12h").unwrap();
        assert_eq!(short.validate().unwrap_err().0, "alerts.incident_retention");
        let year: AlertsConfig = serde_yaml_ng::from_str("incident_retention: 365d").unwrap();
        assert_eq!(year.incident_retention, Duration::from_secs(365 * 86_400));
        assert!(serde_yaml_ng::from_str::<AlertsConfig>("incident_retention: soon").is_err());
        let slack: AlertsConfig = serde_yaml_ng::from_str("slack: {severities: []}").unwrap();
        assert_eq!(slack.validate().unwrap_err().0, "alerts.slack.severities");
    }
}
