//! Grouped-query self-attention with a causal (optionally sliding-window) mask.

use tch::Tensor;

use super::attend::{attend, AttentionMask};
use super::linear::{rms_norm, Linear};
use super::rope::RopeTables;
use crate::error::{Error, Result};

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

impl Attention {
    /// Returns a handle that shares this block's weights.
    pub fn shallow_clone(&self) -> Attention {
        Attention {
            input_layernorm: self.input_layernorm.shallow_clone(),
            q_proj: self.q_proj.shallow_clone(),
            k_proj: self.k_proj.shallow_clone(),
            v_proj: self.v_proj.shallow_clone(),
            o_proj: self.o_proj.shallow_clone(),
            num_heads: self.num_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
        }
    }

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
        mask: &AttentionMask,
        head_mask: Option<&Tensor>,
        o_proj_input: Option<&mut Option<Tensor>>,
    ) -> Result<Tensor> {
        let (rows, seq, _hidden) = hidden.size3()?;
        let (heads, kv_heads) = (self.num_heads, self.num_key_value_heads);
        let group_size = heads / kv_heads;

        let x = rms_norm(hidden, &self.input_layernorm, eps)?;
        let projections = [&self.q_proj, &self.k_proj, &self.v_proj];
        let mut out = self.attend(&x, projections, kv_heads, rope, mask)?; // [rows, heads, seq, head_dim]
        if let Some(m) = head_mask {
            let per_head = m
                .f_repeat_interleave_self_int(group_size, 1, None)?
                .f_view([rows, heads, 1, 1])?;
            out = out.f_mul(&per_head)?;
        }
        let out = out.f_transpose(1, 2)?.f_reshape([rows, seq, heads * self.head_dim])?;
        if let Some(slot) = o_proj_input {
            *slot = Some(out.shallow_clone());
        }
        self.o_proj.forward(&out)
    }

    /// Returns the block's residual contribution `[rows, seq, hidden]` with
    /// only the KV groups `kept` (ascending), computed from copies of their
    /// rows of `q_proj`, `k_proj`, `v_proj` and columns of `o_proj`.
    ///
    /// Equals [`Attention::forward`] with a head mask of ones at `kept` and
    /// zeros elsewhere. The copies live only for this call.
    pub fn forward_kept(&self, hidden: &Tensor, eps: f64, rope: &RopeTables, mask: &AttentionMask, kept: &[i64]) -> Result<Tensor> {
        let (rows, seq, hidden_size) = hidden.size3()?;
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_key_value_heads, self.head_dim);
        let group_size = heads / kv_heads;
        if let Some(&bad) = kept.iter().find(|&&g| !(0..kv_heads).contains(&g)) {
            return Err(Error::invalid("kept KV group", bad, format!("must be in [0, {kv_heads})")));
        }
        let kept_kv = kept.len() as i64;
        if kept_kv == 0 {
            // Only the bias of o_proj, if any, survives.
            let zeros = Tensor::f_zeros([rows, seq, hidden_size], (hidden.kind(), hidden.device()))?;
            return Ok(match &self.o_proj.bias {
                Some(b) => zeros.f_add(b)?,
                None => zeros,
            });
        }

        // Query heads g * group_size .. (g + 1) * group_size belong to KV group g.
        let q_rows: Vec<i64> = kept
            .iter()
            .flat_map(|&g| g * group_size * head_dim..(g + 1) * group_size * head_dim)
            .collect();
        let kv_rows: Vec<i64> = kept.iter().flat_map(|&g| g * head_dim..(g + 1) * head_dim).collect();
        let device = hidden.device();
        let q_rows = Tensor::from_slice(&q_rows).f_to_device(device)?;
        let kv_rows = Tensor::from_slice(&kv_rows).f_to_device(device)?;
        let q_proj = self.q_proj.select_rows(&q_rows)?;
        let k_proj = self.k_proj.select_rows(&kv_rows)?;
        let v_proj = self.v_proj.select_rows(&kv_rows)?;
        let o_proj = self.o_proj.select_columns(&q_rows)?;

        let x = rms_norm(hidden, &self.input_layernorm, eps)?;
        let out = self.attend(&x, [&q_proj, &k_proj, &v_proj], kept_kv, rope, mask)?; // [rows, kept heads, seq, head_dim]
        let out = out.f_transpose(1, 2)?.f_reshape([rows, seq, kept_kv * group_size * head_dim])?;
        o_proj.forward(&out)
    }

    /// Projects normalised `x` `[rows, seq, hidden]` by `[q, k, v]` into
    /// `kv_heads` KV groups and attends: `[rows, kv_heads * group_size, seq, head_dim]`.
    ///
    fn attend(&self, x: &Tensor, [q_proj, k_proj, v_proj]: [&Linear; 3], kv_heads: i64, rope: &RopeTables, mask: &AttentionMask) -> Result<Tensor> {
        let (rows, seq, _hidden) = x.size3()?;
        let head_dim = self.head_dim;
        let group_size = self.num_heads / self.num_key_value_heads;
        let heads = kv_heads * group_size;

        let q = q_proj.forward(x)?.f_view([rows, seq, heads, head_dim])?.f_transpose(1, 2)?;
        let k = k_proj.forward(x)?.f_view([rows, seq, kv_heads, head_dim])?.f_transpose(1, 2)?;
        let v = v_proj.forward(x)?.f_view([rows, seq, kv_heads, head_dim])?.f_transpose(1, 2)?;
        let q = rope.apply(&q)?; // [rows, heads, seq, head_dim]
        let k = rope.apply(&k)?; // [rows, kv_heads, seq, head_dim]

        attend(&q, &k, &v, mask)
    }
}
