//! GgufFile on the real SmolLM2-135M-Instruct Q4_1 file, against
//! transformers' dequantisation (scripts/fixtures/make_model_reference.py).

use std::path::PathBuf;
use std::time::Instant;

use pgprune::models::weights::gguf::GgufFile;
use pgprune::models::weights::TensorSource;
use serde_json::Value;
use tch::{Device, Kind};

const N_LAYERS: usize = 30;
const HIDDEN: i64 = 576;
const INTERMEDIATE: i64 = 1536;
const N_HEADS: i64 = 9;
const N_KV_HEADS: i64 = 3;
const HEAD_DIM: i64 = 64;
const VOCAB: i64 = 49152;
const N_TENSORS: usize = 272;

fn model_path() -> PathBuf {
    let path = std::env::var("PGPRUNE_MODEL").unwrap_or_else(|_| {
        panic!("PGPRUNE_MODEL is not set; run `scripts/setup.sh --model` and `source <(scripts/setup.sh --env)`")
    });
    PathBuf::from(path)
}

fn open_model() -> GgufFile {
    GgufFile::open(model_path()).expect("open SmolLM2 GGUF")
}

#[test]
fn smollm2_config_values() {
    let config = open_model().hf_config().expect("config");
    let get = |key: &str| config.get(key).cloned().unwrap_or_else(|| panic!("{key} missing"));
    assert_eq!(get("model_type"), Value::from("llama"));
    assert_eq!(get("num_hidden_layers"), Value::from(N_LAYERS));
    assert_eq!(get("hidden_size"), Value::from(HIDDEN));
    assert_eq!(get("intermediate_size"), Value::from(INTERMEDIATE));
    assert_eq!(get("num_attention_heads"), Value::from(N_HEADS));
    assert_eq!(get("num_key_value_heads"), Value::from(N_KV_HEADS));
    assert_eq!(get("vocab_size"), Value::from(VOCAB));
    assert_eq!(get("rope_theta").as_f64(), Some(100_000.0));
    assert_eq!(get("max_position_embeddings"), Value::from(8192));
    assert_eq!(get("tie_word_embeddings"), Value::from(true));
    assert_eq!(get("bos_token_id"), Value::from(1));
    assert_eq!(get("eos_token_id"), Value::from(2));
    let eps = get("rms_norm_eps").as_f64().expect("eps");
    // The file stores 1e-5 as the nearest f32, which is 2.5e-13 away.
    approx::assert_abs_diff_eq!(eps, 1e-5, epsilon = 1e-12);
    assert!(config.get("head_dim").is_none(), "no attention.key_length in this file");
}

#[test]
fn smollm2_tensor_shapes() {
    let model = open_model();
    let names = model.names();
    assert_eq!(names.len(), N_TENSORS);
    assert!(!names.iter().any(|n| n == "lm_head.weight"), "tied embeddings have no lm_head");
    let expect = |name: &str, shape: &[i64]| {
        assert_eq!(model.shape(name).as_deref(), Some(shape), "{name}");
    };
    expect("model.embed_tokens.weight", &[VOCAB, HIDDEN]);
    expect("model.norm.weight", &[HIDDEN]);
    for layer in 0..N_LAYERS {
        let p = format!("model.layers.{layer}");
        expect(&format!("{p}.self_attn.q_proj.weight"), &[N_HEADS * HEAD_DIM, HIDDEN]);
        expect(&format!("{p}.self_attn.k_proj.weight"), &[N_KV_HEADS * HEAD_DIM, HIDDEN]);
        expect(&format!("{p}.self_attn.v_proj.weight"), &[N_KV_HEADS * HEAD_DIM, HIDDEN]);
        expect(&format!("{p}.self_attn.o_proj.weight"), &[HIDDEN, N_HEADS * HEAD_DIM]);
        expect(&format!("{p}.mlp.gate_proj.weight"), &[INTERMEDIATE, HIDDEN]);
        expect(&format!("{p}.mlp.up_proj.weight"), &[INTERMEDIATE, HIDDEN]);
        expect(&format!("{p}.mlp.down_proj.weight"), &[HIDDEN, INTERMEDIATE]);
        expect(&format!("{p}.input_layernorm.weight"), &[HIDDEN]);
        expect(&format!("{p}.post_attention_layernorm.weight"), &[HIDDEN]);
    }
    assert!(model.shape("lm_head.weight").is_none());
    let missing = model.load("lm_head.weight", Kind::Float, Device::Cpu);
    assert!(matches!(missing, Err(pgprune::Error::MissingTensor { .. })), "{missing:?}");
}

/// Loads every tensor (timed) and checks each loaded shape.
#[test]
fn smollm2_loads_all_tensors() {
    let start = Instant::now();
    let model = open_model();
    let mut parameters = 0i64;
    for name in model.names() {
        let tensor = model.load(&name, Kind::Float, Device::Cpu).expect("load");
        assert_eq!(Some(tensor.size()), model.shape(&name), "{name}");
        parameters += tensor.numel() as i64;
    }
    let elapsed = start.elapsed();
    eprintln!("opened and dequantised all SmolLM2 tensors in {elapsed:?}");
    assert_eq!(parameters, 134_515_008);
}

/// q_proj, k_proj (un-permuted), down_proj, the Q8_0 embedding and the F32
/// final norm against transformers' dequantised model.
#[test]
fn smollm2_matches_transformers() {
    let model = open_model();
    let reference_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/smollm2_reference.json");
    let text = std::fs::read_to_string(reference_path).expect("reference fixture");
    let reference: Value = serde_json::from_str(&text).expect("reference JSON");
    for (name, entry) in reference.as_object().expect("object") {
        let tensor = model.load(name, Kind::Float, Device::Cpu).expect("load");
        let shape: Vec<i64> = serde_json::from_value(entry["shape"].clone()).expect("shape");
        assert_eq!(tensor.size(), shape, "{name}: shape");
        let columns = entry["columns"].as_i64().expect("columns");
        for (row, values) in entry["rows"].as_object().expect("rows") {
            let row: i64 = row.parse().expect("row index");
            let got = if shape.len() == 1 {
                tensor.narrow(0, 0, columns)
            } else {
                tensor.get(row).narrow(0, 0, columns)
            };
            let got: Vec<f32> = Vec::<f32>::try_from(got).expect("to vec");
            let want: Vec<f32> = serde_json::from_value(values.clone()).expect("values");
            // Both sides compute scale * q + min in f32 from the same bytes,
            // so they agree exactly.
            assert_eq!(got, want, "{name} row {row}");
        }
    }
}
