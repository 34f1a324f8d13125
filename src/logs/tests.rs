//! `LogIndex::correlate` run for real on files in a temporary directory.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::*;
use crate::logs::record::format_rfc3339_ms;

const T0: i64 = 1_790_000_000_000;
const MINUTE: i64 = 60_000;

fn logstash(ms: i64, level: &str, logger: &str, message: &str, stack: Option<&str>) -> String {
    let mut object = serde_json::json!({
        "@timestamp": format_rfc3339_ms(ms), "@version": "1", "message": message, "logger_name": logger,
        "thread_name": "http-nio-8080-exec-1", "level": level, "level_value": 20000,
    });
    if let Some(stack) = stack {
        object["stack_trace"] = stack.into();
    }
    format!("{object}\n")
}

/// 30 minutes of chatter at 1 line/s; from T0+25m a burst of a new exception every 2 s.
fn write_service_log(path: &Path) {
    let mut text = String::new();
    for s in 0..1800 {
        let ms = T0 + s * 1000;
        text += &logstash(ms, "INFO", "shop.web.OrderController", &format!("Fetched order {s} in {} ms", s % 40), None);
        if s % 120 == 0 {
            text += &logstash(
                ms,
                "WARN",
                "org.hibernate.SQL_SLOW",
                &format!("Slow query took {} milliseconds", 900 + s),
                None,
            );
        }
        if s >= 1500 && s % 2 == 0 {
            let stack = "java.net.SocketTimeoutException: Read timed out\n\tat shop.PaymentClient.charge(PaymentClient.java:42)\n";
            text += &logstash(
                ms,
                "ERROR",
                "shop.web.OrderController",
                &format!("Payment for order {s} failed"),
                Some(stack),
            );
        }
    }
    std::fs::write(path, text).unwrap();
}

fn index_for(dir: &Path) -> LogIndex {
    let mut services = std::collections::BTreeMap::new();
    services.insert(
        "orders".to_owned(),
        vec![format!("{}/app.log*", dir.display()), format!("{}/missing.log", dir.display())],
    );
    LogIndex::new(&LogsConfig { services, ..LogsConfig::default() }).unwrap()
}

#[test]
fn the_new_exception_ranks_first_with_its_counts_and_lines_lead() {
    let dir = tempfile::tempdir().unwrap();
    write_service_log(&dir.path().join("app.log"));
    let index = index_for(dir.path());
    let query = LogQuery::around("orders", T0 + 26 * MINUTE, index.settings());
    let answer = index.correlate(&query).unwrap();
    let top = &answer.templates[0];
    assert_eq!(top.template, "Payment for order <n> failed");
    assert_eq!(top.reason, RankReason::NewError);
    assert_eq!(top.error_type.as_deref(), Some("java.net.SocketTimeoutException"));
    // The window is T0+21m..T0+27m: the burst runs from T0+25m, one line every 2 s.
    assert_eq!(top.count, 60);
    assert_eq!(top.baseline_count, 0);
    let chatter = answer.templates.iter().find(|t| t.template.starts_with("Fetched order")).unwrap();
    assert_eq!(chatter.reason, RankReason::Steady);
    assert_eq!(chatter.count, 360);
    assert_eq!(chatter.baseline_count, 1260); // the logs start 21 minutes before the window
    assert!(answer.lines.iter().take(60).all(|line| line.template_rank == 0));
    assert_eq!(answer.lines.len(), 200);
    // The missing literal file is named, and the rest was still read.
    assert_eq!(answer.problems.len(), 1);
    assert!(answer.problems[0].path.ends_with("missing.log"));
    assert_eq!(answer.files.len(), 1);
    assert_eq!(answer.lines_skipped, 0);
}

