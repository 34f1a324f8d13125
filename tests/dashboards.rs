//! The shipped Grafana dashboards (`dashboards/*.json`) and their provisioning.
//!
//! Structure: every datasource reference resolves to the provisioned Prometheus uid, every
//! variable a query, title or link uses is defined (or is one of Grafana's own), multi-value
//! variables only appear where Grafana's `(a|b)` expansion is valid, and every time-series panel
//! about services links to `/logs` with the service percent-encoded, so a label value cannot add
//! parameters to the link.
//!
//! Data: every panel query, with its variables replaced as Grafana would, runs against a real
//! Prometheus (the shipped `prometheus.yml` and rules, intervals shortened) that scrapes the
//! simulated fleet and a real anomaly-exporter, while one service has an error burst: each query
//! returns data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anomaly_exporter::simulate::{self, FaultKind, FaultRequest, FleetOptions};
use common::{Exporter, Prometheus, free_port, wait_until};
use serde_json::Value;

fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(project_dir().join(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// Every `dashboards/*.json`, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(project_dir().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let dashboard = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.insert(path.file_name().unwrap().to_string_lossy().into_owned(), dashboard);
        }
    }
    assert_eq!(found.len(), 3, "expected the fleet, service and self-monitoring dashboards: {:?}", found.keys());
    found
}

fn provisioned_datasource_uid() -> String {
    let provisioning: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("dashboards/provisioning/datasources/prometheus.yml")).unwrap();
    let datasources = provisioning["datasources"].as_sequence().unwrap();
    assert_eq!(datasources.len(), 1);
    assert_eq!(datasources[0]["type"].as_str(), Some("prometheus"));
    datasources[0]["uid"].as_str().expect("the datasource has a fixed uid").to_owned()
}

/// Panels, with those nested in rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"].as_array().map(|l| l.iter().collect()).unwrap_or_default()
}

/// Every string in a JSON value, with its path, for the reference checks.
fn strings<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                strings(item, format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// A variable reference: `$name`, `${name}`, `${name:format}` or `[[name]]`.
#[derive(Debug, Clone, PartialEq)]
struct VariableRef {
    name: String,
    format: Option<String>,
}

fn variable_refs(text: &str) -> Vec<VariableRef> {
    let mut refs = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if text[i..].starts_with("${") {
            let end = text[i..].find('}').map(|e| i + e).unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
            let inner = &text[i + 2..end];
            let (name, format) = match inner.split_once(':') {
                Some((name, format)) => (name, Some(format.to_owned())),
                None => (inner, None),
            };
            refs.push(VariableRef { name: name.to_owned(), format });
            i = end + 1;
        } else if text[i..].starts_with("[[") {
            let end = text[i..].find("]]").map(|e| i + e).unwrap();
            refs.push(VariableRef { name: text[i + 2..end].to_owned(), format: None });
            i = end + 2;
        } else if bytes[i] == b'$' {
            let name: String =
                text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
            assert!(!name.is_empty(), "a lone $ in {text:?}");
            i += 1 + name.len();
            refs.push(VariableRef { name, format: None });
        } else {
            i += 1;
        }
    }
    refs
}

/// Grafana's own variables that our dashboards may use.
fn is_grafana_builtin(name: &str) -> bool {
    const BUILTINS: [&str; 9] = [
        "__rate_interval",
        "__interval",
        "__range",
        "__from",
        "__to",
        "__url_time_range",
        "__value.time",
        "__value.raw",
        "__field.name",
    ];
    BUILTINS.contains(&name) || name.strip_prefix("__field.labels.").is_some_and(|label| !label.is_empty())
}

#[test]
fn variable_refs_are_parsed_in_every_syntax() {
    assert_eq!(
        variable_refs("a $service b ${signal} ${__field.labels.service:percentencode} [[old]]"),
        [
            VariableRef { name: "service".into(), format: None },
            VariableRef { name: "signal".into(), format: None },
            VariableRef { name: "__field.labels.service".into(), format: Some("percentencode".into()) },
            VariableRef { name: "old".into(), format: None },
        ]
    );
    assert!(variable_refs("rate(x[5m]) {{service}}").is_empty());
}

