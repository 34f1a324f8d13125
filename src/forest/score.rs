//! Scoring: walks every tree for a block of rows at once.
//!
//! Rows are scored in blocks of [`LANES`]: for each tree, all the block's walks advance one level
//! per step, so the processor has that many independent loads in flight instead of one chain of
//! dependent ones. Trees are the outer loop within a block, and a block is small, so both the rows
//! and the current tree stay in L1. Large batches are split over the machine's cores.

use std::num::NonZeroUsize;
use std::thread;

use super::Forest;
use super::layout::Node;

/// Rows walked in lock-step: enough independent walks to hide load latency, few enough to keep
/// their state in registers and L1.
const LANES: usize = 16;

/// Below this many rows per thread, starting a thread costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 4096;

impl Forest {
    /// Adds each row's path length through every tree to `path_sums` (one entry per row).
    fn accumulate_path_lengths(&self, rows: &[f32], path_sums: &mut [f64]) {
        let columns = self.columns;
        let mut blocks = rows.chunks(LANES * columns).zip(path_sums.chunks_mut(LANES));
        for (block, sums) in &mut blocks {
            let lanes = sums.len();
            for tree in 0..self.heights.len() {
                let nodes = &self.nodes[self.offsets[tree] as usize..self.offsets[tree + 1] as usize];
                let mut at = [0u16; LANES];
                for _ in 0..self.heights[tree] {
                    for lane in 0..lanes {
                        let node = nodes[usize::from(at[lane])];
                        let x = block[lane * columns + usize::from(node.feature)];
                        at[lane] = node.left + u16::from(x > node.threshold);
                    }
                }
                for lane in 0..lanes {
                    sums[lane] += self.leaf_path_length(nodes[usize::from(at[lane])]);
                }
            }
        }
    }

    fn leaf_path_length(&self, leaf: Node) -> f64 {
        match leaf.leaf_parts() {
            Some((depth, size)) => f64::from(depth) + self.average_path_by_size[size],
            // Unreachable for a well-formed forest: every walk of `height` steps ends on a leaf,
            // which `persist` checks on load. Count it as the deepest possible path.
            None => f64::from(self.max_depth),
        }
    }

    /// The anomaly score s(x) = 2^(−E[h(x)] / c(ψ)) of every row of `rows` (row-major,
    /// [`Forest::columns`] values each), using up to `threads` threads.
    pub(crate) fn score_rows(&self, rows: &[f32], threads: NonZeroUsize) -> Vec<f64> {
        let count = rows.len() / self.columns;
        let mut sums = vec![0.0; count];
        let threads = threads.get().min(count / MIN_ROWS_PER_THREAD).max(1);
        if threads == 1 {
            self.accumulate_path_lengths(rows, &mut sums);
        } else {
            // Chunks are whole multiples of LANES so that each thread's blocks are full.
            let per_thread = count.div_ceil(threads).next_multiple_of(LANES);
            thread::scope(|scope| {
                for (rows, sums) in rows.chunks(per_thread * self.columns).zip(sums.chunks_mut(per_thread)) {
                    scope.spawn(move || self.accumulate_path_lengths(rows, sums));
                }
            });
        }
        let scale = self.heights.len() as f64 * self.average_path_by_size[self.sample_size];
        for s in &mut sums {
            *s = if scale > 0.0 { (-*s / scale).exp2() } else { 0.5 };
        }
        sums
    }
}
