//! The mask policy: Bernoulli keep probabilities, sampling, projection onto
//! the budgets, and the final mask.

mod final_mask;
mod sample;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::budget::{project_onto_budget, validate_budget};
use crate::error::{Error, Result};
use crate::units::{Budget, UnitSpace};

/// A distribution over masks whose parameters a pruning loop optimises.
///
/// Tensors cross this interface on the CPU and never require gradients.
/// Probabilities, scores and updates are `f64` `[num_units]` or `[K, num_units]`,
/// masks are `f32` with 1.0 = keep.
pub trait MaskPolicy {
    /// Serialisable snapshot of everything the policy holds.
    type State: Serialize + DeserializeOwned;

    fn num_units(&self) -> usize;

    /// Keep probabilities, `f64` `[num_units]`.
    fn probabilities(&self) -> &Tensor;

    /// Samples `k` masks, `f32` `[k, num_units]`, from `rng`.
    fn sample<R: Rng + ?Sized>(&self, k: usize, rng: &mut R) -> Result<Tensor>;

    /// Returns `d log p(m) / ds` for each mask row, `f64` `[K, num_units]`.
    fn score(&self, masks: &Tensor) -> Result<Tensor>;

    /// Adds `delta` (`[num_units]`) to the parameters. The result may leave
    /// the feasible set until [`MaskPolicy::project`] is called.
    fn apply_update(&mut self, delta: &Tensor) -> Result<()>;

    /// Projects the parameters onto [0, 1] and every budget.
    fn project(&mut self) -> Result<()>;

    /// Returns the deterministic mask to export, `f32` `[num_units]`.
    fn final_mask(&self) -> Result<Tensor>;

    fn state(&self) -> Result<Self::State>;

    /// Replaces the policy's state with `state`, checking that it fits.
    fn restore(&mut self, state: Self::State) -> Result<()>;
}

/// Independent Bernoulli keep probabilities constrained by disjoint budgets.
#[derive(Debug)]
pub struct BernoulliPolicy {
    /// `f64` `[num_units]`, in [0, 1] after every projection.
    probs: Tensor,
    budgets: Vec<Budget>,
    /// Units outside every budget, which projection only clamps to [0, 1].
    unbudgeted: Vec<usize>,
}

/// Serialised form of a [`BernoulliPolicy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BernoulliPolicyState {
    pub probabilities: Vec<f64>,
    pub budgets: Vec<Budget>,
}

impl BernoulliPolicy {
    /// Creates a policy over `space` starting from `initial` probabilities.
    ///
    /// Returns an error if `initial` has the wrong length or a value outside
    /// [0, 1] (NaN included), or if a budget is invalid or two budgets share
    /// a unit. The initial probabilities are not projected; call
    /// [`MaskPolicy::project`] to start inside the budgets.
    pub fn new(space: &UnitSpace, budgets: Vec<Budget>, initial: &[f64]) -> Result<Self> {
        let num_units = space.num_units();
        if initial.len() != num_units {
            return Err(Error::Shape {
                what: "initial keep probabilities".into(),
                expected: vec![num_units as i64],
                found: vec![initial.len() as i64],
            });
        }
        if let Some(bad) = initial.iter().find(|p| !(**p >= 0.0 && **p <= 1.0)) {
            return Err(Error::invalid(
                "initial keep probability",
                bad,
                "every keep probability must be in [0, 1]",
            ));
        }
        let unbudgeted = check_budgets(&budgets, num_units)?;
        Ok(Self {
            probs: Tensor::from_slice(initial),
            budgets,
            unbudgeted,
        })
    }

    /// Creates a policy with every probability equal to `value`.
    pub fn constant(space: &UnitSpace, budgets: Vec<Budget>, value: f64) -> Result<Self> {
        Self::new(space, budgets, &vec![value; space.num_units()])
    }

    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    fn probs_vec(&self) -> Result<Vec<f64>> {
        Ok(Vec::<f64>::try_from(&self.probs)?)
    }
}

/// Rejects invalid budgets and budgets that overlap: projecting onto
/// overlapping budgets one at a time would not reach their intersection.
/// Returns the units that no budget covers.
fn check_budgets(budgets: &[Budget], num_units: usize) -> Result<Vec<usize>> {
    let mut owner: Vec<Option<usize>> = vec![None; num_units];
    for (b, budget) in budgets.iter().enumerate() {
        validate_budget(budget, num_units)?;
        for &u in &budget.units {
            if let Some(first) = owner[u as usize].replace(b) {
                return Err(Error::invalid(
                    "budget unit",
                    u,
                    format!(
                        "budgets '{}' and '{}' both contain this unit; budgets must be disjoint",
                        budgets[first].name, budget.name
                    ),
                ));
            }
        }
    }
    Ok((0..num_units).filter(|&u| owner[u].is_none()).collect())
}