#[test]
fn datasource_references_resolve_to_the_provisioned_uid() {
    let uid = provisioned_datasource_uid();
    for (file, dashboard) in dashboards() {
        let text = dashboard.to_string();
        assert!(!text.contains("${DS_"), "{file}: import placeholders cannot be provisioned");
        let mut references = 0;
        fn walk(value: &Value, uid: &str, file: &str, references: &mut usize) {
            match value {
                Value::Object(map) => {
                    if let Some(datasource) = map.get("datasource") {
                        assert_eq!(datasource["uid"].as_str(), Some(uid), "{file}: {datasource}");
                        assert_eq!(datasource["type"].as_str(), Some("prometheus"), "{file}: {datasource}");
                        *references += 1;
                    }
                    map.values().for_each(|v| walk(v, uid, file, references));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, uid, file, references)),
                _ => {}
            }
        }
        walk(&dashboard, &uid, &file, &mut references);
        for panel in panels(&dashboard) {
            assert!(panel["datasource"].is_object(), "{file}: panel {} has no datasource", panel["title"]);
            for target in panel["targets"].as_array().unwrap() {
                assert!(target["datasource"].is_object(), "{file}: a target of {} has no datasource", panel["title"]);
            }
        }
        assert!(references > 10, "{file}: {references} datasource references");
    }
}

#[test]
fn dashboards_have_unique_uids_that_the_alert_links_use() {
    let uids: BTreeSet<String> =
        dashboards().values().map(|d| d["uid"].as_str().expect("every dashboard has a uid").to_owned()).collect();
    assert_eq!(uids.len(), 3);
    let rules = read("prometheus/rules/anomaly-exporter.rules.yml");
    for link in rules.split("/d/").skip(1) {
        let uid = link.split('/').next().unwrap();
        assert!(uids.contains(uid), "the rules link to dashboard {uid:?}, which is not shipped: {uids:?}");
    }
}

#[test]
fn variables_come_from_label_values_and_every_reference_is_defined() {
    for (file, dashboard) in dashboards() {
        let defined: BTreeMap<String, &Value> =
            variables(&dashboard).into_iter().map(|v| (v["name"].as_str().unwrap().to_owned(), v)).collect();
        for (name, variable) in &defined {
            if variable["type"] == "query" {
                let query = variable["query"]["query"].as_str().unwrap();
                assert!(
                    query.starts_with("label_values(") && query.ends_with(')') && query.contains(", "),
                    "{file}: {name}: {query}"
                );
            }
        }
        if file != "anomaly-exporter-self.json" {
            for wanted in ["service", "signal"] {
                assert_eq!(defined.get(wanted).map(|v| &v["type"]), Some(&Value::from("query")), "{file}: ${wanted}");
            }
        }
        let mut texts = Vec::new();
        strings(&dashboard, String::new(), &mut texts);
        for (path, text) in texts {
            for reference in variable_refs(text) {
                assert!(
                    defined.contains_key(&reference.name) || is_grafana_builtin(&reference.name),
                    "{file}{path}: ${} is neither a variable of the dashboard nor Grafana's",
                    reference.name
                );
            }
        }
        // Multi-value variables expand to `(a|b)`: valid only as a regex matcher.
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for (name, variable) in &defined {
                    if variable["multi"] == true && panel["repeat"].as_str() != Some(name.as_str()) {
                        let plain = format!("=\"${name}\"");
                        assert!(!expr.contains(&plain), "{file}: {}: ${name} is multi-value: use =~", panel["title"]);
                    }
                }
            }
        }
    }
}

/// Grafana's `percentencode` format: everything but unreserved characters is escaped.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A link as Grafana renders it for a clicked point of a series with label `service`.
fn render_link(url: &str, exporter_url: &str, service: &str, time_ms: i64) -> String {
    let mut rendered = url.to_owned();
    for reference in variable_refs(url) {
        let written = match &reference.format {
            Some(format) => format!("${{{}:{format}}}", reference.name),
            None if url.contains(&format!("${{{}}}", reference.name)) => format!("${{{}}}", reference.name),
            None => format!("${}", reference.name),
        };
        let value = match (reference.name.as_str(), reference.format.as_deref()) {
            ("exporter_url", None) => exporter_url.to_owned(),
            ("__value.time", None) => time_ms.to_string(),
            ("__field.labels.service", Some("percentencode")) => percent_encode(service),
            ("__url_time_range", None) => "from=now-1h&to=now".to_owned(),
            (name, format) => panic!("unexpected variable ${name} (format {format:?}) in link {url}"),
        };
        rendered = rendered.replacen(&written, &value, 1);
    }
    rendered
}

