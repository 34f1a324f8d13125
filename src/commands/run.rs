//! `anomaly-exporter run` (the default command): the daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use prometheus_client::registry::Registry;
use tracing::info;

use crate::alerts::slack::SlackNotifier;
use crate::alerts::{AlertsState, IncidentStore};
use crate::config::{Config, ConfigError};
use crate::engine::Engine;
use crate::export::{ScoresCollector, SelfMetrics, SnapshotCell};
use crate::logs::LogIndex;
use crate::source::{PrometheusClient, SourceError};
use crate::web::auth::{Authenticator, Role};
use crate::web::logs::LogsState;
use crate::web::retrain::retrain_routes;
use crate::web::router::{AppState, router};
use crate::web::serve::serve_listener;
use crate::web::web_config::{WebConfig, WebError};

/// How long open requests may run on after SIGTERM before the daemon stops waiting for them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the incidents journal is compacted (and old resolved incidents dropped); once at
/// start too, which folds the files of every notification since the last run into one.
const INCIDENT_COMPACTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The default address: outside 9100–9999, which Prometheus's port allocation list has filled.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:10110";

/// Flags of `run`; the pipeline itself is described by the config file.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The YAML configuration file.
    #[arg(long = "config.file", default_value = "anomaly-exporter.yml")]
    pub config_file: PathBuf,
    /// Address to listen on for the web interface and telemetry.
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN_ADDRESS, value_parser = parse_listen_address)]
    pub listen_address: SocketAddr,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,
    /// Exporter-toolkit web configuration (TLS, basic auth with bcrypt hashes), as node_exporter takes.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
}

/// The paths the daemon serves besides the telemetry path (`web::router`, `web::retrain`,
/// `alerts::routes`): the telemetry path may be none of them and lie under none of them.
const SERVED_PATHS: [&str; 6] = ["/-", "/services", "/logs", "/alerts", "/incidents", "/retrain"];

/// A telemetry path is a plain path of letters, digits and `-._~`, so that the router takes it
/// as written (`:name`, `{name}` and `*` would make it a pattern, or a route it refuses with a
/// panic), and does not collide with a path the daemon serves.
fn parse_telemetry_path(text: &str) -> Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if !text.starts_with('/') || text.len() < 2 || !text.chars().all(plain) || text.contains("//") {
        return Err(format!(
            "{text:?}: must be a path such as /metrics: '/' then segments of letters, digits and -._~"
        ));
    }
    let trimmed = text.trim_end_matches('/');
    let clash = SERVED_PATHS
        .iter()
        .find(|&&served| trimmed == served || trimmed.strip_prefix(served).is_some_and(|rest| rest.starts_with('/')));
    match clash {
        Some(served) => Err(format!("{text:?}: clashes with {served}, which the daemon serves itself")),
        None => Ok(text.to_owned()),
    }
}

/// Why the daemon could not start (exit code 2: the configuration) or stopped (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The source could not be set up (secret files, CA file).
    #[error("config: {0}")]
    Source(#[from] SourceError),
    /// The web configuration file was refused.
    #[error(transparent)]
    WebConfig(WebError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The incidents journal could not be read at start.
    #[error("{0}")]
    Incidents(crate::alerts::journal::JournalError),
    /// The server failed while running.
    #[error("web server failed: {0}")]
    Serve(WebError),
    /// The datasets directory (`datasets.path`) could not be opened, or another process has it.
    #[error("datasets.path: {0}")]
    Datasets(#[from] crate::store::StoreError),
    /// The incidents directory could not be opened, or another process has it.
    #[error("alerts.incidents_dir: {0}")]
    IncidentsDirectory(crate::store::StoreError),
}

impl RunError {
    /// 2 for mistakes in the configuration or flags, 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_)
            | RunError::Source(_)
            | RunError::WebConfig(_)
            | RunError::Listen { .. }
            | RunError::Datasets(_)
            | RunError::IncidentsDirectory(_) => 2,
            RunError::Serve(_) | RunError::Incidents(_) => 1,
        }
    }
}