impl MaskPolicy for BernoulliPolicy {
    type State = BernoulliPolicyState;

    fn num_units(&self) -> usize {
        self.probs.size()[0] as usize
    }

    fn probabilities(&self) -> &Tensor {
        &self.probs
    }

    fn sample<R: Rng + ?Sized>(&self, k: usize, rng: &mut R) -> Result<Tensor> {
        if k == 0 {
            return Err(Error::invalid(
                "sample count",
                k,
                "sample at least one mask",
            ));
        }
        let probs = self.probs_vec()?;
        let rows = sample::sample_rows(&probs, k, rng);
        Ok(Tensor::from_slice(&rows).view([k as i64, probs.len() as i64]))
    }

    /// Exact Bernoulli score `(m - s) / (s (1 - s))`. Where `s` is exactly 0
    /// or 1 every sample equals `s`, the score is 0/0, and 0 is returned.
    fn score(&self, masks: &Tensor) -> Result<Tensor> {
        check_masks(masks, self.num_units())?;
        let masks = masks.to_kind(Kind::Double);
        let variance = &self.probs * (1.0 - &self.probs);
        let score = (masks - &self.probs) / &variance;
        let defined = variance.gt(0.0);
        Ok(score.where_self(&defined, &score.zeros_like()))
    }

    fn apply_update(&mut self, delta: &Tensor) -> Result<()> {
        let n = self.num_units() as i64;
        if delta.size() != [n] {
            return Err(Error::Shape {
                what: "policy update".into(),
                expected: vec![n],
                found: delta.size(),
            });
        }
        // Sums in a loop rather than with tensors, for the reason given at `Optimizer::update`.
        let delta = Vec::<f64>::try_from(&delta.to_kind(Kind::Double))?;
        let probs: Vec<f64> = self.probs_vec()?.iter().zip(&delta).map(|(p, d)| p + d).collect();
        self.probs = Tensor::from_slice(&probs);
        Ok(())
    }

    /// Returns an error, leaving the policy unchanged, if an update made a
    /// parameter NaN.
    fn project(&mut self) -> Result<()> {
        let mut probs = self.probs_vec()?;
        if let Some(unit) = probs.iter().position(|p| p.is_nan()) {
            return Err(Error::invalid(
                "keep probability",
                format!("NaN at unit {unit}"),
                "a finite value; lower the learning rate or check the losses",
            ));
        }
        for budget in &self.budgets {
            project_onto_budget(&mut probs, budget)?;
        }
        for &u in &self.unbudgeted {
            probs[u] = probs[u].clamp(0.0, 1.0);
        }
        self.probs = Tensor::from_slice(&probs);
        Ok(())
    }

    /// Keeps, per budget, the units of highest probability that fit its
    /// capacity (ties: lower index first). Units outside every budget are kept.
    fn final_mask(&self) -> Result<Tensor> {
        let probs = self.probs_vec()?;
        let mut mask = vec![1.0_f32; probs.len()];
        for budget in &self.budgets {
            final_mask::drop_outside_capacity(&probs, budget, &mut mask);
        }
        Ok(Tensor::from_slice(&mask))
    }

    fn state(&self) -> Result<BernoulliPolicyState> {
        Ok(BernoulliPolicyState {
            probabilities: self.probs_vec()?,
            budgets: self.budgets.clone(),
        })
    }

    fn restore(&mut self, state: BernoulliPolicyState) -> Result<()> {
        if state.budgets != self.budgets {
            return Err(Error::invalid(
                "policy state",
                "different budgets",
                "restore a state saved with the same unit space, budget kind and keep ratio",
            ));
        }
        let n = self.num_units();
        if state.probabilities.len() != n {
            return Err(Error::Shape {
                what: "restored keep probabilities".into(),
                expected: vec![n as i64],
                found: vec![state.probabilities.len() as i64],
            });
        }
        self.probs = Tensor::from_slice(&state.probabilities);
        Ok(())
    }
}

/// Checks that `masks` is `[K, num_units]`.
pub(crate) fn check_masks(masks: &Tensor, num_units: usize) -> Result<()> {
    let size = masks.size();
    if size.len() != 2 || size[1] != num_units as i64 {
        return Err(Error::Shape {
            what: "masks".into(),
            expected: vec![size.first().copied().unwrap_or(1), num_units as i64],
            found: size,
        });
    }
    Ok(())
}
