//! `--web.config.file`: the Prometheus exporter-toolkit web configuration (TLS, extra response
//! headers, basic auth with bcrypt hashes), plus our two role options.
//!
//! The file is the one node_exporter takes, so an operator can reuse it:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths resolve against this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12             # TLS12 (default) or TLS13; max_version likewise (default TLS13)
//! http_server_config:
//!   headers:                       # only the headers exporter-toolkit allows
//!     X-Frame-Options: deny
//!     X-Content-Type-Options: nosniff
//! basic_auth_users:                # absent or empty: auth is off and every request is admin
//!   alice: $2y$10$...              # bcrypt hash (htpasswd -nBC 10 alice), cost 4–16
//!   prometheus: $2y$10$...
//! # our extensions
//! admin_users: [alice]             # absent: every basic-auth user is admin
//! webhook_bearer_token_file: am-token   # Alertmanager's http_config.authorization.credentials_file
//! ```
//!
//! What each credential may do is in [`super::auth`]. Keys that exporter-toolkit knows but we do
//! not implement (`cipher_suites`, inline `cert`/`key`, `client_allowed_sans`, `rate_limit`, ...)
//! are refused by name rather than silently ignored: a TLS setting that does nothing is worse than
//! a failed start. This module only parses and validates; reading the certificate and token files
//! happens in [`super::serve`] and [`super::auth`], and [`WebConfig::check`] does both up front.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Errors from reading the web configuration, the files it names, and serving.
///
/// Configuration errors name the file and the key: `web.config.file /etc/ae/web.yml:
/// tls_server_config.cert_file: /etc/ae/server.crt: no such file`.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The web configuration file itself could not be read.
    #[error("web.config.file {}: {}", file.display(), describe_io(source))]
    Read {
        /// The web configuration file.
        file: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// The file is not valid YAML, or has an unknown key or a value of the wrong type.
    #[error("web.config.file {}: {source}", file.display())]
    Yaml {
        /// The web configuration file.
        file: PathBuf,
        /// The parser's message, which names the key and the line.
        source: serde_yaml_ng::Error,
    },
    /// A key has a value we cannot use, or a file it names cannot be used.
    #[error("web.config.file {}: {key}: {problem}", file.display())]
    Invalid {
        /// The web configuration file.
        file: PathBuf,
        /// The dotted key, such as `tls_server_config.cert_file`.
        key: String,
        /// What is wrong and, where it helps, what to do.
        problem: String,
    },
    /// The listen address could not be bound.
    #[error("web.listen-address {address}: {}", describe_io(source))]
    Bind {
        /// The address we tried to bind.
        address: SocketAddr,
        /// Why binding failed.
        source: io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving http: {0}")]
    Serve(#[source] io::Error),
}

/// Says an I/O error the way an operator reads it (`no such file`), without the OS code.
pub(crate) fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
}

/// The validated `--web.config.file`.
///
/// Build it with [`WebConfig::load`] (or [`WebConfig::parse`] for text already in memory). Without
/// a web config file the caller passes `None` to [`super::serve::serve`] and
/// [`super::auth::Authenticator::new`]: plain HTTP, no auth.
#[derive(Debug, Clone)]
pub struct WebConfig {
    file: PathBuf,
    tls: Option<TlsServerConfig>,
    response_headers: HeaderMap,
    users: BTreeMap<String, BasicAuthUser>,
    webhook_bearer_token_file: Option<PathBuf>,
}

/// One `basic_auth_users` entry with the role our `admin_users` extension gives it.
#[derive(Debug, Clone)]
pub(crate) struct BasicAuthUser {
    /// The bcrypt hash from the file; never logged.
    pub(crate) bcrypt_hash: String,
    /// Whether the user has the admin role.
    pub(crate) admin: bool,
}

/// `tls_server_config`, with paths resolved against the web config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServerConfig {
    /// PEM certificate chain, server certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Whether and how clients must present a certificate.
    pub client_auth: ClientAuth,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// The lowest TLS version accepted.
    pub min_version: TlsVersion,
    /// The highest TLS version accepted.
    pub max_version: TlsVersion,
}

