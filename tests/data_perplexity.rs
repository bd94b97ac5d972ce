//! Perplexity against models whose perplexity is known in closed form.

use approx::assert_relative_eq;
use pgprune::eval::{perplexity, perplexity_from_nll};
use pgprune::Error;
use tch::{Kind, Tensor};

const VOCAB: i64 = 11;
/// A logit margin large enough that the softmax puts all but e^-100 of the
/// mass on one token, below f32 resolution next to 1.
const CERTAIN_LOGIT: f64 = 100.0;
/// Relative error of exp(mean NLL) when each NLL carries f32 rounding
/// (about 6e-8 relative, times ln VOCAB < 3), with a wide margin.
const F32_PPL_TOLERANCE: f64 = 1e-5;

/// Window `w` contains tokens `(w + t) % VOCAB`.
fn windows(num_windows: i64, seq_len: i64) -> Tensor {
    let rows = Tensor::arange(num_windows, (Kind::Int64, tch::Device::Cpu)).unsqueeze(1);
    let cols = Tensor::arange(seq_len, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0);
    (rows + cols).remainder(VOCAB)
}

fn uniform_logits(ids: &Tensor) -> pgprune::Result<Tensor> {
    let (batch, seq) = ids.size2()?;
    Ok(Tensor::zeros(
        [batch, seq, VOCAB],
        (Kind::Float, tch::Device::Cpu),
    ))
}

/// Puts [`CERTAIN_LOGIT`] on the next token of every position.
fn oracle_logits(ids: &Tensor) -> pgprune::Result<Tensor> {
    let next = ids.roll([-1], [1]); // [batch, seq]
    Ok(next.one_hot(VOCAB).to_kind(Kind::Float) * CERTAIN_LOGIT)
}

#[test]
fn uniform_model_scores_vocab_size() {
    let result = perplexity(&windows(6, 9), 4, uniform_logits).unwrap();
    assert_relative_eq!(result.ppl, VOCAB as f64, max_relative = F32_PPL_TOLERANCE);
    assert_relative_eq!(
        result.mean_nll,
        (VOCAB as f64).ln(),
        max_relative = F32_PPL_TOLERANCE
    );
    assert!(result.is_finite());
}

#[test]
fn certain_model_scores_one() {
    let result = perplexity(&windows(5, 12), 2, oracle_logits).unwrap();
    assert_relative_eq!(result.ppl, 1.0, max_relative = F32_PPL_TOLERANCE);
    assert!(result.mean_nll >= 0.0);
}

#[test]
fn half_probability_scores_two() {
    // Logit ln 3 on the target and 0 on three others: p = 3 / 6 = 1/2.
    let vocab = 4;
    let ids = Tensor::zeros([3, 5], (Kind::Int64, tch::Device::Cpu));
    let result = perplexity(&ids, 8, |ids| {
        let (batch, seq) = ids.size2()?;
        let logits = Tensor::zeros([batch, seq, vocab], (Kind::Float, tch::Device::Cpu));
        let _ = logits.narrow(2, 0, 1).fill_(3f64.ln());
        Ok(logits)
    })
    .unwrap();
    assert_relative_eq!(result.ppl, 2.0, max_relative = F32_PPL_TOLERANCE);
}

#[test]
fn counts_windows_tokens_and_batches() {
    let mut batch_sizes = Vec::new();
    let result = perplexity(&windows(5, 7), 2, |ids| {
        batch_sizes.push(ids.size()[0]);
        uniform_logits(ids)
    })
    .unwrap();
    assert_eq!(result.windows, 5);
    assert_eq!(result.tokens, 5 * 6);
    assert_eq!(batch_sizes, vec![2, 2, 1]);
    assert_eq!(result.non_finite_tokens, 0);
    assert_eq!(result.non_finite_windows, 0);
}

#[test]
fn non_finite_loss_is_counted() {
    let (num_windows, seq_len) = (4, 6);
    let result = perplexity(&windows(num_windows, seq_len), 1, |ids| {
        let logits = uniform_logits(ids)?;
        // The window starting with token 2 gets a NaN logit at position 1.
        if ids.int64_value(&[0, 0]) == 2 {
            let _ = logits.narrow(1, 1, 1).fill_(f64::NAN);
        }
        Ok(logits)
    })
    .unwrap();
    assert_eq!(result.non_finite_tokens, 1);
    assert_eq!(result.non_finite_windows, 1);
    assert!(result.ppl.is_nan());
    assert!(!result.is_finite());
    assert_eq!(result.tokens, (num_windows * (seq_len - 1)) as usize);
}

#[test]
fn wrong_logit_shape_is_rejected() {
    let result = perplexity(&windows(2, 5), 2, |ids| {
        let (batch, _) = ids.size2()?;
        Ok(Tensor::zeros(
            [batch, 4, VOCAB],
            (Kind::Float, tch::Device::Cpu),
        ))
    });
    match result {
        Err(Error::Shape { found, .. }) => assert_eq!(found, vec![2, 4, VOCAB]),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn token_beyond_vocab_is_rejected() {
    let ids = Tensor::from_slice(&[0i64, 1, VOCAB + 3]).view([1, 3]);
    let result = perplexity(&ids, 1, uniform_logits);
    match result {
        Err(Error::InvalidArgument { value, .. }) => assert_eq!(value, (VOCAB + 3).to_string()),
        other => panic!("expected an invalid argument error, got {other:?}"),
    }
}

#[test]
fn model_error_propagates() {
    let result = perplexity(&windows(2, 5), 1, |_ids| {
        Err(Error::invalid("model", "broken", "a working model"))
    });
    assert!(matches!(
        result,
        Err(Error::InvalidArgument { name: "model", .. })
    ));
}

#[test]
fn bad_inputs_are_rejected() {
    let zero_batch = perplexity(&windows(2, 5), 0, uniform_logits);
    assert!(matches!(zero_batch, Err(Error::InvalidArgument { .. })));
    let flat = Tensor::from_slice(&[1i64, 2, 3]);
    assert!(matches!(
        perplexity(&flat, 1, uniform_logits),
        Err(Error::Shape { .. })
    ));
    let single_token = Tensor::from_slice(&[1i64, 2]).view([2, 1]);
    assert!(matches!(
        perplexity(&single_token, 1, uniform_logits),
        Err(Error::Shape { .. })
    ));
    let floats = Tensor::zeros([2, 5], (Kind::Float, tch::Device::Cpu));
    assert!(matches!(
        perplexity(&floats, 1, uniform_logits),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn nll_perplexity_matches_and_checks_shape() {
    // Losses of ln 2 per token give perplexity 2.
    let result = perplexity_from_nll(&windows(3, 6), 2, |ids| {
        let (batch, seq) = ids.size2()?;
        Ok(Tensor::full([batch, seq - 1], std::f64::consts::LN_2, (Kind::Float, ids.device())))
    })
    .unwrap();
    assert_relative_eq!(result.ppl, 2.0, max_relative = 1e-6);
    assert_eq!(result.tokens, 15);

    let wrong = perplexity_from_nll(&windows(3, 6), 2, |ids| {
        let (batch, seq) = ids.size2()?;
        Ok(Tensor::zeros([batch, seq], (Kind::Float, ids.device())))
    });
    assert!(matches!(wrong, Err(Error::Shape { .. })), "a [batch, seq] result must be rejected: {wrong:?}");
}
