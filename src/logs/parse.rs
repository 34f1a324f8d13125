//! The line parser: one line of bytes in, a [`LogRecord`] (or the reason it was skipped) out.
//!
//! The format is detected per line, because a file can change format across a restart and a
//! rotated file can hold another than the live one: GELF (`version` + `short_message`), ECS
//! nested (`log` is an object, Boot 3.5+), ECS flat (`log.level` or `ecs.version` keys, Boot
//! 3.4), logstash (`@version`, `logger_name` or `level_value`). Any other line is kept as text,
//! with a leading RFC 3339 timestamp and level word read when present. A line that opens like
//! JSON but does not parse (truncated by a crash or a rotation) is [`ParsedLine::Corrupt`], as is
//! a structured line without a readable timestamp: both are skipped and counted, never fatal.
//!
//! The parser never panics on any input; a property test feeds it arbitrary bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::record::{Level, LineFormat, LogRecord, parse_log_timestamp_ms, parse_timestamp_prefix};

/// What a line turned out to be.
// Returned by value and consumed at once, line after line: boxing the record would add an
// allocation per line on the hot path for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedLine {
    /// A record (structured, or text).
    Record(LogRecord),
    /// An empty or blank line: nothing to show, nothing wrong.
    Blank,
    /// Unreadable: truncated JSON, or a structured line without a timestamp. Counted as skipped.
    Corrupt,
}

/// Parses one line (without its newline; a trailing `\r` is ignored).
pub fn parse_line(line: &[u8]) -> ParsedLine {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    match parse_view(&text) {
        ParsedView::Record(view) => ParsedLine::Record(view.into_record()),
        ParsedView::Blank => ParsedLine::Blank,
        ParsedView::Corrupt => ParsedLine::Corrupt,
    }
}

/// What a line turned out to be, its text still borrowed from the line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ParsedView<'a> {
    /// A record.
    Record(RecordView<'a>),
    /// An empty or blank line.
    Blank,
    /// Unreadable: counted as skipped.
    Corrupt,
}

/// A record whose text still borrows from its line where the JSON had no escapes: the hot loop
/// of a query looks at every line of the window and its baseline, and only the window's lines
/// are kept ([`RecordView::into_record`]); the baseline's are counted and dropped.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    /// Milliseconds since the epoch, UTC.
    pub timestamp_ms: Option<i64>,
    /// The level.
    pub level: Option<Level>,
    /// The logger.
    pub logger: Option<Cow<'a, str>>,
    /// The thread.
    pub thread: Option<Cow<'a, str>>,
    /// The message.
    pub message: Cow<'a, str>,
    /// The exception's class.
    pub error_type: Option<Cow<'a, str>>,
    /// The exception's message.
    pub error_message: Option<Cow<'a, str>>,
    /// The stack trace.
    pub stack_trace: Option<Cow<'a, str>>,
    /// The trace id.
    pub trace_id: Option<Cow<'a, str>>,
    /// The span id.
    pub span_id: Option<Cow<'a, str>>,
    rest: Vec<(Cow<'a, str>, Field<'a>)>,
    /// The format.
    pub format: LineFormat,
    /// The line this record was parsed from, when it is exactly one line.
    line: Option<&'a str>,
}

impl<'a> RecordView<'a> {
    fn text(line: &'a str, timestamp_ms: Option<i64>, level: Option<Level>) -> Self {
        RecordView {
            timestamp_ms,
            level,
            logger: None,
            thread: None,
            message: Cow::Borrowed(line),
            error_type: None,
            error_message: None,
            stack_trace: None,
            trace_id: None,
            span_id: None,
            rest: Vec::new(),
            format: LineFormat::Text,
            line: None,
        }
    }

