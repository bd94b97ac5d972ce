//! Settings of a pruning run, validated once when the pruner is built.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{LrSchedule, OptimizerKind};

/// Settings of a pruning run. A checkpoint only resumes a run with equal
/// settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunerSettings {
    /// Length of the run; the learning-rate schedule spans it.
    pub steps: u64,
    /// Masks sampled per step (K).
    pub samples_per_step: usize,
    /// Base learning rate of the schedule.
    pub learning_rate: f64,
    pub schedule: LrSchedule,
    pub optimizer: OptimizerKind,
    /// Seed of the generator that draws the masks.
    pub seed: u64,
}

impl PrunerSettings {
    /// Creates the reference configuration: K = 2, plain SGD, cosine
    /// annealing (Gao et al., ACL 2025, public implementation).
    pub fn reference(steps: u64, learning_rate: f64, seed: u64) -> Self {
        Self {
            steps,
            samples_per_step: 2,
            learning_rate,
            schedule: LrSchedule::Cosine,
            optimizer: OptimizerKind::Sgd,
            seed,
        }
    }

    /// Returns an error naming the first invalid setting.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::invalid("steps", self.steps, "run at least one step"));
        }
        if self.samples_per_step == 0 {
            return Err(Error::invalid(
                "samples per step",
                self.samples_per_step,
                "sample at least one mask per step (2 or more for a baseline)",
            ));
        }
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return Err(Error::invalid(
                "learning rate",
                self.learning_rate,
                "a finite value > 0",
            ));
        }
        if let LrSchedule::WarmupCosine { warmup_steps } = self.schedule {
            if warmup_steps >= self.steps {
                return Err(Error::invalid(
                    "warm-up steps",
                    warmup_steps,
                    format!("fewer than the {} steps of the run", self.steps),
                ));
            }
        }
        self.optimizer.validate()
    }
}
