//! The flat, cache-friendly representation of a fitted forest.
//!
//! Every node of every tree is one entry in a single table; there are no boxed pointer trees.
//! Within a tree, the two children of a node sit side by side (`left`, `left + 1`), so a step down
//! the tree is `left + (x > threshold)`: no branch, no second index to load.
//!
//! Leaves are nodes too, and they point to themselves: a leaf's threshold is a NaN, `x > NaN` is
//! always false, so a walk that reaches a leaf stays on it. That lets scoring walk every tree a
//! fixed number of steps (the tree's height) in lock-step over many rows, which is what keeps the
//! processor busy instead of waiting on mispredicted branches. The NaN's payload carries what the
//! score needs from the leaf: its depth and how many training rows reached it.
//!
//! A fitted model keeps its nodes in a [`NodeTable`]: three parallel arrays, the thresholds (`f32`),
//! the left children (`u16`) and the features (`u8` when there are at most 256 features, else
//! `u16`), so a node costs 7 bytes (8 beyond 256 features) and the walk loads each field with one
//! instruction, no unpacking. At scikit-learn's defaults (ψ = 256) a tree has about 100–180 nodes,
//! so a 100-tree model is about 70–125 KiB and stays in the L2 cache while it scores a batch.
//! [`Node`] is the unpacked form that fitting produces and the model file stores.

/// Euler–Mascheroni constant, as scikit-learn uses it in `_average_path_length`.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// The largest sample size a model can be fitted with: node indexes are 16 bits and a leaf's size
/// and depth must fit the NaN payload.
pub const MAX_SAMPLE_SIZE: usize = 32_768;

/// The largest number of feature columns (feature indexes are 16 bits).
pub const MAX_FEATURES: usize = u16::MAX as usize + 1;

/// One node, unpacked: an internal split, or a leaf (NaN threshold, `left` pointing at itself).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct Node {
    /// Rows with `x[feature] <= threshold` go left. For a leaf, a NaN carrying the leaf's data.
    pub(crate) threshold: f32,
    /// The feature column this node splits on (0 for a leaf, so a leaf's read stays in bounds).
    pub(crate) feature: u16,
    /// Index, within the tree, of the left child; the right child is `left + 1`.
    pub(crate) left: u16,
}

/// Nodes are equal when their bits are: leaves hold NaNs, which `f32`'s own equality never matches.
impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.threshold.to_bits() == other.threshold.to_bits()
            && self.feature == other.feature
            && self.left == other.left
    }
}

const LEAF_TAG: u32 = 0x7FC0_0000;
const LEAF_TAG_MASK: u32 = 0xFFF0_0000;

impl Node {
    /// A leaf at `index` within its tree, `depth` edges below the root, reached by `size` rows.
    pub(crate) fn leaf(index: u16, depth: u32, size: usize) -> Self {
        debug_assert!(depth < 16 && (1..=MAX_SAMPLE_SIZE).contains(&size));
        let payload = (depth << 16) | (size as u32 - 1);
        Node { threshold: f32::from_bits(LEAF_TAG | payload), feature: 0, left: index }
    }

    /// `Some((depth, size))` for a leaf, `None` for a split.
    pub(crate) fn leaf_parts(self) -> Option<(u32, usize)> {
        leaf_parts(self.threshold)
    }
}

/// `Some((depth, size))` when `threshold` is a leaf's, `None` for a split's.
#[inline(always)]
pub(crate) fn leaf_parts(threshold: f32) -> Option<(u32, usize)> {
    let bits = threshold.to_bits();
    (bits & LEAF_TAG_MASK == LEAF_TAG).then(|| ((bits >> 16) & 0xF, (bits & 0xFFFF) as usize + 1))
}

/// A node's feature column, as stored: `u8` when the model has at most 256 features, else `u16`.
pub(crate) trait Feature: Copy {}

impl Feature for u8 {}

impl Feature for u16 {}

/// Every node's feature column, in the narrowest integer that holds the model's columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Features {
    /// At most 256 feature columns: 1 byte a node.
    Narrow(Vec<u8>),
    /// Any number of feature columns: 2 bytes a node.
    Wide(Vec<u16>),
}

