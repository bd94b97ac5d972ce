//! Score-function (REINFORCE) estimates of the gradient of the expected loss
//! with respect to the keep probabilities.
//!
//! For `m ~ Bern(s)` the gradient of `E[L(m)]` is `E[L(m) (m - s) / (s (1 - s))]`.
//! Every estimator here averages `(L_k - b_k) (m_k - s) / d(s)` over the
//! sampled masks with a different baseline `b_k`, factor and denominator
//! `d(s)`. Unbiasedness claims hold for `s` strictly inside (0, 1): where `s`
//! is exactly 0 or 1 no sample varies and the estimate is 0.

mod penalty;
mod reinforce;

pub use penalty::WithPenalty;
pub use reinforce::{EmaReinforce, LeaveOneOut, PlainReinforce, DEFAULT_BASELINE_WINDOW};

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
    /// `probs` is `f64` `[num_units]`, `masks` `[K, num_units]` holds the
    /// masks whose losses were finite, and `losses` their K finite losses
    /// (K >= 1). Returns an error on mismatched sizes or a non-finite loss.
    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor>;

    fn state(&self) -> Self::State;

    fn restore(&mut self, state: Self::State) -> Result<()>;
}

/// Checks the inputs shared by every estimator and returns the masks as `f64`.
pub(crate) fn check_inputs(probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
    let num_units = probs.size().first().copied().unwrap_or(0) as usize;
    let masks = check_masks(masks, num_units)?;
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
    Ok(masks)
}

/// Returns `sum_k coeffs[k] (masks[k] - s) / d(s)`, with 0 where `d(s) = 0`.
pub(crate) fn weighted_score_sum(
    probs: &Tensor,
    masks: &Tensor,
    coeffs: &[f64],
    denominator: ScoreDenominator,
) -> Tensor {
    let k = coeffs.len() as i64;
    // [1, K] x [K, N] -> [1, N], then minus s * sum_k coeffs[k]
    let weights = Tensor::from_slice(coeffs).view([1, k]);
    let total: f64 = coeffs.iter().sum();
    let numerator = weights.matmul(masks).squeeze_dim(0) - probs * total;
    let variance = probs * (1.0 - probs);
    match denominator {
        ScoreDenominator::Exact => {
            let score = numerator / &variance;
            let defined = variance.gt(0.0);
            score.where_self(&defined, &Tensor::zeros_like(probs))
        }
        ScoreDenominator::ReferenceSqrt => numerator / (variance + SQRT_DENOMINATOR_EPS).sqrt(),
    }
    .to_kind(Kind::Double)
}
