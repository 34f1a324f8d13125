//! The row schema of the `history` and `anomalies` datasets, and its reader.
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `timestamp` | `Timestamp(ms, "UTC")` | evaluation time of the point |
//! | `value` | `Float64` | the signal's value |
//! | one per [`FEATURE_NAMES`] after `value` | `Float32`, nullable | the features the forest saw |
//! | `anomaly_score` | `Float64`, nullable | 1.0 = decision threshold; null while warming up or backfilled |
//! | `severity` | `UInt8` | 0 normal, 1 warning, 2 high, 3 critical |
//! | `model_version` | `UInt64`, nullable | the generation of the series' model that scored it |
//!
//! The `value` feature is the `value` column itself, so it is not repeated.
//!
//! **Earlier versions.** A feature column added since the first version (listed in
//! [`ADDED_FEATURE_COLUMNS`]) is missing from the files written before it; such a file is read
//! in full, with nulls in the columns it predates, so a dataset written by an older daemon keeps
//! training and compacting (compaction rewrites it in the current schema, the nulls kept). A file
//! that is neither the current schema nor one of its earlier versions is refused with the columns
//! it has.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, TimestampMillisecondType, UInt8Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, RecordBatch, TimestampMillisecondArray, UInt8Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::StoreError;
use crate::features::{FEATURE_COUNT, FEATURE_NAMES};

/// Feature columns added after the first point schema, oldest first: a file written before one
/// was added lacks it and every later one. Append here when a feature is appended to
/// [`FEATURE_NAMES`].
const ADDED_FEATURE_COLUMNS: [&str; 1] = ["robust_zscore"];

/// A row's features where none is known: a window's first points.
pub const NO_FEATURES: [Option<f32>; FEATURE_COUNT] = [None; FEATURE_COUNT];

/// One stored point of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointRow {
    /// Evaluation time, ms since the epoch (UTC).
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
    /// The features (in [`FEATURE_NAMES`] order), each `None` where the file holds a null: all of
    /// them for the first points of a window, and those a file predates (written by an earlier
    /// version, before the feature existed). The `value` feature is known whenever another one is.
    pub features: [Option<f32>; FEATURE_COUNT],
    /// The anomaly score, `None` when not scored.
    pub anomaly_score: Option<f64>,
    /// Severity (0–3).
    pub severity: u8,
    /// Generation of the model that scored it.
    pub model_version: Option<u64>,
}

impl PointRow {
    /// The features as a row, as [`FeatureWindow::push`](crate::features::FeatureWindow::push)
    /// gives them (`None`: none known).
    pub fn features_from(row: Option<[f32; FEATURE_COUNT]>) -> [Option<f32>; FEATURE_COUNT] {
        row.map_or(NO_FEATURES, |row| row.map(Some))
    }

    /// Every feature, when the row has them all.
    pub fn complete_features(&self) -> Option<[f32; FEATURE_COUNT]> {
        let mut row = [0.0; FEATURE_COUNT];
        for (slot, feature) in row.iter_mut().zip(self.features) {
            *slot = feature?;
        }
        Some(row)
    }

    /// Whether the row belongs to the `anomalies` dataset too: severity ≥ 1 or score > 1.
    pub fn is_anomaly(&self) -> bool {
        self.severity >= 1 || self.anomaly_score.is_some_and(|score| score > 1.0)
    }
}

/// The feature columns: every feature but `value`, which has its own column.
fn feature_columns() -> impl Iterator<Item = (usize, &'static str)> {
    FEATURE_NAMES.iter().copied().enumerate().filter(|(_, name)| *name != "value")
}

/// The schema every history and anomalies file is written in.
pub fn point_schema() -> SchemaRef {
    point_schema_lacking(0)
}

