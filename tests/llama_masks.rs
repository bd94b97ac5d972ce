//! Masked and batched forwards of the LLaMA model, and its loss oracle.

mod llama_common;

use llama_common::{load, max_abs_diff, reference};
use pgprune::models::llama::{Granularity, LayerMasks, LlamaOracle};
use pgprune::{ForwardOracle, UnitKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// Masked and unmasked paths run the same f32 operations in nearly the same
/// order; differences come only from batching and stay near 1e-6.
const TOLERANCE: f64 = 1e-5;

fn all_granularities() -> Granularity {
    Granularity::new(true, true, true).unwrap()
}

fn random_masks(rng: &mut ChaCha8Rng, k: usize, n: usize, keep: f64) -> Tensor {
    let values: Vec<f32> = (0..k * n).map(|_| if rng.random_bool(keep) { 1.0 } else { 0.0 }).collect();
    Tensor::from_slice(&values).view([k as i64, n as i64])
}

#[test]
fn unit_space_layout_and_costs() {
    let oracle = LlamaOracle::new(load("llama3_gqa", Kind::Float), all_granularities());
    let space = oracle.unit_space();
    // Per layer: 2 KV groups, 64 channels, 2 block units; 3 layers.
    assert_eq!(space.num_units(), 3 * (2 + 64 + 2));
    let heads = space.group(UnitKind::Head, 1).unwrap();
    assert_eq!(heads.len, 2);
    // One KV group: 4 query heads and 1 KV head of dim 8, hidden 32:
    // q rows 4*8*32, k and v rows 8*32 each, o columns 32*4*8.
    assert_eq!(heads.cost, (4 * 8 * 32 + 2 * 8 * 32 + 32 * 4 * 8) as u64);
    let channels = space.group(UnitKind::Channel, 2).unwrap();
    assert_eq!(channels.cost, 3 * 32);
    let mlp_block = space.group(UnitKind::MlpBlock, 0).unwrap();
    assert_eq!(mlp_block.cost, (3 * 32 * 64 + 32) as u64);
}

#[test]
fn granularity_rejects_empty_selection() {
    assert!(Granularity::new(false, false, false).is_err());
}

#[test]
fn all_ones_mask_equals_dense() {
    for name in ["llama2_mha", "llama3_gqa", "mistral_window"] {
        let oracle = LlamaOracle::new(load(name, Kind::Float), all_granularities());
        let (ids, _) = reference(name);
        let n = oracle.unit_space().num_units() as i64;
        let masked = oracle.masked_logits(&ids, &Tensor::ones([1, n], (Kind::Float, tch::Device::Cpu))).unwrap();
        let dense = oracle.model().forward(&ids, None).unwrap();
        let diff = max_abs_diff(&masked, &dense);
        assert!(diff < TOLERANCE, "{name}: max |diff| = {diff}");
    }
}

#[test]
fn batched_masks_equal_separate_forwards() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for name in ["llama2_mha", "llama3_gqa", "mistral_window"] {
        let oracle = LlamaOracle::new(load(name, Kind::Float), all_granularities());
        let (ids, _) = reference(name);
        let batch = ids.size()[0];
        let n = oracle.unit_space().num_units();
        let k = 3;
        let masks = random_masks(&mut rng, k, n, 0.7);
        let batched = oracle.masked_logits(&ids, &masks).unwrap();
        for i in 0..k as i64 {
            let single = oracle.masked_logits(&ids, &masks.narrow(0, i, 1)).unwrap();
            let rows = batched.narrow(0, i * batch, batch);
            let diff = max_abs_diff(&rows, &single);
            assert!(diff < TOLERANCE, "{name} mask {i}: max |diff| = {diff}");
        }
    }
}