/// Loads and checks the configuration and the web configuration without starting anything
/// (`check-config`), opening every file they name.
pub fn check_config(args: &RunArgs) -> Result<(Config, Option<WebConfig>), RunError> {
    let config = Config::load(&args.config_file)?;
    PrometheusClient::new(&config.source)?;
    // The Slack URL is read at start: a missing file or variable must fail `check-config` too.
    if let Some(slack) = &config.alerts.slack {
        slack.webhook_url().map_err(|problem| ConfigError::Invalid { key: "alerts.slack".into(), problem })?;
    }
    let web_config = match &args.web_config_file {
        Some(path) => {
            let web_config = WebConfig::load(path).map_err(RunError::WebConfig)?;
            web_config.check().map_err(RunError::WebConfig)?;
            Some(web_config)
        }
        None => None,
    };
    Ok((config, web_config))
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let (config, web_config) = check_config(&args)?;
    let config = Arc::new(config);
    let authenticator = Authenticator::new(web_config.as_ref()).map_err(RunError::WebConfig)?;
    let client = PrometheusClient::new(&config.source)?;
    // Held until `run` returns: a second daemon on the same directories stops here, before it
    // has read or written anything.
    let _directory_locks = lock_directories(&config)?;
    let snapshot = Arc::new(SnapshotCell::default());
    let mut registry = Registry::default();
    let metrics = SelfMetrics::register(&mut registry);
    let log_index = config.logs.clone().map(|settings| Arc::new(LogIndex::from_settings(settings)));
    registry.register_collector(Box::new(ScoresCollector::new(Arc::clone(&snapshot), config.interval.as_secs_f64())));
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(args.listen_address)
        .await
        .map_err(|source| RunError::Listen { address: args.listen_address, source })?;
    let local = listener.local_addr().map_err(|source| RunError::Listen { address: args.listen_address, source })?;
    let tls = web_config.as_ref().is_some_and(|w| w.tls_server_config().is_some());
    info!(address = %local, tls, telemetry_path = %args.telemetry_path, signals = config.signals.len(), "listening");

    let state = AppState {
        snapshot: Arc::clone(&snapshot),
        registry: Arc::new(registry),
        ready: Arc::clone(&ready),
        telemetry_path: args.telemetry_path.clone(),
        logs: log_index.clone().map(|index| Arc::new(LogsState::new(index, metrics.logs.clone()))),
    };
    let incidents_dir = config.alerts.incidents_dir_in(&config.datasets.path);
    let incidents = IncidentStore::open(&incidents_dir).map_err(RunError::Incidents)?;
    let slack = match &config.alerts.slack {
        Some(slack) => {
            let url = slack
                .webhook_url()
                .map_err(|problem| RunError::Config(ConfigError::Invalid { key: "alerts.slack".into(), problem }))?;
            // Before the webhook is served: the notifier learns from the journal which incidents
            // it posted before this start, so their resolutions are posted, and queues again what
            // Slack had not received.
            let recorded = incidents.events_in_recorded_order();
            Some(SlackNotifier::start(slack, url, log_index.clone(), metrics.slack.clone(), &recorded, &incidents_dir))
        }
        None => {
            // What is recorded while Slack is off was never queued: enabling Slack later must
            // not take it for owed.
            match crate::alerts::deliveries::remove(&incidents_dir) {
                Ok(true) => info!("slack is not configured: its record of deliveries is removed"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "slack is not configured, and its record of deliveries stays"),
            }
            None
        }
    };
    metrics.webhook.observe_store(&incidents);
    let alerts_state = AlertsState {
        store: Arc::new(incidents),
        max_body_bytes: config.alerts.max_body_bytes,
        slack,
        metrics: metrics.webhook.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(crate::alerts::compact_incidents(
        Arc::clone(&alerts_state.store),
        alerts_state.slack.clone(),
        config.alerts.incident_retention,
        INCIDENT_COMPACTION_EVERY,
        metrics.webhook.clone(),
        stop_rx.clone(),
    ));
    let mut engine = Engine::new(Arc::clone(&config), client, metrics.clone(), snapshot);
    let mut writer_task = None;
    let mut trainer = None;
    if config.datasets.enabled {
        let (sink, task) =
            crate::store::writer::start(&config.datasets, config.detector.window, metrics.datasets.clone()).await?;
        let (swaps, swapped) = tokio::sync::mpsc::unbounded_channel();
        let training = Arc::new(crate::train::Trainer::new(
            crate::store::Datasets::new(&config.datasets.path),
            config.detector.clone(),
            config.datasets.training_window,
            metrics.datasets.clone(),
            swaps,
        ));
        training.load_models().await;
        tokio::spawn(
            Arc::clone(&training).run_schedule(config.datasets.retrain_every, std::time::Duration::from_secs(60)),
        );
        engine = engine.with_store(sink).with_model_swaps(swapped);
        writer_task = Some(task);
        trainer = Some(training);
    }
    let engine_task = tokio::spawn({
        let mut stop = stop_rx.clone();
        let ready = Arc::clone(&ready);
        async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            engine.run_with_ready(stopped, move || ready.store(true, Ordering::Release)).await;
        }
    });

    let mut server_stop = stop_rx.clone();
    let mut drain_stop = stop_rx;
    // Every route, the probes included, needs at least the reader role when basic auth is on,
    // as exporter-toolkit does; the alerting routes carry their own roles (Webhook for
    // `POST /alerts`, Admin to acknowledge or resolve), so they are merged after that layer.
    let mut app = router(state);
    if let Some(trainer) = trainer {
        // Retraining needs the admin role, on top of the reader role every route needs.
        app = app.merge(retrain_routes(trainer).route_layer(authenticator.require(Role::Admin)));
    }
    let app = app
        .layer(authenticator.require(Role::Reader))
        .merge(crate::alerts::routes(alerts_state, &authenticator))
        .layer(axum::middleware::map_response(crate::web::error::json_client_errors));
    let serving = serve_listener(app, listener, web_config.as_ref(), async move {
        let _ = server_stop.wait_for(|stopped| *stopped).await;
    });
    // The graceful shutdown waits for open requests; one that does not end (a client that never
    // reads its answer, a login queued behind slow bcrypt checks) must not keep the daemon from
    // stopping, nor the history it still holds from being flushed below.
    let server = async move {
        tokio::select! {
            served = serving => served,
            () = async move {
                let _ = drain_stop.wait_for(|stopped| *stopped).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "requests still open after the stop signal: closing them");
                Ok(())
            }
        }
    };
    let signals = async {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let (served, ()) = tokio::join!(server, signals);
    let _ = engine_task.await;
    // The engine dropped its sink: the writer flushes what it holds and stops.
    if let Some(task) = writer_task {
        let _ = task.await;
    }
    served.map_err(RunError::Serve)
}