/// The point schema as an earlier version wrote it: without the newest `missing` of the
/// [`ADDED_FEATURE_COLUMNS`] (0: the current schema).
fn point_schema_lacking(missing: usize) -> SchemaRef {
    let absent = &ADDED_FEATURE_COLUMNS[ADDED_FEATURE_COLUMNS.len() - missing..];
    let mut fields = vec![
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
    ];
    fields.extend(
        feature_columns()
            .filter(|(_, name)| !absent.contains(name))
            .map(|(_, name)| Field::new(name, DataType::Float32, true)),
    );
    fields.push(Field::new("anomaly_score", DataType::Float64, true));
    fields.push(Field::new("severity", DataType::UInt8, false));
    fields.push(Field::new("model_version", DataType::UInt64, true));
    Arc::new(Schema::new(fields))
}

/// The rows as one record batch of [`point_schema`].
pub fn rows_to_batch(rows: &[PointRow]) -> Result<RecordBatch, StoreError> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from(rows.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.value).collect::<Vec<_>>())),
    ];
    for (index, _) in feature_columns() {
        columns.push(Arc::new(Float32Array::from(rows.iter().map(|r| r.features[index]).collect::<Vec<_>>())));
    }
    columns.push(Arc::new(Float64Array::from(rows.iter().map(|r| r.anomaly_score).collect::<Vec<_>>())));
    columns.push(Arc::new(UInt8Array::from(rows.iter().map(|r| r.severity).collect::<Vec<_>>())));
    columns.push(Arc::new(UInt64Array::from(rows.iter().map(|r| r.model_version).collect::<Vec<_>>())));
    RecordBatch::try_new(point_schema(), columns).map_err(|e| StoreError::Schema(e.to_string()))
}

/// Whether `schema` is the point schema or one of its earlier versions (see the module's doc).
fn is_a_point_schema(schema: &Schema) -> bool {
    (0..=ADDED_FEATURE_COLUMNS.len()).any(|missing| schema.fields() == point_schema_lacking(missing).fields())
}

/// Reads every row of one history or anomalies file, checking its schema; a file of an earlier
/// version reads with nulls in the feature columns it lacks.
///
/// Every read of a part goes through here, and the Parquet decoder does not always *return* an
/// error for a damaged file: some footers make it panic (parquet 60 asserts that a column
/// chunk's offset and size are not negative, arrow-rs issues #7102 and #9705 list more). Such a
/// panic is caught here and returned as [`StoreError::Parquet`], the damaged-file error, so that
/// [`read_part`](super::read_part) sets the file aside as it does any damaged file, instead of the
/// panic failing the daemon's start, ending a maintenance pass or a training job midway.
pub fn read_rows(path: &Path) -> Result<Vec<PointRow>, StoreError> {
    // The closure owns nothing shared: a panic leaves no half-updated state behind to observe.
    std::panic::catch_unwind(|| decode_rows(path)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| (*m).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(StoreError::Parquet {
            path: path.to_owned(),
            source: parquet::errors::ParquetError::General(format!("the decoder panicked: {message}")),
        })
    })
}

fn decode_rows(path: &Path) -> Result<Vec<PointRow>, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
    let parquet = |source: parquet::errors::ParquetError| StoreError::Parquet { path: path.to_owned(), source };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?.build().map_err(parquet)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| StoreError::Parquet { path: path.to_owned(), source: e.into() })?;
        if !is_a_point_schema(&batch.schema()) {
            let names = |schema: &Schema| {
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(StoreError::Schema(format!(
                "{}: neither the point schema nor an earlier version of it: columns [{}], expected [{}]; \
                 move the file out of the datasets directory",
                path.display(),
                names(&batch.schema()),
                names(&point_schema()),
            )));
        }
        let column = |name: &str| batch.column_by_name(name).cloned();
        let (Some(timestamps), Some(values), Some(scores), Some(severities), Some(versions)) = (
            column("timestamp"),
            column("value"),
            column("anomaly_score"),
            column("severity"),
            column("model_version"),
        ) else {
            return Err(StoreError::Schema(format!("{}: missing a column", path.display())));
        };
        let timestamps = timestamps.as_primitive::<TimestampMillisecondType>();
        let values = values.as_primitive::<Float64Type>();
        let scores = scores.as_primitive::<Float64Type>();
        let severities = severities.as_primitive::<UInt8Type>();
        let versions = versions.as_primitive::<UInt64Type>();
        // The feature columns the file has; those an earlier version did not write stay null.
        let features: Vec<(usize, ArrayRef)> =
            feature_columns().filter_map(|(index, name)| Some((index, column(name)?))).collect();
        for row in 0..batch.num_rows() {
            let value = values.value(row);
            let mut vector = NO_FEATURES;
            for (index, array) in &features {
                let array = array.as_primitive::<Float32Type>();
                vector[*index] = array.is_valid(row).then(|| array.value(row));
            }
            if vector.iter().any(Option::is_some) {
                vector[0] = Some(value as f32);
            }
            rows.push(PointRow {
                timestamp_ms: timestamps.value(row),
                value,
                features: vector,
                anomaly_score: scores.is_valid(row).then(|| scores.value(row)),
                severity: severities.value(row),
                model_version: versions.is_valid(row).then(|| versions.value(row)),
            });
        }
    }
    Ok(rows)
}

