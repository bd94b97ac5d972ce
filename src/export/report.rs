//! The JSON report of one pruning run.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use tch::{Kind, Tensor};

use super::atomic::write_json_atomic;
use crate::error::{Error, Result};
use crate::units::{UnitKind, UnitSpace};

/// A mask entry above this keeps its unit. Masks hold exactly 0.0 or 1.0, so
/// any threshold strictly between them reads them the same.
const KEEP_THRESHOLD: f32 = 0.5;

/// Summary of one pruning run: its settings, its cost and its measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Fraction of the budgeted units removed, `1 - keep ratio`.
    pub sparsity: f64,
    pub ppl: PerplexitySummary,
    /// Predicted tokens each perplexity is measured over.
    pub eval_tokens: usize,
    /// Window length of the perplexity evaluation, in tokens.
    pub eval_seq_len: usize,
    pub params: ParamCounts,
    /// Units kept in each layer by the final mask, in layer order.
    pub kept: Vec<LayerKept>,
    /// Forward passes of the model during the pruning loop.
    pub forward_passes: u64,
    /// Wall time of the whole run, in seconds.
    pub wall_seconds: f64,
    /// Median wall time of one policy step, in seconds (see [`median`]).
    #[serde(deserialize_with = "f64_or_nan")]
    pub step_seconds: f64,
    /// Sampled losses that were NaN or infinite and left out of their step.
    pub non_finite_losses: u64,
    /// Steps skipped because none of their losses was finite.
    pub skipped_steps: u64,
    /// Every setting of the run, so that it can be repeated.
    pub settings: serde_json::Value,
}

/// Perplexity of the dense model, of the initial mask and of the final mask.
/// A non-finite perplexity is written as JSON `null` and read back as NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerplexitySummary {
    #[serde(deserialize_with = "f64_or_nan")]
    pub dense: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub init: f64,
    /// Perplexity of the final-mask rule (top units per budget) applied to
    /// the initial keep probabilities, before any policy-gradient step. It
    /// separates what the global allocation of the initial probabilities
    /// gives from what the optimisation adds. `None` when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_policy: Option<f64>,
    #[serde(rename = "final", deserialize_with = "f64_or_nan")]
    pub final_: f64,
}

/// Parameter counts of the model before and after pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    pub before: u64,
    pub after: u64,
}

/// Units one layer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerKept {
    pub layer: usize,
    /// KV groups of attention heads kept.
    pub heads: usize,
    pub heads_total: usize,
    /// MLP intermediate channels kept.
    pub channels: usize,
    pub channels_total: usize,
    /// Whether the attention block survives: its block unit (if pruned at
    /// that granularity) is kept and it keeps at least one head group.
    pub attention_block: bool,
    /// Whether the MLP block survives, by the same rule over channels.
    pub mlp_block: bool,
}

impl Report {
    /// Writes the report as pretty JSON, atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_json_atomic(path, self)
    }

    /// Reads a report written by [`Report::write`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            context: path.display().to_string(),
            source,
        })
    }
}

/// Counts the units `mask` keeps in every layer of `space`.
///
/// `mask` is a final mask of shape `[num_units]` (1.0 = keep). Layers run
/// from 0 to the highest layer of any group; a layer without a group of some
/// kind reports zero units of that kind.
pub fn kept_per_layer(space: &UnitSpace, mask: &Tensor) -> Result<Vec<LayerKept>> {
    let size = mask.size();
    if size != [space.num_units() as i64] {
        return Err(Error::Shape {
            what: "final mask".into(),
            expected: vec![space.num_units() as i64],
            found: size,
        });
    }
    let values = Vec::<f32>::try_from(mask.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?)?;
    let num_layers = space
        .groups()
        .iter()
        .map(|g| g.layer + 1)
        .max()
        .unwrap_or(0);
    let count = |kind: UnitKind, layer: usize| -> (usize, usize) {
        space.group(kind, layer).map_or((0, 0), |g| {
            let kept = values[g.offset..g.offset + g.len]
                .iter()
                .filter(|&&m| m > KEEP_THRESHOLD)
                .count();
            (kept, g.len)
        })
    };
    let layers = (0..num_layers)
        .map(|layer| {
            let (heads, heads_total) = count(UnitKind::Head, layer);
            let (channels, channels_total) = count(UnitKind::Channel, layer);
            let (attention_kept, attention_total) = count(UnitKind::AttentionBlock, layer);
            let (mlp_kept, mlp_total) = count(UnitKind::MlpBlock, layer);
            LayerKept {
                layer,
                heads,
                heads_total,
                channels,
                channels_total,
                attention_block: attention_kept == attention_total
                    && (heads_total == 0 || heads > 0),
                mlp_block: mlp_kept == mlp_total && (channels_total == 0 || channels > 0),
            }
        })
        .collect();
    Ok(layers)
}

/// Median of `values`, the mean of the two middle values for an even count,
/// NaN for none. NaN inputs are ordered by [`f64::total_cmp`].
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// Reads a number, or `null` (how `serde_json` writes NaN and infinities) as
/// NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}
