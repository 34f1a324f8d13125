//! Scoring large batches through complete trees: each tree re-laid in heap order for the batch.
//!
//! The model's own layout (`layout::NodeTable`) is compact: 7 bytes a node, so a default model
//! stays under 128 KiB. A step down it loads the left child's index, and the index must be masked
//! into the tree's window. For a large batch it pays to spend about 330 KiB (still within the L2
//! cache) on a second layout built just for the batch, in which a step needs neither:
//!
//! - every tree of height `h` (at most 8) is a *complete* binary tree of height `h`, its internal
//!   nodes in heap order from 1: node `i`'s children are `2i` and `2i + 1`, so the next position is
//!   `2i + (x > threshold)`, with no child index to load;
//! - a leaf above the bottom level becomes internal nodes whose threshold is +∞ (every value goes
//!   left), and its path length is stored where its leftmost descendant meets the bottom level;
//! - internal positions are 1..2^h − 1 ≤ 255, so `[_; 256]` arrays hold them, and the bottom level's
//!   position `2^h + slot` gives the leaf's slot;
//! - each bottom slot holds the leaf's path length (depth + c(size)) as the model's own scoring
//!   computes it, so a row adds the same `f64` values in the same tree order: the scores are
//!   bit-identical to the compact walk's (a test checks it).
//! - thresholds and the rows' values are compared as *order keys* (`order_key`): unsigned integers
//!   that order finite floats as their values do. A step is then an integer compare whose borrow is
//!   added into `2i` by one add-with-carry, where a float compare needs its flag turned into a
//!   register first: the walk takes about 0.73× the time (http, one core: 297 → 217 ms).

use super::Forest;
use super::layout::leaf_parts;
use super::score::PaddedRow;

/// The deepest tree this layout holds: internal positions must fit a `u8`.
const MAX_HEIGHT: u8 = 8;

/// Positions per level array: every internal position of a height-8 tree, and every bottom slot.
const SLOTS: usize = 1 << MAX_HEIGHT;

/// Rows walked in lock-step. A step here takes fewer instructions than the compact walk's (no child
/// index to load), so the walk is bound by each step's two dependent loads (feature, then value)
/// rather than by instructions: more lanes keep more of those loads in flight (16 measured faster
/// than 8 and 32).
const HEAP_LANES: usize = 16;

/// One tree as a complete binary tree in heap order.
#[derive(Clone)]
struct HeapTree {
    /// The split feature of internal position `i` (1-based; 0 for the unused slot 0 and for
    /// positions below a leaf).
    features: [u8; SLOTS],
    /// The order key of internal position `i`'s threshold; +∞'s below a leaf, so every walk goes
    /// left there.
    threshold_keys: [u32; SLOTS],
    /// The path length of the leaf each bottom slot stands for (0 for slots no walk reaches).
    path_lengths: [f64; SLOTS],
    /// The tree's height: every walk takes exactly this many steps.
    height: u8,
}

/// Every tree of a forest with at most 256 features and trees at most [`MAX_HEIGHT`] deep, re-laid.
pub(super) struct HeapForest {
    trees: Vec<HeapTree>,
}

impl HeapForest {
    /// Re-lays `forest`'s trees, or `None` when it has more than 256 features or a tree deeper
    /// than [`MAX_HEIGHT`] (it is then walked in its own layout).
    pub(super) fn build(forest: &Forest) -> Option<Self> {
        if forest.heights.iter().any(|&h| h > MAX_HEIGHT) || forest.columns > SLOTS {
            return None;
        }
        let blank = HeapTree {
            features: [0; SLOTS],
            threshold_keys: [order_key(f32::INFINITY); SLOTS],
            path_lengths: [0.0; SLOTS],
            height: 0,
        };
        let mut trees = vec![blank; forest.trees()];
        let mut nodes = Vec::with_capacity(2 * SLOTS);
        let mut pending = Vec::with_capacity(2 * usize::from(MAX_HEIGHT) + 2);
        for (index, tree) in trees.iter_mut().enumerate() {
            let height = forest.heights[index];
            tree.height = height;
            nodes.clear();
            nodes.extend(forest.tree_nodes(index));
            pending.push((0usize, 1usize, 0u8));
            while let Some((node, position, level)) = pending.pop() {
                let node = nodes[node];
                match leaf_parts(node.threshold) {
                    Some((depth, size)) => {
                        let bottom = position << (height - level);
                        tree.path_lengths[bottom - (1 << height)] = forest.leaf_path_length(depth, size);
                    }
                    // A split at the bottom level means a tree deeper than its recorded height:
                    // `persist` refuses such models, and fitting never makes one.
                    None if level == height => return None,
                    None => {
                        tree.features[position] = node.feature as u8;
                        tree.threshold_keys[position] = order_key(node.threshold);
                        let left = usize::from(node.left);
                        pending.push((left, 2 * position, level + 1));
                        pending.push((left + 1, 2 * position + 1, level + 1));
                    }
                }
            }
        }
        Some(Self { trees })
    }

    /// Adds each row's path length through every tree to `sums`, for `rows` copied into padded rows
    /// by [`copy_keys`] (one sum per row), tree after tree.
    pub(super) fn accumulate(&self, rows: &[PaddedRow], sums: &mut [f64]) {
        for tree in &self.trees {
            match tree.height {
                0 => accumulate_tree::<0>(tree, rows, sums),
                1 => accumulate_tree::<1>(tree, rows, sums),
                2 => accumulate_tree::<2>(tree, rows, sums),
                3 => accumulate_tree::<3>(tree, rows, sums),
                4 => accumulate_tree::<4>(tree, rows, sums),
                5 => accumulate_tree::<5>(tree, rows, sums),
                6 => accumulate_tree::<6>(tree, rows, sums),
                7 => accumulate_tree::<7>(tree, rows, sums),
                _ => accumulate_tree::<8>(tree, rows, sums),
            }
        }
    }
}

