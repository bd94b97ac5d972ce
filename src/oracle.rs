//! The forward-only loss oracle that a pruning loop queries.

use tch::Tensor;

use crate::error::Result;
use crate::units::UnitSpace;

/// Something that scores masks by running a model forward, never backward.
///
/// Implementations must not record autograd history: the keep probabilities
/// live outside the model's graph, and the model is only ever evaluated.
pub trait ForwardOracle {
    /// One calibration batch, for an LLM a `[batch, seq]` tensor of token ids.
    type Batch;

    /// Returns the units that the oracle's masks address.
    fn unit_space(&self) -> &UnitSpace;

    /// Returns one loss per mask row: the mean next-token cross-entropy in
    /// nats of the model masked by `masks[k]` on `batch`.
    ///
    /// `masks` is an `f32` tensor `[K, num_units]` of 0.0 (remove) and 1.0
    /// (keep). A loss may be NaN or infinite; the caller decides what to do.
    fn losses(&self, batch: &Self::Batch, masks: &Tensor) -> Result<Vec<f64>>;
}
