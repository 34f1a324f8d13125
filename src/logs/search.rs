//! Finding a time window in log files without reading them from the start.
//!
//! A log file is written in time order, so the first line at or after a moment can be found by
//! binary search over byte offsets: probe the middle, skip to the next line start, read that
//! line's timestamp, halve. About 20 probes of a few KiB each find a window in a 1 GiB file; then
//! only the window is read, line by line. Memory is a read buffer and the longest line
//! ([`MAX_LINE_BYTES`]), whatever the size of the file.
//!
//! Threads log slightly out of order, so the search starts [`ORDER_SLACK_MS`] early and reading
//! stops only once a line is that far past the end; the caller filters by exact time.
//!
//! Gzip-rotated files cannot be searched (no random access into a deflate stream): they are
//! streamed from the start, and skipped without opening when their modification time (the
//! moment of their last line) is before the range.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::parse::{ParsedLine, line_timestamp_ms, parse_line};
use super::record::LogRecord;

/// Lines longer than this are skipped and counted, so one runaway line cannot take the memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How far out of time order lines may be written (threads racing to the appender).
pub const ORDER_SLACK_MS: i64 = 30_000;

/// Once the binary search has narrowed the range to this many bytes it reads on from there.
const LINEAR_SCAN_BYTES: u64 = 16 * 1024;

/// A probe gives up finding a timestamped line after this many bytes (then it counts as "past
/// the end", which at worst makes the search read more).
const PROBE_LIMIT_BYTES: u64 = 4 * MAX_LINE_BYTES as u64;

/// What reading one file cost and found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Bytes of log text read (decompressed, for gzip files), probes included.
    pub bytes_read: u64,
    /// Lines read in the scanned range.
    pub lines_read: u64,
    /// Lines skipped as corrupt, truncated, too long, or continuation lines with nothing to
    /// continue.
    pub lines_skipped: u64,
}

/// Reads the records of `path` with timestamps in `[from_ms, to_ms)` (give or take the order
/// slack: the caller filters exactly) and hands each to `visit`. Text lines without a timestamp
/// (a plain-text stack trace) are appended to the record before them.
pub fn scan_file(path: &Path, from_ms: i64, to_ms: i64, visit: &mut dyn FnMut(LogRecord)) -> io::Result<ScanStats> {
    let mut stats = ScanStats::default();
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    let gzip = path.extension().is_some_and(|extension| extension == "gz");
    if gzip {
        let modified_ms = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_millis() as i64);
        if modified_ms.is_some_and(|modified| modified < from_ms - ORDER_SLACK_MS) {
            return Ok(stats);
        }
        let reader = BufReader::with_capacity(64 * 1024, flate2::read::MultiGzDecoder::new(file));
        read_lines(reader, from_ms, to_ms, &mut stats, visit)?;
        return Ok(stats);
    }
    let start = first_offset_at_or_after(&mut file, metadata.len(), from_ms - ORDER_SLACK_MS, &mut stats)?;
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    if start > 0 {
        // `start` may fall inside a line: its rest belongs to a line before the range.
        let mut partial = Vec::new();
        stats.bytes_read += skip_line(&mut reader, &mut partial)? as u64;
    }
    read_lines(reader, from_ms, to_ms, &mut stats, visit)?;
    Ok(stats)
}

/// Reads to the end of the current line, keeping at most `MAX_LINE_BYTES` of it in `buffer`;
/// returns the bytes consumed.
fn skip_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> io::Result<usize> {
    buffer.clear();
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buffer.len());
        buffer.extend_from_slice(&available[..used.min(room)]);
        reader.consume(used);
        consumed += used;
        if done {
            return Ok(consumed);
        }
    }
}

/// The offset to read from: at or before the first line with a timestamp at or after
/// `target_ms`, and at most [`LINEAR_SCAN_BYTES`] (plus one line) before it.
fn first_offset_at_or_after(file: &mut File, len: u64, target_ms: i64, stats: &mut ScanStats) -> io::Result<u64> {
    let (mut low, mut high) = (0u64, len);
    // Invariant: the first timestamped line starting after `low` is before the target (or `low`
    // is 0), and the one after `high` is at or past it (or `high` is the end).
    while high - low > LINEAR_SCAN_BYTES {
        let middle = low + (high - low) / 2;
        match probe(file, middle, stats)? {
            Some(timestamp) if timestamp < target_ms => low = middle,
            _ => high = middle,
        }
    }
    Ok(low)
}

/// The timestamp of the first timestamped line starting after `offset`.
fn probe(file: &mut File, offset: u64, stats: &mut ScanStats) -> io::Result<Option<i64>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(8 * 1024, Read::by_ref(file).take(PROBE_LIMIT_BYTES));
    let mut line = Vec::new();
    if offset > 0 {
        stats.bytes_read += skip_line(&mut reader, &mut line)? as u64;
    }
    loop {
        let consumed = skip_line(&mut reader, &mut line)?;
        stats.bytes_read += consumed as u64;
        if consumed == 0 {
            return Ok(None);
        }
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(timestamp) = line_timestamp_ms(bytes) {
            return Ok(Some(timestamp));
        }
    }
}

