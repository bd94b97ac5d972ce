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
        self.select_rows_padded(rows, 0)
    }

    /// Keeps the output rows `rows` and appends `extra` output rows of
    /// zeros, with zero bias entries.
    pub fn select_rows_padded(&self, rows: &Tensor, extra: i64) -> Result<Linear> {
        Ok(Linear {
            weight: gather_padded(&self.weight, rows, extra)?,
            bias: match &self.bias {
                Some(b) => Some(gather_padded(b, rows, extra)?),
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

    /// Keeps the input columns `cols` (a 1-D int64 tensor); the bias stays.
    /// The copy is input-major (see [`Linear::into_input_major`]).
    pub fn select_columns(&self, cols: &Tensor) -> Result<Linear> {
        self.select_columns_padded(cols, 0)
    }

    /// Keeps the input columns `cols` and appends `extra` input columns of
    /// zeros, in input-major storage.
    pub fn select_columns_padded(&self, cols: &Tensor, extra: i64) -> Result<Linear> {
        let stored = self.weight.f_transpose(0, 1)?; // [in, out]
        Ok(Linear {
            weight: gather_padded(&stored, cols, extra)?.f_transpose(0, 1)?,
            bias: self.bias.as_ref().map(|b| b.shallow_clone()),
        })
    }
}

/// Copies the entries `index` of `source` along dim 0 into a new contiguous
/// tensor, followed by `extra` entries of zeros. Each kept entry is written
/// once, where gathering and then padding wrote everything two more times.
fn gather_padded(source: &Tensor, index: &Tensor, extra: i64) -> Result<Tensor> {
    check_padding(extra)?;
    let kept = index.size1()?;
    let mut shape = source.size();
    shape[0] = kept + extra;
    let out = Tensor::f_empty(shape.as_slice(), (source.kind(), source.device()))?;
    let _ = source.f_index_select_out(&out.f_narrow(0, 0, kept)?, 0, index)?;
    if extra > 0 {
        let mut zeros = out.f_narrow(0, kept, extra)?;
        let _ = zeros.f_zero_()?;
    }
    Ok(out)
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

    #[test]
    fn padded_selection_appends_zeros() {
        let index = Tensor::from_slice(&[2i64, 0]);
        let rows = sample().select_rows_padded(&index, 3).unwrap();
        assert_eq!(rows.weight.size(), vec![5, 6]);
        assert!(rows.weight.narrow(0, 0, 2).equal(&sample().weight.index_select(0, &index)));
        assert!(rows.weight.narrow(0, 2, 3).eq(0.0).all().int64_value(&[]) == 1);
        let bias = rows.bias.unwrap();
        assert!(bias.narrow(0, 0, 2).equal(&sample().bias.unwrap().index_select(0, &index)));
        assert!(bias.narrow(0, 2, 3).eq(0.0).all().int64_value(&[]) == 1);

        let columns = sample().into_input_major().unwrap().select_columns_padded(&index, 2).unwrap();
        assert_eq!(columns.weight.size(), vec![4, 4]);
        assert_eq!(columns.weight.stride(), vec![1, 4], "input-major storage");
        assert!(columns.weight.narrow(1, 0, 2).equal(&sample().weight.index_select(1, &index)));
        assert!(columns.weight.narrow(1, 2, 2).eq(0.0).all().int64_value(&[]) == 1);
        assert!(sample().select_rows_padded(&index, -1).is_err());
    }
}
