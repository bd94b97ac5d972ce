//! Linear maps, with a choice of library for f32 on the CPU.
//!
//! libtorch runs an f32 `linear` on the CPU through BLAS (MKL). On the
//! 2-core AMD EPYC test machine, at 1,024 rows, two-thread MKL reached 178
//! to 194 GFLOP/s on SmolLM2's shapes and oneDNN, which libtorch calls for
//! convolutions, 196 to 203 (`cargo bench --bench kernels -- --threads 2
//! --only matmul`). In the step bench, with repetitions alternating between
//! the two, the f32 pruning step took 0.905 to 0.918 of its time on MKL
//! (`--cpu-f32-matmul auto,blas`). A linear map
//! over `rows` inputs is a 1x1 convolution over a `rows x 1` image whose
//! channels are the input features. In channels-last layout that image has
//! the memory of the `[rows, in]` input, and the output has the memory of
//! `[rows, out]`, so the convolution reads and writes the same buffers as
//! the matmul, without copies. With more than one thread, libtorch 2.13
//! runs it as oneDNN's `brgconv_1x1` kernel, after reordering the weight
//! (checked with `ONEDNN_VERBOSE=1`). With one thread it runs its own
//! convolution code instead.

use std::sync::atomic::{AtomicU8, Ordering};

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Smallest input row count for which [`CpuF32Matmul::Auto`] picks oneDNN. In the
/// kernels bench above, oneDNN took 1.03 to 1.22 times MKL's time at 8 rows
/// and 0.76 to 1.08 at 128 rows. At 512 and 1,024 rows it took 0.79 to 0.99,
/// apart from 1.07 for the narrowest shape (192 outputs) at 512 rows.
pub const ONEDNN_MIN_ROWS: i64 = 512;

/// The library that runs f32 linear maps on the CPU. Other dtypes and
/// devices always use libtorch's `linear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuF32Matmul {
    /// oneDNN where libtorch runs on more than one thread, the input has at
    /// least [`ONEDNN_MIN_ROWS`] rows and the weight is contiguous; BLAS
    /// otherwise.
    #[default]
    Auto,
    /// Always BLAS, as `torch.nn.functional.linear` does.
    Blas,
    /// The 1x1 convolution wherever the weight is contiguous, whatever the
    /// rows and threads. With one thread that is not oneDNN (see above).
    OneDnn,
}

impl CpuF32Matmul {
    fn code(self) -> u8 {
        match self {
            CpuF32Matmul::Auto => 0,
            CpuF32Matmul::Blas => 1,
            CpuF32Matmul::OneDnn => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => CpuF32Matmul::Blas,
            2 => CpuF32Matmul::OneDnn,
            _ => CpuF32Matmul::Auto,
        }
    }
}

static CPU_F32_MATMUL: AtomicU8 = AtomicU8::new(0);

/// Sets, for the whole process, the library behind f32 linear maps on the CPU.
pub fn set_cpu_f32_matmul(choice: CpuF32Matmul) {
    CPU_F32_MATMUL.store(choice.code(), Ordering::Relaxed);
}

/// Returns the process-wide choice, [`CpuF32Matmul::Auto`] unless set.
pub fn cpu_f32_matmul() -> CpuF32Matmul {
    CpuF32Matmul::from_code(CPU_F32_MATMUL.load(Ordering::Relaxed))
}

/// Returns whether f32 linear maps of large inputs on `device` in `kind` may
/// run on oneDNN under the current choice and libtorch's thread count. The
/// sliced forward then rounds its widths, as it does in bf16 (see
/// [`sliced_width_multiple`](super::mlp::sliced_width_multiple)).
pub fn onednn_f32_possible(kind: Kind, device: Device) -> bool {
    kind == Kind::Float && device == Device::Cpu && cpu_f32_matmul() != CpuF32Matmul::Blas && tch::get_num_threads() > 1
}

