//! Forward throughput of SmolLM2-135M in tokens per second at batch 8 x 128:
//! the dense model, the model with a 50% mask multiplied in, and the model
//! physically pruned by the same mask, in f32 and bf16.
//!
//! Needs `$PGPRUNE_MODEL` (run `scripts/setup.sh --model` and source
//! `scripts/setup.sh --env`). Run with `cargo bench --bench forward`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgprune::models::llama::{compact, Granularity, LlamaOracle};
use pgprune::models::load_model;
use pgprune::ForwardOracle;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 8;
const SEQ_LEN: i64 = 128;
const SPARSITY: f64 = 0.5;

fn model_path() -> PathBuf {
    PathBuf::from(std::env::var("PGPRUNE_MODEL").expect(
        "PGPRUNE_MODEL is not set; run `scripts/setup.sh --model` and `source <(scripts/setup.sh --env)`",
    ))
}

/// Builds a mask that removes exactly `SPARSITY` of every group's units, chosen at
/// random, as `[num_units]` f32.
fn half_mask(oracle: &LlamaOracle, rng: &mut ChaCha8Rng) -> Tensor {
    let space = oracle.unit_space();
    let mut mask = vec![0.0f32; space.num_units()];
    for group in space.groups() {
        let mut columns: Vec<usize> = (group.offset..group.offset + group.len).collect();
        columns.shuffle(rng);
        let keep = ((1.0 - SPARSITY) * group.len as f64).round() as usize;
        for &c in columns.iter().take(keep) {
            mask[c] = 1.0;
        }
    }
    Tensor::from_slice(&mask)
}

fn bench_forward(c: &mut Criterion) {
    // As the CLI does: keep freed activation memory for the next forward.
    pgprune::runtime::retain_freed_memory();
    let _guard = tch::no_grad_guard();
    let mut group = c.benchmark_group("forward_smollm2_8x128");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * SEQ_LEN) as u64));
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    for (name, kind) in [("f32", Kind::Float), ("bf16", Kind::BFloat16)] {
        let loaded = load_model(&model_path(), kind, Device::Cpu).expect("load the model");
        let vocab = loaded.model.config.vocab_size;
        let tokens = Tensor::randint(vocab, [BATCH, SEQ_LEN], (Kind::Int64, Device::Cpu));
        let oracle = LlamaOracle::new(loaded.model, Granularity::new(true, true, false).unwrap());
        let mask = half_mask(&oracle, &mut rng);
        let masks = mask.unsqueeze(0); // [1, num_units]
        let pruned = compact(oracle.model(), oracle.unit_space(), &mask).expect("compact the model");

        group.bench_function(BenchmarkId::new("dense", name), |b| {
            b.iter(|| oracle.model().forward(&tokens, None).unwrap())
        });
        group.bench_function(BenchmarkId::new("masked_50", name), |b| {
            b.iter(|| oracle.masked_logits(&tokens, &masks).unwrap())
        });
        group.bench_function(BenchmarkId::new("pruned_50", name), |b| {
            b.iter(|| pruned.forward(&tokens, None).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_forward);
criterion_main!(benches);