/// The number of nodes a *window* spans: trees of at most this many nodes are walked through
/// fixed-size views of the node table (see [`NodeTable`]). ψ ≤ 256 gives at most 511 nodes.
pub(crate) const WINDOW: usize = 512;

/// Every node of every tree, tree after tree, in the form scoring reads: three parallel arrays
/// (threshold, feature, left child), 7 bytes a node with at most 256 features, 8 beyond.
///
/// When every tree has at most [`WINDOW`] nodes and the table has at least that many, the table is
/// *windowed*: each tree is walked through views of exactly [`WINDOW`] entries (`&[f32; 512]` …),
/// so a node index masked with `WINDOW - 1` needs no bounds check and no clamp. A tree's window
/// starts at the tree itself, or, for the last trees of the table, `WINDOW` entries before the end;
/// such a tree's root then sits at `root_shift` within its window, and its stored left children
/// are shifted by as much, so the walk needs no extra addition. Nothing is padded: the model's
/// memory stays 7 bytes a node.
#[derive(Debug, Clone)]
pub(crate) struct NodeTable {
    /// Each node's threshold (for a leaf, the NaN carrying its depth and size).
    pub(crate) thresholds: Vec<f32>,
    /// Each node's left child, counted from the start of its tree's window.
    pub(crate) lefts: Vec<u16>,
    /// Each node's feature column (0 for a leaf).
    pub(crate) features: Features,
    /// Whether trees are walked through fixed windows (see above); else left children count from
    /// the start of their tree and the walk clamps its index.
    pub(crate) windowed: bool,
}

/// Tables are equal when their nodes' bits are: leaves hold NaNs, which `f32`'s equality never matches.
impl PartialEq for NodeTable {
    fn eq(&self, other: &Self) -> bool {
        self.lefts == other.lefts
            && self.features == other.features
            && self.windowed == other.windowed
            && self.thresholds.len() == other.thresholds.len()
            && self.thresholds.iter().zip(&other.thresholds).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl NodeTable {
    /// Packs `nodes` (every tree's, tree after tree; tree `i` at `offsets[i]..offsets[i + 1]`) for a
    /// model of `columns` features.
    pub(crate) fn pack(nodes: &[Node], offsets: &[u32], columns: usize) -> Self {
        let largest_tree = offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0);
        let windowed = largest_tree <= WINDOW && nodes.len() >= WINDOW;
        let mut table = Self {
            thresholds: nodes.iter().map(|n| n.threshold).collect(),
            lefts: Vec::with_capacity(nodes.len()),
            features: if columns <= 1 << u8::BITS {
                Features::Narrow(nodes.iter().map(|n| n.feature as u8).collect())
            } else {
                Features::Wide(nodes.iter().map(|n| n.feature).collect())
            },
            windowed,
        };
        for tree in offsets.windows(2) {
            let (start, end) = (tree[0] as usize, tree[1] as usize);
            let shift = table.root_shift(start) as u16;
            table.lefts.extend(nodes[start..end].iter().map(|n| n.left + shift));
        }
        table
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.thresholds.len()
    }

    /// Where the window of the tree starting at `tree_start` starts: the tree itself, or for the last
    /// trees of a windowed table, `WINDOW` entries before the end.
    #[inline(always)]
    pub(crate) fn window_start(&self, tree_start: usize) -> usize {
        if self.windowed { tree_start.min(self.len() - WINDOW) } else { tree_start }
    }

    /// The index of the root of the tree starting at `tree_start` within its window.
    #[inline(always)]
    pub(crate) fn root_shift(&self, tree_start: usize) -> usize {
        tree_start - self.window_start(tree_start)
    }

    /// Node `index` (counted over all trees) of the tree starting at `tree_start`, unpacked.
    pub(crate) fn node(&self, tree_start: usize, index: usize) -> Node {
        let feature = match &self.features {
            Features::Narrow(features) => u16::from(features[index]),
            Features::Wide(features) => features[index],
        };
        let left = self.lefts[index] - self.root_shift(tree_start) as u16;
        Node { threshold: self.thresholds[index], feature, left }
    }

    /// Bytes of the three arrays.
    pub(crate) fn bytes(&self) -> usize {
        let feature_bytes = match &self.features {
            Features::Narrow(_) => 1,
            Features::Wide(_) => 2,
        };
        self.len() * (4 + 2 + feature_bytes)
    }
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of n items,
/// exactly as scikit-learn's `_average_path_length` computes it.
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// The height limit of a tree fitted on ψ rows: ceil(log2(max(ψ, 2))).
pub fn height_limit(sample_size: usize) -> u32 {
    let n = sample_size.max(2);
    usize::BITS - (n - 1).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 8);
    }

