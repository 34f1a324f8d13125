//! Fitting: one isolation tree per independent random stream, grown as scikit-learn's
//! `ExtraTreeRegressor(max_features=1, splitter="random")` grows them inside `IsolationForest`.

use super::layout::Node;
use super::matrix::Matrix;
use super::rng::ForestRng;

/// scikit-learn's `FEATURE_THRESHOLD`: a feature whose values in a node span no more than this is
/// constant there and is never split on.
const CONSTANT_SPAN: f32 = 1e-7;

/// Up to this many training rows, the rows drawn so far are marked in a bitmap (at most 512 KiB):
/// one bit test and one bit set per draw, without a branch. Beyond, in a small hash table.
const MAX_BITMAP_ROWS: usize = 1 << 22;

/// Draws ψ distinct row indexes out of n (Floyd's algorithm: O(ψ), whatever n), remembering the
/// rows drawn in a set that is reused from tree to tree.
enum RowSampler {
    /// n ≤ ψ: every row, in order.
    All,
    /// One bit a row; only the words that were touched are cleared after a tree.
    Bitmap(Vec<u64>),
    /// For very many rows.
    Hashed(RowSet),
}

impl RowSampler {
    fn new(rows: usize, sample_size: usize) -> Self {
        if sample_size >= rows {
            Self::All
        } else if rows <= MAX_BITMAP_ROWS {
            Self::Bitmap(vec![0; rows.div_ceil(64)])
        } else {
            Self::Hashed(RowSet::with_capacity(sample_size))
        }
    }

    /// Writes `sample_size` distinct rows out of `rows` to `sample`. For each `upper` in n − ψ..n,
    /// Floyd's algorithm draws a candidate in 0..=upper; `upper` has never been drawn before (every
    /// earlier draw was below it), so when the candidate is taken, `upper` itself is the fresh pick.
    fn sample(&mut self, rows: usize, sample_size: usize, rng: &mut ForestRng, sample: &mut Vec<u32>) {
        sample.clear();
        match self {
            Self::All => sample.extend(0..rows as u32),
            Self::Bitmap(drawn) => {
                for upper in rows - sample_size..rows {
                    let candidate = rng.below(upper + 1);
                    let taken = drawn[candidate / 64] >> (candidate % 64) & 1 != 0;
                    let pick = if taken { upper } else { candidate };
                    drawn[pick / 64] |= 1 << (pick % 64);
                    sample.push(pick as u32);
                }
                for &row in sample.iter() {
                    drawn[row as usize / 64] = 0;
                }
            }
            Self::Hashed(chosen) => {
                chosen.clear();
                for upper in rows - sample_size..rows {
                    let candidate = rng.below(upper + 1) as u32;
                    let pick = if chosen.insert(candidate) { candidate } else { upper as u32 };
                    if pick != candidate {
                        chosen.insert(pick);
                    }
                    sample.push(pick);
                }
            }
        }
    }
}

/// The set of rows drawn so far. ψ is small, so an open-addressing table with a multiplicative
/// hash does in a few instructions what a general `HashSet` (SipHash, growth) does in dozens.
struct RowSet {
    slots: Vec<u32>,
    mask: usize,
}

impl RowSet {
    const EMPTY: u32 = u32::MAX;

    fn with_capacity(items: usize) -> Self {
        let size = (items * 2).next_power_of_two().max(16);
        Self { slots: vec![Self::EMPTY; size], mask: size - 1 }
    }

    fn clear(&mut self) {
        self.slots.fill(Self::EMPTY);
    }

    /// Adds `row`; false when it was already there.
    fn insert(&mut self, row: u32) -> bool {
        let mut slot = (row.wrapping_mul(0x9E37_79B9) as usize) & self.mask;
        loop {
            match self.slots[slot] {
                Self::EMPTY => {
                    self.slots[slot] = row;
                    return true;
                }
                taken if taken == row => return false,
                _ => slot = (slot + 1) & self.mask,
            }
        }
    }
}

/// A node waiting to be split: its slot in the node array, its rows, and what its ancestors
/// learned (its depth and how many features are known to be constant in it).
struct PendingNode {
    slot: usize,
    start: usize,
    end: usize,
    depth: u32,
    known_constant: usize,
}

