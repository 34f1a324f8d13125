//! Atomic Parquet files: a reader sees a whole file or none.
//!
//! A file is written under a hidden name in its final directory (a leading `.`, which pyarrow,
//! DuckDB, Polars and Spark skip when they list a dataset), fsynced, renamed to its final name
//! and the directory fsynced, so the rename itself survives a power cut. A crash at any moment
//! leaves either no file or a complete one, plus at worst a hidden temporary that
//! [`remove_stale_temporaries`] clears on the next start. Other datasets (incidents) reuse
//! [`write_batch_atomically`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::StoreError;

/// The prefix of every temporary file: hidden from dataset readers and from our own listing.
pub(super) const TEMPORARY_PREFIX: &str = ".tmp-";

/// Distinguishes concurrent temporaries of one process.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether a file name is one that dataset readers skip (leading `.` or `_`).
pub fn is_hidden(file_name: &str) -> bool {
    file_name.starts_with('.') || file_name.starts_with('_')
}

/// Writes `batch` as the Parquet file `directory/file_name` atomically (creating the directory),
/// and returns the file's size in bytes. An existing file of that name is replaced whole.
///
/// Snappy-compressed, one row group per call: callers batch rows (a flush, a compacted day), so
/// a file is never one row. The work is blocking I/O; call it from `spawn_blocking` in async code.
pub fn write_batch_atomically(directory: &Path, file_name: &str, batch: &RecordBatch) -> Result<u64, StoreError> {
    write_atomically(directory, file_name, |temporary| write_parquet(temporary, batch))
}

/// Writes `bytes` as `directory/file_name` atomically (temporary, fsync, rename, fsync of the
/// directory), creating the directory: for model files.
pub fn write_bytes_atomically(directory: &Path, file_name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomically(directory, file_name, |temporary| {
        let mut file =
            File::create(temporary).map_err(|source| StoreError::Io { path: temporary.to_owned(), source })?;
        file.write_all(bytes).map_err(|source| StoreError::Io { path: temporary.to_owned(), source })?;
        Ok(file)
    })
    .map(|_| ())
}

/// The one protocol behind both writers: `write` fills a hidden temporary in `directory` and
/// hands back its open file; that file is fsynced, renamed to `file_name` and the directory
/// fsynced. On any failure the temporary is removed. Returns the file's size in bytes.
fn write_atomically(
    directory: &Path,
    file_name: &str,
    write: impl FnOnce(&Path) -> Result<File, StoreError>,
) -> Result<u64, StoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| StoreError::Io { path, source }
    };
    create_directories_durably(directory)?;
    let temporary = directory.join(format!(
        "{TEMPORARY_PREFIX}{}-{}-{file_name}",
        std::process::id(),
        TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write(&temporary).and_then(|file| {
        file.sync_all().map_err(io(&temporary))?;
        Ok(file.metadata().map_err(io(&temporary))?.len())
    });
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    let target = directory.join(file_name);
    if let Err(source) = std::fs::rename(&temporary, &target) {
        let _ = std::fs::remove_file(&temporary);
        return Err(StoreError::Io { path: target, source });
    }
    sync_directory(directory)?;
    Ok(bytes)
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<File, StoreError> {
    let file = File::create(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
    let properties = writer_properties(&batch.schema());
    let parquet = |source: parquet::errors::ParquetError| StoreError::Parquet { path: path.to_owned(), source };
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(parquet)?;
    writer.write(batch).map_err(parquet)?;
    let mut file = writer.into_inner().map_err(parquet)?;
    file.flush().map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
    Ok(file)
}

/// Snappy, plus the encoding that suits each column's type, because Snappy alone barely shrinks
/// numbers: timestamps a fixed step apart delta-encode to a few bits a row, and floats split into
/// byte streams (the sign and exponent bytes of a slowly moving series repeat) compress where
/// their plain bytes do not. Other columns keep Parquet's default, a dictionary, which suits
/// severities, model versions and labels. Every Parquet reader of the last years (pyarrow,
/// DuckDB, Spark, arrow-rs) decodes both encodings.
fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut builder = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for field in schema.fields() {
        let encoding = match field.data_type() {
            DataType::Timestamp(..) | DataType::Int64 => Encoding::DELTA_BINARY_PACKED,
            DataType::Float32 | DataType::Float64 => Encoding::BYTE_STREAM_SPLIT,
            _ => continue,
        };
        let column = ColumnPath::from(field.name().as_str());
        builder = builder.set_column_dictionary_enabled(column.clone(), false).set_column_encoding(column, encoding);
    }
    builder.build()
}

/// Makes renames and removals in `directory` durable (a no-op where directories cannot be opened).
pub fn sync_directory(directory: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let handle = File::open(directory).map_err(|source| StoreError::Io { path: directory.to_owned(), source })?;
        handle.sync_all().map_err(|source| StoreError::Io { path: directory.to_owned(), source })?;
    }
    #[cfg(not(unix))]
    let _ = directory;
    Ok(())
}

/// Creates `directory` and its missing parents, fsyncing the parent of each one it creates: a new
/// directory's entry lives in its parent, and until that is on disk a power cut can take the
/// directory away, with every file fsynced inside it (a new day's partition, a series' first
/// model). Nothing is synced when the directory exists, as it does for all but a day's first
/// write.
fn create_directories_durably(directory: &Path) -> Result<(), StoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| StoreError::Io { path, source }
    };
    if directory.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> =
        directory.ancestors().take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.is_dir()).collect();
    for created in missing.into_iter().rev() {
        match std::fs::create_dir(created) {
            Ok(()) => {}
            // Another writer made it meanwhile; its parent is synced all the same.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && created.is_dir() => {}
            Err(error) => return Err(io(created)(error)),
        }
        let parent = created.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_directory(parent)?;
    }
    Ok(())
}

