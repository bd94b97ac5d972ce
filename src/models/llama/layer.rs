//! One decoder layer: pre-norm attention and MLP blocks on a residual stream.

use tch::Tensor;

use super::attention::Attention;
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

fn scale_rows(x: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        Some(m) => Ok(x.f_mul(&m.f_view([-1, 1, 1])?)?),
        None => Ok(x),
    }
}

impl DecoderLayer {
    /// Runs the layer on `hidden` `[rows, seq, hidden]`.
    pub(crate) fn forward(
        &self,
        hidden: &Tensor,
        eps: f64,
        rope: &RopeTables,
        attention_mask: &Tensor,
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
            let slot = match taps.as_deref_mut() {
                Some(t) if t.want_down_proj_input => Some(&mut t.down_proj_input),
                _ => None,
            };
            let out = mlp.forward(&hidden, eps, masks.channels.as_ref(), slot)?;
            hidden = hidden.f_add(&scale_rows(out, masks.mlp.as_ref())?)?;
        }
        Ok(hidden)
    }
}
