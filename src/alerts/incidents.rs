//! Incidents: what operators see of alerts, built from incident events.
//!
//! Each occurrence of an alert (its fingerprint and `startsAt`) is one incident. Every
//! notification, acknowledgement and hand resolution is an [`IncidentEvent`], appended to the
//! journal before it counts; the incidents themselves are rebuilt from the events at start.
//! Alertmanager repeats notifications (`repeat_interval`) and retries failed ones: an event that
//! says nothing new about an incident (firing again while it is known to fire, resolved again)
//! is a duplicate and is not recorded twice.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::journal::{self, JournalError};
use super::payload::{Alert, AlertStatus};
use super::severity_rank;

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Alertmanager says the alert fires.
    Firing,
    /// Alertmanager says the alert resolved.
    Resolved,
    /// An operator acknowledged the incident.
    Acknowledged,
    /// An operator resolved the incident by hand.
    ResolvedByOperator,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Resolved => "resolved",
            EventKind::Acknowledged => "acknowledged",
            EventKind::ResolvedByOperator => "resolved_by_operator",
        }
    }

    /// The kind of a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [EventKind::Firing, EventKind::Resolved, EventKind::Acknowledged, EventKind::ResolvedByOperator]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One row of `datasets/incidents/`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentEvent {
    /// The incident: `<fingerprint>-<startsAt ms>`.
    pub incident_id: String,
    /// Alertmanager's fingerprint of the alert's labels.
    pub fingerprint: String,
    /// What happened.
    pub kind: EventKind,
    /// The `alertname` label.
    pub alertname: String,
    /// The `service` label (empty for alerts about no service).
    pub service: String,
    /// The `severity` label.
    pub severity: String,
    /// All labels.
    pub labels: BTreeMap<String, String>,
    /// All annotations, as of this event.
    pub annotations: BTreeMap<String, String>,
    /// When the alert started (ms since the epoch).
    pub starts_at_ms: i64,
    /// When it ended, if it has.
    pub ends_at_ms: Option<i64>,
    /// When we received the event.
    pub received_at_ms: i64,
    /// The operator's note (acknowledgements and hand resolutions).
    pub note: Option<String>,
    /// Who acted (the basic-auth user), for operator events.
    pub actor: Option<String>,
}

impl IncidentEvent {
    /// The event a notified alert stands for, received at `received_at_ms`.
    pub fn from_alert(alert: &Alert, received_at_ms: i64) -> Self {
        let label = |name: &str| alert.labels.get(name).cloned().unwrap_or_default();
        Self {
            incident_id: format!("{}-{}", alert.fingerprint, alert.starts_at_ms),
            fingerprint: alert.fingerprint.clone(),
            kind: match alert.status {
                AlertStatus::Firing => EventKind::Firing,
                AlertStatus::Resolved => EventKind::Resolved,
            },
            alertname: label("alertname"),
            service: label("service"),
            severity: label("severity"),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at_ms: alert.starts_at_ms,
            ends_at_ms: match alert.status {
                AlertStatus::Firing => None,
                AlertStatus::Resolved => alert.ends_at_ms,
            },
            received_at_ms,
            note: None,
            actor: None,
        }
    }
}

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    /// Firing, nobody has acknowledged it.
    Firing,
    /// Firing, acknowledged by an operator.
    Acknowledged,
    /// Over: resolved by Alertmanager or by hand.
    Resolved,
}

impl IncidentStatus {
    /// The name used in JSON and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Firing => "firing",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

/// An incident, as `GET /incidents` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// `<fingerprint>-<startsAt ms>`.
    pub id: String,
    /// Where it stands.
    pub status: IncidentStatus,
    /// The alert's name.
    pub alertname: String,
    /// The service (empty for alerts about no service).
    pub service: String,
    /// The severity label.
    pub severity: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The latest annotations.
    pub annotations: BTreeMap<String, String>,
    /// When the alert started (ms since the epoch).
    pub starts_at_ms: i64,
    /// When it ended (Alertmanager's `endsAt`, or the hand resolution's time).
    pub ends_at_ms: Option<i64>,
    /// The events, oldest first.
    pub events: Vec<IncidentEvent>,
}

impl Incident {
    fn apply(&mut self, event: &IncidentEvent) {
        match event.kind {
            EventKind::Firing => {
                // A firing notification after a hand resolution does not reopen the incident:
                // Alertmanager keeps repeating the alert until Prometheus resolves it.
                if self.status != IncidentStatus::Resolved {
                    self.annotations = event.annotations.clone();
                }
            }
            EventKind::Resolved => {
                self.status = IncidentStatus::Resolved;
                self.ends_at_ms = event.ends_at_ms.or(Some(event.received_at_ms));
                self.annotations = event.annotations.clone();
            }
            EventKind::Acknowledged => {
                if self.status == IncidentStatus::Firing {
                    self.status = IncidentStatus::Acknowledged;
                }
            }
            EventKind::ResolvedByOperator => {
                if self.status != IncidentStatus::Resolved {
                    self.status = IncidentStatus::Resolved;
                    self.ends_at_ms = Some(event.received_at_ms);
                }
            }
        }
        self.events.push(event.clone());
    }

