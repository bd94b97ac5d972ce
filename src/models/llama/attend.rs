//! Scaled dot-product attention over grouped KV heads: the causal (optionally
//! sliding-window) mask, and the choice between libtorch's fused kernel and
//! explicit matmuls.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Longest sequence for which CPU attention runs as explicit matmuls (see
/// [`attend`]) in `kind`. Longer sequences go to libtorch's fused kernel.
///
/// `cargo bench --bench kernels` times both for 3, 6 and 9 query heads of 64
/// dimensions over 1 to 3 KV groups, 1,024 query positions per call. With
/// libtorch 2.13 on a 2-core AMD EPYC (Zen 4), the explicit form took about
/// half the fused kernel's time in bf16 at 128 tokens and 0.65-0.76x at 512.
/// In f32 it took 0.75-0.78x at 128 tokens and 0.93-1.04x at 256.
/// The fused kernel skips key blocks above the diagonal, while the explicit
/// form computes all `seq x seq` scores, so it falls behind as sequences grow.
/// NOTE: other CPUs were not timed.
pub fn explicit_attention_max_seq(kind: Kind) -> i64 {
    match kind {
        Kind::BFloat16 => 512,
        _ => 128,
    }
}

/// The kernel that computes attention scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// libtorch's fused scaled-dot-product kernel.
    Fused,
    /// Explicit matmuls and a softmax, as Hugging Face's "eager" attention.
    Explicit,
}

impl AttentionKernel {
    /// Returns the kernel the model uses for `seq` tokens in `kind` on `device`:
    /// explicit on the CPU up to [`explicit_attention_max_seq`], fused otherwise.
    pub fn choose(seq: i64, kind: Kind, device: Device) -> Self {
        if device == Device::Cpu && seq <= explicit_attention_max_seq(kind) {
            AttentionKernel::Explicit
        } else {
            AttentionKernel::Fused
        }
    }
}

/// The keys each query may attend to, built once per forward for all layers.
#[derive(Debug)]
pub struct AttentionMask {
    /// Boolean `[seq, seq]`, true where query `q` may attend to key `k`.
    /// `None` means plain causal attention (see [`attention_mask`]).
    allowed: Option<Tensor>,
    /// Additive `[group_size * seq, seq]` bias in the model dtype, 0.0 where
    /// attention is allowed and minus infinity elsewhere, repeated for the query
    /// heads of one KV group. Set when attention runs as explicit matmuls.
    bias: Option<Tensor>,
}

impl AttentionMask {
    /// Builds the mask for `seq` tokens, with `group_size` query heads per KV
    /// group, for the kernel that [`AttentionKernel::choose`] picks.
    pub fn new(seq: i64, sliding_window: Option<i64>, group_size: i64, kind: Kind, device: Device) -> Result<Self> {
        let kernel = AttentionKernel::choose(seq, kind, device);
        Self::for_kernel(kernel, seq, sliding_window, group_size, kind, device)
    }

    /// Builds the mask for `seq` tokens, with `group_size` query heads per KV
    /// group, so that [`attend`] runs `kernel`.
    pub fn for_kernel(
        kernel: AttentionKernel,
        seq: i64,
        sliding_window: Option<i64>,
        group_size: i64,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let allowed = attention_mask(seq, sliding_window, device)?;
        let bias = if kernel == AttentionKernel::Explicit {
            let causal = Tensor::f_ones([seq, seq], (Kind::Bool, device))?.f_tril(0)?;
            let keep = allowed.as_ref().unwrap_or(&causal);
            let zeros = Tensor::f_zeros([seq, seq], (kind, device))?;
            let bias = zeros.f_masked_fill(&keep.f_logical_not()?, f64::NEG_INFINITY)?;
            Some(bias.f_repeat([group_size, 1])?)
        } else {
            None
        };
        Ok(Self { allowed, bias })
    }
}

/// Boolean `[seq, seq]` mask, true where query `q` may attend to key `k`:
/// `k <= q`, and with a window `w` also `q - k < w`, so a token attends to at most
/// `w` positions including itself (Hugging Face Mistral semantics).
///
/// Returns `None` when the window does not bind within `seq` tokens. The
/// plain causal mask then goes to the fused kernel as a flag, which lets
/// it skip key blocks above the diagonal instead of computing and masking them.
pub fn attention_mask(seq: i64, sliding_window: Option<i64>, device: Device) -> Result<Option<Tensor>> {
    let window = match sliding_window {
        Some(w) if w < seq => w,
        _ => return Ok(None),
    };
    let positions = Tensor::f_arange(seq, (Kind::Int64, device))?;
    let query = positions.f_unsqueeze(1)?; // [seq, 1]
    let key = positions.f_unsqueeze(0)?; // [1, seq]
    let distance = query.f_sub(&key)?; // [seq, seq]
    Ok(Some(distance.f_ge(0)?.f_logical_and(&distance.f_lt(window)?)?))
}

