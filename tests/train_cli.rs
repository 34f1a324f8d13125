//! `anomaly-exporter train` as a user runs it: exit codes, messages naming the mistake, the
//! summary table, and models written where the daemon loads them.

use std::process::Command;

use anomaly_exporter::engine::SeriesKey;
use anomaly_exporter::store::Datasets;
use anomaly_exporter::store::writer::{DatasetWriter, StoredPoint, write_pending};
use anomaly_exporter::train::{model_files, now_ms};

fn train(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_anomaly-exporter")).arg("train").args(args).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn trains_selected_series_and_names_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ae.yml");
    std::fs::write(&config, "source:\n  url: http://127.0.0.1:9\ndetector:\n  min_training_points: 50\n").unwrap();
    let config = config.to_str().unwrap();

    let (code, _, stderr) = train(&["--config.file", config]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("datasets.path"), "{stderr}");

    let datasets = Datasets::new(dir.path().join("datasets"));
    let mut writer = DatasetWriter::open(datasets.clone(), 20, &Default::default());
    let start = now_ms() - 3_600_000;
    for (service, points) in [("web/a", 300), ("batch", 10)] {
        let key = SeriesKey { service: service.into(), signal: "cpu".into() };
        writer.accept(
            (0..points)
                .map(|i| StoredPoint {
                    key: key.clone(),
                    timestamp_ms: start + i * 15_000,
                    value: 0.5 + 0.1 * (i as f64 / 7.0).sin(),
                    anomaly_score: None,
                    severity: 0,
                    model_version: None,
                })
                .collect(),
        );
    }
    assert!(write_pending(&datasets, writer.take_pending()).2.is_empty());

    let (code, stdout, stderr) = train(&["--config.file", config, "--service", "web/a"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("SERVICE"), "{stdout}");
    assert!(stdout.contains("web/a") && stdout.contains(" ok"), "{stdout}");
    let key = SeriesKey { service: "web/a".into(), signal: "cpu".into() };
    assert_eq!(model_files(&datasets, &key).unwrap().len(), 1);

    // All series: the short one fails, named in the table, and the exit code says so.
    let (code, stdout, _) = train(&["--config.file", config]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("batch") && stdout.contains("rows in the training window"), "{stdout}");

    let (code, _, stderr) = train(&["--config.file", config, "--signal", "latency"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--signal \"latency\""), "{stderr}");
    let (code, _, stderr) = train(&["--config.file", config, "--servce", "x"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--servce"), "{stderr}");
}
