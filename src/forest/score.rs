//! Scoring: walks every tree for a block of rows at once.
//!
//! Rows are walked in groups of [`LANES`]: for each tree, all the group's walks advance one level
//! per step, so the processor has that many independent loads in flight instead of one chain of
//! dependent ones. The walk is bound by instruction throughput, so each visit is kept to about eight
//! instructions: the position masked into the tree's fixed-size window (no clamp, no bounds check,
//! see `layout::NodeTable`), the left child, feature and threshold each loaded by one instruction,
//! and the row's value read with one addressing mode from a row copied at a fixed stride.
//! Rows are copied in chunks that stay in L1 while every tree walks them; each row still adds its
//! trees' path lengths in tree order, so the sums (and scores) do not depend on the chunking.
//! Large batches are walked through a copy of the trees laid out as complete trees instead
//! ([`HeapForest`], which compares integer keys of the values: 1.7× faster than this walk, http
//! on one core 217 ms against 375; the same scores to the bit), and split over the machine's cores.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use super::Forest;
use super::heap::{HeapForest, copy_keys};
use super::layout::{Feature, Features, WINDOW, leaf_parts};
use super::workers;

/// Rows walked in lock-step: enough independent walks to hide load latency, few enough to keep
/// their state in registers.
const LANES: usize = 8;

/// The stride, in values, of a row copied for the walk when the model has at most 256 features: a
/// `u8` feature then indexes it with no bounds check, and the value's address is one addressing mode
/// (row base + lane offset + 4 × feature). 16 values beyond 256 keep successive rows from landing
/// on the same few L1 sets (a 1 KiB stride would).
const ROW_STRIDE: usize = 256 + 16;

/// One row copied for the walk, each on its own cache lines: only the first `columns` values are used.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct PaddedRow(pub(super) [f32; ROW_STRIDE]);

thread_local! {
    /// The padded rows a thread copies its chunks into, kept from one call to the next (a value
    /// beyond a model's `columns` is never read, so what an earlier call left there is harmless).
    /// A fit scores its training rows through a full chunk, 136 KiB: allocated afresh at every
    /// fit, glibc served it from the heap once its first free had raised the mmap threshold, and
    /// the small allocations the detector keeps then split the freed block, so every fit left
    /// about 136 KiB of touched heap behind: 137 KiB of resident memory per series and model,
    /// three quarters of the detector's (`benches/detector_memory.rs`, README Cycle cost).
    static PADDED_CHUNK: RefCell<Vec<PaddedRow>> = const { RefCell::new(Vec::new()) };
}

/// Cache bytes that the copied rows of one chunk touch: half of a core's L1 data cache, which leaves
/// room for the tree being walked. Each tree is read once per chunk and walked for every row of it.
const CHUNK_BYTES: usize = 16 * 1024;

/// At most this many rows in a chunk, so that the padded rows' address space (1088 bytes each)
/// stays within the first-level TLB.
const MAX_CHUNK_ROWS: usize = 128;

/// Below this much work (rows × trees) per thread, a batch stays on fewer threads: about 2.5 ms on
/// one core, enough to pay for a parked helper's wake-up (see `workers`) even when it is slow.
const MIN_ROW_TREES_PER_THREAD: usize = 512 * 1024;

/// Blocks per thread when a batch is split over threads: enough that a thread starting late takes
/// fewer of them, few enough that claiming them costs nothing.
const BLOCKS_PER_THREAD: usize = 8;

/// From this much work (rows × trees) on, a batch is walked through complete trees
/// ([`HeapForest`]). Re-laying a default forest (100 trees) takes about 0.15 ms, and the complete
/// trees save 1.2–2.8 ns a row and tree (measured on 20,000 rows of 3, 9 and 36 columns), so the
/// re-laying pays for itself from about 120K rows × trees; this is four times that.
const MIN_ROW_TREES_FOR_HEAP: usize = 1 << 19;

/// The rows of a group as the walk reads them: `value(lane, feature)`.
trait GroupRows<F> {
    fn value(&self, lane: usize, feature: F) -> f32;
}

/// Padded rows, for `u8` features: the index is in bounds by type.
impl<const N: usize> GroupRows<u8> for &[PaddedRow; N] {
    #[inline(always)]
    fn value(&self, lane: usize, feature: u8) -> f32 {
        self[lane].0[usize::from(feature)]
    }
}

