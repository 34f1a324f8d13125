//! The daemon's cycle cost at scale, read from a real Prometheus: CPU time per cycle and RSS at
//! 1k, 10k and 50k series (a third of the services per signal, three signals).
//!
//! `cargo bench --bench cycle [-- 1000 10000]` prints one line per size. It starts a synthetic
//! exporter (one gauge per signal per service, with noise), a real Prometheus scraping it every
//! second, waits for enough history, lets the engine backfill and fit every series, then
//! measures steady-state cycles: process CPU time (user + system) per cycle, median of several,
//! and resident memory. Needs `prometheus` on PATH (`scripts/install-deps.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anomaly_exporter::config::Config;
use anomaly_exporter::engine::Engine;
use anomaly_exporter::export::{ScoresCollector, SelfMetrics, SnapshotCell};
use anomaly_exporter::process::ProcessStats;
use anomaly_exporter::source::PrometheusClient;
use axum::Router;
use axum::routing::get;
use prometheus_client::registry::Registry;

const SIGNALS: [&str; 3] = ["cpu", "memory", "latency"];
/// Points of history before the engine starts: enough for every series' first model.
const HISTORY_SECONDS: u64 = 35;
const MEASURED_CYCLES: usize = 7;

/// Serves `services` × 3 gauges whose values move a little on every scrape.
async fn start_exporter(services: usize) -> String {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let scrape = scrapes.fetch_add(1, Ordering::Relaxed);
            async move {
                let mut body = String::with_capacity(services * 3 * 48);
                for signal in SIGNALS {
                    let _ = writeln!(body, "# TYPE bench_{signal} gauge");
                    for service in 0..services {
                        let noise = ((service as u64 * 7919 + scrape * 104_729) % 1000) as f64 / 1000.0;
                        let _ =
                            writeln!(body, "bench_{signal}{{application=\"svc-{service:05}\"}} {}", 0.4 + 0.1 * noise);
                    }
                }
                body
            }
        }),
    );
    common::serve_on_loopback(app).await
}

async fn measure(series: usize) {
    let services = series.div_ceil(SIGNALS.len());
    let exporter = start_exporter(services).await;
    let prometheus = common::Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: bench\n  static_configs:\n  - targets: ['{exporter}']\n"
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(HISTORY_SECONDS)).await;

    let signals: String = SIGNALS.iter().map(|s| format!("  {s}:\n    query: bench_{s}\n")).collect();
    let config = Config::from_yaml(
        &format!(
            "source:\n  url: {}\n  step: 1s\n  timeout: 60s\ninterval: 1s\nbackfill: 1m\n\
             detector:\n  min_training_points: 20\nsignals:\n{signals}",
            prometheus.url()
        ),
        std::path::Path::new("bench.yml"),
    )
    .expect("config");
    let snapshot = Arc::new(SnapshotCell::default());
    let mut registry = Registry::default();
    let metrics = SelfMetrics::register(&mut registry);
    registry.register_collector(Box::new(ScoresCollector::new(Arc::clone(&snapshot), 1.0)));
    let client = PrometheusClient::new(&config.source).expect("client");
    let mut engine = Engine::new(Arc::new(config), client, metrics, snapshot);

    let started = Instant::now();
    let cpu_before = ProcessStats::read().map_or(0.0, |p| p.cpu_seconds);
    let first = engine.run_cycle(SystemTime::now()).await;
    let first_cpu = ProcessStats::read().map_or(0.0, |p| p.cpu_seconds) - cpu_before;
    let first_wall = started.elapsed().as_secs_f64();

    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..MEASURED_CYCLES {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = ProcessStats::read().map_or(0.0, |p| p.cpu_seconds);
        let started = Instant::now();
        let report = engine.run_cycle(SystemTime::now()).await;
        wall.push(started.elapsed().as_secs_f64());
        cpu.push(ProcessStats::read().map_or(0.0, |p| p.cpu_seconds) - before);
        assert!(report.failed_signals.is_empty(), "{report:?}");
    }
    // One scrape of our own /metrics, as Prometheus would do it.
    let scrape_started = Instant::now();
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encode");
    let scrape_seconds = scrape_started.elapsed().as_secs_f64();
    let rss = ProcessStats::read().map_or(0.0, |p| p.resident_bytes);
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);
    println!(
        "{series:>6} series ({} exported): steady cycle CPU median {:.3} s (min {:.3}, max {:.3}), wall median {:.3} s; \
         first cycle (backfill + {} fits) CPU {:.2} s, wall {:.2} s; /metrics encode {:.3} s, {} bytes; RSS {:.0} MiB",
        first.exported_series,
        cpu[cpu.len() / 2],
        cpu[0],
        cpu[cpu.len() - 1],
        wall[wall.len() / 2],
        first.new_series,
        first_cpu,
        first_wall,
        scrape_seconds,
        text.len(),
        rss / (1024.0 * 1024.0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and
    // a minutes-long measurement has no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cycle benchmark: run it with `cargo bench --bench cycle`");
        return;
    }
    // Sizes are the numeric arguments.
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 10_000, 50_000] } else { sizes };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for series in sizes {
        // Each size in a fresh engine; RSS is the process's, so sizes are run smallest first.
        runtime.block_on(measure(series));
    }
}