/// Grows isolation trees one after another, appending each tree's nodes to one shared vector.
///
/// The working buffers (the sampled rows, the gathered feature values, the partition's right side,
/// the feature order and the stack of pending nodes) live here and are reused from tree to tree: a
/// default forest grows in about a millisecond, and fresh buffers per tree (allocation, and the
/// first touch of new pages in a fresh process) cost a sizeable share of that.
pub(crate) struct TreeGrower<'a> {
    values: &'a [f32],
    columns: usize,
    training_rows: usize,
    sample_size: usize,
    max_depth: u32,
    /// The tree's sampled rows, twice: each node owns a contiguous range of them, the same range in
    /// both, and reads its rows from the first buffer at even depths and from the second at odd ones.
    /// Splitting a node writes its children's rows to the same range of the other buffer. Pending
    /// nodes own disjoint ranges, so no node overwrites rows another one still needs.
    rows: [Vec<u32>; 2],
    /// The values of the feature being tried, one per row of the node, at the same positions.
    gathered: Vec<f32>,
    /// Features known to be constant in a node are kept at the front of this array, so a child
    /// inherits its parent's knowledge by a count (scikit-learn's `n_constant_features`).
    features: Vec<u16>,
    pending: Vec<PendingNode>,
    sampler: RowSampler,
}

impl<'a> TreeGrower<'a> {
    /// A grower for trees of `sample_size` rows of `data` (at most its row count), at most
    /// `max_depth` deep.
    pub(crate) fn new(data: &'a Matrix, sample_size: usize, max_depth: u32) -> Self {
        let sample_size = sample_size.min(data.rows());
        Self {
            values: data.values(),
            columns: data.columns(),
            training_rows: data.rows(),
            sample_size,
            max_depth,
            rows: [Vec::with_capacity(sample_size), vec![0; sample_size]],
            gathered: vec![0.0; sample_size],
            features: Vec::with_capacity(data.columns()),
            pending: Vec::with_capacity(max_depth as usize + 2),
            sampler: RowSampler::new(data.rows(), sample_size),
        }
    }

    /// Grows one tree with `rng` and appends its nodes to `nodes` (child indexes count from the
    /// tree's first node). Returns the tree's height: the depth of its deepest leaf.
    pub(crate) fn grow(&mut self, rng: &mut ForestRng, nodes: &mut Vec<Node>) -> u8 {
        let Self { values, columns, max_depth, .. } = *self;
        self.sampler.sample(self.training_rows, self.sample_size, rng, &mut self.rows[0]);
        self.features.clear();
        self.features.extend(0..columns as u16);
        let first = nodes.len();
        nodes.push(PLACEHOLDER);
        let mut height = 0u32;
        self.pending.push(PendingNode { slot: 0, start: 0, end: self.sample_size, depth: 0, known_constant: 0 });

        while let Some(node) = self.pending.pop() {
            let size = node.end - node.start;
            let [even, odd] = &mut self.rows;
            let (from, to) = if node.depth % 2 == 0 { (even, odd) } else { (odd, even) };
            let members = &from[node.start..node.end];
            let gathered = &mut self.gathered[..size];
            let split = if node.depth >= max_depth || size < 2 {
                None
            } else {
                choose_split(values, columns, members, gathered, &mut self.features, node.known_constant, rng)
            };
            let Some((feature, threshold, constant_now)) = split else {
                nodes[first + node.slot] = Node::leaf(node.slot as u16, node.depth, size);
                height = height.max(node.depth);
                continue;
            };
            let left = nodes.len() - first;
            nodes[first + node.slot] = Node { threshold, feature, left: left as u16 };
            let depth = node.depth + 1;
            // `choose_split` left the chosen feature's values in `gathered`.
            //
            // Children that cannot split need only their sizes, not their rows: at the height limit
            // (a count of the values going left), and below a node of two rows (one each way, as
            // the threshold lies in [min, max)). They draw nothing from `rng`, so the tree is the
            // one they would have made as pending nodes. About an eighth of a tree's partitioned
            // rows are in such nodes (a simulation on six ODDS sets), and each leaf made here also
            // saves a trip through `pending`: 7–10% off a default fit.
            if depth >= max_depth || size == 2 {
                let left_size = gathered.iter().filter(|&&value| value <= threshold).count();
                nodes.push(Node::leaf(left as u16, depth, left_size));
                nodes.push(Node::leaf(left as u16 + 1, depth, size - left_size));
                height = height.max(depth);
                continue;
            }
            let left_size = partition(members, gathered, threshold, &mut to[node.start..node.end]);
            nodes.push(PLACEHOLDER);
            nodes.push(PLACEHOLDER);
            let mid = node.start + left_size;
            // Right first, so the left subtree is grown (and laid out) first: pre-order, as sklearn.
            let right = PendingNode { slot: left + 1, start: mid, end: node.end, depth, known_constant: constant_now };
            self.pending.push(right);
            let left = PendingNode { slot: left, start: node.start, end: mid, depth, known_constant: constant_now };
            self.pending.push(left);
        }
        height as u8
    }
}

