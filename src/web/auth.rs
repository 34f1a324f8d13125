//! Who may call which route: basic auth (bcrypt) and the Alertmanager webhook token, mapped to
//! [`Role`]s that routes require.
//!
//! A route declares the role it needs with a layer, and never looks at credentials itself:
//!
//! ```ignore
//! Router::new()
//!     .route("/metrics", get(metrics).layer(auth.require(Role::Reader)))
//!     .route("/alerts", post(alerts).layer(auth.require(Role::Webhook)))
//!     .route("/retrain", post(retrain).layer(auth.require(Role::Admin)))
//! ```
//!
//! The layer puts the caller's [`Principal`] in the request extensions, so a handler that records
//! who did something (an incident acknowledged by hand) reads it with `Extension<Principal>`.
//!
//! | route                                            | role needed |
//! |--------------------------------------------------|-------------|
//! | telemetry path (`/metrics`), `/services`, `GET /incidents`, `/logs`, `/-/healthy`, `/-/ready` | [`Role::Reader`] |
//! | `POST /alerts` (Alertmanager's webhook)          | [`Role::Webhook`] |
//! | `POST /retrain`, `POST /incidents/{id}/ack`, `POST /incidents/{id}/resolve` | [`Role::Admin`] |
//!
//! | caller                                             | Reader | Webhook | Admin |
//! |----------------------------------------------------|--------|---------|-------|
//! | anyone, when `basic_auth_users` is absent or empty | yes    | yes     | yes   |
//! | basic-auth user listed in `admin_users` (or any user when `admin_users` is absent) | yes | yes | yes |
//! | other basic-auth user                              | yes    | yes     | no    |
//! | `Authorization: Bearer <webhook_bearer_token_file>`| no     | yes     | no    |
//!
//! Whatever the role, a request that changes state (not GET, HEAD, OPTIONS or TRACE) is refused
//! with 403 when a browser sent it from another site's page: see [`is_cross_site_change`].
//!
//! A basic-auth user may post alerts because Alertmanager's `http_config` can send basic auth
//! instead of a token. The webhook token opens the webhook only, so a leaked Alertmanager config
//! exposes nothing else. As in exporter-toolkit, the probes need credentials too when auth is on.
//!
//! Costs: bcrypt is slow on purpose (tens of milliseconds at cost 10). Like exporter-toolkit we
//! remember successful checks, keyed by an HMAC of (user, hash, password) under a key made at
//! start, so a scrape every 15 s costs one bcrypt in total rather than one per scrape. Checks that
//! miss the cache run one at a time on the blocking pool, so a flood of wrong passwords costs at
//! most one core and never stalls the runtime. There is no rate limit beyond that.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aws_lc_rs::hmac;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

use super::web_config::{BasicAuthUser, WebConfig, WebError, describe_io};

/// The realm sent in `WWW-Authenticate` with every 401.
const REALM_CHALLENGE: &str = r#"Basic realm="anomaly-exporter""#;

/// How many successful (user, password) checks are remembered. Only right passwords enter the
/// cache, so it holds about one entry per user; the bound stops it growing if hashes change.
const VERIFIED_CACHE_CAPACITY: usize = 256;

/// The bcrypt hash (cost 10) of "fakepassword", checked when the user is unknown so that an
/// unknown user takes as long to refuse as a wrong password (exporter-toolkit does the same),
/// unless a configured user's hash costs more (see [`unknown_user_hash`]).
const UNKNOWN_USER_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// The hash an unknown user's password is checked against: the costliest of the configured
/// users' hashes, or [`UNKNOWN_USER_HASH`] when none costs more. A fixed cost-10 hash beside
/// users hashed at cost 12 made unknown names answer four times faster than known ones, which
/// told anyone the user names. A configured hash serves as well as a dummy one: whatever it
/// matches, an unknown user is refused.
fn unknown_user_hash(users: &std::collections::BTreeMap<String, BasicAuthUser>) -> String {
    let cost = |hash: &str| hash.split('$').nth(2).and_then(|cost| cost.parse::<u32>().ok()).unwrap_or(0);
    users
        .values()
        .map(|user| user.bcrypt_hash.as_str())
        .chain([UNKNOWN_USER_HASH])
        .max_by_key(|hash| cost(hash))
        .unwrap_or(UNKNOWN_USER_HASH)
        .to_owned()
}

