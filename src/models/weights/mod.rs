//! Readers that hand out a model's tensors under Hugging Face names.
//!
//! Every reader maps its file's tensor names to the names of a Hugging Face
//! LLaMA checkpoint (`model.embed_tokens.weight`,
//! `model.layers.{i}.self_attn.q_proj.weight`, `model.layers.{i}.mlp.down_proj.weight`,
//! `model.norm.weight`, `lm_head.weight`, ...) and to its layout (`[out, in]`
//! for linear weights, rotate-half RoPE order for `q_proj` and `k_proj` rows).

pub mod gguf;
pub mod safetensors;

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// A source of named tensors in Hugging Face naming and layout.
pub trait TensorSource {
    /// Names of every tensor the source holds, in Hugging Face naming.
    fn names(&self) -> Vec<String>;

    /// Shape of tensor `name` as `[out, in]` style dimensions, if present.
    fn shape(&self, name: &str) -> Option<Vec<i64>>;

    /// Loads tensor `name`, converted to `kind` on `device`.
    ///
    /// Returns [`crate::Error::MissingTensor`] if the source lacks it.
    fn load(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor>;

    /// Returns the file that contains tensor `name`, for error messages.
    fn file_of(&self, name: &str) -> PathBuf;
}