#[test]
fn every_time_series_panel_about_services_links_to_logs_with_the_service_encoded() {
    let logs_link = "${exporter_url}/logs?service=${__field.labels.service:percentencode}&time=${__value.time}";
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            let links: Vec<&str> = panel["fieldConfig"]["defaults"]["links"]
                .as_array()
                .map(|l| l.iter().map(|link| link["url"].as_str().unwrap()).collect())
                .unwrap_or_default();
            let about_services = file != "anomaly-exporter-self.json";
            let time_series = matches!(panel["type"].as_str(), Some("timeseries" | "state-timeline"));
            if about_services && time_series {
                assert!(links.contains(&logs_link), "{file}: {}: no /logs data link: {links:?}", panel["title"]);
            }
            for link in links {
                // Whatever a service is called, the link keeps exactly its own parameters.
                let hostile = "a&time=0#x y/z?";
                let rendered = render_link(link, "http://exporter:10110", hostile, 1_700_000_000_000);
                let url = reqwest::Url::parse(&format!("http://grafana{rendered}"))
                    .or_else(|_| reqwest::Url::parse(&rendered))
                    .unwrap_or_else(|e| panic!("{file}: {link} renders as {rendered}: {e}"));
                assert!(url.fragment().is_none(), "{file}: {rendered}");
                let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                if link.contains("/logs?") {
                    assert_eq!(
                        pairs,
                        [("service".to_owned(), hostile.to_owned()), ("time".to_owned(), "1700000000000".to_owned())],
                        "{file}: {rendered}"
                    );
                } else {
                    assert!(pairs.iter().any(|(k, v)| k == "var-service" && v == hostile), "{file}: {rendered}");
                }
            }
        }
    }
}

// ---- every panel query against real components ----

/// Scrape (and Grafana's min) interval in the test; the shipped config says 15s.
const SCRAPE_SECONDS: u64 = 1;
/// The time range the queries cover, as a dashboard opened on "last 5 minutes" would.
const RANGE_SECONDS: u64 = 300;

async fn api(prometheus: &Prometheus, path: &str, params: &[(&str, String)]) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", prometheus.url()))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
    body
}

