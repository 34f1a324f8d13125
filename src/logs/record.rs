//! The normalized log record every line format is parsed into, and the timestamp arithmetic the
//! formats need (RFC 3339 with any offset, epoch seconds or milliseconds), without a date crate.

use crate::calendar::days_from_civil;
use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Severity of a line, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// TRACE, FINEST.
    Trace,
    /// DEBUG, FINE, syslog 7.
    Debug,
    /// INFO, syslog 5 and 6.
    Info,
    /// WARN, WARNING, syslog 4.
    Warn,
    /// ERROR, SEVERE, syslog 3.
    Error,
    /// FATAL, CRITICAL, syslog 0 to 2.
    Fatal,
}

impl Level {
    /// Reads a level name as loggers write it (case-insensitive); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Level> {
        const NAMES: [(&str, Level); 21] = [
            ("INFO", Level::Info),
            ("WARN", Level::Warn),
            ("ERROR", Level::Error),
            ("DEBUG", Level::Debug),
            ("TRACE", Level::Trace),
            ("WARNING", Level::Warn),
            ("FATAL", Level::Fatal),
            ("FINEST", Level::Trace),
            ("FINER", Level::Trace),
            ("FINE", Level::Debug),
            ("CONFIG", Level::Debug),
            ("INFORMATION", Level::Info),
            ("NOTICE", Level::Info),
            ("ERR", Level::Error),
            ("SEVERE", Level::Error),
            ("CRITICAL", Level::Fatal),
            ("CRIT", Level::Fatal),
            ("ALERT", Level::Fatal),
            ("EMERGENCY", Level::Fatal),
            ("EMERG", Level::Fatal),
            ("PANIC", Level::Fatal),
        ];
        // Called for every line: compare without allocating an upper-case copy.
        let name = name.trim();
        NAMES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|(_, level)| *level)
    }

    /// The syslog severity GELF writes (0 emergency … 7 debug).
    pub fn from_syslog(severity: i64) -> Option<Level> {
        match severity {
            0..=2 => Some(Level::Fatal),
            3 => Some(Level::Error),
            4 => Some(Level::Warn),
            5 | 6 => Some(Level::Info),
            7 => Some(Level::Debug),
            _ => None,
        }
    }

    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The format a line was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// logstash-logback-encoder, or Spring Boot's `logstash` structured format.
    Logstash,
    /// Elastic Common Schema with dotted keys (`log.level`), Spring Boot 3.4.
    EcsFlat,
    /// Elastic Common Schema with nested objects (`log: {level}`), Spring Boot 3.5 and later.
    EcsNested,
    /// Graylog Extended Log Format 1.1.
    Gelf,
    /// Anything else, kept as text.
    Text,
}

/// One log line, whatever its format, in one shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// Milliseconds since the epoch, UTC; `None` for a text line without a leading timestamp.
    pub timestamp_ms: Option<i64>,
    /// The level, when the line has one.
    pub level: Option<Level>,
    /// The logger (usually a class name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logger: Option<String>,
    /// The thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The message (the whole line for text lines).
    pub message: String,
    /// The exception's class, on error lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The exception's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The stack trace, as the logger wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    /// The distributed trace id (Micrometer Tracing `traceId`, ECS `trace.id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The span id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Every other field (MDC entries, key-value pairs, service fields), flattened to text.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// The format the line was recognised as.
    pub format: LineFormat,
}

impl LogRecord {
    /// A text line: the whole line is the message.
    pub fn text(line: &str, timestamp_ms: Option<i64>, level: Option<Level>) -> Self {
        LogRecord {
            timestamp_ms,
            level,
            logger: None,
            thread: None,
            message: line.to_owned(),
            error_type: None,
            error_message: None,
            stack_trace: None,
            trace_id: None,
            span_id: None,
            fields: BTreeMap::new(),
            format: LineFormat::Text,
        }
    }