/// Walks every row of `rows` down `tree` (of height `H`) and adds the path lengths to `sums`.
#[inline(always)]
fn accumulate_tree<const H: u32>(tree: &HeapTree, rows: &[PaddedRow], sums: &mut [f64]) {
    let groups = sums.len() / HEAP_LANES;
    let (group_sums, tail_sums) = sums.split_at_mut(groups * HEAP_LANES);
    let (group_rows, tail_rows) = rows.split_at(groups * HEAP_LANES);
    for (rows, sums) in group_rows.chunks_exact(HEAP_LANES).zip(group_sums.chunks_exact_mut(HEAP_LANES)) {
        let rows: &[PaddedRow; HEAP_LANES] = rows.try_into().expect("a whole group");
        for (sum, slot) in sums.iter_mut().zip(walk::<H, HEAP_LANES>(tree, rows)) {
            *sum += tree.path_lengths[slot];
        }
    }
    for (row, sum) in tail_rows.iter().zip(tail_sums.iter_mut()) {
        let [slot] = walk::<H, 1>(tree, std::array::from_ref(row));
        *sum += tree.path_lengths[slot];
    }
}

/// Walks `N` rows `H` steps down one complete tree in lock-step; returns each walk's bottom slot.
///
/// `H` is a constant so that the steps unroll. A position stays below 256 while a node is read,
/// but the compiler cannot see it: masking it (one `and`) keeps the 256-entry arrays' reads free of
/// bounds checks.
#[inline(always)]
fn walk<const H: u32, const N: usize>(tree: &HeapTree, rows: &[PaddedRow; N]) -> [usize; N] {
    let mut at = [1usize; N];
    for _ in 0..H {
        for (row, at) in rows.iter().zip(at.iter_mut()) {
            let value_key = row.0[usize::from(tree.features[*at & (SLOTS - 1)])].to_bits();
            *at = step(*at, tree.threshold_keys[*at & (SLOTS - 1)], value_key);
        }
    }
    // The bottom level starts at 2^H: the slot is the choices below it.
    at.map(|at| (at - (1 << H)) & (SLOTS - 1))
}

/// An unsigned key that orders finite floats as their values do: `a > b` exactly when
/// `order_key(a) > order_key(b)`. A non-negative float's bits order like its value, so they only
/// gain the top bit; a negative float's bits order backwards, so they are inverted. −0.0 is made
/// +0.0 first, as the two are equal as floats.
#[inline(always)]
pub(super) fn order_key(value: f32) -> u32 {
    let bits = (value + 0.0).to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 1 << 31 }
}

/// Copies a row's values into a padded row as order keys, kept in the `f32`s' bits: the complete
/// trees' walk reads them back with `to_bits`, and no other walk reads these rows.
#[inline(always)]
pub(super) fn copy_keys(row: &[f32], padded: &mut PaddedRow) {
    for (to, &value) in padded.0.iter_mut().zip(row) {
        *to = f32::from_bits(order_key(value));
    }
}

/// One step down a complete tree: from position `at` to its right child `2·at + 1` when the row's
/// value is above the threshold (as order keys), else to its left child `2·at`.
#[inline(always)]
fn step(at: usize, threshold_key: u32, value_key: u32) -> usize {
    // `threshold_key − value_key` borrows exactly when the value is above the threshold. On x86-64
    // the borrow goes straight into `at + at` by one add-with-carry; written as `2 * at + (value >
    // threshold)`, the compiler turns the flag into a register first (`setb`, then `lea`).
    #[cfg(target_arch = "x86_64")]
    {
        let (_, goes_right) = threshold_key.overflowing_sub(value_key);
        let mut next = 0;
        let _ = std::arch::x86_64::_addcarry_u64(u8::from(goes_right), at as u64, at as u64, &mut next);
        next as usize
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        2 * at + usize::from(value_key > threshold_key)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Floats at the edges of the order: signed zeros, the smallest subnormals and normals, the
    /// extremes and the infinities.
    const EDGES: [f32; 12] = [
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        1.0,
        -1.0,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];

    #[test]
    fn order_keys_order_the_edges_as_their_values() {
        for a in EDGES {
            for b in EDGES {
                assert_eq!(order_key(a) > order_key(b), a > b, "{a:e} against {b:e}");
                assert_eq!(order_key(a) == order_key(b), a == b, "{a:e} against {b:e}");
            }
        }
    }

    #[test]
    fn a_step_goes_right_only_above_the_threshold() {
        for (at, threshold, value, next) in
            [(1, 0.5, 0.5, 2), (1, 0.5, 0.6, 3), (7, -0.0, 0.0, 14), (127, -2.0, 3.0, 255)]
        {
            assert_eq!(step(at, order_key(threshold), order_key(value)), next, "{value} against {threshold} at {at}");
        }
    }

    proptest! {
        #[test]
        fn order_keys_order_finite_floats_as_their_values(a in any::<f32>(), b in any::<f32>()) {
            prop_assume!(a.is_finite() && b.is_finite());
            prop_assert_eq!(order_key(a) > order_key(b), a > b);
            prop_assert_eq!(order_key(a) == order_key(b), a == b);
        }

        #[test]
        fn a_step_is_twice_the_position_plus_the_comparison(at in 1usize..256, a in any::<f32>(), b in any::<f32>()) {
            prop_assume!(a.is_finite() && b.is_finite());
            prop_assert_eq!(step(at, order_key(a), order_key(b)), 2 * at + usize::from(b > a));
        }
    }
}
