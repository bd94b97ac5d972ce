//! Next-token cross-entropy through the LM head, one tile of positions and
//! vocabulary rows at a time, with a running log-sum-exp.

use tch::{Kind, Tensor};

use super::matmul::linear;
use crate::error::{Error, Result};

/// LM head rows per matmul. A tile of 1,016 positions by 4,096 rows is 16
/// MiB in f32, so it stays in a 32 MiB L3 cache between the matmul that writes
/// it and the reductions that read it. `cargo bench --bench kernels` times
/// this loss against whole-vocabulary logits.
const VOCAB_TILE: i64 = 4096;

/// Positions per tile. Longer inputs are split so that a tile stays within
/// `POSITION_TILE x VOCAB_TILE` f32 values (16 MiB), below the L3 size above.
const POSITION_TILE: i64 = 1024;

/// Returns the sums of next-token negative log-likelihoods per row, in nats,
/// as f64 `[rows]`, from [`next_token_nll`].
pub fn next_token_nll_sums(lm_head: &Tensor, normed: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    Ok(next_token_nll(lm_head, normed, tokens)?.f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?)
}

/// Returns the next-token negative log-likelihoods in nats, f32
/// `[rows, seq - 1]`: position `t` of `normed` `[rows, seq, hidden]`
/// (final-normed hidden states) predicts token `t + 1` of `tokens`
/// `[rows, seq]` through `lm_head` `[vocab, hidden]`. The `[positions,
/// vocab]` logits never exist at once.
///
/// Logits come out of the matmul in the dtype of `normed` and `lm_head` and
/// are upcast to f32 per tile.
pub fn next_token_nll(lm_head: &Tensor, normed: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (rows, seq, hidden) = normed.size3()?;
    let (vocab, _hidden) = lm_head.size2()?;
    if seq < 2 {
        return Err(Error::invalid("sequence length", seq, "need at least 2 tokens to predict a next token"));
    }
    let (min, max) = (tokens.f_min()?.int64_value(&[]), tokens.f_max()?.int64_value(&[]));
    if min < 0 || max >= vocab {
        let bad = if min < 0 { min } else { max };
        return Err(Error::invalid("token id", bad, format!("must be in [0, {vocab}) for this LM head; check that the tokenizer matches the model")));
    }
    let positions = rows * (seq - 1);
    let inputs = normed.f_narrow(1, 0, seq - 1)?.f_reshape([positions, hidden])?; // [positions, hidden]
    let targets = tokens
        .f_to_device(normed.device())?
        .f_narrow(1, 1, seq - 1)?
        .f_reshape([positions, 1])?; // [positions, 1]

    let mut parts = Vec::with_capacity((positions / POSITION_TILE + 1) as usize);
    let mut start = 0;
    while start < positions {
        let len = POSITION_TILE.min(positions - start);
        let part = positions_nll(lm_head, &inputs.f_narrow(0, start, len)?, &targets.f_narrow(0, start, len)?)?;
        parts.push(part); // [len, 1]
        start += len;
    }
    Ok(Tensor::f_cat(&parts, 0)?.f_view([rows, seq - 1])?)
}

