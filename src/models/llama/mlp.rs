//! The SiLU-gated MLP block.

use tch::Tensor;

use super::linear::{rms_norm, Linear};
use crate::error::{Error, Result};

/// The MLP block of one layer, its pre-norm included.
#[derive(Debug)]
pub struct Mlp {
    pub post_attention_layernorm: Tensor,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    pub intermediate_size: i64,
}

impl Mlp {
    /// Parameters of the block, its norm included.
    pub fn num_parameters(&self) -> u64 {
        self.post_attention_layernorm.numel() as u64
            + self.gate_proj.num_parameters()
            + self.up_proj.num_parameters()
            + self.down_proj.num_parameters()
    }

    /// Returns the block's residual contribution `[rows, seq, hidden]`.
    ///
    /// `channel_mask` `[rows, intermediate]` scales `silu(gate) * up` before
    /// `down_proj`; `down_proj_input` receives that `[rows, seq, intermediate]`
    /// input when given.
    pub fn forward(
        &self,
        hidden: &Tensor,
        eps: f64,
        channel_mask: Option<&Tensor>,
        down_proj_input: Option<&mut Option<Tensor>>,
    ) -> Result<Tensor> {
        let (rows, _seq, _hidden) = hidden.size3()?;
        let x = rms_norm(hidden, &self.post_attention_layernorm, eps)?;
        let gate = self.gate_proj.forward(&x)?.f_silu()?;
        let mut act = gate.f_mul(&self.up_proj.forward(&x)?)?; // [rows, seq, intermediate]
        if let Some(m) = channel_mask {
            act = act.f_mul(&m.f_view([rows, 1, self.intermediate_size])?)?;
        }
        if let Some(slot) = down_proj_input {
            *slot = Some(act.shallow_clone());
        }
        self.down_proj.forward(&act)
    }

    /// Returns the block's residual contribution `[rows, seq, hidden]` with
    /// only the channels `kept` (ascending), computed from copies of their
    /// rows of `gate_proj` and `up_proj` and columns of `down_proj`.
    ///
    /// Equals [`Mlp::forward`] with a channel mask of ones at `kept` and
    /// zeros elsewhere. The copies live only for this call.
    pub fn forward_kept(&self, hidden: &Tensor, eps: f64, kept: &[i64]) -> Result<Tensor> {
        let (rows, seq, hidden_size) = hidden.size3()?;
        let inter = self.intermediate_size;
        if let Some(&bad) = kept.iter().find(|&&c| !(0..inter).contains(&c)) {
            return Err(Error::invalid("kept MLP channel", bad, format!("must be in [0, {inter})")));
        }
        if kept.is_empty() {
            // Only the bias of down_proj, if any, survives.
            let zeros = Tensor::f_zeros([rows, seq, hidden_size], (hidden.kind(), hidden.device()))?;
            return Ok(match &self.down_proj.bias {
                Some(b) => zeros.f_add(b)?,
                None => zeros,
            });
        }

        let channels = Tensor::from_slice(kept).f_to_device(hidden.device())?;
        let gate_proj = self.gate_proj.select_rows(&channels)?;
        let up_proj = self.up_proj.select_rows(&channels)?;
        let down_proj = self.down_proj.select_columns(&channels)?;

        let x = rms_norm(hidden, &self.post_attention_layernorm, eps)?;
        let gate = gate_proj.forward(&x)?.f_silu()?;
        let act = gate.f_mul(&up_proj.forward(&x)?)?; // [rows, seq, kept channels]
        down_proj.forward(&act)
    }
}
