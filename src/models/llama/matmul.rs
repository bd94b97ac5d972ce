//! f32 linear maps on the CPU, as libtorch's matmul or as a 1x1 convolution.
//!
//! A linear map over `rows` inputs is a 1x1 convolution over a `rows x 1`
//! image whose channels are the input features. In channels-last layout
//! that image has the memory of the `[rows, in]` input, and the output has
//! the memory of `[rows, out]`, so the convolution reads and writes the same
//! buffers as the matmul, without copies. On a single thread the rows are
//! split into a batch of 16 images. With more than one thread, libtorch 2.13 runs the
//! convolution as oneDNN's `brgconv_1x1` kernel after reordering the weight
//! (checked with `ONEDNN_VERBOSE=1`). With one thread it does so only for a
//! batch of at least 16 images, and runs its own convolution code otherwise.
//!
//! libtorch runs an f32 `linear` on the CPU through BLAS (MKL). On the
//! 2-core AMD EPYC test machine, at 1,024 rows, two-thread MKL reached 178
//! to 199 GFLOP/s on SmolLM2's shapes and the convolution 196 to 207 (two
//! runs of `cargo bench --bench kernels -- --threads 2 --only matmul`). In the
//! step bench, with repetitions alternating between the two kernels, the
//! f32 pruning step took 0.905 to 0.955 of its time with the matmul
//! (`--linear-kernel auto,matmul`, five runs). bf16 already runs on oneDNN
//! (its matmul), and the convolution gave it 0.97 to 1.01 in three runs, so bf16 keeps
//! libtorch's `linear`.

use std::sync::atomic::{AtomicU8, Ordering};

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Smallest input row count for which [`LinearKernel::Auto`] picks the
/// convolution. In the f32 kernels bench above, the convolution took 1.01
/// to 1.22 times the matmul's time at 8 rows and 0.76 to 1.08 at 128 rows.
/// At 512 and 1,024 rows it took 0.79 to 0.99, apart from 1.07 and 1.09
/// for the narrowest shape (192 outputs) at 512 rows. On one thread
/// (`--threads 1`, 16 images) it took 1.01 to 1.96 times the matmul's time
/// at 8 to 128 rows, 0.96 to 1.01 at 512 rows and 0.89 to 0.95 at 1,024.
pub const CONVOLUTION_MIN_ROWS: i64 = 512;

/// Images the rows are split into on a single thread, where they divide
/// evenly. libtorch runs a single-thread 1x1 convolution on oneDNN only for
/// a batch of at least 16 images (checked with `ONEDNN_VERBOSE=1`). With two
/// threads, 16 images ran slower than one at 128 to 512 rows.
const IMAGES: i64 = 16;

/// The kernel behind f32 linear maps on the CPU. Other dtypes and devices
/// always use libtorch's `linear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinearKernel {
    /// The convolution where the input has at least
    /// [`CONVOLUTION_MIN_ROWS`] rows, the weight is contiguous, and libtorch
    /// runs on more than one thread or the rows split evenly into 16 images.
    /// libtorch's `linear` otherwise.
    #[default]
    Auto,
    /// Always libtorch's `linear`, as `torch.nn.functional.linear` does.
    Matmul,
    /// The convolution wherever the weight is contiguous, whatever the rows
    /// and threads.
    Convolution,
}

impl LinearKernel {
    fn code(self) -> u8 {
        match self {
            LinearKernel::Auto => 0,
            LinearKernel::Matmul => 1,
            LinearKernel::Convolution => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => LinearKernel::Matmul,
            2 => LinearKernel::Convolution,
            _ => LinearKernel::Auto,
        }
    }
}

static LINEAR_KERNEL: AtomicU8 = AtomicU8::new(0);

/// Sets, for the whole process, the kernel behind f32 linear maps on the CPU.
pub fn set_linear_kernel(choice: LinearKernel) {
    LINEAR_KERNEL.store(choice.code(), Ordering::Relaxed);
}

/// Returns the process-wide choice, [`LinearKernel::Auto`] unless set.
pub fn linear_kernel() -> LinearKernel {
    LinearKernel::from_code(LINEAR_KERNEL.load(Ordering::Relaxed))
}

