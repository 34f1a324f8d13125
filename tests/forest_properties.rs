//! Property tests of the isolation forest: what must hold for any data and any seed.

use anomaly_exporter::forest::{Contamination, Forest, ForestParams, Matrix};
use proptest::prelude::*;

/// A matrix of 1–300 rows and 1–6 columns of finite values, with duplicates and constant columns
/// likely (small integer grids) as well as wide spreads.
fn matrices() -> impl Strategy<Value = Matrix> {
    (1usize..=6, 1usize..=300).prop_flat_map(|(columns, rows)| {
        let value = prop_oneof![(-3i32..=3).prop_map(|v| v as f32), -1e6f32..1e6f32, Just(0.0f32)];
        prop::collection::vec(value, rows * columns)
            .prop_map(move |values| Matrix::from_row_major(values, columns).expect("finite values"))
    })
}

fn params() -> impl Strategy<Value = ForestParams> {
    (1usize..=40, prop::option::of(1usize..=300), any::<u64>(), prop::option::of(0.01f64..=0.5)).prop_map(
        |(trees, sample_size, seed, fraction)| ForestParams {
            trees,
            sample_size,
            seed,
            contamination: fraction.map_or(Contamination::Auto, Contamination::Fraction),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn scores_lie_in_zero_one(data in matrices(), params in params()) {
        let forest = Forest::fit(&data, &params).unwrap();
        for score in forest.score_batch(&data).unwrap() {
            prop_assert!(score > 0.0 && score <= 1.0, "score {}", score);
        }
        prop_assert!(forest.threshold() > 0.0 && forest.threshold() <= 1.0);
    }

    #[test]
    fn same_seed_same_forest_and_scores(data in matrices(), params in params()) {
        let first = Forest::fit(&data, &params).unwrap();
        let second = Forest::fit(&data, &params).unwrap();
        prop_assert_eq!(first.to_bytes(), second.to_bytes());
        prop_assert_eq!(first.score_batch(&data).unwrap(), second.score_batch(&data).unwrap());
    }

    #[test]
    fn scoring_a_permutation_permutes_the_scores(data in matrices(), params in params(), shift in 0usize..1000) {
        let forest = Forest::fit(&data, &params).unwrap();
        let scores = forest.score_batch(&data).unwrap();
        // A rotation composed with a reversal: an arbitrary but reproducible permutation.
        let rows = data.rows();
        let order: Vec<usize> = (0..rows).map(|i| (rows - 1 - i + shift) % rows).collect();
        let permuted: Vec<f32> = order.iter().flat_map(|&r| data.row(r).to_vec()).collect();
        let permuted = Matrix::from_row_major(permuted, data.columns()).unwrap();
        let permuted_scores = forest.score_batch(&permuted).unwrap();
        for (position, &row) in order.iter().enumerate() {
            prop_assert_eq!(permuted_scores[position].to_bits(), scores[row].to_bits());
        }
    }

    #[test]
    fn saved_and_loaded_models_score_bit_identically(data in matrices(), params in params()) {
        let forest = Forest::fit(&data, &params).unwrap();
        let loaded = Forest::from_bytes(&forest.to_bytes()).unwrap();
        let before: Vec<u64> = forest.score_batch(&data).unwrap().iter().map(|s| s.to_bits()).collect();
        let after: Vec<u64> = loaded.score_batch(&data).unwrap().iter().map(|s| s.to_bits()).collect();
        prop_assert_eq!(before, after);
    }

    #[test]
    fn loading_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Forest::from_bytes(&bytes);
    }

    #[test]
    fn loading_a_damaged_model_never_panics(
        data in matrices(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = Forest::fit(&data, &ForestParams::default()).unwrap().to_bytes();
        for (index, value) in damage {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(forest) = Forest::from_bytes(&bytes) {
            // A damage the checksum cannot see (none expected) must still score safely.
            let _ = forest.score_batch(&data);
        }
    }
}
