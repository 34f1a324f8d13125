//! Serving a router over HTTP, or HTTPS when the web config has `tls_server_config`, until a
//! shutdown signal; both paths go through `axum::serve` and its graceful shutdown.
//!
//! TLS uses rustls with the aws-lc-rs provider (the one reqwest already builds), passed
//! explicitly rather than installed process-wide. The certificate and key are read once at start:
//! unlike exporter-toolkit, which re-reads them on every handshake, a rotated certificate needs a
//! restart. Handshakes run in their own tasks with a timeout, so a slow or silent client never
//! holds up the others. We speak HTTP/1.1 only (ALPN says so).
//!
//! This module does not authenticate; routes do that with [`super::auth`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::serve::{Listener, ListenerExt as _};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::web_config::{ClientAuth, TlsVersion, WebConfig, WebError, describe_io};

/// How long a client has to finish the TLS handshake before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` and serves `router` on it until `shutdown` completes, then lets open requests
/// finish. Plain HTTP without `tls_server_config`, HTTPS with it; `http_server_config.headers`
/// are added to every response.
pub async fn serve(
    router: Router,
    listen: SocketAddr,
    web_config: Option<&WebConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let listener = TcpListener::bind(listen).await.map_err(|source| WebError::Bind { address: listen, source })?;
    serve_listener(router, listener, web_config, shutdown).await
}

/// [`serve`] on a listener the caller already bound: for port 0 in tests, or to log the address.
pub async fn serve_listener(
    router: Router,
    listener: TcpListener,
    web_config: Option<&WebConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let address = listener.local_addr().map_err(WebError::Serve)?;
    let router = match web_config {
        Some(config) if !config.response_headers().is_empty() => {
            with_response_headers(router, config.response_headers().clone())
        }
        _ => router,
    };
    match web_config.map(rustls_server_config).transpose()?.flatten() {
        None => {
            if web_config.is_some_and(WebConfig::basic_auth_enabled) {
                tracing::warn!(%address, "basic auth over plain http sends passwords in clear text; set tls_server_config");
            }
            tracing::info!(%address, "listening on http");
            let listener = listener.tap_io(|tcp| set_nodelay(tcp));
            axum::serve(listener, router).with_graceful_shutdown(shutdown).await.map_err(WebError::Serve)
        }
        Some(tls_config) => {
            tracing::info!(%address, "listening on https");
            let listener =
                TlsListener { tcp: listener, acceptor: TlsAcceptor::from(tls_config), handshakes: JoinSet::new() };
            axum::serve(listener, router).with_graceful_shutdown(shutdown).await.map_err(WebError::Serve)
        }
    }
}

/// Builds the rustls configuration from `tls_server_config`, reading the certificate, key and
/// client CA files; `None` when the web config has no TLS.
pub fn rustls_server_config(web_config: &WebConfig) -> Result<Option<Arc<rustls::ServerConfig>>, WebError> {
    let Some(tls) = web_config.tls_server_config() else {
        return Ok(None);
    };
    let invalid = |key: &str, problem: String| WebError::Invalid {
        file: web_config.file().to_path_buf(),
        key: format!("tls_server_config.{key}"),
        problem,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(TlsVersion::Tls12, &rustls::version::TLS12), (TlsVersion::Tls13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(version, _)| (tls.min_version..=tls.max_version).contains(version))
            .map(|(_, supported)| supported)
            .collect();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("min_version", e.to_string()))?;
    let builder = match (tls.client_auth, &tls.client_ca_file) {
        (ClientAuth::NoClientCert, _) | (_, None) => builder.with_no_client_auth(),
        (policy, Some(ca_file)) => {
            let problem = |detail: String| invalid("client_ca_file", format!("{}: {detail}", ca_file.display()));
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(ca_file).map_err(problem)? {
                roots.add(certificate).map_err(|e| problem(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier =
                if policy == ClientAuth::VerifyClientCertIfGiven { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| problem(e.to_string()))?)
        }
    };
    let chain = read_certificates(&tls.cert_file)
        .map_err(|detail| invalid("cert_file", format!("{}: {detail}", tls.cert_file.display())))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| invalid("key_file", format!("{}: {}", tls.key_file.display(), describe_pem(&e))))?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid("key_file", format!("{}: does not fit cert_file: {e}", tls.key_file.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Reads every certificate of a PEM file; an empty file is an error.
fn read_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| describe_pem(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| describe_pem(&e))?;
    if certificates.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    Ok(certificates)
}

fn describe_pem(error: &rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(io_error) => describe_io(io_error),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind found".to_owned(),
        other => format!("invalid PEM: {other}"),
    }
}

/// Adds the configured headers to every response that did not set them: exporter-toolkit sets
/// them before the handler runs, so a handler's own value wins there too.
fn with_response_headers(router: Router, headers: HeaderMap) -> Router {
    let headers = Arc::new(headers);
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let headers = Arc::clone(&headers);
        async move {
            let mut response = next.run(request).await;
            for (name, value) in headers.iter() {
                if !response.headers().contains_key(name) {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
            }
            response
        }
    }))
}

