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
//! A fitted model keeps its nodes in a [`NodeTable`]: the thresholds in one array and, in another,
//! each node's feature and left child packed into one *link*. When every tree has at most 512 nodes
//! (always at ψ ≤ 256, the defaults) and there are at most 128 features, a link is a `u16` (9 bits of
//! child, 7 of feature) and a node costs 6 bytes; otherwise a link is a `u32` (16 and 16) and a node
//! costs 8. The split is fixed per link type, so the walk unpacks a link with constant shifts. At scikit-learn's defaults (ψ = 256) a tree has about 100–180 nodes,
//! so a 100-tree model is about 60–110 KiB and stays in the L2 cache while it scores a batch.
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

/// A link: a node's feature and left child packed into one integer, the feature in the high bits.
pub(crate) trait Link: Copy {
    /// How many low bits hold the left child.
    const LEFT_BITS: u32;
    /// The packed value.
    fn bits(self) -> usize;
    /// The feature column.
    #[inline(always)]
    fn feature(self) -> usize {
        self.bits() >> Self::LEFT_BITS
    }
    /// The left child's index within the tree.
    #[inline(always)]
    fn left(self) -> usize {
        self.bits() & ((1 << Self::LEFT_BITS) - 1)
    }
}

impl Link for u16 {
    const LEFT_BITS: u32 = 9;
    #[inline(always)]
    fn bits(self) -> usize {
        usize::from(self)
    }
}

impl Link for u32 {
    const LEFT_BITS: u32 = 16;
    #[inline(always)]
    fn bits(self) -> usize {
        self as usize
    }
}

/// The links of every node, in the narrowest integer that holds them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Links {
    /// 16-bit links: 6 bytes a node with the threshold. Trees of at most 512 nodes, at most 128 features.
    Narrow(Vec<u16>),
    /// 32-bit links: 8 bytes a node. Any model.
    Wide(Vec<u32>),
}

/// Every node of every tree, tree after tree, in the packed form scoring reads: 6 or 8 bytes a node
/// (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct NodeTable {
    /// Each node's threshold (for a leaf, the NaN carrying its depth and size).
    pub(crate) thresholds: Vec<f32>,
    /// Each node's feature and left child.
    pub(crate) links: Links,
}

/// Tables are equal when their nodes' bits are: leaves hold NaNs, which `f32`'s equality never matches.
impl PartialEq for NodeTable {
    fn eq(&self, other: &Self) -> bool {
        self.links == other.links
            && self.thresholds.len() == other.thresholds.len()
            && self.thresholds.iter().zip(&other.thresholds).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl NodeTable {
    /// Packs `nodes` (every tree's, tree after tree) for a model of `columns` features whose largest
    /// tree has `largest_tree` nodes.
    pub(crate) fn pack(nodes: &[Node], columns: usize, largest_tree: usize) -> Self {
        let thresholds = nodes.iter().map(|n| n.threshold).collect();
        let links = if largest_tree <= 1 << u16::LEFT_BITS && columns <= 1 << (16 - u16::LEFT_BITS) {
            Links::Narrow(nodes.iter().map(|n| (n.feature << u16::LEFT_BITS) | n.left).collect())
        } else {
            Links::Wide(nodes.iter().map(|n| (u32::from(n.feature) << u32::LEFT_BITS) | u32::from(n.left)).collect())
        };
        Self { thresholds, links }
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.thresholds.len()
    }

    /// Node `index` (counted over all trees), unpacked.
    pub(crate) fn node(&self, index: usize) -> Node {
        let (feature, left) = match &self.links {
            Links::Narrow(links) => (links[index].feature(), links[index].left()),
            Links::Wide(links) => (links[index].feature(), links[index].left()),
        };
        Node { threshold: self.thresholds[index], feature: feature as u16, left: left as u16 }
    }

    /// Bytes of the two arrays.
    pub(crate) fn bytes(&self) -> usize {
        let link_bytes = match &self.links {
            Links::Narrow(_) => 2,
            Links::Wide(_) => 4,
        };
        self.len() * (4 + link_bytes)
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
    fn node_table_round_trips_narrow_and_wide() {
        let nodes = [
            Node { threshold: 0.25, feature: 3, left: 1 },
            Node::leaf(1, 1, 4),
            Node { threshold: -1.5, feature: 0, left: 3 },
            Node::leaf(3, 2, 1),
            Node::leaf(4, 2, 2),
        ];
        // Narrow up to 512-node trees and 128 features; wide beyond either.
        for (columns, largest_tree, narrow) in [(4, 5, true), (129, 5, false), (4, 513, false), (3000, 5000, false)] {
            let table = NodeTable::pack(&nodes, columns, largest_tree);
            assert_eq!(matches!(table.links, Links::Narrow(_)), narrow);
            assert_eq!(table.bytes(), nodes.len() * if narrow { 6 } else { 8 });
            for (index, node) in nodes.iter().enumerate() {
                assert_eq!(table.node(index), *node);
            }
        }
        // The widest narrow case: 512-node trees and 128 features.
        let widest = [Node { threshold: 1.0, feature: 127, left: 510 }, Node::leaf(511, 8, 1)];
        let table = NodeTable::pack(&widest, 128, 512);
        assert!(matches!(table.links, Links::Narrow(_)));
        assert_eq!(table.node(0), widest[0]);
        assert_eq!(table.node(1), widest[1]);
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
