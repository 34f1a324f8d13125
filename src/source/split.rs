//! Splitting a range query into chunks the server accepts, and merging their answers.
//!
//! Prometheus refuses a range query whose `(end - start) / step` exceeds 11,000. The chunks here
//! follow the query's own step grid: chunk `k` evaluates at `start + (k * 11,000 + i) * step`, so
//! every grid point in `[start, end]` is asked for exactly once and the merged series equals what
//! one unlimited query would have given.

use std::collections::HashMap;

use super::response::{Labels, RangeMatrix, Series};

/// The most evaluation points per series that one range query asks for.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

/// The most evaluation points per series one range is split for: 910 queries, nearly five years
/// at a 15-second step. A longer range is a mistake (a step of 1ms, a start in 1970), and asking
/// for it would reserve gigabytes and send queries for hours.
pub const MAX_RANGE_POINTS: i64 = 10_000_000;

/// How many evaluation points `[start_ms, end_ms]` has at `step_ms` (0 for an empty range).
pub fn range_points(start_ms: i64, end_ms: i64, step_ms: i64) -> i128 {
    if end_ms < start_ms || step_ms <= 0 {
        return 0;
    }
    (i128::from(end_ms) - i128::from(start_ms)) / i128::from(step_ms) + 1
}

/// One range query's bounds, in milliseconds since the epoch, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First evaluation time.
    pub start_ms: i64,
    /// Last evaluation time, on the step grid.
    pub end_ms: i64,
}

/// Splits `[start_ms, end_ms]` at `step_ms` into chunks of at most [`MAX_POINTS_PER_QUERY`]
/// points each. Each chunk's end lies on the grid, so no chunk asks for a point past `end_ms`.
/// Gives no chunk when `end_ms < start_ms` or `step_ms <= 0`.
pub fn split_range(start_ms: i64, end_ms: i64, step_ms: i64) -> Vec<Chunk> {
    if end_ms < start_ms || step_ms <= 0 {
        return Vec::new();
    }
    // i128: the span times the step count can overflow i64 for absurd inputs.
    let (start, step) = (i128::from(start_ms), i128::from(step_ms));
    let last_index = range_points(start_ms, end_ms, step_ms) - 1;
    let points_per_chunk = i128::from(MAX_POINTS_PER_QUERY);
    let mut chunks = Vec::with_capacity(usize::try_from(last_index / points_per_chunk + 1).unwrap_or(0));
    let mut first_index = 0;
    while first_index <= last_index {
        let chunk_last_index = (first_index + points_per_chunk - 1).min(last_index);
        // Both values lie within [start_ms, end_ms], so they fit in i64.
        chunks.push(Chunk {
            start_ms: (start + first_index * step) as i64,
            end_ms: (start + chunk_last_index * step) as i64,
        });
        first_index = chunk_last_index + 1;
    }
    chunks
}

