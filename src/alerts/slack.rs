//! The Slack notifier: posts an incident's firing and resolved notifications to a Slack
//! incoming webhook, with the log templates and lines that correlate with the alert.
//!
//! The webhook handler only enqueues (never waits for Slack); one task posts, at most one
//! message per `min_interval` (Slack allows about one per second per webhook). Failures are
//! retried where a retry can help: 429 after its `Retry-After`, 5xx and network errors with
//! exponential backoff; `400 invalid_payload`, `403`, `404 channel_not_found` and
//! `410 channel_is_archived` are given up at once. Every outcome is counted in
//! `anomaly_exporter_slack_notifications_total{outcome}`.
//!
//! Incoming webhooks return no message `ts`, so a resolution cannot edit the first message or
//! post in its thread: it is a new message that names the same incident id.
//!
//! # Restarts
//!
//! A restart must neither forget the episodes nor lose a notification. Which incidents a
//! service's episode has posted is kept in memory, so [`SlackNotifier::start`] rebuilds the
//! episodes by replaying the recorded incident events, in their recorded order, through the same
//! bookkeeping as live notifications (`Episodes::select_posts`): otherwise the RESOLVED of an
//! incident posted before the restart would never be sent, and a new alert in an episode that
//! had already paged would page again.
//!
//! Delivery is at least once. The poster records the events of each message Slack accepted, or
//! refused for good (`rejected`), in the deliveries file beside the journal
//! ([`super::deliveries`]), fsynced before the next post. A message the replay selects whose
//! events are not recorded there is owed: it was still queued or being retried when the daemon
//! stopped, or its process died between the journal's write and the queue. Owed messages are
//! queued again at start, in recorded order and before any new notification, and counted as
//! `requeued`; posted, they are recorded like any other. A crash between Slack's answer and that
//! record posts the message once more: a repeat rather than a loss. Then the file is rewritten
//! with every event of the journal except the owed ones, so what the replay would select
//! differently later (another `severities`, a compaction) is never taken for owed.
//!
//! Choices, each erring toward telling the on-call:
//! - A post that ran out of its quick retries (`failed`, counted once) is tried again every
//!   `retry_failed_every_ms` (5 minutes) while the daemon runs, until Slack takes it or refuses
//!   it for good; newer notifications wait behind it in the queue, so Slack gets them in order.
//! - Messages dropped because the queue was full (`dropped`) are owed too, and posted after the
//!   next restart, as is a failed post still waiting for its next try: they are recorded
//!   incidents that Slack never received. A start queues at most `queue` messages again; the
//!   rest are dropped and counted again, and stay owed.
//! - A firing whose resolution Slack received is not owed any more: posting it would announce as
//!   firing an incident Slack was told is over.
//! - Only the `severities` posted before the restart (the file's header) can be owed: the
//!   events of a severity added at the restart were never queued. A severity removed at the
//!   restart loses its owed messages, and the resolutions of its incidents still firing, as it
//!   loses their firings from then on: posting those would post, on every restart, a RESOLVED
//!   for each open incident of a severity never posted (warnings, by default).
//! - Without a deliveries file (the first start of a version that keeps one, or Slack newly
//!   configured: `run` removes the file when Slack is not configured, so that enabling it later
//!   does not post what was recorded meanwhile) nothing is owed, and the replay takes as posted
//!   every event it selects.
//! - A damaged file stops nothing: a torn last line or a damaged one counts as not delivered,
//!   and a damaged header as every severity posted, so their messages are posted again; a file
//!   that cannot be read at all owes every message the replay selects (at most `queue` are
//!   queued again). Each case is logged as a warning.
//! - The replay may select what was never posted where the journal lost the context: a
//!   RESOLVED may come without its FIRING when compaction dropped a long-resolved incident that
//!   had opened the episode, but the resolution of a posted incident is never lost.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::deliveries::{self, Deliveries, DeliveryKey};
use super::incidents::{EventKind, IncidentEvent};
use super::severity_rank;
use crate::calendar::format_rfc3339_ms;
use crate::classify::Severity;
use crate::logs::{Correlation, LogIndex, LogQuery};
use crate::web::escape::encode_query_value;

/// `alerts.slack:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// File holding the incoming-webhook URL (one line), relative to the config file's directory.
    /// Takes precedence over `url_env`.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Environment variable holding the URL.
    #[serde(default = "default_url_env")]
    pub url_env: String,
    /// Severities that are posted.
    #[serde(default = "default_severities")]
    pub severities: Vec<String>,
    /// How anomaly-exporter is reached from a browser, for the /logs links.
    #[serde(default = "default_external_url")]
    pub external_url: String,
    /// The service dashboard, for the dashboard links (`?var-service=` is appended).
    #[serde(default = "default_dashboard_url")]
    pub dashboard_url: String,
    /// Least time between two posts, in milliseconds.
    #[serde(default = "default_min_interval_ms")]
    pub min_interval_ms: u64,
    /// Notifications waiting beyond this many are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Once a post has used its quick retries (counted `failed`), it is tried again this often,
    /// in milliseconds, until Slack takes it or refuses it for good; newer notifications wait
    /// behind it, so Slack still gets them in order.
    #[serde(default = "default_retry_failed_every_ms")]
    pub retry_failed_every_ms: u64,
}

fn default_url_env() -> String {
    "SLACK_WEBHOOK_URL".to_owned()
}
fn default_severities() -> Vec<String> {
    vec!["critical".to_owned(), "high".to_owned()]
}
fn default_external_url() -> String {
    "http://localhost:10110".to_owned()
}
fn default_dashboard_url() -> String {
    "http://localhost:3000/d/anomaly-service/anomaly-service-detail".to_owned()
}
fn default_min_interval_ms() -> u64 {
    1000
}
fn default_queue() -> usize {
    1000
}
fn default_retry_failed_every_ms() -> u64 {
    300_000
}

/// The largest queue taken: far more notifications than Slack's one post a second drains in a
/// day, and within what the channel can hold (a larger one panicked at start).
const MAX_QUEUE: usize = 100_000;

/// The longest spacing taken between two posts: beyond an hour, notifications would wait longer
/// than the incidents they describe.
const MAX_MIN_INTERVAL_MS: u64 = 3_600_000;

impl SlackConfig {
    /// The webhook URL, from the file or the environment; the error names where it looked.
    pub fn webhook_url(&self) -> Result<String, String> {
        let url = match &self.url_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("alerts.slack.url_file: cannot read {}: {e}", path.display()))?,
            None => std::env::var(&self.url_env)
                .map_err(|_| format!("alerts.slack: neither url_file nor the {} variable is set", self.url_env))?,
        };
        let url = url.trim().to_owned();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("alerts.slack: the webhook URL must start with https:// or http://".to_owned());
        }
        Ok(url)
    }

    /// The problem with the section, naming the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.severities.is_empty() {
            return Err(("alerts.slack.severities".into(), "name at least one severity".into()));
        }
        // Alerts' severity labels are matched exactly, so a name of no severity (`Critical`,
        // `crit`) would silently post nothing.
        let posted = [Severity::Warning, Severity::High, Severity::Critical];
        if let Some(unknown) =
            self.severities.iter().find(|name| !posted.iter().any(|severity| severity.as_str() == name.as_str()))
        {
            return Err((
                "alerts.slack.severities".into(),
                format!(
                    "{unknown:?} is not a severity: use warning, high or critical (lower case, as the alerts' label)"
                ),
            ));
        }
        if !(1..=MAX_QUEUE).contains(&self.queue) {
            return Err(("alerts.slack.queue".into(), format!("{}: must be 1 to {MAX_QUEUE}", self.queue)));
        }
        if self.min_interval_ms > MAX_MIN_INTERVAL_MS {
            return Err((
                "alerts.slack.min_interval_ms".into(),
                format!("{}: must be at most {MAX_MIN_INTERVAL_MS} (an hour)", self.min_interval_ms),
            ));
        }
        // Under 100 ms a down Slack would be hammered; past an hour, the on-call would hear of
        // an incident long after Slack came back.
        if !(100..=MAX_MIN_INTERVAL_MS).contains(&self.retry_failed_every_ms) {
            return Err((
                "alerts.slack.retry_failed_every_ms".into(),
                format!("{}: must be 100 to {MAX_MIN_INTERVAL_MS} (an hour)", self.retry_failed_every_ms),
            ));
        }
        Ok(())
    }
}

