//! The SiLU-gated MLP block.

use tch::{Device, Kind, Tensor};

use super::linear::{rms_norm, Linear};
use super::matmul::f32_convolution_possible;
use crate::error::{Error, Result};

/// Returns the multiple to which the sliced forward rounds up its kept
/// channel count in `kind` on `device`, padding with zero weights.
///
/// oneDNN, which runs bf16 and f16 matmuls on the CPU, and f32 ones where
/// [`f32_convolution_possible`] allows it, compiles and caches a kernel per
/// matmul shape. Unrounded counts give one shape per kept count, so the cache grew
/// by hundreds of MiB. In bf16 step-bench runs on a 2-core AMD EPYC
/// (SmolLM2, 9 repetitions), rounding to 64 lowered the step peak from about
/// 800 to about 500 MiB, and the step took 1.09-1.11 s against 1.15-1.20 s.
/// In f32 on oneDNN it lowered the peak from 885-1,073 MiB to about 770.
/// f32 rounds to 16, the AVX-512 f32 vector width, which pads 7.5 channels
/// on average against 31.5 with 64. In two pairs of f32 step-bench runs the
/// peak was 811-817 MiB, against 785-795 MiB with 64, and the step times did
/// not differ beyond noise. f32 on MKL is not padded, because MKL has no
/// per-shape kernels.
pub fn sliced_width_multiple(kind: Kind, device: Device) -> i64 {
    match kind {
        Kind::BFloat16 | Kind::Half => 64,
        Kind::Float if f32_convolution_possible(device) => 16,
        _ => 1,
    }
}

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
    /// Returns a handle that shares this block's weights.
    pub fn shallow_clone(&self) -> Mlp {
        Mlp {
            post_attention_layernorm: self.post_attention_layernorm.shallow_clone(),
            gate_proj: self.gate_proj.shallow_clone(),
            up_proj: self.up_proj.shallow_clone(),
            down_proj: self.down_proj.shallow_clone(),
            intermediate_size: self.intermediate_size,
        }
    }

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
        let multiple = sliced_width_multiple(hidden.kind(), hidden.device());
        let extra = (multiple - kept.len() as i64 % multiple) % multiple;
        // Zero rows give silu(0) * 0 = 0, and zero columns add nothing.
        let gate_proj = self.gate_proj.select_rows_padded(&channels, extra)?;
        let up_proj = self.up_proj.select_rows_padded(&channels, extra)?;
        let down_proj = self.down_proj.select_columns_padded(&channels, extra)?;

        let x = rms_norm(hidden, &self.post_attention_layernorm, eps)?;
        let gate = gate_proj.forward(&x)?.f_silu()?;
        let act = gate.f_mul(&up_proj.forward(&x)?)?; // [rows, seq, kept channels]
        down_proj.forward(&act)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed values, so that tests running in parallel share no RNG state.
    fn wave(shape: &[i64], step: f64) -> Tensor {
        let count: i64 = shape.iter().product();
        (Tensor::arange(count, (Kind::Float, Device::Cpu)) * step).sin().reshape(shape)
    }

    fn linear(out: i64, inp: i64, step: f64, kind: Kind) -> Linear {
        Linear {
            weight: wave(&[out, inp], step).to_kind(kind),
            bias: Some(wave(&[out], step * 1.7).to_kind(kind)),
        }
    }

    /// Returns the largest gap between the sliced and the channel-masked
    /// forward for 37 of 100 channels, and the largest output magnitude.
    fn sliced_vs_masked(kind: Kind) -> (f64, f64) {
        let (hidden, inter) = (16, 100);
        let mlp = Mlp {
            post_attention_layernorm: (wave(&[hidden], 0.3) + 1.0).to_kind(kind),
            gate_proj: linear(inter, hidden, 0.13, kind),
            up_proj: linear(inter, hidden, 0.29, kind),
            down_proj: linear(hidden, inter, 0.41, kind).into_input_major().unwrap(),
            intermediate_size: inter,
        };
        let x = wave(&[2, 3, hidden], 0.07).to_kind(kind);
        let kept: Vec<i64> = (0..inter).filter(|c| c % 3 == 1).take(37).collect();
        let mut mask = vec![0.0f32; inter as usize];
        kept.iter().for_each(|&c| mask[c as usize] = 1.0);
        let mask = Tensor::from_slice(&mask).to_kind(kind).reshape([1, inter]).expand([2, inter], false);

        let sliced = mlp.forward_kept(&x, 1e-5, &kept).unwrap().to_kind(Kind::Float);
        let masked = mlp.forward(&x, 1e-5, Some(&mask), None).unwrap().to_kind(Kind::Float);
        let scale = f64::try_from(masked.abs().max()).unwrap();
        (f64::try_from((sliced - masked).abs().max()).unwrap(), scale)
    }

    #[test]
    fn sliced_matches_masked_f32() {
        let (gap, scale) = sliced_vs_masked(Kind::Float);
        assert!(gap < 1e-5 * scale, "f32 sliced and masked outputs differ by {gap} (scale {scale})");
    }

    #[test]
    fn padded_slice_matches_masked_bf16() {
        // 37 kept channels are padded to 64 in bf16.
        assert_eq!(sliced_width_multiple(Kind::BFloat16, Device::Cpu), 64);
        let (gap, scale) = sliced_vs_masked(Kind::BFloat16);
        assert!(gap < 1e-2 * scale, "bf16 sliced and masked outputs differ by {gap} (scale {scale})");
    }
}
