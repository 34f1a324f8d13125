//! Serving a router over HTTP, or HTTPS when the web config has `tls_server_config`, until a
//! shutdown signal, then letting open requests finish.
//!
//! We drive hyper's HTTP/1 connections ourselves rather than through `axum::serve`, because that
//! sets no timer: without one hyper's header-read timeout never fires, so a client that sends half
//! a request head, or an idle keep-alive connection, would hold a file descriptor forever, and
//! nothing bounds how many such connections there are. Every connection here, TLS handshake
//! included, holds one of [`MAX_CONNECTIONS`] permits: past the cap, new connections wait in the
//! kernel's accept queue instead of using up the process's descriptors. Limits on what a
//! connection does once its request head is in (a body sent slowly, an answer not read) are not
//! ours: the graceful shutdown's grace in `run` bounds those at stop.
//!
//! TLS uses rustls with the aws-lc-rs provider (the one reqwest already builds), passed
//! explicitly rather than installed process-wide. The certificate and key are read once at start:
//! unlike exporter-toolkit, which re-reads them on every handshake, a rotated certificate needs a
//! restart. Handshakes run in their connection's own task with a timeout, so a slow or silent
//! client never holds up the others. We speak HTTP/1.1 only (ALPN says so).
//!
//! This module does not authenticate; routes do that with [`super::auth`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_service::Service as _;

use super::web_config::{ClientAuth, TlsVersion, WebConfig, WebError, describe_io};

/// How long a client has to finish the TLS handshake before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may go without a complete request head: from its start (after the TLS
/// handshake) and again from the end of each answer. hyper starts this clock as soon as it waits
/// for a head, so it is also how long an idle keep-alive connection stays open. Prometheus and
/// Alertmanager open a new connection when theirs was closed, at the cost of one handshake.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections (TLS handshakes included) are served at once. The usual soft
/// `RLIMIT_NOFILE` is 1024, and the daemon needs the rest for `/logs` files, datasets, the
/// incident journal and its own requests to Prometheus and Slack.
pub const MAX_CONNECTIONS: usize = 512;

/// How long and how many connections the server keeps open; tests shrink them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) handshake_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

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
    serve_listener_with_limits(router, listener, web_config, ConnectionLimits::default(), shutdown).await
}

/// [`serve_listener`] with the given connection limits.
pub(crate) async fn serve_listener_with_limits(
    router: Router,
    listener: TcpListener,
    web_config: Option<&WebConfig>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let address = listener.local_addr().map_err(WebError::Serve)?;
    let router = match web_config {
        Some(config) if !config.response_headers().is_empty() => {
            with_response_headers(router, config.response_headers().clone())
        }
        _ => router,
    };
    let tls = match web_config.map(rustls_server_config).transpose()?.flatten() {
        None => {
            if web_config.is_some_and(WebConfig::basic_auth_enabled) {
                tracing::warn!(%address, "basic auth over plain http sends passwords in clear text; set tls_server_config");
            }
            tracing::info!(%address, "listening on http");
            None
        }
        Some(tls_config) => {
            tracing::info!(%address, "listening on https");
            Some(TlsAcceptor::from(tls_config))
        }
    };
    serve_connections(listener, router, tls, limits, shutdown).await;
    Ok(())
}

/// Accepts connections while a permit is free, serves each in its own task, and after `shutdown`
/// stops accepting and waits for the open connections to end gracefully.
///
/// The tasks live in a `JoinSet`, so if the caller stops waiting (the grace in `run` ran out) and
/// drops this future, they are aborted with it rather than left running.
async fn serve_connections(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop_signal) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // The permit is taken before `accept`: past the cap, connections stay in the kernel's
        // queue and use none of our descriptors.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    handle_accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        set_nodelay(&tcp);
        let connection =
            Connection { router: router.clone(), limits, stop_signal: stop_signal.clone(), _permit: permit };
        connections.spawn(connection.serve(tcp, peer, tls.clone()));
        // Reap the connections that ended, so the set holds no more than the open ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tracing::debug!(open = connections.len(), "stopped accepting; waiting for open connections");
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
}

