//! Starting and stopping the fleet: sockets, the per-service tick loops, the fault schedule.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::control::{FleetState, control_router};
use super::exposition::{self, CONTENT_TYPE};
use super::fault::{Fault, FaultBook, FaultKind, FaultRequest};
use super::logs::{LogFile, ServiceIdentity, render_line};
use super::model::{ServiceModel, ServiceProfile};
use super::{FleetOptions, SimulateError};

/// Where to find one running service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEndpoint {
    /// The service's name, its `application` label.
    pub name: String,
    /// The address it listens on.
    pub address: SocketAddr,
    /// The URL of its `/actuator/prometheus`.
    pub metrics_url: String,
    /// The file it logs to.
    pub log_file: PathBuf,
}

/// A running fleet. Dropping it stops the fleet; [`FleetHandle::shutdown`] also waits until the
/// servers are closed and the logs are flushed.
#[derive(Debug)]
pub struct FleetHandle {
    state: Arc<FleetState>,
    control_address: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FleetHandle {
    /// The services, in the order they were started.
    pub fn services(&self) -> &[ServiceEndpoint] {
        &self.state.services
    }

    /// The base URL of the control API, such as `http://127.0.0.1:10111`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_address)
    }

    /// The address of the control API.
    pub fn control_address(&self) -> SocketAddr {
        self.control_address
    }

    /// Injects a fault now, as `POST /faults` does.
    pub fn inject_fault(&self, request: FaultRequest) -> Result<Fault, SimulateError> {
        self.state.faults.inject(request, SystemTime::now())
    }

    /// Ends a fault before its time, as `DELETE /faults/{id}` does.
    pub fn stop_fault(&self, id: u64) -> Result<Fault, SimulateError> {
        self.state.faults.stop(id, SystemTime::now())
    }

    /// The faults in progress.
    pub fn active_faults(&self) -> Vec<Fault> {
        self.state.faults.active(SystemTime::now())
    }

    /// Stops the servers, the tick loops and the schedule, and waits for them to finish.
    pub async fn shutdown(mut self) -> Result<(), SimulateError> {
        // Ignored: an error means every receiver is gone, so nothing is left to stop.
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::warn!(error = %error, "fleet task ended abnormally");
            }
        }
        Ok(())
    }
}

impl Drop for FleetHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// One service's shared state: the model the tick loop advances and the scrape reads.
#[derive(Debug)]
struct ServiceRuntime {
    model: Mutex<ServiceModel>,
}

impl ServiceRuntime {
    fn model(&self) -> MutexGuard<'_, ServiceModel> {
        // Every update of the model completes inside one call, so a poisoned lock still holds a
        // consistent state.
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the fleet: binds every port first (so a taken port fails fast), then starts the
/// services, their tick loops, the control API and the fault schedule.
pub async fn start(options: FleetOptions) -> Result<FleetHandle, SimulateError> {
    options.validate()?;
    let mut seeds = StdRng::seed_from_u64(options.seed);
    let profiles: Vec<ServiceProfile> =
        (0..options.services).map(|i| ServiceProfile::generate(i, &mut seeds)).collect();

    let control_listener = bind(options.listen_address).await?;
    let control_address = local_address(&control_listener, options.listen_address)?;
    let mut service_listeners = Vec::with_capacity(profiles.len());
    let mut endpoints = Vec::with_capacity(profiles.len());
    for (index, profile) in profiles.iter().enumerate() {
        let port = if options.base_port == 0 { 0 } else { options.base_port + index as u16 };
        let wanted = SocketAddr::new(options.listen_address.ip(), port);
        let listener = bind(wanted).await?;
        let address = local_address(&listener, wanted)?;
        endpoints.push(ServiceEndpoint {
            name: profile.name.clone(),
            address,
            metrics_url: format!("http://{address}/actuator/prometheus"),
            log_file: options.log_dir.join(&profile.name).join("app.log"),
        });
        service_listeners.push(listener);
    }

    let names = endpoints.iter().map(|endpoint| endpoint.name.clone()).collect();
    let state = Arc::new(FleetState {
        faults: FaultBook::new(names),
        services: endpoints,
        slack_posts: std::sync::Mutex::new(std::collections::VecDeque::new()),
    });
    let (shutdown, shutdown_signal) = watch::channel(false);
    let mut tasks = Vec::new();
    let started_at = SystemTime::now();
    for ((profile, listener), endpoint) in profiles.into_iter().zip(service_listeners).zip(&state.services) {
        let identity = ServiceIdentity { name: profile.name.clone(), pid: profile.pid };
        let mut model = ServiceModel::new(profile, seeds.random(), started_at);
        let mut log_file = LogFile::open(&endpoint.log_file, options.log_max_file_bytes, options.log_max_files).await?;
        let startup: Vec<String> = model
            .startup_events(endpoint.address.port())
            .iter()
            .map(|event| render_line(event, options.log_format, &identity))
            .collect();
        log_file.append(&startup).await?;
        let runtime = Arc::new(ServiceRuntime { model: Mutex::new(model) });
        tasks.push(tokio::spawn(serve(listener, service_router(runtime.clone()), shutdown_signal.clone())));
        let ticker = Ticker { runtime, log_file, identity, fleet: state.clone(), options: options.clone() };
        tasks.push(tokio::spawn(ticker.run(shutdown_signal.clone())));
        tracing::info!(service = %endpoint.name, url = %endpoint.metrics_url, log_file = %endpoint.log_file.display(), "service started");
    }

    tasks.push(tokio::spawn(serve(control_listener, control_router(state.clone()), shutdown_signal.clone())));
    if let Some(every) = options.fault_every {
        let schedule = FaultSchedule {
            fleet: state.clone(),
            every,
            duration: options.fault_duration,
            rng: StdRng::seed_from_u64(seeds.random()),
        };
        tasks.push(tokio::spawn(schedule.run(shutdown_signal)));
    }
    tracing::info!(url = %format!("http://{control_address}"), "control api started");
    Ok(FleetHandle { state, control_address, shutdown, tasks })
}

async fn bind(address: SocketAddr) -> Result<TcpListener, SimulateError> {
    TcpListener::bind(address).await.map_err(|source| SimulateError::Bind { address, reason: source })
}

fn local_address(listener: &TcpListener, wanted: SocketAddr) -> Result<SocketAddr, SimulateError> {
    listener.local_addr().map_err(|source| SimulateError::Bind { address: wanted, reason: source })
}

async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let stopped = async move {
        // Either the flag turned true or the handle is gone: both mean stop.
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
        tracing::warn!(error = %error, "server stopped with an error");
    }
}

