//! The model of one simulated Spring Boot service: traffic, latency, CPU, heap and log lines.
//!
//! Everything here is plain data advanced by [`ServiceModel::advance`] with an explicit clock and
//! the model's own seeded RNG, with no I/O, so tests replay it exactly. Traffic follows a daily
//! rhythm (a cosine over the configured day, lowest at midnight), each service has its own base
//! levels, and faults bend the numbers and add their characteristic log lines.

use std::collections::BTreeMap;
use std::f64::consts::TAU;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::fault::{Fault, FaultKind};
use super::logs::{Level, LogEvent, LoggedException, TraceContext};

/// Micrometer's timers keep their max over a rotating window (`TimeWindowMax`, two minutes by
/// default); the model rotates every minute and reports the larger of the last two windows.
const MAX_WINDOW_SECONDS: f64 = 60.0;

/// The window over which simulated CPU usage follows traffic, as the JVM's "recent" CPU load does.
const CPU_AVERAGING_SECONDS: f64 = 10.0;

/// Requests logged per second at most, in normal traffic: real services log a sample, not every
/// request, and the log files must stay small in a long demo.
const LOGGED_REQUESTS_PER_SECOND: f64 = 3.0;

/// ERROR lines per tick at most, so a burst on a busy service does not flood the disk.
const MAX_ERROR_LINES_PER_TICK: usize = 50;

/// The port services claim in their own logs, as inside a container.
const INTERNAL_PORT: u16 = 8080;

/// The upper bounds of the latency histogram's buckets, in seconds, without `+Inf`.
///
/// These are Micrometer's percentile-histogram buckets (`PercentileHistogramBuckets`) clipped to
/// a timer's default expected range, 1 ms to 30 s: what Spring Boot publishes with
/// `management.metrics.distribution.percentiles-histogram.http.server.requests=true`.
pub(crate) fn bucket_bounds() -> &'static [f64] {
    static BOUNDS: LazyLock<Vec<f64>> = LazyLock::new(|| {
        const MIN_NANOS: u64 = 1_000_000;
        const MAX_NANOS: u64 = 30_000_000_000;
        let mut nanos: Vec<u64> = vec![1, 2, 3];
        // Micrometer continues to 2^62 ns; buckets past 2^40 ns (18 minutes) are all cut anyway.
        for exponent in (2..40).step_by(2) {
            let mut current = 1u64 << exponent;
            let delta = current / 3;
            let next = (current << 2) - delta;
            while current < next {
                nanos.push(current);
                current += delta;
            }
        }
        // Micrometer also publishes the range's ends as buckets (`le="0.001"`, `le="30.0"`).
        nanos.extend([MIN_NANOS, MAX_NANOS]);
        nanos.sort_unstable();
        nanos.dedup();
        nanos.into_iter().filter(|n| (MIN_NANOS..=MAX_NANOS).contains(n)).map(|n| n as f64 / 1e9).collect()
    });
    &BOUNDS
}

/// What one simulated service is: its names and base levels. Fixed for the service's life.
#[derive(Debug, Clone)]
pub(crate) struct ServiceProfile {
    /// The `application` label and the directory of its logs.
    pub(crate) name: String,
    /// The domain object it serves, singular and plural (`order`, `orders`).
    singular: &'static str,
    plural: &'static str,
    /// Java class prefix (`Order`) and package (`com.example.order`) for loggers and traces.
    class: &'static str,
    pub(crate) main_class: String,
    package: String,
    pub(crate) pid: u32,
    /// Process CPU usage at mean load.
    cpu_base: f64,
    pub(crate) heap_max_bytes: f64,
    old_gen_base_ratio: f64,
    eden_capacity_bytes: f64,
    allocated_bytes_per_request: f64,
    /// Requests per second at mean load.
    request_rate: f64,
    latency_median_seconds: f64,
    /// Spread of the log-normal latency.
    latency_sigma: f64,
    server_error_ratio: f64,
    not_found_ratio: f64,
    rhythm_amplitude: f64,
    /// Where in the day this service peaks, as a fraction of the day.
    rhythm_shift: f64,
}

