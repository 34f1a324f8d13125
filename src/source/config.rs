//! The `source:` section of the daemon's YAML config: where Prometheus is and how to talk to it.
//!
//! The struct is the raw, serde-shaped form (durations stay strings, secrets stay file paths), so
//! that [`SourceConfig::validate`] can name the exact key when something is wrong. The client
//! turns it into live settings in [`PrometheusClient::new`](super::PrometheusClient::new).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;

use super::SourceError;

/// Connection settings for a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, Cortex,
/// VictoriaMetrics).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Base URL of the API, without `/api/v1`, with any path prefix (`http://mimir:8080/prometheus`).
    pub url: String,
    /// Per-request timeout, such as `"10s"`; also sent to the server as its evaluation timeout.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// HTTP basic auth; the password is read from a file.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// File holding a bearer token, sent as `Authorization: Bearer ...`. Relative to the config
    /// file's directory once loaded by [`Config::load`](crate::config::Config::load).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Extra headers sent with every request, such as `X-Scope-OrgID` for Mimir and Cortex tenants.
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize")]
    pub headers: BTreeMap<String, String>,
    /// PEM file of the CA certificates that sign the server's certificate. When set, only these
    /// roots are trusted, as in Prometheus's own `tls_config.ca_file`. Relative to the config
    /// file's directory, as `bearer_token_file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. For test setups only: it turns TLS into plain obfuscation.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Resolution of range queries (backfill, `backtest --from/--to`): the daemon's `interval`,
    /// which is what a series' detector sees live. Only checked when written, and then it must
    /// equal `interval` (see `Config`): history at another resolution than the live points would
    /// give every feature counted in points (windows, deltas) another meaning.
    #[serde(default)]
    pub step: Option<String>,
}

/// Basic auth credentials: a user name and the file that holds the password.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name, sent as is.
    pub username: String,
    /// File holding the password; a trailing newline is removed. Relative to the config file's
    /// directory, as `bearer_token_file`.
    pub password_file: PathBuf,
}

fn default_timeout() -> String {
    "10s".to_owned()
}

/// [`SourceConfig`] checked and parsed: what the client is built from.
#[derive(Debug)]
pub(super) struct CheckedSource {
    pub(super) base_url: Url,
    pub(super) timeout: Duration,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl SourceConfig {
    /// A config with defaults for everything but the URL (handy in tests and examples).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: default_timeout(),
            basic_auth: None,
            bearer_token_file: None,
            headers: BTreeMap::new(),
            ca_file: None,
            insecure_skip_verify: false,
            step: None,
        }
    }

    /// Checks every key without touching the network or the files, and names the key at fault
    /// (`source.timeout: ...`). Secret files are read later, when the client is built.
    pub fn validate(&self) -> Result<(), SourceError> {
        self.check().map(drop)
    }

    pub(super) fn check(&self) -> Result<CheckedSource, SourceError> {
        let base_url = check_url(&self.url)?;
        let timeout = positive_duration("timeout", &self.timeout)?;
        if let Some(text) = &self.step {
            let step = positive_duration("step", text)?;
            if step.subsec_nanos() % 1_000_000 != 0 {
                return Err(invalid("step", format!("{text:?} is finer than the API's 1ms resolution")));
            }
        }
        if let Some(auth) = &self.basic_auth {
            if auth.username.is_empty() {
                return Err(invalid("basic_auth.username", "must not be empty".to_owned()));
            }
            if self.bearer_token_file.is_some() {
                return Err(invalid("bearer_token_file", "cannot be combined with source.basic_auth".to_owned()));
            }
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("headers", format!("{name:?} is not a valid HTTP header name")))?;
            // The file's keys are unique, but header names ignore case: `X-Scope-OrgID` and
            // `x-scope-orgid` would both be sent, and a server would pick either tenant.
            if headers.iter().any(|(seen, _)| *seen == header_name) {
                return Err(invalid("headers", format!("{name:?} is given twice (header names ignore case)")));
            }
            if header_name == AUTHORIZATION {
                return Err(invalid(
                    "headers",
                    "Authorization is set through source.basic_auth or source.bearer_token_file, \
                     so that the secret stays in a file"
                        .to_owned(),
                ));
            }
            let mut header_value = HeaderValue::from_str(value)
                .map_err(|_| invalid("headers", format!("the value of {name:?} is not a valid HTTP header value")))?;
            // Extra headers may carry tenant secrets: keep them out of any debug output.
            header_value.set_sensitive(true);
            headers.push((header_name, header_value));
        }
        if (self.ca_file.is_some() || self.insecure_skip_verify) && base_url.scheme() != "https" {
            return Err(invalid("ca_file", format!("TLS settings need an https URL, got {:?}", base_url.scheme())));
        }
        Ok(CheckedSource { base_url, timeout, headers })
    }
}