#[test]
fn filters_limit_and_time_order_apply() {
    let dir = tempfile::tempdir().unwrap();
    write_service_log(&dir.path().join("app.log"));
    let index = index_for(dir.path());
    let mut query = LogQuery::around("orders", T0 + 26 * MINUTE, index.settings());
    query.min_level = Some(Level::Warn);
    query.limit = 10;
    query.order = LineOrder::Time;
    let answer = index.correlate(&query).unwrap();
    assert!(answer.lines.iter().all(|l| l.record.level >= Some(Level::Warn)));
    assert_eq!(answer.lines.len(), 10);
    assert!(answer.lines.windows(2).all(|w| w[0].record.timestamp_ms <= w[1].record.timestamp_ms));
    query.contains = Some("READ TIMED".into());
    query.min_level = None;
    let answer = index.correlate(&query).unwrap();
    assert_eq!(answer.templates.len(), 1);
    assert_eq!(answer.lines_in_window, 60);
}

#[test]
fn corrupt_lines_and_rotated_files_are_handled_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = String::new();
    let mut live = String::new();
    for s in 0..600 {
        let line = logstash(T0 + s * 1000, "INFO", "a.B", &format!("tick {s}"), None);
        if s < 300 { old += &line } else { live += &line }
    }
    live += "{\"@timestamp\":\"garbage\n";
    let mut ecs = String::new();
    writeln!(
        ecs,
        "{{\"@timestamp\":\"{}\",\"log.level\":\"ERROR\",\"log.logger\":\"a.C\",\"message\":\"disk full\",\"ecs.version\":\"8.11\"}}",
        format_rfc3339_ms(T0 + 590_000)
    )
    .unwrap();
    live += &ecs;
    std::fs::write(dir.path().join("app.log.1"), old).unwrap();
    std::fs::write(dir.path().join("app.log"), live).unwrap();
    let index = index_for(dir.path());
    let query =
        LogQuery { from_ms: T0 + 240_000, to_ms: T0 + 600_000, ..LogQuery::around("orders", T0, index.settings()) };
    let answer = index.correlate(&query).unwrap();
    assert_eq!(answer.files.len(), 2);
    assert_eq!(answer.lines_skipped, 1);
    assert_eq!(answer.lines_in_window, 361);
    assert_eq!(answer.templates[0].template, "disk full");
    assert_eq!(answer.templates[0].example.format, LineFormat::EcsFlat);
}

#[test]
fn unknown_service_empty_and_too_wide_windows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_for(dir.path());
    let query = LogQuery::around("nope", T0, index.settings());
    assert_eq!(index.correlate(&query).unwrap_err(), LogsError::UnknownService("nope".into()));
    let empty = LogQuery { to_ms: T0 - 400_000, ..LogQuery::around("orders", T0, index.settings()) };
    assert!(matches!(index.correlate(&empty), Err(LogsError::InvalidParameter { parameter: "from", .. })));
    let wide = LogQuery { from_ms: T0 - 25 * 3_600_000, ..LogQuery::around("orders", T0, index.settings()) };
    assert!(matches!(index.correlate(&wide), Err(LogsError::WindowTooWide { max_seconds: 86_400, .. })));
}

/// The answer without what a run's timing and the split's extra reading change.
fn comparable(mut answer: Correlation) -> Correlation {
    answer.duration_seconds = 0.0;
    answer.bytes_read = 0;
    answer
}

