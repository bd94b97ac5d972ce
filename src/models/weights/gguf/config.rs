//! A Hugging Face `config.json` style object from GGUF metadata.

use serde_json::{json, Map, Value};

use super::{GgufFile, MetadataValue};
use crate::error::{Error, Result};

/// The only `general.architecture` whose tensors and hyperparameters this
/// crate maps.
const SUPPORTED_ARCHITECTURE: &str = "llama";

pub(super) fn hf_config(file: &GgufFile) -> Result<Value> {
    let arch = file.architecture()?;
    if arch != SUPPORTED_ARCHITECTURE {
        return Err(Error::Format {
            path: file.path().to_path_buf(),
            reason: format!(
                "general.architecture = '{arch}' is not supported; only '{SUPPORTED_ARCHITECTURE}' models can be loaded"
            ),
        });
    }
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let required_u64 = |suffix: &str| -> Result<u64> {
        let name = key(suffix);
        let value = file.get(&name);
        value.and_then(MetadataValue::as_u64).ok_or_else(|| Error::Config {
            field: name,
            value: format!("{value:?}"),
            reason: "missing or not a non-negative integer in the GGUF metadata".into(),
        })
    };
    let optional_f64 = |suffix: &str| file.get(&key(suffix)).and_then(MetadataValue::as_f64);

    let num_attention_heads = required_u64("attention.head_count")?;
    let mut config = Map::new();
    config.insert("model_type".into(), json!(SUPPORTED_ARCHITECTURE));
    config.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    config.insert("hidden_size".into(), json!(required_u64("embedding_length")?));
    config.insert("intermediate_size".into(), json!(required_u64("feed_forward_length")?));
    config.insert("num_hidden_layers".into(), json!(required_u64("block_count")?));
    config.insert("num_attention_heads".into(), json!(num_attention_heads));
    let kv_heads = file
        .get(&key("attention.head_count_kv"))
        .and_then(MetadataValue::as_u64)
        .unwrap_or(num_attention_heads);
    config.insert("num_key_value_heads".into(), json!(kv_heads));
    if let Some(head_dim) = file.get(&key("attention.key_length")).and_then(MetadataValue::as_u64) {
        config.insert("head_dim".into(), json!(head_dim));
    }
    // Defaults below are those of Hugging Face's LlamaConfig (transformers
    // 4.57), used when the converter left a key out.
    let rms_norm_eps = optional_f64("attention.layer_norm_rms_epsilon").unwrap_or(1e-6);
    config.insert("rms_norm_eps".into(), json!(rms_norm_eps));
    config.insert("rope_theta".into(), json!(optional_f64("rope.freq_base").unwrap_or(10_000.0)));
    if let Some(context) = file.get(&key("context_length")).and_then(MetadataValue::as_u64) {
        config.insert("max_position_embeddings".into(), json!(context));
    }
    config.insert("vocab_size".into(), json!(vocab_size(file, arch)?));
    config.insert(
        "tie_word_embeddings".into(),
        json!(file.tensor_info("output.weight").is_none()),
    );
    for (gguf_key, hf_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(id) = file.get(gguf_key).and_then(MetadataValue::as_u64) {
            config.insert(hf_key.into(), json!(id));
        }
    }
    if let Some(scaling) = rope_scaling(file, arch) {
        config.insert("rope_scaling".into(), scaling);
    }
    config.insert("hidden_act".into(), json!("silu"));
    config.insert("attention_bias".into(), json!(false));
    config.insert("mlp_bias".into(), json!(false));
    Ok(Value::Object(config))
}

/// Vocabulary size from `{arch}.vocab_size`, else the token list, else the
/// embedding's row count.
fn vocab_size(file: &GgufFile, arch: &str) -> Result<u64> {
    if let Some(n) = file.get(&format!("{arch}.vocab_size")).and_then(MetadataValue::as_u64) {
        return Ok(n);
    }
    if let Some(tokens) = file.get("tokenizer.ggml.tokens").and_then(MetadataValue::as_array) {
        return Ok(tokens.len() as u64);
    }
    match file.tensor_info("token_embd.weight").map(|t| &t.dims[..]) {
        Some([_, rows]) => Ok(*rows),
        _ => Err(Error::Config {
            field: "vocab_size".into(),
            value: "absent".into(),
            reason: "no vocab_size key, token list or 2-D token_embd.weight in the GGUF file".into(),
        }),
    }
}

/// Builds the `rope_scaling` object from `{arch}.rope.scaling.*`, if the file sets
/// a scaling type other than `none`.
fn rope_scaling(file: &GgufFile, arch: &str) -> Option<Value> {
    let get = |suffix: &str| file.get(&format!("{arch}.rope.scaling.{suffix}"));
    let kind = get("type").and_then(MetadataValue::as_str)?;
    if kind == "none" {
        return None;
    }
    let mut scaling = Map::new();
    scaling.insert("rope_type".into(), json!(kind));
    if let Some(factor) = get("factor").and_then(MetadataValue::as_f64) {
        scaling.insert("factor".into(), json!(factor));
    }
    if let Some(original) = get("original_context_length").and_then(MetadataValue::as_u64) {
        scaling.insert("original_max_position_embeddings".into(), json!(original));
    }
    Some(Value::Object(scaling))
}
