//! Score-function (REINFORCE) estimates of the gradient of the expected loss
//! with respect to the keep probabilities.
//!
//! For `m ~ Bern(s)` the gradient of `E[L(m)]` is `E[L(m) (m - s) / (s (1 - s))]`.
//! Every estimator here averages `(L_k - b_k) (m_k - s) / d(s)` over the
//! sampled masks with a different baseline `b_k`, factor and denominator
//! `d(s)`. Unbiasedness claims hold for `s` strictly inside (0, 1): where `s`
//! is exactly 0 or 1 no sample varies and the estimate is 0.
//!
//! "The reference" below is the public PyTorch implementation that
//! accompanies Gao et al., "Bypass Back-propagation: Optimization-based
//! Structural Pruning for Large Language Models via Policy Gradient",
//! ACL 2025 (arXiv 2406.10576).

mod choice;
mod penalty;
mod reinforce;

pub use choice::{AnyEstimator, AnyEstimatorState, EstimatorChoice};
pub use penalty::WithPenalty;
pub use reinforce::{EmaReinforce, EmaState, LeaveOneOut, PlainReinforce, DEFAULT_BASELINE_WINDOW};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::policy::check_masks;

/// Added under the square root of the reference denominator so it stays
/// positive at s = 0 and s = 1; it caps the amplification of a rare sample
/// at `1 / sqrt(eps)` = 1000. Our choice, not a value taken from the reference.
pub const SQRT_DENOMINATOR_EPS: f64 = 1e-6;

/// The denominator `d(s)` of the score `(m - s) / d(s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreDenominator {
    /// `s (1 - s)`: the exact Bernoulli score, unbiased.
    Exact,
    /// `sqrt(s (1 - s) + eps)` as the reference implementation uses: a
    /// per-unit rescaling of the exact score (a natural-gradient-like step),
    /// so the estimate is not an unbiased gradient but stays bounded near 0
    /// and 1.
    ReferenceSqrt,
}

/// Estimates the gradient of the expected loss from sampled masks.
pub trait GradientEstimator {
    /// Serialisable snapshot of the estimator's running state.
    type State: Serialize + DeserializeOwned;

    /// Returns the gradient, `f64` `[num_units]`.
    ///
    /// `probs` is `f64` `[num_units]`, `masks` `[K, num_units]` contains the
    /// masks whose losses were finite, and `losses` their K finite losses
    /// (K >= 1). Returns an error on mismatched sizes or a non-finite loss.
    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor>;

    fn state(&self) -> Self::State;

    fn restore(&mut self, state: Self::State) -> Result<()>;
}

/// Checks the inputs shared by every estimator.
pub(crate) fn check_inputs(probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<()> {
    let num_units = probs.size().first().copied().unwrap_or(0) as usize;
    check_masks(masks, num_units)?;
    let rows = masks.size()[0];
    if losses.is_empty() || rows != losses.len() as i64 {
        return Err(Error::Shape {
            what: "losses (one per mask row, at least one)".into(),
            expected: vec![rows.max(1)],
            found: vec![losses.len() as i64],
        });
    }
    if let Some(bad) = losses.iter().find(|l| !l.is_finite()) {
        return Err(Error::invalid(
            "loss",
            bad,
            "estimators take finite losses only; filter NaN and infinite losses first",
        ));
    }
    Ok(())
}

/// Returns `sum_k coeffs[k] (masks[k] - s) / d(s)`, with 0 where `d(s) = 0`.
///
/// `probs` is `f64` `[N]` and `masks` `f64` or `f32` `[K, N]`. The sum runs in
/// one pass over copied-out slices: a chain of tensor operations allocated
/// a `[N]` temporary per operation and was several times slower.
pub(crate) fn weighted_score_sum(
    probs: &Tensor,
    masks: &Tensor,
    coeffs: &[f64],
    denominator: ScoreDenominator,
) -> Result<Tensor> {
    let s = Vec::<f64>::try_from(probs)?;
    let n = s.len();
    let rows = Vec::<f32>::try_from(&masks.reshape([-1]).to_kind(Kind::Float))?;
    let total: f64 = coeffs.iter().sum();
    // [N] numerator sum_k c_k m_k - s sum_k c_k
    let mut grad: Vec<f64> = s.iter().map(|&si| -si * total).collect();
    for (row, &c) in rows.chunks_exact(n.max(1)).zip(coeffs) {
        for (g, &m) in grad.iter_mut().zip(row) {
            *g += c * f64::from(m);
        }
    }
    for (g, &si) in grad.iter_mut().zip(&s) {
        let variance = si * (1.0 - si);
        *g = match denominator {
            ScoreDenominator::Exact if variance > 0.0 => *g / variance,
            ScoreDenominator::Exact => 0.0,
            ScoreDenominator::ReferenceSqrt => *g / (variance + SQRT_DENOMINATOR_EPS).sqrt(),
        };
    }
    Ok(Tensor::from_slice(&grad))
}