#[test]
fn reading_on_two_threads_gives_the_answer_of_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    write_service_log(&dir.path().join("app.log"));
    // A rotated text log with stack traces, in the same window, read after the live file.
    let mut text = String::new();
    for s in 0..1800 {
        let at = format_rfc3339_ms(T0 + s * 1000 + 500);
        if s % 7 == 0 {
            text += &format!(
                "{at} ERROR 1 --- [main] a.B : call {s} failed\njava.io.IOException: reset\n\tat a.B(B.java:1)\n"
            );
        } else {
            text += &format!("{at}  INFO 1 --- [main] a.B : served {s}\n");
        }
    }
    std::fs::write(dir.path().join("app.log.1"), text).unwrap();
    let mut index = index_for(dir.path());
    let queries = {
        let around = LogQuery::around("orders", T0 + 26 * MINUTE, index.settings());
        let early = LogQuery::around("orders", T0 + 3 * MINUTE, index.settings());
        let everything = LogQuery { limit: 5000, order: LineOrder::Time, ..around.clone() };
        let errors = LogQuery { min_level: Some(Level::Warn), contains: Some("failed".into()), ..around.clone() };
        [around, early, everything, errors]
    };
    for query in queries {
        index.split_min_bytes = u64::MAX;
        let one_pass = comparable(index.correlate(&query).unwrap());
        assert!(one_pass.lines_in_window > 50, "{query:?}");
        for split_min_bytes in [0, 4096] {
            index.split_min_bytes = split_min_bytes;
            assert_eq!(comparable(index.correlate(&query).unwrap()), one_pass, "{query:?}");
        }
        // With few lines held the same first ones are held, and the answer says it is truncated.
        index.settings.max_lines_held = 100;
        index.split_min_bytes = u64::MAX;
        let one_pass = comparable(index.correlate(&query).unwrap());
        index.split_min_bytes = 0;
        assert_eq!(comparable(index.correlate(&query).unwrap()), one_pass, "{query:?}");
        assert!(one_pass.truncated);
        index.settings.max_lines_held = LogsSettings::default().max_lines_held;
    }
}

/// `lines` logstash lines a second apart from T0, each `message_bytes` long or, cycling, a few
/// lengths around it.
fn write_long_lines(path: &Path, lines: i64, message_bytes: impl Fn(i64) -> usize) -> Vec<usize> {
    let mut text = String::new();
    let mut lengths = Vec::new();
    for s in 0..lines {
        let line = logstash(T0 + s * 1000, "ERROR", "a.B", &format!("dump {s} {}", "x".repeat(message_bytes(s))), None);
        lengths.push(line.len() - 1);
        text += &line;
    }
    std::fs::write(path, text).unwrap();
    lengths
}

#[test]
fn long_lines_past_max_bytes_held_truncate_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    // 12 lines of 200 kB (under the 1 MiB line limit): 2.4 MB, while 1 MiB may be held.
    let lengths = write_long_lines(&dir.path().join("app.log"), 12, |_| 200_000);
    let mut index = index_for(dir.path());
    index.settings.max_bytes_held = 1 << 20;
    let query = LogQuery { from_ms: T0, to_ms: T0 + 60_000, ..LogQuery::around("orders", T0, index.settings()) };
    let answer = index.correlate(&query).unwrap();
    assert_eq!(answer.lines_in_window, 12, "every line is counted");
    assert_eq!(answer.templates.iter().map(|template| template.count).sum::<u64>(), 12);
    assert!(answer.truncated, "the answer says lines were left out");
    // The first five fit in 1 MiB (1 000 500 bytes), the sixth would not.
    assert_eq!(answer.lines.len(), 5);
    assert!(lengths[..5].iter().sum::<usize>() <= 1 << 20 && lengths[..6].iter().sum::<usize>() > 1 << 20);
    let mut shown: Vec<_> = answer.lines.iter().map(|line| line.record.timestamp_ms.unwrap()).collect();
    shown.sort_unstable();
    assert_eq!(shown, (0..5).map(|s| T0 + s * 1000).collect::<Vec<_>>(), "the first lines are held");
    // The lines limit alone would have held them all.
    assert!(index.settings.max_lines_held > 12);
}

#[test]
fn a_text_record_with_a_long_stack_trace_counts_its_trace_against_max_bytes_held() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let frame = format!("\tat shop.Deep{}(Deep.java:1)\n", "x".repeat(1000));
    for s in 0..4 {
        // A text line and 300 continuation lines: one record of about 300 kB, no one line long.
        text += &format!("{} ERROR 1 --- [main] a.B : failed {s}\n", format_rfc3339_ms(T0 + s * 1000));
        text += &frame.repeat(300);
    }
    std::fs::write(dir.path().join("app.log"), text).unwrap();
    let mut index = index_for(dir.path());
    index.settings.max_bytes_held = 700_000;
    let query = LogQuery { from_ms: T0, to_ms: T0 + 60_000, ..LogQuery::around("orders", T0, index.settings()) };
    let answer = index.correlate(&query).unwrap();
    assert_eq!(answer.lines_in_window, 4);
    assert!(answer.truncated);
    assert_eq!(answer.lines.len(), 2);
    assert!(answer.lines[0].record.stack_trace.as_ref().unwrap().len() > 250_000);
}

