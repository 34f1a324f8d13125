//! The isolation forest of Liu, Ting and Zhou (ICDM 2008), written for this project.
//!
//! An isolation forest scores how easy a point is to separate from the rest: trees split the data
//! at random, and anomalies end up alone after few splits. It needs no labels and no distance
//! metric, fits in milliseconds, and scores in nanoseconds, which is why the daemon can keep one
//! model per (service, signal) series.
//!
//! The algorithm follows scikit-learn's `IsolationForest` closely (sampling, the splitter, the
//! handling of constant features, the path-length normalisation and the `contamination` offset),
//! so its figures can be compared with scikit-learn's on the same data. Differences: our own
//! random generator (so a seed means the same forest on every machine and version), and NaN or
//! infinite inputs are refused when a [`Matrix`] is built rather than routed.
//!
//! - [`Forest::fit`] grows the trees (on all cores for large forests);
//! - [`Forest::score_batch`] and [`Forest::score_row`] give s(x) in (0, 1], higher = more
//!   anomalous; [`Forest::threshold`] is the score above which a row is called anomalous;
//! - [`Forest::to_bytes`] and [`Forest::from_bytes`] persist a model (see [`persist`]).

mod build;
mod heap;
mod layout;
mod matrix;
pub mod persist;
mod rng;
mod score;
mod workers;

use std::borrow::Cow;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::thread;

pub use layout::{MAX_FEATURES, MAX_SAMPLE_SIZE, average_path_length, height_limit};
pub use matrix::Matrix;
pub use workers::start as start_workers;

use build::TreeGrower;
use layout::{Node, NodeTable};
use rng::ForestRng;

/// What can go wrong building input for, fitting, or loading a forest.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForestError {
    /// The input has no rows.
    #[error("no rows to fit on")]
    Empty,
    /// The input has no feature columns.
    #[error("no feature columns")]
    NoFeatures,
    /// More feature columns than a model can index.
    #[error("{columns} feature columns: at most {MAX_FEATURES} are supported")]
    TooManyFeatures {
        /// Columns given.
        columns: usize,
    },
    /// A flat value buffer that is not a whole number of rows.
    #[error("{values} values do not make whole rows of {columns} columns")]
    RaggedValues {
        /// Values given.
        values: usize,
        /// Columns per row.
        columns: usize,
    },
    /// A row with the wrong number of values.
    #[error("row {row} has {found} values, expected {columns}")]
    RowLength {
        /// Row index, from 0.
        row: usize,
        /// Values in that row.
        found: usize,
        /// Columns expected.
        columns: usize,
    },
    /// NaN, ±Inf, or a value too large for `f32`.
    #[error("row {row}, column {column}: value is NaN, infinite or beyond float32 range")]
    NonFinite {
        /// Row index, from 0.
        row: usize,
        /// Column index, from 0.
        column: usize,
    },
    /// A parameter out of its range.
    #[error("invalid parameter {name}: {problem}")]
    InvalidParameter {
        /// The parameter's name, as the CLI and config spell it.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Scoring rows with a different number of columns than the model was fitted on.
    #[error("model was fitted on {expected} features, rows have {found}")]
    FeatureMismatch {
        /// Features of the model.
        expected: usize,
        /// Features of the rows.
        found: usize,
    },
    /// A persisted model that cannot be read (see [`persist`]).
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
}

/// Where the decision threshold on the score lies.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Contamination {
    /// The paper's rule: a row is anomalous when s(x) > 0.5.
    #[default]
    Auto,
    /// The expected share of anomalies in the training data, in (0, 0.5]: the threshold is the
    /// score at that upper percentile of the training rows' scores.
    Fraction(f64),
}

/// How to fit a forest. The defaults are the paper's and scikit-learn's.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestParams {
    /// Number of trees, t (default 100).
    pub trees: usize,
    /// Rows drawn, without replacement, for each tree: ψ. `None` means min(256, n).
    pub sample_size: Option<usize>,
    /// Seed of the random streams; the same seed and data give the same forest everywhere.
    pub seed: u64,
    /// Decision threshold rule.
    pub contamination: Contamination,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self { trees: 100, sample_size: None, seed: 0, contamination: Contamination::Auto }
    }
}

impl ForestParams {
    /// Checks the parameters on their own (before any data is seen).
    pub fn validate(&self) -> Result<(), ForestError> {
        let invalid = |name, problem: &str| Err(ForestError::InvalidParameter { name, problem: problem.to_owned() });
        if self.trees == 0 {
            return invalid("trees", "must be at least 1");
        }
        if self.trees > MAX_TREES {
            return invalid("trees", &format!("must be at most {MAX_TREES}"));
        }
        match self.sample_size {
            Some(0) => return invalid("sample-size", "must be at least 1"),
            Some(n) if n > MAX_SAMPLE_SIZE => {
                return invalid("sample-size", &format!("must be at most {MAX_SAMPLE_SIZE}"));
            }
            _ => {}
        }
        if let Contamination::Fraction(f) = self.contamination
            && !(f > 0.0 && f <= 0.5)
        {
            return invalid("contamination", "must be 'auto' or a fraction in (0, 0.5]");
        }
        Ok(())
    }
}

