//! REINFORCE estimators with an EMA baseline, a leave-one-out baseline, or
//! none.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{check_inputs, weighted_score_sum, GradientEstimator, ScoreDenominator};
use crate::error::{Error, Result};

/// Window of the reference's EMA baseline; its update weight is 1 / window.
pub const DEFAULT_BASELINE_WINDOW: f64 = 5.0;

/// REINFORCE with an exponential moving average baseline, as the reference
/// implementation computes it.
///
/// Each call first updates `b <- (1 - 1/window) b + (1/window) mean_k L_k`
/// (`b` starts at the first call's mean loss), then returns
/// `1/(K-1) sum_k (L_k - b) (m_k - s) / d(s)`; with K = 1 the factor is 1.
///
/// Bias: `b` includes the current losses, so it is correlated with the
/// samples and the estimate is biased even with the exact denominator. With
/// [`ScoreDenominator::ReferenceSqrt`] it is a rescaled direction, not a
/// gradient estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct EmaReinforce {
    window: f64,
    denominator: ScoreDenominator,
    baseline: Option<f64>,
}

/// Running state of [`EmaReinforce`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmaState {
    pub window: f64,
    pub denominator: ScoreDenominator,
    pub baseline: Option<f64>,
}

impl EmaReinforce {
    /// Returns an error unless `window >= 1` (an update weight in (0, 1]).
    pub fn new(window: f64, denominator: ScoreDenominator) -> Result<Self> {
        if !window.is_finite() || window < 1.0 {
            return Err(Error::invalid(
                "baseline window",
                window,
                "a finite window >= 1 (the EMA weight is 1 / window)",
            ));
        }
        Ok(Self {
            window,
            denominator,
            baseline: None,
        })
    }

    /// Creates the reference configuration: window 5, square-root denominator.
    pub fn reference() -> Self {
        Self {
            window: DEFAULT_BASELINE_WINDOW,
            denominator: ScoreDenominator::ReferenceSqrt,
            baseline: None,
        }
    }

    /// Returns the baseline after the last call, `None` before the first.
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }
}

impl GradientEstimator for EmaReinforce {
    type State = EmaState;

    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
        check_inputs(probs, masks, losses)?;
        let k = losses.len();
        let mean = losses.iter().sum::<f64>() / k as f64;
        let weight = 1.0 / self.window;
        let b = match self.baseline {
            None => mean,
            Some(b) => (1.0 - weight) * b + weight * mean,
        };
        self.baseline = Some(b);
        let factor = 1.0 / (k.max(2) - 1) as f64;
        let coeffs: Vec<f64> = losses.iter().map(|l| factor * (l - b)).collect();
        weighted_score_sum(probs, masks, &coeffs, self.denominator)
    }

    fn state(&self) -> EmaState {
        EmaState {
            window: self.window,
            denominator: self.denominator,
            baseline: self.baseline,
        }
    }

    fn restore(&mut self, state: EmaState) -> Result<()> {
        if state.window != self.window || state.denominator != self.denominator {
            return Err(Error::invalid(
                "EMA baseline state",
                format!("window {} with {:?}", state.window, state.denominator),
                format!(
                    "a state saved with window {} and {:?}",
                    self.window, self.denominator
                ),
            ));
        }
        self.baseline = state.baseline;
        Ok(())
    }
}

/// REINFORCE with a leave-one-out baseline (RLOO): sample k is compared with
/// the mean loss of the other K - 1 samples, factor 1/K, exact denominator.
///
/// Unbiased for K >= 2, because each baseline is independent of its sample.
/// With a single finite loss there is no other sample to compare with, and
/// the estimate is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LeaveOneOut;

impl GradientEstimator for LeaveOneOut {
    type State = ();

    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
        check_inputs(probs, masks, losses)?;
        let k = losses.len() as f64;
        if losses.len() < 2 {
            return Ok(Tensor::zeros_like(probs));
        }
        let sum: f64 = losses.iter().sum();
        let coeffs: Vec<f64> = losses
            .iter()
            .map(|l| (l - (sum - l) / (k - 1.0)) / k)
            .collect();
        weighted_score_sum(probs, masks, &coeffs, ScoreDenominator::Exact)
    }

    fn state(&self) {}

    fn restore(&mut self, _state: ()) -> Result<()> {
        Ok(())
    }
}

/// Plain REINFORCE without a baseline: `1/K sum_k L_k (m_k - s) / (s (1 - s))`.
///
/// Unbiased, with a variance that grows with the loss level.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlainReinforce;

impl GradientEstimator for PlainReinforce {
    type State = ();

    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
        check_inputs(probs, masks, losses)?;
        let k = losses.len() as f64;
        let coeffs: Vec<f64> = losses.iter().map(|l| l / k).collect();
        weighted_score_sum(probs, masks, &coeffs, ScoreDenominator::Exact)
    }

    fn state(&self) {}

    fn restore(&mut self, _state: ()) -> Result<()> {
        Ok(())
    }
}
