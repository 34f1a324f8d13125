//! The flat, cache-friendly representation of a fitted forest.
//!
//! Every node of every tree is one 8-byte [`Node`] in a single array; there are no boxed pointer
//! trees. Within a tree, the two children of a node sit side by side (`left`, `left + 1`), so a
//! step down the tree is `left + (x > threshold)`: no branch, no second index to load.
//!
//! Leaves are nodes too, and they point to themselves: a leaf's threshold is a NaN, `x > NaN` is
//! always false, so a walk that reaches a leaf stays on it. That lets scoring walk every tree a
//! fixed number of steps (the tree's height) in lock-step over many rows, which is what keeps the
//! processor busy instead of waiting on mispredicted branches. The NaN's payload carries what the
//! score needs from the leaf: its depth and how many training rows reached it.
//!
//! At scikit-learn's defaults (ψ = 256) a tree has about 100–160 nodes, so a 100-tree model is
//! about 80–125 KiB and stays in the L2 cache while it scores a batch.

/// Euler–Mascheroni constant, as scikit-learn uses it in `_average_path_length`.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// The largest sample size a model can be fitted with: node indexes are 16 bits and a leaf's size
/// and depth must fit the NaN payload.
pub const MAX_SAMPLE_SIZE: usize = 32_768;

/// The largest number of feature columns (feature indexes are 16 bits).
pub const MAX_FEATURES: usize = u16::MAX as usize + 1;

/// One node: an internal split, or a leaf (NaN threshold, `left` pointing at itself).
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
        let bits = self.threshold.to_bits();
        (bits & LEAF_TAG_MASK == LEAF_TAG).then(|| ((bits >> 16) & 0xF, (bits & 0xFFFF) as usize + 1))
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