/// `{outcome}` of a Slack notification.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `sent`, `retried`, `rate_limited`, `rejected`, `failed`, `dropped`, `suppressed` or
    /// `requeued`.
    pub outcome: String,
}

/// Self-metrics of the notifier. Clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct SlackMetrics {
    /// Notifications by outcome.
    pub notifications: Family<OutcomeLabels, Counter>,
}

impl SlackMetrics {
    /// Registers the metrics in `registry` (already prefixed `anomaly_exporter`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "slack_notifications",
            "Slack notifications by outcome: sent, retried, rate_limited, rejected, failed, dropped, suppressed (repeats within an episode), requeued (not delivered before a restart, queued again at start)",
            self.notifications.clone(),
        );
    }

    fn count(&self, outcome: &str) {
        self.count_by(outcome, 1);
    }

    fn count_by(&self, outcome: &str, notifications: u64) {
        self.notifications.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc_by(notifications);
    }
}

/// The sending side, held by the webhook handler.
#[derive(Debug, Clone)]
pub struct SlackNotifier {
    queue: mpsc::Sender<Vec<IncidentEvent>>,
    episodes: Arc<Mutex<Episodes>>,
    severities: Vec<String>,
    metrics: SlackMetrics,
    deliveries: DeliveriesFile,
}

/// The deliveries file, and the lock that keeps its appends (the poster's) and its rewrites
/// after a compaction (the compaction task's) apart.
#[derive(Debug, Clone)]
struct DeliveriesFile {
    incidents_dir: PathBuf,
    writing: Arc<Mutex<()>>,
}

impl DeliveriesFile {
    /// Runs `write` on the directory under the lock, on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Path) -> Result<T, deliveries::DeliveriesError> + Send + 'static,
    ) -> Result<T, String> {
        let file = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _writing = file.writing.lock().unwrap_or_else(PoisonError::into_inner);
            write(&file.incidents_dir)
        })
        .await;
        match written {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }
}

impl SlackNotifier {
    /// Starts the posting task and returns its handle. `recorded` is every incident event of
    /// the journal in `incidents_dir`, in recorded order
    /// ([`super::IncidentStore::events_in_recorded_order`]): the episodes open before a restart
    /// are rebuilt from it without posting anything, and the messages not delivered before it
    /// are queued again (see the module's documentation). Reads and rewrites the deliveries
    /// file: call it before the webhook is served.
    pub fn start(
        config: &SlackConfig,
        url: String,
        logs: Option<Arc<LogIndex>>,
        metrics: SlackMetrics,
        recorded: &[IncidentEvent],
        incidents_dir: &Path,
    ) -> Self {
        let delivered = read_deliveries(incidents_dir);
        let Replay { episodes, owed, settled } = Episodes::replay(recorded, &config.severities, &delivered);
        if !episodes.by_service.is_empty() {
            tracing::info!(
                services = episodes.by_service.len(),
                "slack episodes still open before the restart: their resolutions will be posted"
            );
        }
        // Before anything is posted, so that the poster's appends land in the new file.
        if let Err(error) = deliveries::rewrite(incidents_dir, &config.severities, &settled) {
            tracing::warn!(%error, "slack deliveries not rewritten: the previous record is kept and appended to");
        }
        let (queue, receiver) = mpsc::channel(config.queue);
        let deliveries = DeliveriesFile { incidents_dir: incidents_dir.to_owned(), writing: Arc::default() };
        let poster = Poster {
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
            url,
            config: config.clone(),
            logs,
            metrics: metrics.clone(),
            deliveries: deliveries.clone(),
        };
        tokio::spawn(poster.run(receiver));
        let notifier = Self {
            queue,
            severities: config.severities.clone(),
            metrics,
            episodes: Arc::new(Mutex::new(episodes)),
            deliveries,
        };
        notifier.requeue(owed);
        notifier
    }

    /// Queues again, in order, the messages not delivered before the restart.
    fn requeue(&self, owed: Vec<Vec<IncidentEvent>>) {
        if owed.is_empty() {
            return;
        }
        let owed_messages = owed.len();
        let mut requeued = 0;
        for message in owed {
            if self.queue.try_send(message).is_ok() {
                requeued += 1;
            } else {
                self.metrics.count("dropped");
            }
        }
        self.metrics.count_by("requeued", requeued);
        if requeued < owed_messages as u64 {
            tracing::warn!(
                requeued,
                dropped = owed_messages as u64 - requeued,
                "slack queue full at start: the notifications dropped stay owed until the next start"
            );
        } else {
            tracing::info!(requeued, "slack notifications not delivered before the restart are posted again");
        }
    }

    /// Drops from the deliveries file the events of the incidents a compaction of the journal
    /// pruned: no replay selects them again, and without this the file would grow for as long as
    /// the daemon runs. A failure only leaves their lines until the next start's rewrite.
    pub async fn forget_incidents(&self, pruned: &[String]) {
        if pruned.is_empty() {
            return;
        }
        let pruned: HashSet<String> = pruned.iter().cloned().collect();
        match self.deliveries.write(move |dir| deliveries::forget(dir, &pruned)).await {
            Ok(dropped) => tracing::debug!(dropped, "slack deliveries of pruned incidents dropped"),
            Err(error) => tracing::warn!(%error, "slack deliveries of pruned incidents kept until the next start"),
        }
    }

    /// Queues the events of one notification that the episode rules select (one page per
    /// episode unless an alert escalates, a resolution for each posted incident: see
    /// `Episodes::select_posts`), one message per service and kind (Alertmanager groups by
    /// service, so a notification makes one message); never waits.
    pub fn notify(&self, events: &[IncidentEvent]) {
        let posts = self.episodes.lock().unwrap_or_else(PoisonError::into_inner).select_posts(events, &self.severities);
        if posts.suppressed > 0 {
            self.metrics.count_by("suppressed", posts.suppressed);
        }
        for message in posts.messages {
            if self.queue.try_send(message).is_err() {
                self.metrics.count("dropped");
                tracing::warn!("slack queue full: notification dropped");
            }
        }
    }
}

/// Per service, its current episode: the bookkeeping that decides which incident events are
/// posted. Live notifications and the replay at start both go through
/// [`Episodes::select_posts`], so the two cannot drift apart.
#[derive(Debug, Default)]
struct Episodes {
    by_service: HashMap<String, Episode>,
}

/// What a service's current episode has posted.
#[derive(Debug, Default)]
struct Episode {
    /// Its incidents not yet resolved.
    open: HashSet<String>,
    /// Its incidents posted as firing and not yet posted as resolved.
    posted: HashSet<String>,
    /// The most severe rank posted (0 critical).
    worst_posted: Option<u8>,
}

/// What one notification's events come to.
#[derive(Debug, Default)]
struct Posts {
    /// The events to post, one message per service and kind.
    messages: Vec<Vec<IncidentEvent>>,
    /// Firing events not posted because their episode had already posted one as severe.
    suppressed: u64,
}

