//! The model configuration: a serde mirror of Hugging Face `config.json` for
//! `model_type` `llama` and `mistral`, and the validated [`LlamaConfig`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// RoPE base used by Hugging Face when `rope_theta` is absent.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
/// RMSNorm epsilon used by Hugging Face `LlamaConfig` when absent.
const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;

/// The fields of `config.json` that the LLaMA family uses, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfLlamaConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<HfRopeScaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<i64>,
    pub vocab_size: i64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<i64>,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    /// Per-layer sizes of a pruned model, written by this crate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgprune_layers: Option<Vec<HfLayerSizes>>,
}

/// The `rope_scaling` object of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfRopeScaling {
    /// Newer files write `rope_type`, older ones `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<i64>,
}

/// Sizes of one layer of a pruned model; 0 means the block is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HfLayerSizes {
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub intermediate_size: i64,
}

fn default_model_type() -> String {
    "llama".to_string()
}
fn default_rms_norm_eps() -> f64 {
    DEFAULT_RMS_NORM_EPS
}
fn default_rope_theta() -> f64 {
    DEFAULT_ROPE_THETA
}
fn default_hidden_act() -> String {
    "silu".to_string()
}

/// The RoPE frequency schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE: `inv_freq_i = theta^(-2i / head_dim)`.
    Default,
    /// LLaMA 3.1 scaling: low frequencies divided by `factor`, high ones kept,
    /// a smooth blend in between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: i64,
    },
}

/// Sizes of one decoder layer. A count of 0 means that block is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSizes {
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub intermediate_size: i64,
}

impl LayerSizes {
    pub fn has_attention(&self) -> bool {
        self.num_key_value_heads > 0
    }
    pub fn has_mlp(&self) -> bool {
        self.intermediate_size > 0
    }
}

/// A checked model configuration with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub model_type: String,
    pub hidden_size: i64,
    pub vocab_size: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: Option<i64>,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// A token attends to at most this many positions, itself included.
    pub sliding_window: Option<i64>,
    /// Sizes of every layer, in order.
    pub layers: Vec<LayerSizes>,
    /// The file as read, kept so that a compact model can write it back.
    pub hf: HfLlamaConfig,
}

fn config_error(field: &str, value: impl ToString, reason: impl Into<String>) -> Error {
    Error::Config {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn require_positive(field: &str, value: i64) -> Result<()> {
    if value <= 0 {
        return Err(config_error(field, value, "must be a positive integer"));
    }
    Ok(())
}

fn require_positive_finite(field: &str, value: f64) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        return Err(config_error(field, value, "must be a finite positive number"));
    }
    Ok(())
}

impl LlamaConfig {
    /// Reads and checks `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parses and checks a `config.json` document; `context` names it in errors.
    pub fn from_json_str(text: &str, context: &str) -> Result<Self> {
        let hf: HfLlamaConfig = serde_json::from_str(text).map_err(|source| Error::Json {
            context: context.to_string(),
            source,
        })?;
        Self::from_hf(hf)
    }

    /// Checks a parsed `config.json` (for example one built from GGUF metadata).
    pub fn from_json_value(value: serde_json::Value) -> Result<Self> {
        let hf: HfLlamaConfig = serde_json::from_value(value).map_err(|source| Error::Json {
            context: "model config".to_string(),
            source,
        })?;
        Self::from_hf(hf)
    }

    /// Checks every field and resolves defaults.
    pub fn from_hf(hf: HfLlamaConfig) -> Result<Self> {
        if hf.model_type != "llama" && hf.model_type != "mistral" {
            return Err(config_error(
                "model_type",
                &hf.model_type,
                "supported model types are 'llama' and 'mistral'",
            ));
        }
        if hf.hidden_act != "silu" {
            return Err(config_error(
                "hidden_act",
                &hf.hidden_act,
                "only 'silu' (SiLU-gated MLP) is supported",
            ));
        }
        require_positive("hidden_size", hf.hidden_size)?;
        require_positive("intermediate_size", hf.intermediate_size)?;
        require_positive("num_hidden_layers", hf.num_hidden_layers)?;
        require_positive("num_attention_heads", hf.num_attention_heads)?;
        require_positive("vocab_size", hf.vocab_size)?;
        require_positive_finite("rms_norm_eps", hf.rms_norm_eps)?;
        require_positive_finite("rope_theta", hf.rope_theta)?;

        let num_key_value_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        require_positive("num_key_value_heads", num_key_value_heads)?;
        let head_dim = match hf.head_dim {
            Some(d) => d,
            None => {
                if hf.hidden_size % hf.num_attention_heads != 0 {
                    return Err(config_error(
                        "hidden_size",
                        hf.hidden_size,
                        format!(
                            "must be divisible by num_attention_heads = {} when head_dim is absent",
                            hf.num_attention_heads
                        ),
                    ));
                }
                hf.hidden_size / hf.num_attention_heads
            }
        };
        require_positive("head_dim", head_dim)?;
        if head_dim % 2 != 0 {
            return Err(config_error("head_dim", head_dim, "must be even for rotary embeddings"));
        }
        if let Some(m) = hf.max_position_embeddings {
            require_positive("max_position_embeddings", m)?;
        }
        if let Some(w) = hf.sliding_window {
            require_positive("sliding_window", w)?;
        }
        let layers = Self::layer_sizes(&hf, num_key_value_heads)?;
        let rope_scaling = Self::rope_scaling(hf.rope_scaling.as_ref())?;
        Ok(Self {
            model_type: hf.model_type.clone(),
            hidden_size: hf.hidden_size,
            vocab_size: hf.vocab_size,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings,
            attention_bias: hf.attention_bias,
            mlp_bias: hf.mlp_bias,
            sliding_window: hf.sliding_window,
            layers,
            hf,
        })
    }

