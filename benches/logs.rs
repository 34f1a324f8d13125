//! The `/logs` query on big files: a 6-minute window in a 1 GiB log, and whether the cost
//! depends on the file's size.
//!
//! `cargo bench --bench logs [-- SIZE_MIB ...]` (default `64 1024`; 4 MiB as a smoke run under
//! `cargo test --all-targets`) writes, for each size, a
//! logstash-format file of that size in a temporary directory (about 25 lines a second of
//! ordinary chatter, slow-query warnings and the odd exception with its stack trace, so 1 GiB
//! spans about two days), then runs `LogIndex::correlate` on a 6-minute window in the middle of
//! the file (plus its 24-minute baseline) several times and prints the median and extremes of
//! the wall time, the CPU time per run (all threads: the query reads on two), the
//! bytes and lines read, and the process's peak RSS. The files are deleted afterwards. Runs are
//! with a warm page cache (the file was just written), which is how a recently written log is
//! read.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anomaly_exporter::logs::record::format_rfc3339_ms;
use anomaly_exporter::logs::{LogIndex, LogQuery, LogsConfig};

const START_MS: i64 = 1_790_000_000_000;
/// 25 lines a second on average.
const LINE_INTERVAL_MS: i64 = 40;
const RUNS: usize = 9;

/// Writes about `bytes` of log; returns the time span written, in ms.
fn write_log(path: &Path, bytes: u64) -> i64 {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create the log file"));
    let (mut written, mut i) = (0u64, 0i64);
    let mut line = String::with_capacity(2048);
    while written < bytes {
        let ms = START_MS + i * LINE_INTERVAL_MS;
        let timestamp = format_rfc3339_ms(ms);
        let trace = format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
        line.clear();
        let (level, logger, message, stack) = match i % 1000 {
            0 => (
                "ERROR",
                "org.apache.catalina.core.ContainerBase.[Tomcat].[localhost].[/].[dispatcherServlet]",
                format!("Request processing failed for order {} with root cause", i % 97_531),
                Some(
                    "java.net.SocketTimeoutException: Read timed out\\n\\tat shop.PaymentClient.charge(PaymentClient.java:42)\\n\\tat shop.OrderService.create(OrderService.java:87)\\n\\tat java.base/java.lang.Thread.run(Thread.java:1583)\\n",
                ),
            ),
            1..=20 => (
                "WARN",
                "org.hibernate.SQL_SLOW",
                format!(
                    "Slow query took {} milliseconds [select o1_0.id from orders o1_0 where o1_0.customer_id=?]",
                    800 + i % 700
                ),
                None,
            ),
            n if n % 3 == 0 => (
                "INFO",
                "shop.web.OrderController",
                format!("Fetched order {} for customer {} in {} ms", i % 100_003, i % 9_973, i % 250),
                None,
            ),
            n if n % 3 == 1 => (
                "INFO",
                "shop.web.OrderController",
                format!("Listed {} orders for customer {} (page {}, size 20)", i % 21, i % 9_973, i % 12),
                None,
            ),
            _ => (
                "INFO",
                "shop.outbox.OutboxRelay",
                format!("Published {} outbox events in {} ms", i % 40, i % 60),
                None,
            ),
        };
        line.push_str(&format!(
            "{{\"@timestamp\":\"{timestamp}\",\"@version\":\"1\",\"message\":\"{message}\",\"logger_name\":\"{logger}\",\"thread_name\":\"http-nio-8080-exec-{}\",\"level\":\"{level}\",\"level_value\":20000,\"traceId\":\"{trace}\",\"spanId\":\"{}\"",
            i % 10 + 1,
            &trace[..16]
        ));
        if let Some(stack) = stack {
            line.push_str(&format!(",\"stack_trace\":\"{stack}\""));
        }
        line.push_str("}\n");
        out.write_all(line.as_bytes()).expect("write the log file");
        written += line.len() as u64;
        i += 1;
    }
    out.flush().expect("flush the log file");
    // On disk before the queries, so the kernel's writeback of a gigabyte does not compete with
    // them for the two cores (the pages stay cached).
    out.get_ref().sync_all().expect("sync the log file");
    i * LINE_INTERVAL_MS
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// CPU time of the whole process, every thread's, the ones that ended included (user + system,
/// from `/proc/self/stat`, in the kernel's 10 ms ticks), so a figure taken on a shared, loaded
/// machine still says what the query costs. The query reads on two threads: the calling
/// thread's time alone would hide half of it. Ticks are coarse, so the table divides the time of
/// all runs by their number.
fn process_cpu_time() -> Duration {
    /// `USER_HZ`, the unit of `/proc` CPU times on Linux.
    const TICKS_PER_SECOND: u64 = 100;
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces) start at `state`, field 3;
            // utime and stime are fields 14 and 15.
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
            let user: u64 = fields.next()?.parse().ok()?;
            let system: u64 = fields.next()?.parse().ok()?;
            Some(user + system)
        })
        .map_or(Duration::ZERO, |ticks| Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

fn main() {
    let sizes_mib: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it: then
    // a 4 MiB smoke run checks the benchmark works, without writing a gigabyte in the test suite.
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes_mib = match (measuring, sizes_mib.is_empty()) {
        (false, _) => vec![4],
        (true, true) => vec![64, 1024],
        (true, false) => sizes_mib,
    };
    println!(
        "{:>9} {:>7} {:>12} {:>10} {:>8} {:>8} {:>11} {:>11} {:>10} {:>12}",
        "file_MiB",
        "span_h",
        "window_lines",
        "median_ms",
        "min_ms",
        "max_ms",
        "cpu_mean_ms",
        "bytes_read",
        "lines_read",
        "peak_rss_MiB"
    );
    let mut profile_path = None;
    for size_mib in sizes_mib {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("app.log");
        let span_ms = write_log(&path, size_mib << 20);
        let config = LogsConfig {
            services: [("orders".to_owned(), vec![path.display().to_string()])].into(),
            ..LogsConfig::default()
        };
        let index = LogIndex::new(&config).expect("valid config");
        let middle = START_MS + span_ms / 2;
        let query = LogQuery {
            from_ms: middle,
            to_ms: middle + 360_000,
            ..LogQuery::around("orders", middle, index.settings())
        };
        let mut times = Vec::with_capacity(RUNS);
        let mut last = None;
        let cpu_started = process_cpu_time();
        for _ in 0..RUNS {
            let started = Instant::now();
            let answer = index.correlate(&query).expect("query");
            times.push(started.elapsed());
            assert!(answer.problems.is_empty(), "{:?}", answer.problems);
            last = Some(answer);
        }
        let cpu_per_run = process_cpu_time().saturating_sub(cpu_started) / RUNS as u32;
        times.sort();
        let answer = last.expect("at least one run");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:>9} {:>7.1} {:>12} {:>10.2} {:>8.2} {:>8.2} {:>11.2} {:>11} {:>10} {:>12.1}",
            size_mib,
            span_ms as f64 / 3_600_000.0,
            answer.lines_in_window,
            ms(times[RUNS / 2]),
            ms(times[0]),
            ms(times[RUNS - 1]),
            ms(cpu_per_run),
            answer.bytes_read,
            answer.lines_read,
            peak_rss_bytes() as f64 / (1 << 20) as f64,
        );
        // The top template must be the exception (1 in 1000 lines): the ranking did its work.
        println!("          top template: {} ({:?})", answer.templates[0].template, answer.templates[0].reason);
        profile_path = Some((dir, answer.lines_read as usize));
    }
    // After the table, so reading lines back does not count in its peak RSS.
    if let Some((dir, lines)) = profile_path {
        profile_stages(&dir.path().join("app.log"), lines);
    }
}

/// Where a query's time goes: parsing and templating alone, on as many lines as it read.
fn profile_stages(path: &Path, lines: usize) {
    use anomaly_exporter::logs::parse::{ParsedLine, parse_line};
    use anomaly_exporter::logs::template::template_of;
    use std::io::BufRead;
    let reader = std::io::BufReader::new(std::fs::File::open(path).expect("open the log"));
    let sample: Vec<Vec<u8>> = reader.split(b'\n').take(lines).map(|line| line.expect("read the log")).collect();
    let started = Instant::now();
    let records: Vec<_> = sample
        .iter()
        .filter_map(|line| match parse_line(line) {
            ParsedLine::Record(record) => Some(record),
            _ => None,
        })
        .collect();
    let parsing = started.elapsed();
    let started = Instant::now();
    let templates: usize = records.iter().map(|r| template_of(&r.message).len()).sum();
    let templating = started.elapsed();
    println!(
        "          of which, for {} lines: parsing {:.1} ms, templating {:.1} ms ({templates} bytes of templates)",
        records.len(),
        parsing.as_secs_f64() * 1000.0,
        templating.as_secs_f64() * 1000.0
    );
}
