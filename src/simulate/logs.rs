//! The services' structured logs: one JSON object a line, in the shape Spring Boot writes.
//!
//! The logstash shape follows logstash-logback-encoder (and Boot's `logstash` structured format):
//! `@timestamp`, `@version`, `message`, `logger_name`, `thread_name`, `level`, `level_value`, the
//! MDC entries (`traceId`, `spanId`) and `stack_trace` on errors. The ECS shape is Boot 3.4's
//! flat one (`log.level`, `process.thread.name`, `error.stack_trace`). This module renders and
//! writes lines; what the lines say comes from the model.

use crate::calendar::civil_from_days;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{LogFormat, SimulateError};

/// Log levels the services use, with logback's numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// logback's `Level.toInt()`, which logstash-logback-encoder writes as `level_value`.
    fn value(self) -> u32 {
        match self {
            Level::Info => 20_000,
            Level::Warn => 30_000,
            Level::Error => 40_000,
        }
    }
}

/// The exception attached to an ERROR line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoggedException {
    /// Fully qualified class name.
    pub(crate) class: &'static str,
    pub(crate) message: String,
    pub(crate) stack_trace: String,
}

/// The Micrometer Tracing MDC entries of a line logged while serving a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceContext {
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
}

/// One log event, before it is rendered in a format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogEvent {
    pub(crate) time: SystemTime,
    pub(crate) level: Level,
    pub(crate) logger: String,
    pub(crate) thread: String,
    pub(crate) message: String,
    pub(crate) exception: Option<LoggedException>,
    pub(crate) trace: Option<TraceContext>,
}

/// The service fields ECS lines carry.
#[derive(Debug, Clone)]
pub(crate) struct ServiceIdentity {
    pub(crate) name: String,
    pub(crate) pid: u32,
}

#[derive(Serialize)]
struct LogstashLine<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    #[serde(rename = "@version")]
    version: &'static str,
    message: &'a str,
    logger_name: &'a str,
    thread_name: &'a str,
    level: &'static str,
    level_value: u32,
    #[serde(rename = "traceId", skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(rename = "spanId", skip_serializing_if = "Option::is_none")]
    span_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_trace: Option<&'a str>,
}

#[derive(Serialize)]
struct EcsFlatLine<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    #[serde(rename = "log.level")]
    level: &'static str,
    #[serde(rename = "process.pid")]
    pid: u32,
    #[serde(rename = "process.thread.name")]
    thread: &'a str,
    #[serde(rename = "service.name")]
    service: &'a str,
    #[serde(rename = "log.logger")]
    logger: &'a str,
    message: &'a str,
    #[serde(rename = "traceId", skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(rename = "spanId", skip_serializing_if = "Option::is_none")]
    span_id: Option<&'a str>,
    #[serde(rename = "error.type", skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(rename = "error.message", skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(rename = "error.stack_trace", skip_serializing_if = "Option::is_none")]
    error_stack_trace: Option<&'a str>,
    #[serde(rename = "ecs.version")]
    ecs_version: &'static str,
}

/// Renders one event as a JSON line, newline included.
pub(crate) fn render_line(event: &LogEvent, format: LogFormat, service: &ServiceIdentity) -> String {
    let trace_id = event.trace.as_ref().map(|trace| trace.trace_id.as_str());
    let span_id = event.trace.as_ref().map(|trace| trace.span_id.as_str());
    let exception = event.exception.as_ref();
    let rendered = match format {
        LogFormat::Logstash => serde_json::to_string(&LogstashLine {
            timestamp: format_timestamp(event.time),
            version: "1",
            message: &event.message,
            logger_name: &event.logger,
            thread_name: &event.thread,
            level: event.level.name(),
            level_value: event.level.value(),
            trace_id,
            span_id,
            stack_trace: exception.map(|exception| exception.stack_trace.as_str()),
        }),
        LogFormat::Ecs => serde_json::to_string(&EcsFlatLine {
            timestamp: format_timestamp(event.time),
            level: event.level.name(),
            pid: service.pid,
            thread: &event.thread,
            service: &service.name,
            logger: &event.logger,
            message: &event.message,
            trace_id,
            span_id,
            error_type: exception.map(|exception| exception.class),
            error_message: exception.map(|exception| exception.message.as_str()),
            error_stack_trace: exception.map(|exception| exception.stack_trace.as_str()),
            ecs_version: "8.11",
        }),
    };
    // Serializing a struct of strings and integers cannot fail; an empty object keeps the file
    // line-oriented if it ever did.
    let mut line = rendered.unwrap_or_else(|_| String::from("{}"));
    line.push('\n');
    line
}

/// Formats a time as RFC 3339 in UTC with milliseconds, as logback's ISO formatter does:
/// `2026-09-22T16:05:46.067Z`.
pub(crate) fn format_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// An append-only log file with size-based rotation (`app.log` → `app.log.1` → `app.log.2` ...),
/// the way logback's rolling appender leaves files for tools that follow them.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    writer: BufWriter<File>,
    bytes_written: u64,
    max_file_bytes: u64,
    max_files: u32,
}