/// Rows as given (row-major, `columns` values each), for `u16` features (more than 256 columns).
struct PlainRows<'a> {
    values: &'a [f32],
    columns: usize,
}

impl GroupRows<u16> for PlainRows<'_> {
    #[inline(always)]
    fn value(&self, lane: usize, feature: u16) -> f32 {
        self.values[lane * self.columns + usize::from(feature)]
    }
}

/// One tree as the walk reads it.
trait TreeView<F> {
    /// Where every walk starts.
    fn root(&self) -> usize;
    /// The node a walk position designates (in bounds whatever the position).
    fn node(&self, at: usize) -> usize;
    fn threshold(&self, node: usize) -> f32;
    fn left(&self, node: usize) -> usize;
    fn feature(&self, node: usize) -> F;
}

/// A tree as the walk sees it.
enum View<'a, F> {
    Windowed(Windowed<'a, F>),
    Clamped(Clamped<'a, F>),
}

/// A tree seen through a window of exactly [`WINDOW`] entries (see `layout::NodeTable`): masking
/// the position is one `and`, and the fixed-size arrays need no bounds check.
struct Windowed<'a, F> {
    thresholds: &'a [f32; WINDOW],
    lefts: &'a [u16; WINDOW],
    features: &'a [F; WINDOW],
    root: usize,
}

impl<F: Feature> TreeView<F> for Windowed<'_, F> {
    #[inline(always)]
    fn root(&self) -> usize {
        self.root
    }
    #[inline(always)]
    fn node(&self, at: usize) -> usize {
        at & (WINDOW - 1)
    }
    #[inline(always)]
    fn threshold(&self, node: usize) -> f32 {
        self.thresholds[node]
    }
    #[inline(always)]
    fn left(&self, node: usize) -> usize {
        usize::from(self.lefts[node])
    }
    #[inline(always)]
    fn feature(&self, node: usize) -> F {
        self.features[node]
    }
}

/// A tree seen as its own slices (trees of more than [`WINDOW`] nodes, or small tables): walks
/// never leave the tree, but the compiler cannot know, and clamping the position is cheaper than
/// a bounds check's compare and branch.
struct Clamped<'a, F> {
    thresholds: &'a [f32],
    lefts: &'a [u16],
    features: &'a [F],
}

impl<F: Feature> TreeView<F> for Clamped<'_, F> {
    #[inline(always)]
    fn root(&self) -> usize {
        0
    }
    #[inline(always)]
    fn node(&self, at: usize) -> usize {
        at.min(self.thresholds.len() - 1)
    }
    #[inline(always)]
    fn threshold(&self, node: usize) -> f32 {
        self.thresholds[node]
    }
    #[inline(always)]
    fn left(&self, node: usize) -> usize {
        usize::from(self.lefts[..self.thresholds.len()][node])
    }
    #[inline(always)]
    fn feature(&self, node: usize) -> F {
        self.features[..self.thresholds.len()][node]
    }
}

/// Walks `N` rows `height` steps down one tree in lock-step; returns the threshold of the node each
/// walk ends on (a leaf's, which carries its depth and size). `N` is a constant so that the lane
/// loops unroll and each lane's position stays in a register.
#[inline(always)]
fn walk<F: Feature, const N: usize>(tree: &impl TreeView<F>, rows: &impl GroupRows<F>, height: usize) -> [f32; N] {
    let mut at = [tree.root(); N];
    for _ in 0..height {
        for (lane, at) in at.iter_mut().enumerate() {
            let node = tree.node(*at);
            let x = rows.value(lane, tree.feature(node));
            *at = tree.left(node) + usize::from(x > tree.threshold(node));
        }
    }
    at.map(|at| tree.threshold(tree.node(at)))
}

impl Forest {
    /// Adds each row's path length through every tree to `path_sums` (one entry per row).
    fn accumulate_path_lengths(&self, rows: &[f32], path_sums: &mut [f64], heap: Option<&HeapForest>) {
        match &self.nodes.features {
            Features::Narrow(features) => self.accumulate_padded(features, rows, path_sums, heap),
            Features::Wide(features) => self.accumulate_plain(features, rows, path_sums),
        }
    }