    /// A view of an owned record (its extra fields as text).
    pub fn of(record: &'a LogRecord) -> Self {
        let borrowed = |text: &'a Option<String>| text.as_deref().map(Cow::Borrowed);
        RecordView {
            timestamp_ms: record.timestamp_ms,
            level: record.level,
            logger: borrowed(&record.logger),
            thread: borrowed(&record.thread),
            message: Cow::Borrowed(&record.message),
            error_type: borrowed(&record.error_type),
            error_message: borrowed(&record.error_message),
            stack_trace: borrowed(&record.stack_trace),
            trace_id: borrowed(&record.trace_id),
            span_id: borrowed(&record.span_id),
            rest: record
                .fields
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Field::Text(Cow::Borrowed(v))))
                .collect(),
            format: record.format,
            line: None,
        }
    }

    /// The line this record was parsed by [`parse_view`] from, when the record is that one line
    /// (not a view of an owned record, such as a text line with its continuation lines): parsing
    /// it again gives the same record, so a caller may keep the line and parse it only if needed.
    pub fn line(&self) -> Option<&'a str> {
        self.line
    }

    /// An owned copy of the record, leaving the view as it is.
    pub fn to_record(&self) -> LogRecord {
        self.clone().into_record()
    }

    /// The owned record, with the remaining fields flattened to text.
    pub fn into_record(self) -> LogRecord {
        let owned = |text: Option<Cow<'a, str>>| text.map(Cow::into_owned);
        let mut fields = BTreeMap::new();
        for (key, value) in self.rest {
            if key == "ecs.version" || key == "ecs" {
                continue;
            }
            let key = key.strip_prefix('_').unwrap_or(&key).to_owned();
            if let Some(text) = text_of(Some(value)) {
                fields.insert(key, text);
            }
        }
        LogRecord {
            timestamp_ms: self.timestamp_ms,
            level: self.level,
            logger: owned(self.logger),
            thread: owned(self.thread),
            message: self.message.into_owned(),
            error_type: owned(self.error_type),
            error_message: owned(self.error_message),
            stack_trace: owned(self.stack_trace),
            trace_id: owned(self.trace_id),
            span_id: owned(self.span_id),
            fields,
            format: self.format,
        }
    }
}

/// Parses one line of text, borrowing from it.
pub fn parse_view(text: &str) -> ParsedView<'_> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return ParsedView::Blank;
    }
    let view = if trimmed.starts_with('{') {
        match serde_json::from_str::<Object<'_>>(trimmed) {
            Ok(object) => parse_object(object, trimmed),
            Err(_) => None,
        }
    } else {
        Some(parse_text(text.trim_end()))
    };
    match view {
        Some(view) => ParsedView::Record(RecordView { line: Some(text), ..view }),
        None => ParsedView::Corrupt,
    }
}

/// Reads only the timestamp of a line, cheaply: the binary search probes lines with it. Falls
/// back to the full parse when the fast path does not find one.
pub fn line_timestamp_ms(line: &[u8]) -> Option<i64> {
    // Structured Spring Boot lines open with `{"@timestamp":"…"`: read it without parsing JSON.
    const PREFIX: &[u8] = b"{\"@timestamp\":\"";
    if let Some(rest) = line.strip_prefix(PREFIX) {
        let end = rest.iter().take(64).position(|&b| b == b'"')?;
        let value = std::str::from_utf8(&rest[..end]).ok()?;
        if let Some(ms) = parse_log_timestamp_ms(value) {
            return Some(ms);
        }
    }
    match parse_line(line) {
        ParsedLine::Record(record) => record.timestamp_ms,
        ParsedLine::Blank | ParsedLine::Corrupt => None,
    }
}

fn parse_text(line: &str) -> RecordView<'_> {
    let Some((timestamp_ms, used)) = parse_timestamp_prefix(line) else {
        return RecordView::text(line, None, None);
    };
    // Logback's default pattern puts the level within the next few words: `… INFO 1234 --- …`.
    let level = line[used..].split_whitespace().take(3).find_map(Level::from_name);
    RecordView::text(line, Some(timestamp_ms), level)
}

/// A JSON value whose strings borrow from the line when they hold no escapes. Parsing into
/// `serde_json::Map` allocated every key and value; this is the hot path of every query.
#[derive(Debug, Clone)]
enum Field<'a> {
    Text(Cow<'a, str>),
    Other(Value),
}