    /// When the latest event about it was received.
    fn last_event_ms(&self) -> i64 {
        self.events.iter().map(|e| e.received_at_ms).max().unwrap_or(self.starts_at_ms)
    }

    fn new(event: &IncidentEvent) -> Self {
        Self {
            id: event.incident_id.clone(),
            status: IncidentStatus::Firing,
            alertname: event.alertname.clone(),
            service: event.service.clone(),
            severity: event.severity.clone(),
            labels: event.labels.clone(),
            annotations: event.annotations.clone(),
            starts_at_ms: event.starts_at_ms,
            ends_at_ms: None,
            events: Vec::new(),
        }
    }
}

/// The `resolved` event that closes `older` when `firing`, a later occurrence of the same alert,
/// arrives without Alertmanager having reported `older` resolved.
fn superseded_resolution(older: &Incident, firing: &IncidentEvent) -> IncidentEvent {
    IncidentEvent {
        incident_id: older.id.clone(),
        fingerprint: firing.fingerprint.clone(),
        kind: EventKind::Resolved,
        alertname: older.alertname.clone(),
        service: older.service.clone(),
        severity: older.severity.clone(),
        labels: older.labels.clone(),
        annotations: older.annotations.clone(),
        starts_at_ms: older.starts_at_ms,
        ends_at_ms: Some(firing.starts_at_ms),
        received_at_ms: firing.received_at_ms,
        note: Some(format!(
            "superseded by {}: the alert fired again before Alertmanager reported this occurrence resolved",
            firing.incident_id
        )),
        actor: None,
    }
}

/// What [`IncidentStore::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compaction {
    /// The ids of the resolved incidents dropped for being older than the retention, sorted.
    pub pruned: Vec<String>,
    /// Journal files the compacted file replaced.
    pub files_replaced: usize,
}

/// How a compacted journal file's name ends. `~` sorts after the `.` of `.parquet`, so the
/// compacted file sorts right after the file whose name it extends, and before every later one.
const COMPACTED_SUFFIX: &str = "~compacted.parquet";

fn is_compacted(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(COMPACTED_SUFFIX))
}

/// The compacted file's name for a journal whose newest file is `newest`: the newest file's own
/// name when it is compacted already (the rename replaces it atomically), else its name extended.
fn compacted_name(newest: &Path) -> String {
    let name = newest.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(COMPACTED_SUFFIX) {
        name.to_owned()
    } else {
        format!("{}{COMPACTED_SUFFIX}", name.trim_end_matches(".parquet"))
    }
}

/// The stamp in a journal file's name, `incidents-<stamp>-…`.
fn name_stamp(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("incidents-")?.split('-').next()?.parse().ok()
}

/// What [`IncidentStore::record_alerts`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Events written.
    pub recorded: usize,
    /// Events that said nothing new and were skipped.
    pub duplicates: usize,
}

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No incident has this id.
    #[error("no incident {0}")]
    NotFound(String),
    /// The incident is already resolved (or, for an acknowledgement, already acknowledged).
    #[error("incident {id} is already {status}")]
    Conflict {
        /// The incident.
        id: String,
        /// Where it stands.
        status: &'static str,
    },
    /// The event could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Sort orders of [`IncidentStore::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Open first (firing, acknowledged, resolved), then newest first: the default.
    #[default]
    OpenFirst,
    /// By start time.
    StartsAt,
    /// By severity (critical, high, warning, other).
    Severity,
    /// By service name.
    Service,
}

impl SortKey {
    /// The key named `text` (`open`, `starts_at`, `severity`, `service`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(SortKey::OpenFirst),
            "starts_at" => Some(SortKey::StartsAt),
            "severity" => Some(SortKey::Severity),
            "service" => Some(SortKey::Service),
            _ => None,
        }
    }
}

/// Filters and order of a listing; empty filters match everything.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Exact service.
    pub service: Option<String>,
    /// Exact severity.
    pub severity: Option<String>,
    /// Status.
    pub status: Option<IncidentStatus>,
    /// Case-insensitive substring of the alert name, service, labels or annotations.
    pub text: Option<String>,
    /// The order.
    pub sort: SortKey,
    /// Reverse the order.
    pub descending: bool,
}

#[derive(Debug, Default)]
struct Inner {
    incidents: BTreeMap<String, Incident>,
    /// (incident, kind) of alert events already recorded: the deduplication key.
    seen: HashSet<(String, EventKind)>,
    /// Makes journal file names unique within a millisecond.
    sequence: u64,
    /// The stamp that starts the newest journal file's name. Each new file gets a larger one, so
    /// names sort in the order files were written whatever the clock does, and every file written
    /// after a compaction sorts after the compacted file.
    last_stamp: i64,
    /// Incidents not resolved, kept up to date by `apply` so that the gauge the webhook sets on
    /// every notification costs nothing, however many incidents are stored.
    open: usize,
    /// The incident of every applied event, in the order the events were recorded. Each incident
    /// keeps its own events in order; this interleaves them again, so that compaction and the
    /// Slack notifier's replay see events across incidents in the order they happened (which
    /// incident escalated an episode, which one resolved first).
    recorded_order: Vec<String>,
    /// For each alert fingerprint, its incidents that Alertmanager has not reported resolved:
    /// what a later firing of the same alert supersedes (see [`IncidentStore::record`]).
    unresolved_by_fingerprint: HashMap<String, BTreeSet<String>>,
}

