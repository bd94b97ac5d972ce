//! Optimisers and learning-rate schedules for the keep probabilities.
//!
//! They take a gradient and return the update to add to the parameters, both
//! `f64` tensors, so the policy decides how to apply and project it.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Learning rate as a function of the step index `t` in `0..total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate at every step.
    Constant,
    /// `base * (1 + cos(pi t / T)) / 2`: the base rate at t = 0, falling to
    /// 0 at t = T (the reference's schedule).
    Cosine,
    /// Linear warm-up `base * (t + 1) / W` for the first W steps, then
    /// cosine annealing from the base rate to 0 over the remaining steps.
    WarmupCosine { warmup_steps: u64 },
}

impl LrSchedule {
    /// Returns the learning rate of step `t` of a run of `total_steps`.
    /// Steps at or past the end get the schedule's final value.
    pub fn rate(&self, base: f64, t: u64, total_steps: u64) -> f64 {
        let cosine = |done: u64, span: u64| {
            if span == 0 {
                return base;
            }
            let fraction = (done.min(span) as f64) / span as f64;
            base * 0.5 * (1.0 + (PI * fraction).cos())
        };
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => cosine(t, total_steps),
            LrSchedule::WarmupCosine { warmup_steps } if t < warmup_steps => {
                base * (t + 1) as f64 / warmup_steps as f64
            }
            LrSchedule::WarmupCosine { warmup_steps } => {
                cosine(t - warmup_steps, total_steps.saturating_sub(warmup_steps))
            }
        }
    }
}

/// Default Adam decay rates and epsilon (Kingma and Ba, 2015).
pub const ADAM_BETA1: f64 = 0.9;
pub const ADAM_BETA2: f64 = 0.999;
pub const ADAM_EPS: f64 = 1e-8;

/// Update rule of an [`Optimizer`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// `delta = -lr g`, as the reference uses.
    Sgd,
    /// Bias-corrected Adam.
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    /// Adam with [`ADAM_BETA1`], [`ADAM_BETA2`] and [`ADAM_EPS`].
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: ADAM_BETA1,
            beta2: ADAM_BETA2,
            eps: ADAM_EPS,
        }
    }

    /// Returns an error naming the first invalid hyperparameter.
    pub fn validate(&self) -> Result<()> {
        if let OptimizerKind::Adam { beta1, beta2, eps } = *self {
            for (name, value) in [("adam beta1", beta1), ("adam beta2", beta2)] {
                if !(0.0..1.0).contains(&value) {
                    return Err(Error::invalid(name, value, "must be in [0, 1)"));
                }
            }
            if !eps.is_finite() || eps <= 0.0 {
                return Err(Error::invalid("adam eps", eps, "a finite value > 0"));
            }
        }
        Ok(())
    }
}

/// Serialisable optimiser state: Adam's moments and its step count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    pub first_moment: Option<Vec<f64>>,
    pub second_moment: Option<Vec<f64>>,
    pub updates: u64,
}

/// An optimiser for the keep probabilities.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    first_moment: Option<Vec<f64>>,
    second_moment: Option<Vec<f64>>,
    updates: u64,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind) -> Result<Self> {
        kind.validate()?;
        Ok(Self {
            kind,
            first_moment: None,
            second_moment: None,
            updates: 0,
        })
    }

    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Returns the update `delta` for gradient `grad` (`[num_units]`) at
    /// learning rate `lr`; the caller adds it to the parameters.
    ///
    /// The arithmetic runs in loops over copied-out values, because libtorch
    /// splits each operation on tens of thousands of units over its threads.
    /// On the 2-core test machine the woken OpenMP thread then sometimes spun
    /// on the caller's core, and the median update of a step-bench run rose
    /// from about 1 ms to as much as 23 ms.
    pub fn update(&mut self, grad: &Tensor, lr: f64) -> Result<Tensor> {
        let grad = Vec::<f64>::try_from(&grad.to_kind(Kind::Double))?;
        for moment in [&self.first_moment, &self.second_moment].into_iter().flatten() {
            if moment.len() != grad.len() {
                return Err(Error::Shape {
                    what: "gradient (one entry per optimiser moment)".into(),
                    expected: vec![moment.len() as i64],
                    found: vec![grad.len() as i64],
                });
            }
        }
        self.updates += 1;
        let (beta1, beta2, eps) = match self.kind {
            OptimizerKind::Sgd => return Ok(Tensor::from_slice(&grad.iter().map(|g| g * (-lr)).collect::<Vec<_>>())),
            OptimizerKind::Adam { beta1, beta2, eps } => (beta1, beta2, eps),
        };
        let m = self.first_moment.get_or_insert_with(|| vec![0.0; grad.len()]);
        let v = self.second_moment.get_or_insert_with(|| vec![0.0; grad.len()]);
        let t = self.updates as i32;
        let (m_scale, v_scale) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let delta: Vec<f64> = grad
            .iter()
            .zip(m.iter_mut().zip(v.iter_mut()))
            .map(|(&g, (mi, vi))| {
                *mi = *mi * beta1 + g * (1.0 - beta1);
                *vi = *vi * beta2 + g * g * (1.0 - beta2);
                *mi / m_scale / ((*vi / v_scale).sqrt() + eps) * (-lr)
            })
            .collect();
        Ok(Tensor::from_slice(&delta))
    }

    pub fn state(&self) -> Result<OptimizerState> {
        Ok(OptimizerState {
            first_moment: self.first_moment.clone(),
            second_moment: self.second_moment.clone(),
            updates: self.updates,
        })
    }

    /// Replaces the state; moments must have `num_units` entries.
    pub fn restore(&mut self, state: OptimizerState, num_units: usize) -> Result<()> {
        for moment in [&state.first_moment, &state.second_moment]
            .into_iter()
            .flatten()
        {
            if moment.len() != num_units {
                return Err(Error::Shape {
                    what: "optimiser moment".into(),
                    expected: vec![num_units as i64],
                    found: vec![moment.len() as i64],
                });
            }
        }
        self.first_moment = state.first_moment;
        self.second_moment = state.second_moment;
        self.updates = state.updates;
        Ok(())
    }
}
