//! The files users drop into their stack, checked by the tools that will load them: `promtool`
//! on `prometheus/` (config, rules, rule unit tests), `amtool` on `alertmanager/` (config,
//! routing, the Slack template), and a real Alertmanager running the shipped config, which must
//! route and inhibit as documented and deliver to Slack and to anomaly-exporter's webhook with
//! the configured credentials.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{Alertmanager, serve_on_loopback, wait_until};

fn project_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_project_file(relative: &str) -> String {
    std::fs::read_to_string(project_file(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// Runs a tool and returns its combined output; panics with that output unless it exits 0.
fn run_tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e} (install it with scripts/install-deps.sh)"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} {}: {}\n{text}", args.join(" "), output.status);
    text
}

#[test]
fn prometheus_config_and_rules_pass_promtool_checks() {
    let rules = run_tool("promtool", &["check", "rules", "prometheus/rules/anomaly-exporter.rules.yml"]);
    assert!(rules.contains("SUCCESS"), "{rules}");
    // The config names its rule files by a glob; promtool loads and checks them through it.
    let config = run_tool("promtool", &["check", "config", "prometheus/prometheus.yml"]);
    assert!(config.contains("rules/anomaly-exporter.rules.yml"), "the rule files were not found: {config}");
}

#[test]
fn rule_unit_tests_pass() {
    let report = run_tool("promtool", &["test", "rules", "prometheus/tests/anomaly-exporter.test.yml"]);
    assert!(report.contains("SUCCESS") && !report.contains("FAILED"), "{report}");
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it_and_one_that_keeps_it_quiet() {
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read_project_file("prometheus/rules/anomaly-exporter.rules.yml")).unwrap();
    let tests: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read_project_file("prometheus/tests/anomaly-exporter.test.yml")).unwrap();
    let alerts: Vec<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    let cases: Vec<&serde_yaml_ng::Value> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_sequence().into_iter().flatten())
        .collect();
    for alert in &alerts {
        let of_alert: Vec<_> = cases.iter().filter(|case| case["alertname"].as_str() == Some(alert)).collect();
        let fires = of_alert.iter().any(|case| case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()));
        let quiet = of_alert.iter().any(|case| case["exp_alerts"].as_sequence().is_some_and(|a| a.is_empty()));
        assert!(fires && quiet, "{alert}: needs a case where it fires ({fires}) and one where it is quiet ({quiet})");
    }
    // Every alert has a summary and a dashboard link; those about a service (the severity group)
    // also link to that service's /logs at the alert's time.
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let Some(name) = rule["alert"].as_str() else { continue };
            let annotations = &rule["annotations"];
            assert!(annotations["summary"].is_string(), "{name}: no summary");
            let dashboard = annotations["dashboard_url"].as_str().unwrap_or_default();
            assert!(dashboard.contains("/d/"), "{name}: no dashboard link");
            if group["name"] == "anomaly-exporter-severity" {
                let logs = annotations["logs_url"].as_str().unwrap_or_default();
                assert!(logs.contains("/logs?service={{ $labels.service | urlquery }}&time="), "{name}: {logs:?}");
                assert!(dashboard.contains("var-service={{ $labels.service | urlquery }}"), "{name}: {dashboard:?}");
            }
        }
    }
}

#[test]
fn alertmanager_config_passes_amtool_check_config() {
    let report = run_tool("amtool", &["check-config", "alertmanager/alertmanager.yml"]);
    assert!(report.contains("SUCCESS") && report.contains("1 templates"), "{report}");
}