fn read_lines(
    mut reader: impl BufRead,
    from_ms: i64,
    to_ms: i64,
    stats: &mut ScanStats,
    visit: &mut dyn FnMut(LogRecord),
) -> io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    // The last timed record, held back so continuation lines can be appended to it.
    let mut pending: Option<LogRecord> = None;
    let mut flush = |pending: &mut Option<LogRecord>| {
        if let Some(record) = pending.take()
            && record.timestamp_ms.is_some_and(|t| t >= from_ms && t < to_ms)
        {
            visit(record);
        }
    };
    loop {
        let consumed = skip_line(&mut reader, &mut line)?;
        if consumed == 0 {
            break;
        }
        stats.bytes_read += consumed as u64;
        stats.lines_read += 1;
        if consumed > MAX_LINE_BYTES {
            stats.lines_skipped += 1;
            continue;
        }
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        match parse_line(bytes) {
            ParsedLine::Blank => {}
            ParsedLine::Corrupt => stats.lines_skipped += 1,
            ParsedLine::Record(record) => match record.timestamp_ms {
                Some(timestamp) => {
                    flush(&mut pending);
                    if timestamp >= to_ms + ORDER_SLACK_MS {
                        return Ok(());
                    }
                    pending = Some(record);
                }
                None => match pending.as_mut() {
                    Some(previous) => {
                        let trace = previous.stack_trace.get_or_insert_with(String::new);
                        if trace.len() < MAX_LINE_BYTES {
                            trace.push_str(&record.message);
                            trace.push('\n');
                        }
                    }
                    None => stats.lines_skipped += 1,
                },
            },
        }
    }
    flush(&mut pending);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::logs::record::format_rfc3339_ms;

    const T0: i64 = 1_790_000_000_000;

    fn line(ms: i64, message: &str) -> String {
        format!(
            "{{\"@timestamp\":\"{}\",\"@version\":\"1\",\"message\":\"{message}\",\"logger_name\":\"a.B\",\"thread_name\":\"main\",\"level\":\"INFO\",\"level_value\":20000}}\n",
            format_rfc3339_ms(ms)
        )
    }

    /// One line a second for `seconds` seconds.
    fn write_file(path: &Path, seconds: i64) {
        let mut file = std::io::BufWriter::new(File::create(path).unwrap());
        for s in 0..seconds {
            file.write_all(line(T0 + s * 1000, &format!("tick {s}")).as_bytes()).unwrap();
        }
    }

    fn collect(path: &Path, from: i64, to: i64) -> (Vec<LogRecord>, ScanStats) {
        let mut records = Vec::new();
        let stats = scan_file(path, from, to, &mut |r| records.push(r)).unwrap();
        (records, stats)
    }

    #[test]
    fn window_in_the_middle_reads_only_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write_file(&path, 20_000);
        let file_len = std::fs::metadata(&path).unwrap().len();
        let (records, stats) = collect(&path, T0 + 10_000_000, T0 + 10_060_000);
        assert_eq!(records.len(), 60);
        assert_eq!(records[0].message, "tick 10000");
        assert_eq!(records[59].message, "tick 10059");
        // The window plus both slacks and the probes: a small share of the file.
        assert!(stats.bytes_read < file_len / 20, "{stats:?} of {file_len}");
    }

    #[test]
    fn windows_before_after_and_at_the_edges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write_file(&path, 1000);
        assert_eq!(collect(&path, T0 - 60_000, T0 + 5_000).0.len(), 5);
        assert_eq!(collect(&path, T0 + 995_000, T0 + 2_000_000).0.len(), 5);
        assert!(collect(&path, T0 + 5_000_000, T0 + 6_000_000).0.is_empty());
        assert!(collect(&path, T0 - 6_000_000, T0 - 5_000_000).0.is_empty());
        assert_eq!(collect(&path, T0, T0 + 1_000_000).0.len(), 1000);
    }

    #[test]
    fn corrupt_and_truncated_lines_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut text = String::new();
        text += &line(T0, "one");
        text += "{\"@timestamp\":\"2026-09-22T\n";
        text += &line(T0 + 1000, "two");
        text += "\tat orphan.continuation(A.java:1)\n";
        text += &line(T0 + 2000, "three")[..40];
        std::fs::write(&path, text).unwrap();
        let (records, stats) = collect(&path, T0 - 1000, T0 + 10_000);
        let messages: Vec<_> = records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(messages, ["one", "two"]);
        // The continuation joins "two"; the bad JSON and the truncated last line are skipped.
        assert_eq!(stats.lines_skipped, 2);
        assert!(records[1].stack_trace.as_deref().unwrap().contains("orphan.continuation"));
    }

    #[test]
    fn gzip_rotated_files_are_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.2026-11-24.0.log.gz");
        let mut encoder = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        for s in 0..100 {
            encoder.write_all(line(T0 + s * 1000, &format!("tick {s}")).as_bytes()).unwrap();
        }
        encoder.finish().unwrap();
        // Its modification time is now, after the window: it is read.
        let (records, _) = collect(&path, T0 + 10_000, T0 + 20_000);
        assert_eq!(records.len(), 10);
    }

    #[test]
    fn text_logs_with_stack_traces_are_searched_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut text = String::new();
        for s in 0..3000 {
            text += &format!(
                "{} ERROR 1 --- [main] a.B : failed {s}\n\tat a.B(B.java:1)\n",
                format_rfc3339_ms(T0 + s * 1000)
            );
        }
        std::fs::write(&path, text).unwrap();
        let (records, _) = collect(&path, T0 + 2_000_000, T0 + 2_003_000);
        assert_eq!(records.len(), 3);
        assert!(records[0].message.ends_with("failed 2000"));
        assert_eq!(records[0].stack_trace.as_deref(), Some("\tat a.B(B.java:1)\n"));
    }
}