/// What a route requires of its caller. See the module docs for the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Read the exporter's state: metrics, services, incidents, logs, probes.
    Reader,
    /// Deliver Alertmanager notifications to `POST /alerts`.
    Webhook,
    /// Change state by hand: retrain, acknowledge or resolve incidents.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Webhook => "webhook",
            Role::Admin => "admin",
        })
    }
}

/// The authenticated caller of a request, put in the request extensions by [`RequireRole`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Auth is off (no `basic_auth_users`): every caller is treated as admin.
    AuthOff,
    /// A `basic_auth_users` entry that gave the right password.
    User {
        /// The basic-auth user name.
        name: String,
        /// Whether `admin_users` gives this user the admin role.
        admin: bool,
    },
    /// A caller that sent the `webhook_bearer_token_file` token.
    WebhookToken,
}

impl Principal {
    /// Whether this caller may use a route that requires `role`.
    pub fn has_role(&self, role: Role) -> bool {
        match self {
            Principal::AuthOff | Principal::User { admin: true, .. } => true,
            Principal::User { admin: false, .. } => role != Role::Admin,
            Principal::WebhookToken => role == Role::Webhook,
        }
    }
}

/// Why a request was refused; its response is our JSON error shape
/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    /// No `Authorization` header: 401 with a Basic challenge.
    #[error("credentials required")]
    MissingCredentials,
    /// Unknown user, wrong password, wrong token or unreadable header: 401 with a Basic challenge.
    /// One message for all of them, so a caller cannot tell which part was wrong.
    #[error("invalid username, password or token")]
    BadCredentials,
    /// Authenticated, but without the role the route needs: 403.
    #[error("this route needs the {required} role")]
    Forbidden {
        /// The role the route requires.
        required: Role,
    },
    /// A request that changes state came from another site's page (`Sec-Fetch-Site: cross-site`,
    /// or an `Origin` that is not this server): 403, whatever its credentials.
    #[error(
        "a request that changes state is not taken from another site's page \
         (Sec-Fetch-Site: cross-site, or an Origin other than this server)"
    )]
    CrossSite,
    /// The password check itself failed (its blocking task panicked): 500.
    #[error("credential check failed")]
    Internal,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            AuthRejection::MissingCredentials | AuthRejection::BadCredentials => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            AuthRejection::Forbidden { .. } | AuthRejection::CrossSite => (StatusCode::FORBIDDEN, "forbidden"),
            AuthRejection::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM_CHALLENGE));
        }
        response
    }
}

/// Checks credentials against the web config; cheap to clone (one `Arc`).
///
/// Build one at startup with [`Authenticator::new`] and hand [`Authenticator::require`] layers to
/// the routes.
#[derive(Clone)]
pub struct Authenticator {
    /// `None` when auth is off.
    credentials: Option<Arc<Credentials>>,
}

struct Credentials {
    users: std::collections::BTreeMap<String, BasicAuthUser>,
    /// HMAC of the webhook token under `hmac_key`: comparing tags with `hmac::verify` is constant
    /// time, and the token itself is not kept.
    webhook_token_tag: Option<hmac::Tag>,
    /// Made at start; keys both the verified cache and the token tag.
    hmac_key: hmac::Key,
    verified: Mutex<VerifiedCache>,
    /// One bcrypt check at a time (see the module docs).
    bcrypt_turn: Arc<Semaphore>,
    /// What an unknown user's password is checked against ([`unknown_user_hash`]).
    unknown_user_hash: String,
}

/// A bounded set of HMAC tags of (user, hash, password) that bcrypt accepted; oldest out first.
#[derive(Default)]
struct VerifiedCache {
    tags: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedCache {
    fn contains(&self, tag: &[u8; 32]) -> bool {
        self.tags.contains(tag)
    }

    fn insert(&mut self, tag: [u8; 32]) {
        if !self.tags.insert(tag) {
            return;
        }
        self.order.push_back(tag);
        if self.order.len() > VERIFIED_CACHE_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.tags.remove(&oldest);
        }
    }
}

impl fmt::Debug for Authenticator {
    // Hand-written so that hashes and tags never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credentials {
            None => f.write_str("Authenticator(auth off)"),
            Some(credentials) => f
                .debug_struct("Authenticator")
                .field("users", &credentials.users.keys().collect::<Vec<_>>())
                .field("webhook_token", &credentials.webhook_token_tag.is_some())
                .finish(),
        }
    }
}