impl Inner {
    fn apply(&mut self, event: &IncidentEvent) {
        if matches!(event.kind, EventKind::Firing | EventKind::Resolved) {
            self.seen.insert((event.incident_id.clone(), event.kind));
        }
        match event.kind {
            EventKind::Firing if !self.seen.contains(&(event.incident_id.clone(), EventKind::Resolved)) => {
                self.unresolved_by_fingerprint
                    .entry(event.fingerprint.clone())
                    .or_default()
                    .insert(event.incident_id.clone());
            }
            EventKind::Resolved => {
                if let Some(ids) = self.unresolved_by_fingerprint.get_mut(&event.fingerprint) {
                    ids.remove(&event.incident_id);
                    if ids.is_empty() {
                        self.unresolved_by_fingerprint.remove(&event.fingerprint);
                    }
                }
            }
            _ => {}
        }
        self.recorded_order.push(event.incident_id.clone());
        let incident = match self.incidents.entry(event.incident_id.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                // A new incident starts firing (open) until an event resolves it.
                self.open += 1;
                entry.insert(Incident::new(event))
            }
        };
        let was_open = incident.status != IncidentStatus::Resolved;
        incident.apply(event);
        let is_open = incident.status != IncidentStatus::Resolved;
        match (was_open, is_open) {
            (true, false) => self.open -= 1,
            (false, true) => self.open += 1,
            _ => {}
        }
    }

    /// The stored events in the order they were recorded, leaving out the incidents in `except`.
    fn events_in_recorded_order(&self, except: &HashSet<String>) -> Vec<IncidentEvent> {
        // The n-th time an incident appears in `recorded_order` stands for its n-th event.
        let mut next_event: HashMap<&str, usize> = HashMap::new();
        let mut events = Vec::with_capacity(self.recorded_order.len());
        for id in self.recorded_order.iter().filter(|id| !except.contains(*id)) {
            let index = next_event.entry(id.as_str()).or_default();
            if let Some(event) = self.incidents.get(id).and_then(|incident| incident.events.get(*index)) {
                events.push(event.clone());
            }
            *index += 1;
        }
        events
    }

    /// The incidents of `firing`'s alert that started before it and that Alertmanager never
    /// reported resolved, oldest first.
    fn superseded_by(&self, firing: &IncidentEvent) -> Vec<&Incident> {
        let Some(ids) = self.unresolved_by_fingerprint.get(&firing.fingerprint) else { return Vec::new() };
        let mut older: Vec<&Incident> = ids
            .iter()
            .filter_map(|id| self.incidents.get(id))
            .filter(|incident| incident.starts_at_ms < firing.starts_at_ms)
            .collect();
        older.sort_by_key(|incident| incident.starts_at_ms);
        older
    }

    /// Whether an alert event says something new.
    fn is_new(&self, event: &IncidentEvent) -> bool {
        if self.seen.contains(&(event.incident_id.clone(), event.kind)) {
            return false;
        }
        // Resolved arrived first (a firing notification was lost): a late firing adds nothing.
        !(event.kind == EventKind::Firing && self.seen.contains(&(event.incident_id.clone(), EventKind::Resolved)))
    }
}

/// The incidents, in memory, backed by the journal in `dir`. Writes are serialised: a batch is
/// checked for duplicates, written, then applied, under one lock, so concurrent retries of the
/// same notification record it once. Call it from blocking code (it does file I/O).
#[derive(Debug)]
pub struct IncidentStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

