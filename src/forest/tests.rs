//! Behaviour of the forest through its public surface.

use std::num::NonZeroUsize;

use super::*;

fn params(seed: u64) -> ForestParams {
    ForestParams { seed, ..ForestParams::default() }
}

/// A deterministic cloud of `rows` points in `columns` dimensions, in [0, 1).
fn cloud(rows: usize, columns: usize, seed: u64) -> Matrix {
    let mut rng = ForestRng::for_tree(seed, 999);
    let values = (0..rows * columns).map(|_| rng.next_unit() as f32).collect();
    Matrix::from_row_major(values, columns).unwrap()
}

#[test]
fn scikit_learn_documented_example_for_many_seeds() {
    // From scikit-learn's IsolationForest docstring: fit on [-1.1, 0.3, 0.5, 100],
    // predict([[0.1], [0], [90]]) == [1, 1, -1].
    let train = Matrix::from_rows_f64(&[[-1.1], [0.3], [0.5], [100.0]], 1).unwrap();
    for seed in 0..200 {
        let forest = Forest::fit(&train, &params(seed)).unwrap();
        let normal_a = forest.score_row(&[0.1]).unwrap();
        let normal_b = forest.score_row(&[0.0]).unwrap();
        let anomaly = forest.score_row(&[90.0]).unwrap();
        assert!(!forest.is_anomalous(normal_a), "seed {seed}: 0.1 scored {normal_a}");
        assert!(!forest.is_anomalous(normal_b), "seed {seed}: 0 scored {normal_b}");
        assert!(forest.is_anomalous(anomaly), "seed {seed}: 90 scored {anomaly}");
    }
}

#[test]
fn sample_size_one_scores_one_half() {
    let data = cloud(50, 2, 1);
    let forest = Forest::fit(&data, &ForestParams { sample_size: Some(1), ..params(0) }).unwrap();
    for score in forest.score_batch(&data).unwrap() {
        assert_eq!(score, 0.5);
    }
}

#[test]
fn trees_respect_height_limit_and_leaf_sizes_sum_to_sample_size() {
    for (rows, sample_size) in [(1000, 256), (1000, 64), (100, 256), (1, 256), (600, 257)] {
        let data = cloud(rows, 3, 2);
        let forest = Forest::fit(&data, &ForestParams { sample_size: Some(sample_size), ..params(5) }).unwrap();
        let psi = sample_size.min(rows);
        assert_eq!(forest.sample_size(), psi);
        for tree in 0..forest.trees() {
            let nodes: Vec<Node> = forest.tree_nodes(tree).collect();
            let leaves: Vec<_> = nodes.iter().filter_map(|n| n.leaf_parts()).collect();
            assert_eq!(leaves.iter().map(|&(_, size)| size).sum::<usize>(), psi);
            assert!(leaves.iter().all(|&(depth, _)| depth <= height_limit(psi)));
            assert_eq!(u32::from(forest.heights[tree]), leaves.iter().map(|&(d, _)| d).max().unwrap());
        }
    }
}

#[test]
fn constant_feature_is_never_split() {
    // Column 1 is constant everywhere, column 2 nearly so (span 5e-8 <= 1e-7).
    let mut rng = ForestRng::for_tree(9, 0);
    let rows: Vec<[f64; 3]> = (0..500).map(|i| [rng.next_unit(), 7.0, 1.0 + (i % 2) as f64 * 5e-8]).collect();
    let data = Matrix::from_rows_f64(&rows, 3).unwrap();
    let forest = Forest::fit(&data, &params(3)).unwrap();
    let nodes: Vec<Node> = (0..forest.trees()).flat_map(|tree| forest.tree_nodes(tree)).collect();
    let splits: Vec<_> = nodes.iter().filter(|n| n.leaf_parts().is_none()).collect();
    assert!(!splits.is_empty());
    assert!(splits.iter().all(|n| n.feature == 0), "split on a constant feature");
}

#[test]
fn all_constant_rows_make_single_leaf_trees() {
    let data = Matrix::from_rows_f64(&vec![[1.0, 2.0]; 300], 2).unwrap();
    let forest = Forest::fit(&data, &params(0)).unwrap();
    assert_eq!(forest.node_count(), forest.trees());
    // Every row sits in a root leaf of size 256: h = c(256) = c(ψ), so s = 0.5.
    let score = forest.score_row(&[1.0, 2.0]).unwrap();
    assert!((score - 0.5).abs() < 1e-12, "{score}");
}