    /// The bytes of its text: every string it holds, which is what keeping it costs beyond its
    /// fixed size. A memory budget counts records by this.
    pub fn text_bytes(&self) -> usize {
        let optional = [
            &self.logger,
            &self.thread,
            &self.error_type,
            &self.error_message,
            &self.stack_trace,
            &self.trace_id,
            &self.span_id,
        ];
        let fields: usize = self.fields.iter().map(|(key, value)| key.len() + value.len()).sum();
        self.message.len() + optional.iter().filter_map(|text| text.as_ref()).map(String::len).sum::<usize>() + fields
    }

    /// Cuts it down to what `max_bytes` buys and gives back the memory cut off; returns true
    /// when anything was cut. Text is kept in the order that best tells a line apart: the
    /// message, the exception type and message, the logger, thread, trace and span ids, the
    /// stack trace, then the fields in key order, each string cut at a character boundary. A
    /// field costs [`FIELD_OVERHEAD_BYTES`] beyond its text, so a line of thousands of tiny fields
    /// cannot keep its bookkeeping while its text is counted as small. Afterwards
    /// `text_bytes() + fields.len() * FIELD_OVERHEAD_BYTES <= max_bytes`, and no string holds
    /// spare capacity (a record copied from a 1 MiB line and then truncated would otherwise keep
    /// the whole 1 MiB allocation).
    pub fn shrink_to(&mut self, max_bytes: usize) -> bool {
        let mut left = max_bytes;
        let mut cut = cut_to(&mut self.message, &mut left);
        for text in [
            &mut self.error_type,
            &mut self.error_message,
            &mut self.logger,
            &mut self.thread,
            &mut self.trace_id,
            &mut self.span_id,
            &mut self.stack_trace,
        ] {
            if let Some(inner) = text.as_mut()
                && cut_to(inner, &mut left)
            {
                cut = true;
                if inner.is_empty() {
                    *text = None;
                }
            }
        }
        self.fields.retain(|key, value| {
            let Some(after_key) = left.checked_sub(key.len() + FIELD_OVERHEAD_BYTES) else {
                cut = true;
                return false;
            };
            left = after_key;
            cut |= cut_to(value, &mut left);
            true
        });
        cut
    }
}

/// What a field of [`LogRecord::fields`] costs beyond its text in [`LogRecord::shrink_to`]: its
/// two string headers and its share of a map node, rounded up.
pub const FIELD_OVERHEAD_BYTES: usize = 64;

