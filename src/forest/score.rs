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
const LANES: usize = 8;
// The masked indexing in `accumulate_block` needs a power-of-two block.
const _: () = assert!(LANES.is_power_of_two());

/// Below this many rows per thread, starting a thread costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 4096;

impl Forest {
    /// Adds each row's path length through every tree to `path_sums` (one entry per row).
    fn accumulate_path_lengths(&self, rows: &[f32], path_sums: &mut [f64]) {
        let columns = self.columns;
        let full_blocks = path_sums.len() / LANES;
        let mut scratch = vec![0f32; columns.next_power_of_two() * LANES];
        let (full_rows, tail_rows) = rows.split_at(full_blocks * LANES * columns);
        let (full_sums, tail_sums) = path_sums.split_at_mut(full_blocks * LANES);
        for (block, sums) in full_rows.chunks_exact(LANES * columns).zip(full_sums.chunks_exact_mut(LANES)) {
            let sums: &mut [f64; LANES] = sums.try_into().unwrap_or_else(|_| unreachable!("chunks of LANES"));
            self.accumulate_block::<LANES>(block, sums, &mut scratch);
        }
        // The last, partial block walks one row at a time (N = 1 is a power of two too).
        for (row, sum) in tail_rows.chunks_exact(columns).zip(tail_sums) {
            self.accumulate_block::<1>(row, std::array::from_mut(sum), &mut scratch);
        }
    }

    /// Walks `N` rows through every tree in lock-step. `N` is a constant so that the lane loops
    /// unroll and each lane's position stays in a register.
    #[inline(always)]
    fn accumulate_block<const N: usize>(&self, block: &[f32], sums: &mut [f64; N], scratch: &mut [f32]) {
        let columns = self.columns;
        // The block, feature-major and padded to a power-of-two size, so that a masked index is
        // provably in bounds (no bounds check in the walk) and the lane's offset folds into the
        // address.
        let mask = columns.next_power_of_two() * N - 1;
        let by_feature = &mut scratch[..mask + 1];
        for lane in 0..N {
            for feature in 0..columns {
                by_feature[feature * N + lane] = block[lane * columns + feature];
            }
        }
        let by_feature = &by_feature[..mask + 1];
        for (tree, bounds) in self.offsets.windows(2).enumerate() {
            let nodes = &self.nodes[bounds[0] as usize..bounds[1] as usize];
            let mut at = [0usize; N];
            // Walks never leave the tree, but the compiler cannot know: clamping the index is
            // one instruction where a bounds check is a compare and a branch.
            let last = nodes.len() - 1;
            for _ in 0..self.heights[tree] {
                for lane in 0..N {
                    let node = nodes[at[lane].min(last)];
                    let x = by_feature[(usize::from(node.feature) * N + lane) & mask];
                    at[lane] = usize::from(node.left) + usize::from(x > node.threshold);
                }
            }
            for lane in 0..N {
                sums[lane] += self.leaf_path_length(nodes[at[lane]]);
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
