//! Builds a smaller dense model from a final mask by slicing weights.

use tch::{Device, Kind, Tensor};

use super::attention::Attention;
use super::config::LayerSizes;
use super::layer::DecoderLayer;
use super::masks::keep_flags;
use super::mlp::Mlp;
use super::model::Llama;
use crate::error::Result;
use crate::units::{UnitKind, UnitSpace};

/// Keep flags of group `kind` in `layer`, or all kept when the space has no
/// such group.
fn group_flags(space: &UnitSpace, keep: &[bool], kind: UnitKind, layer: usize, len: usize) -> Vec<bool> {
    match space.group(kind, layer) {
        Some(g) => keep[g.offset..g.offset + g.len].to_vec(),
        None => vec![true; len],
    }
}

fn index_tensor(indices: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(indices).to_kind(Kind::Int64).to_device(device)
}

/// Returns a model with only the units that `mask` `[num_units]` keeps.
///
/// Heads are removed as whole KV groups (their `q/k/v_proj` rows and
/// `o_proj` columns), channels as `gate/up_proj` rows and `down_proj`
/// columns. A block with no heads or no channels left, or whose block unit
/// is 0, is removed and the residual stream passes through it.
///
/// NOTE: with `attention_bias` or `mlp_bias`, a masked model whose block
/// keeps no unit still adds that block's `o_proj` / `down_proj` bias, while
/// the compact model drops the whole block, so the two then differ by that
/// bias.
pub fn compact(model: &Llama, space: &UnitSpace, mask: &Tensor) -> Result<Llama> {
    let _guard = tch::no_grad_guard();
    let keep = keep_flags(space, mask)?;
    let device = model.device();
    let mut layers = Vec::with_capacity(model.layers.len());
    let mut sizes = Vec::with_capacity(model.layers.len());
    for (l, layer) in model.layers.iter().enumerate() {
        let mut size = LayerSizes {
            num_attention_heads: 0,
            num_key_value_heads: 0,
            intermediate_size: 0,
        };
        let self_attn = match &layer.self_attn {
            Some(attn) => {
                let block = group_flags(space, &keep, UnitKind::AttentionBlock, l, 1)[0];
                let groups = group_flags(space, &keep, UnitKind::Head, l, attn.num_key_value_heads as usize);
                let kept: Vec<i64> = (0..groups.len() as i64).filter(|&g| groups[g as usize]).collect();
                if block && !kept.is_empty() {
                    let sliced = slice_attention(attn, &kept, device)?;
                    size.num_attention_heads = sliced.num_heads;
                    size.num_key_value_heads = sliced.num_key_value_heads;
                    Some(sliced)
                } else {
                    None
                }
            }
            None => None,
        };
        let mlp = match &layer.mlp {
            Some(mlp) => {
                let block = group_flags(space, &keep, UnitKind::MlpBlock, l, 1)[0];
                let channels = group_flags(space, &keep, UnitKind::Channel, l, mlp.intermediate_size as usize);
                let kept: Vec<i64> = (0..channels.len() as i64).filter(|&c| channels[c as usize]).collect();
                if block && !kept.is_empty() {
                    let rows = index_tensor(&kept, device);
                    size.intermediate_size = kept.len() as i64;
                    Some(Mlp {
                        post_attention_layernorm: mlp.post_attention_layernorm.shallow_clone(),
                        gate_proj: mlp.gate_proj.select_rows(&rows)?,
                        up_proj: mlp.up_proj.select_rows(&rows)?,
                        down_proj: mlp.down_proj.select_columns(&rows)?,
                        intermediate_size: kept.len() as i64,
                    })
                } else {
                    None
                }
            }
            None => None,
        };
        tracing::debug!(layer = l, heads = size.num_attention_heads, channels = size.intermediate_size, "compacted layer");
        sizes.push(size);
        layers.push(DecoderLayer { self_attn, mlp });
    }
    Ok(Llama {
        config: model.config.with_layers(&sizes)?,
        embed_tokens: model.embed_tokens.shallow_clone(),
        layers,
        norm: model.norm.shallow_clone(),
        lm_head: model.lm_head.shallow_clone(),
        kind: model.kind(),
        device,
    })
}

/// Keeps the KV groups `kept` of `attn`, with every query head of each.
fn slice_attention(attn: &Attention, kept: &[i64], device: Device) -> Result<Attention> {
    let d = attn.head_dim;
    let group_size = attn.num_heads / attn.num_key_value_heads;
    let mut query_rows = Vec::new();
    let mut kv_rows = Vec::new();
    for &g in kept {
        kv_rows.extend(g * d..(g + 1) * d);
        query_rows.extend(g * group_size * d..(g + 1) * group_size * d);
    }
    let query_rows = index_tensor(&query_rows, device);
    let kv_rows = index_tensor(&kv_rows, device);
    let kv_heads = kept.len() as i64;
    Ok(Attention {
        input_layernorm: attn.input_layernorm.shallow_clone(),
        q_proj: attn.q_proj.select_rows(&query_rows)?,
        k_proj: attn.k_proj.select_rows(&kv_rows)?,
        v_proj: attn.v_proj.select_rows(&kv_rows)?,
        o_proj: attn.o_proj.select_columns(&query_rows)?,
        num_heads: kv_heads * group_size,
        num_key_value_heads: kv_heads,
        head_dim: d,
    })
}
