//! The README's first command, `scripts/demo.sh`, brings the whole stack up on loopback and takes
//! it down again: the simulated fleet, Prometheus scraping it and the exporter with the shipped
//! rules, Alertmanager with the shipped config, and anomaly-exporter reading Prometheus. The test
//! runs the script as a user would (with the test build of the binary instead of a release build,
//! and free ports), checks every component from the outside, then stops it with Ctrl-C's signal.

mod common;

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{child_command, free_port, wait_until};

const SERVICES: usize = 2;

/// `SERVICES` consecutive free loopback ports for the fleet's services: the script numbers them
/// from a base port.
fn free_port_run() -> u16 {
    for _ in 0..50 {
        let base = free_port();
        let all_free = (0..SERVICES as u16)
            .all(|offset| base.checked_add(offset).is_some_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()));
        if all_free {
            return base;
        }
    }
    panic!("no run of {SERVICES} free loopback ports");
}

/// The script's process, interrupted (then killed) on drop.
struct Demo {
    child: Child,
}

impl Demo {
    fn interrupt(&self) {
        let status = std::process::Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -INT the demo");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.interrupt();
            std::thread::sleep(Duration::from_secs(5));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number of series of a Prometheus instant query's answer (0 when it fails).
async fn series_count(client: &reqwest::Client, prometheus: &str, query: &str) -> usize {
    let Ok(response) = client.get(format!("http://{prometheus}/api/v1/query")).query(&[("query", query)]).send().await
    else {
        return 0;
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["data"]["result"].as_array().map_or(0, Vec::len)
}

/// Whether Prometheus has loaded the alerting rule `name` (the shipped rules file).
async fn rule_loaded(client: &reqwest::Client, prometheus: &str, name: &str) -> bool {
    let Ok(response) = client.get(format!("http://{prometheus}/api/v1/rules?type=alert")).send().await else {
        return false;
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["data"]["groups"].as_array().is_some_and(|groups| {
        groups.iter().flat_map(|g| g["rules"].as_array().into_iter().flatten()).any(|r| r["name"] == name)
    })
}

async fn ready(client: &reqwest::Client, url: String) -> bool {
    client.get(url).send().await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_brings_the_stack_up_and_ctrl_c_takes_it_down() {
    let [fleet, prometheus, exporter, alertmanager] =
        [free_port(), free_port(), free_port(), free_port()].map(|port| format!("127.0.0.1:{port}"));
    let output = tempfile::NamedTempFile::new().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut demo = Demo {
        // Through `env --default-signal=INT`: a shell that starts a command in the background
        // without job control (as a CI runner may start the test suite) makes it ignore SIGINT,
        // every process under it inherits that, and bash cannot trap a signal ignored on entry.
        // A user's Ctrl-C reaches the demo with SIGINT's default handling; so does the test's.
        child: child_command("env")
            .args(["--default-signal=INT", "bash"])
            .arg(format!("{root}/scripts/demo.sh"))
            .env("SERVICES", SERVICES.to_string())
            .env("FLEET_CONTROL", &fleet)
            .env("FLEET_BASE_PORT", free_port_run().to_string())
            .env("PROMETHEUS", &prometheus)
            .env("EXPORTER", &exporter)
            .env("ALERTMANAGER", &alertmanager)
            .env("ANOMALY_EXPORTER_BIN", env!("CARGO_BIN_EXE_anomaly-exporter"))
            .stdout(output.reopen().unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    };
    let printed = || std::fs::read_to_string(output.path()).unwrap_or_default();
    let client = reqwest::Client::new();

    // Every component answers, Prometheus scrapes the fleet and the exporter with the shipped
    // rules loaded, and the exporter has discovered the fleet's services from Prometheus.
    let up = wait_until(Duration::from_secs(120), || async {
        ready(&client, format!("http://{prometheus}/-/ready")).await
            && ready(&client, format!("http://{alertmanager}/-/ready")).await
            && ready(&client, format!("http://{exporter}/-/ready")).await
            && series_count(&client, &prometheus, r#"up{job="springboot"} == 1"#).await == SERVICES
            && series_count(&client, &prometheus, r#"up{job="anomaly-exporter"} == 1"#).await == 1
            && rule_loaded(&client, &prometheus, "AnomalyCritical").await
    })
    .await;
    assert!(up, "the demo's stack did not come up; it printed:\n{}", printed());
    let services = wait_until(Duration::from_secs(60), || async {
        let Ok(response) = client.get(format!("http://{exporter}/services")).send().await else { return false };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["services"].as_array().is_some_and(|services| services.len() == SERVICES)
    })
    .await;
    let listing = client.get(format!("http://{exporter}/services")).send().await.unwrap().text().await.unwrap();
    assert!(services, "the exporter did not find the {SERVICES} services: {listing}");
    let text = printed();
    for url in [&prometheus, &alertmanager, &exporter, &fleet] {
        assert!(text.contains(&format!("http://{url}/")), "the demo does not print {url}:\n{text}");
    }
    let work = text
        .split_whitespace()
        .find(|word| word.contains("anomaly-demo."))
        .map(|word| word.trim_end_matches('.').to_owned())
        .unwrap_or_else(|| panic!("the demo does not print its directory:\n{text}"));
    assert!(std::path::Path::new(&work).is_dir(), "{work}");

    // Ctrl-C: everything stops, the ports are free again and the temporary data is gone.
    demo.interrupt();
    let mut stopped = false;
    for _ in 0..300 {
        if demo.child.try_wait().ok().flatten().is_some() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the demo did not stop on SIGINT:\n{}", printed());
    let released = wait_until(Duration::from_secs(10), || async {
        [&prometheus, &alertmanager, &exporter, &fleet]
            .iter()
            .all(|address| TcpListener::bind(address.as_str()).is_ok())
    })
    .await;
    assert!(released, "a component still holds its port after the demo stopped");
    assert!(!std::path::Path::new(&work).exists(), "{work} is left behind");
}
