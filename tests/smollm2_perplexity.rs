//! Perplexity of the real SmolLM2-135M GGUF model against transformers.
//!
//! The reference comes from scripts/fixtures/make_smollm2_ppl.py, which
//! loads the same file with transformers 4.57.1 in f32.

use std::path::PathBuf;

use pgprune::data::windows_from_tokens;
use pgprune::eval::{perplexity, perplexity_from_nll};
use pgprune::models::load_model;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// Largest relative perplexity difference accepted between the two f32
/// implementations; they differ only in summation order.
const MAX_RELATIVE_DIFFERENCE: f64 = 0.005;

fn model_path() -> PathBuf {
    let path = std::env::var("PGPRUNE_MODEL").unwrap_or_else(|_| {
        panic!("PGPRUNE_MODEL is not set; run `scripts/setup.sh --model` and `source <(scripts/setup.sh --env)`")
    });
    PathBuf::from(path)
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn passage_ids() -> Vec<i64> {
    fixture("smollm2_tokens.json")["ids_without_special_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn relative_difference(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn smollm2_perplexity_matches_transformers() {
    let loaded = load_model(&model_path(), Kind::Float, Device::Cpu).unwrap();
    let reference = fixture("smollm2_ppl.json");
    let ids = passage_ids();

    let whole = Tensor::from_slice(&ids).unsqueeze(0);
    let result = perplexity(&whole, 1, |batch| loaded.model.forward(batch, None)).unwrap();
    let expected = reference["ppl_whole"].as_f64().unwrap();
    assert_eq!(result.tokens, ids.len() - 1);
    assert!(
        relative_difference(result.ppl, expected) < MAX_RELATIVE_DIFFERENCE,
        "whole passage: pgprune {} vs transformers {expected}",
        result.ppl
    );

    let windows = windows_from_tokens(&ids, 128, None).unwrap();
    let result = perplexity(&windows.ids, 2, |batch| loaded.model.forward(batch, None)).unwrap();
    let expected = reference["ppl_windows"].as_f64().unwrap();
    assert_eq!(result.windows, reference["windows"].as_u64().unwrap() as usize);
    assert!(
        relative_difference(result.ppl, expected) < MAX_RELATIVE_DIFFERENCE,
        "128-token windows: pgprune {} vs transformers {expected}",
        result.ppl
    );

    // The tiled loss, which never builds whole-vocabulary logits.
    let tiled = perplexity_from_nll(&windows.ids, 2, |batch| loaded.model.next_token_nll(batch, None)).unwrap();
    assert_eq!(tiled.tokens, result.tokens);
    assert!(
        relative_difference(tiled.ppl, expected) < MAX_RELATIVE_DIFFERENCE,
        "128-token windows, tiled loss: pgprune {} vs transformers {expected}",
        tiled.ppl
    );
    assert!(
        relative_difference(tiled.ppl, result.ppl) < 1e-5,
        "tiled loss {} vs whole-vocabulary log-softmax {}",
        tiled.ppl,
        result.ppl
    );
}

#[test]
fn smollm2_tokenizer_matches_fixture_ids() {
    let loaded = load_model(&model_path(), Kind::Float, Device::Cpu).unwrap();
    let passage = fixture("smollm2_tokens.json")["passage"].as_str().unwrap().to_string();
    let encoding = loaded.tokenizer.encode(passage, false).unwrap();
    let ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i as i64).collect();
    assert_eq!(ids, passage_ids());
}