impl Field<'_> {
    fn from_value(value: Value) -> Field<'static> {
        match value {
            Value::String(text) => Field::Text(Cow::Owned(text)),
            other => Field::Other(other),
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            Field::Other(_) => None,
        }
    }

    fn is_object(&self) -> bool {
        matches!(self, Field::Other(Value::Object(_)))
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Field::Other)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// A key, borrowed when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(FieldVisitor)? {
            Field::Text(text) => Ok(Key(text)),
            Field::Other(_) => Err(serde::de::Error::custom("a key must be a string")),
        }
    }
}

/// A JSON object's top-level entries in order. Keys are looked up by a linear scan: log lines
/// have a dozen of them, where hashing or a tree costs more.
#[derive(Debug)]
struct Object<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

impl<'a> Object<'a> {
    fn get(&self, key: &str) -> Option<&Field<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn take(&mut self, key: &str) -> Option<Field<'a>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let mut entries = Vec::with_capacity(16);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<Field<'de>>()?;
            entries.push((key, value));
        }
        Ok(Object(entries))
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Which structured format an object is in, by its keys.
fn detect(object: &Object<'_>) -> Option<LineFormat> {
    if object.contains_key("short_message") && object.contains_key("version") {
        Some(LineFormat::Gelf)
    } else if object.get("log").is_some_and(Field::is_object) || object.get("ecs").is_some_and(Field::is_object) {
        Some(LineFormat::EcsNested)
    } else if object.contains_key("log.level") || object.contains_key("ecs.version") {
        Some(LineFormat::EcsFlat)
    } else if object.contains_key("@version")
        || object.contains_key("logger_name")
        || object.contains_key("level_value")
    {
        Some(LineFormat::Logstash)
    } else {
        None
    }
}

fn str_of<'f>(field: Option<&'f Field<'_>>) -> Option<&'f str> {
    field.and_then(Field::as_str)
}