    /// For at most 256 features: rows are copied a chunk at a time into padded rows, and for each tree
    /// every group of the chunk is walked before the next tree, so the tree is read from L2 once per
    /// chunk and then hit in L1, while the chunk stays in L1. Each row still adds its trees' path
    /// lengths in tree order, so the sums (and scores) do not depend on the chunking.
    fn accumulate_padded(&self, features: &[u8], rows: &[f32], path_sums: &mut [f64], heap: Option<&HeapForest>) {
        let columns = self.columns;
        let lines_per_row = (columns * 4).div_ceil(64);
        let chunk_rows = (CHUNK_BYTES / (64 * lines_per_row) / LANES * LANES)
            .clamp(LANES, MAX_CHUNK_ROWS)
            // A small batch (the daemon's single rows) copies only its own rows; never 0 rows.
            .min(path_sums.len().max(1));
        PADDED_CHUNK.with_borrow_mut(|chunk| {
            if chunk.len() < chunk_rows {
                chunk.resize(chunk_rows, PaddedRow([0.0; ROW_STRIDE]));
            }
            for (chunk_input, chunk_sums) in rows.chunks(chunk_rows * columns).zip(path_sums.chunks_mut(chunk_rows)) {
                for (padded, row) in chunk.iter_mut().zip(chunk_input.chunks_exact(columns)) {
                    match heap {
                        Some(_) => copy_keys(row, padded),
                        None => padded.0[..columns].copy_from_slice(row),
                    }
                }
                let chunk = &chunk[..chunk_sums.len()];
                if let Some(heap) = heap {
                    heap.accumulate(chunk, chunk_sums);
                    continue;
                }
                for tree in 0..self.trees() {
                    let height = usize::from(self.heights[tree]);
                    match self.tree_view(tree, features) {
                        View::Windowed(view) => self.walk_padded(&view, height, chunk, chunk_sums),
                        View::Clamped(view) => self.walk_padded(&view, height, chunk, chunk_sums),
                    }
                }
            }
        });
    }

    /// Walks one tree for every row of `rows`, adding the path lengths to `sums`.
    #[inline(always)]
    fn walk_padded(&self, tree: &impl TreeView<u8>, height: usize, rows: &[PaddedRow], sums: &mut [f64]) {
        let groups = sums.len() / LANES;
        let (group_sums, tail_sums) = sums.split_at_mut(groups * LANES);
        let (group_rows, tail_rows) = rows.split_at(groups * LANES);
        for (rows, sums) in group_rows.chunks_exact(LANES).zip(group_sums.chunks_exact_mut(LANES)) {
            let rows: &[PaddedRow; LANES] = rows.try_into().expect("a whole group");
            self.add_leaves(&walk::<u8, LANES>(tree, &rows, height), sums);
        }
        // The last rows of the last chunk, fewer than a group, walk one at a time.
        for (row, sum) in tail_rows.iter().zip(tail_sums) {
            self.add_leaves(&walk::<u8, 1>(tree, &std::array::from_ref(row), height), std::slice::from_mut(sum));
        }
    }

    /// For more than 256 features: rows are walked where they are, a group at a time.
    fn accumulate_plain(&self, features: &[u16], rows: &[f32], path_sums: &mut [f64]) {
        for tree in 0..self.trees() {
            let height = usize::from(self.heights[tree]);
            match self.tree_view(tree, features) {
                View::Windowed(view) => self.walk_plain(&view, height, rows, path_sums),
                View::Clamped(view) => self.walk_plain(&view, height, rows, path_sums),
            }
        }
    }

    /// Walks one tree for every row of `rows` (row-major), adding the path lengths to `sums`.
    #[inline(always)]
    fn walk_plain(&self, tree: &impl TreeView<u16>, height: usize, rows: &[f32], sums: &mut [f64]) {
        let columns = self.columns;
        let groups = sums.len() / LANES;
        let (group_sums, tail_sums) = sums.split_at_mut(groups * LANES);
        let (group_rows, tail_rows) = rows.split_at(groups * LANES * columns);
        for (values, sums) in group_rows.chunks_exact(LANES * columns).zip(group_sums.chunks_exact_mut(LANES)) {
            self.add_leaves(&walk::<u16, LANES>(tree, &PlainRows { values, columns }, height), sums);
        }
        for (values, sum) in tail_rows.chunks_exact(columns).zip(tail_sums) {
            self.add_leaves(&walk::<u16, 1>(tree, &PlainRows { values, columns }, height), std::slice::from_mut(sum));
        }
    }

