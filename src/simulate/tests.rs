//! Tests of the simulated fleet through its outputs: the exposition text, the log lines, the
//! control API, and one real fleet on ephemeral ports.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tower::ServiceExt;

use super::control::{FleetState, control_router};
use super::exposition::render;
use super::fault::FaultBook;
use super::logs::{Level, LogEvent, ServiceIdentity, render_line};
use super::model::{ServiceModel, ServiceProfile};
use super::*;

/// 2026-09-21T14:13:20Z: an afternoon, so traffic is near its daily peak.
const T0: u64 = 1_790_000_000;
const DAY: Duration = Duration::from_secs(86_400);

fn model(seed: u64) -> ServiceModel {
    let profile = ServiceProfile::generate(0, &mut StdRng::seed_from_u64(seed));
    ServiceModel::new(profile, seed, UNIX_EPOCH + Duration::from_secs(T0))
}

fn fault(model: &ServiceModel, kind: FaultKind, magnitude: f64) -> Fault {
    Fault {
        id: 1,
        service: model.profile.name.clone(),
        kind,
        magnitude,
        started_at: model.now,
        ends_at: model.now + Duration::from_secs(3600),
    }
}

/// Advances the model second by second and returns everything it logged.
fn run_for(model: &mut ServiceModel, seconds: u64, faults: &[Fault]) -> Vec<LogEvent> {
    let mut events = Vec::new();
    for _ in 0..seconds {
        let now = model.now + Duration::from_secs(1);
        events.extend(model.advance(now, DAY, faults));
    }
    events
}

/// Advances the model under one fault of `kind` that started with the run.
fn run_under(model: &mut ServiceModel, seconds: u64, kind: FaultKind, magnitude: f64) -> Vec<LogEvent> {
    let fault = fault(model, kind, magnitude);
    run_for(model, seconds, &[fault])
}

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parses the samples of a text-format scrape, failing on any malformed line.
fn parse_samples(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "), "bad comment: {line}");
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name: {line}");
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            loop {
                let (i, c) = chars.next().unwrap_or_else(|| panic!("unterminated labels: {line}"));
                match c {
                    '}' => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "unquoted value: {line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().unwrap_or_else(|| panic!("unterminated value: {line}")).1 {
                                '"' => break,
                                '\\' => value.push(chars.next().unwrap().1),
                                c => value.push(c),
                            }
                        }
                        assert!(labels.insert(std::mem::take(&mut key), value).is_none(), "repeated label: {line}");
                    }
                    c => key.push(c),
                }
            }
        }
        let value = rest.trim();
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => value.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    samples
}

fn value_of(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|sample| sample.name == name).map(|sample| sample.value).sum()
}

/// p-quantile over all series of the request histogram, as `histogram_quantile` computes it.
fn latency_quantile(samples: &[Sample], q: f64) -> f64 {
    let mut by_bound: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for sample in samples.iter().filter(|sample| sample.name == "http_server_requests_seconds_bucket") {
        let bound: f64 = match sample.label("le") {
            "+Inf" => f64::INFINITY,
            le => le.parse().unwrap(),
        };
        by_bound.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += sample.value;
    }
    let mut buckets: Vec<(f64, f64)> = by_bound.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().unwrap().1;
    let rank = q * total;
    let (mut lower_bound, mut lower_count) = (0.0, 0.0);
    for (bound, count) in buckets {
        if count >= rank {
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count);
        }
        (lower_bound, lower_count) = (bound, count);
    }
    unreachable!()
}

fn scrape_of(model: &ServiceModel) -> Vec<Sample> {
    parse_samples(&render(model))
}

