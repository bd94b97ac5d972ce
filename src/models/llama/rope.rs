//! Rotary position embeddings in rotate-half order, with LLaMA 3.1 scaling.

use std::f64::consts::PI;

use tch::{Device, Kind, Tensor};

use super::config::{LlamaConfig, RopeScaling};
use crate::error::Result;

/// Inverse frequencies `[head_dim / 2]` of the config's RoPE schedule.
///
/// Computed in f32 from an f32 exponent, as Hugging Face transformers 4.57
/// does, so that positions round the same way as the reference.
pub fn inverse_frequencies(config: &LlamaConfig) -> Vec<f32> {
    let dim = config.head_dim;
    let base = config.rope_theta as f32;
    let plain: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    match config.rope_scaling {
        RopeScaling::Default => plain,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let original = original_max_position_embeddings as f64;
            let low_freq_wavelen = original / low_freq_factor;
            let high_freq_wavelen = original / high_freq_factor;
            plain
                .into_iter()
                .map(|f| {
                    let f = f as f64;
                    let wavelen = 2.0 * PI / f;
                    let scaled = if wavelen > low_freq_wavelen {
                        // Long wavelengths: interpolate by the full factor.
                        f / factor
                    } else if wavelen < high_freq_wavelen {
                        // Short wavelengths: keep as they are.
                        f
                    } else {
                        // In between: blend linearly in 1 / wavelength.
                        let smooth = (original / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    };
                    scaled as f32
                })
                .collect()
        }
    }
}

/// Cosine and sine tables `[seq, head_dim]` for positions `0..seq`.
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl RopeTables {
    /// Builds the tables for `seq` positions in `kind` on `device`.
    pub fn new(config: &LlamaConfig, seq: i64, kind: Kind, device: Device) -> Result<Self> {
        let inv_freq = Tensor::from_slice(&inverse_frequencies(config)).to_device(device);
        let positions = Tensor::f_arange(seq, (Kind::Float, device))?;
        let freqs = positions.f_outer(&inv_freq)?; // [seq, head_dim / 2]
        let angles = Tensor::f_cat(&[&freqs, &freqs], -1)?; // [seq, head_dim]
        Ok(Self {
            cos: angles.f_cos()?.f_to_kind(kind)?,
            sin: angles.f_sin()?.f_to_kind(kind)?,
        })
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` by its positions.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let half = x.size()[3] / 2;
        let first = x.f_narrow(-1, 0, half)?;
        let second = x.f_narrow(-1, half, half)?;
        let rotated = Tensor::f_cat(&[&second.f_neg()?, &first], -1)?;
        Ok(x.f_mul(&self.cos)?.f_add(&rotated.f_mul(&self.sin)?)?)
    }
}