/// The deliveries file in `dir`, or what stands for it when it is missing or unreadable.
fn read_deliveries(dir: &Path) -> Deliveries {
    match deliveries::read(dir) {
        Ok(Some(delivered)) => {
            if delivered.severities.is_none() {
                tracing::warn!(
                    path = %deliveries::path_in(dir).display(),
                    "slack deliveries: damaged header, taking every severity as posted before the restart"
                );
            }
            if delivered.unreadable_lines > 0 {
                tracing::warn!(
                    path = %deliveries::path_in(dir).display(),
                    lines = delivered.unreadable_lines,
                    "slack deliveries: damaged lines skipped; their notifications may be posted again"
                );
            }
            delivered
        }
        Ok(None) => Deliveries::missing(),
        Err(error) => {
            tracing::warn!(
                %error,
                "slack deliveries unreadable: every notification of the journal is taken as not delivered and posted again"
            );
            Deliveries::unknown()
        }
    }
}

/// What the replay at start finds.
#[derive(Debug, Default)]
struct Replay {
    /// The episodes the journal leaves open.
    episodes: Episodes,
    /// The messages selected before the restart and not delivered, in recorded order, each
    /// with its events not delivered.
    owed: Vec<Vec<IncidentEvent>>,
    /// Every firing and resolved event of the journal except the owed ones: the deliveries
    /// file's new content.
    settled: Vec<DeliveryKey>,
}

/// Whether `event`, which a message selected before the restart holds, is still owed to Slack:
/// not recorded as delivered; of a severity posted before the restart (severities unknown:
/// taken as posted); and not a firing whose resolution was delivered.
fn is_owed(event: &IncidentEvent, delivered: &Deliveries) -> bool {
    let was_posted_severity = delivered.severities.as_ref().is_none_or(|posted| posted.contains(&event.severity));
    let resolution_delivered =
        event.kind == EventKind::Firing && delivered.contains(EventKind::Resolved, &event.incident_id);
    was_posted_severity && !resolution_delivered && !delivered.contains(event.kind, &event.incident_id)
}

impl Episodes {
    /// The episodes that `recorded` (incident events in recorded order) leaves open, as if each
    /// of its notifications had gone through [`Episodes::select_posts`], and the messages it
    /// selected that `delivered` says Slack has not received.
    fn replay(recorded: &[IncidentEvent], severities: &[String], delivered: &Deliveries) -> Replay {
        let mut replay = Replay::default();
        let mut owed_keys: HashSet<DeliveryKey> = HashSet::new();
        // The events of one notification share its reception time, and compaction merges the
        // journal's files, so the reception time is what tells one notification from the next.
        // Two notifications received within the same millisecond are replayed as one, which
        // can only change the order of their firing and resolved events.
        for notification in recorded.chunk_by(|a, b| a.received_at_ms == b.received_at_ms) {
            for message in replay.episodes.select_posts(notification, severities).messages {
                let undelivered: Vec<IncidentEvent> = message.into_iter().filter(|e| is_owed(e, delivered)).collect();
                if !undelivered.is_empty() {
                    owed_keys.extend(undelivered.iter().map(DeliveryKey::of));
                    replay.owed.push(undelivered);
                }
            }
        }
        replay.settled = recorded
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Firing | EventKind::Resolved))
            .map(DeliveryKey::of)
            .filter(|key| !owed_keys.contains(key))
            .collect();
        replay
    }

    /// Selects the firing and resolved events of one notification that are posted, and keeps
    /// the episodes up to date. Other event kinds (operators' acknowledgements and hand
    /// resolutions) are never posted: Alertmanager's resolution ends the episode.
    ///
    /// One page per episode: from a service's first posted incident until all its incidents
    /// of the configured `severities` have resolved, a new firing incident is posted only when
    /// it is more severe than what the episode already posted (an escalation), and a resolution
    /// only for posted incidents. So the high alert that Alertmanager releases from inhibition
    /// when the critical one resolves does not page again.
    fn select_posts(&mut self, notification: &[IncidentEvent], severities: &[String]) -> Posts {
        let mut posts = Posts::default();
        // Firing first: a notification that resolves one alert and releases another keeps the
        // episode open.
        let ordered = notification
            .iter()
            .filter(|e| e.kind == EventKind::Firing)
            .chain(notification.iter().filter(|e| e.kind == EventKind::Resolved));
        for event in ordered {
            // An alert without a service is about the exporter itself: Alertmanager posts those
            // to Slack directly (the shipped `slack-direct` receiver), since the exporter may be
            // what is down; posting them here too would post each twice.
            if !severities.contains(&event.severity) || event.service.is_empty() {
                continue;
            }
            let episode = self.by_service.entry(event.service.clone()).or_default();
            let post = match event.kind {
                EventKind::Firing if let Some(older) = continued_occurrence(notification, event, &episode.posted) => {
                    // The store resolved an older occurrence of this alert that Alertmanager
                    // replaced (`IncidentStore::record`): for Slack it is one problem that never
                    // stopped, so nothing is posted, and the new occurrence's resolution will be.
                    episode.posted.remove(&older.incident_id);
                    episode.posted.insert(event.incident_id.clone());
                    episode.open.insert(event.incident_id.clone());
                    posts.suppressed += 1;
                    false
                }
                EventKind::Firing => {
                    let escalates = episode.worst_posted.is_none_or(|worst| severity_rank(&event.severity) < worst);
                    episode.open.insert(event.incident_id.clone());
                    if escalates {
                        episode.worst_posted = Some(severity_rank(&event.severity));
                        episode.posted.insert(event.incident_id.clone());
                    } else {
                        posts.suppressed += 1;
                    }
                    escalates
                }
                _ => {
                    episode.open.remove(&event.incident_id);
                    let posted = episode.posted.remove(&event.incident_id);
                    if episode.open.is_empty() {
                        self.by_service.remove(&event.service);
                    }
                    posted
                }
            };
            if !post {
                continue;
            }
            match posts.messages.iter_mut().find(|m| m[0].service == event.service && m[0].kind == event.kind) {
                Some(message) => message.push(event.clone()),
                None => posts.messages.push(vec![event.clone()]),
            }
        }
        posts
    }
}

/// The older occurrence of `firing`'s alert that `notification` resolves as superseded by it
/// (the same fingerprint, an earlier start, ended at `firing`'s start: what the store records
/// when Alertmanager replaced it, since Alertmanager itself sends one alert per fingerprint),
/// if the episode posted it.
fn continued_occurrence<'a>(
    notification: &'a [IncidentEvent],
    firing: &IncidentEvent,
    posted: &HashSet<String>,
) -> Option<&'a IncidentEvent> {
    notification.iter().find(|older| {
        older.kind == EventKind::Resolved
            && older.fingerprint == firing.fingerprint
            && older.starts_at_ms < firing.starts_at_ms
            && older.ends_at_ms == Some(firing.starts_at_ms)
            && posted.contains(&older.incident_id)
    })
}

const MAX_ATTEMPTS: u32 = 5;

struct Poster {
    client: reqwest::Client,
    url: String,
    config: SlackConfig,
    logs: Option<Arc<LogIndex>>,
    metrics: SlackMetrics,
    /// Where the delivered events are recorded.
    deliveries: DeliveriesFile,
}