#[test]
fn exposition_is_well_formed_and_every_sample_has_the_application_label() {
    let mut model = model(1);
    run_for(&mut model, 30, &[]);
    let text = render(&model);
    let samples = parse_samples(&text);
    assert!(samples.len() > 100);
    for sample in &samples {
        assert_eq!(sample.label("application"), "order-service", "{sample:?}");
    }
    for family in [
        "process_cpu_usage",
        "system_cpu_usage",
        "jvm_memory_used_bytes",
        "jvm_memory_max_bytes",
        "http_server_requests_seconds_bucket",
        "http_server_requests_seconds_sum",
        "http_server_requests_seconds_count",
        "http_server_requests_seconds_max",
    ] {
        assert!(samples.iter().any(|sample| sample.name == family), "{family} missing");
    }
    assert!(text.contains("# TYPE http_server_requests_seconds histogram\n"));
    let heap = samples.iter().find(|s| s.name == "jvm_memory_used_bytes" && s.label("id") == "G1 Old Gen").unwrap();
    assert_eq!(heap.label("area"), "heap");
    let request = samples.iter().find(|s| s.name == "http_server_requests_seconds_count").unwrap();
    for label in ["method", "uri", "status", "outcome", "exception", "error"] {
        assert!(!request.label(label).is_empty(), "{label} missing on {request:?}");
    }
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    let mut model = model(2);
    run_under(&mut model, 30, FaultKind::ErrorBurst, 0.5);
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!("promtool not runnable ({error}): install it with `sudo apt-get install prometheus`"),
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(render(&model).as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics: {report}");
}

#[test]
fn histogram_buckets_are_cumulative_and_count_equals_the_inf_bucket() {
    let mut model = model(3);
    run_under(&mut model, 60, FaultKind::ErrorBurst, 0.2);
    let samples = scrape_of(&model);
    let mut series: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.name == "http_server_requests_seconds_bucket") {
        let key = ["uri", "method", "status", "exception"].map(|label| sample.label(label)).join(" ");
        series.entry(key).or_default().push(sample);
    }
    assert!(series.len() >= 4, "expected several request series, got {:?}", series.keys());
    for (key, buckets) in series {
        let counts: Vec<f64> = buckets.iter().map(|b| b.value).collect();
        assert!(counts.windows(2).all(|pair| pair[0] <= pair[1]), "{key}: not cumulative: {counts:?}");
        assert_eq!(buckets.last().unwrap().label("le"), "+Inf");
        let count = samples
            .iter()
            .find(|s| {
                s.name == "http_server_requests_seconds_count"
                    && s.labels.iter().all(|(k, v)| buckets[0].labels.get(k) == Some(v) || k == "le")
                    && s.labels.len() + 1 == buckets[0].labels.len()
            })
            .unwrap();
        assert_eq!(count.value, *counts.last().unwrap(), "{key}");
    }
}

#[test]
fn buckets_are_micrometers_percentile_buckets_from_1ms_to_30s() {
    let bounds = super::model::bucket_bounds();
    assert_eq!((bounds[0], bounds[1], bounds[2]), (0.001, 0.001048576, 0.001398101));
    assert_eq!(bounds[bounds.len() - 2..], [28.633115306, 30.0]);
    assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn latency_fault_raises_the_p95_from_buckets() {
    let mut healthy = model(4);
    let mut slow = model(4);
    run_for(&mut healthy, 120, &[]);
    run_under(&mut slow, 120, FaultKind::Latency, 6.0);
    let healthy_p95 = latency_quantile(&scrape_of(&healthy), 0.95);
    let slow_p95 = latency_quantile(&scrape_of(&slow), 0.95);
    assert!(slow_p95 > 3.0 * healthy_p95, "p95 {healthy_p95} → {slow_p95}");
}

#[test]
fn latency_fault_logs_slow_queries() {
    let mut slow = model(4);
    let events = run_under(&mut slow, 30, FaultKind::Latency, 6.0);
    assert!(events.iter().any(|e| e.level == Level::Warn && e.logger == "org.hibernate.SQL_SLOW"));
}

#[test]
fn error_burst_raises_server_errors_and_logs_one_error_template() {
    let mut healthy = model(5);
    let mut failing = model(5);
    let healthy_events = run_for(&mut healthy, 60, &[]);
    let failing_events = run_under(&mut failing, 60, FaultKind::ErrorBurst, 0.3);
    let server_errors = |samples: &[Sample]| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == "http_server_requests_seconds_count" && s.label("outcome") == "SERVER_ERROR")
            .map(|s| s.value)
            .sum()
    };
    let (before, during) = (server_errors(&scrape_of(&healthy)), server_errors(&scrape_of(&failing)));
    let total = value_of(&scrape_of(&failing), "http_server_requests_seconds_count");
    assert!(during > 0.2 * total && during > 10.0 * before.max(1.0), "server errors {before} → {during} of {total}");
    let errors: Vec<&LogEvent> = failing_events.iter().filter(|e| e.level == Level::Error).collect();
    assert!(errors.len() >= 20, "only {} ERROR lines", errors.len());
    let burst: Vec<&&LogEvent> = errors
        .iter()
        .filter(|e| e.exception.as_ref().is_some_and(|x| x.class.ends_with("ResourceAccessException")))
        .collect();
    assert!(burst.len() * 10 >= errors.len() * 9, "the burst's exception must dominate the ERROR lines");
    assert!(burst.iter().all(|e| e.message == burst[0].message), "one template, one message");
    assert!(burst[0].exception.as_ref().unwrap().stack_trace.contains("\n\tat "));
    assert!(healthy_events.iter().filter(|e| e.level == Level::Error).count() * 10 < errors.len());
    let logged = scrape_of(&failing);
    let logback_errors =
        logged.iter().find(|s| s.name == "logback_events_total" && s.label("level") == "error").unwrap();
    assert_eq!(logback_errors.value, errors.len() as f64);
}

