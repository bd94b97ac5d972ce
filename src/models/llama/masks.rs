//! The prunable units of a model, and the split of a `[K, num_units]` mask
//! tensor into per-layer, per-row masks of a batched forward.

use tch::{Kind, Tensor};

use super::layer::LayerMasks;
use super::model::Llama;
use crate::error::{Error, Result};
use crate::units::{UnitKind, UnitSpace};

/// The unit kinds to prune; any combination, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granularity {
    heads: bool,
    channels: bool,
    blocks: bool,
}

impl Granularity {
    /// Selects heads (KV groups), MLP channels and whole blocks.
    pub fn new(heads: bool, channels: bool, blocks: bool) -> Result<Self> {
        if !(heads || channels || blocks) {
            return Err(Error::invalid(
                "granularity",
                "none",
                "select at least one of heads, channels or blocks",
            ));
        }
        Ok(Self { heads, channels, blocks })
    }

    pub fn heads(&self) -> bool {
        self.heads
    }
    pub fn channels(&self) -> bool {
        self.channels
    }
    pub fn blocks(&self) -> bool {
        self.blocks
    }

    /// Lays out the units of `model`, layer by layer in [`UnitKind::ALL`]
    /// order. Removed blocks contribute no groups.
    pub fn unit_space(&self, model: &Llama) -> UnitSpace {
        let mut space = UnitSpace::new();
        for (l, layer) in model.layers.iter().enumerate() {
            if let Some(attn) = &layer.self_attn {
                if self.heads {
                    let kv = attn.num_key_value_heads;
                    // Rows of q, k, v and columns of o that one KV group owns.
                    let group_params = attn.q_proj.num_parameters()
                        + attn.k_proj.num_parameters()
                        + attn.v_proj.num_parameters()
                        + attn.o_proj.weight.numel() as u64;
                    space.push(UnitKind::Head, l, kv as usize, group_params / kv as u64);
                }
            }
            if let Some(mlp) = &layer.mlp {
                if self.channels {
                    let inter = mlp.intermediate_size;
                    let channel_params = mlp.gate_proj.num_parameters()
                        + mlp.up_proj.num_parameters()
                        + mlp.down_proj.weight.numel() as u64;
                    space.push(UnitKind::Channel, l, inter as usize, channel_params / inter as u64);
                }
            }
            if self.blocks {
                if let Some(attn) = &layer.self_attn {
                    space.push(UnitKind::AttentionBlock, l, 1, attn.num_parameters());
                }
                if let Some(mlp) = &layer.mlp {
                    space.push(UnitKind::MlpBlock, l, 1, mlp.num_parameters());
                }
            }
        }
        space
    }
}

/// Returns K after checking that `masks` is `[K, num_units]` for `space`.
pub(crate) fn check_mask_shape(space: &UnitSpace, masks: &Tensor) -> Result<i64> {
    let expected = space.num_units() as i64;
    match masks.size2() {
        Ok((k, columns)) if columns == expected => Ok(k),
        _ => Err(Error::Shape {
            what: "masks (expected [K, num_units] of the unit space)".to_string(),
            expected: vec![-1, expected],
            found: masks.size(),
        }),
    }
}

/// Splits `masks` `[K, num_units]` into per-layer masks for a batched forward
/// over `K * batch` rows, where row `k * batch + b` uses mask `k`.
pub fn layer_masks(model: &Llama, space: &UnitSpace, masks: &Tensor, batch: i64) -> Result<Vec<LayerMasks>> {
    check_mask_shape(space, masks)?;
    let masks = masks.f_to_device(model.device())?.f_to_kind(model.kind())?;
    let columns = |kind: UnitKind, layer: usize| -> Result<Option<Tensor>> {
        match space.group(kind, layer) {
            Some(g) if g.len > 0 => {
                let m = masks.f_narrow(1, g.offset as i64, g.len as i64)?; // [K, len]
                Ok(Some(m.f_repeat_interleave_self_int(batch, 0, None)?)) // [K * batch, len]
            }
            _ => Ok(None),
        }
    };
    let mut out = Vec::with_capacity(model.layers.len());
    for l in 0..model.layers.len() {
        out.push(LayerMasks {
            heads: columns(UnitKind::Head, l)?,
            channels: columns(UnitKind::Channel, l)?,
            attention: columns(UnitKind::AttentionBlock, l)?.map(|t| t.f_view([-1])).transpose()?,
            mlp: columns(UnitKind::MlpBlock, l)?.map(|t| t.f_view([-1])).transpose()?,
        });
    }
    Ok(out)
}

/// Reads a final mask `[num_units]` into keep flags (`> 0.5` keeps).
pub(crate) fn keep_flags(space: &UnitSpace, mask: &Tensor) -> Result<Vec<bool>> {
    if mask.size() != [space.num_units() as i64] {
        return Err(Error::Shape {
            what: "final mask".to_string(),
            expected: vec![space.num_units() as i64],
            found: mask.size(),
        });
    }
    let values = Vec::<f32>::try_from(&mask.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?)?;
    // Mask entries are 0.0 or 1.0, so 0.5 separates them whatever the rounding.
    Ok(values.into_iter().map(|v| v > 0.5).collect())
}