/// A fitted isolation forest.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    /// Every tree's nodes, tree after tree, packed for scoring.
    nodes: NodeTable,
    /// Where each tree starts in `nodes`, plus the end: `trees + 1` entries.
    offsets: Vec<u32>,
    /// Each tree's height (the depth of its deepest leaf).
    heights: Vec<u8>,
    /// Feature columns the model was fitted on.
    columns: usize,
    /// ψ actually used: min(requested, rows).
    sample_size: usize,
    /// The tree height limit, ceil(log2(max(ψ, 2))).
    max_depth: u32,
    /// Rows the model was fitted on.
    training_rows: usize,
    /// Seed the model was fitted with.
    seed: u64,
    /// The score above which a row is anomalous.
    threshold: f64,
    /// c(n) for n in 0..=ψ: a leaf's expected remaining depth, looked up rather than recomputed.
    /// Shared by every model with ψ ≤ [`SHARED_PATH_TABLE_SIZE`] (the defaults among them), so a
    /// daemon holding thousands of models keeps one copy; larger ψ own theirs.
    average_path_by_size: Cow<'static, [f64]>,
}

/// The largest ψ whose c(n) table is shared: scikit-learn's default, and above the daemon's.
const SHARED_PATH_TABLE_SIZE: usize = 256;

/// c(n) for n in 0..=ψ, shared by every model up to [`SHARED_PATH_TABLE_SIZE`].
fn average_path_table(sample_size: usize) -> Cow<'static, [f64]> {
    static SHARED: LazyLock<Vec<f64>> =
        LazyLock::new(|| (0..=SHARED_PATH_TABLE_SIZE).map(average_path_length).collect());
    if sample_size <= SHARED_PATH_TABLE_SIZE {
        Cow::Borrowed(&SHARED[..=sample_size])
    } else {
        Cow::Owned((0..=sample_size).map(average_path_length).collect())
    }
}

/// The most trees a forest takes: a thousand times the default, far past where more trees change
/// the scores, and small enough that a mistyped count is refused instead of reserving gigabytes.
pub const MAX_TREES: usize = 100_000;

/// Below this many sampled rows (trees × ψ) per thread, fitting stays on fewer threads: about
/// 0.1 ms of work on one core, several times what waking a parked helper costs (see `workers`).
const MIN_TREE_ROWS_PER_THREAD: usize = 4 * 1024;

