//! Logits of the Rust forward against Hugging Face transformers 4.57.1.

mod llama_common;

use llama_common::{load, max_abs, max_abs_diff, reference};
use tch::Kind;

/// f32 parity bound: both sides compute in f32 with sums over at most a few
/// hundred terms of O(1) values, so rounding stays near 1e-6; 1e-4 leaves
/// room for a different summation order while still catching any real bug.
const F32_TOLERANCE: f64 = 1e-4;
/// Half-precision bound relative to the largest reference logit: bf16 keeps
/// 8 mantissa bits (relative step 2^-8 ≈ 0.004) and three layers compound it,
/// so 5% of the logit scale is the loose bound.
const BF16_RELATIVE_TOLERANCE: f64 = 0.05;
/// f16 keeps 11 mantissa bits, eight times finer than bf16.
const F16_RELATIVE_TOLERANCE: f64 = 0.01;

const MODELS: [&str; 4] = ["llama2_mha", "llama3_gqa", "mistral_window", "llama2_sharded"];

#[test]
fn f32_logits_match_transformers() {
    for name in MODELS {
        let model = load(name, Kind::Float);
        let (ids, expected) = reference(name);
        let logits = model.forward(&ids, None).unwrap();
        let diff = max_abs_diff(&logits, &expected);
        assert!(diff < F32_TOLERANCE, "{name}: max |diff| = {diff}");
        // The check is meaningful only if logits are far from zero.
        assert!(max_abs(&expected) > 1.0, "{name}: reference logits are too small to test");
    }
}

#[test]
fn bf16_logits_match_transformers() {
    for name in MODELS {
        let model = load(name, Kind::BFloat16);
        let (ids, expected) = reference(name);
        let logits = model.forward(&ids, None).unwrap();
        let bound = BF16_RELATIVE_TOLERANCE * max_abs(&expected);
        let diff = max_abs_diff(&logits, &expected);
        assert!(diff < bound, "{name}: max |diff| = {diff}, bound {bound}");
    }
}

#[test]
fn f16_logits_match_transformers() {
    for name in MODELS {
        let model = load(name, Kind::Half);
        let (ids, expected) = reference(name);
        let logits = model.forward(&ids, None).unwrap();
        let bound = F16_RELATIVE_TOLERANCE * max_abs(&expected);
        let diff = max_abs_diff(&logits, &expected);
        assert!(diff < bound, "{name}: max |diff| = {diff}, bound {bound}");
    }
}

#[test]
fn sharded_equals_single_file_layout() {
    let sharded = load("llama2_sharded", Kind::Float);
    let names = pgprune::models::weights::safetensors::SafetensorsSource::from_dir(
        &llama_common::fixture("llama2_sharded"),
    )
    .unwrap();
    use pgprune::models::weights::TensorSource;
    assert_eq!(names.names().len(), 3 + 3 * 9);
    let files: std::collections::HashSet<_> = names.names().iter().map(|n| names.file_of(n)).collect();
    assert_eq!(files.len(), 2, "fixture should span two shards");
    assert_eq!(sharded.layers.len(), 3);
}

#[test]
fn sliding_window_changes_logits() {
    // Without the window the Mistral fixture must disagree with its reference
    // at positions past the window, proving the fixture exercises it.
    let mut model = load("mistral_window", Kind::Float);
    let (ids, expected) = reference("mistral_window");
    model.config.sliding_window = None;
    let logits = model.forward(&ids, None).unwrap();
    let window = 5;
    let early = max_abs_diff(&logits.narrow(1, 0, window), &expected.narrow(1, 0, window));
    let late = max_abs_diff(&logits.narrow(1, window, 12 - window), &expected.narrow(1, window, 12 - window));
    assert!(early < F32_TOLERANCE, "positions inside the window differ by {early}");
    assert!(late > 1e-2, "positions past the window should differ, max |diff| = {late}");
}