impl Authenticator {
    /// Builds the authenticator from the web config, reading `webhook_bearer_token_file` (trimmed
    /// of surrounding whitespace, like Prometheus' `credentials_file`). `None`, or a config
    /// without `basic_auth_users`, turns auth off.
    pub fn new(web_config: Option<&WebConfig>) -> Result<Self, WebError> {
        let Some(web_config) = web_config.filter(|config| config.basic_auth_enabled()) else {
            return Ok(Self { credentials: None });
        };
        let random_key: [u8; 32] = rand::random();
        let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &random_key);
        let webhook_token_tag = match web_config.webhook_bearer_token_file() {
            None => None,
            Some(path) => {
                let invalid = |problem: String| WebError::Invalid {
                    file: web_config.file().to_path_buf(),
                    key: "webhook_bearer_token_file".to_owned(),
                    problem: format!("{}: {problem}", path.display()),
                };
                let text = std::fs::read_to_string(path).map_err(|e| invalid(describe_io(&e)))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(invalid("empty token".to_owned()));
                }
                Some(hmac::sign(&hmac_key, token.as_bytes()))
            }
        };
        Ok(Self {
            credentials: Some(Arc::new(Credentials {
                unknown_user_hash: unknown_user_hash(web_config.basic_auth_users()),
                users: web_config.basic_auth_users().clone(),
                webhook_token_tag,
                hmac_key,
                verified: Mutex::new(VerifiedCache::default()),
                bcrypt_turn: Arc::new(Semaphore::new(1)),
            })),
        })
    }

    /// An authenticator that lets everyone in as admin, as when there is no web config.
    pub fn disabled() -> Self {
        Self { credentials: None }
    }

    /// A layer for a route (or a group of routes) that refuses callers without `role`.
    pub fn require(&self, role: Role) -> RequireRoleLayer {
        RequireRoleLayer { authenticator: self.clone(), role }
    }

    /// Identifies the caller from the `Authorization` header. Most code wants
    /// [`Authenticator::require`] instead; this is the check that layer runs.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthRejection> {
        let Some(credentials) = &self.credentials else {
            return Ok(Principal::AuthOff);
        };
        let value = headers.get(header::AUTHORIZATION).ok_or(AuthRejection::MissingCredentials)?;
        let value = value.to_str().map_err(|_| AuthRejection::BadCredentials)?;
        let (scheme, payload) = value.trim().split_once(' ').ok_or(AuthRejection::BadCredentials)?;
        let payload = payload.trim();
        // Auth schemes are case-insensitive (RFC 9110 section 11.1).
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded =
                base64::engine::general_purpose::STANDARD.decode(payload).map_err(|_| AuthRejection::BadCredentials)?;
            let colon = decoded.iter().position(|byte| *byte == b':').ok_or(AuthRejection::BadCredentials)?;
            let user = std::str::from_utf8(&decoded[..colon]).map_err(|_| AuthRejection::BadCredentials)?;
            credentials.verify_password(user, &decoded[colon + 1..]).await
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let tag = credentials.webhook_token_tag.as_ref().ok_or(AuthRejection::BadCredentials)?;
            hmac::verify(&credentials.hmac_key, payload.as_bytes(), tag.as_ref())
                .map(|()| Principal::WebhookToken)
                .map_err(|_| AuthRejection::BadCredentials)
        } else {
            Err(AuthRejection::BadCredentials)
        }
    }

    /// Authenticates and checks the caller has `role`.
    pub async fn authorize(&self, headers: &HeaderMap, role: Role) -> Result<Principal, AuthRejection> {
        let principal = self.authenticate(headers).await?;
        if principal.has_role(role) { Ok(principal) } else { Err(AuthRejection::Forbidden { required: role }) }
    }
}

