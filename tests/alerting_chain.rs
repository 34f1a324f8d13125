//! Issue 6's acceptance, the whole chain on real components: the simulated fleet, a real
//! Prometheus with the shipped config and rules, a real Alertmanager with the shipped config,
//! and anomaly-exporter, whose Slack URL (like Alertmanager's) points at a local receiver that
//! records what it gets.
//!
//! An error burst in one service must give, within a bounded time, exactly one Slack message for
//! that service, with its severity, the correlated error lines and a /logs link that answers;
//! once the fault is over the incident must show as resolved in `/incidents`; and no other
//! service may have alerted.
//!
//! The copies of the shipped files differ only where a test must: addresses, file paths,
//! intervals, the `for: 1m` of the severity alerts (10s here) and Alertmanager's group_interval.
//! Alert names and expressions are the shipped ones.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomaly_exporter::simulate::{self, FaultKind, FaultRequest, FleetOptions};
use axum::Router;
use axum::routing::post;
use common::{Alertmanager, Exporter, Prometheus, free_port, serve_on_loopback, wait_until};

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every (path, body) posted to the stand-in for Slack.
type Posts = Arc<Mutex<Vec<(String, String)>>>;

async fn start_slack_recorder() -> (String, Posts) {
    let posts: Posts = Arc::default();
    let store = Arc::clone(&posts);
    let router = Router::new().route(
        "/{*path}",
        post(move |uri: axum::http::Uri, body: String| {
            let store = Arc::clone(&store);
            async move {
                store.lock().unwrap().push((uri.path().to_owned(), body));
                "ok"
            }
        }),
    );
    (serve_on_loopback(router).await, posts)
}

/// The text of a post: Alertmanager's attachments or the exporter's `text`.
fn post_text(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut text = value["text"].as_str().unwrap_or_default().to_owned();
    for attachment in value["attachments"].as_array().into_iter().flatten() {
        text.push_str(attachment["title"].as_str().unwrap_or_default());
        text.push('\n');
        text.push_str(attachment["text"].as_str().unwrap_or_default());
    }
    text
}

/// Each firing alert of the service reached Slack exactly once: one message at most per
/// alert name (`AnomalyHigh`, then possibly `AnomalyCritical` on escalation), and at least one.
fn assert_one_message_per_alert(firing: &[(String, String)]) {
    assert!(!firing.is_empty(), "no firing message");
    let mut alert_names: Vec<String> = firing
        .iter()
        .map(|(_, body)| {
            let text = post_text(body);
            let headline = text.lines().nth(1).unwrap_or_default().to_owned();
            headline.split('*').nth(1).unwrap_or_default().to_owned()
        })
        .collect();
    assert!(alert_names.iter().all(|name| name.starts_with("Anomaly")), "{alert_names:?}: {firing:#?}");
    let count = alert_names.len();
    alert_names.sort();
    alert_names.dedup();
    assert_eq!(alert_names.len(), count, "an alert reached Slack twice: {firing:#?}");
}

