//! The Slack notifier across a restart of the daemon: an incident posted as firing before the
//! restart has its RESOLVED posted after it, and Alertmanager's repeat of the still-firing alert
//! does not page again.
//!
//! Alertmanager is played by the test (it posts the webhook bodies itself), and Slack by a
//! local receiver; the daemon's source points at a closed port, so no Prometheus is needed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::{Exporter, free_port, serve_on_loopback, wait_until};

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

#[tokio::test]
async fn an_incident_posted_before_a_restart_has_its_resolution_posted_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (slack_address, texts) = start_slack_recorder().await;
    std::fs::write(dir.path().join("slack-url"), format!("http://{slack_address}/hook\n")).unwrap();
    let config_path = dir.path().join("anomaly-exporter.yml");
    std::fs::write(
        &config_path,
        format!(
            "source:\n  url: http://127.0.0.1:{}\n\
             datasets:\n  enabled: false\n  path: {}\n\
             alerts:\n  slack:\n    url_file: {}\n    min_interval_ms: 100\n",
            free_port(),
            dir.path().join("datasets").display(),
            dir.path().join("slack-url").display(),
        ),
    )
    .unwrap();
    let exporter_address = format!("127.0.0.1:{}", free_port());
    let exporter_log = dir.path().join("exporter.log");
    let start_exporter = || Exporter::start(&config_path, &exporter_address, &exporter_log);
    let log = || std::fs::read_to_string(&exporter_log).unwrap_or_default();
    let client = reqwest::Client::new();
    let alerts_url = format!("http://{exporter_address}/alerts");
    // Posts as Alertmanager does, retrying until the daemon answers (it may still be starting).
    let send = |status: &'static str| {
        let (client, alerts_url) = (client.clone(), alerts_url.clone());
        async move {
            wait_until(Duration::from_secs(60), || async {
                let answer = client.post(&alerts_url).body(notification(status)).send().await;
                answer.is_ok_and(|r| r.status().is_success())
            })
            .await
        }
    };
    let posted = |count: usize| {
        let texts = Arc::clone(&texts);
        async move { wait_until(Duration::from_secs(20), || async { texts.lock().unwrap().len() >= count }).await }
    };

    let exporter = start_exporter();
    assert!(send("firing").await, "webhook not accepted:\n{}", log());
    assert!(posted(1).await, "no FIRING posted:\n{}", log());
    drop(exporter);

    let _exporter = start_exporter();
    // Alertmanager repeats the still-firing alert after the restart, then resolves it.
    assert!(send("firing").await, "webhook not accepted after the restart:\n{}", log());
    assert!(send("resolved").await, "webhook not accepted after the restart:\n{}", log());
    assert!(posted(2).await, "no RESOLVED posted after the restart:\n{}", log());
    // Let a second page of the repeat arrive, if one would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = texts.lock().unwrap().clone();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[0].starts_with("*[FIRING:1] checkout* severity *critical*"), "{}", texts[0]);
    assert!(texts[1].starts_with("*[RESOLVED:1] checkout* severity *critical*"), "{}", texts[1]);
}
