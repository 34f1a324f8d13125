//! The Slack notifier across a restart of the daemon: an incident posted as firing before the
//! restart has its RESOLVED posted after it, and Alertmanager's repeat of the still-firing alert
//! does not page again; a notification still being retried when the daemon is killed is posted
//! once after the restart, and not again after the next one.
//!
//! Alertmanager is played by the test (it posts the webhook bodies itself), and Slack by a
//! local receiver; the daemon's source points at a closed port, so no Prometheus is needed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Exporter, fetch_text, free_port, metric, serve_on_loopback, wait_until};

/// The `text` of every message posted to the stand-in for Slack.
type Texts = Arc<Mutex<Vec<String>>>;

async fn start_slack_recorder() -> (String, Texts) {
    let texts: Texts = Arc::default();
    let recorded = Arc::clone(&texts);
    let router = Router::new().route(
        "/hook",
        post(move |body: String| {
            let recorded = Arc::clone(&recorded);
            async move {
                let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                recorded.lock().unwrap().push(message["text"].as_str().unwrap_or_default().to_owned());
                "ok"
            }
        }),
    );
    (serve_on_loopback(router).await, texts)
}

/// A stand-in for Slack having an outage: every post gets a 500, which the daemon retries.
async fn start_failing_slack() -> (String, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let router = Router::new().route(
        "/hook",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::INTERNAL_SERVER_ERROR, "outage") }
        }),
    );
    (serve_on_loopback(router).await, attempts)
}

/// Alertmanager's webhook body for one alert of the `checkout` service.
fn notification(status: &str) -> String {
    let ends_at = if status == "resolved" { "2026-03-01T10:05:00Z" } else { "0001-01-01T00:00:00Z" };
    serde_json::json!({
        "version": "4",
        "status": status,
        "receiver": "anomaly-exporter",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "AnomalyCritical", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "checkout is failing"},
            "startsAt": "2026-03-01T10:00:00Z",
            "endsAt": ends_at,
            "fingerprint": "c0ffee",
        }],
    })
    .to_string()
}

/// A daemon configured to post to Slack, restarted by the test on the same directories.
struct Daemon {
    dir: PathBuf,
    config_path: PathBuf,
    address: String,
    log_path: PathBuf,
    client: reqwest::Client,
}

impl Daemon {
    /// Writes the config into `dir`, with the Slack stand-in at `slack_address`.
    fn configure(dir: &Path, slack_address: &str) -> Self {
        let daemon = Daemon {
            dir: dir.to_owned(),
            config_path: dir.join("anomaly-exporter.yml"),
            address: format!("127.0.0.1:{}", free_port()),
            log_path: dir.join("exporter.log"),
            client: reqwest::Client::new(),
        };
        daemon.point_slack_at(slack_address);
        std::fs::write(
            &daemon.config_path,
            format!(
                "source:\n  url: http://127.0.0.1:{}\n\
                 datasets:\n  enabled: false\n  path: {}\n\
                 alerts:\n  slack:\n    url_file: {}\n    min_interval_ms: 100\n",
                free_port(),
                dir.join("datasets").display(),
                dir.join("slack-url").display(),
            ),
        )
        .unwrap();
        daemon
    }

    /// The Slack URL the next start reads.
    fn point_slack_at(&self, slack_address: &str) {
        std::fs::write(self.dir.join("slack-url"), format!("http://{slack_address}/hook\n")).unwrap();
    }