    #[test]
    fn leaf_round_trips_depth_and_size_and_never_compares_greater() {
        for (depth, size) in [(0, 1), (8, 256), (15, MAX_SAMPLE_SIZE), (3, 2)] {
            let leaf = Node::leaf(5, depth, size);
            assert_eq!(leaf.leaf_parts(), Some((depth, size)));
            assert!(leaf.threshold.is_nan());
            for x in [f32::MIN, -1.0, 0.0, 1.0, f32::MAX, f32::INFINITY] {
                assert_eq!(x.partial_cmp(&leaf.threshold), None, "{x} compared with a leaf threshold");
            }
        }
        let split = Node { threshold: 0.5, feature: 1, left: 3 };
        assert_eq!(split.leaf_parts(), None);
    }

    #[test]
    fn node_table_round_trips_narrow_and_wide_windowed_or_not() {
        // Two trees: five nodes, then three.
        let tree = |feature| {
            [
                Node { threshold: 0.25, feature, left: 1 },
                Node::leaf(1, 1, 4),
                Node { threshold: -1.5, feature: 0, left: 3 },
                Node::leaf(3, 2, 1),
                Node::leaf(4, 2, 2),
            ]
        };
        let small = [
            tree(3).as_slice(),
            &[Node { threshold: 2.0, feature: 1, left: 1 }, Node::leaf(1, 1, 1), Node::leaf(2, 1, 3)],
        ]
        .concat();
        // Enough trees to make the table windowed: the last ones sit at a shift in their window.
        let many: Vec<Node> = (0..200).flat_map(|i| tree(i % 300)).collect();
        let many_offsets: Vec<u32> = (0..=200).map(|i| i * 5).collect();
        for (nodes, offsets, columns, narrow, windowed) in [
            (&small, vec![0, 5, 8], 4, true, false),
            (&small, vec![0, 5, 8], 257, false, false),
            (&many, many_offsets.clone(), 256, true, true),
            (&many, many_offsets.clone(), 300, false, true),
        ] {
            let mut nodes = nodes.clone();
            if narrow {
                nodes.iter_mut().for_each(|n| n.feature %= 256);
            }
            let table = NodeTable::pack(&nodes, &offsets, columns);
            assert_eq!(matches!(table.features, Features::Narrow(_)), narrow);
            assert_eq!(table.windowed, windowed);
            assert_eq!(table.bytes(), nodes.len() * if narrow { 7 } else { 8 });
            for tree in offsets.windows(2) {
                let (start, end) = (tree[0] as usize, tree[1] as usize);
                assert!(table.window_start(start) + WINDOW >= end || !windowed);
                for (index, node) in nodes.iter().enumerate().take(end).skip(start) {
                    assert_eq!(table.node(start, index), *node);
                }
            }
        }
        // A tree of more than WINDOW nodes makes the table unwindowed.
        let big: Vec<Node> = (0..WINDOW as u16 + 1).map(|i| Node::leaf(i, 0, 1)).collect();
        assert!(!NodeTable::pack(&big, &[0, WINDOW as u32 + 1], 2).windowed);
        assert!(NodeTable::pack(&big[..WINDOW], &[0, WINDOW as u32], 2).windowed);
    }

    #[test]
    fn average_path_length_matches_scikit_learn() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        assert!((average_path_length(256) - 10.244_770_9).abs() < 1e-6);
    }

    #[test]
    fn height_limit_is_ceil_log2() {
        assert_eq!(height_limit(1), 1);
        assert_eq!(height_limit(2), 1);
        assert_eq!(height_limit(3), 2);
        assert_eq!(height_limit(256), 8);
        assert_eq!(height_limit(257), 9);
        assert_eq!(height_limit(MAX_SAMPLE_SIZE), 15);
    }
}