/// Cuts `text` to at most `*left` bytes at a character boundary, takes what it keeps from
/// `*left`, and frees its spare capacity; returns true when it cut.
fn cut_to(text: &mut String, left: &mut usize) -> bool {
    let cut = text.len() > *left;
    if cut {
        let mut end = *left;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text.shrink_to_fit();
    *left -= text.len();
    cut
}

/// Log times are shown as every other timestamp of ours: RFC 3339 UTC with milliseconds.
pub use crate::calendar::format_rfc3339_ms;

/// Reads `n` ASCII digits at `at`.
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let slice = bytes.get(at..at + n)?;
    slice.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

/// Parses an RFC 3339 / ISO 8601 timestamp at the start of `text` and returns (milliseconds since
/// the epoch, bytes consumed). Accepts `T` or a space between date and time, 0 to 9 fraction
/// digits (`.` or `,`), and `Z`, `±hh:mm`, `±hhmm` or `±hh`; no zone means UTC.
pub fn parse_timestamp_prefix(text: &str) -> Option<(i64, usize)> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (month, day) = (digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (hour, minute) = (digits(b, 11, 2)?, digits(b, 14, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if matches!(b.get(at), Some(b'.' | b',')) {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let mut offset_minutes = 0i64;
    match b.get(at) {
        Some(b'Z' | b'z') => at += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let hours = digits(b, at + 1, 2)?;
            at += 3;
            let mut minutes = 0;
            if b.get(at) == Some(&b':') {
                minutes = digits(b, at + 1, 2)?;
                at += 3;
            } else if let Some(m) = digits(b, at, 2) {
                minutes = m;
                at += 2;
            }
            if hours > 23 || minutes > 59 {
                return None;
            }
            offset_minutes = i64::from(hours * 60 + minutes) * if sign == b'-' { -1 } else { 1 };
        }
        _ => {}
    }
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Some((seconds * 1000 + millis, at))
}

/// Parses a whole log timestamp, in any form [`parse_timestamp_prefix`] reads (nothing may follow
/// it). Log lines and `/logs` queries use these looser ISO 8601 forms; Alertmanager payloads and
/// `backtest` input use the strict `calendar::parse_rfc3339_ms`.
pub fn parse_log_timestamp_ms(text: &str) -> Option<i64> {
    match parse_timestamp_prefix(text) {
        Some((ms, used)) if used == text.len() => Some(ms),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_offsets_and_fractions_are_read() {
        assert_eq!(parse_log_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_log_timestamp_ms("2024-01-01T10:15:00.067462556Z"), Some(1_704_104_100_067));
        assert_eq!(parse_log_timestamp_ms("2024-01-01T10:15:00.111037681+02:00"), Some(1_704_096_900_111));
        assert_eq!(parse_log_timestamp_ms("2025-08-27T19:57:46.348-0500"), Some(1_756_342_666_348));
        assert_eq!(parse_log_timestamp_ms("2020-02-24 03:22:17,155"), Some(1_582_514_537_155));
        assert_eq!(parse_log_timestamp_ms("2020-02-24T03:22:17.1Z"), Some(1_582_514_537_100));
        assert_eq!(parse_log_timestamp_ms("2020-13-24T03:22:17Z"), None);
        assert_eq!(parse_log_timestamp_ms("2020-02-24T03:22:17Zjunk"), None);
        assert_eq!(parse_log_timestamp_ms("2020-02-24T03:22:17."), None);
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, 1_704_104_100_067, 1_790_000_000_123, 951_782_400_000] {
            assert_eq!(parse_log_timestamp_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(format_rfc3339_ms(1_704_104_100_067), "2024-01-01T10:15:00.067Z");
    }

    #[test]
    fn shrinking_keeps_the_message_first_cuts_at_char_boundaries_and_frees_the_rest() {
        let mut record = LogRecord::text(&"é".repeat(100), Some(0), Some(Level::Error));
        record.error_type = Some("java.io.IOException".into());
        record.stack_trace = Some("\tat a.B(B.java:1)\n".repeat(1000));
        record.fields.insert("user".into(), "x".repeat(500));
        let small = record.clone();
        assert!(!record.clone().shrink_to(record.text_bytes() + FIELD_OVERHEAD_BYTES), "it fits: nothing cut");

        // Room for the 200-byte message and nothing else.
        let mut cut = small.clone();
        assert!(cut.shrink_to(200));
        assert_eq!(cut.message, small.message);
        assert_eq!((cut.error_type, cut.stack_trace), (None, None));
        assert!(cut.fields.is_empty());
        // 99 bytes end inside a two-byte character: it goes whole.
        let mut cut = small.clone();
        assert!(cut.shrink_to(99));
        assert_eq!(cut.message, "é".repeat(49));

        // Room for the message, the exception and part of the stack trace.
        let mut cut = small.clone();
        assert!(cut.shrink_to(1000));
        assert_eq!(cut.error_type, small.error_type);
        let trace = cut.stack_trace.as_ref().unwrap();
        assert_eq!(trace.len(), 1000 - 200 - "java.io.IOException".len());
        assert_eq!(trace.capacity(), trace.len(), "the cut-off part is freed");
        assert!(cut.text_bytes() + cut.fields.len() * FIELD_OVERHEAD_BYTES <= 1000);
    }

    #[test]
    fn levels_order_and_read_syslog() {
        assert!(Level::Error > Level::Warn && Level::Warn > Level::Info);
        assert_eq!(Level::from_name("warning"), Some(Level::Warn));
        assert_eq!(Level::from_syslog(3), Some(Level::Error));
        assert_eq!(Level::from_syslog(6), Some(Level::Info));
        assert_eq!(Level::from_syslog(9), None);
    }
}
