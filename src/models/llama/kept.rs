//! The units that each binary mask keeps, read from a `[K, num_units]` mask
//! tensor, for the sliced forward that computes only those units.

use tch::{Device, Kind, Tensor};

use super::masks::check_mask_shape;
use super::model::Llama;
use crate::error::Result;
use crate::units::{UnitKind, UnitSpace};

/// The forward path that [`LlamaOracle`](super::LlamaOracle) uses to score K masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardPath {
    /// Sliced for binary masks, block by block where the kept fraction is
    /// below [`SLICE_BELOW_KEEP_FRACTION`]; masked otherwise.
    #[default]
    Auto,
    /// One forward over `K * batch` rows with the masks multiplied into the
    /// inputs of `o_proj` and `down_proj`, as the reference does.
    Masked,
    /// One forward per mask that slices every masked block to its kept
    /// units; masks must be binary.
    Sliced,
}

/// Kept fraction of a block's heads or channels below which the sliced
/// forward copies the kept weight rows and runs smaller matmuls, and at or
/// above which it runs the full matmul and multiplies by the mask.
///
/// The copy costs one read and one write per kept weight, against `2 *
/// batch * seq` flops per kept weight for the matmuls. Slicing therefore
/// saves nearly the removed fraction of the block's time, and loses only
/// when almost every unit is kept and the copy is not repaid.
/// NOTE: 0.9 comes from this cost estimate. Timings at keep 0.9 on the
/// shared 2-core test machine varied several-fold between identical runs
/// and could not place the break-even point.
pub const SLICE_BELOW_KEEP_FRACTION: f64 = 0.9;

/// The units of one layer that one mask keeps. Index lists are ascending; `None`
/// means the mask does not address that kind in this layer, so all are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptUnits {
    /// Kept KV groups.
    pub heads: Option<Vec<i64>>,
    /// Kept MLP channels.
    pub channels: Option<Vec<i64>>,
    /// Whether the attention block is kept.
    pub attention: bool,
    /// Whether the MLP block is kept.
    pub mlp: bool,
}

impl KeptUnits {
    /// Keeps every unit of the layer.
    pub fn all() -> Self {
        Self {
            heads: None,
            channels: None,
            attention: true,
            mlp: true,
        }
    }
}

/// Reads `masks` `[K, num_units]` into kept units indexed `[k][layer]`.
///
/// Returns `Ok(None)` when some entry is neither 0.0 nor 1.0: such masks
/// scale units rather than remove them, and only the masked forward
/// computes that.
pub fn kept_units(model: &Llama, space: &UnitSpace, masks: &Tensor) -> Result<Option<Vec<Vec<KeptUnits>>>> {
    let k = check_mask_shape(space, masks)?;
    let flat = masks.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_reshape([-1])?;
    let values = Vec::<f32>::try_from(&flat)?;
    if values.iter().any(|&v| v != 0.0 && v != 1.0) {
        return Ok(None);
    }

    let width = space.num_units();
    let indices = |row: &[f32], kind: UnitKind, layer: usize| -> Option<Vec<i64>> {
        let g = space.group(kind, layer)?;
        let cells = &row[g.offset..g.offset + g.len];
        Some((0..g.len as i64).filter(|&i| cells[i as usize] == 1.0).collect())
    };
    let flag = |row: &[f32], kind: UnitKind, layer: usize| -> bool {
        space.group(kind, layer).is_none_or(|g| g.len == 0 || row[g.offset] == 1.0)
    };
    let per_mask = (0..k as usize)
        .map(|i| {
            let row = &values[i * width..(i + 1) * width];
            (0..model.layers.len())
                .map(|l| KeptUnits {
                    heads: indices(row, UnitKind::Head, l),
                    channels: indices(row, UnitKind::Channel, l),
                    attention: flag(row, UnitKind::AttentionBlock, l),
                    mlp: flag(row, UnitKind::MlpBlock, l),
                })
                .collect()
        })
        .collect();
    Ok(Some(per_mask))
}