#[test]
fn thresholds_lie_within_node_range() {
    // Walk each tree with the training sample's full range: every split threshold must be at
    // least the smallest value and below the largest value of its feature among the node's rows.
    let data = cloud(300, 2, 4);
    let forest = Forest::fit(&data, &ForestParams { sample_size: Some(300), ..params(1) }).unwrap();
    for tree in 0..forest.trees() {
        let nodes: Vec<Node> = forest.tree_nodes(tree).collect();
        let mut stack = vec![(0usize, (0..data.rows()).collect::<Vec<_>>())];
        while let Some((index, members)) = stack.pop() {
            let node = nodes[index];
            if node.leaf_parts().is_some() {
                continue;
            }
            let values: Vec<f32> = members.iter().map(|&r| data.row(r)[usize::from(node.feature)]).collect();
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert!(node.threshold >= min && node.threshold < max);
            let (left, right) =
                members.iter().partition(|&&r| data.row(r)[usize::from(node.feature)] <= node.threshold);
            stack.push((usize::from(node.left), left));
            stack.push((usize::from(node.left) + 1, right));
        }
    }
}

#[test]
fn fit_does_not_depend_on_thread_count() {
    let data = cloud(5000, 4, 6);
    // Enough trees for the fit to really use several threads (see MIN_TREE_ROWS_PER_THREAD).
    let trees = 3 * MIN_TREE_ROWS_PER_THREAD / 256 + 1;
    let params = ForestParams { trees, ..params(11) };
    let one = Forest::fit_with_threads(&data, &params, NonZeroUsize::MIN).unwrap();
    let many = Forest::fit_with_threads(&data, &params, NonZeroUsize::new(3).unwrap()).unwrap();
    assert_eq!(one, many);
    let scores_one = one.score_batch_with_threads(&data, NonZeroUsize::MIN).unwrap();
    let scores_many = one.score_batch_with_threads(&data, NonZeroUsize::new(2).unwrap()).unwrap();
    assert_eq!(scores_one, scores_many);
}

#[test]
fn runs_grown_apart_and_appended_in_tree_order_equal_one_run() {
    // What `TreeRun::shared` does with the claims of several threads, in a fixed order: runs of
    // different lengths, one of them grown after trees of another claim in the same vectors.
    let data = cloud(600, 3, 4);
    let run = TreeRun { data: &data, sample_size: 64, max_depth: height_limit(64), seed: 21 };
    let whole = run.trees(0..10);
    let (early, late) = (run.trees(0..4), run.trees(4..10));
    let mut shuffled = run.trees(8..10);
    let mut grower = TreeGrower::new(&data, 64, height_limit(64));
    for tree in 4..8 {
        run.grow(&mut grower, tree, &mut shuffled);
    }
    let mut appended = GrownTrees::with_room(10, 0);
    appended.append(&early, 0..4);
    appended.append(&shuffled, 2..6);
    appended.append(&late, 4..6);
    assert_eq!((appended.offsets, appended.heights), (whole.offsets, whole.heights));
    assert_eq!(appended.nodes, whole.nodes);
}

#[test]
fn batch_and_single_row_scores_agree() {
    let data = cloud(100, 3, 7);
    let forest = Forest::fit(&data, &params(2)).unwrap();
    let batch = forest.score_batch(&data).unwrap();
    for (row, expected) in batch.iter().enumerate() {
        assert_eq!(forest.score_row(data.row(row)).unwrap(), *expected);
    }
}

#[test]
fn outlier_scores_higher_than_inliers() {
    let mut rows: Vec<[f64; 2]> = (0..500).map(|i| [(i % 25) as f64 * 0.01, (i / 25) as f64 * 0.01]).collect();
    rows.push([5.0, 5.0]);
    let data = Matrix::from_rows_f64(&rows, 2).unwrap();
    let forest = Forest::fit(&data, &params(0)).unwrap();
    let scores = forest.score_batch(&data).unwrap();
    let outlier = scores[500];
    assert!(scores[..500].iter().all(|&s| s < outlier));
    assert!(forest.is_anomalous(outlier));
}

#[test]
fn contamination_threshold_flags_that_share_of_training_rows() {
    let data = cloud(2000, 3, 8);
    let forest =
        Forest::fit(&data, &ForestParams { contamination: Contamination::Fraction(0.1), ..params(4) }).unwrap();
    let flagged = forest.score_batch(&data).unwrap().iter().filter(|&&s| forest.is_anomalous(s)).count();
    assert!((190..=210).contains(&flagged), "{flagged} of 2000 flagged at 10%");
}