#[test]
fn cpu_spike_and_memory_leak_show_in_their_gauges() {
    let mut healthy = model(6);
    let mut spiking = model(6);
    let mut leaking = model(6);
    run_for(&mut healthy, 120, &[]);
    let spike_events = run_under(&mut spiking, 120, FaultKind::CpuSpike, 0.5);
    run_under(&mut leaking, 120, FaultKind::MemoryLeak, 0.1);
    let (healthy, spiking, leaking) = (scrape_of(&healthy), scrape_of(&spiking), scrape_of(&leaking));
    assert!(value_of(&spiking, "process_cpu_usage") > value_of(&healthy, "process_cpu_usage") + 0.4);
    let heap_used = |samples: &[Sample]| -> f64 {
        samples.iter().filter(|s| s.name == "jvm_memory_used_bytes" && s.label("area") == "heap").map(|s| s.value).sum()
    };
    let heap_max =
        leaking.iter().find(|s| s.name == "jvm_memory_max_bytes" && s.label("id") == "G1 Old Gen").unwrap().value;
    assert!(heap_used(&leaking) > heap_used(&healthy) + 0.1 * heap_max);
    assert!(spike_events.iter().any(|e| e.message.contains("Thread starvation or clock leap detected")));
}

#[test]
fn memory_returns_to_normal_when_a_leak_ends() {
    let mut model = model(7);
    let leak = fault(&model, FaultKind::MemoryLeak, 0.2);
    run_for(&mut model, 60, std::slice::from_ref(&leak));
    let leaked = model.old_gen_used_bytes;
    let events = run_for(&mut model, 5, &[]);
    assert!(model.old_gen_used_bytes < leaked * 0.8, "{leaked} → {}", model.old_gen_used_bytes);
    assert!(events.iter().any(|e| e.message.starts_with("Session cache evicted")));
}

#[test]
fn same_seed_replays_the_same_service() {
    let (mut first, mut second) = (model(8), model(8));
    let first_events = run_for(&mut first, 30, &[]);
    let second_events = run_for(&mut second, 30, &[]);
    assert_eq!(first_events, second_events);
    assert_eq!(render(&first), render(&second));
    let mut other = model(9);
    run_for(&mut other, 30, &[]);
    assert_ne!(render(&first), render(&other));
}

#[test]
fn traffic_peaks_at_noon_and_ebbs_at_midnight() {
    let model = model(10);
    let midnight = UNIX_EPOCH + Duration::from_secs(T0 - T0 % 86_400);
    let noon = midnight + Duration::from_secs(43_200);
    assert!(model.load_at(noon, DAY) > 1.3 && model.load_at(midnight, DAY) < 0.7);
    // A compressed ten-minute day has the same shape.
    let short_day = Duration::from_secs(600);
    let short_midnight = UNIX_EPOCH + Duration::from_secs(T0 - T0 % 600);
    assert!(
        model.load_at(short_midnight + Duration::from_secs(300), short_day) > model.load_at(short_midnight, short_day)
    );
}

#[test]
fn services_have_different_base_levels_and_names() {
    let mut rng = StdRng::seed_from_u64(11);
    let profiles: Vec<ServiceProfile> = (0..12).map(|i| ServiceProfile::generate(i, &mut rng)).collect();
    let models: Vec<ServiceModel> = profiles.into_iter().map(|p| ServiceModel::new(p, 1, UNIX_EPOCH)).collect();
    assert_eq!(models[0].profile.name, "order-service");
    assert_eq!(models[10].profile.name, "order-service-2");
    assert_ne!(models[0].process_cpu_usage, models[1].process_cpu_usage);
}

