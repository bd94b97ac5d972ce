//! Tokenizers from a Hugging Face `tokenizer.json` or from the vocabulary
//! embedded in a GGUF file.

mod gguf;

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::models::weights::gguf::{GgufFile, MetadataValue};

pub use gguf::from_gguf;

/// Loads a Hugging Face `tokenizer.json`.
pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::Tokenizer(format!(
            "tokenizer file {} not found; pass the path of a tokenizer.json",
            path.display()
        )));
    }
    Tokenizer::from_file(path)
        .map_err(|e| Error::Tokenizer(format!("failed to load {}: {e}", path.display())))
}

/// Special token ids and the BOS policy of a GGUF vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokenIds {
    /// Beginning-of-sequence id (`tokenizer.ggml.bos_token_id`).
    pub bos: Option<u32>,
    /// End-of-sequence id (`tokenizer.ggml.eos_token_id`).
    pub eos: Option<u32>,
    /// Whether encoding with special tokens prepends BOS
    /// (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

/// Reads the special token ids of the vocabulary embedded in `file`.
pub fn special_token_ids(file: &GgufFile) -> Result<SpecialTokenIds> {
    let model = gguf::tokenizer_model(file)?;
    Ok(SpecialTokenIds {
        bos: token_id(file, "tokenizer.ggml.bos_token_id")?,
        eos: token_id(file, "tokenizer.ggml.eos_token_id")?,
        add_bos: gguf::adds_bos(file, model),
    })
}

/// Reads an optional token id and checks that it fits in u32.
fn token_id(file: &GgufFile, key: &str) -> Result<Option<u32>> {
    let Some(value) = file.get(key) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .map(Some)
        .ok_or_else(|| Error::Format {
            path: file.path().to_path_buf(),
            reason: format!("{key} = {value:?} is not a valid token id"),
        })
}

/// Reads a metadata key that must be an array of strings.
fn string_array<'a>(file: &'a GgufFile, key: &str) -> Result<Option<Vec<&'a str>>> {
    typed_array(file, key, "strings", MetadataValue::as_str)
}

/// Reads a metadata key that must be an array of numbers, as f64.
fn number_array(file: &GgufFile, key: &str) -> Result<Option<Vec<f64>>> {
    typed_array(file, key, "numbers", MetadataValue::as_f64)
}

/// Reads a metadata array whose items `convert` accepts, `None` if absent.
fn typed_array<'a, T>(
    file: &'a GgufFile,
    key: &str,
    item_kind: &str,
    convert: impl Fn(&'a MetadataValue) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let Some(value) = file.get(key) else {
        return Ok(None);
    };
    let invalid = || Error::Format {
        path: file.path().to_path_buf(),
        reason: format!("{key} must be an array of {item_kind}, found {}", value.type_name()),
    };
    let items = value.as_array().ok_or_else(invalid)?;
    items
        .iter()
        .map(|item| convert(item).ok_or_else(invalid))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn bool_key(file: &GgufFile, key: &str) -> Option<bool> {
    file.get(key).and_then(MetadataValue::as_bool)
}