impl Credentials {
    async fn verify_password(&self, user: &str, password: &[u8]) -> Result<Principal, AuthRejection> {
        let entry = self.users.get(user);
        let hash = entry.map_or(self.unknown_user_hash.as_str(), |entry| entry.bcrypt_hash.as_str());
        let cache_tag = self.cache_tag(user, hash, password);
        let accepted = |entry: &BasicAuthUser| Principal::User { name: user.to_owned(), admin: entry.admin };
        if let Some(entry) = entry
            && self.is_verified(&cache_tag)
        {
            return Ok(accepted(entry));
        }
        // The permit travels into the blocking task, so a client that hangs up mid-check does not
        // let the next check start before this one ends.
        let turn = Arc::clone(&self.bcrypt_turn).acquire_owned().await.map_err(|_| AuthRejection::Internal)?;
        // Another request may have verified the same password while we waited our turn.
        if let Some(entry) = entry
            && self.is_verified(&cache_tag)
        {
            return Ok(accepted(entry));
        }
        let (password, hash) = (password.to_vec(), hash.to_owned());
        let matched = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            bcrypt::verify(password, &hash)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "bcrypt check task failed");
            AuthRejection::Internal
        })?;
        match (entry, matched) {
            (Some(entry), Ok(true)) => {
                self.remember_verified(cache_tag);
                Ok(accepted(entry))
            }
            _ => {
                tracing::debug!(user, "basic auth refused");
                Err(AuthRejection::BadCredentials)
            }
        }
    }

    /// HMAC over length-prefixed parts, so ("ab", "c") and ("a", "bc") cannot collide.
    fn cache_tag(&self, user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.hmac_key);
        for part in [user.as_bytes(), hash.as_bytes(), password] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    fn is_verified(&self, tag: &[u8; 32]) -> bool {
        // A poisoned lock only means another request panicked mid-insert; the set is still valid.
        self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(tag)
    }

    fn remember_verified(&self, tag: [u8; 32]) {
        self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(tag);
    }
}

/// A [`Layer`] that refuses callers without a role; made by [`Authenticator::require`].
#[derive(Debug, Clone)]
pub struct RequireRoleLayer {
    authenticator: Authenticator,
    role: Role,
}

impl<S> Layer<S> for RequireRoleLayer {
    type Service = RequireRole<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireRole { inner, authenticator: self.authenticator.clone(), role: self.role }
    }
}

/// The service [`RequireRoleLayer`] wraps a route in: it answers 401 or 403 itself, and otherwise
/// calls the route with the caller's [`Principal`] in the request extensions.
#[derive(Debug, Clone)]
pub struct RequireRole<S> {
    inner: S,
    authenticator: Authenticator,
    role: Role,
}