#[test]
fn head_mask_equals_zeroed_o_proj_columns() {
    let name = "llama3_gqa";
    let oracle = LlamaOracle::new(load(name, Kind::Float), Granularity::new(true, false, false).unwrap());
    let (ids, _) = reference(name);
    let space = oracle.unit_space();
    let group = space.group(UnitKind::Head, 1).unwrap();
    let mask = Tensor::ones([1, space.num_units() as i64], (Kind::Float, tch::Device::Cpu));
    let _ = mask.narrow(1, group.offset as i64 + 1, 1).fill_(0.0);
    let masked = oracle.masked_logits(&ids, &mask).unwrap();

    let mut edited = load(name, Kind::Float);
    let attn = edited.layers[1].self_attn.as_mut().unwrap();
    // KV group 1 owns query heads 4..8, that is o_proj columns 32..64.
    let width = 4 * attn.head_dim;
    tch::no_grad(|| {
        let _ = attn.o_proj.weight.narrow(1, width, width).fill_(0.0);
    });
    let zeroed = edited.forward(&ids, None).unwrap();
    let diff = max_abs_diff(&masked, &zeroed);
    assert!(diff < TOLERANCE, "max |diff| = {diff}");
    let dense = oracle.model().forward(&ids, None).unwrap();
    assert!(max_abs_diff(&masked, &dense) > 1e-3, "removing a head should change the logits");
}

#[test]
fn block_mask_zero_equals_skipping_block() {
    let name = "llama2_mha";
    let oracle = LlamaOracle::new(load(name, Kind::Float), Granularity::new(false, false, true).unwrap());
    let (ids, _) = reference(name);
    let space = oracle.unit_space();
    let mask = Tensor::ones([1, space.num_units() as i64], (Kind::Float, tch::Device::Cpu));
    let attn0 = space.group(UnitKind::AttentionBlock, 0).unwrap().offset as i64;
    let mlp2 = space.group(UnitKind::MlpBlock, 2).unwrap().offset as i64;
    let _ = mask.narrow(1, attn0, 1).fill_(0.0);
    let _ = mask.narrow(1, mlp2, 1).fill_(0.0);
    let masked = oracle.masked_logits(&ids, &mask).unwrap();

    let mut skipped = load(name, Kind::Float);
    skipped.layers[0].self_attn = None;
    skipped.layers[2].mlp = None;
    let expected = skipped.forward(&ids, None).unwrap();
    let diff = max_abs_diff(&masked, &expected);
    assert!(diff < TOLERANCE, "max |diff| = {diff}");
}

#[test]
fn oracle_losses_equal_cross_entropy_of_logits() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let name = "mistral_window";
    let oracle = LlamaOracle::new(load(name, Kind::Float), all_granularities());
    let (ids, _) = reference(name);
    let seq = ids.size()[1];
    let masks = random_masks(&mut rng, 4, oracle.unit_space().num_units(), 0.8);
    let losses = oracle.losses(&ids, &masks).unwrap();
    assert_eq!(losses.len(), 4);
    for (k, &loss) in losses.iter().enumerate() {
        let logits = oracle.masked_logits(&ids, &masks.narrow(0, k as i64, 1)).unwrap();
        let predicted = logits.narrow(1, 0, seq - 1).reshape([-1, 96]);
        let targets = ids.narrow(1, 1, seq - 1).reshape([-1]);
        let expected = predicted.cross_entropy_for_logits(&targets).double_value(&[]);
        assert!((loss - expected).abs() < TOLERANCE, "mask {k}: {loss} vs {expected}");
    }
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
}

#[test]
fn oracle_rejects_wrong_mask_width() {
    let oracle = LlamaOracle::new(load("llama2_mha", Kind::Float), all_granularities());
    let (ids, _) = reference("llama2_mha");
    let n = oracle.unit_space().num_units() as i64;
    let masks = Tensor::ones([2, n + 1], (Kind::Float, tch::Device::Cpu));
    assert!(oracle.losses(&ids, &masks).is_err());
}

#[test]
fn taps_return_projection_inputs() {
    let model = load("llama3_gqa", Kind::Float);
    let (ids, _) = reference("llama3_gqa");
    let (batch, seq) = ids.size2().unwrap();
    let hidden = model.embed(&ids).unwrap();
    let mut taps = pgprune::models::llama::LayerTaps {
        want_o_proj_input: true,
        want_down_proj_input: true,
        ..Default::default()
    };
    let out = model.layer_forward(0, &hidden, &LayerMasks::default(), Some(&mut taps)).unwrap();
    assert_eq!(out.size(), [batch, seq, 32]);
    assert_eq!(taps.o_proj_input.unwrap().size(), [batch, seq, 8 * 8]);
    assert_eq!(taps.down_proj_input.unwrap().size(), [batch, seq, 64]);
    let logits = model.final_logits(&out).unwrap();
    assert_eq!(logits.size(), [batch, seq, 96]);
}