/// Concatenates the answers of consecutive chunks, series by series, keeping the order in which
/// series first appeared. A point whose timestamp is not after the series' last one is dropped,
/// so a server that answers a chunk boundary twice does not duplicate it.
pub(super) fn merge_chunks(answers: impl IntoIterator<Item = RangeMatrix>) -> RangeMatrix {
    let mut merged = RangeMatrix::default();
    let mut position_of: HashMap<Labels, usize> = HashMap::new();
    for answer in answers {
        merged.warnings.merge(answer.warnings);
        for Series { labels, points } in answer.series {
            match position_of.get(&labels) {
                Some(&position) => {
                    let series = &mut merged.series[position];
                    let last = series.points.last().map_or(i64::MIN, |p| p.timestamp_ms);
                    series.points.extend(points.into_iter().skip_while(|p| p.timestamp_ms <= last));
                }
                None => {
                    position_of.insert(labels.clone(), merged.series.len());
                    merged.series.push(Series { labels, points });
                }
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::source::response::{Point, Warnings};

    #[test]
    fn short_range_is_one_chunk() {
        assert_eq!(split_range(0, 60_000, 15_000), [Chunk { start_ms: 0, end_ms: 60_000 }]);
        assert_eq!(split_range(5, 5, 1), [Chunk { start_ms: 5, end_ms: 5 }]);
    }

    #[test]
    fn chunk_ends_stay_on_the_step_grid() {
        // 10s step, end not on the grid: the last point asked for is 20s.
        assert_eq!(split_range(0, 25_000, 10_000), [Chunk { start_ms: 0, end_ms: 20_000 }]);
    }

    #[test]
    fn eleven_thousand_and_one_points_make_two_chunks() {
        let chunks = split_range(0, 11_000, 1);
        assert_eq!(chunks, [Chunk { start_ms: 0, end_ms: 10_999 }, Chunk { start_ms: 11_000, end_ms: 11_000 }]);
    }

    #[test]
    fn empty_or_reversed_ranges_give_no_chunk() {
        assert!(split_range(10, 9, 1).is_empty());
        assert!(split_range(0, 10, 0).is_empty());
    }

    fn series(name: &str, times: &[i64]) -> Series {
        Series {
            labels: Labels::from([("application".to_owned(), name.to_owned())]),
            points: times.iter().map(|&t| Point { timestamp_ms: t, value: t as f64 }).collect(),
        }
    }

    #[test]
    fn merging_joins_series_and_drops_a_repeated_boundary() {
        let first =
            RangeMatrix { series: vec![series("a", &[1, 2]), series("b", &[2])], warnings: Warnings::default() };
        let second = RangeMatrix {
            series: vec![series("b", &[2, 3]), series("c", &[3]), series("a", &[3])],
            warnings: Warnings { messages: vec!["w".into()], partial: true },
        };
        let merged = merge_chunks([first, second]);
        assert_eq!(merged.series, [series("a", &[1, 2, 3]), series("b", &[2, 3]), series("c", &[3])]);
        assert!(merged.warnings.partial);
    }

    proptest! {
        #[test]
        fn chunks_cover_the_grid_exactly_once(
            start in -1_000_000_000i64..1_000_000_000,
            span in 0i64..100_000_000,
            step in 1i64..100_000,
        ) {
            let end = start + span;
            let chunks = split_range(start, end, step);
            prop_assert_eq!(chunks[0].start_ms, start);
            let mut expected_next = start;
            for chunk in &chunks {
                prop_assert_eq!(chunk.start_ms, expected_next, "gap or overlap");
                prop_assert!(chunk.end_ms >= chunk.start_ms);
                prop_assert_eq!((chunk.end_ms - chunk.start_ms) % step, 0);
                prop_assert!((chunk.end_ms - chunk.start_ms) / step < MAX_POINTS_PER_QUERY, "chunk too large");
                expected_next = chunk.end_ms + step;
            }
            let last = chunks[chunks.len() - 1].end_ms;
            prop_assert!(last <= end && last + step > end, "last point {} for end {}", last, end);
        }

        #[test]
        fn merged_chunks_equal_one_unlimited_answer(
            span in 0i64..40_000,
            step in 1i64..4,
            repeat_boundary in any::<bool>(),
        ) {
            let grid: Vec<i64> = (0..=span / step).map(|i| i * step).collect();
            let answers = split_range(0, span, step).into_iter().map(|chunk| {
                // A server may repeat the previous chunk's last point; the merge must drop it.
                let from = if repeat_boundary { chunk.start_ms - step } else { chunk.start_ms };
                let times: Vec<i64> = grid.iter().copied().filter(|t| (from..=chunk.end_ms).contains(t)).collect();
                RangeMatrix { series: vec![series("a", &times)], warnings: Warnings::default() }
            });
            let merged = merge_chunks(answers);
            prop_assert_eq!(merged.series, vec![series("a", &grid)]);
        }
    }
}
