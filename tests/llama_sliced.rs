//! The sliced forward path of the loss oracle against the masked one.

mod llama_common;

use std::path::PathBuf;

use llama_common::load;
use pgprune::models::llama::{kept_units, ForwardPath, Granularity, Llama, LlamaOracle, MaskThreads};
use pgprune::models::loading::load_model;
use pgprune::ForwardOracle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Both f32 paths run the same products over different summation orders
/// (smaller matmuls, zero terms left out); the fixtures' losses near 4.6
/// agree to about 1e-6.
const F32_TOLERANCE: f64 = 1e-5;

/// SmolLM2's 30 layers and 49,152-way softmax compound f32 rounding
/// (2^-24 relative per operation); on losses near 20 the two paths differed
/// by 1.6e-5, so 1e-4 still catches any wrongly kept or dropped unit, which
/// moves the loss by more than 1e-3.
const SMOLLM2_F32_TOLERANCE: f64 = 1e-4;

/// bf16 keeps 8 mantissa bits, so each activation carries a relative error
/// near 2^-9; over 30 layers of SmolLM2 the two summation orders move a
/// loss near 10 by a few hundredths at most.
const BF16_TOLERANCE: f64 = 0.1;

fn all_granularities() -> Granularity {
    Granularity::new(true, true, true).unwrap()
}

fn random_masks(rng: &mut ChaCha8Rng, k: usize, n: usize, keep: f64) -> Tensor {
    let values: Vec<f32> = (0..k * n).map(|_| if rng.random_bool(keep) { 1.0 } else { 0.0 }).collect();
    Tensor::from_slice(&values).view([k as i64, n as i64])
}

fn oracle(model: Llama, granularity: Granularity, path: ForwardPath) -> LlamaOracle {
    LlamaOracle::new(model, granularity).with_forward_path(path)
}

fn assert_close(name: &str, expected: &[f64], found: &[f64], tolerance: f64) {
    assert_eq!(expected.len(), found.len(), "{name}: loss counts differ");
    for (k, (e, f)) in expected.iter().zip(found).enumerate() {
        assert!(f.is_finite(), "{name} mask {k}: loss {f} is not finite");
        let diff = (e - f).abs();
        assert!(diff < tolerance, "{name} mask {k}: masked {e} vs sliced {f}, |diff| = {diff:e}");
    }
}

fn token_batch(rng: &mut ChaCha8Rng, batch: i64, seq: i64, vocab: i64) -> Tensor {
    let ids: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..vocab)).collect();
    Tensor::from_slice(&ids).view([batch, seq])
}

#[test]
fn sliced_equals_masked_on_fixtures() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for name in ["llama2_mha", "llama3_gqa", "mistral_window"] {
        let masked = oracle(load(name, Kind::Float), all_granularities(), ForwardPath::Masked);
        let sliced = oracle(load(name, Kind::Float), all_granularities(), ForwardPath::Sliced);
        let auto = oracle(load(name, Kind::Float), all_granularities(), ForwardPath::Auto);
        let vocab = masked.model().config.vocab_size;
        let tokens = token_batch(&mut rng, 2, 16, vocab);
        let n = masked.unit_space().num_units();
        for keep in [0.0, 0.3, 0.7, 0.95, 1.0] {
            let masks = random_masks(&mut rng, 3, n, keep);
            let expected = masked.losses(&tokens, &masks).unwrap();
            let label = format!("{name} keep {keep}");
            assert_close(&label, &expected, &sliced.losses(&tokens, &masks).unwrap(), F32_TOLERANCE);
            assert_close(&label, &expected, &auto.losses(&tokens, &masks).unwrap(), F32_TOLERANCE);
        }
    }
}

#[test]
fn concurrent_masks_match_sequential() {
    // Two libtorch threads, so that Auto runs the masks on worker threads.
    tch::set_num_threads(2);
    assert!(MaskThreads::Auto.workers(3, tch::get_num_threads(), Device::Cpu) > 1);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let cases = [(Kind::Float, 1e-4), (Kind::BFloat16, 1e-2)];
    for ((kind, tolerance), name) in cases.iter().flat_map(|&c| ["llama2_mha", "llama3_gqa", "mistral_window"].map(|n| (c, n))) {
        let sequential = oracle(load(name, kind), all_granularities(), ForwardPath::Sliced).with_mask_threads(MaskThreads::Sequential);
        let concurrent = oracle(load(name, kind), all_granularities(), ForwardPath::Sliced);
        let tokens = token_batch(&mut rng, 2, 16, sequential.model().config.vocab_size);
        // A second round reuses the workers that the first one started.
        for round in 0..2 {
            let masks = random_masks(&mut rng, 3, sequential.unit_space().num_units(), 0.5);
            let expected = sequential.losses(&tokens, &masks).unwrap();
            let label = format!("{name} {kind:?} round {round}");
            assert_close(&label, &expected, &concurrent.losses(&tokens, &masks).unwrap(), tolerance);
            assert_eq!(tch::get_num_threads(), 2, "{label}: the caller's thread count changed");
            // Distinct losses per mask, so that a mix-up of masks would fail above.
            let distinct = (expected[0] - expected[1]).abs().max((expected[1] - expected[2]).abs());
            assert!(distinct > tolerance, "{label}: the masks' losses differ by only {distinct}");
        }
    }
}