/// Removes temporaries a crash left in `directory` (not recursive); returns how many.
pub fn remove_stale_temporaries(directory: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    for path in list_files(directory)? {
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(TEMPORARY_PREFIX)) {
            std::fs::remove_file(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The regular files of `directory`, hidden ones included, sorted; an absent directory is empty.
pub(crate) fn list_files(directory: &Path) -> Result<Vec<PathBuf>, StoreError> {
    list(directory, |t| t.is_file())
}

/// The subdirectories of `directory`, sorted; an absent directory has none.
pub(crate) fn list_directories(directory: &Path) -> Result<Vec<PathBuf>, StoreError> {
    list(directory, |t| t.is_dir())
}

fn list(directory: &Path, keep: impl Fn(std::fs::FileType) -> bool) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StoreError::Io { path: directory.to_owned(), source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io { path: directory.to_owned(), source })?;
        let file_type = entry.file_type().map_err(|source| StoreError::Io { path: entry.path(), source })?;
        if keep(file_type) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn directories_are_created_level_by_level_and_a_file_in_the_way_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("history").join("a").join("cpu").join("date=2026-12-07");
        create_directories_durably(&partition).unwrap();
        assert!(partition.is_dir());
        create_directories_durably(&partition).unwrap();
        write_bytes_atomically(&partition.join("next"), "model.aem", b"x").unwrap();
        assert_eq!(std::fs::read(partition.join("next").join("model.aem")).unwrap(), b"x");
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let error = create_directories_durably(&dir.path().join("file").join("below")).unwrap_err();
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
            ("s", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
        ])
        .unwrap()
    }

    #[test]
    fn writes_a_readable_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x/y");
        let bytes = write_batch_atomically(&target, "part-1.parquet", &batch()).unwrap();
        let files = list_files(&target).unwrap();
        assert_eq!(files, [target.join("part-1.parquet")]);
        assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), bytes);
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap())
                .unwrap()
                .build()
                .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 3);
    }

    #[test]
    fn numbers_are_written_in_the_encodings_that_compress_them_and_read_back_exactly() {
        use arrow_array::{Float64Array, TimestampMillisecondArray, UInt8Array};
        let rows = 1000;
        let timestamps: Vec<i64> = (0..rows).map(|i| 1_700_000_000_000 + i * 15_000).collect();
        let values: Vec<f64> = (0..rows).map(|i| 0.3 + 0.05 * (i as f64 / 40.0).sin()).collect();
        let written = RecordBatch::try_from_iter([
            ("timestamp", Arc::new(TimestampMillisecondArray::from(timestamps).with_timezone("UTC")) as _),
            ("value", Arc::new(Float64Array::from(values)) as _),
            ("severity", Arc::new(UInt8Array::from(vec![0u8; rows as usize])) as _),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_batch_atomically(dir.path(), "part.parquet", &written).unwrap();
        let path = dir.path().join("part.parquet");

        let reader = parquet::file::reader::SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let metadata = parquet::file::reader::FileReader::metadata(&reader);
        let encodings = |column: usize| metadata.row_group(0).column(column).encodings().collect::<Vec<_>>();
        assert!(encodings(0).contains(&Encoding::DELTA_BINARY_PACKED), "timestamp: {:?}", encodings(0));
        assert!(encodings(1).contains(&Encoding::BYTE_STREAM_SPLIT), "value: {:?}", encodings(1));
        assert!(encodings(2).contains(&Encoding::RLE_DICTIONARY), "severity: {:?}", encodings(2));

        let read: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
        assert_eq!(read, [written], "one batch, equal to what was written");
    }

    #[test]
    fn stale_temporaries_are_removed_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-1-0-part.parquet"), b"torn").unwrap();
        std::fs::write(dir.path().join("part.parquet"), b"kept").unwrap();
        assert!(is_hidden(".tmp-1-0-part.parquet") && is_hidden("_manifest") && !is_hidden("part.parquet"));
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert_eq!(list_files(dir.path()).unwrap(), [dir.path().join("part.parquet")]);
    }
}
