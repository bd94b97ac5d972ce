//! Config validation and safetensors loading errors.

mod llama_common;

use llama_common::fixture;
use pgprune::models::llama::{Llama, LlamaConfig, RopeScaling};
use pgprune::models::weights::safetensors::SafetensorsSource;
use pgprune::Error;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

fn fixture_config(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn config_error_field(value: Value) -> String {
    match LlamaConfig::from_json_value(value) {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// Copies fixture `name` into a fresh temporary folder.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn config_defaults_resolve() {
    let mut value = fixture_config("llama2_sharded");
    value.as_object_mut().unwrap().remove("num_key_value_heads");
    value.as_object_mut().unwrap().remove("rope_theta");
    let config = LlamaConfig::from_json_value(value).unwrap();
    assert_eq!(config.layers[0].num_key_value_heads, 4);
    assert_eq!(config.head_dim, 8);
    assert_eq!(config.rope_theta, 10_000.0);
    assert_eq!(config.rope_scaling, RopeScaling::Default);
}

#[test]
fn config_reads_llama3_scaling_and_window() {
    let llama3 = LlamaConfig::from_json_value(fixture_config("llama3_gqa")).unwrap();
    assert!(matches!(llama3.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    let mistral = LlamaConfig::from_json_value(fixture_config("mistral_window")).unwrap();
    assert_eq!(mistral.sliding_window, Some(5));
    let mut no_window = fixture_config("mistral_window");
    no_window["sliding_window"] = Value::Null;
    assert_eq!(LlamaConfig::from_json_value(no_window).unwrap().sliding_window, None);
}

#[test]
fn config_rejects_invalid_fields() {
    let cases = [
        ("hidden_act", json!("gelu"), "hidden_act"),
        ("model_type", json!("gpt2"), "model_type"),
        ("num_key_value_heads", json!(3), "num_attention_heads"),
        ("rms_norm_eps", json!(-1.0), "rms_norm_eps"),
        ("rope_theta", json!(0.0), "rope_theta"),
        ("hidden_size", json!(0), "hidden_size"),
        ("sliding_window", json!(0), "sliding_window"),
        ("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0}), "rope_scaling.rope_type"),
        ("rope_scaling", json!({"rope_type": "llama3", "factor": 8.0}), "rope_scaling.low_freq_factor"),
    ];
    for (key, bad, field) in cases {
        let mut value = fixture_config("llama2_mha");
        value[key] = bad.clone();
        assert_eq!(config_error_field(value), field, "setting {key} = {bad}");
    }
}

#[test]
fn config_checks_per_layer_sizes() {
    let mut value = fixture_config("llama3_gqa");
    value["pgprune_layers"] = json!([
        {"num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 10},
        {"num_attention_heads": 0, "num_key_value_heads": 0, "intermediate_size": 64},
        {"num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 0}
    ]);
    let config = LlamaConfig::from_json_value(value.clone()).unwrap();
    assert!(!config.layers[1].has_attention());
    assert!(!config.layers[2].has_mlp());

    value["pgprune_layers"][0]["num_attention_heads"] = json!(3);
    assert_eq!(config_error_field(value.clone()), "pgprune_layers[0].num_attention_heads");
    value["pgprune_layers"] = json!([]);
    assert_eq!(config_error_field(value), "pgprune_layers");
}

#[test]
fn truncated_file_is_rejected() {
    let dir = copy_fixture("llama2_mha");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = SafetensorsSource::from_dir(dir.path()).err().expect("truncated file must fail");
    assert!(matches!(err, Error::Format { .. }), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("llama2_mha");
    let path = dir.path().join("model.safetensors");
    let kept: Vec<(String, Tensor)> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "model.layers.1.mlp.up_proj.weight")
        .collect();
    Tensor::write_safetensors(&kept, &path).unwrap();
    match Llama::from_hf_dir(dir.path(), Kind::Float, Device::Cpu) {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "model.layers.1.mlp.up_proj.weight"),
        other => panic!("expected a missing tensor error, got {other:?}"),
    }
}

#[test]
fn misshaped_tensor_is_named() {
    let dir = copy_fixture("llama2_mha");
    let mut value = fixture_config("llama2_mha");
    value["intermediate_size"] = json!(40);
    std::fs::write(dir.path().join("config.json"), value.to_string()).unwrap();
    match Llama::from_hf_dir(dir.path(), Kind::Float, Device::Cpu) {
        Err(Error::TensorShape { name, expected, found, .. }) => {
            assert_eq!(name, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!(expected, vec![40, 32]);
            assert_eq!(found, vec![48, 32]);
        }
        other => panic!("expected a tensor shape error, got {other:?}"),
    }
}

#[test]
fn unexpected_tensor_is_rejected() {
    let dir = copy_fixture("llama2_mha");
    let mut value = fixture_config("llama2_mha");
    value["num_hidden_layers"] = json!(2);
    std::fs::write(dir.path().join("config.json"), value.to_string()).unwrap();
    let err = Llama::from_hf_dir(dir.path(), Kind::Float, Device::Cpu).expect_err("extra layer must fail");
    assert!(err.to_string().contains("model.layers.2."), "{err}");
}

#[test]
fn out_of_range_token_is_rejected() {
    let model = llama_common::load("llama2_mha", Kind::Float);
    let ids = Tensor::from_slice(&[1i64, 96]).view([1, 2]);
    assert!(model.forward(&ids, None).is_err());
}