/// The machine's cores: the default for fitting and batch scoring.
pub fn available_threads() -> NonZeroUsize {
    thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

impl Forest {
    /// Fits a forest on every row of `data`, using all cores.
    pub fn fit(data: &Matrix, params: &ForestParams) -> Result<Self, ForestError> {
        Self::fit_with_threads(data, params, available_threads())
    }

    /// Fits a forest with at most `threads` threads. The result does not depend on `threads`.
    pub fn fit_with_threads(data: &Matrix, params: &ForestParams, threads: NonZeroUsize) -> Result<Self, ForestError> {
        params.validate()?;
        if data.rows() == 0 {
            return Err(ForestError::Empty);
        }
        if data.rows() >= u32::MAX as usize {
            // Sampled rows are indexed with 32 bits, which keeps the fitting buffers small.
            return Err(ForestError::InvalidParameter {
                name: "rows",
                problem: format!("{} rows: at most 4294967294", data.rows()),
            });
        }
        if data.columns() > MAX_FEATURES {
            return Err(ForestError::TooManyFeatures { columns: data.columns() });
        }
        let sample_size = params.sample_size.unwrap_or(256).min(data.rows());
        let max_depth = height_limit(sample_size);

        // A default forest (100 trees, ψ = 256) fits in about 0.6 ms on one core: short enough that
        // only helpers already parked can share it, not threads started for it (see `workers`).
        let threads = threads.get().min(params.trees * sample_size / MIN_TREE_ROWS_PER_THREAD).max(1);
        let grow = TreeRun { data, sample_size, max_depth, seed: params.seed };
        let grown = if threads == 1 { grow.trees(0..params.trees) } else { grow.shared(params.trees, threads) };

        let mut forest = Self::assemble(grown, data.columns(), sample_size, data.rows(), params.seed);
        forest.threshold = match params.contamination {
            Contamination::Auto => 0.5,
            Contamination::Fraction(fraction) => {
                let mut training_scores = forest.score_rows(data.values(), threads_nonzero(threads));
                upper_percentile(&mut training_scores, fraction)
            }
        };
        Ok(forest)
    }

    fn assemble(grown: GrownTrees, columns: usize, sample_size: usize, training_rows: usize, seed: u64) -> Self {
        let GrownTrees { nodes, offsets, heights } = grown;
        Self::from_parts(&nodes, offsets, heights, columns, sample_size, training_rows, seed, 0.5)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        nodes: &[Node],
        offsets: Vec<u32>,
        heights: Vec<u8>,
        columns: usize,
        sample_size: usize,
        training_rows: usize,
        seed: u64,
        threshold: f64,
    ) -> Self {
        Self {
            nodes: NodeTable::pack(nodes, &offsets, columns),
            offsets,
            heights,
            columns,
            sample_size,
            max_depth: height_limit(sample_size),
            training_rows,
            seed,
            threshold,
            average_path_by_size: average_path_table(sample_size),
        }
    }

    /// Scores every row of `data`, in order, using all cores on large batches.
    pub fn score_batch(&self, data: &Matrix) -> Result<Vec<f64>, ForestError> {
        self.score_batch_with_threads(data, available_threads())
    }

    /// Scores every row of `data` with at most `threads` threads.
    pub fn score_batch_with_threads(&self, data: &Matrix, threads: NonZeroUsize) -> Result<Vec<f64>, ForestError> {
        self.check_columns(data.columns())?;
        Ok(self.score_rows(data.values(), threads))
    }

    /// Scores one row. Cheap enough to call per point: no allocation beyond the result, no threads.
    pub fn score_row(&self, row: &[f32]) -> Result<f64, ForestError> {
        self.check_columns(row.len())?;
        if let Some(column) = row.iter().position(|v| !v.is_finite()) {
            return Err(ForestError::NonFinite { row: 0, column });
        }
        Ok(self.score_rows(row, NonZeroUsize::MIN)[0])
    }

    fn check_columns(&self, found: usize) -> Result<(), ForestError> {
        if found == self.columns { Ok(()) } else { Err(ForestError::FeatureMismatch { expected: self.columns, found }) }
    }

    /// The score above which a row is anomalous: 0.5 for [`Contamination::Auto`], else the
    /// training scores' percentile.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Whether a score is above the decision threshold.
    pub fn is_anomalous(&self, score: f64) -> bool {
        score > self.threshold
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.heights.len()
    }

    /// Feature columns the model expects.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// ψ: rows each tree was grown on.
    pub fn sample_size(&self) -> usize {
        self.sample_size
    }

    /// Rows the model was fitted on.
    pub fn training_rows(&self) -> usize {
        self.training_rows
    }

    /// The seed the model was fitted with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Tree `tree`'s nodes, unpacked (for writing the model file, and for checks).
    pub(crate) fn tree_nodes(&self, tree: usize) -> impl Iterator<Item = Node> + '_ {
        let (start, end) = (self.offsets[tree] as usize, self.offsets[tree + 1] as usize);
        (start..end).map(move |index| self.nodes.node(start, index))
    }

    /// Total nodes (splits and leaves) over all trees.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes the model occupies in memory (nodes, tree index, its own lookup table if any, and the
    /// struct): 7 bytes a node on at most 256 features, else 8 (see `layout`). The c(n) table shared
    /// by models with ψ ≤ 256 (2 KiB once per process) is not counted.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.nodes.bytes()
            + self.offsets.len() * 4
            + self.heights.len()
            + match &self.average_path_by_size {
                Cow::Borrowed(_) => 0,
                Cow::Owned(table) => table.len() * 8,
            }
    }
}

/// A run of consecutive trees, grown: their nodes tree after tree (child indexes count from each
/// tree's first node), where each tree starts plus the end, and each tree's height.
struct GrownTrees {
    nodes: Vec<Node>,
    offsets: Vec<u32>,
    heights: Vec<u8>,
}

/// Nodes reserved up front at most: enough for 100 trees at ψ = 256 however they grow, so a default
/// fit never moves its nodes; larger forests grow the vector as they need.
const MAX_RESERVED_NODES: usize = 1 << 16;

/// Trees claimed at a time when threads share a fit.
const TREES_PER_CLAIM: usize = 4;

impl GrownTrees {
    /// Empty vectors with room for `trees` trees of at most `most_nodes` nodes each.
    fn with_room(trees: usize, most_nodes: usize) -> Self {
        let mut offsets = Vec::with_capacity(trees + 1);
        offsets.push(0);
        Self {
            nodes: Vec::with_capacity((trees * most_nodes).min(MAX_RESERVED_NODES)),
            offsets,
            heights: Vec::with_capacity(trees),
        }
    }

