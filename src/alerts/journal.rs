//! The incident events on disk: Parquet files under `datasets/incidents/`, one per recorded
//! batch, written with the datasets' atomic writer ([`crate::store::write_batch_atomically`]:
//! temporary file, fsync, rename, fsync of the directory), so a crash leaves either the whole
//! batch or nothing, never a torn file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::incidents::{EventKind, IncidentEvent};
use crate::store::{StoreError, write_batch_atomically};

/// A journal file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file system operation failed.
    #[error("incidents journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A journal file could not be written.
    #[error("incidents journal: {0}")]
    Write(#[from] StoreError),
    /// Parquet encoding or decoding failed, or a file has not our schema.
    #[error("incidents journal {path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

const COLUMNS: [(&str, bool); 13] = [
    ("incident_id", false),
    ("fingerprint", false),
    ("kind", false),
    ("alertname", false),
    ("service", false),
    ("severity", false),
    ("labels_json", false),
    ("annotations_json", false),
    ("starts_at_ms", false),
    ("ends_at_ms", true),
    ("received_at_ms", false),
    ("note", true),
    ("actor", true),
];

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, nullable)| {
                let kind = if name.ends_with("_ms") { DataType::Int64 } else { DataType::Utf8 };
                Field::new(*name, kind, *nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_owned(), source }
}

/// Writes `events` as one new file in `dir` named `name` (`incidents-….parquet`), atomically.
pub fn write_batch(dir: &Path, name: &str, events: &[IncidentEvent]) -> Result<PathBuf, JournalError> {
    let batch = to_record_batch(events).map_err(|message| JournalError::Format { path: dir.join(name), message })?;
    write_batch_atomically(dir, name, &batch)?;
    Ok(dir.join(name))
}

/// The journal files in `dir`, in name order, which is the order they were written in (names
/// start with a stamp that only grows). Leftover temporaries of an interrupted write are not
/// listed; a missing directory has no files.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("incidents-") && n.ends_with(".parquet"))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// The events of one journal file, in order.
pub fn read_file(path: &Path) -> Result<Vec<IncidentEvent>, JournalError> {
    let format = |message: String| JournalError::Format { path: path.to_owned(), message };
    let file = File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(|e| format(e.to_string()))?;
    let mut events = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        events.extend(from_record_batch(&batch).map_err(format)?);
    }
    Ok(events)
}

/// Removes a journal file that a compacted file has replaced.
pub fn remove_file(path: &Path) -> Result<(), JournalError> {
    std::fs::remove_file(path).map_err(io(path))
}

fn to_record_batch(events: &[IncidentEvent]) -> Result<RecordBatch, String> {
    let mut strings: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut optional_strings: Vec<StringBuilder> = (0..2).map(|_| StringBuilder::new()).collect();
    let mut starts = Int64Builder::new();
    let mut ends = Int64Builder::new();
    let mut received = Int64Builder::new();
    for event in events {
        let labels = serde_json::to_string(&event.labels).map_err(|e| e.to_string())?;
        let annotations = serde_json::to_string(&event.annotations).map_err(|e| e.to_string())?;
        let values = [
            event.incident_id.as_str(),
            &event.fingerprint,
            event.kind.as_str(),
            &event.alertname,
            &event.service,
            &event.severity,
            &labels,
            &annotations,
        ];
        for (builder, value) in strings.iter_mut().zip(values) {
            builder.append_value(value);
        }
        starts.append_value(event.starts_at_ms);
        ends.append_option(event.ends_at_ms);
        received.append_value(event.received_at_ms);
        optional_strings[0].append_option(event.note.as_deref());
        optional_strings[1].append_option(event.actor.as_deref());
    }
    let mut columns: Vec<ArrayRef> = strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
    columns.push(Arc::new(starts.finish()));
    columns.push(Arc::new(ends.finish()));
    columns.push(Arc::new(received.finish()));
    columns.extend(optional_strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(schema(), columns).map_err(|e| e.to_string())
}

fn from_record_batch(batch: &RecordBatch) -> Result<Vec<IncidentEvent>, String> {
    if batch.schema().fields().len() != COLUMNS.len() {
        return Err(format!("{} columns, expected {}", batch.schema().fields().len(), COLUMNS.len()));
    }
    let text = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| format!("column {} is not text", COLUMNS[i].0))
    };
    let number = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| format!("column {} is not int64", COLUMNS[i].0))
    };
    let (id, fingerprint, kind, alertname, service, severity, labels, annotations) =
        (text(0)?, text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(6)?, text(7)?);
    let (starts, ends, received, note, actor) = (number(8)?, number(9)?, number(10)?, text(11)?, text(12)?);
    let optional = |array: &StringArray, row| (!array.is_null(row)).then(|| array.value(row).to_owned());
    (0..batch.num_rows())
        .map(|row| {
            Ok(IncidentEvent {
                incident_id: id.value(row).to_owned(),
                fingerprint: fingerprint.value(row).to_owned(),
                kind: EventKind::parse(kind.value(row))
                    .ok_or_else(|| format!("unknown event kind {:?}", kind.value(row)))?,
                alertname: alertname.value(row).to_owned(),
                service: service.value(row).to_owned(),
                severity: severity.value(row).to_owned(),
                labels: serde_json::from_str(labels.value(row)).map_err(|e| format!("labels_json: {e}"))?,
                annotations: serde_json::from_str(annotations.value(row))
                    .map_err(|e| format!("annotations_json: {e}"))?,
                starts_at_ms: starts.value(row),
                ends_at_ms: (!ends.is_null(row)).then(|| ends.value(row)),
                received_at_ms: received.value(row),
                note: optional(note, row),
                actor: optional(actor, row),
            })
        })
        .collect()
}
