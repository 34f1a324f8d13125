//! `/actuator/prometheus` of a simulated service: Prometheus text format 0.0.4, shaped like
//! Spring Boot 3 with Micrometer's Prometheus registry.
//!
//! As in Boot 3, families are sorted by name, labels are sorted with no trailing comma, and the
//! `application` common tag is on every sample. Unlike Boot 3's default, the request timer is a
//! histogram (`percentiles-histogram` on), since the daemon computes p95 from buckets; and every
//! family has HELP text, and `system_cpu_count` is left out, since `promtool check metrics`
//! rejects a missing HELP and a gauge ending in `_count`. The text is written by hand
//! rather than through `prometheus-client` because its exact shape (`_max` gauges, `-1` for
//! unbounded pools) is the point of the simulation.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::model::{RequestLabels, ServiceModel, bucket_bounds};

/// The `Content-Type` of text format 0.0.4.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// G1's heap pools, as Micrometer names them. Eden and survivor have no maximum (`-1`).
const HEAP_POOLS: [&str; 3] = ["G1 Eden Space", "G1 Old Gen", "G1 Survivor Space"];

/// Non-heap pools barely move, so they are fixed: (id, used, max; -1 for none).
const NON_HEAP_POOLS: [(&str, f64, f64); 3] = [
    ("CodeCache", 2.1495808e7, 5.0331648e7),
    ("Compressed Class Space", 1.1010048e7, 1.073741824e9),
    ("Metaspace", 8.4934656e7, -1.0),
];

/// Renders the service's current state.
pub(crate) fn render(model: &ServiceModel) -> String {
    let application = escape(&model.profile.name);
    let mut text = Exposition { out: String::with_capacity(64 * 1024), application };
    let profile = &model.profile;
    let uptime = model.now.duration_since(model.started_at).unwrap_or_default().as_secs_f64();
    let start_time = model.started_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();

    text.family(
        "application_ready_time_seconds",
        "gauge",
        "Time taken for the application to be ready to service requests",
    );
    let main_class = format!("com.example.{}", profile.main_class);
    text.sample("application_ready_time_seconds", &[("main_application_class", &main_class)], 4.731);

    text.family("http_server_requests_seconds", "histogram", "Duration of HTTP server request handling");
    for (labels, timer) in &model.requests {
        let tags = request_tags(labels);
        let tags: Vec<(&str, &str)> = tags.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let mut cumulative = 0;
        for (bound, count) in bucket_bounds().iter().zip(&timer.bucket_counts) {
            cumulative += count;
            text.bucket(&tags, &format_value(*bound), cumulative);
        }
        text.bucket(&tags, "+Inf", timer.count);
        text.sample("http_server_requests_seconds_count", &tags, timer.count as f64);
        text.sample("http_server_requests_seconds_sum", &tags, timer.sum_seconds);
    }
    text.family("http_server_requests_seconds_max", "gauge", "Duration of HTTP server request handling");
    for (labels, timer) in &model.requests {
        let tags = request_tags(labels);
        let tags: Vec<(&str, &str)> = tags.iter().map(|(name, value)| (*name, value.as_str())).collect();
        text.sample("http_server_requests_seconds_max", &tags, timer.max_seconds());
    }

    text.family("jvm_info", "gauge", "JVM version info");
    text.sample(
        "jvm_info",
        &[("runtime", "OpenJDK Runtime Environment"), ("vendor", "Eclipse Adoptium"), ("version", "21.0.5+11-LTS")],
        1.0,
    );

    let heap_used = [model.eden_used_bytes, model.old_gen_used_bytes, model.survivor_used_bytes];
    let heap_max = [-1.0, profile.heap_max_bytes, -1.0];
    text.family(
        "jvm_memory_max_bytes",
        "gauge",
        "The maximum amount of memory in bytes that can be used for memory management",
    );
    for (pool, max) in HEAP_POOLS.iter().zip(heap_max) {
        text.sample("jvm_memory_max_bytes", &[("area", "heap"), ("id", pool)], max);
    }
    for (pool, _, max) in NON_HEAP_POOLS {
        text.sample("jvm_memory_max_bytes", &[("area", "nonheap"), ("id", pool)], max);
    }
    text.family("jvm_memory_used_bytes", "gauge", "The amount of used memory");
    for (pool, used) in HEAP_POOLS.iter().zip(heap_used) {
        text.sample("jvm_memory_used_bytes", &[("area", "heap"), ("id", pool)], used.round());
    }
    for (pool, used, _) in NON_HEAP_POOLS {
        text.sample("jvm_memory_used_bytes", &[("area", "nonheap"), ("id", pool)], used);
    }

    text.family(
        "jvm_threads_live_threads",
        "gauge",
        "The current number of live threads including both daemon and non-daemon threads",
    );
    text.sample("jvm_threads_live_threads", &[], model.live_threads);

    text.family("logback_events_total", "counter", "Number of log events that were enabled by the effective log level");
    for (level, count) in ["debug", "error", "info", "trace", "warn"].into_iter().zip([
        0,
        model.log_events[2],
        model.log_events[0],
        0,
        model.log_events[1],
    ]) {
        text.sample("logback_events_total", &[("level", level)], count as f64);
    }

    text.family("process_cpu_usage", "gauge", "The \"recent cpu usage\" for the Java Virtual Machine process");
    text.sample("process_cpu_usage", &[], model.process_cpu_usage);
    text.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch.");
    text.sample("process_start_time_seconds", &[], start_time);
    text.family("process_uptime_seconds", "gauge", "The uptime of the Java virtual machine");
    text.sample("process_uptime_seconds", &[], uptime);
    text.family("system_cpu_usage", "gauge", "The \"recent cpu usage\" of the system the application is running in");
    text.sample("system_cpu_usage", &[], model.system_cpu_usage);
    text.out
}

/// The timer's tags in label order; Boot 3 writes the exception both as `error` and `exception`.
fn request_tags(labels: &RequestLabels) -> [(&'static str, String); 6] {
    [
        ("error", labels.exception.to_string()),
        ("exception", labels.exception.to_string()),
        ("method", labels.method.to_string()),
        ("outcome", labels.outcome.label().to_string()),
        ("status", labels.status.to_string()),
        ("uri", labels.uri.clone()),
    ]
}

/// The text being written, with the service's escaped `application` label value.
struct Exposition {
    out: String,
    application: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\\', r"\\").replace('\n', r"\n"));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` must be sorted by name and sort after `application`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.out, "}} {}", format_value(value));
    }

    fn bucket(&mut self, labels: &[(&str, &str)], le: &str, cumulative: u64) {
        self.labels("http_server_requests_seconds_bucket", labels);
        let _ = writeln!(self.out, ",le=\"{le}\"}} {cumulative}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        let _ = write!(self.out, "{name}{{application=\"{}\"", self.application);
        for (label, value) in labels {
            let _ = write!(self.out, ",{label}=\"{}\"", escape(value));
        }
    }
}

/// Escapes a label value as the text format requires.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Formats a sample value; Rust's shortest round-trip form parses back to the same float.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        value.to_string()
    }
}
