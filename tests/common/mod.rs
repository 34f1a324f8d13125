//! The shared harness of the integration tests: real `prometheus` and `prometheus-alertmanager`
//! processes on free loopback ports, each with its own temporary storage, killed on drop; plus
//! small helpers to wait for a condition and to match samples in a scrape.
//!
//! Every long-running child (the servers, the daemon) is started through [`child_command`], so it
//! dies with the test process even when a killed test never runs its `Drop`.
//!
//! Nothing here uses the fixed default ports (9090, 9093), so a system-wide Prometheus started
//! by the Debian package neither helps nor hurts a test.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to become ready; Prometheus replays its (empty) WAL first.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on a free loopback port in the background; returns its `127.0.0.1:port`.
/// For the small stand-ins tests need: exporters for Prometheus to scrape, fake APIs that fail.
pub(crate) async fn serve_on_loopback(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().expect("local address").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// A command for a long-running child (a server, the daemon) that dies with the test process.
///
/// Tests stop their children on drop, but a test killed by a timeout or Ctrl-C never drops them,
/// and the orphans would keep their ports and temporary files. util-linux's `setpriv --pdeathsig`
/// asks the kernel to send the child SIGKILL when the thread that started it exits. That thread
/// is the test's own (or a worker of its runtime), which outlives the child's use. Where `setpriv`
/// is missing, the child starts directly.
pub(crate) fn child_command(program: impl AsRef<OsStr>) -> Command {
    match find_on_path("setpriv") {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The anomaly-exporter binary under test, as a [`child_command`].
pub(crate) fn exporter_command() -> Command {
    child_command(env!("CARGO_BIN_EXE_anomaly-exporter"))
}

/// An anomaly-exporter daemon (`run`), killed on drop.
pub(crate) struct Exporter {
    child: Child,
}

impl Exporter {
    /// Starts `run` with `config` on `address`, appending its debug-level log to `log`.
    pub(crate) fn start(config: &Path, address: &str, log: &Path) -> Self {
        Exporter { child: spawn_exporter(config, address, log) }
    }

    /// The daemon's pid.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }
}

/// [`Exporter::start`]'s process, for a test that kills it itself (SIGKILL at a chosen moment).
pub(crate) fn spawn_exporter(config: &Path, address: &str, log: &Path) -> Child {
    let log = std::fs::File::options().create(true).append(true).open(log).unwrap();
    exporter_command()
        .args(["run", "--config.file"])
        .arg(config)
        .args(["--web.listen-address", address, "--log.level", "debug"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `detector:` section of a test exporter reading every second: a series' first model after
/// 60 points (the default), so a test sees scores after about a minute, refitted every 30. A
/// first model from 40 points flagged an ordinary heap peak in about one run in a hundred
/// (`simulate::tests::a_healthy_heap_does_not_alarm_the_default_memory_signal`).
pub(crate) const FAST_DETECTOR: &str =
    "detector:\n  window: 10\n  min_training_points: 60\n  retrain_every_points: 30\n";

/// An anomaly-exporter config that reads `prometheus_url` every second with [`FAST_DETECTOR`].
pub(crate) fn fast_exporter_config(prometheus_url: &str) -> String {
    format!(
        "source:\n  url: {prometheus_url}\n  step: 1s\ninterval: 1s\nservice_grace: 30s\nbackfill: 5m\n{FAST_DETECTOR}"
    )
}

/// A loopback port that was free a moment ago. Another process may take it before we bind it;
/// [`ServerProcess::start`] retries on a fresh port when that happens.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address of a bound listener").port()
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes; true when it held.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GETs `url` and returns the body, for scrapes (`/metrics`) and simple API calls.
pub(crate) async fn fetch_text(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(response.status().is_success(), "GET {url}: HTTP {}", response.status());
    response.text().await.unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"))
}

/// A real Prometheus server with its own storage, stopped on drop.
#[derive(Debug)]
pub(crate) struct Prometheus {
    process: ServerProcess,
}

impl Prometheus {
    /// Starts `prometheus` with `config_yaml` as its configuration and waits until it is ready.
    /// `$SELF_ADDRESS` in the config is replaced by the server's own `127.0.0.1:<port>`, so it can
    /// scrape itself.
    pub(crate) async fn start(config_yaml: &str) -> Self {
        Self::start_with(config_yaml, &[], &[]).await
    }

    /// Like [`Prometheus::start`], with more files beside the config (rule files, named by a
    /// relative path in `rule_files:`) and more flags (`--enable-feature=...`).
    pub(crate) async fn start_with(config_yaml: &str, files: &[(&str, &str)], extra_args: &[&str]) -> Self {
        let process = ServerProcess::start("prometheus", config_yaml, files, |port, dir| {
            let mut args = vec![
                format!("--config.file={}", dir.join("config.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                format!("--web.external-url=http://127.0.0.1:{port}/"),
            ];
            args.extend(extra_args.iter().map(|arg| arg.to_string()));
            args
        })
        .await;
        Self { process }
    }

    /// The base URL, such as `http://127.0.0.1:40123` (no trailing slash).
    pub(crate) fn url(&self) -> &str {
        &self.process.url
    }

    /// The server's own output so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        self.process.log_tail()
    }

    /// The directory holding the config and the extra files.
    pub(crate) fn dir(&self) -> &Path {
        self.process.dir.path()
    }
}

/// A real Alertmanager with its own storage and no clustering, stopped on drop.
#[derive(Debug)]
pub(crate) struct Alertmanager {
    process: ServerProcess,
}

impl Alertmanager {
    /// Starts `prometheus-alertmanager` with `config_yaml` and waits until it is ready.
    /// `$SELF_ADDRESS` in the config is replaced as for [`Prometheus::start`].
    pub(crate) async fn start(config_yaml: &str) -> Self {
        Self::start_with(config_yaml, &[], &[]).await
    }

    /// Like [`Alertmanager::start`], with more files beside the config (templates, secret files
    /// such as a Slack URL file) and more flags.
    pub(crate) async fn start_with(config_yaml: &str, files: &[(&str, &str)], extra_args: &[&str]) -> Self {
        let process = ServerProcess::start("prometheus-alertmanager", config_yaml, files, |port, dir| {
            let mut args = vec![
                format!("--config.file={}", dir.join("config.yml").display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                format!("--web.external-url=http://127.0.0.1:{port}/"),
                // Empty: a single node that does not try to form a gossip cluster.
                "--cluster.listen-address=".to_owned(),
            ];
            args.extend(extra_args.iter().map(|arg| arg.to_string()));
            args
        })
        .await;
        Self { process }
    }

    /// The directory holding the config and the extra files, to name them by absolute path.
    pub(crate) fn dir(&self) -> &Path {
        self.process.dir.path()
    }

    /// The base URL, such as `http://127.0.0.1:40124` (no trailing slash).
    pub(crate) fn url(&self) -> &str {
        &self.process.url
    }

    /// The server's own output so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        self.process.log_tail()
    }
}

/// A child server process, its temporary directory and its log file.
#[derive(Debug)]
struct ServerProcess {
    child: Child,
    url: String,
    log_path: PathBuf,
    // Removed after the child is killed: Drop runs before the fields are dropped.
    dir: TempDir,
}

impl ServerProcess {
    async fn start(
        binary: &str,
        config_yaml: &str,
        files: &[(&str, &str)],
        args: impl Fn(u16, &Path) -> Vec<String>,
    ) -> Self {
        let path = find_on_path(binary).unwrap_or_else(|| {
            panic!("`{binary}` is not installed: run `sudo scripts/install-deps.sh` (Debian packages prometheus and prometheus-alertmanager)")
        });
        // The port can be taken between free_port() and the server's bind: try a few.
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("create a temporary directory");
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let config = config_yaml.replace("$SELF_ADDRESS", &format!("127.0.0.1:{port}"));
            std::fs::write(dir.path().join("config.yml"), config).expect("write the config file");
            for (name, content) in files {
                let path = dir.path().join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("create a directory for an extra file");
                }
                std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            }
            let log_path = dir.path().join("output.log");
            let log = std::fs::File::create(&log_path).expect("create the log file");
            let child = child_command(&path)
                .args(args(port, dir.path()))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
            let mut process = ServerProcess { child, url, log_path, dir };
            match process.wait_ready().await {
                Ok(()) => return process,
                Err(failure) => {
                    last_failure = format!("{binary}: {failure}\n--- its output ---\n{}", process.log_tail())
                }
            }
        }
        panic!("{last_failure}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let ready_url = format!("{}/-/ready", self.url);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("build an HTTP client");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status} before becoming ready"));
            }
            let ready = client.get(&ready_url).send().await.is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("not ready at {ready_url} within {READY_TIMEOUT:?}"))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = String::new();
        for line in &lines[lines.len().saturating_sub(40)..] {
            let _ = writeln!(tail, "{line}");
        }
        tail
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL: the storage is thrown away anyway, and a graceful stop only costs time.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|candidate| candidate.is_file())
}

/// Starts a fluent match on the samples of metric `name` in a text-format scrape:
/// `metric("up").label("job", "demo").value(1.0).assert_in(&scrape)`.
pub(crate) fn metric(name: &str) -> MetricMatcher {
    MetricMatcher { name: name.to_owned(), labels: Vec::new(), value: None }
}

/// A sample pattern: the name, some of its labels, and optionally its value.
#[derive(Debug, Clone)]
pub(crate) struct MetricMatcher {
    name: String,
    labels: Vec<(String, String)>,
    value: Option<f64>,
}

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScrapedSample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl MetricMatcher {
    /// Requires label `key` to equal `value` (other labels may be present too).
    pub(crate) fn label(mut self, key: &str, value: impl Into<String>) -> Self {
        self.labels.push((key.to_owned(), value.into()));
        self
    }

    /// Requires the sample's value to equal `value` (NaN matches NaN).
    pub(crate) fn value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    /// The samples of `scrape` that match.
    pub(crate) fn matches_in(&self, scrape: &str) -> Vec<ScrapedSample> {
        parse_samples(scrape).into_iter().filter(|sample| self.matches(sample)).collect()
    }

    /// Panics, showing the samples of the same name, unless some sample matches.
    pub(crate) fn assert_in(&self, scrape: &str) {
        if self.matches_in(scrape).is_empty() {
            panic!("no sample matches {self:?}; samples named {:?}:\n{}", self.name, self.same_name(scrape));
        }
    }

    /// Panics, showing the offenders, if some sample matches.
    pub(crate) fn assert_not_in(&self, scrape: &str) {
        let found = self.matches_in(scrape);
        assert!(found.is_empty(), "expected no sample matching {self:?}, found {found:?}");
    }

    fn matches(&self, sample: &ScrapedSample) -> bool {
        sample.name == self.name
            && self.labels.iter().all(|wanted| sample.labels.contains(wanted))
            && self.value.is_none_or(|v| v == sample.value || (v.is_nan() && sample.value.is_nan()))
    }

    fn same_name(&self, scrape: &str) -> String {
        let samples = parse_samples(scrape);
        let lines: Vec<String> =
            samples.iter().filter(|s| s.name == self.name).map(|s| format!("  {:?} {}", s.labels, s.value)).collect();
        if lines.is_empty() { "  (none)".to_owned() } else { lines.join("\n") }
    }
}

/// The sample lines of a text-format scrape; comments and lines that do not parse are skipped.
pub(crate) fn parse_samples(scrape: &str) -> Vec<ScrapedSample> {
    scrape.lines().filter(|line| !line.starts_with('#')).filter_map(parse_sample_line).collect()
}

fn parse_sample_line(line: &str) -> Option<ScrapedSample> {
    let line = line.trim();
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches([',', ' ']);
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = inner.split_once("=\"")?;
            let (value, after_value) = unescape_until_quote(after_key)?;
            labels.push((key.trim().to_owned(), value));
            inner = after_value;
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(ScrapedSample { name: name.to_owned(), labels, value })
}

/// A label value up to its closing quote, unescaped (`\"`, `\\`, `\n`), and the text after it.
fn unescape_until_quote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[index + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

/// `promtool check metrics` reports nothing on the exposition (node_exporter's checkmetrics).
pub(crate) fn assert_promtool_accepts(metrics: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run scripts/install-deps.sh");
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics: {report}\n{metrics}");
}

#[cfg(test)]
mod tests {
    // The cycle benchmark includes this module too; built without a test harness, its `#[test]`
    // functions are dropped and this import goes unused there.
    #[allow(unused_imports)]
    use super::*;

    const SCRAPE: &str = r#"# HELP demo_cpu_usage CPU
# TYPE demo_cpu_usage gauge
demo_cpu_usage{application="checkout",zone="a,b"} 0.25
demo_cpu_usage{application="say \"hi\""} NaN
up 1 1700000000000
"#;

    #[test]
    fn matcher_finds_samples_by_labels_and_value() {
        metric("demo_cpu_usage").label("application", "checkout").value(0.25).assert_in(SCRAPE);
        metric("demo_cpu_usage").label("zone", "a,b").assert_in(SCRAPE);
        metric("demo_cpu_usage").label("application", "say \"hi\"").value(f64::NAN).assert_in(SCRAPE);
        metric("up").value(1.0).assert_in(SCRAPE);
        metric("demo_cpu_usage").label("application", "checkout").value(0.5).assert_not_in(SCRAPE);
        metric("demo_cpu").assert_not_in(SCRAPE);
    }
}