fn check_url(text: &str) -> Result<Url, SourceError> {
    if text.trim().is_empty() {
        return Err(invalid("url", "must not be empty; example: http://127.0.0.1:9090".to_owned()));
    }
    let url = Url::parse(text).map_err(|e| invalid("url", format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", format!("scheme must be http or https, got {:?}", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in logs and error messages.
        return Err(invalid("url", "must not contain credentials; use source.basic_auth".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("url", "must not contain a query string or fragment".to_owned()));
    }
    if url.path().trim_end_matches('/').ends_with("/api/v1") {
        return Err(invalid("url", "give the base URL without /api/v1; the client adds it".to_owned()));
    }
    Ok(url)
}

fn positive_duration(key: &'static str, text: &str) -> Result<Duration, SourceError> {
    let duration = parse_duration(text).map_err(|e| invalid(key, e.to_string()))?;
    if duration.is_zero() {
        return Err(invalid(key, "must be greater than zero".to_owned()));
    }
    Ok(duration)
}

fn invalid(key: &'static str, problem: String) -> SourceError {
    SourceError::Config { key, problem }
}

/// A duration string that [`parse_duration`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDuration {
    /// Not a duration at all.
    #[error("invalid duration {0:?}: expected a number and a unit (ms, s, m, h, d, w), such as \"10s\" or \"1h30m\"")]
    Malformed(String),
    /// Longer than [`MAX_DURATION`].
    #[error("duration {0:?} is out of range: at most 36500d (100 years)")]
    TooLong(String),
}

/// The longest duration taken: 100 years. Durations are added to and compared with epoch
/// milliseconds as `i64` (a retention, a training window, a log window); up to here that
/// arithmetic cannot wrap, and no retention or window needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a Prometheus-style duration: one or more `<integer><unit>` groups with units `ms`, `s`,
/// `m`, `h`, `d` and `w`, largest first (`"1h30m"`, `"10s"`, `"250ms"`). `"0"` alone means zero.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let fail = || InvalidDuration::Malformed(text.to_owned());
    match text {
        "0" => return Ok(Duration::ZERO),
        "" => return Err(fail()),
        _ => {}
    }
    let (mut rest, mut total_ms, mut last_unit_ms) = (text, 0u64, u64::MAX);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(fail)?;
        let number: u64 = rest[..digits].parse().map_err(|_| fail())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(fail()),
        };
        // Each unit at most once and largest first, as Prometheus requires ("1m1h" is a typo).
        if unit_ms >= last_unit_ms {
            return Err(fail());
        }
        last_unit_ms = unit_ms;
        total_ms = number.checked_mul(unit_ms).and_then(|ms| total_ms.checked_add(ms)).ok_or_else(fail)?;
        rest = &rest[unit_len..];
    }
    let duration = Duration::from_millis(total_ms);
    if duration > MAX_DURATION {
        return Err(InvalidDuration::TooLong(text.to_owned()));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1w2d"), Ok(Duration::from_secs(9 * 86_400)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in ["", "10", "s", "1.5s", "-1s", "10 s", "1m1h", "1s1s", "10sec", "99999999999999999999s", "1y"] {
            assert!(parse_duration(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn durations_past_a_century_are_refused_as_out_of_range() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        for text in ["36500d1ms", "5215w", "18446744073709551615ms"] {
            assert_eq!(parse_duration(text), Err(InvalidDuration::TooLong(text.to_owned())));
            assert!(parse_duration(text).unwrap_err().to_string().contains("out of range"), "{text}");
        }
    }

    #[test]
    fn yaml_with_defaults_parses() {
        let config: SourceConfig = serde_yaml_ng::from_str("url: http://127.0.0.1:9090\n").unwrap();
        assert_eq!(config, SourceConfig::new("http://127.0.0.1:9090"));
        config.validate().unwrap();
    }

    #[test]
    fn full_yaml_parses_and_validates() {
        let yaml = r#"
url: https://mimir.example:8080/prometheus
timeout: 30s
basic_auth: { username: reader, password_file: /run/secrets/prom }
headers: { X-Scope-OrgID: team-a }
ca_file: /etc/ssl/ca.pem
step: 1m
"#;
        let config: SourceConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let checked = config.check().unwrap();
        assert_eq!(checked.timeout, Duration::from_secs(30));
        assert_eq!(checked.headers[0].0.as_str(), "x-scope-orgid");
    }

    #[test]
    fn a_header_given_twice_is_refused() {
        let err =
            serde_yaml_ng::from_str::<SourceConfig>("url: http://x\nheaders: {X-Scope-OrgID: a, X-Scope-OrgID: b}\n")
                .unwrap_err();
        assert!(err.to_string().starts_with("headers: duplicate key \"X-Scope-OrgID\""), "{err}");
        let config: SourceConfig =
            serde_yaml_ng::from_str("url: http://x\nheaders: {X-Scope-OrgID: a, x-scope-orgid: b}\n").unwrap();
        assert_eq!(error_of(&config), "source.headers: \"x-scope-orgid\" is given twice (header names ignore case)");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_yaml_ng::from_str::<SourceConfig>("url: http://x\ntimout: 5s\n").unwrap_err();
        assert!(err.to_string().contains("timout"), "{err}");
    }

    fn error_of(config: &SourceConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_key_at_fault() {
        assert!(error_of(&SourceConfig::new("")).starts_with("source.url: must not be empty"));
        assert!(error_of(&SourceConfig::new("localhost:9090")).starts_with("source.url: "));
        assert!(error_of(&SourceConfig::new("http://u:p@h:9090")).contains("source.basic_auth"));
        assert!(error_of(&SourceConfig::new("http://h:9090/api/v1")).contains("without /api/v1"));

        let mut config = SourceConfig::new("http://h:9090");
        config.timeout = "10".into();
        assert!(error_of(&config).starts_with("source.timeout: invalid duration \"10\""));
        config.timeout = "0s".into();
        assert_eq!(error_of(&config), "source.timeout: must be greater than zero");

        let mut config = SourceConfig::new("http://h:9090");
        config.headers.insert("Authorization".into(), "Bearer x".into());
        assert!(error_of(&config).starts_with("source.headers: Authorization"));
        config.headers = BTreeMap::from([("bad header".into(), "x".into())]);
        assert!(error_of(&config).starts_with("source.headers: \"bad header\""));

        let mut config = SourceConfig::new("http://h:9090");
        config.ca_file = Some("/ca.pem".into());
        assert!(error_of(&config).starts_with("source.ca_file: TLS settings need an https URL"));

        let mut config = SourceConfig::new("http://h:9090");
        config.basic_auth = Some(BasicAuthConfig { username: "u".into(), password_file: "/p".into() });
        config.bearer_token_file = Some("/t".into());
        assert!(error_of(&config).starts_with("source.bearer_token_file: cannot be combined"));
    }
}
