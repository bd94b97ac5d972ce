//! The pruning loop: sample masks, query the oracle, estimate the gradient,
//! step the optimiser, project onto the budgets.

mod checkpoint;
mod settings;

pub use settings::PrunerSettings;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result};
use crate::estimator::GradientEstimator;
use crate::optim::Optimizer;
use crate::oracle::ForwardOracle;
use crate::policy::MaskPolicy;

/// Running totals over the whole run, checkpointed with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Steps taken so far, skipped ones included.
    pub steps: u64,
    /// NaN or infinite losses excluded from their steps.
    pub excluded_losses: u64,
    /// Steps in which no loss was finite, so nothing was updated.
    pub skipped_steps: u64,
}

/// Result of one call of [`Pruner::step`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Index of this step, from 0.
    pub step: u64,
    pub learning_rate: f64,
    /// One loss per sampled mask, non-finite ones included.
    pub losses: Vec<f64>,
    /// Losses of this step that were NaN or infinite and left out.
    pub excluded: usize,
    /// True when every loss was non-finite and the update was skipped.
    pub skipped: bool,
    /// Mean of the finite losses, `None` when the step was skipped.
    pub mean_loss: Option<f64>,
    /// Totals including this step.
    pub totals: Counters,
}

/// Hooks for logging and progress display; every method defaults to no-op.
pub trait Observer {
    /// Called after every step that updated the policy.
    fn on_step(&mut self, _outcome: &StepOutcome) {}

    /// Called after a step in which no loss was finite.
    fn on_skip(&mut self, _outcome: &StepOutcome) {}
}

/// The policy-gradient pruning loop over a policy `P`, an oracle `O` and an
/// estimator `E`.
pub struct Pruner<P, O, E> {
    policy: P,
    oracle: O,
    estimator: E,
    optimizer: Optimizer,
    settings: PrunerSettings,
    rng: ChaCha8Rng,
    counters: Counters,
    observers: Vec<Box<dyn Observer>>,
}

impl<P: MaskPolicy, O: ForwardOracle, E: GradientEstimator> Pruner<P, O, E> {
    /// Validates `settings` and checks that the policy and the oracle address
    /// the same number of units. The generator is seeded from `settings.seed`.
    pub fn new(policy: P, oracle: O, estimator: E, settings: PrunerSettings) -> Result<Self> {
        settings.validate()?;
        let oracle_units = oracle.unit_space().num_units();
        if policy.num_units() != oracle_units {
            return Err(Error::Shape {
                what: "policy units versus oracle units".into(),
                expected: vec![oracle_units as i64],
                found: vec![policy.num_units() as i64],
            });
        }
        Ok(Self {
            optimizer: Optimizer::new(settings.optimizer)?,
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            policy,
            oracle,
            estimator,
            settings,
            counters: Counters::default(),
            observers: Vec::new(),
        })
    }

    pub fn add_observer(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    pub fn policy(&self) -> &P {
        &self.policy
    }

    pub fn oracle(&self) -> &O {
        &self.oracle
    }

    pub fn estimator(&self) -> &E {
        &self.estimator
    }

    pub fn settings(&self) -> &PrunerSettings {
        &self.settings
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Returns the policy, the oracle and the estimator, for example to
    /// reuse the oracle's model after the run.
    pub fn into_parts(self) -> (P, O, E) {
        (self.policy, self.oracle, self.estimator)
    }

    /// Returns the policy, for example to read its final mask.
    pub fn into_policy(self) -> P {
        self.policy
    }

    /// Runs one optimisation step on `batch`.
    ///
    /// NaN and infinite losses are left out of the estimate and counted. If
    /// none is finite the policy is not updated, the step still counts, and
    /// observers get `on_skip`; this is not an error.
    pub fn step(&mut self, batch: &O::Batch) -> Result<StepOutcome> {
        let _no_grad = tch::no_grad_guard();
        let step = self.counters.steps;
        let k = self.settings.samples_per_step;
        let lr =
            self.settings
                .schedule
                .rate(self.settings.learning_rate, step, self.settings.steps);

        let masks = self.policy.sample(k, &mut self.rng)?; // [K, num_units]
        let losses = self.oracle.losses(batch, &masks)?;
        if losses.len() != k {
            return Err(Error::Shape {
                what: "oracle losses (one per mask)".into(),
                expected: vec![k as i64],
                found: vec![losses.len() as i64],
            });
        }
        let finite: Vec<i64> = (0..k as i64)
            .filter(|&i| losses[i as usize].is_finite())
            .collect();
        let excluded = k - finite.len();
        self.counters.steps += 1;
        self.counters.excluded_losses += excluded as u64;

        let mut outcome = StepOutcome {
            step,
            learning_rate: lr,
            losses,
            excluded,
            skipped: finite.is_empty(),
            mean_loss: None,
            totals: self.counters,
        };
        if outcome.skipped {
            self.counters.skipped_steps += 1;
            outcome.totals = self.counters;
            tracing::warn!(
                step,
                samples = k,
                "every loss was NaN or infinite; step skipped"
            );
            self.observers.iter_mut().for_each(|o| o.on_skip(&outcome));
            return Ok(outcome);
        }
        if excluded > 0 {
            tracing::warn!(
                step,
                excluded,
                samples = k,
                "left out NaN or infinite losses"
            );
        }

        let kept_losses: Vec<f64> = finite.iter().map(|&i| outcome.losses[i as usize]).collect();
        let kept_masks = if excluded > 0 {
            masks.index_select(0, &Tensor::from_slice(&finite))
        } else {
            masks
        };
        let gradient =
            self.estimator
                .estimate(self.policy.probabilities(), &kept_masks, &kept_losses)?;
        let delta = self.optimizer.update(&gradient, lr)?;
        self.policy.apply_update(&delta)?;
        self.policy.project()?;

        outcome.mean_loss = Some(kept_losses.iter().sum::<f64>() / kept_losses.len() as f64);
        tracing::debug!(step, lr, mean_loss = outcome.mean_loss, "step done");
        self.observers.iter_mut().for_each(|o| o.on_step(&outcome));
        Ok(outcome)
    }

    /// Steps through `batches` until `settings.steps` steps are done in total
    /// or the batches run out, and returns the totals.
    pub fn run<'a, I>(&mut self, batches: I) -> Result<Counters>
    where
        I: IntoIterator<Item = &'a O::Batch>,
        O::Batch: 'a,
    {
        for batch in batches {
            if self.counters.steps >= self.settings.steps {
                break;
            }
            self.step(batch)?;
        }
        tracing::info!(
            steps = self.counters.steps,
            excluded_losses = self.counters.excluded_losses,
            skipped_steps = self.counters.skipped_steps,
            "pruning run finished"
        );
        Ok(self.counters)
    }
}
