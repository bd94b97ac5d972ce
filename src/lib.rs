//! Structural pruning of LLaMA-family language models by policy gradient.
//!
//! Each prunable unit (a KV group of attention heads, an MLP channel, or a
//! whole block) gets a Bernoulli keep probability. A pruning loop samples
//! masks, scores them with forward passes only ([`ForwardOracle`]), estimates
//! the gradient of the expected loss with respect to the probabilities
//! ([`GradientEstimator`]), takes an optimiser step and projects the
//! probabilities back onto the sparsity budget ([`MaskPolicy`]).

pub mod budget;
pub mod data;
pub mod error;
pub mod estimator;
pub mod eval;
pub mod export;
pub mod init;
pub mod models;
pub mod optim;
pub mod oracle;
pub mod policy;
pub mod pruner;
pub mod runtime;
pub mod tokenizer;
pub mod units;

pub use budget::project_onto_budget;
pub use error::{Error, Result};
pub use estimator::{
    EmaReinforce, GradientEstimator, LeaveOneOut, PlainReinforce, ScoreDenominator, WithPenalty,
};
pub use optim::{LrSchedule, Optimizer, OptimizerKind};
pub use oracle::ForwardOracle;
pub use policy::{BernoulliPolicy, MaskPolicy};
pub use pruner::{Observer, Pruner, PrunerSettings, StepOutcome};
pub use units::{Budget, BudgetKind, UnitGroup, UnitKind, UnitSpace};
