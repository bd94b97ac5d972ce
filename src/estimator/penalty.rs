//! The optional penalty that pushes keep probabilities towards 0 or 1.

use tch::Tensor;

use super::GradientEstimator;
use crate::error::{Error, Result};

/// Probabilities are clamped to [floor, 1 - floor] inside the logarithms, so
/// the penalty gradient stays finite at 0 and 1 (at most about 13.8 times
/// the strength).
pub const PENALTY_PROBABILITY_FLOOR: f64 = 1e-6;

/// Adds `strength * (log(1 - s) - log(s))` to an inner estimator's gradient.
///
/// A descent step along this term raises probabilities above 1/2 and lowers
/// those below, so the policy drifts towards a deterministic mask. The term
/// is a deliberate bias; the inner estimator's bias properties are
/// otherwise unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct WithPenalty<E> {
    inner: E,
    strength: f64,
}

impl<E: GradientEstimator> WithPenalty<E> {
    /// Returns an error unless `strength` is finite and >= 0.
    pub fn new(inner: E, strength: f64) -> Result<Self> {
        if !strength.is_finite() || strength < 0.0 {
            return Err(Error::invalid(
                "penalty strength",
                strength,
                "a finite value >= 0 (0 turns the penalty off)",
            ));
        }
        Ok(Self { inner, strength })
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: GradientEstimator> GradientEstimator for WithPenalty<E> {
    type State = E::State;

    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
        let gradient = self.inner.estimate(probs, masks, losses)?;
        if self.strength == 0.0 {
            return Ok(gradient);
        }
        let clamped = probs.clamp(PENALTY_PROBABILITY_FLOOR, 1.0 - PENALTY_PROBABILITY_FLOOR);
        let push = (clamped.ones_like() - &clamped).log() - clamped.log();
        Ok(gradient + push * self.strength)
    }

    fn state(&self) -> E::State {
        self.inner.state()
    }

    fn restore(&mut self, state: E::State) -> Result<()> {
        self.inner.restore(state)
    }
}
