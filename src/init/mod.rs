//! Initial keep probabilities and the initial mask a run starts from.

mod sigmap;
mod wanda;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::Result;
use crate::models::llama::Llama;
use crate::units::UnitSpace;

pub use sigmap::{per_group_top_mask, sigmap};
pub use wanda::{magnitude_metrics, wanda_sp_metrics};

/// Initialisation method of the keep probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitMethod {
    /// Wanda-sp metric mapped by [`sigmap`]; needs calibration data.
    WandaSp,
    /// Weight magnitude only (Wanda-sp without activations) mapped by [`sigmap`].
    Magnitude,
    /// Every probability equals the keep ratio.
    Constant,
    /// Uniform random metrics mapped by [`sigmap`].
    Random,
}

/// Starting point of a run: keep probabilities, and the metric-based mask
/// that the final mask has to beat.
#[derive(Debug, Clone)]
pub struct Initialisation {
    /// Keep probability per unit, in mask column order.
    pub probabilities: Vec<f64>,
    /// The metric's own pruning decision: the top `keep_ratio` units of every
    /// layer and unit type (uniform allocation, as Wanda-sp and FLAP do),
    /// rounded so each kind keeps as many units as the final mask.
    pub mask: Vec<f32>,
}

/// Computes the initialisation `method` for `model` over `space`.
///
/// `calibration` (`[sequences, seq_len]` token ids) is used by Wanda-sp only.
pub fn initialise<R: Rng>(
    method: InitMethod,
    model: &Llama,
    space: &UnitSpace,
    calibration: &Tensor,
    keep_ratio: f64,
    batch_size: i64,
    rng: &mut R,
) -> Result<Initialisation> {
    let metrics = match method {
        InitMethod::WandaSp => wanda_sp_metrics(model, space, calibration, keep_ratio, batch_size)?,
        InitMethod::Magnitude => magnitude_metrics(model, space)?,
        InitMethod::Constant => vec![0.0; space.num_units()],
        InitMethod::Random => (0..space.num_units()).map(|_| rng.random::<f64>()).collect(),
    };
    let probabilities = match method {
        InitMethod::Constant => vec![keep_ratio; space.num_units()],
        _ => sigmap(space, &metrics, keep_ratio),
    };
    let mask = per_group_top_mask(space, &metrics, keep_ratio);
    Ok(Initialisation { probabilities, mask })
}