/// Domains the fleet's services are named after; beyond ten services the names repeat with a
/// numeric suffix (`order-service-2`).
const DOMAINS: [(&str, &str, &str, &str); 10] = [
    ("order-service", "order", "orders", "Order"),
    ("payment-service", "payment", "payments", "Payment"),
    ("inventory-service", "item", "items", "Inventory"),
    ("catalog-service", "product", "products", "Product"),
    ("shipping-service", "shipment", "shipments", "Shipment"),
    ("customer-service", "customer", "customers", "Customer"),
    ("notification-service", "notification", "notifications", "Notification"),
    ("pricing-service", "price", "prices", "Price"),
    ("cart-service", "cart", "carts", "Cart"),
    ("review-service", "review", "reviews", "Review"),
];

impl ServiceProfile {
    /// The `index`-th service of a fleet, with base levels drawn from `rng`.
    pub(crate) fn generate(index: usize, rng: &mut StdRng) -> Self {
        let (base_name, singular, plural, class) = DOMAINS[index % DOMAINS.len()];
        let round = index / DOMAINS.len();
        let name = if round == 0 { base_name.to_string() } else { format!("{base_name}-{}", round + 1) };
        let main_class = base_name.split('-').map(capitalize).collect::<String>() + "Application";
        let heap_max_bytes = [512.0, 1024.0, 2048.0][rng.random_range(0..3)] * 1024.0 * 1024.0;
        let request_rate = rng.random_range(5.0..60.0);
        let eden_capacity_bytes = heap_max_bytes * 0.12;
        // A young collection every 5 to 15 seconds at mean load, as in a healthy G1 heap.
        let allocated_bytes_per_request = eden_capacity_bytes / (request_rate * rng.random_range(5.0..15.0));
        Self {
            name,
            singular,
            plural,
            class,
            main_class,
            package: format!("com.example.{singular}"),
            pid: rng.random_range(1000..60_000),
            cpu_base: rng.random_range(0.05..0.35),
            heap_max_bytes,
            old_gen_base_ratio: rng.random_range(0.2..0.45),
            eden_capacity_bytes,
            allocated_bytes_per_request,
            request_rate,
            latency_median_seconds: rng.random_range(0.015..0.12),
            latency_sigma: rng.random_range(0.3..0.6),
            server_error_ratio: rng.random_range(0.0005..0.003),
            not_found_ratio: rng.random_range(0.005..0.02),
            rhythm_amplitude: rng.random_range(0.4..0.7),
            rhythm_shift: rng.random_range(-0.05..0.05),
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// Micrometer's `outcome` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Success,
    ClientError,
    ServerError,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::ClientError => "CLIENT_ERROR",
            Outcome::ServerError => "SERVER_ERROR",
        }
    }
}

/// The tags of one `http.server.requests` timer. Fields are in the exposition's label order
/// (alphabetical, `error` derived from `exception`), so the derived order sorts series as
/// Micrometer does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RequestLabels {
    /// Simple class name of the exception, or `none`; Boot 3 also writes it as `error`.
    pub(crate) exception: &'static str,
    pub(crate) method: &'static str,
    pub(crate) outcome: Outcome,
    pub(crate) status: u16,
    pub(crate) uri: String,
}

/// One timer: bucket counts (not cumulative; the last one is `+Inf`), sum, count and window max.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestTimer {
    pub(crate) bucket_counts: Vec<u64>,
    pub(crate) sum_seconds: f64,
    pub(crate) count: u64,
    max_current_window: f64,
    max_previous_window: f64,
}

impl RequestTimer {
    fn new() -> Self {
        Self {
            bucket_counts: vec![0; bucket_bounds().len() + 1],
            sum_seconds: 0.0,
            count: 0,
            max_current_window: 0.0,
            max_previous_window: 0.0,
        }
    }