fn set_nodelay(tcp: &TcpStream) {
    // Responses are small and written at once; Nagle would only add latency.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::trace!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// A listener that hands `axum::serve` connections whose TLS handshake has finished.
///
/// Handshakes run in a `JoinSet` owned by the listener: they progress concurrently, and when
/// graceful shutdown drops the listener the unfinished ones are aborted with it.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        set_nodelay(&tcp);
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(handshake(acceptor, tcp, peer));
                    }
                    Err(e) => handle_accept_error(e).await,
                },
                Some(finished) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = finished {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        // A client's failed handshake is its own problem (wrong CA, port scan): debug, not warn.
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "tls handshake timed out");
            None
        }
    }
}

/// axum's own policy for accept errors: a connection that died before we took it is skipped;
/// anything else (out of file descriptors) is logged and retried after a pause.
async fn handle_accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::routing::get;
    use tokio::sync::oneshot;

    use super::*;
    use crate::web::auth::{Authenticator, Role};

    /// Writes a self-signed certificate for 127.0.0.1 and its key beside a web config that uses
    /// them (by relative path) with one basic-auth user; returns the config and the certificate.
    fn tls_web_config(dir: &Path) -> (WebConfig, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.join("server.crt"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), certified.signing_key.serialize_pem()).unwrap();
        let yaml = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: {}\n",
            bcrypt::hash("alice-pw", 4).unwrap()
        );
        let file = dir.join("web.yml");
        std::fs::write(&file, yaml).unwrap();
        (WebConfig::load(&file).unwrap(), certified.cert.pem())
    }

    #[tokio::test]
    async fn https_with_basic_auth_serves_and_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let (config, ca_pem) = tls_web_config(dir.path());
        config.check().unwrap();
        let auth = Authenticator::new(Some(&config)).unwrap();
        let router = Router::new().route("/metrics", get(|| async { "up 1\n" }).layer(auth.require(Role::Reader)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve_listener(router, listener, Some(&config), async {
                let _ = stopped.await;
            })
            .await
        });

        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let url = format!("https://{address}/metrics");
        let response = client.get(&url).basic_auth("alice", Some("alice-pw")).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.headers()["x-frame-options"], "deny");
        assert_eq!(response.text().await.unwrap(), "up 1\n");

        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], r#"Basic realm="anomaly-exporter""#);

        // Plain HTTP on the TLS port gets no answer it could mistake for success.
        let plain = reqwest::Client::new().get(format!("http://{address}/metrics")).send().await;
        assert!(plain.is_err() || !plain.unwrap().status().is_success());

        drop(client);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn required_client_certificate_is_verified_against_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let server_cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.path().join("server.crt"), server_cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_cert.signing_key.serialize_pem()).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let client_ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("clients-ca.crt"), client_ca.pem()).unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(vec!["prometheus".to_owned()]).unwrap();
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &client_ca).unwrap();
        let file = dir.path().join("web.yml");
        std::fs::write(
            &file,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n",
        )
        .unwrap();
        let config = WebConfig::load(&file).unwrap();

        let router = Router::new().route("/-/healthy", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve_listener(router, listener, Some(&config), async {
                let _ = stopped.await;
            })
            .await
        });
        let trusted = || {
            reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(server_cert.cert.pem().as_bytes()).unwrap()])
        };
        let url = format!("https://{address}/-/healthy");
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", client_cert.pem(), client_key.serialize_pem()).as_bytes())
                .unwrap();
        let with_certificate = trusted().identity(identity).build().unwrap();
        assert_eq!(with_certificate.get(&url).send().await.unwrap().text().await.unwrap(), "ok");
        let without_certificate = trusted().build().unwrap();
        assert!(without_certificate.get(&url).send().await.is_err());

        drop(with_certificate);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn plain_http_serves_and_shuts_down() {
        let router = Router::new().route("/-/healthy", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(router, listener, None, async {
            let _ = stopped.await;
        }));
        let body = reqwest::get(format!("http://{address}/-/healthy")).await.unwrap().text().await.unwrap();
        assert_eq!(body, "ok");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    }

    #[test]
    fn missing_certificate_names_file_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yml");
        let config =
            WebConfig::parse("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n", &file).unwrap();
        let text = rustls_server_config(&config).unwrap_err().to_string();
        assert_eq!(
            text,
            format!(
                "web.config.file {}: tls_server_config.cert_file: {}: no such file",
                file.display(),
                dir.path().join("server.crt").display()
            )
        );
    }

    #[test]
    fn key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = tls_web_config(dir.path());
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("server.key"), other.serialize_pem()).unwrap();
        let text = rustls_server_config(&config).unwrap_err().to_string();
        assert!(text.contains("tls_server_config.key_file: "), "{text}");
        assert!(text.contains("does not fit cert_file"), "{text}");
    }

    #[tokio::test]
    async fn bind_failure_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap();
        let error = serve(Router::new(), address, None, async {}).await.unwrap_err();
        assert!(error.to_string().starts_with(&format!("web.listen-address {address}: ")), "{error}");
    }
}
