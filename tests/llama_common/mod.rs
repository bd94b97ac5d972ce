//! Helpers shared by the LLaMA integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use pgprune::models::llama::Llama;
use tch::{Device, Kind, Tensor};

/// Folder of the tiny fixture model `name`, written by
/// `scripts/fixtures/make_llama_fixtures.py`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(name)
}

pub fn load(name: &str, kind: Kind) -> Llama {
    Llama::from_hf_dir(&fixture(name), kind, Device::Cpu).expect("fixture model loads")
}

/// The reference `(input_ids, logits)` that transformers produced.
pub fn reference(name: &str) -> (Tensor, Tensor) {
    let tensors = Tensor::read_safetensors(fixture(name).join("reference.safetensors")).expect("reference reads");
    let get = |key: &str| tensors.iter().find(|(n, _)| n == key).map(|(_, t)| t.shallow_clone()).expect(key);
    (get("input_ids"), get("logits"))
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

pub fn max_abs(a: &Tensor) -> f64 {
    a.to_kind(Kind::Double).abs().max().double_value(&[])
}