impl<S> Service<Request> for RequireRole<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready is the one to call (tower's usual swap).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let authenticator = self.authenticator.clone();
        let role = self.role;
        if is_cross_site_change(&request) {
            return Box::pin(async { Ok(AuthRejection::CrossSite.into_response()) });
        }
        Box::pin(async move {
            match authenticator.authorize(request.headers(), role).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await.map(IntoResponse::into_response)
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

/// Whether `request` would change state (its method is not safe) and a browser sent it from
/// another site's page.
///
/// Browsers attach cached Basic credentials to a cross-site form post, and a form post is a
/// "simple" request that needs no CORS preflight; so without this check any page the user opens
/// could retrain models or acknowledge incidents with their credentials. Browsers mark such
/// requests with `Sec-Fetch-Site: cross-site`, and send an `Origin` with every POST. Clients that
/// are not browsers (curl, Alertmanager, Prometheus) send neither header, so they are not
/// affected. The `Origin` is compared with the `Host` the client asked for: behind a proxy that
/// rewrites `Host`, a browser's post from the exporter's own page is refused too.
fn is_cross_site_change(request: &Request) -> bool {
    if request.method().is_safe() {
        return false;
    }
    let headers = request.headers();
    let cross_site =
        headers.get("sec-fetch-site").is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
        let host = headers.get(header::HOST).and_then(|host| host.to_str().ok());
        // `Origin` is `scheme://host[:port]`, or `null` from an opaque origin (never this server).
        let origin_host = origin.to_str().ok().and_then(|origin| origin.split_once("://")).map(|(_, host)| host);
        !matches!((origin_host, host), (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host))
    });
    cross_site || foreign_origin
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use axum::{Extension, http};
    use tower::ServiceExt as _;

    use super::*;

    const TOKEN: &str = "s3cret-webhook-token";

    /// alice is admin, prometheus is not; Alertmanager's token is in a file beside the config.
    fn authenticator(dir: &Path) -> Authenticator {
        std::fs::write(dir.join("am-token"), format!("{TOKEN}\n")).unwrap();
        let yaml = format!(
            "basic_auth_users:\n  alice: {}\n  prometheus: {}\nadmin_users: [alice]\n\
             webhook_bearer_token_file: am-token\n",
            bcrypt::hash("alice-pw", 4).unwrap(),
            bcrypt::hash("prom-pw", 4).unwrap(),
        );
        let config = WebConfig::parse(&yaml, &dir.join("web.yml")).unwrap();
        Authenticator::new(Some(&config)).unwrap()
    }

    #[tokio::test]
    async fn unknown_users_are_checked_at_the_costliest_configured_hash_and_refused() {
        let user = |hash: &str| BasicAuthUser { bcrypt_hash: hash.to_owned(), admin: false };
        let cheap = std::collections::BTreeMap::from([("a".to_owned(), user("$2y$05$cheap"))]);
        assert_eq!(unknown_user_hash(&cheap), UNKNOWN_USER_HASH, "never cheaper than cost 10");
        let costly = std::collections::BTreeMap::from([
            ("a".to_owned(), user("$2y$05$cheap")),
            ("b".to_owned(), user("$2b$12$costly")),
        ]);
        assert_eq!(unknown_user_hash(&costly), "$2b$12$costly");

        // Checked against bob's hash, an unknown name is still refused with bob's password.
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!("basic_auth_users:\n  bob: {}\n", bcrypt::hash("bob-pw", 11).unwrap());
        let config = WebConfig::parse(&yaml, &dir.path().join("web.yml")).unwrap();
        let app = app(&Authenticator::new(Some(&config)).unwrap());
        let (status, _, _) = call(app.clone(), "GET", "/metrics", Some(&basic("mallory", "bob-pw"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = call(app, "GET", "/metrics", Some(&basic("bob", "bob-pw"))).await;
        assert_eq!(status, StatusCode::OK);
    }

    fn app(auth: &Authenticator) -> Router {
        Router::new()
            .route("/metrics", get(|| async { "metrics" }).layer(auth.require(Role::Reader)))
            .route("/alerts", post(|| async { "recorded" }).layer(auth.require(Role::Webhook)))
            .route(
                "/retrain",
                post(|Extension(principal): Extension<Principal>| async move { format!("{principal:?}") })
                    .layer(auth.require(Role::Admin)),
            )
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn no_credentials_get_401_with_challenge_and_json_error() {
        let dir = tempfile::tempdir().unwrap();
        let (status, headers, body) = call(app(&authenticator(dir.path())), "GET", "/metrics", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="anomaly-exporter""#);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json, serde_json::json!({"error": {"code": "unauthorized", "message": "credentials required"}}));
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_get_401() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&authenticator(dir.path()));
        for authorization in [basic("alice", "nope"), basic("mallory", "alice-pw"), "Digest x".to_owned()] {
            let (status, headers, body) = call(app.clone(), "GET", "/metrics", Some(&authorization)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization}");
            assert!(headers.contains_key(header::WWW_AUTHENTICATE));
            assert!(body.contains(r#""message":"invalid username, password or token""#), "{body}");
        }
    }

    #[tokio::test]
    async fn right_password_gets_200_and_the_principal_reaches_the_handler() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&authenticator(dir.path()));
        let (status, _, body) = call(app.clone(), "GET", "/metrics", Some(&basic("prometheus", "prom-pw"))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "metrics"));
        let (status, _, body) = call(app, "POST", "/retrain", Some(&basic("alice", "alice-pw"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"User { name: "alice", admin: true }"#);
    }

    #[tokio::test]
    async fn non_admin_user_on_admin_route_gets_403() {
        let dir = tempfile::tempdir().unwrap();
        let (status, headers, body) =
            call(app(&authenticator(dir.path())), "POST", "/retrain", Some(&basic("prometheus", "prom-pw"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "forbidden", "message": "this route needs the admin role"}})
        );
    }

    async fn call_with_headers(app: Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_cross_site_post_is_refused_whatever_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&authenticator(dir.path()));
        let alice = basic("alice", "alice-pw");
        let host = ("host", "exporter:10110");
        for (uri, from_elsewhere) in [
            ("/retrain", [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")].as_slice()),
            ("/retrain", &[("sec-fetch-site", "cross-site")]),
            ("/retrain", &[("origin", "https://evil.example")]),
            ("/retrain", &[("origin", "null")]),
            ("/alerts", &[("origin", "http://evil.example")]),
        ] {
            let mut headers = vec![("authorization", alice.as_str()), host];
            headers.extend_from_slice(from_elsewhere);
            let (status, body) = call_with_headers(app.clone(), "POST", uri, &headers).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri} {from_elsewhere:?}: {body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["error"]["code"], "forbidden", "{body}");
            assert!(json["error"]["message"].as_str().unwrap().contains("another site"), "{body}");
        }

        // curl and Alertmanager send neither header; a browser on the exporter's own page sends
        // its own origin; a cross-site link to a page only reads.
        for headers in [
            vec![("authorization", alice.as_str()), host],
            vec![("authorization", alice.as_str()), host, ("origin", "http://Exporter:10110")],
            vec![("authorization", alice.as_str()), host, ("sec-fetch-site", "same-origin")],
        ] {
            let (status, body) = call_with_headers(app.clone(), "POST", "/retrain", &headers).await;
            assert_eq!(status, StatusCode::OK, "{headers:?}: {body}");
        }
        let (status, _) = call_with_headers(
            app,
            "GET",
            "/metrics",
            &[("authorization", alice.as_str()), host, ("sec-fetch-site", "cross-site"), ("origin", "https://grafana")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn webhook_token_opens_the_webhook_only() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&authenticator(dir.path()));
        let bearer = format!("Bearer {TOKEN}");
        let (status, _, body) = call(app.clone(), "POST", "/alerts", Some(&bearer)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "recorded"));
        assert_eq!(call(app.clone(), "POST", "/retrain", Some(&bearer)).await.0, StatusCode::FORBIDDEN);
        assert_eq!(call(app.clone(), "GET", "/metrics", Some(&bearer)).await.0, StatusCode::FORBIDDEN);
        assert_eq!(call(app, "POST", "/alerts", Some("Bearer wrong")).await.0, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn basic_auth_user_may_deliver_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let (status, _, _) =
            call(app(&authenticator(dir.path())), "POST", "/alerts", Some(&basic("prometheus", "prom-pw"))).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn without_users_auth_is_off_and_everyone_is_admin() {
        let config = WebConfig::parse("", Path::new("web.yml")).unwrap();
        let auth = Authenticator::new(Some(&config)).unwrap();
        let (status, _, body) = call(app(&auth), "POST", "/retrain", None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "AuthOff"));
        assert_eq!(call(app(&Authenticator::disabled()), "POST", "/retrain", None).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_verified_password_is_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let auth = authenticator(dir.path());
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        auth.authenticate(&headers(&basic("alice", "alice-pw"))).await.unwrap();
        let credentials = auth.credentials.as_ref().unwrap();
        assert_eq!(credentials.verified.lock().unwrap().order.len(), 1);
        // A second check hits the cache: hold the only bcrypt turn so a miss would wait forever.
        let _turn = credentials.bcrypt_turn.clone().try_acquire_owned().unwrap();
        let principal = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            auth.authenticate(&headers(&basic("alice", "alice-pw"))),
        )
        .await
        .expect("cached check must not wait for bcrypt");
        assert_eq!(principal, Ok(Principal::User { name: "alice".to_owned(), admin: true }));
    }

    #[test]
    fn missing_token_file_names_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let yaml =
            format!("basic_auth_users:\n  a: {}\nwebhook_bearer_token_file: nope\n", bcrypt::hash("x", 4).unwrap());
        let file = dir.path().join("web.yml");
        let config = WebConfig::parse(&yaml, &file).unwrap();
        let text = Authenticator::new(Some(&config)).unwrap_err().to_string();
        assert_eq!(
            text,
            format!(
                "web.config.file {}: webhook_bearer_token_file: {}: no such file",
                file.display(),
                dir.path().join("nope").display()
            )
        );
    }

    #[test]
    fn verified_cache_is_bounded() {
        let mut cache = VerifiedCache::default();
        for i in 0..(VERIFIED_CACHE_CAPACITY + 10) {
            let mut tag = [0u8; 32];
            tag[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(tag);
        }
        assert_eq!(cache.tags.len(), VERIFIED_CACHE_CAPACITY);
        assert!(!cache.contains(&[0u8; 32]));
    }
}