#[test]
fn upper_percentile_interpolates_like_numpy() {
    // numpy.percentile([1, 2, 3, 4], 75) == 3.25
    assert_eq!(upper_percentile(&mut [4.0, 1.0, 3.0, 2.0], 0.25), 3.25);
    assert_eq!(upper_percentile(&mut [5.0], 0.1), 5.0);
}

#[test]
fn invalid_parameters_are_refused_by_name() {
    let data = cloud(10, 1, 0);
    let refuse = |p: ForestParams, name: &str| match Forest::fit(&data, &p) {
        Err(ForestError::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
        other => panic!("expected {name} to be refused, got {other:?}"),
    };
    refuse(ForestParams { trees: 0, ..params(0) }, "trees");
    // Refused before anything is reserved for them (4,294,967,295 trees reserved 20 GiB).
    refuse(ForestParams { trees: MAX_TREES + 1, ..params(0) }, "trees");
    refuse(ForestParams { trees: u32::MAX as usize, ..params(0) }, "trees");
    refuse(ForestParams { sample_size: Some(0), ..params(0) }, "sample-size");
    refuse(ForestParams { sample_size: Some(MAX_SAMPLE_SIZE + 1), ..params(0) }, "sample-size");
    refuse(ForestParams { contamination: Contamination::Fraction(0.0), ..params(0) }, "contamination");
    refuse(ForestParams { contamination: Contamination::Fraction(0.7), ..params(0) }, "contamination");
    let empty = Matrix::from_row_major(vec![], 2).unwrap();
    assert_eq!(Forest::fit(&empty, &params(0)), Err(ForestError::Empty));
}

#[test]
fn scoring_checks_feature_count_and_finiteness() {
    let forest = Forest::fit(&cloud(50, 2, 0), &params(0)).unwrap();
    assert!(matches!(forest.score_row(&[1.0]), Err(ForestError::FeatureMismatch { expected: 2, found: 1 })));
    assert!(matches!(forest.score_row(&[1.0, f32::NAN]), Err(ForestError::NonFinite { column: 1, .. })));
}

#[test]
fn saved_model_scores_bit_identically() {
    let data = cloud(3000, 5, 3);
    let forest =
        Forest::fit(&data, &ForestParams { contamination: Contamination::Fraction(0.05), ..params(8) }).unwrap();
    let loaded = Forest::from_bytes(&forest.to_bytes()).unwrap();
    assert_eq!(loaded, forest);
    let before: Vec<u64> = forest.score_batch(&data).unwrap().iter().map(|s| s.to_bits()).collect();
    let after: Vec<u64> = loaded.score_batch(&data).unwrap().iter().map(|s| s.to_bits()).collect();
    assert_eq!(before, after);
}

#[test]
fn unknown_format_version_is_refused_with_a_clear_message() {
    let mut bytes = Forest::fit(&cloud(100, 2, 0), &params(0)).unwrap().to_bytes();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let err = Forest::from_bytes(&bytes).unwrap_err();
    assert_eq!(err, ForestError::Persist(persist::PersistError::UnsupportedVersion { found: 7 }));
    assert!(err.to_string().contains("version 7 is not supported"));
}

#[test]
fn damaged_model_files_are_refused_not_panicked_on() {
    let bytes = Forest::fit(&cloud(300, 2, 0), &params(0)).unwrap().to_bytes();
    assert!(Forest::from_bytes(b"").is_err());
    assert!(Forest::from_bytes(b"not a model at all").is_err());
    for cut in [12, 40, bytes.len() / 2, bytes.len() - 1] {
        assert!(Forest::from_bytes(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    for position in (0..bytes.len()).step_by(7) {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x55;
        assert!(Forest::from_bytes(&damaged).is_err(), "flipped byte {position}");
    }
}

#[test]
fn model_memory_is_seven_bytes_a_node_plus_small_tables() {
    // The worst case for size: uniform data grows the most balanced trees. Real data is smaller
    // (the forest benchmark reports it per data set against the 128 KiB target).
    let data = cloud(20_000, 6, 10);
    let forest = Forest::fit(&data, &params(0)).unwrap();
    assert!(forest.node_count() <= forest.trees() * (2 * 256 - 1));
    let overhead = forest.memory_bytes() - 7 * forest.node_count();
    assert!(overhead < 4 * 1024, "{overhead} bytes beyond the nodes");
}

#[test]
fn models_up_to_the_default_sample_size_share_one_average_path_table() {
    let data = cloud(2_000, 3, 11);
    let small = Forest::fit(&data, &ForestParams { sample_size: Some(64), ..params(1) }).unwrap();
    let default = Forest::fit(&data, &params(2)).unwrap();
    let large = Forest::fit(&data, &ForestParams { sample_size: Some(300), ..params(3) }).unwrap();
    assert!(matches!(small.average_path_by_size, Cow::Borrowed(_)));
    assert!(matches!(default.average_path_by_size, Cow::Borrowed(_)));
    assert_eq!(small.average_path_by_size.as_ptr(), default.average_path_by_size.as_ptr(), "one shared table");
    assert!(matches!(large.average_path_by_size, Cow::Owned(_)));
    for forest in [&small, &default, &large] {
        let table = &forest.average_path_by_size;
        assert_eq!(table.len(), forest.sample_size() + 1);
        assert!(table.iter().enumerate().all(|(n, &c)| c.to_bits() == average_path_length(n).to_bits()));
    }
    // Only an owned table counts towards a model's memory.
    let beyond_nodes = |forest: &Forest| forest.memory_bytes() - 7 * forest.node_count();
    assert!(beyond_nodes(&default) < 1024, "{} bytes", beyond_nodes(&default));
    assert!(beyond_nodes(&large) >= 301 * 8);
}

/// The plainest scorer: one row, one tree at a time, following branches until a leaf, adding the
/// trees' path lengths in tree order. The fast scorer must give the same bits.
fn reference_scores(forest: &Forest, data: &Matrix) -> Vec<f64> {
    let scale = forest.trees() as f64 * average_path_length(forest.sample_size());
    (0..data.rows())
        .map(|row| {
            let x = data.row(row);
            let mut sum = 0.0;
            for tree in 0..forest.trees() {
                let nodes: Vec<Node> = forest.tree_nodes(tree).collect();
                let mut at = 0;
                let (depth, size) = loop {
                    let node = nodes[at];
                    match node.leaf_parts() {
                        Some(leaf) => break leaf,
                        None => {
                            at = usize::from(node.left) + usize::from(x[usize::from(node.feature)] > node.threshold)
                        }
                    }
                };
                sum += f64::from(depth) + average_path_length(size);
            }
            if scale > 0.0 { (-sum / scale).exp2() } else { 0.5 }
        })
        .collect()
}

#[test]
fn fast_scoring_equals_the_reference_walk_to_the_bit() {
    // Narrow and wide features (up to 256 columns, or more), windowed tables and not (trees of more
    // than 512 nodes, tables of fewer than 512 nodes), row counts that are not whole groups or
    // chunks, one and two threads.
    for (rows, columns, sample_size, trees) in [
        (3001, 3, 256, 40),
        (777, 9, 64, 30),
        (1500, 129, 256, 20),
        (2100, 2, 1024, 10),
        (5, 4, 256, 7),
        (1203, 256, 256, 12),
        (901, 300, 256, 15),
        (1100, 300, 1024, 3),
    ] {
        let data = cloud(rows, columns, columns as u64);
        let forest = Forest::fit(&data, &ForestParams { trees, sample_size: Some(sample_size), ..params(3) }).unwrap();
        let expected: Vec<u64> = reference_scores(&forest, &data).iter().map(|s| s.to_bits()).collect();
        for threads in [1, 2] {
            let scores = forest.score_batch_with_threads(&data, NonZeroUsize::new(threads).unwrap()).unwrap();
            let scores: Vec<u64> = scores.iter().map(|s| s.to_bits()).collect();
            assert_eq!(scores, expected, "{rows}×{columns}, ψ = {sample_size}, {threads} threads");
        }
    }
}

#[test]
fn complete_tree_walk_equals_the_reference_walk_to_the_bit() {
    use super::heap::HeapForest;
    // Trees of every height up to 8, shallow trees on data with few distinct values (a forest of
    // mixed heights), up to 256 columns, row counts that are not whole groups, one and two threads.
    let few_values = |rows: usize, columns: usize, levels: f32| {
        let values = cloud(rows, columns, 11).values().iter().map(|v| (v * levels).floor()).collect();
        Matrix::from_row_major(values, columns).unwrap()
    };
    for (data, sample_size, trees) in [
        (cloud(3001, 3, 3), 256, 40),
        (cloud(777, 9, 9), 64, 30),
        (cloud(1203, 256, 256), 256, 12),
        (cloud(300, 5, 5), 2, 9),
        (few_values(2000, 2, 5.0), 256, 25),
        (few_values(2000, 2, 3.0), 256, 9),
        (few_values(37, 3, 3.0), 256, 11),
    ] {
        let forest = Forest::fit(&data, &ForestParams { trees, sample_size: Some(sample_size), ..params(3) }).unwrap();
        let heap = HeapForest::build(&forest).expect("at most 256 features and height 8");
        let expected: Vec<u64> = reference_scores(&forest, &data).iter().map(|s| s.to_bits()).collect();
        for threads in [1, 2] {
            let threads = NonZeroUsize::new(threads).unwrap();
            let scores = forest.score_rows_through(data.values(), threads, Some(&heap));
            let scores: Vec<u64> = scores.iter().map(|s| s.to_bits()).collect();
            assert_eq!(scores, expected, "{}×{}, ψ = {sample_size}, {threads} threads", data.rows(), data.columns());
        }
    }
    let heights: Vec<u8> =
        Forest::fit(&few_values(2000, 2, 5.0), &ForestParams { trees: 25, ..params(3) }).unwrap().heights.to_vec();
    assert!(heights.iter().min() < heights.iter().max(), "the mixed-height case has one height only: {heights:?}");
}

#[test]
fn batches_split_over_threads_score_as_one_thread_does() {
    // Large enough (65,000 rows × 100 trees) that two and three threads each take several blocks,
    // the last one short; the complete-tree walk and the model's own layout both.
    let data = cloud(65_001, 4, 4);
    let forest = Forest::fit(&data, &params(5)).unwrap();
    let heap = super::heap::HeapForest::build(&forest);
    let expected: Vec<u64> = reference_scores(&forest, &data).iter().map(|s| s.to_bits()).collect();
    for heap in [heap.as_ref(), None] {
        for threads in [2, 3] {
            let scores = forest.score_rows_through(data.values(), NonZeroUsize::new(threads).unwrap(), heap);
            let scores: Vec<u64> = scores.iter().map(|s| s.to_bits()).collect();
            assert_eq!(scores, expected, "{threads} threads, complete trees: {}", heap.is_some());
        }
    }
}

#[test]
fn complete_tree_walk_declines_deep_trees_and_wide_tables() {
    use super::heap::HeapForest;
    let deep =
        Forest::fit(&cloud(3000, 3, 1), &ForestParams { trees: 5, sample_size: Some(1024), ..params(1) }).unwrap();
    assert!(deep.heights.iter().any(|&h| h > 8));
    assert!(HeapForest::build(&deep).is_none(), "trees deeper than 8 have positions beyond 255");
    let wide = Forest::fit(&cloud(600, 300, 1), &ForestParams { trees: 5, ..params(1) }).unwrap();
    assert!(HeapForest::build(&wide).is_none(), "features beyond 255 do not fit a u8");
}

#[test]
fn empty_batches_score_to_nothing() {
    for columns in [3, 300] {
        let forest = Forest::fit(&cloud(600, columns, 2), &params(1)).unwrap();
        let empty = Matrix::from_row_major(Vec::new(), columns).unwrap();
        for threads in [1, 2] {
            assert!(forest.score_batch_with_threads(&empty, NonZeroUsize::new(threads).unwrap()).unwrap().is_empty());
        }
    }
}

#[test]
fn node_tables_are_narrow_and_windowed_at_the_defaults() {
    use layout::Features;
    let narrow = Forest::fit(&cloud(1000, 256, 1), &params(0)).unwrap();
    assert!(matches!(narrow.nodes.features, Features::Narrow(_)) && narrow.nodes.windowed);
    let many_features = Forest::fit(&cloud(1000, 257, 1), &params(0)).unwrap();
    assert!(matches!(many_features.nodes.features, Features::Wide(_)) && many_features.nodes.windowed);
    let big_trees = Forest::fit(&cloud(2000, 2, 1), &ForestParams { sample_size: Some(1024), ..params(0) }).unwrap();
    assert!(matches!(big_trees.nodes.features, Features::Narrow(_)) && !big_trees.nodes.windowed);
}
