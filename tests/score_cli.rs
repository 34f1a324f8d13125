//! The `score` command as a user runs it: real files in, real files out, exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn run_score(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anomaly-exporter")).arg("score").args(args).output().expect("binary runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// 300 rows on a small grid plus three far-away rows, labelled.
fn labelled_csv() -> String {
    let mut text = String::from("x,y,label\n");
    for i in 0..300 {
        text.push_str(&format!("{},{},0\n", (i % 20) as f64 * 0.1, (i / 20) as f64 * 0.1));
    }
    for far in [50.0, -40.0, 80.0] {
        text.push_str(&format!("{far},{far},1\n"));
    }
    text
}

#[test]
fn scores_every_row_in_order_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &labelled_csv());
    let output = dir.path().join("out.csv");
    let result =
        run_score(&["--input", &input, "--output", output.to_str().unwrap(), "--seed", "3", "--report", "json"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["rows"], 303);
    assert_eq!(report["features"], 2);
    assert!(report["fit_seconds"].as_f64().unwrap() >= 0.0);
    assert!(report["score_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(report["auc"].as_f64().unwrap(), 1.0, "the three far rows must outscore the grid");

    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("score,anomaly"));
    let rows: Vec<(f64, u8)> = lines
        .map(|l| {
            let (s, a) = l.split_once(',').unwrap();
            (s.parse().unwrap(), a.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 303);
    assert!(rows[300..].iter().all(|&(_, anomaly)| anomaly == 1));
    assert!(rows.iter().all(|&(score, anomaly)| (score > 0.5) == (anomaly == 1)));
}

#[test]
fn same_seed_writes_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &labelled_csv());
    let outputs: Vec<String> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("out{i}.csv"));
            assert!(run_score(&["--input", &input, "--output", out.to_str().unwrap(), "--seed", "9"]).status.success());
            std::fs::read_to_string(out).unwrap()
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn contamination_flags_that_share() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &labelled_csv());
    let out = dir.path().join("out.csv");
    let result = run_score(&["--input", &input, "--output", out.to_str().unwrap(), "--contamination", "0.1"]);
    assert!(result.status.success());
    let flagged = std::fs::read_to_string(out).unwrap().lines().skip(1).filter(|l| l.ends_with(",1")).count();
    assert!((28..=33).contains(&flagged), "{flagged} of 303 flagged at 10%");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let out = out.to_str().unwrap();
    let good = write(dir.path(), "good.csv", "a,b\n1,2\n3,4\n");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--input".into(), "/nonexistent/in.csv".into()], "/nonexistent/in.csv"),
        (vec!["--input".into(), write(dir.path(), "empty.csv", "")], "empty.csv: is empty"),
        (vec!["--input".into(), write(dir.path(), "text.csv", "a,b\n1,x\n")], "text.csv:2: column 'b'"),
        (vec!["--input".into(), write(dir.path(), "ragged.csv", "a,b\n1,2\n3\n")], "ragged.csv:3: row has 1 fields"),
        (vec!["--input".into(), good.clone(), "--sample-size".into(), "0".into()], "sample-size"),
        (vec!["--input".into(), good.clone(), "--trees".into(), "0".into()], "trees"),
        (vec!["--input".into(), good.clone(), "--contamination".into(), "2".into()], "contamination"),
        (vec!["--input".into(), good.clone(), "--label-column".into(), "y".into()], "no label column 'y'"),
        // The scores would replace the data.
        (vec!["--input".into(), good.clone(), "--output".into(), good.clone()], "is the input file"),
        (
            vec!["--input".into(), good.clone(), "--output".into(), format!("{}/./good.csv", dir.path().display())],
            "is the input file",
        ),
        (vec!["--input".into(), good.clone(), "--output".into(), "scores.parquet".into()], "written as CSV"),
    ];
    for (mut args, expected) in cases {
        if !args.iter().any(|a| a == "--output") {
            args.extend(["--output".to_owned(), out.to_owned()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = run_score(&refs);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    }
    assert_eq!(std::fs::read_to_string(&good).unwrap(), "a,b\n1,2\n3,4\n", "the input is untouched");
}
