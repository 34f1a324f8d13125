//! Scoring: walks every tree for a block of rows at once.
//!
//! Rows are walked in groups of [`LANES`]: for each tree, all the group's walks advance one level
//! per step, so the processor has that many independent loads in flight instead of one chain of
//! dependent ones. Groups are gathered into chunks of up to [`CHUNK_VALUES`] feature values, and
//! for each tree every group of the chunk is walked before the next tree: the tree is read from
//! L2 once per chunk and then hit in L1, while the chunk itself stays in L1. Each row still adds
//! its trees' path lengths in tree order, so the sums (and scores) do not depend on the chunking.
//! Large batches are split over the machine's cores.

use std::num::NonZeroUsize;
use std::thread;

use super::Forest;
use super::layout::{Link, Links};

/// Rows walked in lock-step: enough independent walks to hide load latency, few enough to keep
/// their state in registers.
const LANES: usize = 8;
// The masked indexing in `walk` needs a power-of-two group.
const _: () = assert!(LANES.is_power_of_two());

/// Feature values (f32) in one chunk of groups: 16 KiB, half of a core's L1 data cache, leaves room
/// for the tree being walked.
const CHUNK_VALUES: usize = 4096;

/// Below this much work (rows × trees) per thread, starting a thread costs more than it saves on a
/// loaded machine: about 10 ms on one core.
const MIN_ROW_TREES_PER_THREAD: usize = 2 << 20;

impl Forest {
    /// Adds each row's path length through every tree to `path_sums` (one entry per row).
    fn accumulate_path_lengths(&self, rows: &[f32], path_sums: &mut [f64]) {
        match &self.nodes.links {
            Links::Narrow(links) => self.accumulate_with(links, rows, path_sums),
            Links::Wide(links) => self.accumulate_with(links, rows, path_sums),
        }
    }

    fn accumulate_with<L: Link>(&self, links: &[L], rows: &[f32], path_sums: &mut [f64]) {
        let columns = self.columns;
        // One group, feature-major and padded to a power-of-two size, so that a masked index is
        // provably in bounds (no bounds check in the walk) and the lane's offset folds into the
        // address.
        let group_values = columns.next_power_of_two() * LANES;
        let groups_per_chunk = (CHUNK_VALUES / group_values).max(1);
        let chunk_rows = groups_per_chunk * LANES;
        let mut chunk = vec![0f32; group_values * groups_per_chunk];
        for (chunk_input, chunk_sums) in rows.chunks(chunk_rows * columns).zip(path_sums.chunks_mut(chunk_rows)) {
            let groups = chunk_sums.len() / LANES;
            for (group, input) in chunk_input.chunks_exact(LANES * columns).enumerate() {
                transpose::<LANES>(input, columns, &mut chunk[group * group_values..(group + 1) * group_values]);
            }
            let (group_sums, tail_sums) = chunk_sums.split_at_mut(groups * LANES);
            for tree in 0..self.trees() {
                let (thresholds, tree_links, height) = self.tree(tree, links);
                for (group, sums) in group_sums.chunks_exact_mut(LANES).enumerate() {
                    let by_feature = &chunk[group * group_values..(group + 1) * group_values];
                    let at = walk::<L, LANES>(thresholds, tree_links, by_feature, height);
                    for (sum, at) in sums.iter_mut().zip(at) {
                        *sum += self.leaf_path_length(thresholds[at]);
                    }
                }
            }
            // The last rows of the last chunk, fewer than a group, walk one at a time.
            let tail_input = &chunk_input[groups * LANES * columns..];
            let single = &mut chunk[..columns.next_power_of_two()];
            for (row, sum) in tail_input.chunks_exact(columns).zip(tail_sums) {
                transpose::<1>(row, columns, single);
                for tree in 0..self.trees() {
                    let (thresholds, tree_links, height) = self.tree(tree, links);
                    let [at] = walk::<L, 1>(thresholds, tree_links, single, height);
                    *sum += self.leaf_path_length(thresholds[at]);
                }
            }
        }
    }

    /// Tree `tree`'s thresholds and links (slices of equal length) and its height.
    #[inline(always)]
    fn tree<'a, L>(&'a self, tree: usize, links: &'a [L]) -> (&'a [f32], &'a [L], usize) {
        let range = self.offsets[tree] as usize..self.offsets[tree + 1] as usize;
        let thresholds = &self.nodes.thresholds[range.clone()];
        (thresholds, &links[range][..thresholds.len()], usize::from(self.heights[tree]))
    }

    /// A leaf's path length h = depth + c(size), from the payload of its NaN threshold.
    #[inline(always)]
    fn leaf_path_length(&self, threshold: f32) -> f64 {
        match super::layout::leaf_parts(threshold) {
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
        let threads = threads.get().min(count * self.trees() / MIN_ROW_TREES_PER_THREAD).max(1);
        if threads == 1 {
            self.accumulate_path_lengths(rows, &mut sums);
        } else {
            // Chunks are whole multiples of LANES so that each thread's groups are full.
            let per_thread = count.div_ceil(threads).next_multiple_of(LANES);
            thread::scope(|scope| {
                let mut parts = rows.chunks(per_thread * self.columns).zip(sums.chunks_mut(per_thread));
                // The calling thread scores the first part itself: one thread fewer to start.
                let first = parts.next();
                for (rows, sums) in parts {
                    scope.spawn(move || self.accumulate_path_lengths(rows, sums));
                }
                if let Some((rows, sums)) = first {
                    self.accumulate_path_lengths(rows, sums);
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

/// Copies `N` rows of `columns` values from `rows` (row-major) into `by_feature` (feature-major:
/// feature `f` of lane `l` at `f * N + l`).
#[inline(always)]
fn transpose<const N: usize>(rows: &[f32], columns: usize, by_feature: &mut [f32]) {
    for (lane, row) in rows.chunks_exact(columns).take(N).enumerate() {
        for (feature, &value) in row.iter().enumerate() {
            by_feature[feature * N + lane] = value;
        }
    }
}

/// Walks `N` rows (feature-major in `by_feature`, whose length is a power of two) `height` steps
/// down one tree in lock-step; returns the node each walk ends on. `N` is a constant so that the
/// lane loops unroll and each lane's position stays in a register.
#[inline(always)]
fn walk<L: Link, const N: usize>(thresholds: &[f32], links: &[L], by_feature: &[f32], height: usize) -> [usize; N] {
    let mask = by_feature.len() - 1;
    let by_feature = &by_feature[..mask + 1];
    let links = &links[..thresholds.len()];
    // Walks never leave the tree, but the compiler cannot know: clamping the index is one
    // instruction where a bounds check is a compare and a branch.
    let last = thresholds.len() - 1;
    let mut at = [0usize; N];
    for _ in 0..height {
        for lane in 0..N {
            let node = at[lane].min(last);
            let link = links[node];
            let x = by_feature[(link.feature() * N + lane) & mask];
            at[lane] = link.left() + usize::from(x > thresholds[node]);
        }
    }
    at.map(|node| node.min(last))
}