/// What one connection's task needs: the router, the limits, the stop signal, and the permit it
/// holds until it ends.
struct Connection {
    router: Router,
    limits: ConnectionLimits,
    stop_signal: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(mut self, tcp: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve_http(TokioIo::new(tcp), peer).await;
        };
        let handshake = handshake(acceptor, tcp, peer, self.limits.handshake_timeout);
        let stream = tokio::select! {
            stream = handshake => stream,
            // A connection still in its handshake has no request to finish.
            () = stopping(&mut self.stop_signal) => None,
        };
        if let Some(stream) = stream {
            self.serve_http(TokioIo::new(stream), peer).await;
        }
    }

    /// Serves HTTP/1 requests on `io` until the client closes, a timeout closes it, or the stop
    /// signal ends it after its current request.
    async fn serve_http<Io>(mut self, io: Io, peer: SocketAddr)
    where
        Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let router = self.router;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            // Routers are always ready; `call` on a clone is what `axum::serve` does too.
            let response: axum::routing::future::RouteFuture<Infallible> = router.clone().call(request.map(Body::new));
            response
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout);
        let mut connection = pin!(builder.serve_connection(io, service));
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = stopping(&mut self.stop_signal) => {
                // Closes the connection now if it is idle, or after the answer it is writing.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            // Timeouts, resets and malformed requests are the client's business.
            tracing::trace!(%peer, error = %e, "connection ended with an error");
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

/// Completes once the server is stopping.
async fn stopping(stop_signal: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across the caller's awaits.
    let _ = stop_signal.wait_for(|stopping| *stopping).await;
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
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

    /// Limits small enough for a test to see them act; `max_connections` as the test needs.
    fn quick_limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            max_connections,
        }
    }

    /// Serves a `/-/healthy` router on a loopback port with `limits` until the returned sender
    /// fires or is dropped.
    async fn start_healthy(
        web_config: Option<WebConfig>,
        limits: ConnectionLimits,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), WebError>>) {
        let router = Router::new().route("/-/healthy", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve_listener_with_limits(router, listener, web_config.as_ref(), limits, async {
                let _ = stopped.await;
            })
            .await
        });
        (address, stop, server)
    }

    /// Everything the server sends until it closes the connection, or `None` if it is still open
    /// after `within`.
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
        use tokio::io::AsyncReadExt as _;
        let mut received = Vec::new();
        match tokio::time::timeout(within, stream.read_to_end(&mut received)).await {
            Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn a_half_sent_request_head_is_closed_after_the_header_read_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = start_healthy(None, quick_limits(8)).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        // No blank line: the head never ends.
        stream.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let received = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(received.is_some(), "the connection is still open 5 s after a 300 ms header-read timeout");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = start_healthy(None, quick_limits(8)).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let received = read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .expect("the idle keep-alive connection is still open 5 s after a 300 ms header-read timeout");
        assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");
        assert!(received.ends_with("ok"), "{received}");
    }

    #[tokio::test]
    async fn a_connection_past_the_cap_waits_until_one_closes() {
        use tokio::io::AsyncWriteExt as _;
        let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(30), ..quick_limits(1) };
        let (address, stop, server) = start_healthy(None, limits).await;
        let holder = TcpStream::connect(address).await.unwrap();
        let mut waiting = TcpStream::connect(address).await.unwrap();
        waiting.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        assert_eq!(
            read_until_closed(&mut waiting, Duration::from_millis(500)).await,
            None,
            "a second connection was served while the only permit was held"
        );

        drop(holder);
        let received = read_until_closed(&mut waiting, Duration::from_secs(5))
            .await
            .expect("the waiting connection is not served once the first one closed");
        assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_pending_tls_handshake_holds_a_permit_and_is_dropped_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (config, ca_pem) = tls_web_config(dir.path());
        let limits = ConnectionLimits { handshake_timeout: Duration::from_secs(30), ..quick_limits(1) };
        let (address, stop, server) = start_healthy(Some(config), limits).await;
        // A client that connects and never says hello.
        let silent = TcpStream::connect(address).await.unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let url = format!("https://{address}/-/healthy");
        let request = client.get(&url).basic_auth("alice", Some("alice-pw")).send();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), request).await.is_err(),
            "a handshake was served while the only permit was held by another"
        );

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
        drop(silent);
    }

    #[tokio::test]
    async fn a_silent_tls_client_is_dropped_after_the_handshake_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = tls_web_config(dir.path());
        let (address, _stop, _server) = start_healthy(Some(config), quick_limits(8)).await;
        let mut silent = TcpStream::connect(address).await.unwrap();
        let received = read_until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(received.is_some(), "the silent client is still connected 5 s after a 300 ms handshake timeout");
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