#[test]
fn alerts_are_routed_by_severity() {
    let cases: [(&[&str], &str); 6] = [
        (&["alertname=AnomalyCritical", "service=checkout", "severity=critical"], "oncall"),
        (&["alertname=AnomalyHigh", "service=checkout", "severity=high"], "oncall"),
        (&["alertname=AnomalySustained", "service=checkout", "severity=warning"], "warnings"),
        (&["alertname=AnomalyExporterAbsent", "severity=critical"], "slack-direct"),
        (&["alertname=AnomalyExporterSourceDown", "severity=high"], "slack-direct"),
        (&["alertname=SomethingElse"], "anomaly-exporter"),
    ];
    for (labels, receiver) in cases {
        let verify = format!("--verify.receivers={receiver}");
        let mut args = vec!["config", "routes", "test", "--config.file=alertmanager/alertmanager.yml", &verify];
        args.extend_from_slice(labels);
        run_tool("amtool", &args);
    }
    // The check can fail: a wrong expectation is reported as such.
    let wrong = Command::new("amtool")
        .args(["config", "routes", "test", "--config.file=alertmanager/alertmanager.yml"])
        .args(["--verify.receivers=warnings", "severity=critical"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!wrong.status.success());
}

/// Alertmanager's template data for a firing group of two alerts of one service.
const FIRING_GROUP: &str = r#"{"receiver":"oncall","status":"firing","alerts":[
 {"status":"firing","labels":{"alertname":"AnomalyCritical","service":"checkout","signal":"latency","severity":"critical"},
  "annotations":{"summary":"checkout latency is critical","description":"checkout latency: value 2.5, critical threshold 2, anomaly score 1.40",
   "logs_url":"http://localhost:10110/logs?service=checkout&time=1700000000","dashboard_url":"http://localhost:3000/d/anomaly-service/anomaly-service-detail?var-service=checkout&var-signal=latency"},
  "startsAt":"2026-11-24T13:32:20Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"1"},
 {"status":"firing","labels":{"alertname":"AnomalyHigh","service":"checkout","signal":"error_ratio","severity":"high"},
  "annotations":{"summary":"checkout error_ratio is at high severity","description":"checkout error_ratio: value 70m, high threshold 50m, anomaly score 1.20",
   "logs_url":"http://localhost:10110/logs?service=checkout&time=1700000000","dashboard_url":"http://localhost:3000/d/anomaly-service/anomaly-service-detail?var-service=checkout&var-signal=error_ratio"},
  "startsAt":"2026-11-24T13:32:20Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"2"}],
 "groupLabels":{"service":"checkout"},"commonLabels":{"service":"checkout"},"commonAnnotations":{},
 "externalURL":"http://alertmanager:9093","version":"4","groupKey":"{}:{service=\"checkout\"}","truncatedAlerts":0}"#;

fn render_slack_template(definition: &str, data: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data.json");
    std::fs::write(&data_path, data).unwrap();
    let text = format!("{{{{ template \"slack.anomaly.{definition}\" . }}}}");
    let output = Command::new("amtool")
        .args(["template", "render", "--template.glob=alertmanager/templates/slack.tmpl"])
        .arg(format!("--template.text={text}"))
        .arg(format!("--template.data={}", data_path.display()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run amtool");
    assert!(output.status.success(), "render {definition}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn slack_template_shows_service_severity_value_against_threshold_and_links() {
    assert_eq!(render_slack_template("title", FIRING_GROUP).trim(), "[FIRING:2] checkout critical");
    assert_eq!(render_slack_template("color", FIRING_GROUP).trim(), "danger");
    let text = render_slack_template("text", FIRING_GROUP);
    for wanted in [
        "*AnomalyCritical* service `checkout` severity *critical* signal `latency`",
        "value 2.5, critical threshold 2",
        "*AnomalyHigh* service `checkout` severity *high* signal `error_ratio`",
        "<http://localhost:10110/logs?service=checkout&time=1700000000|Logs at the time>",
        "<http://localhost:3000/d/anomaly-service/anomaly-service-detail?var-service=checkout&var-signal=latency|Dashboard>",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }
    let resolved = FIRING_GROUP.replace("\"status\":\"firing\"", "\"status\":\"resolved\"");
    assert_eq!(render_slack_template("title", &resolved).trim(), "[RESOLVED] checkout");
    assert_eq!(render_slack_template("color", &resolved).trim(), "good");
    assert!(render_slack_template("text", &resolved).contains(":white_check_mark: *AnomalyCritical*"));
}

/// What a loopback stand-in for Slack or for the webhook received: (authorization header, body).
type Received = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

async fn start_recorder() -> (String, Received) {
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    let router = Router::new().route(
        "/{*path}",
        post(move |headers: HeaderMap, body: String| {
            let store = Arc::clone(&store);
            async move {
                let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                store.lock().unwrap().push((authorization, body));
                "ok"
            }
        }),
    );
    (serve_on_loopback(router).await, received)
}

/// The shipped config with its absolute file paths made relative to the test's directory, the
/// webhook pointed at `webhook_address`, and waits shortened so the test runs in seconds.
fn shipped_alertmanager_config_for_test(webhook_address: &str) -> String {
    let shipped = read_project_file("alertmanager/alertmanager.yml");
    let config = shipped
        .replace("/etc/alertmanager/", "")
        .replace("http://anomaly-exporter:10110/alerts", &format!("http://{webhook_address}/alerts"))
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 2m", "group_wait: 1s");
    assert_ne!(config, shipped);
    config
}

async fn post_alerts(alertmanager: &Alertmanager, alerts: serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", alertmanager.url()))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
}

fn alert(name: &str, service: &str, severity: &str) -> serde_json::Value {
    let mut labels = serde_json::json!({"alertname": name, "signal": "latency", "severity": severity});
    if !service.is_empty() {
        labels["service"] = service.into();
    }
    serde_json::json!({
        "labels": labels,
        "annotations": {
            "summary": format!("{service} latency"),
            "description": format!("{service} latency: value 2.5, {severity} threshold 2, anomaly score 1.40"),
            "logs_url": format!("http://localhost:10110/logs?service={service}&time=1700000000"),
            "dashboard_url": "http://localhost:3000/d/anomaly-service/anomaly-service-detail",
        },
        "generatorURL": "http://prometheus:9090/graph",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_inhibits_and_delivers_to_slack_and_the_webhook() {
    let (slack_address, slack) = start_recorder().await;
    let (webhook_address, webhook) = start_recorder().await;
    let template = read_project_file("alertmanager/templates/slack.tmpl");
    let slack_url = format!("http://{slack_address}/services/T000/B000/XXXX\n");
    let alertmanager = Alertmanager::start_with(
        &shipped_alertmanager_config_for_test(&webhook_address),
        &[
            ("templates/slack.tmpl", &template),
            ("slack-webhook-url", &slack_url),
            ("anomaly-exporter.token", "s3cret-token\n"),
        ],
        &[],
    )
    .await;

    // checkout is critical and high on the same signal; payments is only high; the exporter
    // itself has a critical and a high health alert (no service label).
    post_alerts(
        &alertmanager,
        serde_json::json!([
            alert("AnomalyCritical", "checkout", "critical"),
            alert("AnomalyHigh", "checkout", "high"),
            alert("AnomalyHigh", "payments", "high"),
            alert("AnomalyExporterNoSuccessfulCycle", "", "critical"),
            alert("AnomalyExporterSourceDown", "", "high"),
        ]),
    )
    .await;

    let delivered = wait_until(Duration::from_secs(60), || async {
        !slack.lock().unwrap().is_empty() && webhook.lock().unwrap().len() >= 3
    })
    .await;
    assert!(delivered, "no deliveries; slack {:?}, webhook {:?}\n{}", slack, webhook, alertmanager.log());
    // Let a wrongly routed or uninhibited notification arrive, if there is one.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A critical alert inhibits the high one of the same service, and of the exporter.
    let alerts: serde_json::Value =
        reqwest::get(format!("{}/api/v2/alerts", alertmanager.url())).await.unwrap().json().await.unwrap();
    let mut inhibited: Vec<String> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"]["inhibitedBy"].as_array().is_some_and(|by| !by.is_empty()))
        .map(|a| {
            format!("{} {}", a["labels"]["alertname"].as_str().unwrap(), a["labels"]["service"].as_str().unwrap_or("-"))
        })
        .collect();
    inhibited.sort();
    assert_eq!(inhibited, ["AnomalyExporterSourceDown -", "AnomalyHigh checkout"]);

    // Slack, from Alertmanager: the exporter's health only (services' alerts are posted by
    // anomaly-exporter, with their logs), through our template.
    let slack = slack.lock().unwrap().clone();
    assert_eq!(slack.len(), 1, "{slack:?}");
    let attachment = &slack[0].1["attachments"][0];
    assert_eq!(attachment["title"], "[FIRING:1] anomaly-exporter critical latency", "{slack:?}");
    let text = attachment["text"].as_str().unwrap();
    assert!(
        text.contains("*AnomalyExporterNoSuccessfulCycle* service `anomaly-exporter` severity *critical*"),
        "{text}"
    );
    assert!(text.contains("value 2.5, critical threshold 2"), "{text}");

    // The webhook: every group, with the bearer token read from its file.
    let webhook = webhook.lock().unwrap().clone();
    for (authorization, body) in &webhook {
        assert_eq!(authorization.as_deref(), Some("Bearer s3cret-token"));
        assert_eq!(body["version"], "4");
    }
    let mut groups: Vec<&str> =
        webhook.iter().map(|(_, b)| b["groupLabels"]["service"].as_str().unwrap_or("-")).collect();
    groups.sort();
    assert_eq!(groups, ["-", "checkout", "payments"]);
}