impl LogFile {
    /// Opens (creating it and its directory) the file for appending.
    pub(crate) async fn open(path: &Path, max_file_bytes: u64, max_files: u32) -> Result<Self, SimulateError> {
        let error = |source| SimulateError::LogFile { path: path.to_path_buf(), reason: source };
        if let Some(directory) = path.parent() {
            tokio::fs::create_dir_all(directory).await.map_err(error)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).await.map_err(error)?;
        let bytes_written = file.metadata().await.map_err(error)?.len();
        Ok(Self { path: path.to_path_buf(), writer: BufWriter::new(file), bytes_written, max_file_bytes, max_files })
    }

    /// Appends the lines and flushes them, so readers see whole lines after every tick.
    pub(crate) async fn append(&mut self, lines: &[String]) -> Result<(), SimulateError> {
        for line in lines {
            if self.max_file_bytes > 0 && self.bytes_written + line.len() as u64 > self.max_file_bytes {
                self.rotate().await?;
            }
            self.writer.write_all(line.as_bytes()).await.map_err(|source| self.error(source))?;
            self.bytes_written += line.len() as u64;
        }
        self.writer.flush().await.map_err(|source| self.error(source))
    }

    async fn rotate(&mut self) -> Result<(), SimulateError> {
        self.writer.flush().await.map_err(|source| self.error(source))?;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files > 0 {
            for n in (1..self.max_files).rev() {
                let from = numbered(n);
                if tokio::fs::try_exists(&from).await.unwrap_or(false) {
                    tokio::fs::rename(&from, numbered(n + 1)).await.map_err(|source| self.error(source))?;
                }
            }
            tokio::fs::rename(&self.path, numbered(1)).await.map_err(|source| self.error(source))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .await
            .map_err(|source| self.error(source))?;
        self.writer = BufWriter::new(file);
        self.bytes_written = 0;
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> SimulateError {
        SimulateError::LogFile { path: self.path.clone(), reason: source }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn identity() -> ServiceIdentity {
        ServiceIdentity { name: "order-service".into(), pid: 4242 }
    }

    fn error_event() -> LogEvent {
        LogEvent {
            time: UNIX_EPOCH + Duration::from_millis(1_790_000_000_123),
            level: Level::Error,
            logger: "org.apache.catalina.core.ContainerBase".into(),
            thread: "http-nio-8080-exec-3".into(),
            message: "Servlet.service() threw exception".into(),
            exception: Some(LoggedException {
                class: "java.lang.IllegalStateException",
                message: "boom".into(),
                stack_trace: "java.lang.IllegalStateException: boom\n\tat com.example.A.b(A.java:1)\n".into(),
            }),
            trace: Some(TraceContext { trace_id: "a".repeat(32), span_id: "b".repeat(16) }),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp(UNIX_EPOCH + Duration::from_millis(951_782_400_005)), "2000-02-29T00:00:00.005Z");
        assert_eq!(format_timestamp(UNIX_EPOCH + Duration::from_secs(1_790_000_000)), "2026-09-21T14:13:20.000Z");
    }

    #[test]
    fn logstash_line_has_the_encoder_fields_in_order() {
        let line = render_line(&error_event(), LogFormat::Logstash, &identity());
        assert!(line.starts_with(r#"{"@timestamp":"2026-09-21T14:13:20.123Z","@version":"1","message":"#), "{line}");
        assert!(line.ends_with("}\n"));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["level"], "ERROR");
        assert_eq!(json["level_value"], 40_000);
        assert_eq!(json["thread_name"], "http-nio-8080-exec-3");
        assert_eq!(json["traceId"].as_str().unwrap().len(), 32);
        assert!(json["stack_trace"].as_str().unwrap().starts_with("java.lang.IllegalStateException: boom\n\tat "));
    }

    #[test]
    fn ecs_line_is_flat_with_error_fields() {
        let line = render_line(&error_event(), LogFormat::Ecs, &identity());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["log.level"], "ERROR");
        assert_eq!(json["service.name"], "order-service");
        assert_eq!(json["process.pid"], 4242);
        assert_eq!(json["error.type"], "java.lang.IllegalStateException");
        assert_eq!(json["ecs.version"], "8.11");
        assert!(json.get("log").is_none(), "ECS flat keys must not nest");
    }

    #[test]
    fn info_line_has_no_error_fields() {
        let event = LogEvent { level: Level::Info, exception: None, trace: None, ..error_event() };
        let json: serde_json::Value =
            serde_json::from_str(&render_line(&event, LogFormat::Logstash, &identity())).unwrap();
        assert_eq!(json["level_value"], 20_000);
        assert!(json.get("stack_trace").is_none() && json.get("traceId").is_none());
    }

    #[tokio::test]
    async fn file_rotates_past_its_size_and_keeps_a_bounded_number() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("svc").join("app.log");
        let mut file = LogFile::open(&path, 100, 2).await.unwrap();
        let line = format!("{}\n", "x".repeat(59));
        for _ in 0..7 {
            file.append(std::slice::from_ref(&line)).await.unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        assert!(path.with_extension("log.1").exists());
        assert!(path.with_extension("log.2").exists());
        assert!(!path.with_extension("log.3").exists());
    }
}