/// The routes of one service: `/actuator/prometheus` and `/actuator/health`.
fn service_router(runtime: Arc<ServiceRuntime>) -> Router {
    Router::new()
        .route("/actuator/prometheus", get(scrape))
        .route("/actuator/health", get(|| async { Json(serde_json::json!({"status": "UP"})) }))
        .with_state(runtime)
}

async fn scrape(State(runtime): State<Arc<ServiceRuntime>>) -> impl IntoResponse {
    let text = exposition::render(&runtime.model());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// Advances one service every tick and appends what it logged.
struct Ticker {
    runtime: Arc<ServiceRuntime>,
    log_file: LogFile,
    identity: ServiceIdentity,
    fleet: Arc<FleetState>,
    options: FleetOptions,
}

impl Ticker {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.options.tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut log_failing = false;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let lines = self.advance();
            match self.log_file.append(&lines).await {
                Ok(()) => log_failing = false,
                Err(error) => {
                    // Once per failure streak: a full disk must not flood the daemon's own log.
                    if !log_failing {
                        tracing::warn!(service = %self.identity.name, error = %error, "cannot write service log; lines are dropped");
                    }
                    log_failing = true;
                }
            }
        }
    }

    fn advance(&self) -> Vec<String> {
        let now = SystemTime::now();
        let faults = self.fleet.faults.active_in(&self.identity.name, now);
        let events = self.runtime.model().advance(now, self.options.day_length, &faults);
        events.iter().map(|event| render_line(event, self.options.log_format, &self.identity)).collect()
    }
}

/// Injects a fault of a random kind into a random service at a fixed period, so a demo shows
/// incidents without anyone clicking.
struct FaultSchedule {
    fleet: Arc<FleetState>,
    every: Duration,
    duration: Duration,
    rng: StdRng,
}

impl FaultSchedule {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + self.every, self.every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let names = self.fleet.faults.service_names();
            let service = names[self.rng.random_range(0..names.len())].clone();
            let kind = FaultKind::ALL[self.rng.random_range(0..FaultKind::ALL.len())];
            let request =
                FaultRequest { service, kind, duration_seconds: self.duration.as_secs_f64(), magnitude: None };
            match self.fleet.faults.inject(request, SystemTime::now()) {
                Ok(fault) => {
                    tracing::info!(id = fault.id, service = %fault.service, kind = kind.name(), "scheduled fault injected")
                }
                Err(error) => tracing::warn!(error = %error, "scheduled fault refused"),
            }
        }
    }
}