    fn layer_sizes(hf: &HfLlamaConfig, num_key_value_heads: i64) -> Result<Vec<LayerSizes>> {
        let uniform = LayerSizes {
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads,
            intermediate_size: hf.intermediate_size,
        };
        check_heads("", &uniform)?;
        let Some(per_layer) = &hf.pgprune_layers else {
            return Ok(vec![uniform; hf.num_hidden_layers as usize]);
        };
        if per_layer.len() as i64 != hf.num_hidden_layers {
            return Err(config_error(
                "pgprune_layers",
                format!("{} entries", per_layer.len()),
                format!("must have one entry per layer (num_hidden_layers = {})", hf.num_hidden_layers),
            ));
        }
        let group_size = hf.num_attention_heads / num_key_value_heads;
        let mut layers = Vec::with_capacity(per_layer.len());
        for (i, l) in per_layer.iter().enumerate() {
            let sizes = LayerSizes {
                num_attention_heads: l.num_attention_heads,
                num_key_value_heads: l.num_key_value_heads,
                intermediate_size: l.intermediate_size,
            };
            let prefix = format!("pgprune_layers[{i}].");
            if sizes.intermediate_size < 0 {
                return Err(config_error(
                    &format!("{prefix}intermediate_size"),
                    sizes.intermediate_size,
                    "must be 0 (block removed) or positive",
                ));
            }
            if sizes.num_key_value_heads == 0 && sizes.num_attention_heads == 0 {
                layers.push(sizes);
                continue;
            }
            check_heads(&prefix, &sizes)?;
            if sizes.num_attention_heads / sizes.num_key_value_heads != group_size {
                return Err(config_error(
                    &format!("{prefix}num_attention_heads"),
                    sizes.num_attention_heads,
                    format!(
                        "must be {group_size} query heads per KV head, as in the unpruned model"
                    ),
                ));
            }
            layers.push(sizes);
        }
        Ok(layers)
    }

    fn rope_scaling(scaling: Option<&HfRopeScaling>) -> Result<RopeScaling> {
        let Some(s) = scaling else {
            return Ok(RopeScaling::Default);
        };
        let name = s.rope_type.as_deref().or(s.kind.as_deref()).unwrap_or("default");
        match name {
            "default" => Ok(RopeScaling::Default),
            "llama3" => {
                let get = |field: &str, v: Option<f64>| -> Result<f64> {
                    let v = v.ok_or_else(|| {
                        config_error(&format!("rope_scaling.{field}"), "missing", "required for rope_type 'llama3'")
                    })?;
                    require_positive_finite(&format!("rope_scaling.{field}"), v)?;
                    Ok(v)
                };
                let factor = get("factor", s.factor)?;
                let low_freq_factor = get("low_freq_factor", s.low_freq_factor)?;
                let high_freq_factor = get("high_freq_factor", s.high_freq_factor)?;
                if high_freq_factor <= low_freq_factor {
                    return Err(config_error(
                        "rope_scaling.high_freq_factor",
                        high_freq_factor,
                        format!("must exceed low_freq_factor = {low_freq_factor}"),
                    ));
                }
                let original = s.original_max_position_embeddings.ok_or_else(|| {
                    config_error(
                        "rope_scaling.original_max_position_embeddings",
                        "missing",
                        "required for rope_type 'llama3'",
                    )
                })?;
                require_positive("rope_scaling.original_max_position_embeddings", original)?;
                Ok(RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings: original,
                })
            }
            other => Err(config_error(
                "rope_scaling.rope_type",
                other,
                "supported RoPE types are 'default' and 'llama3'",
            )),
        }
    }

    pub fn num_hidden_layers(&self) -> usize {
        self.layers.len()
    }

    /// Query heads per KV head, the same in every layer that has attention.
    pub fn group_size(&self) -> i64 {
        let n_kv = self.hf.num_key_value_heads.unwrap_or(self.hf.num_attention_heads);
        self.hf.num_attention_heads / n_kv
    }

    /// The `config.json` of a model with per-layer sizes `layers`.
    pub fn with_layers(&self, layers: &[LayerSizes]) -> Result<Self> {
        let mut hf = self.hf.clone();
        hf.pgprune_layers = Some(
            layers
                .iter()
                .map(|l| HfLayerSizes {
                    num_attention_heads: l.num_attention_heads,
                    num_key_value_heads: l.num_key_value_heads,
                    intermediate_size: l.intermediate_size,
                })
                .collect(),
        );
        hf.head_dim = Some(self.head_dim);
        Self::from_hf(hf)
    }
}

fn check_heads(prefix: &str, sizes: &LayerSizes) -> Result<()> {
    require_positive(&format!("{prefix}num_attention_heads"), sizes.num_attention_heads)?;
    require_positive(&format!("{prefix}num_key_value_heads"), sizes.num_key_value_heads)?;
    if sizes.num_attention_heads % sizes.num_key_value_heads != 0 {
        return Err(config_error(
            &format!("{prefix}num_attention_heads"),
            sizes.num_attention_heads,
            format!(
                "must be divisible by num_key_value_heads = {}",
                sizes.num_key_value_heads
            ),
        ));
    }
    Ok(())
}
