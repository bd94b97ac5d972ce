//! Linear layers and RMSNorm, with weights in Hugging Face layout.

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Rejects a negative padding, which libtorch would read as cropping.
fn check_padding(extra: i64) -> Result<()> {
    if extra < 0 {
        return Err(Error::invalid("padding", extra, "must be zero or more rows or columns"));
    }
    Ok(())
}

/// A linear map `y = x W^T + b` with `W` of shape `[out, in]`, run by
/// [`matmul::linear`](super::matmul::linear).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::matmul::linear(x, &self.weight, self.bias.as_ref())
    }

    /// Returns a handle that shares this layer's weight and bias storage.
    pub fn shallow_clone(&self) -> Linear {
        Linear {
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
        }
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

    /// Stores the weight input-major: the same `[out, in]` shape and values,
    /// held as the transpose of a contiguous `[in, out]` tensor, so each input
    /// column is one contiguous run of memory. Matmuls read either layout
    /// without a copy. [`Linear::select_columns`] then copies whole runs
    /// instead of one element per output row.
    ///
    /// Used for `o_proj` and `down_proj`, whose inputs are what pruning
    /// removes. The reordering copy lives only during this call.
    pub fn into_input_major(self) -> Result<Linear> {
        Ok(Linear {
            weight: self.weight.f_transpose(0, 1)?.f_contiguous()?.f_transpose(0, 1)?,
            bias: self.bias,
        })
    }

    /// Appends `extra` output rows of zeros, with zero bias entries.
    pub fn pad_outputs(self, extra: i64) -> Result<Linear> {
        check_padding(extra)?;
        Ok(Linear {
            weight: self.weight.f_constant_pad_nd([0, 0, 0, extra])?,
            bias: match self.bias {
                Some(b) => Some(b.f_constant_pad_nd([0, extra])?),
                None => None,
            },
        })
    }

    /// Appends `extra` input columns of zeros, keeping the input-major
    /// storage of [`Linear::select_columns`].
    pub fn pad_inputs(self, extra: i64) -> Result<Linear> {
        check_padding(extra)?;
        let padded = self.weight.f_transpose(0, 1)?.f_constant_pad_nd([0, 0, 0, extra])?;
        Ok(Linear {
            weight: padded.f_transpose(0, 1)?,
            bias: self.bias,
        })
    }

    /// Keeps the input columns `cols` (a 1-D int64 tensor); the bias stays.
    /// The copy is input-major (see [`Linear::into_input_major`]).
    pub fn select_columns(&self, cols: &Tensor) -> Result<Linear> {
        Ok(Linear {
            weight: self.weight.f_transpose(0, 1)?.f_index_select(0, cols)?.f_transpose(0, 1)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Fixed values, so that tests running in parallel share no RNG state.
    fn ramp(shape: [i64; 2], scale: f64) -> Tensor {
        Tensor::arange(shape[0] * shape[1], (Kind::Float, Device::Cpu))
            .reshape(shape)
            .sin()
            * scale
    }

    fn sample() -> Linear {
        Linear {
            weight: ramp([4, 6], 1.0),
            bias: Some(ramp([1, 4], 0.5).reshape([4])),
        }
    }

    #[test]
    fn input_major_keeps_values_and_outputs() {
        let plain = sample();
        let x = ramp([3, 6], 2.0);
        let expected = plain.forward(&x).unwrap();
        let reordered = sample().into_input_major().unwrap();
        assert_eq!(reordered.weight.size(), vec![4, 6]);
        assert_eq!(reordered.weight.stride(), vec![1, 4]);
        assert!(reordered.weight.equal(&plain.weight));
        assert!(reordered.forward(&x).unwrap().allclose(&expected, 1e-5, 1e-6, false));
    }

    #[test]
    fn selected_columns_match_either_layout() {
        let cols = Tensor::from_slice(&[0i64, 3, 5]);
        let expected = sample().weight.index_select(1, &cols);
        for linear in [sample(), sample().into_input_major().unwrap()] {
            let kept = linear.select_columns(&cols).unwrap();
            assert!(kept.weight.equal(&expected));
            assert!(kept.bias.unwrap().equal(linear.bias.as_ref().unwrap()));
        }
    }
}
