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

/// One stored point of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointRow {
    /// Evaluation time, ms since the epoch (UTC).
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
    /// The features (in [`FEATURE_NAMES`] order), `None` for the first points of a window.
    pub features: Option<[f32; FEATURE_COUNT]>,
    /// The anomaly score, `None` when not scored.
    pub anomaly_score: Option<f64>,
    /// Severity (0–3).
    pub severity: u8,
    /// Generation of the model that scored it.
    pub model_version: Option<u64>,
}

impl PointRow {
    /// Whether the row belongs to the `anomalies` dataset too: severity ≥ 1 or score > 1.
    pub fn is_anomaly(&self) -> bool {
        self.severity >= 1 || self.anomaly_score.is_some_and(|score| score > 1.0)
    }
}

/// The feature columns: every feature but `value`, which has its own column.
fn feature_columns() -> impl Iterator<Item = (usize, &'static str)> {
    FEATURE_NAMES.iter().copied().enumerate().filter(|(_, name)| *name != "value")
}

/// The schema every history and anomalies file has.
pub fn point_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
    ];
    fields.extend(feature_columns().map(|(_, name)| Field::new(name, DataType::Float32, true)));
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
        columns
            .push(Arc::new(Float32Array::from(rows.iter().map(|r| r.features.map(|f| f[index])).collect::<Vec<_>>())));
    }
    columns.push(Arc::new(Float64Array::from(rows.iter().map(|r| r.anomaly_score).collect::<Vec<_>>())));
    columns.push(Arc::new(UInt8Array::from(rows.iter().map(|r| r.severity).collect::<Vec<_>>())));
    columns.push(Arc::new(UInt64Array::from(rows.iter().map(|r| r.model_version).collect::<Vec<_>>())));
    RecordBatch::try_new(point_schema(), columns).map_err(|e| StoreError::Schema(e.to_string()))
}

/// Reads every row of one history or anomalies file, checking its schema.
pub fn read_rows(path: &Path) -> Result<Vec<PointRow>, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
    let parquet = |source: parquet::errors::ParquetError| StoreError::Parquet { path: path.to_owned(), source };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?.build().map_err(parquet)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| StoreError::Parquet { path: path.to_owned(), source: e.into() })?;
        if batch.schema().fields() != point_schema().fields() {
            return Err(StoreError::Schema(format!("{}: not the point schema: {:?}", path.display(), batch.schema())));
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
        let features: Vec<(usize, ArrayRef)> =
            feature_columns().filter_map(|(index, name)| Some((index, column(name)?))).collect();
        for row in 0..batch.num_rows() {
            let value = values.value(row);
            let mut vector = [0f32; FEATURE_COUNT];
            let mut complete = true;
            for (index, array) in &features {
                if *index == 0 {
                    continue;
                }
                let array = array.as_primitive::<Float32Type>();
                complete &= array.is_valid(row);
                vector[*index] = array.value(row);
            }
            vector[0] = value as f32;
            rows.push(PointRow {
                timestamp_ms: timestamps.value(row),
                value,
                features: complete.then_some(vector),
                anomaly_score: scores.is_valid(row).then(|| scores.value(row)),
                severity: severities.value(row),
                model_version: versions.is_valid(row).then(|| versions.value(row)),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_a_file() {
        let rows = vec![
            PointRow {
                timestamp_ms: 1_700_000_000_000,
                value: 0.5,
                features: None,
                anomaly_score: None,
                severity: 0,
                model_version: None,
            },
            PointRow {
                timestamp_ms: 1_700_000_015_000,
                value: 0.75,
                features: Some([0.75, 0.5, 0.1, 0.25, 2.5]),
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
                "anomaly_score",
                "severity",
                "model_version"
            ]
        );
    }
}