    /// Starts the daemon; dropping the handle kills it with SIGKILL.
    fn start(&self) -> Exporter {
        Exporter::start(&self.config_path, &self.address, &self.log_path)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Posts as Alertmanager does, retrying until the daemon answers (it may still be starting).
    async fn send(&self, status: &'static str) -> bool {
        let url = format!("http://{}/alerts", self.address);
        wait_until(Duration::from_secs(60), || async {
            let answer = self.client.post(&url).body(notification(status)).send().await;
            answer.is_ok_and(|r| r.status().is_success())
        })
        .await
    }

    /// The daemon's `/metrics`, once it answers.
    async fn scrape(&self) -> String {
        let url = format!("http://{}/metrics", self.address);
        let up = wait_until(Duration::from_secs(60), || async {
            self.client.get(&url).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "the daemon does not answer:\n{}", self.log());
        fetch_text(&url).await
    }

    /// Waits until the daemon counts `count` messages sent. It counts a message once it has
    /// recorded it as delivered, so a kill after that does not post it again.
    async fn wait_for_sent(&self, count: f64) -> bool {
        let sent = metric("anomaly_exporter_slack_notifications_total").label("outcome", "sent").value(count);
        wait_until(Duration::from_secs(20), || async { !sent.matches_in(&self.scrape().await).is_empty() }).await
    }
}

async fn wait_for_posts(texts: &Texts, count: usize) -> bool {
    wait_until(Duration::from_secs(20), || async { texts.lock().unwrap().len() >= count }).await
}

#[tokio::test]
async fn an_incident_posted_before_a_restart_has_its_resolution_posted_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (slack_address, texts) = start_slack_recorder().await;
    let daemon = Daemon::configure(dir.path(), &slack_address);

    let exporter = daemon.start();
    assert!(daemon.send("firing").await, "webhook not accepted:\n{}", daemon.log());
    assert!(wait_for_posts(&texts, 1).await, "no FIRING posted:\n{}", daemon.log());
    assert!(daemon.wait_for_sent(1.0).await, "the FIRING is not counted as sent:\n{}", daemon.log());
    drop(exporter);

    let _exporter = daemon.start();
    // Alertmanager repeats the still-firing alert after the restart, then resolves it.
    assert!(daemon.send("firing").await, "webhook not accepted after the restart:\n{}", daemon.log());
    assert!(daemon.send("resolved").await, "webhook not accepted after the restart:\n{}", daemon.log());
    assert!(wait_for_posts(&texts, 2).await, "no RESOLVED posted after the restart:\n{}", daemon.log());
    // Let a second page of the repeat arrive, if one would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = texts.lock().unwrap().clone();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[0].starts_with("*[FIRING:1] checkout* severity *critical*"), "{}", texts[0]);
    assert!(texts[1].starts_with("*[RESOLVED:1] checkout* severity *critical*"), "{}", texts[1]);
}

#[tokio::test]
async fn a_notification_still_retried_when_the_daemon_is_killed_is_posted_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (failing_address, failed_attempts) = start_failing_slack().await;
    let (slack_address, texts) = start_slack_recorder().await;
    let daemon = Daemon::configure(dir.path(), &failing_address);
    let requeued = || metric("anomaly_exporter_slack_notifications_total").label("outcome", "requeued");

    let exporter = daemon.start();
    assert!(daemon.send("firing").await, "webhook not accepted:\n{}", daemon.log());
    let tried = wait_until(Duration::from_secs(20), || async { failed_attempts.load(Ordering::SeqCst) > 0 }).await;
    assert!(tried, "the FIRING was never tried:\n{}", daemon.log());
    // Killed (SIGKILL) while the post waits for its retry: the queue is lost with the process.
    drop(exporter);

    // Slack is back when the daemon restarts; Alertmanager sends nothing new.
    daemon.point_slack_at(&slack_address);
    let exporter = daemon.start();
    assert!(wait_for_posts(&texts, 1).await, "the FIRING queued before the kill was not posted:\n{}", daemon.log());
    assert!(daemon.wait_for_sent(1.0).await, "the FIRING is not counted as sent:\n{}", daemon.log());
    requeued().value(1.0).assert_in(&daemon.scrape().await);
    // Let a second copy arrive, if one would (posts are 100 ms apart).
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let texts = texts.lock().unwrap();
        assert_eq!(texts.len(), 1, "{texts:#?}");
        assert!(texts[0].starts_with("*[FIRING:1] checkout* severity *critical*"), "{}", texts[0]);
    }
    drop(exporter);

    // Delivered before this restart: not posted again.
    let _exporter = daemon.start();
    let scrape = daemon.scrape().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    requeued().assert_not_in(&scrape);
    let texts = texts.lock().unwrap().clone();
    assert_eq!(texts.len(), 1, "posted again after the second restart: {texts:#?}\n{}", daemon.log());
}
