//! Structural pruning of LLaMA-family language models by policy gradient.
//!
//! Each prunable unit (a KV group of attention heads, an MLP channel, or a
//! whole block) gets a Bernoulli keep probability. A pruning loop samples
//! masks, scores them with forward passes only ([`ForwardOracle`]), estimates
//! the gradient of the expected loss with respect to the probabilities
//! ([`GradientEstimator`]), takes an optimiser step and projects the
//! probabilities back onto the sparsity budget ([`MaskPolicy`]).

pub mod data;
pub mod error;
pub mod eval;
pub mod init;
pub mod export;
pub mod models;
pub mod oracle;
pub mod runtime;
pub mod tokenizer;
pub mod units;

pub use error::{Error, Result};
pub use oracle::ForwardOracle;
pub use units::{Budget, BudgetKind, UnitGroup, UnitKind, UnitSpace};
