//! One decoder layer: pre-norm attention and MLP blocks on a residual stream.

use tch::Tensor;

use super::attend::AttentionMask;
use super::attention::Attention;
use super::kept::KeptUnits;
use super::mlp::Mlp;
use super::rope::RopeTables;
use crate::error::Result;

/// A decoder layer; a block that pruning removed is `None`.
#[derive(Debug)]
pub struct DecoderLayer {
    pub self_attn: Option<Attention>,
    pub mlp: Option<Mlp>,
}

/// Per-row masks for one layer, each already expanded to the rows of the
/// hidden state (row `k * batch + b` carries mask `k`). `None` keeps all.
#[derive(Debug, Default)]
pub struct LayerMasks {
    /// `[rows, num_key_value_heads]`, one column per KV group.
    pub heads: Option<Tensor>,
    /// `[rows, intermediate_size]`, one column per MLP channel.
    pub channels: Option<Tensor>,
    /// `[rows]`, scales the attention block's residual contribution.
    pub attention: Option<Tensor>,
    /// `[rows]`, scales the MLP block's residual contribution.
    pub mlp: Option<Tensor>,
}

/// Intermediate activations a caller asks a layer forward to hand back.
#[derive(Debug, Default)]
pub struct LayerTaps {
    /// Set to request the input of `o_proj` `[rows, seq, heads * head_dim]`.
    pub want_o_proj_input: bool,
    /// Set to request the input of `down_proj` `[rows, seq, intermediate]`.
    pub want_down_proj_input: bool,
    pub o_proj_input: Option<Tensor>,
    pub down_proj_input: Option<Tensor>,
}

fn fraction(kept: &[i64], total: i64) -> f64 {
    kept.len() as f64 / total as f64
}

/// A `[rows, total]` mask that is 1.0 at `kept` and 0.0 elsewhere, in the
/// dtype and device of `like`; `None` when everything is kept.
fn row_mask(kept: &[i64], total: i64, rows: i64, like: &Tensor) -> Result<Option<Tensor>> {
    if kept.len() as i64 == total {
        return Ok(None);
    }
    let index = Tensor::from_slice(kept).f_to_device(like.device())?;
    let mask = Tensor::f_zeros([total], (like.kind(), like.device()))?.f_index_fill(0, &index, 1.0)?;
    Ok(Some(mask.f_unsqueeze(0)?.f_expand([rows, total], false)?))
}

fn scale_rows(x: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        Some(m) => Ok(x.f_mul(&m.f_view([-1, 1, 1])?)?),
        None => Ok(x),
    }
}

impl DecoderLayer {
    /// Returns a handle that shares this layer's weights.
    pub fn shallow_clone(&self) -> DecoderLayer {
        DecoderLayer {
            self_attn: self.self_attn.as_ref().map(Attention::shallow_clone),
            mlp: self.mlp.as_ref().map(Mlp::shallow_clone),
        }
    }

    /// Runs the layer on `hidden` `[rows, seq, hidden]`.
    pub(crate) fn forward(
        &self,
        hidden: &Tensor,
        eps: f64,
        rope: &RopeTables,
        attention_mask: &AttentionMask,
        masks: &LayerMasks,
        mut taps: Option<&mut LayerTaps>,
    ) -> Result<Tensor> {
        let mut hidden = hidden.shallow_clone();
        if let Some(attn) = &self.self_attn {
            let slot = match taps.as_deref_mut() {
                Some(t) if t.want_o_proj_input => Some(&mut t.o_proj_input),
                _ => None,
            };
            let out = attn.forward(&hidden, eps, rope, attention_mask, masks.heads.as_ref(), slot)?;
            hidden = hidden.f_add(&scale_rows(out, masks.attention.as_ref())?)?;
        }
        if let Some(mlp) = &self.mlp {
            let slot = match taps {
                Some(t) if t.want_down_proj_input => Some(&mut t.down_proj_input),
                _ => None,
            };
            let out = mlp.forward(&hidden, eps, masks.channels.as_ref(), slot)?;
            hidden = hidden.f_add(&scale_rows(out, masks.mlp.as_ref())?)?;
        }
        Ok(hidden)
    }

    /// Runs the layer on `hidden` `[rows, seq, hidden]`, all rows under one
    /// binary mask given as the units it `kept`.
    ///
    /// A block whose kept fraction of heads or channels is below
    /// `slice_below` runs on copies of its kept weights only
    /// ([`Attention::forward_kept`], [`Mlp::forward_kept`]); a block at or
    /// above it runs in full with the mask multiplied in.
    pub(crate) fn forward_kept(
        &self,
        hidden: &Tensor,
        eps: f64,
        rope: &RopeTables,
        attention_mask: &AttentionMask,
        kept: &KeptUnits,
        slice_below: f64,
    ) -> Result<Tensor> {
        let (rows, _seq, _hidden) = hidden.size3()?;
        let mut hidden = hidden.shallow_clone();
        if let (Some(attn), true) = (&self.self_attn, kept.attention) {
            let out = match kept.heads.as_deref() {
                None => attn.forward(&hidden, eps, rope, attention_mask, None, None)?,
                Some(groups) if fraction(groups, attn.num_key_value_heads) < slice_below => {
                    attn.forward_kept(&hidden, eps, rope, attention_mask, groups)?
                }
                Some(groups) => {
                    let head_mask = row_mask(groups, attn.num_key_value_heads, rows, &hidden)?;
                    attn.forward(&hidden, eps, rope, attention_mask, head_mask.as_ref(), None)?
                }
            };
            hidden = hidden.f_add(&out)?;
        }
        if let (Some(mlp), true) = (&self.mlp, kept.mlp) {
            let out = match kept.channels.as_deref() {
                None => mlp.forward(&hidden, eps, None, None)?,
                Some(channels) if fraction(channels, mlp.intermediate_size) < slice_below => {
                    mlp.forward_kept(&hidden, eps, channels)?
                }
                Some(channels) => {
                    let channel_mask = row_mask(channels, mlp.intermediate_size, rows, &hidden)?;
                    mlp.forward(&hidden, eps, channel_mask.as_ref(), None)?
                }
            };
            hidden = hidden.f_add(&out)?;
        }
        Ok(hidden)
    }
}