/// `--web.listen-address` as Prometheus and its exporters take it: `host:port` with an IP or a
/// host name (`localhost:9464`), or `:port` for every interface.
fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let with_host = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    if let Ok(address) = with_host.parse::<SocketAddr>() {
        return Ok(address);
    }
    let expected = "expected host:port, e.g. 127.0.0.1:9464, localhost:9464, [::1]:9464 or :9464 for every interface";
    let mut resolved = with_host.to_socket_addrs().map_err(|error| format!("{text:?}: {error}; {expected}"))?;
    resolved.next().ok_or_else(|| format!("{text:?}: the host name resolves to no address; {expected}"))
}

/// Locks the directories this daemon writes: the datasets root when datasets are on, and the
/// incidents directory always (the webhook is always served), even when it sits under the locked
/// datasets root as it does by default (`<datasets>/incidents`). The root's lock alone would not
/// keep out a daemon with `datasets.enabled: false` on the same path, or one whose
/// `alerts.incidents_dir` points into this root: those lock only the incidents directory, and two
/// journals compacting one directory delete each other's events. Only when the incidents
/// directory *is* the root is one lock enough (a second `flock` on the same file from this
/// process would refuse this process itself).
fn lock_directories(config: &Config) -> Result<Vec<crate::store::DirectoryLock>, RunError> {
    let mut locks = Vec::new();
    let incidents = config.alerts.incidents_dir_in(&config.datasets.path);
    if config.datasets.enabled {
        locks.push(crate::store::lock_directory(&config.datasets.path)?);
        if is_same_directory(&incidents, &config.datasets.path) {
            return Ok(locks);
        }
    }
    locks.push(crate::store::lock_directory(&incidents).map_err(RunError::IncidentsDirectory)?);
    Ok(locks)
}

