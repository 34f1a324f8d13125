//! Fitting: one isolation tree per independent random stream, grown as scikit-learn's
//! `ExtraTreeRegressor(max_features=1, splitter="random")` grows them inside `IsolationForest`.

use super::layout::Node;
use super::matrix::Matrix;
use super::rng::ForestRng;

/// scikit-learn's `FEATURE_THRESHOLD`: a feature whose values in a node span no more than this is
/// constant there and is never split on.
const CONSTANT_SPAN: f32 = 1e-7;

/// One fitted tree, in the flat layout of [`super::layout`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GrownTree {
    pub(crate) nodes: Vec<Node>,
    /// The depth of the deepest leaf: how many steps a walk needs to reach any leaf.
    pub(crate) height: u8,
}

/// Draws `sample_size` distinct row indexes out of `rows` (Floyd's algorithm: O(ψ), whatever n).
fn sample_without_replacement(rows: usize, sample_size: usize, rng: &mut ForestRng) -> Vec<u32> {
    if sample_size >= rows {
        return (0..rows as u32).collect();
    }
    let mut chosen = RowSet::with_capacity(sample_size);
    let mut sample = Vec::with_capacity(sample_size);
    for upper in rows - sample_size..rows {
        let candidate = rng.below(upper + 1) as u32;
        // `upper` has never been drawn before (every earlier draw was below it), so when the
        // candidate is taken, `upper` itself is the fresh pick.
        let pick = if chosen.insert(candidate) { candidate } else { upper as u32 };
        if pick != candidate {
            chosen.insert(pick);
        }
        sample.push(pick);
    }
    sample
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

/// Grows one isolation tree on a random sample of `data`.
pub(crate) fn grow_tree(data: &Matrix, sample_size: usize, max_depth: u32, rng: &mut ForestRng) -> GrownTree {
    let columns = data.columns();
    let values = data.values();
    let mut rows = sample_without_replacement(data.rows(), sample_size, rng);
    // Features known to be constant in a node are kept at the front of this array, so a child
    // inherits its parent's knowledge by a count (scikit-learn's `n_constant_features`).
    let mut features: Vec<u16> = (0..columns as u16).collect();
    let mut nodes = Vec::with_capacity(2 * rows.len());
    nodes.push(Node { threshold: 0.0, feature: 0, left: 0 });
    let mut height = 0u32;
    let mut pending = vec![PendingNode { slot: 0, start: 0, end: rows.len(), depth: 0, known_constant: 0 }];

    while let Some(node) = pending.pop() {
        let size = node.end - node.start;
        let split = if node.depth >= max_depth || size < 2 {
            None
        } else {
            choose_split(values, columns, &rows[node.start..node.end], &mut features, node.known_constant, rng)
        };
        let Some((feature, threshold, constant_now)) = split else {
            nodes[node.slot] = Node::leaf(node.slot as u16, node.depth, size);
            height = height.max(node.depth);
            continue;
        };
        let members = &mut rows[node.start..node.end];
        let left_size = partition(members, |row| values[row as usize * columns + feature as usize] <= threshold);
        let left = nodes.len();
        nodes[node.slot] = Node { threshold, feature, left: left as u16 };
        nodes.push(Node { threshold: 0.0, feature: 0, left: 0 });
        nodes.push(Node { threshold: 0.0, feature: 0, left: 0 });
        let mid = node.start + left_size;
        let depth = node.depth + 1;
        // Right first, so the left subtree is grown (and laid out) first: pre-order, as sklearn.
        pending.push(PendingNode { slot: left + 1, start: mid, end: node.end, depth, known_constant: constant_now });
        pending.push(PendingNode { slot: left, start: node.start, end: mid, depth, known_constant: constant_now });
    }
    GrownTree { nodes, height: height as u8 }
}

/// Picks a split for a node: a random feature among those not known to be constant in it, and a
/// threshold uniform in [min, max) of that feature over the node's rows. Returns `None` when every
/// feature is constant in the node (it becomes a leaf). Also returns how many features are known to
/// be constant once this node is done, for its children.
fn choose_split(
    values: &[f32],
    columns: usize,
    members: &[u32],
    features: &mut [u16],
    known_constant: usize,
    rng: &mut ForestRng,
) -> Option<(u16, f32, usize)> {
    let mut constant = known_constant;
    while constant < features.len() {
        let position = constant + rng.below(features.len() - constant);
        let feature = features[position];
        let (min, max) = value_range(values, columns, members, feature as usize);
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

fn value_range(values: &[f32], columns: usize, members: &[u32], feature: usize) -> (f32, f32) {
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    for &row in members {
        let v = values[row as usize * columns + feature];
        // Plain comparisons: values are finite, and `f32::min`'s NaN handling costs a third of fitting.
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
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

/// Moves the rows for which `goes_left` holds to the front; returns how many there are.
/// Two cursors meet in the middle (Hoare's scheme): each misplaced pair costs one swap, and rows
/// already on their side are never moved. Order within a side does not matter to the tree.
fn partition(rows: &mut [u32], goes_left: impl Fn(u32) -> bool) -> usize {
    let (mut low, mut high) = (0, rows.len());
    loop {
        while low < high && goes_left(rows[low]) {
            low += 1;
        }
        while low < high && !goes_left(rows[high - 1]) {
            high -= 1;
        }
        if low >= high {
            return low;
        }
        rows.swap(low, high - 1);
        low += 1;
        high -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn sampling_is_distinct_and_in_range() {
        let mut rng = ForestRng::for_tree(3, 0);
        for (rows, size) in [(1000, 256), (300, 256), (256, 256), (10, 256), (2, 1)] {
            let sample = sample_without_replacement(rows, size, &mut rng);
            assert_eq!(sample.len(), size.min(rows));
            let distinct: HashSet<_> = sample.iter().collect();
            assert_eq!(distinct.len(), sample.len());
            assert!(sample.iter().all(|&r| (r as usize) < rows));
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
    fn partition_keeps_all_rows() {
        let mut rows: Vec<u32> = (0..20).collect();
        let left = partition(&mut rows, |r| r % 3 == 0);
        assert_eq!(left, 7);
        assert!(rows[..left].iter().all(|r| r % 3 == 0));
        assert!(rows[left..].iter().all(|r| r % 3 != 0));
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
}