/// What a node holds until it is split or made a leaf.
const PLACEHOLDER: Node = Node { threshold: 0.0, feature: 0, left: 0 };

/// Picks a split for a node: a random feature among those not known to be constant in it, and a
/// threshold uniform in [min, max) of that feature over the node's rows. Returns `None` when every
/// feature is constant in the node (it becomes a leaf). Also returns how many features are known to
/// be constant once this node is done, for its children. On success, `gathered` holds the chosen
/// feature's value for each of `members`.
fn choose_split(
    values: &[f32],
    columns: usize,
    members: &[u32],
    gathered: &mut [f32],
    features: &mut [u16],
    known_constant: usize,
    rng: &mut ForestRng,
) -> Option<(u16, f32, usize)> {
    let mut constant = known_constant;
    while constant < features.len() {
        let position = constant + rng.below(features.len() - constant);
        let feature = features[position];
        let (min, max) = gather_range(values, columns, members, feature as usize, gathered);
        if max - min <= CONSTANT_SPAN {
            features.swap(position, constant);
            constant += 1;
            continue;
        }
        let threshold = draw_threshold(min, max, rng);
        return Some((feature, threshold, constant));
    }
    None
}

/// Copies `feature`'s value for each of `members` into `gathered` and returns their minimum and
/// maximum. Each row costs one indirect load; the loads are independent of each other, and four
/// separate min/max pairs keep the comparisons from forming one long dependency chain.
fn gather_range(values: &[f32], columns: usize, members: &[u32], feature: usize, gathered: &mut [f32]) -> (f32, f32) {
    const LANES: usize = 4;
    let column = &values[feature..];
    let mut mins = [f32::INFINITY; LANES];
    let mut maxs = [f32::NEG_INFINITY; LANES];
    let mut rows = members.chunks_exact(LANES);
    let mut out = gathered.chunks_exact_mut(LANES);
    for (rows, out) in (&mut rows).zip(&mut out) {
        for lane in 0..LANES {
            let v = column[rows[lane] as usize * columns];
            out[lane] = v;
            // Plain comparisons: values are finite, and `f32::min`'s NaN handling is slower.
            mins[lane] = if v < mins[lane] { v } else { mins[lane] };
            maxs[lane] = if v > maxs[lane] { v } else { maxs[lane] };
        }
    }
    for (&row, out) in rows.remainder().iter().zip(out.into_remainder()) {
        let v = column[row as usize * columns];
        *out = v;
        mins[0] = if v < mins[0] { v } else { mins[0] };
        maxs[0] = if v > maxs[0] { v } else { maxs[0] };
    }
    let min = mins.into_iter().fold(f32::INFINITY, |a, b| if b < a { b } else { a });
    let max = maxs.into_iter().fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    (min, max)
}

/// scikit-learn draws the threshold in f64 (and uses `min` if it lands on `max`), then compares
/// f32 values against it. Rounding it down to the nearest f32 sends every f32 value the same way,
/// and keeps it inside [min, max).
fn draw_threshold(min: f32, max: f32, rng: &mut ForestRng) -> f32 {
    let (low, high) = (f64::from(min), f64::from(max));
    let mut threshold = (high - low) * rng.next_unit() + low;
    if threshold == high {
        threshold = low;
    }
    let mut rounded = threshold as f32;
    if f64::from(rounded) > threshold {
        rounded = rounded.next_down();
    }
    rounded
}

