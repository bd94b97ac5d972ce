//! The LLaMA-family model: loading and the layer-level forward API.

use std::collections::HashSet;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::attend::AttentionMask;
use super::attention::Attention;
use super::config::LlamaConfig;
use super::kept::KeptUnits;
use super::layer::{DecoderLayer, LayerMasks, LayerTaps};
use super::linear::{rms_norm, Linear};
use super::mlp::Mlp;
use super::rope::RopeTables;
use crate::error::{Error, Result};
use crate::models::weights::safetensors::SafetensorsSource;
use crate::models::weights::TensorSource;

/// Tensor names that checkpoints may carry and the model recomputes.
const IGNORED_SUFFIXES: [&str; 1] = ["rotary_emb.inv_freq"];

/// A LLaMA or Mistral decoder, weights frozen, evaluated forward only.
#[derive(Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: Tensor,
    /// The LM head `[vocab, hidden]`; shares storage with `embed_tokens`
    /// when the config ties them.
    pub lm_head: Tensor,
    pub(super) kind: Kind,
    pub(super) device: Device,
}

struct Loader<'a> {
    source: &'a dyn TensorSource,
    kind: Kind,
    device: Device,
    used: HashSet<String>,
}

impl Loader<'_> {
    fn tensor(&mut self, name: &str, expected: &[i64]) -> Result<Tensor> {
        let Some(found) = self.source.shape(name) else {
            return Err(Error::MissingTensor {
                name: name.to_string(),
                file: self.source.file_of(name),
            });
        };
        if found != expected {
            return Err(Error::TensorShape {
                name: name.to_string(),
                file: self.source.file_of(name),
                expected: expected.to_vec(),
                found,
            });
        }
        self.used.insert(name.to_string());
        self.source.load(name, self.kind, self.device)
    }

    fn linear(&mut self, prefix: &str, out: i64, inp: i64, bias: bool) -> Result<Linear> {
        let weight = self.tensor(&format!("{prefix}.weight"), &[out, inp])?;
        let bias = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), &[out])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl Llama {
    /// Loads `config.json` and the safetensors weights of a Hugging Face folder.
    pub fn from_hf_dir(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let source = SafetensorsSource::from_dir(dir)?;
        Self::load(config, &source, kind, device)
    }

    /// Builds the model from `source`, converting each tensor to `kind` on
    /// `device`. Every tensor must have the shape the config implies, and a
    /// tensor the model does not use is an error.
    pub fn load(config: LlamaConfig, source: &dyn TensorSource, kind: Kind, device: Device) -> Result<Self> {
        if !matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half) {
            return Err(Error::invalid("model dtype", format!("{kind:?}"), "use Float, BFloat16 or Half"));
        }
        let _guard = tch::no_grad_guard();
        let mut loader = Loader {
            source,
            kind,
            device,
            used: HashSet::new(),
        };
        let (h, v, d) = (config.hidden_size, config.vocab_size, config.head_dim);
        let embed_tokens = loader.tensor("model.embed_tokens.weight", &[v, h])?;
        let mut layers = Vec::with_capacity(config.layers.len());
        for (i, sizes) in config.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let self_attn = if sizes.has_attention() {
                let (nh, nkv) = (sizes.num_attention_heads, sizes.num_key_value_heads);
                let bias = config.attention_bias;
                Some(Attention {
                    input_layernorm: loader.tensor(&format!("{p}.input_layernorm.weight"), &[h])?,
                    q_proj: loader.linear(&format!("{p}.self_attn.q_proj"), nh * d, h, bias)?,
                    k_proj: loader.linear(&format!("{p}.self_attn.k_proj"), nkv * d, h, bias)?,
                    v_proj: loader.linear(&format!("{p}.self_attn.v_proj"), nkv * d, h, bias)?,
                    o_proj: loader.linear(&format!("{p}.self_attn.o_proj"), h, nh * d, bias)?.into_input_major()?,
                    num_heads: nh,
                    num_key_value_heads: nkv,
                    head_dim: d,
                })
            } else {
                None
            };
            let mlp = if sizes.has_mlp() {
                let (inter, bias) = (sizes.intermediate_size, config.mlp_bias);
                Some(Mlp {
                    post_attention_layernorm: loader
                        .tensor(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                    gate_proj: loader.linear(&format!("{p}.mlp.gate_proj"), inter, h, bias)?,
                    up_proj: loader.linear(&format!("{p}.mlp.up_proj"), inter, h, bias)?,
                    down_proj: loader.linear(&format!("{p}.mlp.down_proj"), h, inter, bias)?.into_input_major()?,
                    intermediate_size: inter,
                })
            } else {
                None
            };
            layers.push(DecoderLayer { self_attn, mlp });
        }
        let norm = loader.tensor("model.norm.weight", &[h])?;
        let lm_head = if config.tie_word_embeddings {
            // Some tied checkpoints still store a copy; it is ignored.
            loader.used.insert("lm_head.weight".to_string());
            embed_tokens.shallow_clone()
        } else {
            loader.tensor("lm_head.weight", &[v, h])?
        };
        for name in source.names() {
            let ignored = IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s));
            if !ignored && !loader.used.contains(&name) {
                return Err(Error::Format {
                    path: source.file_of(&name),
                    reason: format!(
                        "unexpected tensor '{name}': the config describes no such weight; check num_hidden_layers, attention_bias, mlp_bias and pgprune_layers"
                    ),
                });
            }
        }
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            kind,
            device,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Returns a handle that shares every weight with this model, for
    /// example to run forwards on another thread. Copies no tensor data.
    pub fn shallow_clone(&self) -> Llama {
        Llama {
            config: self.config.clone(),
            embed_tokens: self.embed_tokens.shallow_clone(),
            layers: self.layers.iter().map(DecoderLayer::shallow_clone).collect(),
            norm: self.norm.shallow_clone(),
            lm_head: self.lm_head.shallow_clone(),
            kind: self.kind,
            device: self.device,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Looks up token embeddings: `[batch, seq]` int64 ids → `[batch, seq, hidden]`.
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (_batch, _seq) = tokens.size2()?;
        let vocab = self.config.vocab_size;
        let tokens = tokens.f_to_device(self.device)?;
        let min = tokens.f_min()?.int64_value(&[]);
        let max = tokens.f_max()?.int64_value(&[]);
        if min < 0 || max >= vocab {
            return Err(Error::invalid(
                "token id",
                if min < 0 { min } else { max },
                format!("must be in [0, {vocab}) for this model's vocabulary"),
            ));
        }
        let _guard = tch::no_grad_guard();
        Ok(Tensor::f_embedding(&self.embed_tokens, &tokens, -1, false, false)?)
    }

    /// Builds the RoPE tables and the attention mask for sequences of `seq`
    /// tokens, shared by every layer of one forward.
    fn position_tables(&self, seq: i64) -> Result<(RopeTables, AttentionMask)> {
        let rope = RopeTables::new(&self.config, seq, self.kind, self.device)?;
        let mask = AttentionMask::new(seq, self.config.sliding_window, self.config.group_size(), self.kind, self.device)?;
        Ok((rope, mask))
    }

    /// Returns an error unless `count` entries of `what` match the layers.
    fn check_per_layer(&self, what: &'static str, count: usize) -> Result<()> {
        if count != self.layers.len() {
            return Err(Error::invalid(
                what,
                count,
                format!("need one entry per layer ({})", self.layers.len()),
            ));
        }
        Ok(())
    }

    /// Runs decoder layer `layer` on `hidden` `[rows, seq, hidden]`.
    ///
    /// `masks` rows must match `hidden` rows; `taps` receives the inputs of
    /// `o_proj` and `down_proj` when its `want_*` flags request them (left
    /// `None` for a removed block).
    pub fn layer_forward(
        &self,
        layer: usize,
        hidden: &Tensor,
        masks: &LayerMasks,
        taps: Option<&mut LayerTaps>,
    ) -> Result<Tensor> {
        let (_rows, seq, _hidden) = hidden.size3()?;
        let decoder = self.layers.get(layer).ok_or_else(|| {
            Error::invalid("layer", layer, format!("must be below num_hidden_layers = {}", self.layers.len()))
        })?;
        let _guard = tch::no_grad_guard();
        let (rope, mask) = self.position_tables(seq)?;
        decoder.forward(hidden, self.config.rms_norm_eps, &rope, &mask, masks, taps)
    }

    /// Runs every layer with `masks[l]` for layer `l` (all kept when `None`)
    /// and applies the final norm: `[rows, seq, hidden]`.
    pub fn final_hidden(&self, hidden: &Tensor, masks: Option<&[LayerMasks]>) -> Result<Tensor> {
        let (_rows, seq, _hidden) = hidden.size3()?;
        if let Some(m) = masks {
            self.check_per_layer("layer masks", m.len())?;
        }
        let _guard = tch::no_grad_guard();
        let (rope, mask) = self.position_tables(seq)?;
        let keep_all = LayerMasks::default();
        let mut hidden = hidden.shallow_clone();
        for (l, decoder) in self.layers.iter().enumerate() {
            let layer_masks = masks.map_or(&keep_all, |m| &m[l]);
            hidden = decoder.forward(&hidden, self.config.rms_norm_eps, &rope, &mask, layer_masks, None)?;
        }
        rms_norm(&hidden, &self.norm, self.config.rms_norm_eps)
    }

    /// Runs every layer on `hidden` `[rows, seq, hidden]` with all rows under
    /// one binary mask, `kept[l]` for layer `l`, and applies the final norm.
    ///
    /// Blocks whose kept fraction is below `slice_below` compute only their
    /// kept units; see [`DecoderLayer::forward_kept`].
    pub(crate) fn final_hidden_kept(&self, hidden: &Tensor, kept: &[KeptUnits], slice_below: f64) -> Result<Tensor> {
        let (_rows, seq, _hidden) = hidden.size3()?;
        self.check_per_layer("kept units", kept.len())?;
        let _guard = tch::no_grad_guard();
        let (rope, mask) = self.position_tables(seq)?;
        let eps = self.config.rms_norm_eps;
        let mut hidden = hidden.shallow_clone();
        for (decoder, layer_kept) in self.layers.iter().zip(kept) {
            hidden = decoder.forward_kept(&hidden, eps, &rope, &mask, layer_kept, slice_below)?;
        }
        rms_norm(&hidden, &self.norm, eps)
    }

    /// Applies the LM head to already normalised `hidden` `[rows, seq, hidden]`.
    pub fn lm_head_logits(&self, normed: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        super::matmul::linear(normed, &self.lm_head, None)
    }

    /// Applies the final norm and the LM head: `[rows, seq, hidden]` → `[rows, seq, vocab]`.
    pub fn final_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let normed = rms_norm(hidden, &self.norm, self.config.rms_norm_eps)?;
        self.lm_head_logits(&normed)
    }

    /// Computes the next-token losses `[rows, seq - 1]` (f32, nats) of `tokens`
    /// `[rows, seq]` through [`next_token_nll`](super::loss::next_token_nll),
    /// without building the `[rows, seq, vocab]` logits of [`Llama::forward`].
    pub fn next_token_nll(&self, tokens: &Tensor, masks: Option<&[LayerMasks]>) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let hidden = self.embed(tokens)?;
        let normed = self.final_hidden(&hidden, masks)?;
        super::loss::next_token_nll(&self.lm_head, &normed, tokens)
    }

    /// Computes logits `[rows, seq, vocab]` of `tokens` `[rows, seq]`.
    pub fn forward(&self, tokens: &Tensor, masks: Option<&[LayerMasks]>) -> Result<Tensor> {
        let hidden = self.embed(tokens)?;
        let normed = self.final_hidden(&hidden, masks)?;
        self.lm_head_logits(&normed)
    }
}