#[test]
fn reading_on_two_threads_holds_within_max_bytes_held_as_one_pass_does() {
    let dir = tempfile::tempdir().unwrap();
    // Lines of uneven lengths, so a budget that stops one pass at a line may fit a later, shorter
    // one: the held lines must still be the window's first ones.
    let lengths = write_long_lines(&dir.path().join("app.log"), 600, |s| [3000, 200, 1500, 50, 2500][s as usize % 5]);
    let total: usize = lengths.iter().sum();
    let mut index = index_for(dir.path());
    let query = LogQuery {
        from_ms: T0,
        to_ms: T0 + 600_000,
        limit: 5000,
        order: LineOrder::Time,
        ..LogQuery::around("orders", T0, index.settings())
    };
    // Budgets that stop holding in the first half, at the cut, in the second half, and never.
    for budget in [total / 10, total * 3 / 10, total / 2, total * 7 / 10, total * 9 / 10, total] {
        index.settings.max_bytes_held = budget;
        index.split_min_bytes = u64::MAX;
        let one_pass = comparable(index.correlate(&query).unwrap());
        let held: usize = one_pass.lines.iter().map(|line| line.record.message.len()).sum();
        assert!(held <= budget, "budget {budget}: {held} bytes of messages held");
        assert_eq!(one_pass.truncated, budget < total, "budget {budget}");
        index.split_min_bytes = 0;
        let split = comparable(index.correlate(&query).unwrap());
        assert_eq!(split.lines.len(), one_pass.lines.len(), "budget {budget}");
        assert_eq!(split, one_pass, "budget {budget}");
    }
}

#[test]
fn examples_of_many_kinds_of_huge_lines_are_cut_and_the_answer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // 120 kinds of 100 kB lines (12 MB), and one short kind.
    let kinds = 120;
    let mut text = String::new();
    for s in 0..kinds {
        let word: String = format!("{s:x}").chars().map(|c| (b'g' + c.to_digit(16).unwrap() as u8) as char).collect();
        text += &logstash(T0 + s * 1000, "ERROR", "a.B", &format!("{word} {}", "x".repeat(100_000)), None);
    }
    text += &logstash(T0 + kinds * 1000, "INFO", "a.B", "short", None);
    std::fs::write(dir.path().join("app.log"), text).unwrap();
    let index = index_for(dir.path());
    let query = LogQuery { from_ms: T0, to_ms: T0 + 600_000, ..LogQuery::around("orders", T0, index.settings()) };
    let answer = index.correlate(&query).unwrap();
    assert_eq!(answer.template_count, kinds as usize + 1);
    assert_eq!(answer.templates.len(), MAX_TEMPLATES_SHOWN);
    for template in &answer.templates {
        let example = &template.example;
        assert!(example.text_bytes() <= rank::MAX_EXAMPLE_BYTES, "{} bytes", example.text_bytes());
        assert_eq!(template.example_truncated, example.message != "short", "{}", template.template);
    }
    // The JSON answer carries the flag beside the example.
    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(json["templates"][0]["example_truncated"], true);
    assert_eq!(json["templates"][0]["example"]["message"].as_str().unwrap().len(), rank::MAX_EXAMPLE_BYTES);
    let query = LogQuery { contains: Some("short".into()), ..query };
    let json = serde_json::to_value(index.correlate(&query).unwrap()).unwrap();
    assert_eq!(json["templates"][0]["example_truncated"], false);
}

/// `seconds` logstash lines, one a second from `T0 + first * 1000`, each `tick <second>`.
fn write_ticks(path: &Path, first: i64, seconds: i64) {
    let text: String =
        (first..first + seconds).map(|s| logstash(T0 + s * 1000, "INFO", "a.B", &format!("tick {s}"), None)).collect();
    std::fs::write(path, text).unwrap();
}

