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
//! streamed from the start, and skipped without reading when their modification time (the
//! moment of their last line) is before the range.
//!
//! A file is opened once per scan ([`OpenLogFile`]) and read by position, never reopened by
//! path: the live file may be rotated (renamed, and a new one created at its path) while a scan
//! runs, and every part of the scan must read the file whose length it measured.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::files::FileId;
use super::parse::{ParsedView, RecordView, line_timestamp_ms, parse_view};
use super::record::{LineFormat, LogRecord};

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

impl ScanStats {
    /// Adds the cost of another read.
    pub fn add(&mut self, other: ScanStats) {
        self.bytes_read += other.bytes_read;
        self.lines_read += other.lines_read;
        self.lines_skipped += other.lines_skipped;
    }
}

/// Reads the records of `path` with timestamps in `[from_ms, to_ms)` and hands each to `visit`,
/// its text still borrowed from the line (keep it with [`RecordView::into_record`]). Text lines
/// without a timestamp (a plain-text stack trace) are appended to the text line before them;
/// after a JSON line they have nothing to continue and are counted as skipped.
pub fn scan_file(
    path: &Path,
    from_ms: i64,
    to_ms: i64,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> io::Result<ScanStats> {
    OpenLogFile::open(path)?.scan(from_ms, to_ms, visit)
}

/// A log file opened once, for one scan. Every read goes through this one handle by position
/// (`pread`), so:
/// - all of a scan reads the same file, even if its path is rotated meanwhile: reopening by
///   path could read the second half, or the length measured first, from the new file;
/// - the two threads of [`OpenLogFile::scan_in_two`] read at once without sharing a cursor (a
///   `File::try_clone` would share one, and a seek on one thread would move the other's read).
#[derive(Debug)]
pub struct OpenLogFile {
    file: File,
    /// Named `*.gz`: streamed through the decoder from the start.
    gzip: bool,
}

impl OpenLogFile {
    /// Opens `path`; a `.gz` name means gzip.
    pub fn open(path: &Path) -> io::Result<Self> {
        let gzip = path.extension().is_some_and(|extension| extension == "gz");
        Ok(OpenLogFile { file: File::open(path)?, gzip })
    }

    /// Which file this handle reads, whatever its name is now.
    pub(crate) fn id(&self) -> io::Result<Option<FileId>> {
        Ok(FileId::of(&self.file.metadata()?))
    }

    /// [`scan_file`] on this file.
    pub fn scan(&self, from_ms: i64, to_ms: i64, visit: &mut dyn FnMut(RecordView<'_>)) -> io::Result<ScanStats> {
        let mut stats = ScanStats::default();
        let metadata = self.file.metadata()?;
        if self.gzip {
            let modified_ms = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map(|since| since.as_millis() as i64);
            if modified_ms.is_some_and(|modified| modified < from_ms - ORDER_SLACK_MS) {
                return Ok(stats);
            }
            let decoder = flate2::read::MultiGzDecoder::new(ReadAt::new(&self.file, 0));
            read_lines(BufReader::with_capacity(64 * 1024, decoder), 0, None, from_ms, to_ms, &mut stats, visit)?;
            return Ok(stats);
        }
        let start = first_offset_at_or_after(&self.file, 0, metadata.len(), from_ms - ORDER_SLACK_MS, &mut stats)?;
        read_from(&self.file, start, None, from_ms, to_ms, &mut stats, visit)?;
        Ok(stats)
    }
}

/// A reader at an offset of a file shared by reference: each read is positional and leaves the
/// file's own cursor alone, so readers on several threads do not disturb one another.
struct ReadAt<'f> {
    file: &'f File,
    offset: u64,
}

impl<'f> ReadAt<'f> {
    fn new(file: &'f File, offset: u64) -> Self {
        ReadAt { file, offset }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = read_at(self.file, buffer, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buffer, offset)
}

/// Windows' positional read also moves the cursor, which no reader here relies on.
#[cfg(windows)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buffer, offset)
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
/// `target_ms`, and at most [`LINEAR_SCAN_BYTES`] (plus one line) before it. `low` is 0 or an
/// offset known to be before that line.
fn first_offset_at_or_after(file: &File, low: u64, len: u64, target_ms: i64, stats: &mut ScanStats) -> io::Result<u64> {
    let (mut low, mut high) = (low, len);
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
fn probe(file: &File, offset: u64, stats: &mut ScanStats) -> io::Result<Option<i64>> {
    let mut reader = BufReader::with_capacity(8 * 1024, ReadAt::new(file, offset).take(PROBE_LIMIT_BYTES));
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

/// Why [`read_lines`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// At the end of the file, or past the range.
    End,
    /// At the first timed record starting at or after the split, at this offset: the lines
    /// from there on are another reader's.
    AtSplit(u64),
}

/// True when `line` (with its newline; `consumed` bytes long before [`skip_line`] cut it) opens a
/// record of its own: a line with a timestamp. Such a line ends any text record before it, so the
/// lines before it and from it on can be read apart; blank, corrupt, overlong and untimed lines
/// can continue a text record and cannot.
fn opens_timed_record(line: &[u8], consumed: usize) -> bool {
    if consumed > MAX_LINE_BYTES {
        return false;
    }
    let bytes = line.strip_suffix(b"\n").unwrap_or(line);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    matches!(parse_view(&text), ParsedView::Record(view) if view.timestamp_ms.is_some())
}

/// Reads lines from `offset` (a line start) on. With a `split`, stops before the first timed
/// record starting at or after it, having read every line before it (the continuation lines of
/// its last text record included).
fn read_lines(
    mut reader: impl BufRead,
    mut offset: u64,
    split: Option<u64>,
    from_ms: i64,
    to_ms: i64,
    stats: &mut ScanStats,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> io::Result<Stop> {
    let in_range = |timestamp: Option<i64>| timestamp.is_some_and(|t| t >= from_ms && t < to_ms);
    let mut line = Vec::with_capacity(4096);
    // The last timed text record, held back so continuation lines can be appended to it.
    let mut pending: Option<LogRecord> = None;
    let flush = |pending: &mut Option<LogRecord>, visit: &mut dyn FnMut(RecordView<'_>)| {
        if let Some(record) = pending.take()
            && in_range(record.timestamp_ms)
        {
            visit(RecordView::of(&record));
        }
    };
    loop {
        let line_start = offset;
        let consumed = skip_line(&mut reader, &mut line)?;
        if consumed == 0 {
            break;
        }
        offset += consumed as u64;
        if consumed > MAX_LINE_BYTES {
            stats.bytes_read += consumed as u64;
            stats.lines_read += 1;
            stats.lines_skipped += 1;
            continue;
        }
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let text = String::from_utf8_lossy(bytes);
        let parsed = parse_view(&text);
        if let (Some(split), ParsedView::Record(view)) = (split, &parsed)
            && line_start >= split
            && view.timestamp_ms.is_some()
        {
            flush(&mut pending, visit);
            return Ok(Stop::AtSplit(line_start));
        }
        stats.bytes_read += consumed as u64;
        stats.lines_read += 1;
        match parsed {
            ParsedView::Blank => {}
            ParsedView::Corrupt => stats.lines_skipped += 1,
            ParsedView::Record(view) => match view.timestamp_ms {
                Some(timestamp) => {
                    flush(&mut pending, visit);
                    if timestamp >= to_ms + ORDER_SLACK_MS {
                        return Ok(Stop::End);
                    }
                    if view.format == LineFormat::Text {
                        pending = Some(view.into_record());
                    } else if in_range(Some(timestamp)) {
                        visit(view);
                    }
                }
                None => match pending.as_mut() {
                    Some(previous) => {
                        let trace = previous.stack_trace.get_or_insert_with(String::new);
                        if trace.len() < MAX_LINE_BYTES {
                            trace.push_str(&view.message);
                            trace.push('\n');
                        }
                    }
                    None => stats.lines_skipped += 1,
                },
            },
        }
    }
    flush(&mut pending, visit);
    Ok(Stop::End)
}

/// What reading a file in two halves cost, and whether the second half counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SplitScan {
    /// The first half's reading, the search included.
    pub first: ScanStats,
    /// The second half's reading.
    pub second: ScanStats,
    /// Where the second half began, when its lines belong to the answer. `None` when the file
    /// was read in one piece (too little to split, or gzip), or when the range ended in the first
    /// half: then the second visitor's lines must be dropped.
    pub second_from: Option<u64>,
}

impl OpenLogFile {
    /// [`OpenLogFile::scan`] on two threads: the range is cut in the middle at a line boundary,
    /// `first` visits the records before the cut (on this thread) and `second` those after it
    /// (on another), each in order, both reading this one handle. Handing `first`'s records and
    /// then `second`'s (when [`SplitScan::second_from`] says so) to one visitor is exactly what
    /// [`OpenLogFile::scan`] would hand it. Ranges shorter than `min_split_bytes`, and gzip
    /// files, are read in one piece by `first`.
    pub(crate) fn scan_in_two(
        &self,
        from_ms: i64,
        to_ms: i64,
        min_split_bytes: u64,
        first: &mut dyn FnMut(RecordView<'_>),
        second: &mut (dyn FnMut(RecordView<'_>) + Send),
    ) -> io::Result<SplitScan> {
        let mut scan = SplitScan::default();
        if self.gzip {
            scan.first = self.scan(from_ms, to_ms, first)?;
            return Ok(scan);
        }
        let file = &self.file;
        let len = file.metadata()?.len();
        let start = first_offset_at_or_after(file, 0, len, from_ms - ORDER_SLACK_MS, &mut scan.first)?;
        let end = first_offset_at_or_after(file, start, len, to_ms + ORDER_SLACK_MS, &mut scan.first)?;
        let split = (end - start >= min_split_bytes && end > start).then(|| start + (end - start) / 2);
        read_in_two(file, start, split, from_ms, to_ms, scan, first, second)
    }

    /// Reads from `offset`, a line start, to the end of the range, as [`OpenLogFile::scan`]
    /// reads from its search's result: the second half of a [`OpenLogFile::scan_in_two`] again.
    /// Not for gzip files, which are never split.
    pub(crate) fn scan_from(
        &self,
        offset: u64,
        from_ms: i64,
        to_ms: i64,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> io::Result<ScanStats> {
        debug_assert!(!self.gzip, "gzip files are read in one piece");
        let mut stats = ScanStats::default();
        let reader = BufReader::with_capacity(64 * 1024, ReadAt::new(&self.file, offset));
        read_lines(reader, offset, None, from_ms, to_ms, &mut stats, visit)?;
        Ok(stats)
    }
}

/// Reads from `start` on, cut at `split` (after `start`) when there is one.
#[allow(clippy::too_many_arguments)]
fn read_in_two(
    file: &File,
    start: u64,
    split: Option<u64>,
    from_ms: i64,
    to_ms: i64,
    mut scan: SplitScan,
    first: &mut dyn FnMut(RecordView<'_>),
    second: &mut (dyn FnMut(RecordView<'_>) + Send),
) -> io::Result<SplitScan> {
    std::thread::scope(|scope| {
        let second_half = split.map(|split| scope.spawn(move || read_second_half(file, split, from_ms, to_ms, second)));
        let stop = read_from(file, start, split, from_ms, to_ms, &mut scan.first, first);
        let second_half =
            second_half.map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        if let Stop::AtSplit(at) = stop? {
            let (from, stats) = second_half.expect("a split was made")?;
            debug_assert_eq!(from, Some(at), "both halves cut at the same line");
            scan.second = stats;
            scan.second_from = Some(at);
        }
        Ok(scan)
    })
}

/// Reads from `start` (which may fall inside a line, then part of an earlier one) to `split`.
fn read_from(
    file: &File,
    start: u64,
    split: Option<u64>,
    from_ms: i64,
    to_ms: i64,
    stats: &mut ScanStats,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> io::Result<Stop> {
    let mut reader = BufReader::with_capacity(64 * 1024, ReadAt::new(file, start));
    let mut offset = start;
    if start > 0 {
        // `start` may fall inside a line: its rest belongs to a line before the range.
        let skipped = skip_line(&mut reader, &mut Vec::new())? as u64;
        stats.bytes_read += skipped;
        offset += skipped;
    }
    read_lines(reader, offset, split, from_ms, to_ms, stats, visit)
}

/// The second half: from the first timed record starting at or after `split` (the first half
/// reads the lines before it) to the end of the range. Returns where it began (`None` when no
/// such record was found) and what it read.
fn read_second_half(
    file: &File,
    split: u64,
    from_ms: i64,
    to_ms: i64,
    visit: &mut (dyn FnMut(RecordView<'_>) + Send),
) -> io::Result<(Option<u64>, ScanStats)> {
    let mut stats = ScanStats::default();
    // The byte before `split` ends a line or is inside one: skipping to its line's end lands on
    // the first line starting at or after `split`.
    let mut reader = BufReader::with_capacity(64 * 1024, ReadAt::new(file, split - 1));
    let mut line = Vec::new();
    let mut offset = split - 1 + skip_line(&mut reader, &mut line)? as u64;
    stats.bytes_read += offset - (split - 1);
    loop {
        let consumed = skip_line(&mut reader, &mut line)?;
        if consumed == 0 {
            return Ok((None, stats));
        }
        stats.bytes_read += consumed as u64;
        if opens_timed_record(&line, consumed) {
            break;
        }
        offset += consumed as u64;
    }
    let reader = BufReader::with_capacity(64 * 1024, ReadAt::new(file, offset));
    read_lines(reader, offset, None, from_ms, to_ms, &mut stats, visit)?;
    Ok((Some(offset), stats))
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
        let stats = scan_file(path, from, to, &mut |view| records.push(view.into_record())).unwrap();
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
        // The bad JSON, the untimed line after a JSON line (a JSON line carries its own stack
        // trace) and the truncated last line are skipped.
        assert_eq!(stats.lines_skipped, 3);
        assert_eq!(records[1].stack_trace, None);
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

    /// Every record [`read_in_two`] hands to its two visitors, for a cut at `split`, in the order
    /// one reader would see them, and the lines read and skipped.
    fn collect_in_two(path: &Path, split: u64, from: i64, to: i64) -> (Vec<LogRecord>, u64, u64) {
        let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
        let scan = read_in_two(
            &File::open(path).unwrap(),
            0,
            Some(split),
            from,
            to,
            SplitScan::default(),
            &mut |view| firsts.push(view.into_record()),
            &mut |view| seconds.push(view.into_record()),
        )
        .unwrap();
        let mut stats = scan.first;
        if scan.second_from.is_some() {
            firsts.extend(seconds);
            stats.add(scan.second);
        }
        (firsts, stats.lines_read, stats.lines_skipped)
    }

    #[test]
    fn a_cut_at_any_byte_reads_what_one_pass_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        // Text records with continuation lines, JSON, blank, corrupt and orphan lines, CRLF.
        let mut text = String::new();
        for s in 0..12 {
            let at = format_rfc3339_ms(T0 + s * 1000);
            match s % 6 {
                0 => {
                    text +=
                        &format!("{at} ERROR 1 --- [main] a.B : failed {s}\n\tat a.B(B.java:1)\n\n\tat a.C(C.java:2)\n")
                }
                1 => text += &line(T0 + s * 1000, &format!("json {s}")),
                2 => text += &format!("{{\"@timestamp\":\"broken {s}\n\tat orphan.after.Json(A.java:1)\n"),
                3 => text += &format!("{at}  WARN 1 --- [main] a.B : slow {s}\r\n\tat a.B(B.java:1)\r\n"),
                4 => text += &format!("\n{at} INFO 1 --- [main] a.B : fine {s}\n"),
                _ => {
                    text += &format!(
                        "{at} INFO 1 --- [main] a.B : tail {s}\n{{\"@timestamp\":\"x\n\tat after.Corrupt(A.java:1)\n"
                    )
                }
            }
        }
        std::fs::write(&path, &text).unwrap();
        for (from, to) in [(T0 - 1000, T0 + 60_000), (T0 + 3000, T0 + 8000)] {
            let (expected, stats) = collect(&path, from, to);
            assert!(expected.len() >= 5, "{expected:?}");
            for split in 1..=text.len() as u64 + 1 {
                let (records, lines_read, lines_skipped) = collect_in_two(&path, split, from, to);
                assert_eq!(records, expected, "cut at byte {split}");
                assert_eq!((lines_read, lines_skipped), (stats.lines_read, stats.lines_skipped), "cut at byte {split}");
            }
        }
    }

    /// Rotates `path` as logback does: renames it to `<path>.1` and creates a new file at the path,
    /// with lines at the same times but other messages and lengths.
    fn rotate(path: &Path, seconds: i64) {
        std::fs::rename(path, path.with_extension("log.1")).unwrap();
        let mut file = std::io::BufWriter::new(File::create(path).unwrap());
        for s in 0..seconds {
            file.write_all(line(T0 + s * 1000, &format!("after the rotation, tick {s}")).as_bytes()).unwrap();
        }
    }

    #[test]
    fn both_halves_read_the_file_opened_first_when_it_is_rotated_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write_file(&path, 2000);
        let (from, to) = (T0 + 500_000, T0 + 1_500_000);
        let (expected, _) = collect(&path, from, to);
        let file = OpenLogFile::open(&path).unwrap();
        rotate(&path, 3000);
        let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
        let scan = file
            .scan_in_two(from, to, 0, &mut |view| firsts.push(view.into_record()), &mut |view| {
                seconds.push(view.into_record())
            })
            .unwrap();
        let second_from = scan.second_from.expect("read in two halves");
        assert!(!seconds.is_empty());
        firsts.extend(seconds);
        assert_eq!(firsts, expected, "both halves read the rotated file, not the new one at its path");
        // So does reading the second half again.
        let mut again = Vec::new();
        file.scan_from(second_from, from, to, &mut |view| again.push(view.into_record())).unwrap();
        assert_eq!(again[..], expected[expected.len() - again.len()..]);
        assert!(again.iter().all(|record| record.message.starts_with("tick ")));
    }

    #[test]
    fn a_big_range_is_read_in_two_and_a_small_one_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write_file(&path, 20_000);
        let (from, to) = (T0 + 10_000_000, T0 + 10_600_000);
        let (expected, stats) = collect(&path, from, to);
        for (min_split_bytes, split) in [(1024, true), (u64::MAX, false)] {
            let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
            let scan = OpenLogFile::open(&path)
                .unwrap()
                .scan_in_two(from, to, min_split_bytes, &mut |view| firsts.push(view.into_record()), &mut |view| {
                    seconds.push(view.into_record())
                })
                .unwrap();
            assert_eq!(scan.second_from.is_some(), split);
            assert_eq!(seconds.is_empty(), !split);
            firsts.extend(seconds);
            assert_eq!(firsts, expected);
            assert_eq!(scan.first.lines_read + scan.second.lines_read, stats.lines_read);
        }
    }
}