impl IncidentStore {
    /// Opens the store, replaying the journal in `dir` (which may not exist yet): the newest
    /// compacted file and every file written after it. Files a compacted one replaced, which an
    /// interrupted compaction left, are removed, as are the temporaries of interrupted writes.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, JournalError> {
        let dir = dir.into();
        crate::store::remove_stale_temporaries(&dir)?;
        let files = journal::list_files(&dir)?;
        let first_live = files.iter().rposition(|path| is_compacted(path)).unwrap_or(0);
        for replaced in &files[..first_live] {
            journal::remove_file(replaced)?;
        }
        let mut inner = Inner::default();
        for path in &files[first_live..] {
            for event in journal::read_file(path)? {
                inner.apply(&event);
            }
        }
        inner.last_stamp = files.last().and_then(|path| name_stamp(path)).unwrap_or(0);
        Ok(Self { dir, inner: Mutex::new(inner) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, inner: &mut Inner, events: &[IncidentEvent]) -> Result<(), JournalError> {
        inner.sequence += 1;
        let received = events.first().map_or(0, |e| e.received_at_ms);
        let stamp = received.max(inner.last_stamp + 1);
        let name = format!("incidents-{stamp:015}-{}-{:06}.parquet", std::process::id(), inner.sequence);
        journal::write_batch(&self.dir, &name, events)?;
        inner.last_stamp = stamp;
        for event in events {
            inner.apply(event);
        }
        Ok(())
    }

    /// Records the alerts of one notification; nothing is recorded when the write fails.
    pub fn record_alerts(&self, alerts: &[Alert], received_at_ms: i64) -> Result<Recorded, JournalError> {
        let fresh = self.record(alerts, received_at_ms)?;
        Ok(Recorded { recorded: fresh.len(), duplicates: alerts.len() - fresh.len() })
    }

    /// Like [`IncidentStore::record_alerts`], returning the events that were new.
    ///
    /// Alertmanager keeps one alert per fingerprint: when an alert resolves and fires again
    /// before its group's next notification, the new occurrence (a later `startsAt`, so another
    /// incident) replaces the old one, whose resolution is never sent. So a new firing resolves
    /// the older incidents of its alert that are still open, with a `resolved` event recorded
    /// just before it (`endsAt` its start, a note saying why): otherwise they stayed open
    /// forever, and kept the service's Slack episode open, silencing its next pages.
    pub fn record(&self, alerts: &[Alert], received_at_ms: i64) -> Result<Vec<IncidentEvent>, JournalError> {
        let mut inner = self.lock();
        let mut fresh: Vec<IncidentEvent> = Vec::new();
        let mut in_batch: HashSet<(String, EventKind)> = HashSet::new();
        for alert in alerts {
            let event = IncidentEvent::from_alert(alert, received_at_ms);
            if !inner.is_new(&event) || !in_batch.insert((event.incident_id.clone(), event.kind)) {
                continue;
            }
            if event.kind == EventKind::Firing {
                for older in inner.superseded_by(&event) {
                    if in_batch.insert((older.id.clone(), EventKind::Resolved)) {
                        fresh.push(superseded_resolution(older, &event));
                    }
                }
            }
            fresh.push(event);
        }
        if !fresh.is_empty() {
            self.write(&mut inner, &fresh)?;
        }
        Ok(fresh)
    }

    /// Records an operator's acknowledgement (`resolve` false) or hand resolution.
    pub fn act(
        &self,
        id: &str,
        resolve: bool,
        note: Option<String>,
        actor: Option<String>,
        at_ms: i64,
    ) -> Result<Incident, ActionError> {
        let mut inner = self.lock();
        let incident = inner.incidents.get(id).ok_or_else(|| ActionError::NotFound(id.to_owned()))?;
        let refused =
            matches!((resolve, incident.status), (_, IncidentStatus::Resolved) | (false, IncidentStatus::Acknowledged));
        if refused {
            return Err(ActionError::Conflict { id: id.to_owned(), status: incident.status.as_str() });
        }
        let event = IncidentEvent {
            incident_id: incident.id.clone(),
            fingerprint: incident.events.first().map(|e| e.fingerprint.clone()).unwrap_or_default(),
            kind: if resolve { EventKind::ResolvedByOperator } else { EventKind::Acknowledged },
            alertname: incident.alertname.clone(),
            service: incident.service.clone(),
            severity: incident.severity.clone(),
            labels: incident.labels.clone(),
            annotations: incident.annotations.clone(),
            starts_at_ms: incident.starts_at_ms,
            ends_at_ms: None,
            received_at_ms: at_ms,
            note,
            actor,
        };
        self.write(&mut inner, std::slice::from_ref(&event))?;
        Ok(inner.incidents[id].clone())
    }

    /// Rewrites the journal as one file, without the incidents resolved before
    /// `now_ms − retention_ms` (by their last event), keeping the other events in the order they
    /// were recorded. The compacted file is written (atomically) before the files it replaces
    /// are removed, and it is named to sort right after the newest of them: a crash in between
    /// leaves files that [`IncidentStore::open`] recognises as replaced, so no event is lost or
    /// replayed twice. Webhooks wait for it (one lock).
    pub fn compact(&self, retention_ms: i64, now_ms: i64) -> Result<Compaction, JournalError> {
        let mut inner = self.lock();
        let files = journal::list_files(&self.dir)?;
        let cutoff = now_ms.saturating_sub(retention_ms);
        let expired: HashSet<String> = inner
            .incidents
            .values()
            .filter(|i| i.status == IncidentStatus::Resolved && i.last_event_ms() < cutoff)
            .map(|i| i.id.clone())
            .collect();
        let Some(newest) = files.last() else { return Ok(Compaction::default()) };
        if expired.is_empty() && files.len() == 1 {
            return Ok(Compaction::default());
        }
        // In recorded order, not grouped by incident: the Slack notifier replays them at start.
        let kept = inner.events_in_recorded_order(&expired);
        let name = compacted_name(newest);
        journal::write_batch(&self.dir, &name, &kept)?;
        for id in &expired {
            inner.incidents.remove(id);
            inner.seen.remove(&(id.clone(), EventKind::Firing));
            inner.seen.remove(&(id.clone(), EventKind::Resolved));
        }
        inner.recorded_order.retain(|id| !expired.contains(id));
        // Resolved by hand only, an expired incident may still be listed as unresolved.
        inner.unresolved_by_fingerprint.retain(|_, ids| {
            ids.retain(|id| !expired.contains(id));
            !ids.is_empty()
        });
        let replaced: Vec<&PathBuf> = files.iter().filter(|path| path.file_name() != Some(name.as_ref())).collect();
        for path in &replaced {
            journal::remove_file(path)?;
        }
        let mut pruned: Vec<String> = expired.into_iter().collect();
        pruned.sort();
        Ok(Compaction { pruned, files_replaced: replaced.len() })
    }

    /// Every stored event, in the order it was recorded (across restarts and compactions): what
    /// the Slack notifier replays at start to learn which incidents it has posted.
    pub fn events_in_recorded_order(&self) -> Vec<IncidentEvent> {
        self.lock().events_in_recorded_order(&HashSet::new())
    }

    /// Incidents not resolved yet (firing or acknowledged).
    pub fn open_count(&self) -> usize {
        self.lock().open
    }

    /// One incident.
    pub fn get(&self, id: &str) -> Option<Incident> {
        self.lock().incidents.get(id).cloned()
    }

    /// The incidents that match `query`, in its order.
    pub fn list(&self, query: &ListQuery) -> Vec<Incident> {
        let inner = self.lock();
        let needle = query.text.as_ref().map(|t| t.to_lowercase());
        let mut found: Vec<Incident> = inner
            .incidents
            .values()
            .filter(|i| query.service.as_ref().is_none_or(|s| *s == i.service))
            .filter(|i| query.severity.as_ref().is_none_or(|s| *s == i.severity))
            .filter(|i| query.status.is_none_or(|s| s == i.status))
            .filter(|i| {
                needle.as_ref().is_none_or(|needle| {
                    i.alertname.to_lowercase().contains(needle)
                        || i.service.to_lowercase().contains(needle)
                        || i.labels.values().chain(i.annotations.values()).any(|v| v.to_lowercase().contains(needle))
                })
            })
            .cloned()
            .collect();
        drop(inner);
        let newest_first =
            |a: &Incident, b: &Incident| b.starts_at_ms.cmp(&a.starts_at_ms).then_with(|| a.id.cmp(&b.id));
        found.sort_by(|a, b| match query.sort {
            SortKey::OpenFirst => a.status.cmp(&b.status).then_with(|| newest_first(a, b)),
            SortKey::StartsAt => a.starts_at_ms.cmp(&b.starts_at_ms).then_with(|| a.id.cmp(&b.id)),
            SortKey::Severity => {
                severity_rank(&a.severity).cmp(&severity_rank(&b.severity)).then_with(|| newest_first(a, b))
            }
            SortKey::Service => a.service.cmp(&b.service).then_with(|| newest_first(a, b)),
        });
        if query.descending {
            found.reverse();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::payload::{firing_and_resolved_fixture, parse_webhook};

    fn fixtures() -> (Vec<Alert>, Vec<Alert>) {
        let (firing, resolved) = firing_and_resolved_fixture();
        (parse_webhook(&firing).unwrap(), parse_webhook(&resolved).unwrap())
    }

    fn alert(fingerprint: &str, service: &str, severity: &str, status: AlertStatus, starts_at_ms: i64) -> Alert {
        Alert {
            status,
            labels: BTreeMap::from([
                ("alertname".to_owned(), "AnomalyHigh".to_owned()),
                ("service".to_owned(), service.to_owned()),
                ("severity".to_owned(), severity.to_owned()),
            ]),
            annotations: BTreeMap::from([("summary".to_owned(), format!("{service} is slow"))]),
            starts_at_ms,
            ends_at_ms: (status == AlertStatus::Resolved).then_some(starts_at_ms + 60_000),
            generator_url: String::new(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    /// Two firing incidents (checkout critical, payments high) and one whose resolution arrived
    /// before its firing was ever seen, so it was never open (search warning).
    fn record_three_incidents(store: &IncidentStore) {
        store
            .record_alerts(
                &[
                    alert("a1", "checkout", "critical", AlertStatus::Firing, 30),
                    alert("b1", "payments", "high", AlertStatus::Firing, 20),
                    alert("c1", "search", "warning", AlertStatus::Resolved, 40),
                ],
                100,
            )
            .unwrap();
    }

    #[test]
    fn firing_then_resolved_is_one_incident_that_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        let (firing, resolved) = fixtures();
        assert_eq!(store.record_alerts(&firing, 1_000).unwrap(), Recorded { recorded: 1, duplicates: 0 });
        // Alertmanager's retry and its repeat notification say nothing new.
        assert_eq!(store.record_alerts(&firing, 2_000).unwrap(), Recorded { recorded: 0, duplicates: 1 });
        let listed = store.list(&ListQuery::default());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, IncidentStatus::Firing);
        assert_eq!(listed[0].service, "checkout");

        assert_eq!(store.record_alerts(&resolved, 3_000).unwrap().recorded, 1);
        assert_eq!(store.record_alerts(&resolved, 4_000).unwrap().recorded, 0);
        let before = store.list(&ListQuery::default());
        assert_eq!(before[0].status, IncidentStatus::Resolved);
        assert_eq!(before[0].events.len(), 2);

        // A write a crash interrupted leaves a hidden, torn temporary: ignored, then removed.
        let torn = dir.path().join(".tmp-4242-0-incidents-000000000005000-4242-000009.parquet");
        std::fs::write(&torn, b"PAR1 torn").unwrap();
        let reopened = IncidentStore::open(dir.path()).unwrap();
        assert!(!torn.exists(), "the crash's temporary is removed on open");
        assert_eq!(reopened.list(&ListQuery::default()), before);
        assert_eq!(reopened.record_alerts(&resolved, 5_000).unwrap().recorded, 0, "dedup state is rebuilt too");
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 2, "one file per recorded batch, no temporary files left");
    }

    fn journal_names(dir: &Path) -> Vec<String> {
        journal::list_files(dir).unwrap().iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect()
    }

    const DAY_MS: i64 = 86_400_000;

    /// The three incidents at day 0, b1 resolved there too; at day 10, a1 resolved by hand and d1
    /// firing, the one open incident.
    fn record_ten_days(store: &IncidentStore) {
        record_three_incidents(store);
        store.record_alerts(&[alert("b1", "payments", "high", AlertStatus::Resolved, 20)], 200).unwrap();
        store.act("a1-30", true, Some("rolled back".into()), None, 10 * DAY_MS).unwrap();
        store
            .record_alerts(&[alert("d1", "search", "critical", AlertStatus::Firing, 10 * DAY_MS)], 10 * DAY_MS)
            .unwrap();
    }

    #[test]
    fn an_alert_firing_again_before_its_resolution_arrived_resolves_the_older_occurrence() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        store.record_alerts(&[alert("f1", "checkout", "high", AlertStatus::Firing, 1_000)], 2_000).unwrap();
        // Alertmanager replaced the first occurrence by the second: its resolution never comes.
        let fresh = store.record(&[alert("f1", "checkout", "high", AlertStatus::Firing, 600_000)], 700_000).unwrap();
        let kinds: Vec<(&str, EventKind)> = fresh.iter().map(|e| (e.incident_id.as_str(), e.kind)).collect();
        assert_eq!(kinds, [("f1-1000", EventKind::Resolved), ("f1-600000", EventKind::Firing)]);
        let old = store.get("f1-1000").unwrap();
        assert_eq!((old.status, old.ends_at_ms), (IncidentStatus::Resolved, Some(600_000)));
        assert!(old.events[1].note.as_deref().unwrap().starts_with("superseded by f1-600000"), "{:?}", old.events[1]);
        assert_eq!(store.open_count(), 1);

        // Repeats of either notification change nothing; nor does the late real resolution.
        let repeats = [
            alert("f1", "checkout", "high", AlertStatus::Firing, 600_000),
            alert("f1", "checkout", "high", AlertStatus::Resolved, 1_000),
        ];
        assert_eq!(store.record(&repeats, 800_000).unwrap(), []);
        // Another alert's incidents, and an older occurrence arriving late, are not touched.
        store.record_alerts(&[alert("g1", "checkout", "high", AlertStatus::Firing, 5_000)], 900_000).unwrap();
        assert_eq!(store.get("g1-5000").unwrap().status, IncidentStatus::Firing);
        store.record_alerts(&[alert("f1", "checkout", "high", AlertStatus::Firing, 500)], 900_001).unwrap();
        assert_eq!(store.get("f1-600000").unwrap().status, IncidentStatus::Firing);
        assert_eq!(store.open_count(), 3);

        // After a restart, the next occurrence still finds the open ones to resolve.
        let reopened = IncidentStore::open(dir.path()).unwrap();
        assert_eq!(reopened.open_count(), 3);
        let fresh = reopened.record(&[alert("f1", "checkout", "high", AlertStatus::Firing, 900_000)], 950_000).unwrap();
        let kinds: Vec<(&str, EventKind)> = fresh.iter().map(|e| (e.incident_id.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [("f1-500", EventKind::Resolved), ("f1-600000", EventKind::Resolved), ("f1-900000", EventKind::Firing)]
        );
        assert_eq!(reopened.open_count(), 2, "g1 and the newest f1");
    }

    #[test]
    fn compaction_drops_old_resolved_incidents_and_keeps_the_rest_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        record_ten_days(&store);
        assert_eq!(journal_names(dir.path()).len(), 4);
        let ids = |store: &IncidentStore| {
            let mut ids: Vec<String> = store.list(&ListQuery::default()).into_iter().map(|i| i.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&store), ["a1-30", "b1-20", "c1-40", "d1-864000000"]);

        // Retention 5 days at day 12: b1 and c1 (resolved at day 0) go; a1 was resolved at day 10.
        let done = store.compact(5 * DAY_MS, 12 * DAY_MS).unwrap();
        assert_eq!(done, Compaction { pruned: vec!["b1-20".into(), "c1-40".into()], files_replaced: 4 });
        assert_eq!(ids(&store), ["a1-30", "d1-864000000"]);
        assert_eq!(store.open_count(), 1);
        let names = journal_names(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(COMPACTED_SUFFIX));
        let kept = store.list(&ListQuery::default());

        let reopened = IncidentStore::open(dir.path()).unwrap();
        assert_eq!(reopened.list(&ListQuery::default()), kept, "events and their order survive, none twice");
        assert_eq!(reopened.open_count(), 1);

        // Later notifications land in files that sort after the compacted one, whatever their
        // clock says (this one's is 5 ms after the epoch).
        reopened.record_alerts(&[alert("d1", "search", "critical", AlertStatus::Resolved, 10 * DAY_MS)], 5).unwrap();
        let names_after = journal_names(dir.path());
        assert_eq!(names_after.len(), 2);
        assert_eq!(names_after[0], names[0], "the new file sorts last: {names_after:?}");
        assert_eq!(
            reopened.compact(5 * DAY_MS, 12 * DAY_MS).unwrap(),
            Compaction { pruned: Vec::new(), files_replaced: 2 }
        );
        let compacted = journal_names(dir.path());
        assert_eq!(compacted.len(), 1);
        assert_eq!(IncidentStore::open(dir.path()).unwrap().open_count(), 0, "d1's resolution was kept");
        assert_eq!(reopened.compact(5 * DAY_MS, 12 * DAY_MS).unwrap(), Compaction::default(), "nothing to do");

        // When the compacted file is the newest, the next one replaces it under the same name.
        assert_eq!(
            reopened.compact(5 * DAY_MS, 16 * DAY_MS).unwrap(),
            Compaction { pruned: vec!["a1-30".into(), "d1-864000000".into()], files_replaced: 0 }
        );
        assert_eq!(journal_names(dir.path()), compacted);
        assert!(IncidentStore::open(dir.path()).unwrap().list(&ListQuery::default()).is_empty());
    }

    #[test]
    fn events_keep_their_recorded_order_across_incidents_through_compaction_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        // Interleaved incidents whose ids sort in another order than they happened: z1 fires,
        // old1 comes and goes around a1's firing, z1 resolves days later, a1 is acknowledged.
        store.record_alerts(&[alert("z1", "checkout", "high", AlertStatus::Firing, 10)], 100).unwrap();
        store.record_alerts(&[alert("old1", "checkout", "high", AlertStatus::Firing, 5)], 110).unwrap();
        store.record_alerts(&[alert("a1", "checkout", "critical", AlertStatus::Firing, 20)], 120).unwrap();
        store.record_alerts(&[alert("old1", "checkout", "high", AlertStatus::Resolved, 5)], 130).unwrap();
        store.record_alerts(&[alert("z1", "checkout", "high", AlertStatus::Resolved, 10)], 10 * DAY_MS).unwrap();
        store.act("a1-20", false, None, None, 10 * DAY_MS + 1).unwrap();
        let order = |store: &IncidentStore| {
            store.events_in_recorded_order().iter().map(|e| (e.incident_id.clone(), e.kind)).collect::<Vec<_>>()
        };
        let firing = |id: &str| (id.to_owned(), EventKind::Firing);
        let resolved = |id: &str| (id.to_owned(), EventKind::Resolved);
        let acknowledged = ("a1-20".to_owned(), EventKind::Acknowledged);
        assert_eq!(
            order(&store),
            [
                firing("z1-10"),
                firing("old1-5"),
                firing("a1-20"),
                resolved("old1-5"),
                resolved("z1-10"),
                acknowledged.clone()
            ]
        );

        // Retention 5 days at day 12 drops old1 only; the rest keeps its order on disk.
        assert_eq!(store.compact(5 * DAY_MS, 12 * DAY_MS).unwrap().pruned, ["old1-5"]);
        let expected = [firing("z1-10"), firing("a1-20"), resolved("z1-10"), acknowledged];
        assert_eq!(order(&store), expected);
        assert_eq!(order(&IncidentStore::open(dir.path()).unwrap()), expected);
    }

    #[test]
    fn a_compaction_interrupted_before_removing_the_files_it_replaced_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        record_ten_days(&store);
        let before = journal_names(dir.path());
        let expected = store.list(&ListQuery::default());
        // What a crash after the compacted file's rename leaves: it and every file it replaced.
        let saved: Vec<(String, Vec<u8>)> =
            before.iter().map(|name| (name.clone(), std::fs::read(dir.path().join(name)).unwrap())).collect();
        assert_eq!(store.compact(0, 0).unwrap().files_replaced, 4, "nothing is old enough to drop");
        for (name, bytes) in &saved {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        assert_eq!(journal_names(dir.path()).len(), 5);

        let reopened = IncidentStore::open(dir.path()).unwrap();
        assert_eq!(reopened.list(&ListQuery::default()), expected);
        assert_eq!(journal_names(dir.path()).len(), 1, "the replaced files are removed on open");
    }

    #[test]
    fn a_failed_write_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("not-a-directory");
        std::fs::write(&blocked, "").unwrap();
        let store = IncidentStore::open(&blocked)
            .unwrap_or_else(|_| IncidentStore { dir: blocked.clone(), inner: Mutex::new(Inner::default()) });
        let (firing, _) = fixtures();
        assert!(store.record_alerts(&firing, 1_000).is_err());
        assert!(store.list(&ListQuery::default()).is_empty());
    }