/// Decides whether one f32 CPU linear map over `rows` inputs runs on oneDNN.
fn use_onednn(choice: CpuF32Matmul, rows: i64, threads: i32, weight_contiguous: bool) -> bool {
    weight_contiguous
        && rows > 0
        && match choice {
            CpuF32Matmul::Auto => threads > 1 && rows >= ONEDNN_MIN_ROWS,
            CpuF32Matmul::Blas => false,
            CpuF32Matmul::OneDnn => true,
        }
}

/// Computes `x W^T + b` for `x` `[..., in]`, `weight` `[out, in]` and
/// `bias` `[out]`, on the library that [`cpu_f32_matmul`] picks.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if x.kind() == Kind::Float && x.device() == Device::Cpu {
        let (_out, inputs) = weight.size2()?;
        let rows = if inputs > 0 { x.numel() as i64 / inputs } else { 0 };
        if use_onednn(cpu_f32_matmul(), rows, tch::get_num_threads(), weight.is_contiguous()) {
            return onednn_linear(x, weight, bias);
        }
    }
    Ok(x.f_linear(weight, bias)?)
}

/// Computes `x W^T + b` as a 1x1 convolution, which libtorch runs on oneDNN
/// for f32 on the CPU. `weight` must be contiguous.
pub fn onednn_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (out, inputs) = weight.size2()?;
    let mut shape = x.size();
    let rows = x.numel() as i64 / inputs.max(1);
    // [rows, in] memory seen as a [1, in, rows, 1] channels-last image.
    let image = x.f_contiguous()?.f_view([1, rows, 1, inputs])?.f_permute([0, 3, 1, 2])?;
    let filters = weight.f_view([out, inputs, 1, 1])?;
    let y = image.f_conv2d(&filters, bias, [1, 1], [0, 0], [1, 1], 1)?; // [1, out, rows, 1]
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    // A channels-last output makes this a view; otherwise reshape copies.
    Ok(y.f_permute([0, 2, 3, 1])?.f_reshape(&shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(shape: &[i64], step: f64) -> Tensor {
        let count: i64 = shape.iter().product();
        (Tensor::arange(count, (Kind::Float, Device::Cpu)) * step).sin().reshape(shape)
    }

    #[test]
    fn convolution_matches_linear() {
        let x = wave(&[3, 50, 24], 0.37); // 150 rows
        let weight = wave(&[40, 24], 0.11);
        let bias = wave(&[40], 0.7);
        let expected = x.linear(&weight, Some(&bias));
        let y = onednn_linear(&x, &weight, Some(&bias)).unwrap();
        assert_eq!(y.size(), vec![3, 50, 40]);
        let gap = f64::try_from((y - &expected).abs().max()).unwrap();
        let scale = f64::try_from(expected.abs().max()).unwrap();
        assert!(gap < 1e-5 * scale, "oneDNN linear differs from libtorch's by {gap} (scale {scale})");
    }

    #[test]
    fn convolution_reads_strided_inputs() {
        // A narrowed input is not contiguous and must be copied first.
        let x = wave(&[4, 10, 24], 0.23).narrow(1, 2, 7);
        let weight = wave(&[5, 24], 0.19);
        let y = onednn_linear(&x, &weight, None).unwrap();
        let gap = f64::try_from((y - x.linear::<Tensor>(&weight, None)).abs().max()).unwrap();
        assert!(gap < 1e-4, "strided input gives a gap of {gap}");
    }

    #[test]
    fn choice_by_rows_and_threads() {
        assert!(use_onednn(CpuF32Matmul::Auto, ONEDNN_MIN_ROWS, 2, true));
        assert!(!use_onednn(CpuF32Matmul::Auto, ONEDNN_MIN_ROWS - 1, 2, true));
        assert!(!use_onednn(CpuF32Matmul::Auto, 1024, 1, true));
        assert!(!use_onednn(CpuF32Matmul::Auto, 1024, 2, false));
        assert!(!use_onednn(CpuF32Matmul::Blas, 1024, 2, true));
        assert!(use_onednn(CpuF32Matmul::OneDnn, 1, 1, true));
        assert!(!use_onednn(CpuF32Matmul::OneDnn, 0, 2, true));
    }
}