/// The values of a `label_values(selector, label)` variable, from Prometheus's label API as
/// Grafana asks for them.
async fn label_values(prometheus: &Prometheus, query: &str) -> Vec<String> {
    let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).unwrap();
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let body =
        api(prometheus, &format!("/api/v1/label/{}/values", label.trim()), &[("match[]", selector.to_owned())]).await;
    body["data"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// Replaces the variables of `text` as Grafana does for Prometheus: single values as they are,
/// multi values (and All) as a `(a|b)` regex, and the interval variables from the scrape
/// interval and the time range.
fn interpolate(text: &str, values: &BTreeMap<String, Vec<String>>) -> String {
    let interval = SCRAPE_SECONDS; // range / max data points, never below the scrape interval
    let rate_interval = (interval + SCRAPE_SECONDS).max(4 * SCRAPE_SECONDS);
    let mut out = text.to_owned();
    // Longest names first, so `$service` does not eat the start of a longer name.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    out = out.replace("$__rate_interval", &format!("{rate_interval}s"));
    out = out.replace("$__interval", &format!("{interval}s"));
    out = out.replace("$__range", &format!("{RANGE_SECONDS}s"));
    for name in names {
        let chosen = &values[name];
        let value = if chosen.len() == 1 {
            chosen[0].clone()
        } else {
            format!("({})", chosen.iter().map(|v| regex_escape(v)).collect::<Vec<_>>().join("|"))
        };
        out = out.replace(&format!("${{{name}}}"), &value).replace(&format!("${name}"), &value);
    }
    assert!(!out.contains('$'), "variables left in {out}");
    out
}

fn regex_escape(text: &str) -> String {
    text.chars().flat_map(|c| if "\\.+*?()|[]{}^$".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn query_has_data(prometheus: &Prometheus, expr: &str, instant: bool) -> Result<usize, String> {
    let now = now_seconds();
    let body = if instant {
        api(prometheus, "/api/v1/query", &[("query", expr.to_owned()), ("time", now.to_string())]).await
    } else {
        // Grafana's step: range / max data points (about 1000), never below the min interval.
        let step = SCRAPE_SECONDS.to_string();
        let params = [
            ("query", expr.to_owned()),
            ("start", (now - RANGE_SECONDS).to_string()),
            ("end", now.to_string()),
            ("step", step),
        ];
        api(prometheus, "/api/v1/query_range", &params).await
    };
    let results = body["data"]["result"].as_array().map_or(0, Vec::len);
    if results == 0 { Err(format!("no data: {expr}")) } else { Ok(results) }
}

/// Runs every panel query of `dashboard` with `values` for its variables; the failures.
async fn run_panel_queries(
    prometheus: &Prometheus,
    dashboard: &Value,
    values: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for panel in panels(dashboard) {
        // A repeated panel is one copy per value of its variable, each with that single value.
        let copies: Vec<BTreeMap<String, Vec<String>>> = match panel["repeat"].as_str() {
            Some(repeat) => values[repeat]
                .iter()
                .map(|v| {
                    let mut single = values.clone();
                    single.insert(repeat.to_owned(), vec![v.clone()]);
                    single
                })
                .collect(),
            None => vec![values.clone()],
        };
        for copy in copies {
            for target in panel["targets"].as_array().unwrap() {
                let expr = interpolate(target["expr"].as_str().unwrap(), &copy);
                let instant = target["instant"] == true;
                if let Err(failure) = query_has_data(prometheus, &expr, instant).await {
                    failures.push(format!("{}: {}", panel["title"], failure));
                }
            }
        }
    }
    failures
}

fn prometheus_config_for_test(fleet_targets: &[String], exporter_address: &str) -> String {
    let shipped = read("prometheus/prometheus.yml");
    let targets = fleet_targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let config = shipped
        .replace("scrape_interval: 15s", &format!("scrape_interval: {SCRAPE_SECONDS}s"))
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("['checkout:8080', 'payments:8080']", &format!("[{targets}]"))
        .replace("anomaly-exporter:10110", exporter_address)
        // No Alertmanager here: the rules' ALERTS series are all the dashboards read.
        .replace("['alertmanager:9093']", "[]");
    assert!(config.contains(exporter_address) && config.contains(&targets), "the shipped prometheus.yml changed shape");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate::start(FleetOptions { seed: 11, ..FleetOptions::ephemeral(3, dir.path().join("logs")) })
        .await
        .unwrap();
    let fleet_targets: Vec<String> = fleet.services().iter().map(|s| s.address.to_string()).collect();
    let exporter_address = format!("127.0.0.1:{}", free_port());
    let rules = read("prometheus/rules/anomaly-exporter.rules.yml");
    let prometheus = Prometheus::start_with(
        &prometheus_config_for_test(&fleet_targets, &exporter_address),
        &[("rules/anomaly-exporter.rules.yml", &rules)],
        &[],
    )
    .await;
    let exporter_config = dir.path().join("anomaly-exporter.yml");
    std::fs::write(&exporter_config, common::fast_exporter_config(prometheus.url())).unwrap();
    let exporter_log = dir.path().join("exporter.log");
    let _exporter = Exporter::start(&exporter_config, &exporter_address, &exporter_log);

    // An error burst in one service: its error ratio crosses the critical threshold at once
    // (thresholds apply during warm-up too), so AnomalyCritical fires after its `for: 1m`.
    let target = fleet.services()[0].name.clone();
    fleet
        .inject_fault(FaultRequest {
            service: target.clone(),
            kind: FaultKind::ErrorBurst,
            duration_seconds: 900.0,
            magnitude: None,
        })
        .unwrap();

    let ready_queries = [
        format!(r#"ALERTS{{alertstate="firing",alertname="AnomalyCritical",service="{target}"}}"#),
        format!(r#"anomaly_score{{service="{target}"}}"#),
        format!(r#"anomaly_model_trained_timestamp_seconds{{service="{target}"}}"#),
        // The target's own recorded series: the panels filter on it, and the rule records it one
        // evaluation after the target's first score, possibly after other services' series.
        format!(r#"service:anomaly_score:max{{service="{target}"}}"#),
        "rate(anomaly_exporter_cycle_duration_seconds_count[4s]) > 0".to_owned(),
    ];
    let ready = wait_until(Duration::from_secs(240), || async {
        for query in &ready_queries {
            if query_has_data(&prometheus, query, true).await.is_err() {
                return false;
            }
        }
        true
    })
    .await;
    let log = || std::fs::read_to_string(&exporter_log).unwrap_or_default();
    if !ready {
        let mut missing = Vec::new();
        for query in &ready_queries {
            if let Err(failure) = query_has_data(&prometheus, query, true).await {
                missing.push(failure);
            }
        }
        panic!("not ready in time: {missing:?}\nprometheus:\n{}\nexporter:\n{}", prometheus.log(), log());
    }

    let mut failures = Vec::new();
    for (file, dashboard) in dashboards() {
        // Each variable from its own label_values() query, in order, as Grafana resolves them.
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for variable in variables(&dashboard) {
            let name = variable["name"].as_str().unwrap().to_owned();
            if variable["type"] != "query" {
                continue;
            }
            let query = interpolate(variable["query"]["query"].as_str().unwrap(), &values);
            let found = label_values(&prometheus, &query).await;
            assert!(!found.is_empty(), "{file}: variable {name}: {query} has no values");
            // The faulty service for `service` (single-value on the detail dashboard), All otherwise.
            let chosen = if name == "service" {
                assert!(found.contains(&target), "{file}: {query} lacks {target}: {found:?}");
                vec![target.clone()]
            } else if variable["multi"] == true || variable["includeAll"] == true {
                found
            } else {
                vec![found[0].clone()]
            };
            values.insert(name, chosen);
        }
        failures.extend(
            run_panel_queries(&prometheus, &dashboard, &values).await.into_iter().map(|f| format!("{file}: {f}")),
        );
    }
    assert!(failures.is_empty(), "panel queries without data:\n{}", failures.join("\n"));
    fleet.shutdown().await.unwrap();
}