    #[test]
    fn operators_acknowledge_then_resolve_with_notes() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        store.record_alerts(&[alert("aa", "checkout", "high", AlertStatus::Firing, 10)], 100).unwrap();
        let id = "aa-10";
        let acked = store.act(id, false, Some("looking".into()), Some("alice".into()), 200).unwrap();
        assert_eq!(acked.status, IncidentStatus::Acknowledged);
        assert!(matches!(store.act(id, false, None, None, 250), Err(ActionError::Conflict { .. })));
        let resolved = store.act(id, true, Some("restarted the pod".into()), Some("alice".into()), 300).unwrap();
        assert_eq!(resolved.status, IncidentStatus::Resolved);
        assert_eq!(resolved.ends_at_ms, Some(300));
        assert!(matches!(store.act(id, true, None, None, 350), Err(ActionError::Conflict { .. })));
        assert!(matches!(store.act("nope", true, None, None, 350), Err(ActionError::NotFound(_))));
        // Alertmanager still repeats the firing alert: the incident stays resolved.
        store.record_alerts(&[alert("aa", "checkout", "high", AlertStatus::Firing, 10)], 400).unwrap();
        let reopened = IncidentStore::open(dir.path()).unwrap();
        let incident = reopened.get(id).unwrap();
        assert_eq!(incident.status, IncidentStatus::Resolved);
        let kinds: Vec<EventKind> = incident.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Firing, EventKind::Acknowledged, EventKind::ResolvedByOperator]);
        assert_eq!(incident.events[2].note.as_deref(), Some("restarted the pod"));
        assert_eq!(incident.events[2].actor.as_deref(), Some("alice"));
    }

    #[test]
    fn the_open_count_follows_every_transition_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        let assert_open = |store: &IncidentStore, expected: usize, after: &str| {
            let recounted =
                store.list(&ListQuery::default()).iter().filter(|i| i.status != IncidentStatus::Resolved).count();
            assert_eq!((store.open_count(), recounted), (expected, expected), "after {after}");
        };
        record_three_incidents(&store);
        assert_open(&store, 2, "two firing, one resolved");
        store.act("a1-30", false, None, None, 200).unwrap();
        assert_open(&store, 2, "an acknowledgement");
        store.record_alerts(&[alert("b1", "payments", "high", AlertStatus::Resolved, 20)], 300).unwrap();
        assert_open(&store, 1, "Alertmanager's resolution");
        store.act("a1-30", true, None, None, 400).unwrap();
        assert_open(&store, 0, "an operator's resolution");
        store.record_alerts(&[alert("b1", "payments", "high", AlertStatus::Firing, 20)], 500).unwrap();
        assert_open(&store, 0, "a late firing of a resolved incident");
        store.record_alerts(&[alert("d1", "search", "high", AlertStatus::Firing, 60)], 600).unwrap();
        assert_open(&store, 1, "a new incident");
        assert_open(&IncidentStore::open(dir.path()).unwrap(), 1, "a restart");
    }

    #[test]
    fn listing_filters_and_puts_open_incidents_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = IncidentStore::open(dir.path()).unwrap();
        record_three_incidents(&store);
        let ids = |query: ListQuery| store.list(&query).into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(ListQuery::default()), ["a1-30", "b1-20", "c1-40"]);
        assert_eq!(ids(ListQuery { sort: SortKey::StartsAt, ..Default::default() }), ["b1-20", "a1-30", "c1-40"]);
        assert_eq!(
            ids(ListQuery { sort: SortKey::StartsAt, descending: true, ..Default::default() }),
            ["c1-40", "a1-30", "b1-20"]
        );
        assert_eq!(ids(ListQuery { service: Some("payments".into()), ..Default::default() }), ["b1-20"]);
        assert_eq!(ids(ListQuery { severity: Some("critical".into()), ..Default::default() }), ["a1-30"]);
        assert_eq!(ids(ListQuery { status: Some(IncidentStatus::Resolved), ..Default::default() }), ["c1-40"]);
        assert_eq!(ids(ListQuery { text: Some("SEARCH IS".into()), ..Default::default() }), ["c1-40"]);
    }
}