/// Attends queries `q` `[rows, heads, seq, head_dim]` to keys and values
/// `k`, `v` `[rows, kv_heads, seq, head_dim]`, where query head `h` reads KV
/// group `h / (heads / kv_heads)`: `[rows, heads, seq, head_dim]`.
///
/// Neither form copies keys or values per query head. The explicit form (when
/// `mask` carries a bias) is the Hugging Face "eager" computation: scores in
/// the model dtype, softmax in f32 at least, then cast back for the product
/// with the values. Otherwise libtorch's fused kernel runs with `enable_gqa`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
    let (rows, heads, seq, head_dim) = q.size4()?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let Some(bias) = &mask.bias else {
        let is_causal = mask.allowed.is_none();
        return Ok(Tensor::f_scaled_dot_product_attention(q, k, v, mask.allowed.as_ref(), 0.0, is_causal, scale, true)?);
    };

    let kv_heads = k.size().get(1).copied().unwrap_or(0);
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::invalid(
            "KV heads",
            kv_heads,
            format!("must be positive and divide the {heads} query heads; check the keys' shape"),
        ));
    }
    let group_size = heads / kv_heads;
    // Query heads of one KV group become one batch entry of `group_size * seq` rows.
    let q = q.f_reshape([rows * kv_heads, group_size * seq, head_dim])?;
    let k = k.f_reshape([rows * kv_heads, seq, head_dim])?;
    let v = v.f_reshape([rows * kv_heads, seq, head_dim])?;
    let scores = bias.f_unsqueeze(0)?.f_baddbmm(&q, &k.f_transpose(1, 2)?, 1.0, scale)?; // [rows * kv_heads, group_size * seq, seq]
    let softmax_kind = match q.kind() {
        Kind::BFloat16 | Kind::Half => Kind::Float,
        other => other,
    };
    let probs = scores.f_softmax(-1, softmax_kind)?.f_to_kind(q.kind())?;
    Ok(probs.f_bmm(&v)?.f_view([rows, heads, seq, head_dim])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_mask_only_when_binding() {
        assert!(attention_mask(6, None, Device::Cpu).unwrap().is_none());
        assert!(attention_mask(6, Some(6), Device::Cpu).unwrap().is_none());

        let mask = attention_mask(6, Some(2), Device::Cpu).unwrap().unwrap();
        let row = Vec::<i64>::try_from(mask.get(3).to_kind(Kind::Int64)).unwrap();
        assert_eq!(row, vec![0, 0, 1, 1, 0, 0]);
    }

    /// Fixed values, so that tests running in parallel share no RNG state.
    fn wave(shape: [i64; 4], step: f64) -> Tensor {
        let count: i64 = shape.iter().product();
        (Tensor::arange(count, (Kind::Float, Device::Cpu)) * step).sin().reshape(shape)
    }

    /// Runs both forms on 6 query heads over 2 KV groups and returns the
    /// largest absolute difference.
    fn explicit_vs_fused(seq: i64, window: Option<i64>) -> f64 {
        let q = wave([2, 6, seq, 8], 0.31);
        let k = wave([2, 2, seq, 8], 0.17);
        let v = wave([2, 2, seq, 8], 0.23);
        let explicit = AttentionMask::for_kernel(AttentionKernel::Explicit, seq, window, 3, Kind::Float, Device::Cpu).unwrap();
        let fused = AttentionMask::for_kernel(AttentionKernel::Fused, seq, window, 3, Kind::Float, Device::Cpu).unwrap();
        let a = attend(&q, &k, &v, &explicit).unwrap();
        let b = attend(&q, &k, &v, &fused).unwrap();
        f64::try_from((a - b).abs().max()).unwrap()
    }

    #[test]
    fn explicit_matches_fused_causal() {
        let gap = explicit_vs_fused(9, None);
        assert!(gap < 1e-5, "causal attention forms differ by {gap}");
    }

    #[test]
    fn explicit_matches_fused_window() {
        let gap = explicit_vs_fused(9, Some(3));
        assert!(gap < 1e-5, "sliding-window attention forms differ by {gap}");
    }

    #[test]
    fn mismatched_kv_heads_rejected() {
        let q = wave([1, 6, 4, 8], 0.31);
        let k = wave([1, 4, 4, 8], 0.17);
        let mask = AttentionMask::new(4, None, 3, Kind::Float, Device::Cpu).unwrap();
        assert!(attend(&q, &k, &k, &mask).is_err());
    }

    #[test]
    fn kernel_choice_by_length() {
        let longest = explicit_attention_max_seq(Kind::Float);
        assert_eq!(AttentionKernel::choose(longest, Kind::Float, Device::Cpu), AttentionKernel::Explicit);
        assert_eq!(AttentionKernel::choose(longest + 1, Kind::Float, Device::Cpu), AttentionKernel::Fused);
        assert_eq!(AttentionKernel::choose(8, Kind::Float, Device::Cuda(0)), AttentionKernel::Fused);

        let mask = AttentionMask::new(longest + 1, None, 3, Kind::Float, Device::Cpu).unwrap();
        assert!(mask.bias.is_none());
    }
}