#[test]
fn every_log_line_is_json_in_the_logstash_shape() {
    let mut model = model(12);
    let identity = ServiceIdentity { name: model.profile.name.clone(), pid: 1 };
    let mut events = model.startup_events(8080);
    events.extend(run_under(&mut model, 60, FaultKind::ErrorBurst, 0.3));
    let mut previous = String::new();
    let mut levels = std::collections::BTreeSet::new();
    for event in &events {
        let line = render_line(event, LogFormat::Logstash, &identity);
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        for field in ["@timestamp", "@version", "message", "logger_name", "thread_name", "level"] {
            assert!(json[field].is_string(), "{field} missing in {line}");
        }
        assert!(json["level_value"].is_u64());
        let timestamp = json["@timestamp"].as_str().unwrap().to_string();
        assert!(timestamp >= previous, "lines out of order: {previous} then {timestamp}");
        assert_eq!(json["stack_trace"].is_string(), json["level"] == "ERROR", "{line}");
        levels.insert(json["level"].as_str().unwrap().to_string());
        previous = timestamp;
    }
    assert_eq!(levels.into_iter().collect::<Vec<_>>(), ["ERROR", "INFO", "WARN"]);
    let distinct_loggers: std::collections::BTreeSet<&str> = events.iter().map(|e| e.logger.as_str()).collect();
    assert!(distinct_loggers.len() >= 5, "templates should vary: {distinct_loggers:?}");
}

fn control_state() -> Arc<FleetState> {
    let services = ["order-service", "payment-service"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], 18080 + i as u16));
            ServiceEndpoint {
                name: name.to_string(),
                address,
                metrics_url: format!("http://{address}/actuator/prometheus"),
                log_file: format!("logs/{name}/app.log").into(),
            }
        })
        .collect::<Vec<_>>();
    let names = services.iter().map(|s| s.name.clone()).collect();
    Arc::new(FleetState { faults: FaultBook::new(names), services, slack_posts: Default::default() })
}