impl Poster {
    async fn run(self, mut receiver: mpsc::Receiver<Vec<IncidentEvent>>) {
        let min_interval = Duration::from_millis(self.config.min_interval_ms);
        let retry_failed_every = Duration::from_millis(self.config.retry_failed_every_ms);
        let mut next_post = tokio::time::Instant::now();
        while let Some(events) = receiver.recv().await {
            let Some(event) = events.iter().min_by_key(|e| e.starts_at_ms) else { continue };
            let correlation = self.correlate(event).await;
            let message = render_message(&events, correlation.as_ref(), &self.config);
            let mut attempt = 1;
            // Slack received it or refused it for good (`rejected`): nothing more is owed. A post
            // that ran out of its quick retries is counted `failed` once and tried again every
            // `retry_failed_every`, ahead of every newer notification: a RESOLVED must not reach
            // Slack before its FIRING. A restart while it waits posts it again, as it is not
            // recorded as delivered.
            let outcome = loop {
                tokio::time::sleep_until(next_post).await;
                next_post = tokio::time::Instant::now() + min_interval;
                let quick_retry = attempt < MAX_ATTEMPTS;
                // What went wrong, and the seconds Slack asked to wait (a 429's Retry-After).
                let (failure, retry_after) = match self.client.post(&self.url).json(&message).send().await {
                    Ok(response) if response.status().is_success() => break "sent",
                    Ok(response) => {
                        let status = response.status();
                        let retry_after = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
                        let body = response.text().await.unwrap_or_default();
                        if status.is_client_error() && status.as_u16() != 429 {
                            // 400 invalid_payload, 403, 404 channel_not_found, 410
                            // channel_is_archived: the same message would fail again.
                            tracing::warn!(incident = %event.incident_id, status = status.as_u16(), body = %body, "slack refused the notification");
                            break "rejected";
                        }
                        if status.as_u16() == 429 && quick_retry {
                            self.metrics.count("rate_limited");
                            let wait = Duration::from_secs(retry_after.unwrap_or(1).min(300));
                            next_post = next_post.max(tokio::time::Instant::now() + wait);
                        } else if quick_retry {
                            self.metrics.count("retried");
                            next_post = tokio::time::Instant::now() + backoff(attempt);
                        }
                        (format!("HTTP {}: {body}", status.as_u16()), retry_after)
                    }
                    Err(error) => {
                        if quick_retry {
                            self.metrics.count("retried");
                            tracing::debug!(incident = %event.incident_id, error = %error, "slack post failed, retrying");
                            next_post = tokio::time::Instant::now() + backoff(attempt);
                        }
                        (error.to_string(), None)
                    }
                };
                if !quick_retry {
                    if attempt == MAX_ATTEMPTS {
                        self.metrics.count("failed");
                        tracing::warn!(incident = %event.incident_id, error = %failure, retry_every_ms = self.config.retry_failed_every_ms, "slack post failed after its retries; it is tried again until Slack takes it, and newer notifications wait behind it");
                    }
                    // Slack's Retry-After, when longer, is honoured as in the quick retries.
                    let asked = Duration::from_secs(retry_after.unwrap_or(0).min(300));
                    next_post = tokio::time::Instant::now() + retry_failed_every.max(asked);
                }
                attempt += 1;
            };
            // Counted once recorded: a scrape that shows a message sent also promises that a
            // restart will not post it again (unless the record failed, which is logged).
            self.record_delivered(&events).await;
            if attempt > MAX_ATTEMPTS {
                tracing::info!(incident = %event.incident_id, attempts = attempt, outcome, "slack notification settled after failing");
            }
            self.metrics.count(outcome);
        }
    }

    /// Records in the deliveries file that `events` are owed nothing more; a failure only means
    /// that they are posted again after a restart.
    async fn record_delivered(&self, events: &[IncidentEvent]) {
        let keys: Vec<DeliveryKey> = events.iter().map(DeliveryKey::of).collect();
        if let Err(error) = self.deliveries.write(move |dir| deliveries::append(dir, &keys)).await {
            let incident = events.first().map(|e| e.incident_id.as_str()).unwrap_or_default();
            tracing::warn!(incident, %error, "slack delivery not recorded: the notification is posted again after a restart");
        }
    }