    fn record(&mut self, seconds: f64) {
        let index = bucket_bounds().partition_point(|&bound| bound < seconds);
        self.bucket_counts[index] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
        self.max_current_window = self.max_current_window.max(seconds);
    }

    /// The largest request time in the recent window, as `_max` reports it.
    pub(crate) fn max_seconds(&self) -> f64 {
        self.max_current_window.max(self.max_previous_window)
    }
}

/// The routes each service serves, with their share of traffic and relative cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    List,
    Get,
    Create,
}

impl Route {
    const ALL: [(Route, f64); 3] = [(Route::List, 0.3), (Route::Get, 0.55), (Route::Create, 0.15)];

    fn method(self) -> &'static str {
        match self {
            Route::Create => "POST",
            Route::List | Route::Get => "GET",
        }
    }

    fn latency_factor(self) -> f64 {
        match self {
            Route::List => 1.5,
            Route::Get => 1.0,
            Route::Create => 2.2,
        }
    }

    fn uri(self, plural: &str) -> String {
        match self {
            Route::List | Route::Create => format!("/api/{plural}"),
            Route::Get => format!("/api/{plural}/{{id}}"),
        }
    }
}

/// The exceptions an error burst throws, one per fault: every ERROR line of a burst comes from the
/// same template, which is what log correlation should find.
const BURST_EXCEPTIONS: [(&str, &str, &str); 3] = [
    (
        "org.springframework.dao.DataAccessResourceFailureException",
        "Unable to acquire JDBC Connection [HikariPool-1 - Connection is not available, request timed out after 30000ms (total=10, active=10, idle=0, waiting=42)]",
        "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:686)\n\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:179)\n",
    ),
    (
        "org.springframework.web.client.ResourceAccessException",
        "I/O error on GET request for \"http://inventory-service/api/items\": Connection refused",
        "\tat org.springframework.web.client.RestTemplate.createResourceAccessException(RestTemplate.java:926)\n\tat org.springframework.web.client.RestTemplate.doExecute(RestTemplate.java:906)\n",
    ),
    (
        "java.lang.NullPointerException",
        "Cannot invoke \"com.example.domain.Customer.getAddress()\" because \"customer\" is null",
        "",
    ),
];

/// The rare failure of normal traffic.
const BACKGROUND_EXCEPTION: (&str, &str, &str) = (
    "org.springframework.orm.ObjectOptimisticLockingFailureException",
    "Row was updated or deleted by another transaction (or unsaved-value mapping was incorrect)",
    "\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convertHibernateAccessException(HibernateJpaDialect.java:325)\n",
);