/// Computes the negative log-likelihoods `[len, 1]` in f32 of `target` `[len, 1]`
/// under the logits `inputs W^T` of `lm_head` `W` `[vocab, hidden]`, as
/// `logsumexp(logits) - logits[target]` over tiles of [`VOCAB_TILE`] rows.
///
/// Keeps the log-sum-exp as a running maximum `m` and a sum `s` of
/// `exp(logit - m)`. A tile with a larger maximum rescales `s` by
/// `exp(m_old - m_new)`. The target logit is read from the tile that contains
/// it, so it carries the same rounding as the log-sum-exp.
fn positions_nll(lm_head: &Tensor, inputs: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (vocab, _hidden) = lm_head.size2()?;
    let len = inputs.size()[0];
    let options = (Kind::Float, inputs.device());
    let mut max = Tensor::f_full([len, 1], f64::NEG_INFINITY, options)?;
    let mut sum = Tensor::f_zeros([len, 1], options)?;
    let mut target_logit = Tensor::f_zeros([len, 1], options)?;

    let mut first = 0;
    while first < vocab {
        let width = VOCAB_TILE.min(vocab - first);
        let weight = lm_head.f_narrow(0, first, width)?;
        let mut logits = linear(inputs, &weight, None)?.f_to_kind(Kind::Float)?; // [len, width]

        let local = target.f_sub_scalar(first)?;
        let inside = local.f_ge(0)?.f_logical_and(&local.f_lt(width)?)?;
        let picked = logits.f_gather(1, &local.f_clamp(0, width - 1)?, false)?;
        target_logit = target_logit.f_add(&picked.f_where_scalarother(&inside, 0.0)?)?;

        let new_max = max.f_maximum(&logits.f_amax(&[-1i64][..], true)?)?;
        let tile_sum = logits.f_sub_(&new_max)?.f_exp_()?.f_sum_dim_intlist(&[-1i64][..], true, Kind::Float)?;
        sum = sum.f_mul(&max.f_sub(&new_max)?.f_exp()?)?.f_add(&tile_sum)?;
        max = new_max;
        first += width;
    }
    Ok(sum.f_log()?.f_add(&max)?.f_sub(&target_logit)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Fixed values, so that tests running in parallel share no RNG state.
    fn wave(shape: [i64; 2], step: f64, scale: f64) -> Tensor {
        (Tensor::arange(shape[0] * shape[1], (Kind::Double, Device::Cpu)) * step)
            .sin()
            .reshape(shape)
            * scale
    }

    #[test]
    fn tiled_nll_matches_log_softmax() {
        // 2.5 tiles of vocabulary, so the last tile is partial. Rows grow
        // with their index, so each tile raises the running maximum.
        let vocab = VOCAB_TILE * 2 + VOCAB_TILE / 2;
        let growth = Tensor::linspace(1.0, 4.0, vocab, (Kind::Double, Device::Cpu)).unsqueeze(1);
        let lm_head = (wave([vocab, 8], 0.37, 3.0) * growth).to_kind(Kind::Float);
        let inputs = wave([5, 8], 1.3, 2.0).to_kind(Kind::Float);
        let target = Tensor::from_slice(&[0i64, VOCAB_TILE - 1, VOCAB_TILE, vocab - 1, 7]).reshape([5, 1]);

        let nll = positions_nll(&lm_head, &inputs, &target).unwrap();
        let expected = -inputs
            .to_kind(Kind::Double)
            .linear::<Tensor>(&lm_head.to_kind(Kind::Double), None)
            .log_softmax(-1, Kind::Double)
            .gather(1, &target, false);
        let gap = f64::try_from((nll.to_kind(Kind::Double) - expected).abs().max()).unwrap();
        assert!(gap < 1e-4, "tiled NLL differs from log-softmax by {gap}");
    }

    #[test]
    fn row_sums_span_position_tiles() {
        // 3 rows of 400 positions give 1,197 predictions, more than one tile.
        let (rows, seq, vocab) = (3, 400, 50);
        let lm_head = wave([vocab, 8], 0.37, 2.0).to_kind(Kind::Float);
        let normed = wave([rows * seq, 8], 0.11, 1.5).to_kind(Kind::Float).reshape([rows, seq, 8]);
        let tokens = (Tensor::arange(rows * seq, (Kind::Int64, Device::Cpu)) * 7).remainder(vocab).reshape([rows, seq]);
        assert!(rows * (seq - 1) > POSITION_TILE);

        let sums = next_token_nll_sums(&lm_head, &normed, &tokens).unwrap();
        let log_probs = normed
            .narrow(1, 0, seq - 1)
            .to_kind(Kind::Double)
            .linear::<Tensor>(&lm_head.to_kind(Kind::Double), None)
            .log_softmax(-1, Kind::Double);
        let expected = -log_probs
            .gather(2, &tokens.narrow(1, 1, seq - 1).unsqueeze(-1), false)
            .squeeze_dim(-1)
            .sum_dim_intlist(&[1i64][..], false, Kind::Double);
        let gap = f64::try_from((sums - expected).abs().max()).unwrap();
        assert!(gap < 1e-3, "row sums differ from log-softmax by {gap}");
    }

    #[test]
    fn out_of_vocabulary_target_rejected() {
        let lm_head = wave([10, 4], 0.3, 1.0).to_kind(Kind::Float);
        let normed = wave([3, 4], 0.7, 1.0).to_kind(Kind::Float).reshape([1, 3, 4]);
        let tokens = Tensor::from_slice(&[1i64, 2, 10]).reshape([1, 3]);
        let err = next_token_nll_sums(&lm_head, &normed, &tokens).unwrap_err();
        assert!(err.to_string().contains("10"), "error should name the token id: {err}");
    }
}
