//! Alertmanager's webhook payload (version 4), read strictly where it matters and loosely
//! elsewhere: fields we do not use are ignored (newer Alertmanagers add some), while a missing
//! fingerprint, an unknown status or a malformed timestamp is refused with the reason, so the
//! sender gets a 400 it will not retry.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::calendar::{days_from_civil, parse_rfc3339_ms};

/// Why a payload was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the webhook's shape.
    #[error("not an Alertmanager webhook payload: {0}")]
    Shape(String),
    /// A version other than 4.
    #[error("version: {0:?} is not supported; Alertmanager's webhook version 4 is")]
    Version(String),
    /// A field of one alert is wrong.
    #[error("alerts[{index}].{field}: {problem}")]
    Alert {
        /// The alert's position in `alerts`.
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Whether an alert is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Still firing.
    Firing,
    /// Resolved (its `endsAt` is when).
    Resolved,
}

#[derive(Debug, Deserialize)]
struct RawPayload {
    version: String,
    #[serde(default)]
    alerts: Vec<RawAlert>,
}

#[derive(Debug, Deserialize)]
struct RawAlert {
    status: AlertStatus,
    // Alertmanager never repeats a key; a payload that does was written by hand or by a broken
    // relay, and keeping the last value would file the alert under a label nobody can see.
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize")]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", default)]
    ends_at: String,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

/// One alert of a notification, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Its labels (`alertname`, `service`, `severity`, ...).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `logs_url`, ...).
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (ms since the epoch).
    pub starts_at_ms: i64,
    /// When it ended, when it has (ms since the epoch).
    pub ends_at_ms: Option<i64>,
    /// The rule's URL in Prometheus.
    pub generator_url: String,
    /// Alertmanager's fingerprint of its label set.
    pub fingerprint: String,
}

/// Whether a parsed timestamp is Alertmanager's zero time (`0001-01-01T00:00:00Z`): "not set".
fn is_unset(ms: i64) -> bool {
    ms < days_from_civil(1000, 1, 1) * 86_400_000
}

/// Parses and checks a webhook body.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    let raw: RawPayload = serde_json::from_slice(body).map_err(|e| PayloadError::Shape(e.to_string()))?;
    if raw.version != "4" {
        return Err(PayloadError::Version(raw.version));
    }
    raw.alerts
        .into_iter()
        .enumerate()
        .map(|(index, alert)| {
            let problem = |field, problem: &str| PayloadError::Alert { index, field, problem: problem.to_owned() };
            if alert.fingerprint.is_empty() {
                return Err(problem("fingerprint", "missing or empty"));
            }
            if !alert.fingerprint.bytes().all(|b| b.is_ascii_alphanumeric()) || alert.fingerprint.len() > 64 {
                return Err(problem("fingerprint", "must be up to 64 letters and digits"));
            }
            let starts_at_ms = parse_rfc3339_ms(&alert.starts_at)
                .filter(|ms| !is_unset(*ms))
                .ok_or_else(|| problem("startsAt", "not an RFC 3339 timestamp"))?;
            let ends_at_ms = if alert.ends_at.is_empty() {
                None
            } else {
                let ms =
                    parse_rfc3339_ms(&alert.ends_at).ok_or_else(|| problem("endsAt", "not an RFC 3339 timestamp"))?;
                (!is_unset(ms)).then_some(ms)
            };
            Ok(Alert {
                status: alert.status,
                labels: alert.labels,
                annotations: alert.annotations,
                starts_at_ms,
                ends_at_ms,
                generator_url: alert.generator_url,
                fingerprint: alert.fingerprint,
            })
        })
        .collect()
}

/// The captured firing notification turned into its own resolution (the captured resolved
/// payload is of another alert), as `(firing, resolved)` bodies.
#[cfg(test)]
pub(crate) fn firing_and_resolved_fixture() -> (Vec<u8>, Vec<u8>) {
    let path =
        format!("{}/../shared/fixtures/alertmanager/alertmanager_webhook_v4_firing.json", env!("CARGO_MANIFEST_DIR"));
    let firing = std::fs::read(path).unwrap();
    let mut resolved: serde_json::Value = serde_json::from_slice(&firing).unwrap();
    resolved["status"] = "resolved".into();
    resolved["alerts"][0]["status"] = "resolved".into();
    resolved["alerts"][0]["endsAt"] = "2026-11-24T13:40:00Z".into();
    (firing, serde_json::to_vec(&resolved).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../shared/fixtures/alertmanager/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn captured_firing_and_resolved_payloads_parse() {
        let firing = parse_webhook(&fixture("alertmanager_webhook_v4_firing.json")).unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].status, AlertStatus::Firing);
        assert_eq!(firing[0].fingerprint, "6c8c497f7610565a");
        assert_eq!(firing[0].labels["service"], "checkout");
        assert_eq!(firing[0].ends_at_ms, None);
        let resolved = parse_webhook(&fixture("alertmanager_webhook_v4_resolved.json")).unwrap();
        assert_eq!(resolved[0].status, AlertStatus::Resolved);
        assert!(resolved[0].ends_at_ms.is_some_and(|end| end > resolved[0].starts_at_ms));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = br#"{"version":"4","notification_reason":"x","routeLabels":{},"alerts":[{"status":"firing",
            "startsAt":"2026-11-24T13:32:20Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"ab12","new":1}]}"#;
        assert_eq!(parse_webhook(body).unwrap().len(), 1);
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        let cases: [(&[u8], &str); 8] = [
            (b"not json", "not an Alertmanager webhook payload"),
            (br#"{"version":"3","alerts":[]}"#, "version: \"3\""),
            (br#"{"version":"4","alerts":[{"status":"pending","startsAt":"2026-11-24T13:32:20Z","fingerprint":"a"}]}"#, "pending"),
            (br#"{"version":"4","alerts":[{"status":"firing","startsAt":"2026-11-24T13:32:20Z"}]}"#, "alerts[0].fingerprint"),
            (br#"{"version":"4","alerts":[{"status":"firing","startsAt":"soon","fingerprint":"a"}]}"#, "alerts[0].startsAt"),
            (br#"{"version":"4","alerts":[{"status":"firing","startsAt":"2026-11-24T13:32:20Z","fingerprint":"../x"}]}"#, "alerts[0].fingerprint"),
            (br#"{"version":"4","alerts":[{"status":"firing","labels":{"service":"a","service":"b"},"startsAt":"2026-11-24T13:32:20Z","fingerprint":"a"}]}"#, "duplicate key \"service\""),
            (br#"{"version":"4","alerts":[{"status":"firing","annotations":{"summary":"a","summary":"b"},"startsAt":"2026-11-24T13:32:20Z","fingerprint":"a"}]}"#, "duplicate key \"summary\""),
        ];
        for (body, wanted) in cases {
            let error = parse_webhook(body).unwrap_err().to_string();
            assert!(error.contains(wanted), "{error:?} lacks {wanted:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_webhook(&body);
        }
    }
}