    /// The service's logs around the alert's start, ranked; `None` without logs or service.
    ///
    /// Reads in turn with `/logs` ([`crate::logs::turns`]): it waits for a turn rather than
    /// posting without logs, since messages go out one at a time and the wait is at most the
    /// shortest running read. It is never a refused `/logs` query, so it is not counted as one.
    async fn correlate(&self, event: &IncidentEvent) -> Option<Correlation> {
        let logs = Arc::clone(self.logs.as_ref()?);
        if event.service.is_empty() || event.kind != EventKind::Firing {
            return None;
        }
        let query =
            LogQuery { limit: 5, ..LogQuery::around(event.service.clone(), event.starts_at_ms, logs.settings()) };
        let turn = logs.turns().take().await;
        let read = move || {
            // Held by the reading thread, as `/logs` does: the turn ends when the read does.
            let _turn = turn;
            logs.correlate(&query)
        };
        match tokio::task::spawn_blocking(read).await {
            Ok(Ok(correlation)) => Some(correlation),
            Ok(Err(error)) => {
                tracing::debug!(service = %event.service, error = %error, "no log correlation for the notification");
                None
            }
            Err(_) => None,
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * 2_u64.pow(attempt.min(6)))
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped in text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The message for the events of one service and kind: a header with the worst severity, a
/// block per alert, the correlated logs, the links.
pub fn render_message(
    events: &[IncidentEvent],
    correlation: Option<&Correlation>,
    config: &SlackConfig,
) -> serde_json::Value {
    let Some(first) = events.iter().min_by_key(|e| (severity_rank(&e.severity), e.starts_at_ms)) else {
        return serde_json::json!({ "text": "" });
    };
    let service = if first.service.is_empty() { "anomaly-exporter" } else { first.service.as_str() };
    let state = if first.kind == EventKind::Resolved { "RESOLVED" } else { "FIRING" };
    let mut text = format!(
        "*[{state}:{}] {}* severity *{}*\n",
        events.len(),
        slack_escape(service),
        slack_escape(&first.severity)
    );
    for event in events {
        render_alert(&mut text, event);
    }
    if let Some(correlation) = correlation {
        render_logs(&mut text, correlation);
    }
    if !first.service.is_empty() {
        let encoded = encode_query_value(&first.service);
        let time = events.iter().map(|e| e.starts_at_ms).min().unwrap_or(first.starts_at_ms);
        text.push_str(&format!(
            "<{}/logs?service={encoded}&time={time}|Logs at the time> · <{}?var-service={encoded}|Dashboard>",
            config.external_url.trim_end_matches('/'),
            config.dashboard_url
        ));
    }
    serde_json::json!({ "text": text })
}

fn render_alert(text: &mut String, event: &IncidentEvent) {
    let icon = match (event.kind, event.severity.as_str()) {
        (EventKind::Resolved, _) => ":white_check_mark:",
        (_, "critical") => ":red_circle:",
        (_, "high") => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    };
    let service = if event.service.is_empty() { "anomaly-exporter" } else { event.service.as_str() };
    let signal = event.labels.get("signal").map(|s| format!(" signal `{}`", slack_escape(s))).unwrap_or_default();
    text.push_str(&format!(
        "{icon} *{}* service `{}` severity *{}*{signal}\n",
        slack_escape(&event.alertname),
        slack_escape(service),
        slack_escape(&event.severity)
    ));
    for key in ["summary", "description"] {
        if let Some(value) = event.annotations.get(key) {
            text.push_str(&slack_escape(value));
            text.push('\n');
        }
    }
    text.push_str(&format!("started {}", format_rfc3339_ms(event.starts_at_ms)));
    if let Some(end) = event.ends_at_ms {
        text.push_str(&format!(", ended {}", format_rfc3339_ms(end)));
    }
    text.push_str(&format!(" · incident `{}`\n", event.incident_id));
}

fn render_logs(text: &mut String, correlation: &Correlation) {
    if !correlation.templates.is_empty() {
        text.push_str("*Top log templates around the start:*\n");
        for template in correlation.templates.iter().take(3) {
            text.push_str(&format!("• {}× `{}`\n", template.count, slack_escape(&template.template)));
        }
    }
    if !correlation.lines.is_empty() {
        text.push_str("*Lines:*\n");
        for line in correlation.lines.iter().take(5) {
            let record = &line.record;
            let level = record.level.map_or("-", |l| l.as_str());
            let message: String = record.message.chars().take(300).collect();
            text.push_str(&format!(
                "> {} {level} {}\n",
                record.timestamp_ms.map(format_rfc3339_ms).unwrap_or_default(),
                slack_escape(&message)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::*;
    use crate::alerts::IncidentStore;
    use crate::alerts::payload::{Alert, AlertStatus};
    use crate::alerts::routes::WebhookMetrics;

    fn event(kind: EventKind, severity: &str, service: &str) -> IncidentEvent {
        IncidentEvent {
            incident_id: "ab-1".into(),
            fingerprint: "ab".into(),
            kind,
            alertname: "AnomalyCritical".into(),
            service: service.into(),
            severity: severity.into(),
            labels: BTreeMap::from([("signal".to_owned(), "error_ratio".to_owned())]),
            annotations: BTreeMap::from([("summary".to_owned(), "a <b> & c".to_owned())]),
            starts_at_ms: 1_795_527_140_492,
            ends_at_ms: None,
            received_at_ms: 0,
            note: None,
            actor: None,
        }
    }

    fn config() -> SlackConfig {
        serde_yaml_ng::from_str("min_interval_ms: 200").unwrap()
    }

    #[test]
    fn queue_and_spacing_out_of_range_are_refused_naming_the_key() {
        assert!(config().validate().is_ok());
        for (yaml, key) in [
            ("queue: 0", "alerts.slack.queue"),
            ("queue: 2305843009213693952", "alerts.slack.queue"),
            ("min_interval_ms: 3600001", "alerts.slack.min_interval_ms"),
            ("retry_failed_every_ms: 99", "alerts.slack.retry_failed_every_ms"),
            ("retry_failed_every_ms: 3600001", "alerts.slack.retry_failed_every_ms"),
            // Matched exactly against the alerts' labels: these would post nothing.
            ("severities: [Critical, high]", "alerts.slack.severities"),
            ("severities: [crit]", "alerts.slack.severities"),
            ("severities: []", "alerts.slack.severities"),
        ] {
            let config: SlackConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(config.validate().unwrap_err().0, key, "{yaml}");
        }
    }

    #[test]
    fn message_has_the_alerts_of_a_service_and_links_with_the_service_encoded() {
        let mut high = event(EventKind::Firing, "high", "check out&x");
        high.alertname = "AnomalyHigh".into();
        let message = render_message(&[high, event(EventKind::Firing, "critical", "check out&x")], None, &config());
        let text = message["text"].as_str().unwrap();
        assert!(text.starts_with("*[FIRING:2] check out&amp;x* severity *critical*\n"), "{text}");
        let critical =
            ":red_circle: *AnomalyCritical* service `check out&amp;x` severity *critical* signal `error_ratio`";
        assert!(text.contains(critical), "{text}");
        assert!(text.contains(":large_orange_circle: *AnomalyHigh*"), "{text}");
        assert!(text.contains("a &lt;b&gt; &amp; c"), "{text}");
        let logs = "<http://localhost:10110/logs?service=check%20out%26x&time=1795527140492|Logs at the time>";
        assert!(text.contains(logs), "{text}");
    }

    /// A post the stand-in for Slack received.
    #[derive(Debug)]
    struct Received {
        at: std::time::Instant,
        /// The message's `text`.
        text: String,
    }

    /// A stand-in for Slack answering from a script, recording each post and when it arrived.
    async fn scripted_slack(answers: Vec<(u16, Option<&'static str>)>) -> (String, Arc<Mutex<Vec<Received>>>) {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(answers.into_iter()));
        let seen = Arc::clone(&arrivals);
        let router = Router::new().route(
            "/hook",
            post(move |_headers: HeaderMap, body: String| {
                let seen = Arc::clone(&seen);
                let script = Arc::clone(&script);
                async move {
                    let message: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let text = message["text"].as_str().unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(Received { at: std::time::Instant::now(), text });
                    let (code, retry_after) = script.lock().unwrap().next().unwrap_or((200, None));
                    let mut response = (StatusCode::from_u16(code).unwrap(), "answer").into_response();
                    if let Some(seconds) = retry_after {
                        response.headers_mut().insert("retry-after", seconds.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (format!("http://{address}/hook"), arrivals)
    }

    fn outcomes(metrics: &SlackMetrics) -> BTreeMap<String, u64> {
        ["sent", "retried", "rate_limited", "rejected", "failed", "dropped", "suppressed", "requeued"]
            .into_iter()
            .map(|o| (o.to_owned(), metrics.notifications.get_or_create(&OutcomeLabels { outcome: o.into() }).get()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    async fn wait_for(metrics: &SlackMetrics, total: u64) {
        for _ in 0..200 {
            let finished = outcomes(metrics);
            let done: u64 = ["sent", "rejected", "failed"].iter().map(|o| finished.get(*o).copied().unwrap_or(0)).sum();
            if done >= total {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("notifications not finished: {:?}", outcomes(metrics));
    }

    #[tokio::test]
    async fn one_page_per_episode_unless_it_escalates() {
        let (url, arrivals) = scripted_slack(vec![]).await;
        let metrics = SlackMetrics::default();
        let dir = tempfile::tempdir().unwrap();
        let notifier = SlackNotifier::start(&config(), url, None, metrics.clone(), &[], dir.path());
        let with_id =
            |kind, severity: &str, id: &str| IncidentEvent { incident_id: id.into(), ..event(kind, severity, "a") };
        notifier.notify(&[with_id(EventKind::Firing, "high", "h")]); // posted
        notifier.notify(&[with_id(EventKind::Firing, "critical", "c")]); // escalation: posted
        // The critical resolves and releases another high alert: one resolved post, no page.
        notifier.notify(&[with_id(EventKind::Resolved, "critical", "c"), with_id(EventKind::Firing, "high", "h2")]);
        notifier.notify(&[with_id(EventKind::Resolved, "high", "h2")]); // never posted: silent
        notifier.notify(&[with_id(EventKind::Resolved, "high", "h")]); // posted; the episode ends
        notifier.notify(&[with_id(EventKind::Firing, "high", "h3")]); // a new episode: posted
        wait_for(&metrics, 5).await;
        assert_eq!(outcomes(&metrics), BTreeMap::from([("sent".into(), 5), ("suppressed".into(), 1)]));
        assert_eq!(arrivals.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn posts_are_paced_and_retried_where_a_retry_helps() {
        // 429 with Retry-After 1, then 500, then ok; then a 404 that is not retried; then ok.
        let (url, arrivals) =
            scripted_slack(vec![(429, Some("1")), (500, None), (200, None), (404, None), (200, None)]).await;
        let metrics = SlackMetrics::default();
        let dir = tempfile::tempdir().unwrap();
        let notifier = SlackNotifier::start(&config(), url, None, metrics.clone(), &[], dir.path());
        notifier.notify(&[event(EventKind::Firing, "critical", "a")]);
        notifier.notify(&[event(EventKind::Firing, "warning", "b")]); // not a posted severity
        let in_c = |kind| IncidentEvent { incident_id: "c-1".into(), ..event(kind, "high", "c") };
        notifier.notify(&[in_c(EventKind::Firing), in_c(EventKind::Resolved)]);
        wait_for(&metrics, 3).await;
        assert_eq!(
            outcomes(&metrics),
            BTreeMap::from([
                ("rate_limited".into(), 1),
                ("retried".into(), 1),
                ("sent".into(), 2),
                ("rejected".into(), 1)
            ])
        );
        let arrivals: Vec<std::time::Instant> = arrivals.lock().unwrap().iter().map(|post| post.at).collect();
        assert_eq!(arrivals.len(), 5);
        assert!(arrivals[1] - arrivals[0] >= Duration::from_millis(950), "Retry-After honoured");
        for pair in arrivals.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(190), "paced: {:?}", pair[1] - pair[0]);
        }
    }

    #[tokio::test]
    async fn a_post_out_of_quick_retries_is_tried_again_later_ahead_of_newer_ones() {
        // Five 500s use up the quick retries (about 15 s of backoff); Slack is back for the sixth.
        let (url, arrivals) = scripted_slack(vec![(500, None); 5]).await;
        let metrics = SlackMetrics::default();
        let dir = tempfile::tempdir().unwrap();
        let config: SlackConfig = serde_yaml_ng::from_str("min_interval_ms: 10\nretry_failed_every_ms: 1500").unwrap();
        let notifier = SlackNotifier::start(&config, url, None, metrics.clone(), &[], dir.path());
        let in_a = |kind| IncidentEvent { incident_id: "a-1".into(), ..event(kind, "critical", "a") };
        notifier.notify(&[in_a(EventKind::Firing)]);
        notifier.notify(&[in_a(EventKind::Resolved)]);
        for _ in 0..600 {
            if outcomes(&metrics).get("sent") == Some(&2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            outcomes(&metrics),
            BTreeMap::from([("retried".into(), 4), ("failed".into(), 1), ("sent".into(), 2)])
        );
        let arrivals = arrivals.lock().unwrap();
        let texts: Vec<&str> = arrivals.iter().map(|post| &post.text[..12]).collect();
        // The FIRING six times, then its RESOLVED, never the other way round.
        assert_eq!(texts, [&["*[FIRING:1] "; 6][..], &["*[RESOLVED:1"]].concat());
        assert!(arrivals[5].at - arrivals[4].at >= Duration::from_millis(1450), "the later retry waits its interval");
        // Both are recorded as delivered: a restart owes nothing.
        let delivered = read_deliveries(dir.path());
        assert!([in_a(EventKind::Firing), in_a(EventKind::Resolved)].iter().all(|e| !is_owed(e, &delivered)));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = SlackMetrics::default();
        let config: SlackConfig = serde_yaml_ng::from_str("queue: 1\nmin_interval_ms: 60000").unwrap();
        // Nothing listens on port 9: every post fails, slowly paced, so the queue stays full.
        let dir = tempfile::tempdir().unwrap();
        let notifier =
            SlackNotifier::start(&config, "http://127.0.0.1:9/hook".into(), None, metrics.clone(), &[], dir.path());
        let started = std::time::Instant::now();
        let many: Vec<IncidentEvent> =
            (0..20).map(|i| event(EventKind::Firing, "critical", &format!("s{i}"))).collect();
        notifier.notify(&many);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(outcomes(&metrics).get("dropped").copied().unwrap_or(0) >= 18, "{:?}", outcomes(&metrics));
    }

    #[tokio::test]
    async fn log_correlation_waits_for_a_turn_shared_with_the_logs_page() {
        use crate::logs::{LogsConfig, LogsMetrics};
        use crate::web::logs::LogsState;

        let dir = tempfile::tempdir().unwrap();
        let firing = event(EventKind::Firing, "critical", "orders");
        let line = |ms: i64| {
            format!(
                "{{\"@timestamp\":\"{}\",\"message\":\"timeout calling payments\",\"logger_name\":\"a.B\",\"level\":\"ERROR\"}}\n",
                format_rfc3339_ms(ms)
            )
        };
        let text: String = (0..5).map(|s| line(firing.starts_at_ms + s * 1000)).collect();
        std::fs::write(dir.path().join("app.log"), text).unwrap();
        let logs_config = LogsConfig {
            services: [("orders".to_owned(), vec![dir.path().join("app.log").display().to_string()])].into(),
            max_concurrent_queries: 1,
            ..LogsConfig::default()
        };
        // One index, as the daemon shares it between `/logs` and the notifier.
        let index = Arc::new(LogIndex::new(&logs_config).unwrap());
        let page = LogsState::new(Arc::clone(&index), LogsMetrics::default());
        let poster = Poster {
            client: reqwest::Client::new(),
            url: String::new(),
            config: config(),
            logs: Some(Arc::clone(&index)),
            metrics: SlackMetrics::default(),
            deliveries: DeliveriesFile { incidents_dir: dir.path().to_owned(), writing: Arc::default() },
        };

        // A `/logs` query is reading: the notifier's correlation waits for its turn.
        let reading = page.index.turns().try_take().unwrap();
        let correlation = poster.correlate(&firing);
        tokio::pin!(correlation);
        let waited = tokio::time::timeout(Duration::from_millis(300), &mut correlation).await;
        assert!(waited.is_err(), "the correlation read while every turn was taken");
        drop(reading);
        let correlation = correlation.await.expect("the correlation runs once the turn is free");
        assert_eq!(correlation.lines_in_window, 5);
        assert_eq!(index.turns().available(), 1, "the turn is given back");
        assert_eq!(page.metrics.queries_rejected.get(), 0, "waiting is not a refused /logs query");
    }

    fn alert(fingerprint: &str, severity: &str, status: AlertStatus) -> Alert {
        Alert {
            status,
            labels: BTreeMap::from([
                ("alertname".to_owned(), "AnomalyCritical".to_owned()),
                ("service".to_owned(), "checkout".to_owned()),
                ("severity".to_owned(), severity.to_owned()),
            ]),
            annotations: BTreeMap::new(),
            starts_at_ms: 1_000,
            ends_at_ms: (status == AlertStatus::Resolved).then_some(61_000),
            generator_url: String::new(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    /// The webhook's path: record the notification, then notify what was new.
    fn receive(store: &IncidentStore, notifier: &SlackNotifier, alerts: &[Alert], received_at_ms: i64) {
        notifier.notify(&store.record(alerts, received_at_ms).unwrap());
    }

    /// A notifier started as the daemon starts one: from the journal of `store`, kept in `dir`.
    fn start_from(store: &IncidentStore, url: &str, metrics: &SlackMetrics, dir: &Path) -> SlackNotifier {
        SlackNotifier::start(&config(), url.to_owned(), None, metrics.clone(), &store.events_in_recorded_order(), dir)
    }

    /// Restarts the store and notifier kept in `dir` and checks that nothing is owed: the
    /// restart posts nothing.
    async fn assert_a_restart_owes_nothing(dir: &Path, url: &str) {
        let after = SlackMetrics::default();
        let store = IncidentStore::open(dir).unwrap();
        let _notifier = start_from(&store, url, &after, dir);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(outcomes(&after), BTreeMap::new(), "the restart posted again");
    }

    #[tokio::test]
    async fn an_incident_posted_before_a_restart_has_its_resolution_posted_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (url, posts) = scripted_slack(vec![]).await;
        let before = SlackMetrics::default();
        let store = IncidentStore::open(dir.path()).unwrap();
        let notifier = start_from(&store, &url, &before, dir.path());
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Firing)], 2_000);
        wait_for(&before, 1).await;
        drop((notifier, store));

        // The restart: a new store and notifier from the journal on disk.
        let after = SlackMetrics::default();
        let store = IncidentStore::open(dir.path()).unwrap();
        let notifier = start_from(&store, &url, &after, dir.path());
        // Alertmanager's repeat of the firing alert, then a new high alert in the same episode:
        // neither pages again.
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Firing)], 3_000);
        receive(&store, &notifier, &[alert("bb", "high", AlertStatus::Firing)], 4_000);
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Resolved)], 5_000);
        wait_for(&after, 1).await;
        // Let a second post arrive, if one would (posts are 200 ms apart).
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(outcomes(&after), BTreeMap::from([("sent".into(), 1), ("suppressed".into(), 1)]));
        let texts: Vec<String> = posts.lock().unwrap().iter().map(|post| post.text.clone()).collect();
        assert_eq!(texts.len(), 2, "{texts:#?}");
        assert!(texts[0].starts_with("*[FIRING:1] checkout* severity *critical*"), "{}", texts[0]);
        assert!(texts[1].starts_with("*[RESOLVED:1] checkout* severity *critical*"), "{}", texts[1]);
        assert!(texts[1].contains("incident `aa-1000`"), "{}", texts[1]);
    }

    #[test]
    fn alerts_without_a_service_are_left_to_alertmanager() {
        let mut episodes = Episodes::default();
        let health = |kind| IncidentEvent { alertname: "AnomalyExporterSourceDown".into(), ..event(kind, "high", "") };
        let posts = episodes.select_posts(&[health(EventKind::Firing)], &config().severities);
        assert!(posts.messages.is_empty() && posts.suppressed == 0);
        assert!(episodes.by_service.is_empty(), "no episode opened");
        assert!(episodes.select_posts(&[health(EventKind::Resolved)], &config().severities).messages.is_empty());
        let service = episodes.select_posts(&[event(EventKind::Firing, "high", "checkout")], &config().severities);
        assert_eq!(service.messages.len(), 1, "a service's alert is still posted");
    }

    #[tokio::test]
    async fn an_alert_firing_again_without_its_resolution_goes_on_as_one_episode_that_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (url, posts) = scripted_slack(vec![]).await;
        let metrics = SlackMetrics::default();
        let store = IncidentStore::open(dir.path()).unwrap();
        let notifier = start_from(&store, &url, &metrics, dir.path());
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Firing)], 2_000);
        wait_for(&metrics, 1).await;
        // Alertmanager sends the second occurrence only: the first one's resolution is lost. The
        // store resolves the first; for Slack the problem goes on, and nothing is posted.
        let again = Alert { starts_at_ms: 600_000, ..alert("aa", "critical", AlertStatus::Firing) };
        receive(&store, &notifier, std::slice::from_ref(&again), 700_000);
        // The second occurrence's resolution is posted, and ends the episode: the next alert pages.
        let resolved = Alert { status: AlertStatus::Resolved, ends_at_ms: Some(800_000), ..again };
        receive(&store, &notifier, &[resolved], 800_000);
        receive(&store, &notifier, &[alert("bb", "high", AlertStatus::Firing)], 900_000);
        wait_for(&metrics, 3).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(outcomes(&metrics), BTreeMap::from([("sent".into(), 3), ("suppressed".into(), 1)]));
        let texts: Vec<String> = posts.lock().unwrap().iter().map(|post| post.text.clone()).collect();
        assert_eq!(texts.len(), 3, "{texts:#?}");
        assert!(texts[1].starts_with("*[RESOLVED:1] checkout*") && texts[1].contains("`aa-600000`"), "{}", texts[1]);
        assert!(texts[2].starts_with("*[FIRING:1] checkout* severity *high*"), "{}", texts[2]);

        // A restart replays the same decisions: nothing is owed.
        drop((notifier, store));
        assert_a_restart_owes_nothing(dir.path(), &url).await;
    }

    #[tokio::test]
    async fn compaction_drops_the_pruned_incidents_deliveries_and_a_restart_owes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (url, posts) = scripted_slack(vec![]).await;
        let metrics = SlackMetrics::default();
        let store = Arc::new(IncidentStore::open(dir.path()).unwrap());
        let notifier = start_from(&store, &url, &metrics, dir.path());
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Firing)], 2_000);
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Resolved)], 3_000);
        wait_for(&metrics, 2).await;
        // A second episode, still open when the journal is compacted.
        let mut other = alert("bb", "critical", AlertStatus::Firing);
        other.labels.insert("service".into(), "payments".into());
        receive(&store, &notifier, &[other], 4_000);
        wait_for(&metrics, 3).await;
        let recorded = || deliveries::read(dir.path()).unwrap().unwrap();
        assert!(
            recorded().contains(EventKind::Resolved, "aa-1000") && recorded().contains(EventKind::Firing, "bb-1000")
        );

        // A retention of 0 prunes every resolved incident: aa's lines go, bb's stay.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let compacting = tokio::spawn(crate::alerts::compact_incidents(
            Arc::clone(&store),
            Some(notifier.clone()),
            Duration::ZERO,
            Duration::from_secs(3600),
            WebhookMetrics::default(),
            stopped,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while recorded().contains(EventKind::Firing, "aa-1000") {
            assert!(tokio::time::Instant::now() < deadline, "the pruned incident's deliveries were kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        compacting.await.unwrap();
        let kept = recorded();
        assert_eq!(kept.keys, HashSet::from([DeliveryKey { kind: EventKind::Firing, incident_id: "bb-1000".into() }]));
        assert_eq!(kept.severities, Some(config().severities));

        // The restart owes nothing, and posts nothing again.
        drop((notifier, store));
        assert_a_restart_owes_nothing(dir.path(), &url).await;
        assert_eq!(posts.lock().unwrap().len(), 3);
    }

    /// The notifications of [`one_page_per_episode_unless_it_escalates`] (plus a warning, a
    /// severity not posted, and an operator's acknowledgement), each received at its own time.
    fn episode_script() -> Vec<Vec<IncidentEvent>> {
        let at = |received_at_ms, kind, severity: &str, id: &str| IncidentEvent {
            incident_id: id.into(),
            received_at_ms,
            ..event(kind, severity, "a")
        };
        vec![
            vec![at(1, EventKind::Firing, "warning", "w")],
            vec![at(2, EventKind::Firing, "high", "h")],
            vec![at(3, EventKind::Firing, "critical", "c")],
            vec![at(4, EventKind::Acknowledged, "critical", "c")],
            vec![at(5, EventKind::Resolved, "critical", "c"), at(5, EventKind::Firing, "high", "h2")],
            vec![at(6, EventKind::Resolved, "high", "h2")],
            vec![at(7, EventKind::Resolved, "high", "h")],
            vec![at(8, EventKind::Firing, "high", "h3")],
            vec![at(9, EventKind::Resolved, "warning", "w")],
            vec![at(10, EventKind::Resolved, "high", "h3")],
        ]
    }

    /// What each notification posts: (kind, incident) per message, and the suppressed count.
    fn posted(episodes: &mut Episodes, notifications: &[Vec<IncidentEvent>]) -> Vec<(Vec<(EventKind, String)>, u64)> {
        let severities = config().severities;
        notifications
            .iter()
            .map(|notification| {
                let posts = episodes.select_posts(notification, &severities);
                let messages = posts.messages.iter().flatten().map(|e| (e.kind, e.incident_id.clone())).collect();
                (messages, posts.suppressed)
            })
            .collect()
    }

    #[test]
    fn a_restart_anywhere_in_an_episode_posts_what_running_on_would_have_posted() {
        let script = episode_script();
        let uninterrupted = posted(&mut Episodes::default(), &script);
        let resolved = |id: &str| (EventKind::Resolved, id.to_owned());
        let firing = |id: &str| (EventKind::Firing, id.to_owned());
        let expected: Vec<(Vec<(EventKind, String)>, u64)> = vec![
            (vec![], 0),
            (vec![firing("h")], 0),
            (vec![firing("c")], 0),
            (vec![], 0),
            (vec![resolved("c")], 1),
            (vec![], 0),
            (vec![resolved("h")], 0),
            (vec![firing("h3")], 0),
            (vec![], 0),
            (vec![resolved("h3")], 0),
        ];
        assert_eq!(uninterrupted, expected);
        let severities = config().severities;
        for restart in 0..=script.len() {
            let recorded: Vec<IncidentEvent> = script[..restart].iter().flatten().cloned().collect();
            let mut replayed = Episodes::replay(&recorded, &severities, &Deliveries::missing()).episodes;
            assert_eq!(posted(&mut replayed, &script[restart..]), expected[restart..], "restart after {restart}");
        }
    }

    /// The events of `messages`, as (kind, incident), in order.
    fn kinds_and_ids(messages: &[Vec<IncidentEvent>]) -> Vec<(EventKind, String)> {
        messages.iter().flatten().map(|e| (e.kind, e.incident_id.clone())).collect()
    }

    /// What the deliveries file holds when the posts of `notifications` reached Slack.
    fn delivered_posts_of(notifications: &[Vec<IncidentEvent>]) -> Deliveries {
        let mut episodes = Episodes::default();
        let mut delivered = Deliveries { severities: Some(config().severities), ..Deliveries::default() };
        for notification in notifications {
            let posts = episodes.select_posts(notification, &config().severities);
            delivered.keys.extend(posts.messages.iter().flatten().map(DeliveryKey::of));
        }
        delivered
    }

    #[test]
    fn a_restart_owes_exactly_the_posts_queued_but_not_delivered_in_order_and_then_runs_on_as_if_uninterrupted() {
        let script = episode_script();
        let severities = config().severities;
        let expected = posted(&mut Episodes::default(), &script);
        for restart in 0..=script.len() {
            let recorded: Vec<IncidentEvent> = script[..restart].iter().flatten().cloned().collect();
            // Slack received the posts of the first `delivered_through` notifications; the later
            // ones were still queued, or being retried, when the daemon stopped.
            for delivered_through in 0..=restart {
                let delivered = delivered_posts_of(&script[..delivered_through]);
                let mut replay = Episodes::replay(&recorded, &severities, &delivered);
                let still_queued: Vec<(EventKind, String)> =
                    expected[delivered_through..restart].iter().flat_map(|(messages, _)| messages.clone()).collect();
                let context = format!("restart after {restart}, delivered through {delivered_through}");
                assert_eq!(kinds_and_ids(&replay.owed), still_queued, "{context}");
                let owed: HashSet<DeliveryKey> = replay.owed.iter().flatten().map(DeliveryKey::of).collect();
                let every_key: HashSet<DeliveryKey> = recorded
                    .iter()
                    .filter(|e| matches!(e.kind, EventKind::Firing | EventKind::Resolved))
                    .map(DeliveryKey::of)
                    .collect();
                let settled: HashSet<DeliveryKey> = replay.settled.iter().cloned().collect();
                assert_eq!(settled, &every_key - &owed, "{context}: the file keeps everything but the owed");
                assert_eq!(posted(&mut replay.episodes, &script[restart..]), expected[restart..], "{context}");
            }
        }
    }

    #[test]
    fn a_firing_resolved_in_slack_and_severities_never_posted_are_not_owed() {
        let at = |received_at_ms, kind, severity: &str, id: &str| IncidentEvent {
            incident_id: id.into(),
            received_at_ms,
            ..event(kind, severity, "a")
        };
        let severities = config().severities;
        // The firing was dropped from a full queue; its resolution was delivered.
        let dropped_firing = [at(1, EventKind::Firing, "high", "h"), at(2, EventKind::Resolved, "high", "h")];
        let resolution_delivered = Deliveries {
            severities: Some(severities.clone()),
            keys: HashSet::from([DeliveryKey { kind: EventKind::Resolved, incident_id: "h".into() }]),
            unreadable_lines: 0,
        };
        assert!(Episodes::replay(&dropped_firing, &severities, &resolution_delivered).owed.is_empty());

        // Nothing delivered: critical was posted before the restart, high is added at it.
        let critical_and_high = [at(1, EventKind::Firing, "critical", "c"), at(2, EventKind::Firing, "high", "x")];
        let only_critical = Deliveries { severities: Some(vec!["critical".into()]), ..Deliveries::default() };
        let replay = Episodes::replay(&critical_and_high, &severities, &only_critical);
        assert_eq!(kinds_and_ids(&replay.owed), [(EventKind::Firing, "c".to_owned())]);
        let mut other_service = at(2, EventKind::Firing, "high", "x");
        other_service.service = "b".into();
        let replay = Episodes::replay(
            &[at(1, EventKind::Firing, "critical", "c"), other_service.clone()],
            &severities,
            &only_critical,
        );
        assert_eq!(kinds_and_ids(&replay.owed), [(EventKind::Firing, "c".to_owned())], "the high was never queued");

        // A damaged header: every severity taken as posted, preferring a repeat to a loss.
        let replay = Episodes::replay(&[other_service], &severities, &Deliveries::unknown());
        assert_eq!(kinds_and_ids(&replay.owed), [(EventKind::Firing, "x".to_owned())]);

        // No file: nothing owed, as before the file existed.
        assert!(Episodes::replay(&critical_and_high, &severities, &Deliveries::missing()).owed.is_empty());
    }

    #[tokio::test]
    async fn a_notification_queued_when_the_daemon_stopped_is_posted_once_after_the_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (failing_url, failed_attempts) = scripted_slack(vec![(500, None); 20]).await;
        let before = SlackMetrics::default();
        let store = IncidentStore::open(dir.path()).unwrap();
        let notifier = SlackNotifier::start(&config(), failing_url, None, before.clone(), &[], dir.path());
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Firing)], 2_000);
        for _ in 0..100 {
            if !failed_attempts.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(outcomes(&before).get("sent"), None, "{:?}", outcomes(&before));
        // The daemon stops while the post is being retried; its poster never records it.
        drop((notifier, store));

        let (url, posts) = scripted_slack(vec![]).await;
        let restart = |metrics: &SlackMetrics| {
            let store = IncidentStore::open(dir.path()).unwrap();
            let notifier = start_from(&store, &url, metrics, dir.path());
            (store, notifier)
        };
        let after = SlackMetrics::default();
        let (store, notifier) = restart(&after);
        wait_for(&after, 1).await;
        assert_eq!(outcomes(&after), BTreeMap::from([("requeued".into(), 1), ("sent".into(), 1)]));
        let texts: Vec<String> = posts.lock().unwrap().iter().map(|post| post.text.clone()).collect();
        assert_eq!(texts.len(), 1, "{texts:#?}");
        assert!(texts[0].starts_with("*[FIRING:1] checkout* severity *critical*"), "{}", texts[0]);
        // The re-sent firing went through the episode bookkeeping: its resolution is posted.
        receive(&store, &notifier, &[alert("aa", "critical", AlertStatus::Resolved)], 3_000);
        wait_for(&after, 2).await;
        drop((notifier, store));

        // Delivered before this restart: nothing is posted again.
        let again = SlackMetrics::default();
        let _running = restart(&again);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(outcomes(&again), BTreeMap::new());
        let texts: Vec<String> = posts.lock().unwrap().iter().map(|post| post.text.clone()).collect();
        assert_eq!(texts.len(), 2, "{texts:#?}");
        assert!(texts[1].starts_with("*[RESOLVED:1] checkout* severity *critical*"), "{}", texts[1]);
    }
}
