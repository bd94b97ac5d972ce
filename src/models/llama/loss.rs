//! Next-token cross-entropy through the LM head, in chunks of token positions.

use tch::{Kind, Tensor};

use super::model::Llama;
use crate::error::Result;

/// Logits materialised at once (2^25, 128 MiB in f32, about 680 positions
/// of a 49,152-token vocabulary), plus an f32 copy when the model dtype is not f32.
/// Timed with libtorch 2.13 on a 2-core AMD EPYC for 1,016 positions of
/// SmolLM2's LM head: f32 matmuls (MKL) ran about twice as fast in chunks
/// of 340 to 1,016 positions as in chunks of 42 to 85; bf16 varied little.
const LOSS_CHUNK_LOGITS: i64 = 1 << 25;

/// Sums of next-token negative log-likelihoods per row, in nats, as f64
/// `[rows]`: position `t` of `normed` `[rows, seq, hidden]` (final-normed
/// hidden states) predicts token `t + 1` of `tokens` `[rows, seq]`.
///
/// Logits stay in the model dtype. Each chunk is upcast to f32, and the
/// sums accumulate in f64.
pub(crate) fn next_token_nll_sums(model: &Llama, normed: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (rows, seq, hidden) = normed.size3()?;
    let vocab = model.config.vocab_size;
    let positions = rows * (seq - 1);
    let inputs = normed.f_narrow(1, 0, seq - 1)?.f_reshape([positions, hidden])?; // [positions, hidden]
    let targets = tokens
        .f_to_device(normed.device())?
        .f_narrow(1, 1, seq - 1)?
        .f_reshape([positions, 1])?; // [positions, 1]

    let chunk = (LOSS_CHUNK_LOGITS / vocab).max(1);
    let mut parts = Vec::with_capacity((positions / chunk + 1) as usize);
    let mut start = 0;
    while start < positions {
        let len = chunk.min(positions - start);
        let logits = model.lm_head_logits(&inputs.f_narrow(0, start, len)?)?; // [len, vocab]
        let target = targets.f_narrow(0, start, len)?;
        parts.push(chunk_nll(logits, &target)?); // [len, 1]
        start += len;
    }
    let nll = Tensor::f_cat(&parts, 0)?.f_view([rows, seq - 1])?; // [rows, seq - 1]
    Ok(nll.f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?)
}

/// Computes the negative log-likelihoods `[len, 1]` in f32 of `target`
/// `[len, 1]` under `logits` `[len, vocab]`: `logsumexp(logits) - logits[target]`.
///
/// Works in place on the f32 logits (which this function owns), so a chunk
/// needs one `[len, vocab]` f32 buffer, where a log-softmax would add a second.
fn chunk_nll(logits: Tensor, target: &Tensor) -> Result<Tensor> {
    let mut logits = logits.f_to_kind(Kind::Float)?;
    let target_logit = logits.f_gather(1, target, false)?; // [len, 1]
    let max = logits.f_amax(&[-1i64][..], true)?; // [len, 1]
    let exp_shifted = logits.f_sub_(&max)?.f_exp_()?; // exp(logits - max), in place
    let log_sum = exp_shifted.f_sum_dim_intlist(&[-1i64][..], true, Kind::Float)?.f_log()?; // [len, 1]
    Ok(log_sum.f_add(&max)?.f_sub(&target_logit)?)
}
