//! Linear layers and RMSNorm, with weights in Hugging Face layout.

use tch::{Kind, Tensor};

use crate::error::Result;

/// A linear map `y = x W^T + b` with `W` of shape `[out, in]`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }

    /// Parameter count of the weight and bias.
    pub fn num_parameters(&self) -> u64 {
        let bias = self.bias.as_ref().map_or(0, |b| b.numel());
        (self.weight.numel() + bias) as u64
    }

    /// Keeps the output rows `rows` (a 1-D int64 tensor).
    pub fn select_rows(&self, rows: &Tensor) -> Result<Linear> {
        Ok(Linear {
            weight: self.weight.f_index_select(0, rows)?.f_contiguous()?,
            bias: match &self.bias {
                Some(b) => Some(b.f_index_select(0, rows)?.f_contiguous()?),
                None => None,
            },
        })
    }

    /// Keeps the input columns `cols` (a 1-D int64 tensor); the bias stays.
    pub fn select_columns(&self, cols: &Tensor) -> Result<Linear> {
        Ok(Linear {
            weight: self.weight.f_index_select(1, cols)?.f_contiguous()?,
            bias: self.bias.as_ref().map(|b| b.shallow_clone()),
        })
    }
}

/// RMSNorm computed in f32 and cast back, as Hugging Face LLaMA does.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let kind = x.kind();
    let x32 = x.f_to_kind(Kind::Float)?;
    let mean_square = x32.f_square()?.f_mean_dim(-1, true, Kind::Float)?;
    let normed = x32.f_mul(&mean_square.f_add_scalar(eps)?.f_rsqrt()?)?;
    Ok(weight.f_mul(&normed.f_to_kind(kind)?)?)
}