async fn call(state: &Arc<FleetState>, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = control_router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn fault_api_injects_lists_and_stops_faults() {
    let state = control_state();
    let body = r#"{"service": "payment-service", "kind": "latency", "duration_seconds": 60, "magnitude": 4}"#;
    let (status, fault) = call(&state, "POST", "/faults", body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (fault["service"].as_str(), fault["kind"].as_str(), fault["magnitude"].as_f64()),
        (Some("payment-service"), Some("latency"), Some(4.0))
    );
    let (status, listed) = call(&state, "GET", "/faults", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["faults"][0]["id"], fault["id"]);
    let (status, stopped) = call(&state, "DELETE", &format!("/faults/{}", fault["id"]), "").await;
    assert_eq!((status, &stopped["id"]), (StatusCode::OK, &fault["id"]));
    let (_, listed) = call(&state, "GET", "/faults", "").await;
    assert_eq!(listed["faults"], serde_json::json!([]));
}

#[tokio::test]
async fn slack_stand_in_records_posts_by_channel_and_keeps_the_newest() {
    let state = control_state();
    let (status, _) = call(&state, "POST", "/slack/exporter", r#"{"text": "checkout is critical"}"#).await;
    assert_eq!(status, StatusCode::OK);
    call(&state, "POST", "/slack/alertmanager", "not json").await;
    let (_, listed) = call(&state, "GET", "/slack", "").await;
    let posts = listed["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        (posts[0]["channel"].as_str(), posts[0]["body"]["text"].as_str()),
        (Some("exporter"), Some("checkout is critical"))
    );
    assert_eq!((posts[1]["channel"].as_str(), posts[1]["body"].as_str()), (Some("alertmanager"), Some("not json")));
    for i in 0..super::control::SLACK_POSTS_KEPT {
        call(&state, "POST", "/slack/exporter", &format!(r#"{{"text": "{i}"}}"#)).await;
    }
    let (_, listed) = call(&state, "GET", "/slack", "").await;
    let posts = listed["posts"].as_array().unwrap();
    assert_eq!(posts.len(), super::control::SLACK_POSTS_KEPT);
    assert_eq!(posts[0]["body"]["text"], "0", "the two oldest were dropped");
}

#[tokio::test]
async fn fault_api_rejects_bad_requests_with_json_errors() {
    let state = control_state();
    let cases = [
        (
            "POST",
            "/faults",
            r#"{"service": "nope", "kind": "latency", "duration_seconds": 60}"#,
            StatusCode::NOT_FOUND,
            "unknown_service",
        ),
        (
            "POST",
            "/faults",
            r#"{"service": "order-service", "kind": "meteor", "duration_seconds": 60}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/faults",
            r#"{"service": "order-service", "kind": "latency", "duration_seconds": -1}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/faults",
            r#"{"service": "order-service", "kind": "error_burst", "duration_seconds": 5, "magnitude": 3}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("POST", "/faults", "not json", StatusCode::BAD_REQUEST, "invalid_request"),
        ("DELETE", "/faults/42", "", StatusCode::NOT_FOUND, "unknown_fault"),
        ("DELETE", "/faults/abc", "", StatusCode::BAD_REQUEST, "invalid_request"),
        ("GET", "/nowhere", "", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (method, uri, body, status, code) in cases {
        let (got_status, json) = call(&state, method, uri, body).await;
        assert_eq!((got_status, json["error"]["code"].as_str()), (status, Some(code)), "{method} {uri} {body}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, json) =
        call(&state, "POST", "/faults", r#"{"service": "order-service", "kind": "meteor", "duration_seconds": 1}"#)
            .await;
    assert!(json["error"]["message"].as_str().unwrap().contains("meteor"), "{json}");
    assert!(state.faults.active(SystemTime::now()).is_empty());
}

#[tokio::test]
async fn targets_are_prometheus_http_sd_groups() {
    let state = control_state();
    let (status, json) = call(&state, "GET", "/targets", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json[0]["targets"], serde_json::json!(["127.0.0.1:18080"]));
    assert_eq!(json[0]["labels"]["application"], "order-service");
    assert_eq!(json[1]["labels"]["application"], "payment-service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_fleet_serves_metrics_logs_and_faults_on_ephemeral_ports() {
    let directory = tempfile::tempdir().unwrap();
    let options = FleetOptions { tick: Duration::from_millis(50), ..FleetOptions::ephemeral(2, directory.path()) };
    let fleet = start(options).await.unwrap();
    assert_eq!(fleet.services().len(), 2);
    let client = reqwest::Client::new();

    let first = fleet.services()[0].clone();
    let response = client.get(&first.metrics_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let samples = parse_samples(&response.text().await.unwrap());
    assert!(samples.iter().all(|s| s.label("application") == first.name));
    assert!(value_of(&samples, "process_cpu_usage") > 0.0);

    let targets: serde_json::Value =
        client.get(format!("{}/targets", fleet.control_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(targets[1]["targets"][0], fleet.services()[1].address.to_string());

    let body =
        serde_json::json!({"service": first.name, "kind": "error_burst", "duration_seconds": 30, "magnitude": 0.9});
    let response = client.post(format!("{}/faults", fleet.control_url())).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&first.log_file).unwrap();
        let error_lines = log.lines().filter(|line| line.contains(r#""level":"ERROR""#)).count();
        if error_lines >= 3 {
            for line in log.lines() {
                let json: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(json["@version"], "1");
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ERROR lines in {}", first.log_file.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scraped = parse_samples(&client.get(&first.metrics_url).send().await.unwrap().text().await.unwrap());
    assert!(scraped.iter().any(|s| s.label("outcome") == "SERVER_ERROR" && s.value > 0.0));

    let id = fleet.active_faults()[0].id;
    fleet.stop_fault(id).unwrap();
    assert!(fleet.active_faults().is_empty());
    let control = fleet.control_url();
    fleet.shutdown().await.unwrap();
    assert!(client.get(format!("{control}/faults")).send().await.is_err(), "control api still answers");
}

#[tokio::test]
async fn scheduled_faults_start_without_anyone_asking() {
    let directory = tempfile::tempdir().unwrap();
    let options =
        FleetOptions { fault_every: Some(Duration::from_millis(100)), ..FleetOptions::ephemeral(3, directory.path()) };
    let fleet = start(options).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let faults = fleet.active_faults();
    assert!(!faults.is_empty());
    assert!(faults.iter().all(|f| fleet.services().iter().any(|s| s.name == f.service)));
    fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn taken_port_is_a_runtime_error_and_zero_services_a_usage_error() {
    let directory = tempfile::tempdir().unwrap();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options =
        FleetOptions { listen_address: taken.local_addr().unwrap(), ..FleetOptions::ephemeral(1, directory.path()) };
    let error = start(options).await.unwrap_err();
    assert!(matches!(error, SimulateError::Bind { .. }) && !error.is_usage_error(), "{error}");
    let error = start(FleetOptions::ephemeral(0, directory.path())).await.unwrap_err();
    assert!(error.is_usage_error(), "{error}");
}

#[tokio::test]
async fn ecs_format_writes_flat_ecs_lines() {
    let directory = tempfile::tempdir().unwrap();
    let options = FleetOptions { log_format: LogFormat::Ecs, ..FleetOptions::ephemeral(1, directory.path()) };
    let fleet = start(options).await.unwrap();
    let log_file = fleet.services()[0].log_file.clone();
    fleet.shutdown().await.unwrap();
    let log = std::fs::read_to_string(log_file).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["log.level"], "INFO");
    assert_eq!(first["service.name"], "order-service");
    assert!(first["message"].as_str().unwrap().starts_with("Starting OrderServiceApplication"));
}

/// Each service's name and heap ratio (what the default `memory` signal queries) once a second
/// for `seconds`, from a fleet of `services` built as `simulate::start` builds it from `seed`.
fn heap_ratios(seed: u64, services: usize, start: SystemTime, seconds: u64) -> Vec<(String, Vec<f64>)> {
    let mut seeds = StdRng::seed_from_u64(seed);
    let profiles: Vec<ServiceProfile> = (0..services).map(|i| ServiceProfile::generate(i, &mut seeds)).collect();
    profiles
        .into_iter()
        .map(|profile| {
            let (name, heap_max) = (profile.name.clone(), profile.heap_max_bytes);
            let mut model = ServiceModel::new(profile, rand::Rng::random(&mut seeds), start);
            let ratios = (1..=seconds * 10)
                .filter_map(|tick| {
                    model.advance(start + Duration::from_millis(tick * 100), DAY, &[]);
                    let used = model.eden_used_bytes.round()
                        + model.old_gen_used_bytes.round()
                        + model.survivor_used_bytes.round();
                    (tick % 10 == 0).then_some(used / heap_max)
                })
                .collect();
            (name, ratios)
        })
        .collect()
}

/// The default `memory` signal, scored as the daemon's integration tests score it (1 s steps,
/// `tests/common`'s fast detector), never reaches `high` on a healthy heap at any time of day.
/// Scored both ways, the heap's fall at a young collection did: `detection_direction: both` gives
/// 7 such alarms in these 216 five-minute runs, and 16 with a first model after 40 points, the
/// fast detector's old setting (2 with `up`, both in a model's first seconds).
#[test]
fn a_healthy_heap_does_not_alarm_the_default_memory_signal() {
    use crate::classify::{AnomalyLevels, Severity};
    use crate::config::default_signals;
    use crate::detect::{DetectorParams, SeriesDetector};
    use crate::engine::SeriesKey;

    let params =
        DetectorParams { window: 10, min_training_points: 60, retrain_every_points: 30, ..DetectorParams::default() };
    let gate = default_signals()["memory"].alarm_gate();
    let mut alarms = Vec::new();
    // Every 20 minutes of a day, as the rhythm sets the load and so the collections' pace.
    for start_index in 0..72u64 {
        let start = UNIX_EPOCH + Duration::from_secs(T0 + start_index * 1200);
        for (name, ratios) in heap_ratios(7, 3, start, 300) {
            let key = SeriesKey { service: name.clone(), signal: "memory".to_owned() };
            let mut detector = SeriesDetector::new(&params, key.seed());
            for (second, ratio) in ratios.into_iter().enumerate() {
                let timestamp_ms = (T0 + start_index * 1200 + second as u64) as i64 * 1000;
                let score = detector.observe(&params, gate, timestamp_ms, ratio).and_then(|o| o.anomaly_score);
                if let Some(score) = score.filter(|&s| AnomalyLevels::default().level(s) >= Severity::High) {
                    alarms.push(format!("{name} from start {start_index}, at {second} s: {score:.3} ({ratio:.3})"));
                }
            }
        }
    }
    assert!(alarms.is_empty(), "{} alarms on healthy heaps:\n{}", alarms.len(), alarms.join("\n"));
}
