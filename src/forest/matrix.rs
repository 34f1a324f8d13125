//! The forest's input: a dense, row-major table of finite `f32` values.

use super::ForestError;

/// Rows of feature values, stored row-major so that scoring reads one row's features together.
///
/// Values are `f32`, as scikit-learn's trees use: half the memory of `f64`, twice the rows per
/// cache line, and the precision of a split threshold is no finer than that anyway. Every value is
/// finite: NaN and ±Inf are refused when the matrix is built (see [`Matrix::from_row_major`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    values: Vec<f32>,
    rows: usize,
    columns: usize,
}

impl Matrix {
    /// Builds a matrix from `values` laid out row after row, `columns` values each.
    ///
    /// Fails when `columns` is 0 or does not divide `values.len()`, or when a value is NaN or
    /// infinite: an isolation forest has no meaningful place to route them, so we refuse them
    /// where they enter, with the row and column, instead of scoring garbage.
    pub fn from_row_major(values: Vec<f32>, columns: usize) -> Result<Self, ForestError> {
        if columns == 0 {
            return Err(ForestError::NoFeatures);
        }
        if !values.len().is_multiple_of(columns) {
            return Err(ForestError::RaggedValues { values: values.len(), columns });
        }
        if let Some(position) = values.iter().position(|v| !v.is_finite()) {
            return Err(ForestError::NonFinite { row: position / columns, column: position % columns });
        }
        let rows = values.len() / columns;
        Ok(Self { values, rows, columns })
    }

    /// Builds a matrix from `f64` rows, converting each value to `f32` (round to nearest, as
    /// numpy's `astype(float32)`); a value beyond `f32`'s range is refused like ±Inf.
    pub fn from_rows_f64<R: AsRef<[f64]>>(rows: &[R], columns: usize) -> Result<Self, ForestError> {
        let mut values = Vec::with_capacity(rows.len() * columns);
        for (index, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != columns {
                return Err(ForestError::RowLength { row: index, found: row.len(), columns });
            }
            values.extend(row.iter().map(|&v| v as f32));
        }
        Self::from_row_major(values, columns)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of feature columns.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// One row's features.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.values[index * self.columns..(index + 1) * self.columns]
    }

    /// All values, row after row.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nan_and_infinity_with_position() {
        let err = Matrix::from_row_major(vec![1.0, 2.0, f32::NAN, 4.0], 2).unwrap_err();
        assert!(matches!(err, ForestError::NonFinite { row: 1, column: 0 }), "{err}");
        let err = Matrix::from_rows_f64(&[[1.0, 1e300]], 2).unwrap_err();
        assert!(matches!(err, ForestError::NonFinite { row: 0, column: 1 }), "{err}");
    }

    #[test]
    fn refuses_ragged_input_and_zero_columns() {
        assert!(matches!(Matrix::from_row_major(vec![1.0; 3], 2), Err(ForestError::RaggedValues { .. })));
        assert!(matches!(Matrix::from_row_major(vec![], 0), Err(ForestError::NoFeatures)));
        let rows: Vec<Vec<f64>> = vec![vec![1.0, 2.0], vec![3.0]];
        assert!(matches!(Matrix::from_rows_f64(&rows, 2), Err(ForestError::RowLength { row: 1, .. })));
    }

    #[test]
    fn rows_are_row_major() {
        let m = Matrix::from_row_major(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3).unwrap();
        assert_eq!((m.rows(), m.columns()), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
    }
}