#[test]
fn sliced_losses_change_with_mask() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let name = "llama3_gqa";
    let sliced = oracle(load(name, Kind::Float), Granularity::new(true, true, false).unwrap(), ForwardPath::Sliced);
    let tokens = token_batch(&mut rng, 2, 16, sliced.model().config.vocab_size);
    let n = sliced.unit_space().num_units() as i64;
    let keep_all = Tensor::ones([1, n], (Kind::Float, Device::Cpu));
    let masks = Tensor::cat(&[&keep_all, &random_masks(&mut rng, 1, n as usize, 0.5)], 0);
    let losses = sliced.losses(&tokens, &masks).unwrap();
    assert!((losses[0] - losses[1]).abs() > 1e-3, "pruning half the units left the loss at {}", losses[0]);
}

#[test]
fn non_binary_masks_fall_back_or_fail() {
    let name = "llama2_mha";
    let (mut rng, granularity) = (ChaCha8Rng::seed_from_u64(9), all_granularities());
    let masked = oracle(load(name, Kind::Float), granularity, ForwardPath::Masked);
    let auto = oracle(load(name, Kind::Float), granularity, ForwardPath::Auto);
    let sliced = oracle(load(name, Kind::Float), granularity, ForwardPath::Sliced);
    let tokens = token_batch(&mut rng, 2, 8, masked.model().config.vocab_size);
    let n = masked.unit_space().num_units() as i64;
    let halves = Tensor::full([2, n], 0.5, (Kind::Float, Device::Cpu));
    let expected = masked.losses(&tokens, &halves).unwrap();
    assert_close(name, &expected, &auto.losses(&tokens, &halves).unwrap(), F32_TOLERANCE);
    assert!(sliced.losses(&tokens, &halves).is_err());
}

#[test]
fn kept_units_lists_kept_columns() {
    let model = load("llama3_gqa", Kind::Float);
    let granularity = all_granularities();
    let space = granularity.unit_space(&model);
    let mask = Tensor::ones([1, space.num_units() as i64], (Kind::Float, Device::Cpu));
    let heads = space.group(pgprune::UnitKind::Head, 1).unwrap();
    let block = space.group(pgprune::UnitKind::MlpBlock, 2).unwrap();
    let _ = mask.narrow(1, heads.offset as i64, 1).fill_(0.0);
    let _ = mask.narrow(1, block.offset as i64, 1).fill_(0.0);
    let kept = kept_units(&model, &space, &mask).unwrap().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].len(), model.layers.len());
    assert_eq!(kept[0][1].heads.as_deref(), Some(&[1i64][..]));
    assert_eq!(kept[0][0].heads.as_deref(), Some(&[0i64, 1][..]));
    assert!(!kept[0][2].mlp);
    assert!(kept[0][2].attention);
}

fn real_model() -> PathBuf {
    let path = std::env::var("PGPRUNE_MODEL").unwrap_or_else(|_| {
        panic!("PGPRUNE_MODEL is not set; run `scripts/setup.sh --model` and `source <(scripts/setup.sh --env)`")
    });
    PathBuf::from(path)
}

#[test]
fn sliced_equals_masked_on_smollm2() {
    let heads_and_channels = Granularity::new(true, true, false).unwrap();
    for (kind, tolerance) in [(Kind::Float, SMOLLM2_F32_TOLERANCE), (Kind::BFloat16, BF16_TOLERANCE)] {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let model = load_model(&real_model(), kind, Device::Cpu).unwrap().model;
        let vocab = model.config.vocab_size;
        let masked = oracle(model, heads_and_channels, ForwardPath::Masked);
        let tokens = token_batch(&mut rng, 2, 32, vocab);
        let masks = random_masks(&mut rng, 2, masked.unit_space().num_units(), 0.5);
        let expected = masked.losses(&tokens, &masks).unwrap();
        let sliced = oracle(masked.into_model(), heads_and_channels, ForwardPath::Sliced);
        assert_close(&format!("SmolLM2 {kind:?}"), &expected, &sliced.losses(&tokens, &masks).unwrap(), tolerance);
    }
}
