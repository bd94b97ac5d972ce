//! Loading a model and its tokenizer from a path a user gives.

use std::path::Path;

use tch::{Device, Kind};
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::models::llama::{Llama, LlamaConfig};
use crate::models::weights::gguf::GgufFile;
use crate::tokenizer;

/// A model with the tokenizer that belongs to it.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
}

/// Loads a Hugging Face folder (`config.json`, safetensors, `tokenizer.json`)
/// or a `.gguf` file, converting weights to `kind` on `device`.
pub fn load_model(path: &Path, kind: Kind, device: Device) -> Result<LoadedModel> {
    if path.is_dir() {
        let tokenizer_path = path.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                reason: "the folder has no tokenizer.json; copy the model's tokenizer.json next to config.json".into(),
            });
        }
        let model = Llama::from_hf_dir(path, kind, device)?;
        let tokenizer = tokenizer::load(&tokenizer_path)?;
        return Ok(LoadedModel { model, tokenizer });
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "model path not found; pass a Hugging Face model folder or a .gguf file"),
        ));
    }
    let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if !is_gguf {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: "expected a Hugging Face model folder or a .gguf file".into(),
        });
    }
    let file = GgufFile::open(path)?;
    let config = LlamaConfig::from_json_value(file.hf_config()?)?;
    let model = Llama::load(config, &file, kind, device)?;
    let tokenizer = tokenizer::from_gguf(&file)?;
    Ok(LoadedModel { model, tokenizer })
}