    /// Copies trees `trees` (indexes within `from`) to the end of these.
    fn append(&mut self, from: &GrownTrees, trees: Range<usize>) {
        let (start, end) = (from.offsets[trees.start] as usize, from.offsets[trees.end] as usize);
        let base = self.nodes.len() as u32 - from.offsets[trees.start];
        self.nodes.extend_from_slice(&from.nodes[start..end]);
        self.offsets.extend(from.offsets[trees.start + 1..=trees.end].iter().map(|end| base + end));
        self.heights.extend_from_slice(&from.heights[trees.clone()]);
    }
}

/// What every tree of one fit is grown from: tree `i` draws from its own random stream of `seed`.
struct TreeRun<'a> {
    data: &'a Matrix,
    sample_size: usize,
    max_depth: u32,
    seed: u64,
}

impl TreeRun<'_> {
    /// The most nodes a tree can have: 2ψ − 1, and 2^(depth + 1) − 1.
    fn most_nodes(&self) -> usize {
        (2 * self.sample_size.min(self.data.rows()) - 1).min((2 << self.max_depth) - 1)
    }

    /// Grows trees `trees` on this thread into one node vector, reusing one set of working buffers.
    fn trees(&self, trees: Range<usize>) -> GrownTrees {
        let mut grower = TreeGrower::new(self.data, self.sample_size, self.max_depth);
        let mut grown = GrownTrees::with_room(trees.len(), self.most_nodes());
        for tree in trees {
            self.grow(&mut grower, tree, &mut grown);
        }
        grown
    }

    fn grow(&self, grower: &mut TreeGrower<'_>, tree: usize, into: &mut GrownTrees) {
        into.heights.push(grower.grow(&mut ForestRng::for_tree(self.seed, tree), &mut into.nodes));
        into.offsets.push(into.nodes.len() as u32);
    }

    /// Grows trees `0..trees` on the calling thread and up to `threads` parked helpers (see
    /// [`workers`]). Threads claim a few trees at a time from a shared counter, so a helper that wakes
    /// late (a busy machine) takes fewer trees, or none, instead of delaying the others. Each tree has
    /// its own random stream, so the forest does not depend on which thread grew which tree.
    ///
    /// A thread grows everything it claims with one grower into one set of vectors, and the runs are
    /// put in tree order at the end. A grower and node vectors per claim (25 of them in a default
    /// fit) cost their allocations and fresh buffers each time: medians of 11–15 alternated `score`
    /// runs went from 0.556 to 0.498 ms on pima, 0.713 to 0.646 on musk and 0.749 to 0.646 on cardio
    /// (mnist 0.843 to 0.834). The process's page faults stayed the same (1,466–1,476 on mnist).
    fn shared(&self, trees: usize, threads: usize) -> GrownTrees {
        let next = AtomicUsize::new(0);
        // Per thread that claimed anything: (first tree, trees, index of its first within `grown`).
        let runs = Mutex::new(Vec::with_capacity(threads + 1));
        workers::share(threads_nonzero(threads), &|| {
            let mut grower = None;
            let mut claimed = Vec::new();
            let mut grown = GrownTrees::with_room(trees.div_ceil(threads), self.most_nodes());
            loop {
                let first = next.fetch_add(TREES_PER_CLAIM, Ordering::Relaxed);
                if first >= trees {
                    break;
                }
                let claim = first..(first + TREES_PER_CLAIM).min(trees);
                let grower = grower.get_or_insert_with(|| TreeGrower::new(self.data, self.sample_size, self.max_depth));
                claimed.push((claim.clone(), grown.heights.len()));
                for tree in claim {
                    self.grow(grower, tree, &mut grown);
                }
            }
            if !claimed.is_empty() {
                runs.lock().unwrap_or_else(PoisonError::into_inner).push((claimed, grown));
            }
        });
        let runs = runs.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut claims: Vec<_> = runs
            .iter()
            .flat_map(|(claimed, grown)| claimed.iter().map(move |(claim, at)| (claim.clone(), *at, grown)))
            .collect();
        claims.sort_unstable_by_key(|(claim, _, _)| claim.start);
        let mut all = GrownTrees::with_room(trees, 0);
        all.nodes.reserve_exact(runs.iter().map(|(_, grown)| grown.nodes.len()).sum());
        for (claim, at, grown) in claims {
            all.append(grown, at..at + claim.len());
        }
        all
    }
}

fn threads_nonzero(threads: usize) -> NonZeroUsize {
    NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN)
}

/// The score that `fraction` of `scores` lie above: numpy's `percentile(scores, 100·(1 − fraction))`
/// with linear interpolation, which is what scikit-learn's `offset_` amounts to.
fn upper_percentile(scores: &mut [f64], fraction: f64) -> f64 {
    scores.sort_by(f64::total_cmp);
    let position = (1.0 - fraction) * (scores.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(scores.len() - 1);
    let weight = position - below as f64;
    scores[below] + (scores[above] - scores[below]) * weight
}

#[cfg(test)]
mod tests;