fn shortened_rules(exporter_address: &str) -> String {
    let shipped = read("prometheus/rules/anomaly-exporter.rules.yml");
    let start = shipped.find("- name: anomaly-exporter-severity").expect("the severity group");
    let end = shipped.find("- name: anomaly-exporter-health").expect("the health group");
    let severity = shipped[start..end].replace("for: 1m", "for: 10s");
    let rules = format!("{}{severity}{}", &shipped[..start], &shipped[end..]);
    rules.replace("http://localhost:10110", &format!("http://{exporter_address}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_burst_reaches_slack_once_with_its_logs_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("logs");
    let fleet = simulate::start(FleetOptions { seed: 5, ..FleetOptions::ephemeral(3, &log_dir) }).await.unwrap();
    let (slack_address, posts) = start_slack_recorder().await;
    let exporter_address = format!("127.0.0.1:{}", free_port());

    // Alertmanager: the shipped config, its files beside it, short waits.
    let alertmanager_config = read("alertmanager/alertmanager.yml")
        .replace("/etc/alertmanager/", "")
        .replace("http://anomaly-exporter:10110/alerts", &format!("http://{exporter_address}/alerts"))
        // The shipped group_wait (30s) stays: it is what gathers a service's high and critical
        // alerts, which a burst raises seconds apart, into one notification.
        .replace("group_wait: 2m", "group_wait: 2s")
        .replace("group_interval: 5m", "group_interval: 5s");
    let alertmanager = Alertmanager::start_with(
        &alertmanager_config,
        &[
            ("templates/slack.tmpl", &read("alertmanager/templates/slack.tmpl")),
            ("slack-webhook-url", &format!("http://{slack_address}/alertmanager\n")),
            ("anomaly-exporter.token", "chain-token\n"),
        ],
        &[],
    )
    .await;

    // Prometheus: the shipped config and rules.
    let targets: Vec<String> = fleet.services().iter().map(|s| format!("'{}'", s.address)).collect();
    let alertmanager_address = alertmanager.url().trim_start_matches("http://").to_owned();
    let prometheus_config = read("prometheus/prometheus.yml")
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("['checkout:8080', 'payments:8080']", &format!("[{}]", targets.join(", ")))
        .replace("anomaly-exporter:10110", &exporter_address)
        .replace("alertmanager:9093", &alertmanager_address);
    let prometheus = Prometheus::start_with(
        &prometheus_config,
        &[("rules/anomaly-exporter.rules.yml", &shortened_rules(&exporter_address))],
        &[],
    )
    .await;

    // anomaly-exporter: reads Prometheus and the fleet's logs, records incidents, posts to Slack.
    std::fs::write(dir.path().join("slack-url"), format!("http://{slack_address}/exporter\n")).unwrap();
    let config_path = dir.path().join("anomaly-exporter.yml");
    std::fs::write(
        &config_path,
        format!(
            "source:\n  url: {}\n  step: 1s\ninterval: 1s\nservice_grace: 60s\nbackfill: 5m\n{}\
             logs:\n  service_files: {}/{{service}}/app.log*\n\
             alerts:\n  incidents_dir: {}\n  slack:\n    url_file: {}\n    external_url: http://{exporter_address}\n    min_interval_ms: 200\n",
            prometheus.url(),
            common::FAST_DETECTOR,
            log_dir.display(),
            dir.path().join("incidents").display(),
            dir.path().join("slack-url").display(),
        ),
    )
    .unwrap();
    let exporter_log = dir.path().join("exporter.log");
    let start_exporter = || Exporter::start(&config_path, &exporter_address, &exporter_log);
    let exporter = start_exporter();
    let exporter_url = format!("http://{exporter_address}");
    let client = reqwest::Client::new();
    let up = wait_until(Duration::from_secs(60), || async {
        client.get(format!("{exporter_url}/-/ready")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let log = || std::fs::read_to_string(&exporter_log).unwrap_or_default();
    assert!(up, "exporter not ready:\n{}", log());
    // A baseline of ordinary traffic and logs before the fault.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(posts.lock().unwrap().is_empty(), "Slack got posts before any fault: {:?}", posts.lock().unwrap());

    let target = fleet.services()[1].name.clone();
    fleet
        .inject_fault(FaultRequest {
            service: target.clone(),
            kind: FaultKind::ErrorBurst,
            duration_seconds: 60.0,
            magnitude: None,
        })
        .unwrap();

    let service_marker = format!("service `{target}`");
    let messages_for_target = || -> Vec<(String, String)> {
        posts.lock().unwrap().iter().filter(|(_, body)| post_text(body).contains(&service_marker)).cloned().collect()
    };
    let notified = wait_until(Duration::from_secs(180), || async { !messages_for_target().is_empty() }).await;
    assert!(
        notified,
        "no Slack message for {target}; posts {:?}\nalertmanager:\n{}\nexporter:\n{}",
        posts.lock().unwrap(),
        alertmanager.log(),
        log()
    );
    // Let a duplicate arrive, if one would.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let firing: Vec<(String, String)> =
        messages_for_target().into_iter().filter(|(_, body)| post_text(body).contains("[FIRING")).collect();
    // A burst may climb from high to critical after the high message went out (more than the
    // group wait apart): that escalation is a second message by design. A repeat of the same
    // alert is not.
    assert_one_message_per_alert(&firing);
    let (path, body) = &firing[0];
    assert_eq!(path, "/exporter", "services' alerts are posted by anomaly-exporter");
    let text = post_text(body);
    assert!(text.contains("severity *critical*") || text.contains("severity *high*"), "{text}");
    assert!(text.contains("*Lines:*") && text.contains(" ERROR "), "no correlated error lines: {text}");
    let logs_link = text
        .split('<')
        .filter_map(|part| part.split_once("|Logs at the time>").map(|(url, _)| url.to_owned()))
        .next()
        .unwrap_or_else(|| panic!("no /logs link: {text}"));
    assert!(logs_link.starts_with(&format!("{exporter_url}/logs?service=")), "{logs_link}");
    let answer = client.get(format!("{logs_link}&format=json")).send().await.unwrap();
    assert!(answer.status().is_success(), "{logs_link}: {}", answer.status());
    assert!(answer.text().await.unwrap().contains("ERROR"), "{logs_link} shows no error line");

    // After the fault: the incident resolves (through Prometheus, Alertmanager and the webhook).
    let incidents_url = format!("{exporter_url}/incidents?service={target}&format=json");
    let resolved = wait_until(Duration::from_secs(300), || async {
        let Ok(response) = client.get(&incidents_url).send().await else { return false };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let incidents = body["incidents"].as_array().cloned().unwrap_or_default();
        !incidents.is_empty() && incidents.iter().all(|i| i["status"] == "resolved")
    })
    .await;
    let all: serde_json::Value =
        client.get(format!("{exporter_url}/incidents?format=json")).send().await.unwrap().json().await.unwrap();
    assert!(resolved, "incidents of {target} not resolved: {all:#}\nexporter:\n{}", log());

    // A method the route does not take: the daemon's JSON error shape, not the framework's empty 405.
    let wrong_method = client.get(format!("{exporter_url}/alerts")).send().await.unwrap();
    assert_eq!(wrong_method.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    let error: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(error["error"]["code"], "method_not_allowed", "{error}");

    // No other service alerted, and Alertmanager posted nothing for any service.
    let others: Vec<&serde_json::Value> =
        all["incidents"].as_array().unwrap().iter().filter(|i| i["service"] != target.as_str()).collect();
    assert!(others.is_empty(), "other incidents: {others:#?}");
    let posts = posts.lock().unwrap().clone();
    assert!(posts.iter().all(|(path, _)| path == "/exporter"), "{posts:#?}");
    let firing_all: Vec<(String, String)> =
        posts.iter().filter(|(_, body)| post_text(body).contains("[FIRING")).cloned().collect();
    assert_one_message_per_alert(&firing_all);

    // A restart compacts the journal, one file per notification so far, into one file, and
    // lists the same incidents from it.
    let incidents_dir = dir.path().join("incidents");
    let journal = || {
        let mut names: Vec<String> = std::fs::read_dir(&incidents_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("incidents-"))
            .collect();
        names.sort();
        names
    };
    assert!(journal().len() > 1, "{:?}", journal());
    drop(exporter);
    let _exporter = start_exporter();
    let compacted = wait_until(Duration::from_secs(60), || async {
        journal().first().is_some_and(|first| first.ends_with("~compacted.parquet"))
    })
    .await;
    assert!(compacted, "journal not compacted at start: {:?}\nexporter:\n{}", journal(), log());
    let up_again = wait_until(Duration::from_secs(60), || async {
        client.get(format!("{exporter_url}/-/ready")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up_again, "exporter not ready after the restart:\n{}", log());
    let summary = |listing: &serde_json::Value| {
        let mut incidents: Vec<(String, String)> = listing["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["id"].as_str().unwrap().to_owned(), i["status"].as_str().unwrap().to_owned()))
            .collect();
        incidents.sort();
        incidents
    };
    let after: serde_json::Value =
        client.get(format!("{exporter_url}/incidents?format=json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary(&after), summary(&all), "after the restart");
    drop(prometheus);
    fleet.shutdown().await.unwrap();
}