/// Writes `members` to `split`, those whose gathered value is `<= threshold` to the front (in their
/// order) and the others to the back (in reverse order); returns how many went to the front.
/// Branch-free: every row is written to both the next free front slot and the next free back slot,
/// and only its own side's cursor moves, so a random split costs no mispredicted branches. Order
/// within a side does not matter to the tree, only the sets do.
fn partition(members: &[u32], gathered: &[f32], threshold: f32, split: &mut [u32]) -> usize {
    debug_assert_eq!(members.len(), split.len());
    // The free slots are split[front..back]; there is at least one while rows remain.
    let (mut front, mut back) = (0, split.len());
    for (&row, &value) in members.iter().zip(gathered) {
        let goes_left = value <= threshold;
        split[front] = row;
        split[back - 1] = row;
        front += usize::from(goes_left);
        back -= usize::from(!goes_left);
    }
    front
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn sampling_is_distinct_and_in_range() {
        let mut rng = ForestRng::for_tree(3, 0);
        let mut sample = Vec::new();
        for (rows, size) in
            [(1000, 256), (300, 256), (256, 256), (10, 256), (2, 1), (1000, 999), (MAX_BITMAP_ROWS + 9, 256)]
        {
            let mut sampler = RowSampler::new(rows, size);
            for _ in 0..3 {
                sampler.sample(rows, size, &mut rng, &mut sample);
                assert_eq!(sample.len(), size.min(rows));
                let distinct: HashSet<_> = sample.iter().collect();
                assert_eq!(distinct.len(), sample.len());
                assert!(sample.iter().all(|&r| (r as usize) < rows));
            }
        }
    }

    #[test]
    fn bitmap_and_hashed_samplers_draw_the_same_rows() {
        let rows = 5000;
        for size in [1, 64, 256, 4999] {
            let (mut bitmap, mut hashed) =
                (RowSampler::new(rows, size), RowSampler::Hashed(RowSet::with_capacity(size)));
            assert!(matches!(bitmap, RowSampler::Bitmap(_)));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for tree in 0..5 {
                bitmap.sample(rows, size, &mut ForestRng::for_tree(8, tree), &mut a);
                hashed.sample(rows, size, &mut ForestRng::for_tree(8, tree), &mut b);
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn sampling_takes_every_row_when_there_are_at_most_sample_size() {
        let mut sample = Vec::new();
        for (rows, size) in [(300, 300), (10, 256), (1, 1)] {
            RowSampler::new(rows, size).sample(rows, size, &mut ForestRng::for_tree(3, 1), &mut sample);
            assert_eq!(sample, (0..rows as u32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn threshold_is_within_min_inclusive_max_exclusive() {
        let mut rng = ForestRng::for_tree(4, 0);
        for (min, max) in [(0.0f32, 1.0f32), (1.0, 1.000_001), (-3.5, 2.25), (1e30, 3e30)] {
            for _ in 0..2000 {
                let t = draw_threshold(min, max, &mut rng);
                assert!(t >= min && t < max, "{t} not in [{min}, {max})");
            }
        }
    }

    #[test]
    fn partition_keeps_all_rows_on_their_side() {
        let rows: Vec<u32> = (0..20).rev().collect();
        let gathered: Vec<f32> = rows.iter().map(|&r| (r % 3) as f32).collect();
        let mut split = vec![u32::MAX; rows.len()];
        let left = partition(&rows, &gathered, 0.5, &mut split);
        assert_eq!(left, 7);
        assert_eq!(split[..left], [18, 15, 12, 9, 6, 3, 0]);
        assert_eq!(split[left..], [1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19]);
        // A value equal to the threshold goes left (`x <= threshold`, as scikit-learn routes it).
        let left = partition(&rows, &gathered, 1.0, &mut split);
        assert_eq!(left, 14);
        assert!(split[..left].iter().all(|r| r % 3 <= 1) && split[left..].iter().all(|r| r % 3 == 2));
        for threshold in [-1.0, 5.0] {
            let left = partition(&rows, &gathered, threshold, &mut split);
            assert_eq!(left, if threshold < 0.0 { 0 } else { rows.len() });
            let mut sorted = split.clone();
            sorted.sort();
            assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        }
    }

    #[test]
    fn gather_range_matches_a_plain_scan() {
        let columns = 3;
        let values: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.25).collect();
        for members in [vec![5u32], vec![7, 2], (0..100).rev().collect(), vec![99, 0, 50, 3, 4, 61, 17]] {
            for feature in 0..columns {
                let mut gathered = vec![f32::NAN; members.len()];
                let (min, max) = gather_range(&values, columns, &members, feature, &mut gathered);
                let expected: Vec<f32> = members.iter().map(|&r| values[r as usize * columns + feature]).collect();
                assert_eq!(gathered, expected);
                assert_eq!(min, expected.iter().copied().fold(f32::INFINITY, f32::min));
                assert_eq!(max, expected.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            }
        }
    }

    /// The grower as it was before buffers were reused, values gathered and the partition made
    /// branch-free: the forests must not change, seed for seed.
    mod reference {
        use super::super::{CONSTANT_SPAN, draw_threshold};
        use crate::forest::layout::Node;
        use crate::forest::matrix::Matrix;
        use crate::forest::rng::ForestRng;
        use std::collections::HashSet;

        struct Pending {
            slot: usize,
            start: usize,
            end: usize,
            depth: u32,
            known_constant: usize,
        }

        fn sample(rows: usize, sample_size: usize, rng: &mut ForestRng) -> Vec<u32> {
            if sample_size >= rows {
                return (0..rows as u32).collect();
            }
            let mut chosen = HashSet::new();
            let mut sample = Vec::new();
            for upper in rows - sample_size..rows {
                let candidate = rng.below(upper + 1) as u32;
                let pick = if chosen.insert(candidate) { candidate } else { upper as u32 };
                chosen.insert(pick);
                sample.push(pick);
            }
            sample
        }

        pub(super) fn grow_tree(
            data: &Matrix,
            sample_size: usize,
            max_depth: u32,
            rng: &mut ForestRng,
        ) -> (Vec<Node>, u8) {
            let (columns, values) = (data.columns(), data.values());
            let at = |row: u32, feature: u16| values[row as usize * columns + feature as usize];
            let mut rows = sample(data.rows(), sample_size, rng);
            let mut features: Vec<u16> = (0..columns as u16).collect();
            let mut nodes = vec![Node { threshold: 0.0, feature: 0, left: 0 }];
            let mut height = 0;
            let mut pending = vec![Pending { slot: 0, start: 0, end: rows.len(), depth: 0, known_constant: 0 }];
            while let Some(node) = pending.pop() {
                let members = &mut rows[node.start..node.end];
                let mut split = None;
                let mut constant = node.known_constant;
                while node.depth < max_depth && members.len() >= 2 && constant < features.len() {
                    let position = constant + rng.below(features.len() - constant);
                    let feature = features[position];
                    let min = members.iter().map(|&r| at(r, feature)).fold(f32::INFINITY, f32::min);
                    let max = members.iter().map(|&r| at(r, feature)).fold(f32::NEG_INFINITY, f32::max);
                    if max - min <= CONSTANT_SPAN {
                        features.swap(position, constant);
                        constant += 1;
                        continue;
                    }
                    split = Some((feature, draw_threshold(min, max, rng)));
                    break;
                }
                let Some((feature, threshold)) = split else {
                    nodes[node.slot] = Node::leaf(node.slot as u16, node.depth, members.len());
                    height = height.max(node.depth);
                    continue;
                };
                members.sort_by_key(|&r| at(r, feature) > threshold);
                let mid = node.start + members.iter().filter(|&&r| at(r, feature) <= threshold).count();
                let left = nodes.len();
                nodes[node.slot] = Node { threshold, feature, left: left as u16 };
                nodes.extend([Node { threshold: 0.0, feature: 0, left: 0 }; 2]);
                let depth = node.depth + 1;
                pending.push(Pending { slot: left + 1, start: mid, end: node.end, depth, known_constant: constant });
                pending.push(Pending { slot: left, start: node.start, end: mid, depth, known_constant: constant });
            }
            (nodes, height as u8)
        }
    }

    /// Data sets with the shapes that matter: wide, narrow, many constant or repeated values, more
    /// rows than ψ and fewer.
    fn shapes() -> Vec<Matrix> {
        let mut rng = ForestRng::for_tree(77, 1);
        let mut table = |rows: usize, columns: usize, levels: u64| {
            let values = (0..rows * columns)
                .map(|i| if i % columns == 1 { 3.0 } else { (rng.below(levels as usize) as f64 * 0.37 - 4.0) as f32 })
                .collect();
            Matrix::from_row_major(values, columns).unwrap()
        };
        vec![
            table(1000, 5, 1 << 20),
            table(200, 12, 1 << 20),
            table(3000, 40, 1 << 20),
            table(700, 3, 4),
            table(5, 2, 3),
        ]
    }

    #[test]
    fn grown_trees_equal_the_reference_grower_node_for_node() {
        for data in shapes() {
            for (sample_size, seeds) in [(256, 0..6), (64, 6..9), (1, 9..10), (2000, 10..12)] {
                let max_depth = crate::forest::height_limit(sample_size.min(data.rows()));
                let mut grower = TreeGrower::new(&data, sample_size, max_depth);
                let mut nodes = Vec::new();
                for seed in seeds {
                    for tree in 0..20 {
                        let (expected, expected_height) =
                            reference::grow_tree(&data, sample_size, max_depth, &mut ForestRng::for_tree(seed, tree));
                        let first = nodes.len();
                        let height = grower.grow(&mut ForestRng::for_tree(seed, tree), &mut nodes);
                        assert_eq!(nodes[first..], expected[..], "seed {seed}, tree {tree}");
                        assert_eq!(height, expected_height);
                    }
                }
            }
        }
    }
}
