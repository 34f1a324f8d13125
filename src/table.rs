//! Tables of numeric features read from CSV or Parquet files, for the `score` command.
//!
//! Every numeric column is a feature except the label column: 1 marks an anomaly, 0 a normal
//! row, and any other value is refused. Errors name the file, and the line and column where they
//! can, because the person reading them has the file open, not our code.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::forest::{ForestError, Matrix};

/// What went wrong reading a table; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file has no header, or no data rows.
    #[error("{path}: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// "is empty", "has no data rows", ...
        what: &'static str,
    },
    /// A CSV row that cannot be split into fields.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The CSV reader's reason.
        message: String,
    },
    /// A row with a different number of fields than the header.
    #[error("{path}:{line}: row has {found} fields, the header has {expected}")]
    Ragged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Fields in this row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A value that is not a number.
    #[error("{path}:{line}: column '{column}': {value:?} is not a number")]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// 1-based line (for Parquet, 1-based row).
        line: u64,
        /// The column's name.
        column: String,
        /// The offending text.
        value: String,
    },
    /// NaN, ±Inf, or beyond float32 range: the forest refuses them (see [`crate::forest`]).
    #[error("{path}:{line}: column '{column}': {value} is not a finite float32 value")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// 1-based line (for Parquet, 1-based row).
        line: u64,
        /// The column's name.
        column: String,
        /// The value as read.
        value: f64,
    },
    /// A label that is neither 0 (normal) nor 1 (anomaly).
    #[error("{path}:{line}: column '{column}': label {value} is not 0 (normal) or 1 (anomaly)")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line (for Parquet, 1-based row).
        line: u64,
        /// The label column's name.
        column: String,
        /// The value as read.
        value: f64,
    },
    /// A Parquet column whose type is not numeric.
    #[error("{path}: column '{column}' has type {data_type}, not a number")]
    NonNumericColumn {
        /// The file.
        path: PathBuf,
        /// The column's name.
        column: String,
        /// Its Arrow type.
        data_type: DataType,
    },
    /// A Parquet file that cannot be decoded.
    #[error("{path}: not a readable Parquet file: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        message: String,
    },
    /// No feature column is left once the label column is set aside.
    #[error("{path}: no feature columns (every numeric column except '{label}' is a feature)")]
    NoFeatures {
        /// The file.
        path: PathBuf,
        /// The label column's name.
        label: String,
    },
    /// The label column was asked for by name and is not there.
    #[error("{path}: no label column '{label}'; columns are {columns}")]
    MissingLabel {
        /// The file.
        path: PathBuf,
        /// The label column asked for.
        label: String,
        /// The file's columns, comma-separated.
        columns: String,
    },
    /// The forest refused the values (too many columns, ...).
    #[error("{path}: {source}")]
    Forest {
        /// The file.
        path: PathBuf,
        /// The forest's reason.
        source: ForestError,
    },
}

/// A table split into features and (optionally) labels.
#[derive(Debug)]
pub struct Table {
    /// The feature columns, as the forest takes them.
    pub features: Matrix,
    /// Names of the feature columns, in order.
    pub feature_names: Vec<String>,
    /// One flag per row (true = anomaly) when the file has the label column.
    pub labels: Option<Vec<bool>>,
}

/// How to read a table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The label column's name.
    pub label_column: String,
    /// Whether a missing label column is an error (it was named explicitly) or just means "no
    /// labels" (the default name).
    pub label_required: bool,
}

impl Default for TableSpec {
    fn default() -> Self {
        Self { label_column: "label".to_owned(), label_required: false }
    }
}

/// Reads `path` as Parquet when it starts with Parquet's magic bytes, else as CSV with a header.
pub fn read_table(path: &Path, spec: &TableSpec) -> Result<Table, TableError> {
    let io = |source| TableError::Io { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic).map_err(io)?;
    if read == 0 {
        return Err(TableError::Empty { path: path.to_owned(), what: "is empty" });
    }
    drop(file);
    let is_parquet = read == 4 && &magic == b"PAR1";
    let named_parquet = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("parquet"));
    if named_parquet && !is_parquet {
        // Read as CSV, it would fail with a message about rows and columns it does not have.
        return Err(TableError::Parquet {
            path: path.to_owned(),
            message: "named .parquet but does not start with Parquet's PAR1 magic".to_owned(),
        });
    }
    if is_parquet { read_parquet(path, spec) } else { read_csv(path, spec) }
}

/// Collects columns into a row-major matrix, setting the label column aside.
struct Columns {
    path: PathBuf,
    names: Vec<String>,
    label_index: Option<usize>,
    values: Vec<f32>,
    labels: Vec<bool>,
}

impl Columns {
    fn new(path: &Path, names: Vec<String>, spec: &TableSpec) -> Result<Self, TableError> {
        let label_index = names.iter().position(|n| *n == spec.label_column);
        if label_index.is_none() && spec.label_required {
            return Err(TableError::MissingLabel {
                path: path.to_owned(),
                label: spec.label_column.clone(),
                columns: names.join(", "),
            });
        }
        if names.len() - usize::from(label_index.is_some()) == 0 {
            return Err(TableError::NoFeatures { path: path.to_owned(), label: spec.label_column.clone() });
        }
        Ok(Self { path: path.to_owned(), names, label_index, values: Vec::new(), labels: Vec::new() })
    }