/// Whether two paths name one directory: spelled alike, or resolving to the same place (a
/// directory that does not exist yet is no other one).
fn is_same_directory(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// A config of `datasets:` `yaml` beside `dir` (no Prometheus is reached: nothing runs).
    fn config_with_datasets(dir: &Path, datasets: &str) -> Config {
        let yaml = format!("source: {{url: \"http://127.0.0.1:9\"}}\ndatasets: {datasets}\n");
        Config::from_yaml(&yaml, &dir.join("ae.yml")).unwrap()
    }

    #[test]
    fn a_daemon_without_datasets_on_another_ones_root_is_refused_its_incidents_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("datasets");
        let staging = config_with_datasets(dir.path(), &format!("{{enabled: false, path: {}}}", root.display()));
        let production = config_with_datasets(dir.path(), &format!("{{enabled: true, path: {}}}", root.display()));
        let _held = lock_directories(&staging).unwrap();
        // Before, production locked only the root, and both compacted `<root>/incidents`.
        let refused = lock_directories(&production).unwrap_err();
        assert!(matches!(refused, RunError::IncidentsDirectory(StoreError::Locked { .. })), "{refused:?}");
        assert_eq!(refused.exit_code(), 2);
        drop(_held);
        // And the other way round: the one with datasets on holds its incidents directory too.
        let _held = lock_directories(&production).unwrap();
        let refused = lock_directories(&staging).unwrap_err();
        assert!(matches!(refused, RunError::IncidentsDirectory(StoreError::Locked { .. })), "{refused:?}");
    }

    #[test]
    fn incidents_kept_in_the_datasets_root_itself_take_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("datasets");
        let yaml = format!(
            "source: {{url: \"http://127.0.0.1:9\"}}\ndatasets: {{path: {0}}}\nalerts: {{incidents_dir: {0}}}\n",
            root.display()
        );
        let config = Config::from_yaml(&yaml, &dir.path().join("ae.yml")).unwrap();
        assert_eq!(lock_directories(&config).unwrap().len(), 1);
    }

    #[test]
    fn listen_addresses_are_taken_as_prometheus_takes_them() {
        assert_eq!(parse_listen_address("127.0.0.1:9464"), Ok("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(parse_listen_address("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        assert_eq!(parse_listen_address(":9464"), Ok("0.0.0.0:9464".parse().unwrap()), "every interface");
        assert!(parse_listen_address("localhost:9464").is_ok_and(|a| a.ip().is_loopback() && a.port() == 9464));
        for bad in ["9464", "127.0.0.1", ":", ":99999", "host with spaces:1"] {
            let message = parse_listen_address(bad).unwrap_err();
            assert!(message.contains("expected host:port"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn telemetry_paths_are_plain_and_apart_from_the_daemons_own() {
        for good in ["/metrics", "/probe/metrics", "/custom-metrics_v2.txt", "/metrics/", "/logsx", "/incidents2"] {
            assert_eq!(parse_telemetry_path(good).as_deref(), Ok(good));
        }
        for bad in ["", "/", "metrics", "/:metrics", "/x{", "/a/{id}", "/a*b", "/a b", "/a?b", "//metrics", "/é"] {
            let message = parse_telemetry_path(bad).unwrap_err();
            assert!(message.contains("must be a path"), "{bad:?}: {message}");
        }
        for taken in [
            "/-/ready",
            "/-",
            "/services",
            "/logs",
            "/logs/",
            "/alerts",
            "/incidents",
            "/incidents/1/ack",
            "/retrain/x",
        ] {
            let message = parse_telemetry_path(taken).unwrap_err();
            assert!(message.contains("which the daemon serves itself"), "{taken:?}: {message}");
        }
    }
}
