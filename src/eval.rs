//! Perplexity of a language model over evaluation windows.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Perplexity over a set of windows, with the counts behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// `exp(mean_nll)`. NaN or infinite when any token's loss was.
    pub ppl: f64,
    /// Mean next-token cross-entropy in nats over all predicted tokens.
    pub mean_nll: f64,
    /// Predicted tokens: `seq_len - 1` per window.
    pub tokens: usize,
    pub windows: usize,
    /// Predicted tokens whose loss was NaN or infinite. They are included in
    /// the mean, so any of them makes `ppl` non-finite.
    pub non_finite_tokens: usize,
    /// Windows with at least one non-finite token loss.
    pub non_finite_windows: usize,
}

impl Perplexity {
    /// Checks whether every token loss was finite, so that `ppl` is meaningful.
    pub fn is_finite(&self) -> bool {
        self.non_finite_tokens == 0 && self.ppl.is_finite()
    }
}

/// Measures perplexity: the exponential of the mean cross-entropy of every
/// next token over all windows, `seq_len - 1` predicted tokens per window.
///
/// `windows` is an `i64` tensor `[num_windows, seq_len]` (for example
/// [`crate::data::EvaluationWindows::ids`]). It is fed to `logits_fn` in
/// batches of up to `batch_size` windows; `logits_fn` maps ids `[batch, seq]`
/// to logits `[batch, seq, vocab]` on any device. Log-softmax runs in `f32`
/// (or `f64` for `f64` logits) and the sums are accumulated in `f64`. No
/// gradients are recorded. [`perplexity_from_nll`] takes per-token losses
/// instead, which a model can compute without whole-vocabulary logits.
pub fn perplexity<F>(windows: &Tensor, batch_size: usize, mut logits_fn: F) -> Result<Perplexity>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    perplexity_from_nll(windows, batch_size, |batch| {
        let logits = logits_fn(batch)?;
        logits_nll(batch, &logits)
    })
}

/// Measures perplexity as [`perplexity`] does, from `nll_fn`, which maps ids
/// `[batch, seq]` to next-token losses in nats, `[batch, seq - 1]` of any
/// float dtype on any device (for example
/// [`Llama::next_token_nll`](crate::models::llama::Llama::next_token_nll)).
pub fn perplexity_from_nll<F>(windows: &Tensor, batch_size: usize, mut nll_fn: F) -> Result<Perplexity>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    let (num_windows, seq_len) = check_windows(windows)?;
    if batch_size == 0 {
        return Err(Error::invalid(
            "batch size",
            batch_size,
            "must be at least 1",
        ));
    }

    let _no_grad = tch::no_grad_guard();
    let mut total_nll = 0.0f64;
    let mut non_finite_tokens = 0usize;
    let mut non_finite_windows = 0usize;
    let mut start = 0i64;
    while start < num_windows {
        let batch_len = (num_windows - start).min(batch_size as i64);
        let batch = windows.f_narrow(0, start, batch_len)?; // [batch, seq]
        let nll = checked_nll(&nll_fn(&batch)?, batch_len, seq_len)?; // [batch, seq - 1] as rows
        for row in nll.chunks((seq_len - 1) as usize) {
            let bad = row.iter().filter(|x| !x.is_finite()).count();
            non_finite_tokens += bad;
            non_finite_windows += usize::from(bad > 0);
            total_nll += row.iter().sum::<f64>();
        }
        start += batch_len;
    }

    let tokens = num_windows as usize * (seq_len as usize - 1);
    let mean_nll = total_nll / tokens as f64;
    if non_finite_tokens > 0 {
        tracing::warn!(
            non_finite_tokens,
            non_finite_windows,
            "perplexity includes NaN or infinite token losses"
        );
    }
    Ok(Perplexity {
        ppl: mean_nll.exp(),
        mean_nll,
        tokens,
        windows: num_windows as usize,
        non_finite_tokens,
        non_finite_windows,
    })
}

/// Checks that `nll` is `[batch_len, seq_len - 1]` and returns it in row order.
fn checked_nll(nll: &Tensor, batch_len: i64, seq_len: i64) -> Result<Vec<f64>> {
    if nll.size() != [batch_len, seq_len - 1] {
        return Err(Error::Shape {
            what: "next-token losses returned for a batch of windows".into(),
            expected: vec![batch_len, seq_len - 1],
            found: nll.size(),
        });
    }
    let flat = nll.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?.f_reshape([-1])?;
    Ok(Vec::<f64>::try_from(&flat)?)
}

/// Checks the window tensor and returns `(num_windows, seq_len)`.
fn check_windows(windows: &Tensor) -> Result<(i64, i64)> {
    let size = windows.size();
    let &[num_windows, seq_len] = size.as_slice() else {
        return Err(Error::Shape {
            what: "evaluation windows (expected [num_windows, seq_len])".into(),
            expected: vec![-1, -1],
            found: size,
        });
    };
    if windows.kind() != Kind::Int64 {
        return Err(Error::invalid(
            "evaluation window dtype",
            format!("{:?}", windows.kind()),
            "token ids must be Int64",
        ));
    }
    if num_windows < 1 || seq_len < 2 {
        return Err(Error::Shape {
            what: "evaluation windows (need at least one window of two or more tokens)".into(),
            expected: vec![1, 2],
            found: size,
        });
    }
    Ok((num_windows, seq_len))
}

/// Computes the cross-entropy of each next token from `logits`, `[batch, seq - 1]`.
fn logits_nll(batch: &Tensor, logits: &Tensor) -> Result<Tensor> {
    let (batch_len, seq_len) = batch.size2()?;
    let size = logits.size();
    let vocab = match size.as_slice() {
        &[b, t, v] if b == batch_len && t == seq_len && v > 0 => v,
        _ => {
            return Err(Error::Shape {
                what: "logits returned for a batch of windows".into(),
                expected: vec![batch_len, seq_len, -1],
                found: size,
            })
        }
    };
    let (min_id, max_id) = (
        batch.f_min()?.f_int64_value(&[])?,
        batch.f_max()?.f_int64_value(&[])?,
    );
    if min_id < 0 || max_id >= vocab {
        return Err(Error::invalid(
            "token id",
            if min_id < 0 { min_id } else { max_id },
            format!("must be in [0, {vocab}) for logits over {vocab} tokens"),
        ));
    }
    let compute_kind = if logits.kind() == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    let predicted = logits.f_narrow(1, 0, seq_len - 1)?; // [batch, seq - 1, vocab]
    let log_probs = predicted
        .f_to_kind(compute_kind)?
        .f_log_softmax(-1, compute_kind)?;
    let targets = batch
        .f_narrow(1, 1, seq_len - 1)? // [batch, seq - 1]
        .f_to_device(logits.device())?
        .f_unsqueeze(-1)?; // [batch, seq - 1, 1]
    Ok(log_probs.f_gather(-1, &targets, false)?.f_neg()?.f_squeeze_dim(-1)?)
}
