use std::io::Write;
use std::sync::Arc;

use arrow_array::{Float64Array, Int32Array, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;

use super::*;

fn csv_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn reads_features_and_labels_from_csv() {
    let file = csv_file("f0,label,f1\n1.5,0,2\n3,1,-4e2\n");
    let table = read_table(file.path(), &TableSpec::default()).unwrap();
    assert_eq!(table.feature_names, ["f0", "f1"]);
    assert_eq!(table.features.row(1), &[3.0, -400.0]);
    assert_eq!(table.labels, Some(vec![false, true]));
}

#[test]
fn csv_without_label_column_has_no_labels() {
    let file = csv_file("a,b\n1,2\n");
    let table = read_table(file.path(), &TableSpec::default()).unwrap();
    assert_eq!(table.labels, None);
    let required = TableSpec { label_column: "y".into(), label_required: true };
    let err = read_table(file.path(), &required).unwrap_err();
    assert!(err.to_string().contains("no label column 'y'"), "{err}");
}

#[test]
fn bad_csv_input_names_file_line_and_column() {
    let cases = [
        ("", "is empty"),
        ("a,b\n", "has no data rows"),
        ("a,b\n1,2\n3\n", ":3: row has 1 fields, the header has 2"),
        ("a,b\n1,2\n3,x\n", ":3: column 'b': \"x\" is not a number"),
        ("a,b\n1,nan\n", ":2: column 'b': NaN is not a finite float32 value"),
        ("a,b\n1,1e300\n", "column 'b'"),
        ("label\n1\n", "no feature columns"),
        // scikit-learn's convention (-1 outlier) would otherwise mark every row anomalous.
        ("a,label\n1,1\n2,-1\n", ":3: column 'label': label -1 is not 0 (normal) or 1 (anomaly)"),
        ("a,label\n1,2\n", ":2: column 'label': label 2 is not 0"),
    ];
    for (text, expected) in cases {
        let file = csv_file(text);
        let err = read_table(file.path(), &TableSpec::default()).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(err.contains(&file.path().display().to_string()), "{err} does not name the file");
    }
}

#[test]
fn missing_file_is_named() {
    let err = read_table(Path::new("/nonexistent/table.csv"), &TableSpec::default()).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/table.csv: "), "{err}");
}

fn parquet_file(batch: &RecordBatch) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut writer = ArrowWriter::try_new(file.reopen().unwrap(), batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    file
}

#[test]
fn reads_parquet_numeric_columns() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("n", DataType::Int32, false),
        Field::new("label", DataType::Int32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Float64Array::from(vec![0.5, 1.5])),
            Arc::new(Int32Array::from(vec![7, 8])),
            Arc::new(Int32Array::from(vec![0, 1])),
        ],
    )
    .unwrap();
    let file = parquet_file(&batch);
    let table = read_table(file.path(), &TableSpec::default()).unwrap();
    assert_eq!(table.features.values(), &[0.5, 7.0, 1.5, 8.0]);
    assert_eq!(table.labels, Some(vec![false, true]));
}

#[test]
fn parquet_string_column_is_named() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("host", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Float64Array::from(vec![0.5])), Arc::new(StringArray::from(vec!["a"]))],
    )
    .unwrap();
    let file = parquet_file(&batch);
    let err = read_table(file.path(), &TableSpec::default()).unwrap_err().to_string();
    assert!(err.contains("column 'host' has type Utf8, not a number"), "{err}");
}

#[test]
fn a_file_named_parquet_that_is_not_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.parquet");
    std::fs::write(&path, "a,b\n").unwrap();
    let err = read_table(&path, &TableSpec::default()).unwrap_err().to_string();
    assert!(err.contains("not a readable Parquet file") && err.contains("PAR1"), "{err}");
}
