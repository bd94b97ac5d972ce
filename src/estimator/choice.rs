//! An estimator picked at run time, for command lines and config files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{EmaReinforce, EmaState, GradientEstimator, LeaveOneOut, PlainReinforce, ScoreDenominator, WithPenalty};
use crate::error::{Error, Result};

/// The estimators by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EstimatorChoice {
    /// [`EmaReinforce`] with the reference's square-root denominator.
    Ema,
    /// [`EmaReinforce`] with the exact denominator `s (1 - s)`.
    EmaExact,
    /// [`LeaveOneOut`] (RLOO).
    Rloo,
    /// [`PlainReinforce`]: no baseline.
    None,
}

impl EstimatorChoice {
    pub const NAMES: [&'static str; 4] = ["ema", "ema-exact", "rloo", "none"];

    /// Builds the estimator; `window` is the EMA baseline window and a
    /// `penalty` strength above 0 adds the polarising penalty term.
    pub fn build(self, window: f64, penalty: f64) -> Result<AnyEstimator> {
        let inner = match self {
            EstimatorChoice::Ema => Inner::Ema(EmaReinforce::new(window, ScoreDenominator::ReferenceSqrt)?),
            EstimatorChoice::EmaExact => Inner::Ema(EmaReinforce::new(window, ScoreDenominator::Exact)?),
            EstimatorChoice::Rloo => Inner::Rloo(LeaveOneOut),
            EstimatorChoice::None => Inner::Plain(PlainReinforce),
        };
        Ok(AnyEstimator(WithPenalty::new(inner, penalty)?))
    }
}

impl FromStr for EstimatorChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ema" => Ok(EstimatorChoice::Ema),
            "ema-exact" => Ok(EstimatorChoice::EmaExact),
            "rloo" => Ok(EstimatorChoice::Rloo),
            "none" => Ok(EstimatorChoice::None),
            _ => Err(Error::invalid("estimator", s, format!("use one of {}", Self::NAMES.join(", ")))),
        }
    }
}

impl fmt::Display for EstimatorChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = *self as usize;
        f.write_str(Self::NAMES[index])
    }
}

/// One of the crate's estimators, behind the penalty wrapper (strength 0
/// disables it).
#[derive(Debug, Clone, PartialEq)]
pub struct AnyEstimator(WithPenalty<Inner>);

#[derive(Debug, Clone, PartialEq)]
enum Inner {
    Ema(EmaReinforce),
    Rloo(LeaveOneOut),
    Plain(PlainReinforce),
}

/// Checkpoint state of [`AnyEstimator`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnyEstimatorState {
    Ema(EmaState),
    Stateless,
}

impl AnyEstimator {
    /// Returns the EMA baseline after the last step, if the estimator has one.
    pub fn baseline(&self) -> Option<f64> {
        match self.0.inner() {
            Inner::Ema(e) => e.baseline(),
            _ => None,
        }
    }
}

impl GradientEstimator for Inner {
    type State = AnyEstimatorState;

    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
        match self {
            Inner::Ema(e) => e.estimate(probs, masks, losses),
            Inner::Rloo(e) => e.estimate(probs, masks, losses),
            Inner::Plain(e) => e.estimate(probs, masks, losses),
        }
    }

    fn state(&self) -> AnyEstimatorState {
        match self {
            Inner::Ema(e) => AnyEstimatorState::Ema(e.state()),
            _ => AnyEstimatorState::Stateless,
        }
    }

    fn restore(&mut self, state: AnyEstimatorState) -> Result<()> {
        match (self, state) {
            (Inner::Ema(e), AnyEstimatorState::Ema(s)) => e.restore(s),
            (Inner::Rloo(_) | Inner::Plain(_), AnyEstimatorState::Stateless) => Ok(()),
            (_, state) => Err(Error::invalid(
                "estimator state",
                format!("{state:?}"),
                "a checkpoint written with the same estimator",
            )),
        }
    }
}

impl GradientEstimator for AnyEstimator {
    type State = AnyEstimatorState;

    fn estimate(&mut self, probs: &Tensor, masks: &Tensor, losses: &[f64]) -> Result<Tensor> {
        self.0.estimate(probs, masks, losses)
    }

    fn state(&self) -> AnyEstimatorState {
        self.0.state()
    }

    fn restore(&mut self, state: AnyEstimatorState) -> Result<()> {
        self.0.restore(state)
    }
}
