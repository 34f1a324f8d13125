//! `check-config` and `run` refuse a bad configuration before starting: exit code 2, with the key.

use std::path::Path;
use std::process::Command;

mod common;

fn anomaly_exporter(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_anomaly-exporter")).args(args).output().expect("binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/anomaly-exporter.yml");
    let (code, stdout, stderr) = anomaly_exporter(&["check-config", "--config.file", example]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid, 4 signals"), "{stdout}");
}

#[test]
fn invalid_config_exits_2_naming_the_key_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "source:\n  url: http://127.0.0.1:9\nsignals:\n  cpu:\n    query: up\n    thresholds: {warning: 0.9, high: 0.5}\n").unwrap();
    let bad = bad.to_str().unwrap();
    for command in [
        &["check-config", "--config.file", bad][..],
        &["run", "--config.file", bad, "--web.listen-address", "127.0.0.1:0"],
    ] {
        let (code, _, stderr) = anomaly_exporter(command);
        assert_eq!(code, Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains("signals.cpu.thresholds: warning threshold 0.9 must be at most the high threshold 0.5"),
            "{stderr}"
        );
    }
    let (code, _, stderr) = anomaly_exporter(&["check-config", "--config.file", "/nonexistent/anomaly-exporter.yml"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read /nonexistent/anomaly-exporter.yml"), "{stderr}");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/anomaly-exporter.yml");
    let (code, _, stderr) =
        anomaly_exporter(&["check-config", "--config.file", example, "--web.config.file", "/nonexistent/web.yml"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("web.config.file /nonexistent/web.yml"), "{stderr}");
}

#[test]
fn a_signal_named_twice_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("twice.yml");
    let yaml =
        "source:\n  url: http://127.0.0.1:9\nsignals:\n  cpu:\n    query: up\n  cpu:\n    query: process_cpu_usage\n";
    std::fs::write(&config, yaml).unwrap();
    let (code, stdout, stderr) = anomaly_exporter(&["check-config", "--config.file", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("signals: duplicate key \"cpu\""), "{stderr}");
}

#[test]
fn relative_secret_files_are_read_beside_the_config_from_any_working_directory() {
    // The binary runs in the crate root; the config and its token are elsewhere.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let config = dir.path().join("tok.yml");
    std::fs::write(&config, "source:\n  url: http://127.0.0.1:9\n  bearer_token_file: token\n").unwrap();
    let (code, stdout, stderr) = anomaly_exporter(&["check-config", "--config.file", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

#[test]
fn a_second_process_on_the_same_datasets_exits_2_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("anomaly-exporter.yml");
    // Prometheus is not needed: the lock is taken before the first query.
    std::fs::write(&config, "source:\n  url: http://127.0.0.1:9\n").unwrap();
    let config = config.to_str().unwrap();
    let first = common::Exporter::start(Path::new(config), "127.0.0.1:0", &dir.path().join("first.log"));
    let lock = dir.path().join("datasets").join(".lock");
    let holder = format!("pid {}", first.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&lock).map_or(true, |text| text.trim() != holder) {
        assert!(std::time::Instant::now() < deadline, "the first daemon never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, _, stderr) = anomaly_exporter(&["run", "--config.file", config, "--web.listen-address", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is in use by another anomaly-exporter"), "{stderr}");
    assert!(stderr.contains(&holder), "{stderr}");
    let (code, _, stderr) = anomaly_exporter(&["train", "--config.file", config]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&holder) && stderr.contains("POST /retrain"), "{stderr}");
    // Once the first is gone, however it ended, the directory is free again.
    drop(first);
    let (code, _, stderr) = anomaly_exporter(&["train", "--config.file", config]);
    assert!(!stderr.contains("in use"), "{code:?}: {stderr}");
}

#[test]
fn check_config_refuses_what_run_would_refuse_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slack.yml");
    std::fs::write(
        &config,
        "source:\n  url: http://127.0.0.1:9\nalerts:\n  slack:\n    url_file: /nonexistent-slack-url\n",
    )
    .unwrap();
    let (code, _, stderr) = anomaly_exporter(&["check-config", "--config.file", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("alerts.slack") && stderr.contains("/nonexistent-slack-url"), "{stderr}");
}