fn parse_object<'a>(mut object: Object<'a>, line: &'a str) -> Option<RecordView<'a>> {
    let Some(format) = detect(&object) else {
        // Some other JSON: keep the line as text, with its timestamp if it has a usual one.
        let timestamp_ms = ["@timestamp", "timestamp", "time"]
            .iter()
            .find_map(|key| str_of(object.get(key)).and_then(parse_log_timestamp_ms));
        let level = ["level", "severity"].iter().find_map(|key| str_of(object.get(key))).and_then(Level::from_name);
        return Some(RecordView::text(line, timestamp_ms, level));
    };
    if format == LineFormat::EcsNested {
        flatten_into_dotted(&mut object);
    }
    let record = match format {
        LineFormat::Gelf => {
            let timestamp_ms = match object.take("timestamp")? {
                Field::Other(Value::Number(n)) => {
                    let seconds = n.as_f64()?;
                    if !seconds.is_finite() || seconds.abs() > 1e13 {
                        return None;
                    }
                    Some((seconds * 1000.0).round() as i64)
                }
                Field::Text(text) => parse_log_timestamp_ms(&text),
                Field::Other(_) => None,
            }?;
            let level = str_of(object.take("_level_name").as_ref()).and_then(Level::from_name).or_else(|| match object
                .take("level")
            {
                Some(Field::Other(Value::Number(n))) => n.as_i64().and_then(Level::from_syslog),
                _ => None,
            });
            let short_message = cow_of(object.take("short_message"));
            let full_message = cow_of(object.take("full_message"));
            object.take("version");
            RecordView {
                timestamp_ms: Some(timestamp_ms),
                level,
                logger: cow_of(object.take("_log_logger")),
                thread: cow_of(object.take("_process_thread_name")),
                message: short_message.unwrap_or_default(),
                error_type: cow_of(object.take("_error_type")),
                error_message: cow_of(object.take("_error_message")),
                stack_trace: cow_of(object.take("_error_stack_trace")).or(full_message),
                trace_id: cow_of(object.take("_traceId")).or_else(|| cow_of(object.take("_trace_id"))),
                span_id: cow_of(object.take("_spanId")).or_else(|| cow_of(object.take("_span_id"))),
                rest: Vec::new(),
                format,
                line: None,
            }
        }
        LineFormat::EcsFlat | LineFormat::EcsNested => {
            let timestamp_ms = str_of(object.take("@timestamp").as_ref()).and_then(parse_log_timestamp_ms)?;
            RecordView {
                timestamp_ms: Some(timestamp_ms),
                level: str_of(object.take("log.level").as_ref()).and_then(Level::from_name),
                logger: cow_of(object.take("log.logger")),
                thread: cow_of(object.take("process.thread.name")),
                message: cow_of(object.take("message")).unwrap_or_default(),
                error_type: cow_of(object.take("error.type")),
                error_message: cow_of(object.take("error.message")),
                stack_trace: cow_of(object.take("error.stack_trace")),
                trace_id: cow_of(object.take("traceId")).or_else(|| cow_of(object.take("trace.id"))),
                span_id: cow_of(object.take("spanId")).or_else(|| cow_of(object.take("span.id"))),
                rest: Vec::new(),
                format,
                line: None,
            }
        }
        LineFormat::Logstash | LineFormat::Text => {
            let timestamp_ms = str_of(object.take("@timestamp").as_ref()).and_then(parse_log_timestamp_ms)?;
            let level = str_of(object.take("level").as_ref()).and_then(Level::from_name);
            object.take("@version");
            object.take("level_value");
            let stack_trace = cow_of(object.take("stack_trace"));
            // logstash-logback-encoder has no exception-class field: the trace's first line has it.
            let error_type = stack_trace.as_deref().and_then(exception_class).map(Cow::Owned);
            RecordView {
                timestamp_ms: Some(timestamp_ms),
                level,
                logger: cow_of(object.take("logger_name")),
                thread: cow_of(object.take("thread_name")),
                message: cow_of(object.take("message")).unwrap_or_default(),
                error_type,
                error_message: None,
                stack_trace,
                trace_id: cow_of(object.take("traceId")).or_else(|| cow_of(object.take("trace_id"))),
                span_id: cow_of(object.take("spanId")).or_else(|| cow_of(object.take("span_id"))),
                rest: Vec::new(),
                format,
                line: None,
            }
        }
    };
    let mut record = record;
    record.rest = object.0;
    Some(record)
}

/// `java.lang.IllegalStateException: boom\n\tat …` → `java.lang.IllegalStateException`.
fn exception_class(stack_trace: &str) -> Option<String> {
    let first = stack_trace.lines().next()?;
    let class = first.split(':').next()?.trim();
    (!class.is_empty() && !class.contains(char::is_whitespace)).then(|| class.to_owned())
}