/// An index over `app.log*` in `dir` alone, and a query of everything from T0 on.
fn rotating_index(dir: &Path) -> (LogIndex, LogQuery) {
    let services = [("orders".to_owned(), vec![format!("{}/app.log*", dir.display())])].into();
    let index = LogIndex::new(&LogsConfig { services, ..LogsConfig::default() }).unwrap();
    let query = LogQuery {
        from_ms: T0,
        to_ms: T0 + 3_600_000,
        limit: 5000,
        order: LineOrder::Time,
        ..LogQuery::around("orders", T0, index.settings())
    };
    (index, query)
}

/// The seconds of the answer's lines, in time order.
fn seconds_read(answer: &Correlation) -> Vec<i64> {
    answer.lines.iter().map(|line| (line.record.timestamp_ms.unwrap() - T0) / 1000).collect()
}

fn file_names(answer: &Correlation) -> Vec<String> {
    answer.files.iter().map(|path| Path::new(path).file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_file_rotated_between_listing_and_opening_is_read_once_under_its_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.log");
    write_ticks(&live, 0, 300);
    let (index, query) = rotating_index(dir.path());
    let listing = files::list(&index.settings, "orders").unwrap();
    // The rotation: the live file renamed, a new one started at its name.
    std::fs::rename(&live, dir.path().join("app.log.1")).unwrap();
    write_ticks(&live, 300, 100);
    let answer = index.correlate_listed(&query, listing, Instant::now());
    assert_eq!(seconds_read(&answer), (0..400).collect::<Vec<_>>(), "every line once");
    assert_eq!(file_names(&answer), ["app.log", "app.log.1"]);
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
}

#[test]
fn a_file_renamed_before_it_was_opened_is_found_under_its_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.log");
    write_ticks(&live, 0, 300);
    let (index, query) = rotating_index(dir.path());
    let listing = files::list(&index.settings, "orders").unwrap();
    // Renamed, and no new file yet: the listed name is gone.
    std::fs::rename(&live, dir.path().join("app.log.1")).unwrap();
    let answer = index.correlate_listed(&query, listing, Instant::now());
    assert_eq!(seconds_read(&answer), (0..300).collect::<Vec<_>>());
    assert_eq!(file_names(&answer), ["app.log.1"]);
    assert!(answer.problems.is_empty(), "a rotated name is not a problem: {:?}", answer.problems);
}

#[test]
fn numbered_files_shifted_between_listing_and_opening_are_each_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let name = |n: usize| dir.path().join(if n == 0 { "app.log".to_owned() } else { format!("app.log.{n}") });
    write_ticks(&name(1), 0, 300);
    write_ticks(&name(0), 300, 300);
    let (index, query) = rotating_index(dir.path());
    let listing = files::list(&index.settings, "orders").unwrap();
    // Every name now stands for the file before it: opening the listed names would read the old
    // live file as `app.log.1` and never the oldest one.
    std::fs::rename(name(1), name(2)).unwrap();
    std::fs::rename(name(0), name(1)).unwrap();
    write_ticks(&name(0), 600, 100);
    let answer = index.correlate_listed(&query, listing, Instant::now());
    assert_eq!(seconds_read(&answer), (0..700).collect::<Vec<_>>(), "every line once");
    assert_eq!(file_names(&answer), ["app.log", "app.log.1", "app.log.2"]);
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
}

#[cfg(unix)]
#[test]
fn a_file_matched_under_two_names_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let dated = dir.path().join("app.log.2026-09-21");
    write_ticks(&dated, 0, 300);
    // A logger's "current" symlink, and a hard link, both matched by `app.log*`.
    std::os::unix::fs::symlink(&dated, dir.path().join("app.log")).unwrap();
    std::fs::hard_link(&dated, dir.path().join("app.log.copy")).unwrap();
    let (index, query) = rotating_index(dir.path());
    let answer = index.correlate(&query).unwrap();
    assert_eq!(seconds_read(&answer), (0..300).collect::<Vec<_>>(), "every line once");
    assert_eq!(file_names(&answer), ["app.log"], "the first name in path order");
}