    /// Tree `tree`'s view: through its window when the table is windowed, else its own slices.
    #[inline(always)]
    fn tree_view<'a, F: Feature>(&'a self, tree: usize, features: &'a [F]) -> View<'a, F> {
        let (start, end) = (self.offsets[tree] as usize, self.offsets[tree + 1] as usize);
        let table = &self.nodes;
        if table.windowed {
            let window = table.window_start(start)..table.window_start(start) + WINDOW;
            View::Windowed(Windowed {
                thresholds: table.thresholds[window.clone()].try_into().expect("a window is in the table"),
                lefts: table.lefts[window.clone()].try_into().expect("a window is in the table"),
                features: features[window].try_into().expect("a window is in the table"),
                root: table.root_shift(start),
            })
        } else {
            View::Clamped(Clamped {
                thresholds: &table.thresholds[start..end],
                lefts: &table.lefts[start..end],
                features: &features[start..end],
            })
        }
    }

    /// Adds each leaf's path length (from its threshold) to the matching sum.
    #[inline(always)]
    fn add_leaves(&self, leaf_thresholds: &[f32], sums: &mut [f64]) {
        for (sum, &threshold) in sums.iter_mut().zip(leaf_thresholds) {
            *sum += self.leaf_threshold_path_length(threshold);
        }
    }

    /// A leaf's path length h = depth + c(size), from the payload of its NaN threshold.
    #[inline(always)]
    fn leaf_threshold_path_length(&self, threshold: f32) -> f64 {
        match leaf_parts(threshold) {
            Some((depth, size)) => self.leaf_path_length(depth, size),
            // Unreachable for a well-formed forest: every walk of `height` steps ends on a leaf,
            // which `persist` checks on load. Count it as the deepest possible path.
            None => f64::from(self.max_depth),
        }
    }

    /// The path length h = depth + c(size) of a leaf `depth` edges down, reached by `size` rows.
    #[inline(always)]
    pub(super) fn leaf_path_length(&self, depth: u32, size: usize) -> f64 {
        f64::from(depth) + self.average_path_by_size[size]
    }

    /// The anomaly score s(x) = 2^(−E[h(x)] / c(ψ)) of every row of `rows` (row-major,
    /// [`Forest::columns`] values each), using up to `threads` threads.
    pub(crate) fn score_rows(&self, rows: &[f32], threads: NonZeroUsize) -> Vec<f64> {
        let count = rows.len() / self.columns;
        let heap = if count * self.trees() >= MIN_ROW_TREES_FOR_HEAP { HeapForest::build(self) } else { None };
        self.score_rows_through(rows, threads, heap.as_ref())
    }

    /// [`Self::score_rows`], walking the complete trees of `heap` (built from this forest) when
    /// given, else the model's own layout. The scores are the same to the bit either way.
    pub(super) fn score_rows_through(
        &self,
        rows: &[f32],
        threads: NonZeroUsize,
        heap: Option<&HeapForest>,
    ) -> Vec<f64> {
        let count = rows.len() / self.columns;
        let mut scores = vec![0.0; count];
        let threads = threads.get().min(count * self.trees() / MIN_ROW_TREES_PER_THREAD).max(1);
        let scale = self.heights.len() as f64 * self.average_path_by_size[self.sample_size];
        // Sums of path lengths become scores in the thread that walked them.
        let score_block = |rows: &[f32], sums: &mut [f64]| {
            self.accumulate_path_lengths(rows, sums, heap);
            for s in sums {
                *s = if scale > 0.0 { (-*s / scale).exp2() } else { 0.5 };
            }
        };
        if threads == 1 {
            score_block(rows, &mut scores);
            return scores;
        }
        // Threads claim blocks one at a time, so a thread that starts late (a busy machine, or an
        // idle virtual CPU waking up) takes fewer blocks instead of holding up the others. Blocks
        // are whole chunks, so their groups are full.
        let block_rows = count.div_ceil(threads * BLOCKS_PER_THREAD).next_multiple_of(MAX_CHUNK_ROWS);
        let blocks = Mutex::new(rows.chunks(block_rows * self.columns).zip(scores.chunks_mut(block_rows)));
        let claim_and_score = || {
            loop {
                let block = blocks.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some((rows, sums)) = block else { return };
                score_block(rows, sums);
            }
        };
        workers::share(NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN), &claim_and_score);
        scores
    }
}