/// `tls_server_config.client_auth_type`, as Go's `tls.ClientAuthType` names it.
///
/// Go's `RequestClientCert` and `RequireAnyClientCert` accept certificates nobody verified; they
/// are refused because a certificate that is not verified proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (the default).
    NoClientCert,
    /// A client certificate is optional, but verified against `client_ca_file` when given.
    VerifyClientCertIfGiven,
    /// Every client must present a certificate that chains to `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version rustls speaks. TLS 1.0 and 1.1 are refused: rustls does not implement
/// them, and neither should a new deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLS12`.
    Tls12,
    /// `TLS13`.
    Tls13,
}

/// The response headers exporter-toolkit lets `http_server_config.headers` set, with the values
/// it allows (an empty list allows any value).
const ALLOWED_RESPONSE_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<RawHttpServerConfig>,
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize_optional")]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    admin_users: Option<Vec<String>>,
    #[serde(default)]
    webhook_bearer_token_file: Option<PathBuf>,
    /// exporter-toolkit's request rate limiter: known, not implemented.
    #[serde(default)]
    rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServerConfig {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    // exporter-toolkit keys we know but do not implement, refused by name in `validate_tls`.
    #[serde(default)]
    cert: Option<IgnoredAny>,
    #[serde(default)]
    key: Option<IgnoredAny>,
    #[serde(default)]
    client_ca: Option<IgnoredAny>,
    #[serde(default)]
    cipher_suites: Option<IgnoredAny>,
    #[serde(default)]
    curve_preferences: Option<IgnoredAny>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<IgnoredAny>,
    #[serde(default)]
    client_allowed_sans: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpServerConfig {
    #[serde(default, deserialize_with = "crate::unique_keys::deserialize_optional")]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    http2: Option<bool>,
}

impl WebConfig {
    /// Reads and validates the web configuration file. It does not open the files the
    /// configuration names; [`WebConfig::check`] does.
    pub fn load(file: &Path) -> Result<Self, WebError> {
        let text =
            std::fs::read_to_string(file).map_err(|source| WebError::Read { file: file.to_path_buf(), source })?;
        // A byte-order mark (Windows editors) would otherwise read as a second YAML document.
        Self::parse(text.strip_prefix('\u{feff}').unwrap_or(&text), file)
    }

    /// Validates configuration text as if it had been read from `file`: errors name `file`, and
    /// relative paths resolve against its directory.
    pub fn parse(yaml: &str, file: &Path) -> Result<Self, WebError> {
        // An empty file (or one with only comments) is valid and means "no TLS, no auth".
        let raw: RawWebConfig = serde_yaml_ng::from_str::<Option<RawWebConfig>>(yaml)
            .map_err(|source| WebError::Yaml { file: file.to_path_buf(), source })?
            .unwrap_or_default();
        let base_dir = file.parent().unwrap_or_else(|| Path::new(""));
        let invalid =
            |key: &str, problem: String| WebError::Invalid { file: file.to_path_buf(), key: key.to_owned(), problem };

        if raw.rate_limit.is_some() {
            return Err(invalid("rate_limit", "not supported by anomaly-exporter; remove the key".to_owned()));
        }
        let tls = match raw.tls_server_config {
            Some(raw_tls) => validate_tls(raw_tls, base_dir).map_err(|(key, problem)| invalid(&key, problem))?,
            None => None,
        };
        let response_headers = match raw.http_server_config {
            Some(raw_http) => validate_http(raw_http).map_err(|(key, problem)| invalid(&key, problem))?,
            None => HeaderMap::new(),
        };
        let users = validate_users(raw.basic_auth_users.unwrap_or_default(), raw.admin_users)
            .map_err(|(key, problem)| invalid(&key, problem))?;
        if users.is_empty() && raw.webhook_bearer_token_file.is_some() {
            return Err(invalid(
                "webhook_bearer_token_file",
                "needs basic_auth_users: without users auth is off and the token would protect nothing".to_owned(),
            ));
        }
        let webhook_bearer_token_file = raw.webhook_bearer_token_file.map(|path| resolve(base_dir, &path));
        Ok(Self { file: file.to_path_buf(), tls, response_headers, users, webhook_bearer_token_file })
    }

    /// Opens every file the configuration names (certificate, key, client CA, webhook token) so
    /// that `check-config` and startup fail on a bad file before serving anything.
    pub fn check(&self) -> Result<(), WebError> {
        super::serve::rustls_server_config(self)?;
        super::auth::Authenticator::new(Some(self))?;
        Ok(())
    }

    /// The file this configuration was read from; errors about the files it names cite it.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// `tls_server_config`, or `None` to serve plain HTTP. As in exporter-toolkit, a
    /// `tls_server_config` with no keys at all also means plain HTTP.
    pub fn tls_server_config(&self) -> Option<&TlsServerConfig> {
        self.tls.as_ref()
    }

    /// `http_server_config.headers`, added to every response that does not set them itself.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.response_headers
    }

    /// Whether `basic_auth_users` names anyone. When it does not, auth is off.
    pub fn basic_auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    pub(crate) fn basic_auth_users(&self) -> &BTreeMap<String, BasicAuthUser> {
        &self.users
    }

    /// `webhook_bearer_token_file`, resolved against the web config file's directory.
    pub fn webhook_bearer_token_file(&self) -> Option<&Path> {
        self.webhook_bearer_token_file.as_deref()
    }
}

