//! Compaction of a masked model into a smaller dense one, and save / load.

mod llama_common;

use llama_common::{load, max_abs_diff, reference};
use pgprune::models::llama::{compact, save, Granularity, Llama, LlamaConfig, LlamaOracle};
use pgprune::{ForwardOracle, UnitKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// The compact model computes the same sums over fewer zero terms, so f32
/// results agree to rounding, near 1e-6.
const TOLERANCE: f64 = 1e-5;

/// A random final mask with every head of layer 0 and every channel of
/// layer 1 removed.
fn hard_mask(oracle: &LlamaOracle, seed: u64) -> Tensor {
    let space = oracle.unit_space();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values: Vec<f32> = (0..space.num_units()).map(|_| if rng.random_bool(0.6) { 1.0 } else { 0.0 }).collect();
    for g in space.groups() {
        let value = match (g.kind, g.layer) {
            (UnitKind::Head, 0) | (UnitKind::Channel, 1) => Some(0.0),
            (UnitKind::AttentionBlock | UnitKind::MlpBlock, _) => Some(1.0),
            _ => None,
        };
        if let Some(v) = value {
            values[g.offset..g.offset + g.len].iter_mut().for_each(|x| *x = v);
        }
    }
    Tensor::from_slice(&values)
}

#[test]
fn compact_matches_masked_model() {
    for name in ["llama3_gqa", "mistral_window"] {
        let oracle = LlamaOracle::new(load(name, Kind::Float), Granularity::new(true, true, true).unwrap());
        let (ids, _) = reference(name);
        let mask = hard_mask(&oracle, 3);
        let masked = oracle.masked_logits(&ids, &mask.unsqueeze(0)).unwrap();
        let small = compact(oracle.model(), oracle.unit_space(), &mask).unwrap();
        assert!(small.layers[0].self_attn.is_none(), "{name}: layer 0 should lose its attention");
        assert!(small.layers[1].mlp.is_none(), "{name}: layer 1 should lose its MLP");
        assert_eq!(small.config.layers[0].num_key_value_heads, 0);
        assert_eq!(small.config.layers[1].intermediate_size, 0);
        let logits = small.forward(&ids, None).unwrap();
        let diff = max_abs_diff(&logits, &masked);
        assert!(diff < TOLERANCE, "{name}: max |diff| = {diff}");
    }
}

#[test]
fn compact_slices_kept_units() {
    let oracle = LlamaOracle::new(load("llama3_gqa", Kind::Float), Granularity::new(true, true, false).unwrap());
    let space = oracle.unit_space();
    let mut values = vec![1.0f32; space.num_units()];
    let heads = space.group(UnitKind::Head, 2).unwrap();
    values[heads.offset] = 0.0;
    let channels = space.group(UnitKind::Channel, 2).unwrap();
    values[channels.offset..channels.offset + 10].iter_mut().for_each(|v| *v = 0.0);
    let small = compact(oracle.model(), space, &Tensor::from_slice(&values)).unwrap();
    let attn = small.layers[2].self_attn.as_ref().unwrap();
    assert_eq!(attn.num_key_value_heads, 1);
    assert_eq!(attn.num_heads, 4);
    assert_eq!(attn.q_proj.weight.size(), [4 * 8, 32]);
    assert_eq!(attn.o_proj.weight.size(), [32, 4 * 8]);
    let mlp = small.layers[2].mlp.as_ref().unwrap();
    assert_eq!(mlp.gate_proj.weight.size(), [54, 32]);
    assert_eq!(mlp.down_proj.weight.size(), [32, 54]);
    // The kept KV group is the original group 1.
    let original = oracle.model().layers[2].self_attn.as_ref().unwrap();
    assert_eq!(attn.k_proj.weight, original.k_proj.weight.narrow(0, 8, 8));
}

#[test]
fn compact_rejects_wrong_mask_length() {
    let oracle = LlamaOracle::new(load("llama2_mha", Kind::Float), Granularity::new(true, false, false).unwrap());
    let n = oracle.unit_space().num_units() as i64;
    let mask = Tensor::ones([n + 2], (Kind::Float, Device::Cpu));
    assert!(compact(oracle.model(), oracle.unit_space(), &mask).is_err());
}

#[test]
fn saved_compact_model_reloads_identically() {
    let name = "llama2_mha";
    let oracle = LlamaOracle::new(load(name, Kind::Float), Granularity::new(true, true, true).unwrap());
    let (ids, _) = reference(name);
    let small = compact(oracle.model(), oracle.unit_space(), &hard_mask(&oracle, 5)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compact");
    save(&small, &out).unwrap();
    let reloaded = Llama::from_hf_dir(&out, Kind::Float, Device::Cpu).unwrap();
    assert_eq!(reloaded.config.layers, small.config.layers);
    let before = small.forward(&ids, None).unwrap();
    let after = reloaded.forward(&ids, None).unwrap();
    assert_eq!(max_abs_diff(&before, &after), 0.0);
    let config = LlamaConfig::from_file(&out.join("config.json")).unwrap();
    assert!(config.hf.pgprune_layers.is_some());
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
