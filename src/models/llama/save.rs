//! Writes a model as a Hugging Face style folder: `model.safetensors` and
//! `config.json` (with per-layer sizes when the model is pruned).

use std::path::Path;

use tch::{Device, Tensor};

use super::linear::Linear;
use super::model::Llama;
use crate::error::{Error, Result};
use crate::models::weights::safetensors::SINGLE_FILE;

fn push_linear(out: &mut Vec<(String, Tensor)>, prefix: &str, linear: &Linear) {
    out.push((format!("{prefix}.weight"), linear.weight.shallow_clone()));
    if let Some(b) = &linear.bias {
        out.push((format!("{prefix}.bias"), b.shallow_clone()));
    }
}

/// Lists every tensor of `model` under its Hugging Face name.
pub fn named_tensors(model: &Llama) -> Vec<(String, Tensor)> {
    let mut out = vec![("model.embed_tokens.weight".to_string(), model.embed_tokens.shallow_clone())];
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        if let Some(a) = &layer.self_attn {
            out.push((format!("{p}.input_layernorm.weight"), a.input_layernorm.shallow_clone()));
            push_linear(&mut out, &format!("{p}.self_attn.q_proj"), &a.q_proj);
            push_linear(&mut out, &format!("{p}.self_attn.k_proj"), &a.k_proj);
            push_linear(&mut out, &format!("{p}.self_attn.v_proj"), &a.v_proj);
            push_linear(&mut out, &format!("{p}.self_attn.o_proj"), &a.o_proj);
        }
        if let Some(m) = &layer.mlp {
            out.push((format!("{p}.post_attention_layernorm.weight"), m.post_attention_layernorm.shallow_clone()));
            push_linear(&mut out, &format!("{p}.mlp.gate_proj"), &m.gate_proj);
            push_linear(&mut out, &format!("{p}.mlp.up_proj"), &m.up_proj);
            push_linear(&mut out, &format!("{p}.mlp.down_proj"), &m.down_proj);
        }
    }
    out.push(("model.norm.weight".to_string(), model.norm.shallow_clone()));
    if !model.config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), model.lm_head.shallow_clone()));
    }
    out
}

/// Runs `write` on a temporary file in `dir`, then renames it to `dir/name`, so a reader never sees a partial file.
fn write_atomic(dir: &Path, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let target = dir.join(name);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))
}

/// Saves `model` into `dir` (created if missing) as `model.safetensors` and
/// `config.json`, in the model's dtype. Weights are written before the
/// config, so a folder with a new config always has matching weights.
pub fn save(model: &Llama, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors = Vec::new();
    for (name, t) in named_tensors(model) {
        tensors.push((name, t.f_to_device(Device::Cpu)?.f_contiguous()?));
    }
    write_atomic(dir, SINGLE_FILE, |tmp| {
        Tensor::write_safetensors(&tensors, tmp)?;
        Ok(())
    })?;
    let json = serde_json::to_string_pretty(&model.config.hf).map_err(|source| Error::Json {
        context: "config.json".to_string(),
        source,
    })?;
    write_atomic(dir, "config.json", |tmp| {
        std::fs::write(tmp, json.as_bytes()).map_err(|e| Error::io(tmp, e))
    })?;
    tracing::info!(dir = %dir.display(), "saved model");
    Ok(())
}
