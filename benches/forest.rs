//! Forest benchmarks: fit and score at ψ ∈ {64, 256}, t ∈ {50, 100}, d ∈ {1, 5, 36}, and the
//! model size against the 128 KiB target.
//!
//! `cargo bench --bench forest` (criterion). Scoring throughput is reported as elements = rows ×
//! trees, so criterion's "elem/s" inverts to nanoseconds per row per tree. Before the criterion
//! runs, a table of model sizes is printed for synthetic data and for the ODDS tables in
//! `../shared/data/odds/` when they are there.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use anomaly_exporter::forest::{Forest, ForestParams, Matrix};
use anomaly_exporter::table::{TableSpec, read_table};
use criterion::{BenchmarkId, Criterion, Throughput};

/// Rows of a mixture: a Gaussian-ish cluster (sum of uniforms) plus 1% scattered outliers.
fn synthetic(rows: usize, columns: usize, seed: u64) -> Matrix {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let values = (0..rows * columns)
        .map(|i| {
            if (i / columns).is_multiple_of(100) {
                uniform() * 20.0 - 10.0
            } else {
                (0..4).map(|_| uniform()).sum::<f32>() - 2.0
            }
        })
        .collect();
    Matrix::from_row_major(values, columns).expect("finite")
}

fn print_model_sizes() {
    println!("model size at the defaults (t = 100, ψ = 256); target ≤ 131072 bytes");
    println!("{:<14} {:>8} {:>5} {:>8} {:>10}", "data", "rows", "d", "nodes", "bytes");
    let mut sizes = Vec::new();
    for columns in [1, 5, 36] {
        let data = synthetic(20_000, columns, 1);
        let forest = Forest::fit(&data, &ForestParams::default()).expect("fit");
        println!(
            "{:<14} {:>8} {:>5} {:>8} {:>10}",
            "synthetic",
            data.rows(),
            columns,
            forest.node_count(),
            forest.memory_bytes()
        );
        sizes.push(forest.memory_bytes());
    }
    let odds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/odds");
    if let Ok(entries) = std::fs::read_dir(&odds) {
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        files.sort();
        for file in files {
            let Ok(table) = read_table(&file, &TableSpec::default()) else { continue };
            let forest = Forest::fit(&table.features, &ForestParams::default()).expect("fit");
            let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            println!(
                "{:<14} {:>8} {:>5} {:>8} {:>10}",
                name,
                table.features.rows(),
                table.features.columns(),
                forest.node_count(),
                forest.memory_bytes()
            );
            sizes.push(forest.memory_bytes());
        }
    }
    sizes.sort_unstable();
    println!(
        "median {} bytes, max {} bytes over {} models\n",
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1],
        sizes.len()
    );
}

fn bench_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit");
    for columns in [1, 5, 36] {
        let data = synthetic(50_000, columns, 2);
        for sample_size in [64, 256] {
            for trees in [50, 100] {
                let params = ForestParams { trees, sample_size: Some(sample_size), ..ForestParams::default() };
                let id = BenchmarkId::from_parameter(format!("psi{sample_size}_t{trees}_d{columns}"));
                group.bench_with_input(id, &params, |b, params| b.iter(|| Forest::fit(black_box(&data), params)));
            }
        }
    }
    group.finish();
}

fn bench_score(c: &mut Criterion) {
    let mut group = c.benchmark_group("score_one_core");
    let rows = 20_000;
    for columns in [1, 5, 36] {
        let data = synthetic(rows, columns, 3);
        for sample_size in [64, 256] {
            for trees in [50, 100] {
                let params = ForestParams { trees, sample_size: Some(sample_size), ..ForestParams::default() };
                let forest = Forest::fit(&data, &params).expect("fit");
                group.throughput(Throughput::Elements((rows * trees) as u64));
                let id = BenchmarkId::from_parameter(format!("psi{sample_size}_t{trees}_d{columns}"));
                group.bench_with_input(id, &forest, |b, forest| {
                    b.iter(|| forest.score_batch_with_threads(black_box(&data), NonZeroUsize::MIN))
                });
            }
        }
    }
    group.finish();

    let mut group = c.benchmark_group("score_all_cores");
    let data = synthetic(200_000, 5, 4);
    let forest = Forest::fit(&data, &ForestParams::default()).expect("fit");
    group.throughput(Throughput::Elements((data.rows() * forest.trees()) as u64));
    group.bench_function("psi256_t100_d5_200k_rows", |b| b.iter(|| forest.score_batch(black_box(&data))));
    group.finish();

    let mut group = c.benchmark_group("score_row");
    let forest = Forest::fit(&synthetic(5_000, 5, 5), &ForestParams::default()).expect("fit");
    let row = [0.1f32, -0.2, 0.3, 0.0, 0.5];
    group.bench_function("psi256_t100_d5", |b| b.iter(|| forest.score_row(black_box(&row))));
    group.finish();
}

fn main() {
    print_model_sizes();
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench_fit(&mut criterion);
    bench_score(&mut criterion);
    criterion.final_summary();
}