/// A dotted key and what is wrong with its value.
type KeyProblem = (String, String);

fn key_problem(key: &str, problem: impl Into<String>) -> KeyProblem {
    (key.to_owned(), problem.into())
}

/// exporter-toolkit's `JoinDir`: relative paths are relative to the web config file.
fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) }
}

fn validate_tls(raw: RawTlsServerConfig, base_dir: &Path) -> Result<Option<TlsServerConfig>, KeyProblem> {
    let unsupported = [
        ("cert", raw.cert.is_some(), "inline certificates are not supported; use cert_file"),
        ("key", raw.key.is_some(), "inline keys are not supported; use key_file"),
        ("client_ca", raw.client_ca.is_some(), "inline CAs are not supported; use client_ca_file"),
        ("cipher_suites", raw.cipher_suites.is_some(), "not supported: rustls offers only its own safe suites"),
        ("curve_preferences", raw.curve_preferences.is_some(), "not supported: rustls chooses the key exchange"),
        ("prefer_server_cipher_suites", raw.prefer_server_cipher_suites.is_some(), "not supported; remove the key"),
        ("client_allowed_sans", raw.client_allowed_sans.is_some(), "not supported; remove the key"),
    ];
    if let Some((key, _, problem)) = unsupported.iter().find(|(_, present, _)| *present) {
        return Err(key_problem(&format!("tls_server_config.{key}"), *problem));
    }
    let nothing_set = raw.cert_file.is_none()
        && raw.key_file.is_none()
        && raw.client_auth_type.is_none()
        && raw.client_ca_file.is_none()
        && raw.min_version.is_none()
        && raw.max_version.is_none();
    if nothing_set {
        return Ok(None);
    }
    let cert_file = raw.cert_file.ok_or_else(|| key_problem("tls_server_config.cert_file", "missing"))?;
    let key_file = raw.key_file.ok_or_else(|| key_problem("tls_server_config.key_file", "missing"))?;
    let client_auth = match raw.client_auth_type.as_deref() {
        None | Some("") | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(key_problem(
                "tls_server_config.client_auth_type",
                format!("{other} accepts unverified certificates and is not supported; use RequireAndVerifyClientCert"),
            ));
        }
        Some(other) => {
            return Err(key_problem(
                "tls_server_config.client_auth_type",
                format!(
                    "unknown value {other:?}; expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    // Same rule as exporter-toolkit: a CA without a policy that uses it is a mistake, and so is a
    // policy that verifies against no CA.
    match (client_auth, &raw.client_ca_file) {
        (ClientAuth::NoClientCert, Some(_)) => {
            return Err(key_problem(
                "tls_server_config.client_ca_file",
                "set without client_auth_type; add client_auth_type: RequireAndVerifyClientCert",
            ));
        }
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, None) => {
            return Err(key_problem("tls_server_config.client_ca_file", "missing: client_auth_type needs it"));
        }
        _ => {}
    }
    let min_version =
        parse_tls_version("tls_server_config.min_version", raw.min_version.as_deref())?.unwrap_or(TlsVersion::Tls12);
    let max_version =
        parse_tls_version("tls_server_config.max_version", raw.max_version.as_deref())?.unwrap_or(TlsVersion::Tls13);
    if min_version > max_version {
        return Err(key_problem("tls_server_config.min_version", "is above max_version"));
    }
    Ok(Some(TlsServerConfig {
        cert_file: resolve(base_dir, &cert_file),
        key_file: resolve(base_dir, &key_file),
        client_auth,
        client_ca_file: raw.client_ca_file.map(|path| resolve(base_dir, &path)),
        min_version,
        max_version,
    }))
}

fn parse_tls_version(key: &str, value: Option<&str>) -> Result<Option<TlsVersion>, KeyProblem> {
    match value {
        None | Some("") => Ok(None),
        Some("TLS12") => Ok(Some(TlsVersion::Tls12)),
        Some("TLS13") => Ok(Some(TlsVersion::Tls13)),
        Some(old @ ("TLS10" | "TLS11")) => {
            Err(key_problem(key, format!("{old} is not supported (rustls speaks TLS12 and TLS13)")))
        }
        Some(other) => Err(key_problem(key, format!("unknown value {other:?}; expected TLS12 or TLS13"))),
    }
}

fn validate_http(raw: RawHttpServerConfig) -> Result<HeaderMap, KeyProblem> {
    if raw.http2 == Some(true) {
        return Err(key_problem(
            "http_server_config.http2",
            "HTTP/2 is not supported: anomaly-exporter serves HTTP/1.1; set it to false or remove it",
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in raw.headers.unwrap_or_default() {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed_values)) =
            ALLOWED_RESPONSE_HEADERS.iter().find(|(allowed, _)| allowed.eq_ignore_ascii_case(&name))
        else {
            let allowed: Vec<&str> = ALLOWED_RESPONSE_HEADERS.iter().map(|(allowed, _)| *allowed).collect();
            return Err(key_problem(
                &key,
                format!("this header cannot be configured; allowed: {}", allowed.join(", ")),
            ));
        };
        if !allowed_values.is_empty() && !allowed_values.iter().any(|allowed| allowed.eq_ignore_ascii_case(&value)) {
            return Err(key_problem(&key, format!("invalid value {value:?}; expected one of {allowed_values:?}")));
        }
        let header_name = HeaderName::from_str(&name).map_err(|e| key_problem(&key, e.to_string()))?;
        // The file's keys are unique, but header names ignore case: the second would replace the
        // first without a word.
        if headers.contains_key(&header_name) {
            return Err(key_problem(&key, "given twice (header names ignore case)"));
        }
        let header_value = HeaderValue::from_str(&value).map_err(|e| key_problem(&key, e.to_string()))?;
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

/// The bcrypt costs a hash may have. Below 4 bcrypt cannot verify at all. Above 16 a login
/// would take seconds to minutes (cost 31: days), and logins are checked one at a time (see
/// `auth`), so one such user would stall every other uncached login, the probes' included, and
/// hold up shutdown: a typo (`-C 31` for `-C 13`) we refuse at load.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=16;

fn validate_users(
    basic_auth_users: BTreeMap<String, String>,
    admin_users: Option<Vec<String>>,
) -> Result<BTreeMap<String, BasicAuthUser>, KeyProblem> {
    for (user, hash) in &basic_auth_users {
        let key = format!("basic_auth_users.{user}");
        // RFC 7617: the user-id cannot hold a colon, so such a user could never log in.
        if user.is_empty() || user.contains(':') {
            return Err(key_problem(&key, "a user name must be non-empty and without ':'"));
        }
        // The hash itself is a secret worth keeping out of logs: say what is wrong, not what it is.
        let Ok(parts) = bcrypt::HashParts::from_str(hash) else {
            return Err(key_problem(&key, "not a bcrypt hash (expected $2y$..., as `htpasswd -nBC 10 USER` prints)"));
        };
        let cost = parts.get_cost();
        if !BCRYPT_COSTS.contains(&cost) {
            return Err(key_problem(
                &key,
                format!(
                    "bcrypt cost {cost}: expected {}–{} (logins are checked one at a time, each \
                     in 2^cost rounds: cost 10 takes tens of milliseconds, 16 seconds)",
                    BCRYPT_COSTS.start(),
                    BCRYPT_COSTS.end(),
                ),
            ));
        }
    }
    let admins: Option<BTreeSet<String>> = match admin_users {
        None => None,
        Some(_) if basic_auth_users.is_empty() => {
            return Err(key_problem(
                "admin_users",
                "needs basic_auth_users: without users auth is off and every request is admin",
            ));
        }
        Some(names) => {
            if let Some(unknown) = names.iter().find(|name| !basic_auth_users.contains_key(*name)) {
                return Err(key_problem("admin_users", format!("{unknown:?} is not in basic_auth_users")));
            }
            Some(names.into_iter().collect())
        }
    };
    Ok(basic_auth_users
        .into_iter()
        .map(|(user, bcrypt_hash)| {
            let admin = admins.as_ref().is_none_or(|admins| admins.contains(&user));
            (user, BasicAuthUser { bcrypt_hash, admin })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real cost-10 hash (of "fakepassword") so parsing sees what htpasswd writes.
    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn parse(yaml: &str) -> Result<WebConfig, WebError> {
        WebConfig::parse(yaml, Path::new("/etc/anomaly-exporter/web.yml"))
    }

    fn error_text(yaml: &str) -> String {
        match parse(yaml) {
            Ok(config) => panic!("expected an error, parsed {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn node_exporter_example_file_parses() {
        let yaml = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /etc/pki/clients.pem\n  \
             min_version: TLS13\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    \
             X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n\
             basic_auth_users:\n  alice: {HASH}\n  prometheus: {HASH}\n"
        );
        let config = parse(&yaml).unwrap();
        let tls = config.tls_server_config().unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/anomaly-exporter/server.crt"));
        assert_eq!(tls.key_file, Path::new("/etc/anomaly-exporter/server.key"));
        assert_eq!(tls.client_ca_file.as_deref(), Some(Path::new("/etc/pki/clients.pem")));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!((tls.min_version, tls.max_version), (TlsVersion::Tls13, TlsVersion::Tls13));
        assert_eq!(config.response_headers().get("x-frame-options").unwrap(), "deny");
        assert_eq!(config.response_headers().len(), 3);
        assert!(config.basic_auth_enabled());
        // Without admin_users every user is admin.
        assert!(config.basic_auth_users().values().all(|user| user.admin));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let yaml = "tls_server_config:\n  cert_file: certs/server.crt\n  key_file: ../keys/server.key\n\
                    basic_auth_users:\n  a: $2y$04$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n\
                    webhook_bearer_token_file: am-token\n";
        let config = WebConfig::parse(yaml, Path::new("conf/web.yml")).unwrap();
        let tls = config.tls_server_config().unwrap();
        assert_eq!(tls.cert_file, Path::new("conf/certs/server.crt"));
        assert_eq!(tls.key_file, Path::new("conf/../keys/server.key"));
        assert_eq!(config.webhook_bearer_token_file(), Some(Path::new("conf/am-token")));
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        let config = parse("# nothing yet\n").unwrap();
        assert!(config.tls_server_config().is_none());
        assert!(!config.basic_auth_enabled());
        assert!(parse("tls_server_config: {}\n").unwrap().tls_server_config().is_none());
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let text = error_text("tls_server_config:\n  cert_fil: a\n");
        assert!(text.starts_with("web.config.file /etc/anomaly-exporter/web.yml: "), "{text}");
        assert!(text.contains("unknown field `cert_fil`"), "{text}");
        assert!(error_text("basic_auth_user: {}\n").contains("unknown field `basic_auth_user`"));
    }

    #[test]
    fn known_but_unsupported_keys_are_refused_by_name() {
        let text = error_text("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n");
        assert!(
            text.ends_with("tls_server_config.cipher_suites: not supported: rustls offers only its own safe suites")
        );
        assert!(error_text("rate_limit: {interval: 1s}\n").contains(": rate_limit: not supported"));
        assert!(error_text("http_server_config:\n  http2: true\n").contains("http_server_config.http2: HTTP/2"));
        let text = error_text("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n");
        assert!(
            text.ends_with("tls_server_config.min_version: TLS11 is not supported (rustls speaks TLS12 and TLS13)")
        );
    }

    #[test]
    fn tls_settings_are_checked_like_exporter_toolkit() {
        assert!(error_text("tls_server_config:\n  key_file: b\n").ends_with("tls_server_config.cert_file: missing"));
        let ca_without_policy = "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n";
        assert!(
            error_text(ca_without_policy).contains("tls_server_config.client_ca_file: set without client_auth_type")
        );
        let policy_without_ca =
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n";
        assert!(
            error_text(policy_without_ca)
                .ends_with("tls_server_config.client_ca_file: missing: client_auth_type needs it")
        );
        let unverified =
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n";
        assert!(error_text(unverified).contains("accepts unverified certificates"));
    }

    #[test]
    fn only_allowed_headers_and_values_are_accepted() {
        let text = error_text("http_server_config:\n  headers:\n    Server: mine\n");
        assert!(text.contains("http_server_config.headers.Server: this header cannot be configured"), "{text}");
        let text = error_text("http_server_config:\n  headers:\n    X-Frame-Options: allow-from x\n");
        assert!(text.contains("http_server_config.headers.X-Frame-Options: invalid value"), "{text}");
    }

    #[test]
    fn a_user_named_twice_is_refused_not_collapsed() {
        // Last-wins would keep only one of the two hashes and lock out whoever holds the other.
        let text = error_text(&format!("basic_auth_users:\n  alice: {HASH}\n  alice: {HASH}\n"));
        assert!(
            text.starts_with(
                "web.config.file /etc/anomaly-exporter/web.yml: basic_auth_users: duplicate key \"alice\""
            ),
            "{text}"
        );
        assert!(text.ends_with("in the map at line 2 column 3"), "{text}");
    }

    #[test]
    fn a_response_header_given_twice_is_refused() {
        let text =
            error_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Frame-Options: sameorigin\n");
        assert!(text.contains("http_server_config.headers: duplicate key \"X-Frame-Options\""), "{text}");
        let text =
            error_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    x-frame-options: sameorigin\n");
        assert!(
            text.ends_with("http_server_config.headers.x-frame-options: given twice (header names ignore case)"),
            "{text}"
        );
    }

    #[test]
    fn admin_users_select_admins_and_must_name_known_users() {
        let yaml = format!("basic_auth_users:\n  alice: {HASH}\n  prometheus: {HASH}\nadmin_users: [alice]\n");
        let users = parse(&yaml).unwrap().users;
        assert!(users["alice"].admin);
        assert!(!users["prometheus"].admin);

        let yaml = format!("basic_auth_users:\n  alice: {HASH}\nadmin_users: [bob]\n");
        assert!(error_text(&yaml).ends_with("admin_users: \"bob\" is not in basic_auth_users"));
        assert!(error_text("admin_users: [bob]\n").contains("admin_users: needs basic_auth_users"));
        assert!(
            error_text("webhook_bearer_token_file: t\n").contains("webhook_bearer_token_file: needs basic_auth_users")
        );
    }

    #[test]
    fn a_password_instead_of_a_hash_is_refused_without_echoing_it() {
        let text = error_text("basic_auth_users:\n  alice: hunter2\n");
        assert!(text.contains("basic_auth_users.alice: not a bcrypt hash"), "{text}");
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn a_bcrypt_cost_that_would_stall_every_login_is_refused() {
        // The same hash with its cost field changed: bcrypt's range is 4–31, ours 4–16.
        let tail = "QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
        for cost in ["03", "17", "31", "99"] {
            let text = error_text(&format!("basic_auth_users:\n  bob: $2y${cost}${tail}\n"));
            assert!(
                text.contains(&format!(
                    "basic_auth_users.bob: bcrypt cost {}: expected 4–16",
                    cost.trim_start_matches('0')
                )),
                "{text}"
            );
        }
        for cost in ["04", "10", "16"] {
            let yaml = format!("basic_auth_users:\n  bob: $2y${cost}${tail}\n");
            let config: WebConfig = parse(&yaml).unwrap();
            assert!(config.basic_auth_enabled());
        }
    }

    #[test]
    fn missing_file_is_named() {
        let text = WebConfig::load(Path::new("/nonexistent/web.yml")).unwrap_err().to_string();
        assert_eq!(text, "web.config.file /nonexistent/web.yml: no such file");
    }
}
