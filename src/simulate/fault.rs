//! Faults: what can go wrong in a service, and the book of faults in progress.
//!
//! A fault is a time-bounded change to one service's behaviour. The book only records faults;
//! each service reads its own active faults on every tick and the model turns them into metrics
//! and log lines, so the book holds no simulation logic.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize, Serializer};

use super::SimulateError;
use super::logs::format_timestamp;

/// Longest fault accepted: a week is already more than any demo needs.
pub(crate) const MAX_FAULT_SECONDS: f64 = 7.0 * 86_400.0;

/// The kinds of fault, named in JSON as `cpu_spike`, `memory_leak`, `latency` and `error_burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The process burns CPU. Magnitude: process CPU usage added, a fraction in (0, 1].
    CpuSpike,
    /// A cache grows without eviction. Magnitude: share of the maximum heap leaked per minute,
    /// in (0, 1]. The leaked bytes are evicted when the fault ends.
    MemoryLeak,
    /// A slow database. Magnitude: factor applied to request latency, in [1, 1000].
    Latency,
    /// Requests fail with one exception. Magnitude: share of requests answered 500, in (0, 1].
    ErrorBurst,
}

impl FaultKind {
    /// Every kind, for schedules that pick one at random.
    pub const ALL: [FaultKind; 4] =
        [FaultKind::CpuSpike, FaultKind::MemoryLeak, FaultKind::Latency, FaultKind::ErrorBurst];

    /// The magnitude used when a request does not give one: clearly visible, not absurd.
    pub fn default_magnitude(self) -> f64 {
        match self {
            FaultKind::CpuSpike => 0.6,
            FaultKind::MemoryLeak => 0.1,
            FaultKind::Latency => 6.0,
            FaultKind::ErrorBurst => 0.3,
        }
    }

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::CpuSpike => "cpu_spike",
            FaultKind::MemoryLeak => "memory_leak",
            FaultKind::Latency => "latency",
            FaultKind::ErrorBurst => "error_burst",
        }
    }

    fn magnitude_range(self) -> (f64, f64, bool) {
        // (lowest, highest, lowest included)
        match self {
            FaultKind::CpuSpike | FaultKind::MemoryLeak | FaultKind::ErrorBurst => (0.0, 1.0, false),
            FaultKind::Latency => (1.0, 1000.0, true),
        }
    }
}

/// A request to inject a fault, as `POST /faults` takes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// The service's name (its `application` label).
    pub service: String,
    /// What goes wrong.
    pub kind: FaultKind,
    /// How long it lasts, in seconds.
    pub duration_seconds: f64,
    /// How bad it is; see [`FaultKind`] for each kind's unit. Defaults to the kind's
    /// [`default_magnitude`](FaultKind::default_magnitude).
    #[serde(default)]
    pub magnitude: Option<f64>,
}

/// A fault in progress, as `GET /faults` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// Identifies the fault to stop it (`DELETE /faults/{id}`).
    pub id: u64,
    /// The service it affects.
    pub service: String,
    /// What goes wrong.
    pub kind: FaultKind,
    /// How bad it is, in the kind's unit.
    pub magnitude: f64,
    /// When it started.
    #[serde(serialize_with = "serialize_time")]
    pub started_at: SystemTime,
    /// When it ends by itself.
    #[serde(serialize_with = "serialize_time")]
    pub ends_at: SystemTime,
}

impl Fault {
    /// True while the fault affects its service.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.started_at <= now && now < self.ends_at
    }
}

fn serialize_time<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(*time))
}

/// The faults in progress across the fleet, shared by the control API, the schedule and the
/// services. Faults past their end are dropped whenever the book is read.
#[derive(Debug)]
pub(crate) struct FaultBook {
    service_names: Vec<String>,
    state: Mutex<BookState>,
}

#[derive(Debug, Default)]
struct BookState {
    next_id: u64,
    faults: Vec<Fault>,
}

impl FaultBook {
    pub(crate) fn new(service_names: Vec<String>) -> Self {
        Self { service_names, state: Mutex::new(BookState { next_id: 1, faults: Vec::new() }) }
    }