/// Rows and files as earlier versions wrote them, for the tests of the store.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    /// An unscored row of value 1 without features.
    pub(in crate::store) fn plain_row(timestamp_ms: i64) -> PointRow {
        PointRow {
            timestamp_ms,
            value: 1.0,
            features: NO_FEATURES,
            anomaly_score: None,
            severity: 0,
            model_version: None,
        }
    }

    /// The first version's schema, spelled out as it was written before `robust_zscore`
    /// existed (not built from this module, so that a change here cannot hide from the test).
    fn first_version_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            Field::new("value", DataType::Float64, false),
            Field::new("rolling_mean", DataType::Float32, true),
            Field::new("rolling_std", DataType::Float32, true),
            Field::new("delta", DataType::Float32, true),
            Field::new("zscore", DataType::Float32, true),
            Field::new("anomaly_score", DataType::Float64, true),
            Field::new("severity", DataType::UInt8, false),
            Field::new("model_version", DataType::UInt64, true),
        ]))
    }

    /// Two rows as the first version wrote them: a window's first point, then a scored one.
    pub(in crate::store) fn first_version_batch(timestamp_ms: i64) -> RecordBatch {
        let feature = |scored: f32| Arc::new(Float32Array::from(vec![None, Some(scored)])) as ArrayRef;
        RecordBatch::try_new(
            first_version_schema(),
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(vec![timestamp_ms, timestamp_ms + 15_000]).with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![0.5, 0.75])),
                feature(0.5),
                feature(0.1),
                feature(0.25),
                feature(2.5),
                Arc::new(Float64Array::from(vec![None, Some(1.5)])),
                Arc::new(UInt8Array::from(vec![0, 2])),
                Arc::new(UInt64Array::from(vec![None, Some(3)])),
            ],
        )
        .unwrap()
    }

    /// Rewrites the good part file at `path` with its first column chunk said to start at byte
    /// −1. The footer decodes, and reading the rows then *panics* in parquet 60
    /// (`ColumnChunkMetaData::byte_range` asserts the offset is not negative) instead of
    /// returning an error: the damage a flipped byte in a footer's varint can do.
    pub(in crate::store) fn damage_footer_to_panic_the_decoder(path: &Path) {
        use parquet::file::metadata::{ParquetMetaDataReader, ParquetMetaDataWriter};
        let bytes = std::fs::read(path).unwrap();
        let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&File::open(path).unwrap()).unwrap();
        let mut builder = metadata.into_builder();
        let mut row_groups = builder.take_row_groups();
        let mut row_group = row_groups.remove(0).into_builder();
        let mut columns = row_group.take_columns();
        columns[0] = columns[0]
            .clone()
            .into_builder()
            .set_dictionary_page_offset(None)
            .set_data_page_offset(-1)
            .build()
            .unwrap();
        row_groups.insert(0, row_group.set_column_metadata(columns).build().unwrap());
        let metadata = builder.set_row_groups(row_groups).build();
        let mut damaged = bytes[..bytes.len() - 8 - footer_len].to_vec();
        ParquetMetaDataWriter::new(&mut damaged, &metadata).finish().unwrap();
        std::fs::write(path, damaged).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::first_version_batch;
    use super::*;

    #[test]
    fn rows_round_trip_through_a_file() {
        let rows = vec![
            PointRow {
                timestamp_ms: 1_700_000_000_000,
                value: 0.5,
                features: NO_FEATURES,
                anomaly_score: None,
                severity: 0,
                model_version: None,
            },
            PointRow {
                timestamp_ms: 1_700_000_015_000,
                value: 0.75,
                features: PointRow::features_from(Some([0.75, 0.5, 0.1, 0.25, 2.5, 1.5])),
                anomaly_score: Some(1.5),
                severity: 2,
                model_version: Some(3),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        super::super::write_batch_atomically(dir.path(), "p.parquet", &rows_to_batch(&rows).unwrap()).unwrap();
        assert_eq!(read_rows(&dir.path().join("p.parquet")).unwrap(), rows);
        assert!(!rows[0].is_anomaly() && rows[1].is_anomaly());
        let names: Vec<String> = point_schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(
            names,
            [
                "timestamp",
                "value",
                "rolling_mean",
                "rolling_std",
                "delta",
                "zscore",
                "robust_zscore",
                "anomaly_score",
                "severity",
                "model_version"
            ]
        );
    }

    #[test]
    fn a_first_version_file_reads_in_full_with_a_null_robust_zscore() {
        let dir = tempfile::tempdir().unwrap();
        super::super::write_batch_atomically(dir.path(), "old.parquet", &first_version_batch(1_700_000_000_000))
            .unwrap();
        let rows = read_rows(&dir.path().join("old.parquet")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].features, NO_FEATURES);
        assert_eq!(rows[1].features, [Some(0.75), Some(0.5), Some(0.1), Some(0.25), Some(2.5), None]);
        assert_eq!(rows[1].complete_features(), None);
        assert_eq!(
            (rows[1].timestamp_ms, rows[1].value, rows[1].anomaly_score, rows[1].severity, rows[1].model_version),
            (1_700_000_015_000, 0.75, Some(1.5), 2, Some(3))
        );
        // Written again (as compaction does), the file is of the current schema, nulls kept.
        super::super::write_batch_atomically(dir.path(), "new.parquet", &rows_to_batch(&rows).unwrap()).unwrap();
        assert_eq!(read_rows(&dir.path().join("new.parquet")).unwrap(), rows);
    }

    #[test]
    fn a_footer_that_panics_the_decoder_is_a_parquet_error() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<PointRow> = (0..10).map(super::fixtures::plain_row).collect();
        super::super::write_batch_atomically(dir.path(), "p.parquet", &rows_to_batch(&rows).unwrap()).unwrap();
        let path = dir.path().join("p.parquet");
        super::fixtures::damage_footer_to_panic_the_decoder(&path);
        // The decoder itself panics on this file (what read_rows must not pass on).
        let decoded = std::panic::catch_unwind(|| decode_rows(&path));
        assert!(decoded.is_err(), "the fixture no longer panics parquet: {decoded:?}");
        let error = read_rows(&path).unwrap_err();
        assert!(matches!(error, StoreError::Parquet { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("the decoder panicked: column start and length should not be negative"), "{message}");
    }

    #[test]
    fn a_file_of_another_schema_is_refused_with_its_columns() {
        let schema = Arc::new(Schema::new(vec![Field::new("value", DataType::Float64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![1.0]))]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        super::super::write_batch_atomically(dir.path(), "other.parquet", &batch).unwrap();
        let error = read_rows(&dir.path().join("other.parquet")).unwrap_err().to_string();
        assert!(error.contains("neither the point schema nor an earlier version of it"), "{error}");
        assert!(error.contains("columns [value: Float64]"), "{error}");
        assert!(error.contains("robust_zscore: Float32"), "{error}");
    }
}