/// A value as text, still borrowed where it can be.
fn cow_of(field: Option<Field<'_>>) -> Option<Cow<'_, str>> {
    match field? {
        Field::Text(text) => Some(text),
        Field::Other(Value::Null) => None,
        Field::Other(Value::Object(o)) if o.is_empty() => None,
        Field::Other(other) => Some(Cow::Owned(other.to_string())),
    }
}

/// A value as text: strings as they are, other scalars and arrays as JSON, null as nothing.
fn text_of(field: Option<Field<'_>>) -> Option<String> {
    match field? {
        Field::Text(text) => Some(text.into_owned()),
        Field::Other(Value::Null) => None,
        Field::Other(Value::Object(o)) if o.is_empty() => None,
        Field::Other(other) => Some(other.to_string()),
    }
}

/// Nested ECS objects to the dotted keys of the flat shape, so both read the same way. Depth is
/// bounded by serde_json's own recursion limit.
fn flatten_into_dotted(object: &mut Object<'_>) {
    fn walk(prefix: String, value: Value, out: &mut Vec<(Cow<'static, str>, Field<'static>)>) {
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                for (key, value) in inner {
                    walk(format!("{prefix}.{key}"), value, out);
                }
            }
            other => out.push((Cow::Owned(prefix), Field::from_value(other))),
        }
    }
    let mut flattened = Vec::new();
    let mut at = 0;
    while at < object.0.len() {
        if object.0[at].1.is_object() {
            let (key, field) = object.0.swap_remove(at);
            if let Field::Other(value) = field {
                walk(key.into_owned(), value, &mut flattened);
            }
        } else {
            at += 1;
        }
    }
    object.0.extend(flattened);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixture(name: &str) -> Vec<String> {
        let path = format!("{}/../shared/fixtures/springboot/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect()
    }

    fn record(line: &str) -> LogRecord {
        match parse_line(line.as_bytes()) {
            ParsedLine::Record(record) => record,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn logstash_fixture_lines_parse_with_timestamps_levels_and_loggers() {
        let lines = fixture("structured_logs_logstash.jsonl");
        assert_eq!(lines.len(), 12);
        for line in &lines {
            let record = record(line);
            assert_eq!(record.format, LineFormat::Logstash, "{line}");
            assert!(record.timestamp_ms.is_some() && record.level.is_some() && record.logger.is_some(), "{line}");
            assert!(!record.message.is_empty());
        }
        let first = record(&lines[0]);
        assert_eq!(first.timestamp_ms, Some(1_704_096_900_111));
        assert_eq!(first.level, Some(Level::Info));
        assert_eq!(first.logger.as_deref(), Some("org.example.Application"));
        assert_eq!(first.thread.as_deref(), Some("main"));
        assert_eq!(first.message, "No active profile set, falling back to 1 default profile: \"default\"");
        // -0500 without a colon (Boot 3.5 with a system zone).
        assert_eq!(record(&lines[5]).timestamp_ms, Some(1_756_342_666_348));
    }

    #[test]
    fn ecs_fixture_flat_and_nested_read_the_same_fields() {
        let lines = fixture("structured_logs_ecs.jsonl");
        let flat = record(&lines[0]);
        let nested = record(&lines[1]);
        assert_eq!(flat.format, LineFormat::EcsFlat);
        assert_eq!(nested.format, LineFormat::EcsNested);
        for r in [&flat, &nested] {
            assert_eq!(r.timestamp_ms, Some(1_704_104_100_067));
            assert_eq!(r.level, Some(Level::Info));
            assert_eq!(r.logger.as_deref(), Some("org.example.Application"));
            assert_eq!(r.thread.as_deref(), Some("main"));
            assert_eq!(r.fields.get("service.name").map(String::as_str), Some("simple"));
            assert_eq!(r.fields.get("process.pid").map(String::as_str), Some("39599"));
        }
        let error = record(&lines[2]);
        assert_eq!(error.level, Some(Level::Error));
        assert_eq!(error.error_type.as_deref(), Some("java.lang.RuntimeException"));
        assert_eq!(error.error_message.as_deref(), Some("Oops!!"));
        assert!(error.stack_trace.as_deref().unwrap().contains("HelloController.java:27"));
        for line in &lines[3..] {
            assert_eq!(record(line).format, LineFormat::EcsNested);
        }
    }

    #[test]
    fn gelf_fixture_reads_epoch_seconds_and_underscore_fields() {
        let lines = fixture("structured_logs_gelf.jsonl");
        let first = record(&lines[0]);
        assert_eq!(first.format, LineFormat::Gelf);
        assert_eq!(first.timestamp_ms, Some(1_725_958_035_857));
        assert_eq!(first.level, Some(Level::Info));
        assert_eq!(first.logger.as_deref(), Some("org.example.Application"));
        assert_eq!(first.fields.get("process_pid").map(String::as_str), Some("47649"));
        let second = record(&lines[1]);
        assert_eq!(second.timestamp_ms, Some(1_725_547_337_613));
        assert_eq!(second.fields.get("userId").map(String::as_str), Some("1"));
        assert_eq!(second.fields.get("host").map(String::as_str), Some("spring-boot-gelf"));
    }

    #[test]
    fn gelf_error_uses_syslog_level_and_error_fields() {
        let line = r#"{"version":"1.1","short_message":"boom","timestamp":1.5E9,"level":3,"_error_type":"java.lang.X","_error_stack_trace":"java.lang.X: boom\n\tat a.B(B.java:1)"}"#;
        let r = record(line);
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.error_type.as_deref(), Some("java.lang.X"));
        assert_eq!(r.timestamp_ms, Some(1_500_000_000_000));
    }

    #[test]
    fn logstash_stack_trace_gives_the_exception_class_and_mdc_trace_ids() {
        let line = r#"{"@timestamp":"2026-09-22T16:05:46.067Z","@version":"1","message":"failed","logger_name":"a.B","thread_name":"t","level":"ERROR","level_value":40000,"traceId":"abc","spanId":"def","stack_trace":"java.lang.IllegalStateException: boom\n\tat a.B(B.java:1)\n","tenant":"acme"}"#;
        let r = record(line);
        assert_eq!(r.error_type.as_deref(), Some("java.lang.IllegalStateException"));
        assert_eq!(r.trace_id.as_deref(), Some("abc"));
        assert_eq!(r.span_id.as_deref(), Some("def"));
        assert_eq!(r.fields.get("tenant").map(String::as_str), Some("acme"));
    }

    #[test]
    fn text_lines_keep_their_timestamp_and_level() {
        let r = record("2026-11-24 10:00:01.123  WARN 4242 --- [main] o.e.App : disk almost full");
        assert_eq!(r.format, LineFormat::Text);
        assert_eq!(r.timestamp_ms, Some(1_795_514_401_123));
        assert_eq!(r.level, Some(Level::Warn));
        let continuation = record("\tat com.example.A.b(A.java:1)");
        assert_eq!(continuation.timestamp_ms, None);
    }

    #[test]
    fn truncated_json_and_structured_lines_without_time_are_corrupt() {
        assert_eq!(
            parse_line(br#"{"@timestamp":"2026-09-22T16:05:46.067Z","@version":"1","mess"#),
            ParsedLine::Corrupt
        );
        assert_eq!(parse_line(br#"{"@version":"1","message":"x","level":"INFO"}"#), ParsedLine::Corrupt);
        assert_eq!(parse_line(b"   \r"), ParsedLine::Blank);
    }

    #[test]
    fn fast_timestamp_path_agrees_with_the_full_parse() {
        for name in ["structured_logs_logstash.jsonl", "structured_logs_ecs.jsonl", "structured_logs_gelf.jsonl"] {
            for line in fixture(name) {
                assert_eq!(line_timestamp_ms(line.as_bytes()), record(&line).timestamp_ms, "{line}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_line(&bytes);
            let _ = line_timestamp_ms(&bytes);
        }

        #[test]
        fn mutated_structured_lines_never_panic(cut in 0usize..400, flip in 0usize..400, byte in any::<u8>()) {
            let line = br#"{"@timestamp":"2024-01-01T10:15:00.067Z","log":{"level":"ERROR","logger":"a"},"process":{"thread":{"name":"m"}},"message":"x 12","error":{"type":"T","stack_trace":"T: x\n\tat a"}}"#;
            let mut bytes = line[..cut.min(line.len())].to_vec();
            if let Some(b) = bytes.get_mut(flip) {
                *b = byte;
            }
            let _ = parse_line(&bytes);
            let _ = line_timestamp_ms(&bytes);
        }
    }

    /// The fuzz target for the line parser: a long proptest, 10 000 cases of structured-looking
    /// and arbitrary input (under a second, so it runs with every `cargo test`).
    #[test]
    fn fuzz_line_parser() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(10_000));
        let strategy = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            "\\{\"(@timestamp|log|short_message|version|log\\.level|@version)\":[\"{}\\[\\]0-9a-zA-Z:.,+ -]{0,200}\\}?"
                .prop_map(String::into_bytes),
        ];
        runner
            .run(&strategy, |bytes| {
                let _ = parse_line(&bytes);
                let _ = line_timestamp_ms(&bytes);
                Ok(())
            })
            .unwrap();
    }
}