fn simple_class_name(class: &'static str) -> &'static str {
    class.rsplit('.').next().unwrap_or(class)
}

/// The combined effect of the faults active in a service during one tick.
#[derive(Debug, Clone, Default)]
struct FaultEffects {
    latency_factor: f64,
    extra_cpu: f64,
    leaked_share_per_minute: f64,
    burst_error_ratio: f64,
    burst_exception: Option<(&'static str, &'static str, &'static str)>,
}

impl FaultEffects {
    fn of(faults: &[Fault]) -> Self {
        let mut effects = Self { latency_factor: 1.0, ..Self::default() };
        for fault in faults {
            match fault.kind {
                FaultKind::Latency => effects.latency_factor *= fault.magnitude,
                FaultKind::CpuSpike => effects.extra_cpu += fault.magnitude,
                FaultKind::MemoryLeak => effects.leaked_share_per_minute += fault.magnitude,
                FaultKind::ErrorBurst => {
                    if fault.magnitude > effects.burst_error_ratio {
                        effects.burst_error_ratio = fault.magnitude;
                        effects.burst_exception = Some(BURST_EXCEPTIONS[fault.id as usize % BURST_EXCEPTIONS.len()]);
                    }
                }
            }
        }
        effects
    }
}

/// The state of one service: what its `/actuator/prometheus` shows, plus what drives it.
#[derive(Debug, Clone)]
pub(crate) struct ServiceModel {
    pub(crate) profile: ServiceProfile,
    pub(crate) started_at: SystemTime,
    pub(crate) now: SystemTime,
    pub(crate) requests: BTreeMap<RequestLabels, RequestTimer>,
    pub(crate) process_cpu_usage: f64,
    pub(crate) system_cpu_usage: f64,
    pub(crate) eden_used_bytes: f64,
    pub(crate) survivor_used_bytes: f64,
    pub(crate) old_gen_used_bytes: f64,
    pub(crate) live_threads: f64,
    /// Requests served over requests expected at the profile's rate, averaged over the last
    /// [`CPU_AVERAGING_SECONDS`]: a JVM reports "recent" CPU usage, not the last 100 ms.
    recent_traffic_ratio: f64,
    /// `logback_events_total` by level: INFO, WARN, ERROR.
    pub(crate) log_events: [u64; 3],
    leaked_bytes: f64,
    old_gen_drift: f64,
    max_window_started: SystemTime,
    next_entity_id: u64,
    rng: StdRng,
}

impl ServiceModel {
    /// A service that started at `started_at`, its randomness seeded by `seed`.
    pub(crate) fn new(profile: ServiceProfile, seed: u64, started_at: SystemTime) -> Self {
        let old_gen_used_bytes = profile.heap_max_bytes * profile.old_gen_base_ratio;
        Self {
            started_at,
            now: started_at,
            requests: BTreeMap::new(),
            process_cpu_usage: profile.cpu_base,
            system_cpu_usage: profile.cpu_base + 0.1,
            eden_used_bytes: 0.0,
            survivor_used_bytes: profile.heap_max_bytes * 0.01,
            old_gen_used_bytes,
            live_threads: 30.0,
            recent_traffic_ratio: 1.0,
            log_events: [0; 3],
            leaked_bytes: 0.0,
            old_gen_drift: 0.0,
            max_window_started: started_at,
            next_entity_id: 10_000,
            rng: StdRng::seed_from_u64(seed),
            profile,
        }
    }

    /// The lines a Spring Boot service logs while it starts, ending with the port it listens on.
    pub(crate) fn startup_events(&mut self, port: u16) -> Vec<LogEvent> {
        let profile = &self.profile;
        let main_logger = format!("{}.{}", profile.package, profile.main_class);
        let lines = [
            (
                main_logger.clone(),
                format!(
                    "Starting {} v1.4.2 using Java 21.0.5 with PID {} (/app/app.jar started by app in /app)",
                    profile.main_class, profile.pid
                ),
            ),
            (main_logger.clone(), "No active profile set, falling back to 1 default profile: \"default\"".into()),
            (
                "org.springframework.boot.web.embedded.tomcat.TomcatWebServer".into(),
                format!("Tomcat started on port {port} (http) with context path '/'"),
            ),
            (main_logger, format!("Started {} in 4.127 seconds (process running for 4.731)", profile.main_class)),
        ];
        let start = self.now;
        let events = lines
            .into_iter()
            .enumerate()
            .map(|(i, (logger, message))| LogEvent {
                time: start + Duration::from_millis(i as u64 * 7),
                level: Level::Info,
                logger,
                thread: "main".into(),
                message,
                exception: None,
                trace: None,
            })
            .collect::<Vec<_>>();
        self.log_events[0] += events.len() as u64;
        events
    }

    /// Traffic load at `time`: 1 on average over a day, lowest at midnight (UTC, or the start of
    /// each compressed day), highest at noon.
    pub(crate) fn load_at(&self, time: SystemTime, day_length: Duration) -> f64 {
        let seconds = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let phase = (seconds / day_length.as_secs_f64() - self.profile.rhythm_shift).rem_euclid(1.0);
        1.0 - self.profile.rhythm_amplitude * (TAU * phase).cos()
    }

    /// Advances the service to `now` (by the time since the previous call), under `faults`, and
    /// returns the lines it logged in that time, oldest first.
    pub(crate) fn advance(&mut self, now: SystemTime, day_length: Duration, faults: &[Fault]) -> Vec<LogEvent> {
        let elapsed = now.duration_since(self.now).unwrap_or_default();
        let tick_start = self.now;
        self.now = now;
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return Vec::new();
        }
        if now.duration_since(self.max_window_started).unwrap_or_default().as_secs_f64() >= MAX_WINDOW_SECONDS {
            self.max_window_started = now;
            for timer in self.requests.values_mut() {
                timer.max_previous_window = timer.max_current_window;
                timer.max_current_window = 0.0;
            }
        }
        let effects = FaultEffects::of(faults);
        let load = self.load_at(now, day_length) * (1.0 + 0.05 * self.normal()).max(0.1);
        let mut events = Vec::new();
        let served = self.serve_requests(tick_start, seconds, load, &effects, &mut events);
        let tick_ratio = served as f64 / (self.profile.request_rate * seconds);
        // At 5 requests a second a 100 ms tick serves 0, 1 or 2 requests; unsmoothed, that
        // Poisson noise swings CPU between idle and saturated, which no real JVM reports.
        let weight = 1.0 - (-seconds / CPU_AVERAGING_SECONDS).exp();
        self.recent_traffic_ratio += weight * (tick_ratio - self.recent_traffic_ratio);
        let traffic_ratio = self.recent_traffic_ratio;
        self.update_cpu(traffic_ratio, &effects);
        self.update_memory(tick_start, seconds, served, load, &effects, &mut events);
        self.live_threads = (28.0 + 12.0 * traffic_ratio.min(3.0) + self.normal()).round().max(20.0);
        self.log_background(tick_start, seconds, &effects, &mut events);
        events.sort_by_key(|event| event.time);
        for event in &events {
            self.log_events[event.level as usize] += 1;
        }
        events
    }

    /// Simulates the requests of one tick; returns how many were served.
    fn serve_requests(
        &mut self,
        tick_start: SystemTime,
        seconds: f64,
        load: f64,
        effects: &FaultEffects,
        events: &mut Vec<LogEvent>,
    ) -> u64 {
        let profile = self.profile.clone();
        let expected_per_second = profile.request_rate * load;
        let log_probability = (LOGGED_REQUESTS_PER_SECOND / expected_per_second).min(1.0);
        let mut served = 0;
        let mut error_lines = 0;
        // Busier hours are a little slower, as they are on a shared database.
        let congestion = 1.0 + 0.25 * (load - 1.0);
        for (route, share) in Route::ALL {
            let count = self.poisson(expected_per_second * share * seconds);
            for _ in 0..count {
                served += 1;
                let time = tick_start + Duration::from_secs_f64(self.rng.random::<f64>() * seconds);
                let median = profile.latency_median_seconds * route.latency_factor() * congestion;
                let mut latency = median * effects.latency_factor * (profile.latency_sigma * self.normal()).exp();
                let failure = if effects.burst_exception.is_some() && self.rng.random_bool(effects.burst_error_ratio) {
                    effects.burst_exception
                } else if self.rng.random_bool(profile.server_error_ratio) {
                    Some(BACKGROUND_EXCEPTION)
                } else {
                    None
                };
                let labels = if let Some((class, _, _)) = failure {
                    // Failures come back faster than work that completes.
                    latency *= 0.5;
                    let exception = simple_class_name(class);
                    RequestLabels {
                        exception,
                        method: route.method(),
                        outcome: Outcome::ServerError,
                        status: 500,
                        uri: route.uri(profile.plural),
                    }
                } else if route == Route::Get && self.rng.random_bool(profile.not_found_ratio) {
                    RequestLabels {
                        exception: "none",
                        method: "GET",
                        outcome: Outcome::ClientError,
                        status: 404,
                        uri: route.uri(profile.plural),
                    }
                } else {
                    let status = if route == Route::Create { 201 } else { 200 };
                    RequestLabels {
                        exception: "none",
                        method: route.method(),
                        outcome: Outcome::Success,
                        status,
                        uri: route.uri(profile.plural),
                    }
                };
                let status = labels.status;
                self.requests.entry(labels).or_insert_with(RequestTimer::new).record(latency);
                if let Some(exception) = failure {
                    if error_lines < MAX_ERROR_LINES_PER_TICK {
                        error_lines += 1;
                        events.push(self.request_failed_event(time, route, exception));
                    }
                } else if effects.latency_factor > 1.0 && self.rng.random_bool((3.0 * log_probability).min(1.0)) {
                    events.push(self.slow_query_event(time, latency));
                } else if self.rng.random_bool(log_probability) {
                    events.push(self.request_event(time, route, status, latency));
                }
            }
        }
        served
    }

    fn update_cpu(&mut self, traffic_ratio: f64, effects: &FaultEffects) {
        let busy = self.profile.cpu_base * (0.3 + 0.7 * traffic_ratio);
        self.process_cpu_usage = (busy + effects.extra_cpu + 0.01 * self.normal()).clamp(0.001, 1.0);
        let others = 0.05 + 0.03 * traffic_ratio + 0.01 * self.normal();
        self.system_cpu_usage = (self.process_cpu_usage + others).clamp(self.process_cpu_usage, 1.0);
    }

    fn update_memory(
        &mut self,
        tick_start: SystemTime,
        seconds: f64,
        served: u64,
        load: f64,
        effects: &FaultEffects,
        events: &mut Vec<LogEvent>,
    ) {
        let heap_max = self.profile.heap_max_bytes;
        // Eden fills with every request's garbage and empties at each young collection, which
        // moves a little into survivor space: the sawtooth of a healthy G1 heap.
        self.eden_used_bytes += served as f64 * self.profile.allocated_bytes_per_request;
        if self.eden_used_bytes >= self.profile.eden_capacity_bytes {
            self.eden_used_bytes %= self.profile.eden_capacity_bytes;
            self.survivor_used_bytes = heap_max * self.rng.random_range(0.005..0.02);
        }
        // Old gen holds the working set (a bit larger when busy) plus a slow random walk.
        self.old_gen_drift = 0.98 * self.old_gen_drift + 0.004 * self.normal();
        let working_set = heap_max * self.profile.old_gen_base_ratio * (0.9 + 0.1 * load) * (1.0 + self.old_gen_drift);
        if effects.leaked_share_per_minute > 0.0 {
            let room = (heap_max * 0.95 - working_set).max(0.0);
            self.leaked_bytes =
                (self.leaked_bytes + heap_max * effects.leaked_share_per_minute * seconds / 60.0).min(room);
            if self.rng.random_bool((seconds / 5.0).min(1.0)) {
                let entries = 50_000 + (self.leaked_bytes / 2048.0) as u64;
                let time = tick_start + Duration::from_secs_f64(seconds / 2.0);
                events.push(self.plain_event(
                    time,
                    Level::Warn,
                    format!("{}.cache.SessionCache", self.profile.package),
                    format!("Session cache holds {entries} entries, above the soft limit of 50000; eviction is falling behind"),
                ));
            }
        } else if self.leaked_bytes > 0.0 {
            // The leak ends when eviction catches up, so memory returns to normal after a fault.
            let entries = (self.leaked_bytes / 2048.0) as u64;
            self.leaked_bytes = 0.0;
            events.push(self.plain_event(
                tick_start,
                Level::Info,
                format!("{}.cache.SessionCache", self.profile.package),
                format!("Session cache evicted {entries} stale entries"),
            ));
        }
        self.old_gen_used_bytes = working_set + self.leaked_bytes;
    }

    /// Lines that do not come from requests: scheduled jobs, and what CPU starvation logs.
    fn log_background(
        &mut self,
        tick_start: SystemTime,
        seconds: f64,
        effects: &FaultEffects,
        events: &mut Vec<LogEvent>,
    ) {
        let package = self.profile.package.clone();
        if self.rng.random_bool((seconds / 15.0).min(1.0)) {
            let time = self.time_in_tick(tick_start, seconds);
            let published = self.rng.random_range(1..40);
            let millis = self.rng.random_range(3..60);
            events.push(LogEvent {
                thread: "scheduling-1".into(),
                ..self.plain_event(
                    time,
                    Level::Info,
                    format!("{package}.outbox.OutboxRelay"),
                    format!("Published {published} outbox events in {millis} ms"),
                )
            });
        }
        if self.rng.random_bool((seconds / 40.0).min(1.0)) {
            let time = self.time_in_tick(tick_start, seconds);
            let entries = self.rng.random_range(500..5000);
            let millis = self.rng.random_range(20..300);
            let plural = self.profile.plural;
            events.push(LogEvent {
                thread: "scheduling-1".into(),
                ..self.plain_event(
                    time,
                    Level::Info,
                    format!("{package}.cache.CacheRefresher"),
                    format!("Refreshed {plural} cache: {entries} entries in {millis} ms"),
                )
            });
        }
        if effects.extra_cpu > 0.0 {
            if self.rng.random_bool((seconds / 3.0).min(1.0)) {
                let time = self.time_in_tick(tick_start, seconds);
                let customers = self.rng.random_range(10_000..90_000);
                let millis = self.rng.random_range(8_000..25_000);
                events.push(LogEvent {
                    thread: "scheduling-1".into(),
                    ..self.plain_event(
                        time,
                        Level::Warn,
                        format!("{package}.service.RecommendationService"),
                        format!("Recomputing recommendations for {customers} customers took {millis} ms, longer than its 5000 ms period"),
                    )
                });
            }
            if self.rng.random_bool((seconds / 10.0).min(1.0)) {
                let time = self.time_in_tick(tick_start, seconds);
                let delta_seconds = self.rng.random_range(40..90);
                let delta_millis = self.rng.random_range(0..1000);
                events.push(LogEvent {
                    thread: "HikariPool-1 housekeeper".into(),
                    ..self.plain_event(
                        time,
                        Level::Warn,
                        "com.zaxxer.hikari.pool.HikariPool".into(),
                        format!("HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta={delta_seconds}s{delta_millis}ms)."),
                    )
                });
            }
        }
    }

    fn request_event(&mut self, time: SystemTime, route: Route, status: u16, latency: f64) -> LogEvent {
        let profile = &self.profile;
        let (singular, plural, class, package) =
            (profile.singular, profile.plural, profile.class, profile.package.clone());
        let customer = self.rng.random_range(1_000..99_999);
        if status == 404 {
            let id = self.rng.random_range(1..self.next_entity_id);
            return LogEvent {
                level: Level::Warn,
                logger: "org.springframework.web.servlet.mvc.method.annotation.ExceptionHandlerExceptionResolver"
                    .into(),
                message: format!(
                    "Resolved [org.springframework.web.server.ResponseStatusException: 404 NOT_FOUND \"{class} {id} not found\"]"
                ),
                ..self.request_scoped_event(time)
            };
        }
        let millis = (latency * 1000.0).round() as u64;
        let message = match route {
            Route::List => {
                let page = self.rng.random_range(0..12);
                let count = self.rng.random_range(0..21);
                format!("Listed {count} {plural} for customer {customer} (page {page}, size 20)")
            }
            Route::Get => {
                let id = self.rng.random_range(1..self.next_entity_id);
                format!("Fetched {singular} {id} for customer {customer} in {millis} ms")
            }
            Route::Create => {
                self.next_entity_id += 1;
                let id = self.next_entity_id;
                let items = self.rng.random_range(1..8);
                let cents = self.rng.random_range(500..50_000);
                format!(
                    "Created {singular} {id} for customer {customer} with {items} items, total {}.{:02} EUR",
                    cents / 100,
                    cents % 100
                )
            }
        };
        LogEvent {
            level: Level::Info,
            logger: format!("{package}.web.{class}Controller"),
            message,
            ..self.request_scoped_event(time)
        }
    }

    fn slow_query_event(&mut self, time: SystemTime, latency: f64) -> LogEvent {
        let millis = (latency * 850.0).round() as u64;
        let plural = self.profile.plural;
        LogEvent {
            level: Level::Warn,
            logger: "org.hibernate.SQL_SLOW".into(),
            message: format!(
                "Slow query took {millis} milliseconds [select t1_0.id,t1_0.customer_id,t1_0.status,t1_0.updated_at from {plural} t1_0 where t1_0.customer_id=?]"
            ),
            ..self.request_scoped_event(time)
        }
    }

    fn request_failed_event(
        &mut self,
        time: SystemTime,
        route: Route,
        exception: (&'static str, &'static str, &'static str),
    ) -> LogEvent {
        let (class, message, root_frames) = exception;
        let profile = &self.profile;
        let (package, entity) = (&profile.package, profile.class);
        let handler = match route {
            Route::List => "list",
            Route::Get => "get",
            Route::Create => "create",
        };
        let stack_trace = format!(
            "{class}: {message}\n{root_frames}\
             \tat {package}.service.{entity}Service.{handler}({entity}Service.java:87)\n\
             \tat {package}.web.{entity}Controller.{handler}({entity}Controller.java:42)\n\
             \tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)\n\
             \tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)\n\
             \tat jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)\n\
             \tat org.apache.tomcat.util.threads.TaskThread$WrappingRunnable.run(TaskThread.java:63)\n\
             \tat java.base/java.lang.Thread.run(Thread.java:1583)\n"
        );
        LogEvent {
            level: Level::Error,
            logger: "org.apache.catalina.core.ContainerBase.[Tomcat].[localhost].[/].[dispatcherServlet]".into(),
            message: format!(
                "Servlet.service() for servlet [dispatcherServlet] in context with path [] threw exception [Request processing failed: {class}: {message}] with root cause"
            ),
            exception: Some(LoggedException { class, message: message.to_string(), stack_trace }),
            ..self.request_scoped_event(time)
        }
    }

    /// An INFO line on a Tomcat worker thread with the request's trace ids; callers override
    /// the level, logger and message.
    fn request_scoped_event(&mut self, time: SystemTime) -> LogEvent {
        let worker = self.rng.random_range(1..=10);
        let trace = TraceContext {
            trace_id: format!("{:032x}", self.rng.random::<u128>()),
            span_id: format!("{:016x}", self.rng.random::<u64>()),
        };
        LogEvent {
            time,
            level: Level::Info,
            logger: String::new(),
            thread: format!("http-nio-{INTERNAL_PORT}-exec-{worker}"),
            message: String::new(),
            exception: None,
            trace: Some(trace),
        }
    }

    fn plain_event(&self, time: SystemTime, level: Level, logger: String, message: String) -> LogEvent {
        LogEvent { time, level, logger, thread: "main".into(), message, exception: None, trace: None }
    }

    fn time_in_tick(&mut self, tick_start: SystemTime, seconds: f64) -> SystemTime {
        tick_start + Duration::from_secs_f64(self.rng.random::<f64>() * seconds)
    }

    /// A standard normal draw (Box–Muller), since `rand` alone has no normal distribution.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }

    /// A Poisson draw: exact (Knuth) for small means, normal approximation for large ones.
    fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 30.0 {
            let limit = (-mean).exp();
            let mut product = self.rng.random::<f64>();
            let mut count = 0;
            while product > limit {
                product *= self.rng.random::<f64>();
                count += 1;
            }
            return count;
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
    }
}