    /// Validates the request and records the fault, starting at `now`.
    pub(crate) fn inject(&self, request: FaultRequest, now: SystemTime) -> Result<Fault, SimulateError> {
        if !self.service_names.contains(&request.service) {
            return Err(SimulateError::UnknownService { name: request.service, known: self.service_names.join(", ") });
        }
        let seconds = request.duration_seconds;
        if !(seconds > 0.0 && seconds <= MAX_FAULT_SECONDS) {
            return Err(SimulateError::InvalidFault(format!(
                "duration_seconds: {seconds} is out of range: expected more than 0 and at most {MAX_FAULT_SECONDS}"
            )));
        }
        let kind = request.kind;
        let magnitude = request.magnitude.unwrap_or(kind.default_magnitude());
        let (low, high, low_included) = kind.magnitude_range();
        let above_low = if low_included { magnitude >= low } else { magnitude > low };
        if !(above_low && magnitude <= high) {
            let opening = if low_included { '[' } else { '(' };
            return Err(SimulateError::InvalidFault(format!(
                "magnitude: {magnitude} is out of range for {}: expected {opening}{low}, {high}]",
                kind.name()
            )));
        }
        let mut state = self.lock();
        let fault = Fault {
            id: state.next_id,
            service: request.service,
            kind,
            magnitude,
            started_at: now,
            ends_at: now + Duration::from_secs_f64(seconds),
        };
        state.next_id += 1;
        state.faults.push(fault.clone());
        Ok(fault)
    }

    /// Ends a fault before its time and returns it.
    pub(crate) fn stop(&self, id: u64, now: SystemTime) -> Result<Fault, SimulateError> {
        let mut state = self.lock();
        state.faults.retain(|fault| fault.ends_at > now);
        let position = state.faults.iter().position(|fault| fault.id == id).ok_or(SimulateError::UnknownFault(id))?;
        Ok(state.faults.remove(position))
    }

    /// The faults active at `now`, oldest first.
    pub(crate) fn active(&self, now: SystemTime) -> Vec<Fault> {
        let mut state = self.lock();
        state.faults.retain(|fault| fault.ends_at > now);
        state.faults.iter().filter(|fault| fault.is_active(now)).cloned().collect()
    }

    /// The faults active at `now` in one service.
    pub(crate) fn active_in(&self, service: &str, now: SystemTime) -> Vec<Fault> {
        self.active(now).into_iter().filter(|fault| fault.service == service).collect()
    }

    pub(crate) fn service_names(&self) -> &[String] {
        &self.service_names
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        // A panic while holding this lock cannot leave the list half-updated (every update is a
        // single push, retain or remove), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> FaultBook {
        FaultBook::new(vec!["order-service".into(), "payment-service".into()])
    }

    fn request(kind: FaultKind) -> FaultRequest {
        FaultRequest { service: "order-service".into(), kind, duration_seconds: 60.0, magnitude: None }
    }

    #[test]
    fn injected_fault_is_active_until_it_ends() {
        let book = book();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let fault = book.inject(request(FaultKind::Latency), now).unwrap();
        assert_eq!(fault.magnitude, FaultKind::Latency.default_magnitude());
        assert_eq!(book.active_in("order-service", now + Duration::from_secs(59)), vec![fault]);
        assert!(book.active_in("payment-service", now).is_empty());
        assert!(book.active(now + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn stopped_fault_is_no_longer_active() {
        let book = book();
        let now = SystemTime::UNIX_EPOCH;
        let fault = book.inject(request(FaultKind::ErrorBurst), now).unwrap();
        assert_eq!(book.stop(fault.id, now).unwrap().id, fault.id);
        assert!(book.active(now).is_empty());
        assert!(matches!(book.stop(fault.id, now), Err(SimulateError::UnknownFault(_))));
    }

    #[test]
    fn unknown_service_and_bad_ranges_are_refused() {
        let book = book();
        let now = SystemTime::UNIX_EPOCH;
        let unknown = FaultRequest { service: "nope".into(), ..request(FaultKind::CpuSpike) };
        assert!(matches!(book.inject(unknown, now), Err(SimulateError::UnknownService { .. })));
        let too_short = FaultRequest { duration_seconds: 0.0, ..request(FaultKind::CpuSpike) };
        assert!(matches!(book.inject(too_short, now), Err(SimulateError::InvalidFault(_))));
        let too_big = FaultRequest { magnitude: Some(2.0), ..request(FaultKind::ErrorBurst) };
        assert!(matches!(book.inject(too_big, now), Err(SimulateError::InvalidFault(_))));
        let nan = FaultRequest { magnitude: Some(f64::NAN), ..request(FaultKind::Latency) };
        assert!(matches!(book.inject(nan, now), Err(SimulateError::InvalidFault(_))));
    }

    #[test]
    fn fault_serializes_with_rfc3339_times() {
        let book = book();
        let fault = book.inject(request(FaultKind::MemoryLeak), SystemTime::UNIX_EPOCH).unwrap();
        let json = serde_json::to_value(&fault).unwrap();
        assert_eq!(json["kind"], "memory_leak");
        assert_eq!(json["started_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["ends_at"], "1970-01-01T00:01:00.000Z");
    }
}
