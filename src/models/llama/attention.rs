//! Grouped-query self-attention with a causal (optionally sliding-window) mask.

use tch::{Device, Kind, Tensor};

use super::linear::{rms_norm, Linear};
use super::rope::RopeTables;
use crate::error::Result;

/// The attention block of one layer, its pre-norm included.
#[derive(Debug)]
pub struct Attention {
    pub input_layernorm: Tensor,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
}

/// Boolean `[seq, seq]` mask, true where query `q` may attend to key `k`:
/// `k <= q`, and with a window `w` also `q - k < w`, so a token sees at most
/// `w` positions including itself (Hugging Face Mistral semantics).
pub fn attention_mask(seq: i64, sliding_window: Option<i64>, device: Device) -> Result<Tensor> {
    let positions = Tensor::f_arange(seq, (Kind::Int64, device))?;
    let query = positions.f_unsqueeze(1)?; // [seq, 1]
    let key = positions.f_unsqueeze(0)?; // [1, seq]
    let distance = query.f_sub(&key)?; // [seq, seq]
    let causal = distance.f_ge(0)?;
    match sliding_window {
        Some(w) => Ok(causal.f_logical_and(&distance.f_lt(w)?)?),
        None => Ok(causal),
    }
}

impl Attention {
    /// Parameters of the block, its norm included.
    pub fn num_parameters(&self) -> u64 {
        self.input_layernorm.numel() as u64
            + self.q_proj.num_parameters()
            + self.k_proj.num_parameters()
            + self.v_proj.num_parameters()
            + self.o_proj.num_parameters()
    }

    /// Returns the block's residual contribution `[rows, seq, hidden]`.
    ///
    /// `head_mask` `[rows, num_key_value_heads]` scales each KV group's
    /// query-head outputs before `o_proj`; `o_proj_input` receives the
    /// `[rows, seq, heads * head_dim]` input of `o_proj` when given.
    pub fn forward(
        &self,
        hidden: &Tensor,
        eps: f64,
        rope: &RopeTables,
        mask: &Tensor,
        head_mask: Option<&Tensor>,
        o_proj_input: Option<&mut Option<Tensor>>,
    ) -> Result<Tensor> {
        let (rows, seq, _hidden) = hidden.size3()?;
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_key_value_heads, self.head_dim);
        let group_size = heads / kv_heads;

        let x = rms_norm(hidden, &self.input_layernorm, eps)?;
        let q = self.q_proj.forward(&x)?.f_view([rows, seq, heads, head_dim])?.f_transpose(1, 2)?;
        let k = self.k_proj.forward(&x)?.f_view([rows, seq, kv_heads, head_dim])?.f_transpose(1, 2)?;
        let v = self.v_proj.forward(&x)?.f_view([rows, seq, kv_heads, head_dim])?.f_transpose(1, 2)?;
        let q = rope.apply(&q)?; // [rows, heads, seq, head_dim]
        let k = rope.apply(&k)?.f_repeat_interleave_self_int(group_size, 1, None)?; // [rows, heads, seq, head_dim]
        let v = v.f_repeat_interleave_self_int(group_size, 1, None)?; // [rows, heads, seq, head_dim]

        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut out = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(mask),
            0.0,
            false,
            scale,
            false,
        )?; // [rows, heads, seq, head_dim]
        if let Some(m) = head_mask {
            let per_head = m
                .f_repeat_interleave_self_int(group_size, 1, None)?
                .f_view([rows, heads, 1, 1])?;
            out = out.f_mul(&per_head)?;
        }
        let out = out.f_transpose(1, 2)?.f_reshape([rows, seq, heads * head_dim])?;
        if let Some(slot) = o_proj_input {
            *slot = Some(out.shallow_clone());
        }
        self.o_proj.forward(&out)
    }
}