    fn push(&mut self, line: u64, column: usize, value: f64) -> Result<(), TableError> {
        if Some(column) == self.label_index {
            // Only 0 and 1: scikit-learn's −1/1 (or a 2) read as "non-zero is an anomaly" would
            // mark every row anomalous and drop the AUC without a word.
            if value != 0.0 && value != 1.0 {
                return Err(TableError::BadLabel {
                    path: self.path.clone(),
                    line,
                    column: self.names[column].clone(),
                    value,
                });
            }
            self.labels.push(value == 1.0);
            return Ok(());
        }
        let narrowed = value as f32;
        if !narrowed.is_finite() {
            return Err(TableError::NonFinite {
                path: self.path.clone(),
                line,
                column: self.names[column].clone(),
                value,
            });
        }
        self.values.push(narrowed);
        Ok(())
    }

    fn finish(self) -> Result<Table, TableError> {
        let feature_count = self.names.len() - usize::from(self.label_index.is_some());
        if self.values.is_empty() {
            return Err(TableError::Empty { path: self.path, what: "has no data rows" });
        }
        let feature_names = self
            .names
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != self.label_index)
            .map(|(_, n)| n.clone())
            .collect();
        let features = Matrix::from_row_major(self.values, feature_count)
            .map_err(|source| TableError::Forest { path: self.path.clone(), source })?;
        let labels = self.label_index.map(|_| self.labels);
        Ok(Table { features, feature_names, labels })
    }
}

fn read_csv(path: &Path, spec: &TableSpec) -> Result<Table, TableError> {
    let file = File::open(path).map_err(|source| TableError::Io { path: path.to_owned(), source })?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(BufReader::with_capacity(1 << 20, file));
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        match e.into_kind() {
            csv::ErrorKind::Io(source) => TableError::Io { path: path.to_owned(), source },
            kind => TableError::Csv { path: path.to_owned(), line, message: format!("{kind:?}") },
        }
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(TableError::Empty { path: path.to_owned(), what: "is empty" });
    }
    let names: Vec<String> = header.iter().map(|n| n.trim().to_owned()).collect();
    let mut columns = Columns::new(path, names, spec)?;
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            return Err(TableError::Ragged {
                path: path.to_owned(),
                line,
                found: record.len(),
                expected: header.len(),
            });
        }
        for (column, field) in record.iter().enumerate() {
            let text = std::str::from_utf8(field).unwrap_or("").trim();
            let value: f64 = text.parse().map_err(|_| TableError::NotNumeric {
                path: path.to_owned(),
                line,
                column: columns.names[column].clone(),
                value: String::from_utf8_lossy(field).into_owned(),
            })?;
            columns.push(line, column, value)?;
        }
    }
    columns.finish()
}

fn read_parquet(path: &Path, spec: &TableSpec) -> Result<Table, TableError> {
    let parquet_error =
        |e: &dyn std::fmt::Display| TableError::Parquet { path: path.to_owned(), message: e.to_string() };
    let file = File::open(path).map_err(|source| TableError::Io { path: path.to_owned(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(&e))?;
    let schema = builder.schema().clone();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut columns = Columns::new(path, names, spec)?;
    let reader = builder.with_batch_size(64 * 1024).build().map_err(|e| parquet_error(&e))?;
    let mut first_row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(&e))?;
        let as_f64: Vec<Vec<f64>> =
            (0..batch.num_columns()).map(|c| column_as_f64(path, &batch, c, first_row)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            for (column, values) in as_f64.iter().enumerate() {
                columns.push(first_row + row as u64 + 1, column, values[row])?;
            }
        }
        first_row += batch.num_rows() as u64;
    }
    columns.finish()
}

fn column_as_f64(path: &Path, batch: &RecordBatch, column: usize, first_row: u64) -> Result<Vec<f64>, TableError> {
    let array = batch.column(column);
    let name = || batch.schema().field(column).name().clone();
    if let Some(null_row) = (0..array.len()).find(|&i| array.is_null(i)) {
        return Err(TableError::NotNumeric {
            path: path.to_owned(),
            line: first_row + null_row as u64 + 1,
            column: name(),
            value: "null".to_owned(),
        });
    }
    fn widen<T: ArrowPrimitiveType>(array: &dyn Array, to_f64: impl Fn(T::Native) -> f64) -> Vec<f64> {
        array.as_primitive::<T>().values().iter().map(|&v| to_f64(v)).collect()
    }
    Ok(match array.data_type() {
        DataType::Float64 => widen::<Float64Type>(array, |v| v),
        DataType::Float32 => widen::<Float32Type>(array, f64::from),
        DataType::Int8 => widen::<Int8Type>(array, f64::from),
        DataType::Int16 => widen::<Int16Type>(array, f64::from),
        DataType::Int32 => widen::<Int32Type>(array, f64::from),
        DataType::Int64 => widen::<Int64Type>(array, |v| v as f64),
        DataType::UInt8 => widen::<UInt8Type>(array, f64::from),
        DataType::UInt16 => widen::<UInt16Type>(array, f64::from),
        DataType::UInt32 => widen::<UInt32Type>(array, f64::from),
        DataType::UInt64 => widen::<UInt64Type>(array, |v| v as f64),
        DataType::Boolean => array.as_boolean().iter().map(|v| f64::from(u8::from(v.unwrap_or(false)))).collect(),
        other => {
            return Err(TableError::NonNumericColumn {
                path: path.to_owned(),
                column: name(),
                data_type: other.clone(),
            });
        }
    })
}

#[cfg(test)]
mod tests;