/// Returns whether f32 linear maps of large inputs on `device` may run as
/// oneDNN convolutions under the current choice. The sliced forward then
/// rounds its f32 widths, as it does in bf16 (see
/// [`sliced_width_multiple`](super::mlp::sliced_width_multiple)).
pub fn f32_convolution_possible(device: Device) -> bool {
    device == Device::Cpu && linear_kernel() != LinearKernel::Matmul
}

/// Returns whether one linear map over `rows` inputs runs as a convolution.
fn use_convolution(choice: LinearKernel, rows: i64, threads: i32, weight_contiguous: bool) -> bool {
    weight_contiguous
        && rows > 0
        && match choice {
            LinearKernel::Auto => rows >= CONVOLUTION_MIN_ROWS && (threads > 1 || rows % IMAGES == 0),
            LinearKernel::Matmul => false,
            LinearKernel::Convolution => true,
        }
}

/// Computes `x W^T + b` for `x` `[..., in]`, `weight` `[out, in]` and
/// `bias` `[out]`, with the kernel that [`linear_kernel`] picks.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if x.kind() == Kind::Float && x.device() == Device::Cpu {
        let (_out, inputs) = weight.size2()?;
        let rows = if inputs > 0 { x.numel() as i64 / inputs } else { 0 };
        if use_convolution(linear_kernel(), rows, tch::get_num_threads(), weight.is_contiguous()) {
            return convolution_linear(x, weight, bias);
        }
    }
    Ok(x.f_linear(weight, bias)?)
}

/// Computes `x W^T + b` as a 1x1 convolution. `weight` must be contiguous.
pub fn convolution_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (out, inputs) = weight.size2()?;
    let mut shape = x.size();
    let rows = x.numel() as i64 / inputs.max(1);
    let single_thread = tch::get_num_threads() == 1;
    let images = if single_thread && rows % IMAGES == 0 { IMAGES } else { 1 };
    // [rows, in] memory seen as [images, in, rows / images, 1] channels-last images.
    let image = x.f_contiguous()?.f_view([images, rows / images, 1, inputs])?.f_permute([0, 3, 1, 2])?;
    let filters = weight.f_view([out, inputs, 1, 1])?;
    let y = image.f_conv2d(&filters, bias, [1, 1], [0, 0], [1, 1], 1)?; // [images, out, rows / images, 1]
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
        // 150 rows form one image; 192 rows split into 16 images.
        for seq in [50, 64] {
            let x = wave(&[3, seq, 24], 0.37);
            let weight = wave(&[40, 24], 0.11);
            let bias = wave(&[40], 0.7);
            let expected = x.linear(&weight, Some(&bias));
            let y = convolution_linear(&x, &weight, Some(&bias)).unwrap();
            assert_eq!(y.size(), vec![3, seq, 40]);
            let gap = f64::try_from((y - &expected).abs().max()).unwrap();
            let scale = f64::try_from(expected.abs().max()).unwrap();
            assert!(gap < 1e-5 * scale, "{seq} positions: convolution differs from libtorch's by {gap} (scale {scale})");
        }
    }

    #[test]
    fn convolution_reads_strided_inputs() {
        // A narrowed input is not contiguous and must be copied first.
        let x = wave(&[4, 10, 24], 0.23).narrow(1, 2, 7);
        let weight = wave(&[5, 24], 0.19);
        let y = convolution_linear(&x, &weight, None).unwrap();
        let gap = f64::try_from((y - x.linear::<Tensor>(&weight, None)).abs().max()).unwrap();
        assert!(gap < 1e-4, "strided input gives a gap of {gap}");
    }

    #[test]
    fn choice_by_rows_and_threads() {
        assert!(use_convolution(LinearKernel::Auto, CONVOLUTION_MIN_ROWS, 2, true));
        assert!(!use_convolution(LinearKernel::Auto, CONVOLUTION_MIN_ROWS - 1, 2, true));
        assert!(use_convolution(LinearKernel::Auto, 1024, 1, true));
        assert!(!use_convolution(LinearKernel::Auto, 1000, 1, true));
        assert!(use_convolution(LinearKernel::Auto, 1000, 2, true));
        assert!(!use_convolution(LinearKernel::Auto, 1024, 2, false));
        assert!(!use_convolution(LinearKernel::Matmul, 1024, 2, true));
        assert!(use_convolution(LinearKernel::Convolution, 1, 1, true));
        assert!(!use_convolution(LinearKernel::Convolution, 0, 2, true));
    }
}
