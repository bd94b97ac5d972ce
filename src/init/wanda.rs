//! Wanda-sp and magnitude importance metrics for heads, channels and blocks.
//!
//! Wanda-sp (the structured Wanda used by FLAP) scores input column `j` of
//! `o_proj` and `down_proj` as `mean_r |W_rj| * ||X_j||`, where `X_j` is that
//! column's input over every calibration token. A channel unit takes its
//! `down_proj` column score. A head unit (one KV group) sums the `head_dim`
//! columns of each query head and averages over the group's query heads.
//! Layers are scored in order, and each layer's calibration output is taken
//! with its per-layer top-`keep_ratio` mask applied, so later layers see the
//! pruned inputs they will get.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::models::llama::{Llama, LayerMasks, LayerTaps};
use crate::units::{UnitKind, UnitSpace};

use super::sigmap::per_group_top_mask;

/// Squared column norms of the inputs of one layer's projections, summed over
/// calibration tokens, plus the squared norms of each block's output and of
/// the layer input (for block scores).
#[derive(Default)]
struct LayerStatistics {
    o_proj_input: Option<Tensor>,
    down_proj_input: Option<Tensor>,
    attention_output: f64,
    mlp_output: f64,
    layer_input: f64,
}

/// Returns the Wanda-sp metric of every unit of `space`, in mask column order.
///
/// `calibration` is `[sequences, seq_len]` token ids; it is run through the
/// model `batch_size` sequences at a time. Block units score the norm of the
/// block's output relative to the norm of the layer input.
pub fn wanda_sp_metrics(
    model: &Llama,
    space: &UnitSpace,
    calibration: &Tensor,
    keep_ratio: f64,
    batch_size: i64,
) -> Result<Vec<f64>> {
    let _guard = tch::no_grad_guard();
    let mut hidden: Vec<Tensor> = Vec::new();
    for chunk in calibration.f_split(batch_size, 0)? {
        hidden.push(model.embed(&chunk)?);
    }
    let mut metrics = vec![0.0; space.num_units()];
    for layer in 0..model.config.layers.len() {
        let stats = collect_statistics(model, layer, &hidden)?;
        write_layer_metrics(model, space, layer, &stats, &mut metrics)?;

        let masks = layer_top_masks(model, space, layer, &metrics, keep_ratio)?;
        for h in hidden.iter_mut() {
            let rows = h.size()[0];
            *h = model.layer_forward(layer, h, &masks.expand_rows(rows)?, None)?;
        }
    }
    Ok(metrics)
}

/// Returns the magnitude metric of every unit: Wanda-sp without the
/// activation norms, so no calibration data is needed. A block unit scores the
/// mean metric of its own heads or channels.
pub fn magnitude_metrics(model: &Llama, space: &UnitSpace) -> Result<Vec<f64>> {
    let _guard = tch::no_grad_guard();
    let mut metrics = vec![0.0; space.num_units()];
    for layer in 0..model.config.layers.len() {
        let stats = LayerStatistics::default();
        write_layer_metrics(model, space, layer, &stats, &mut metrics)?;
    }
    Ok(metrics)
}

fn collect_statistics(model: &Llama, layer: usize, hidden: &[Tensor]) -> Result<LayerStatistics> {
    let mut stats = LayerStatistics::default();
    let decoder = &model.layers[layer];
    for h in hidden {
        let mut taps = LayerTaps {
            want_o_proj_input: decoder.self_attn.is_some(),
            want_down_proj_input: decoder.mlp.is_some(),
            ..LayerTaps::default()
        };
        let _dense_output = model.layer_forward(layer, h, &LayerMasks::default(), Some(&mut taps))?;
        stats.layer_input += squared_norm(h)?;
        if let (Some(x), Some(attn)) = (&taps.o_proj_input, &decoder.self_attn) {
            accumulate(&mut stats.o_proj_input, column_squared_norms(x)?)?;
            stats.attention_output += squared_norm(&attn.o_proj.forward(x)?)?;
        }
        if let (Some(x), Some(mlp)) = (&taps.down_proj_input, &decoder.mlp) {
            accumulate(&mut stats.down_proj_input, column_squared_norms(x)?)?;
            stats.mlp_output += squared_norm(&mlp.down_proj.forward(x)?)?;
        }
    }
    Ok(stats)
}

fn squared_norm(x: &Tensor) -> Result<f64> {
    Ok(x.f_to_kind(Kind::Double)?.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?)
}

/// `[rows, seq, columns]` activations to `[columns]` sums of squares in f64.
fn column_squared_norms(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_to_kind(Kind::Double)?
        .f_square()?
        .f_sum_dim_intlist([0i64, 1].as_slice(), false, Kind::Double)?)
}

fn accumulate(total: &mut Option<Tensor>, part: Tensor) -> Result<()> {
    *total = Some(match total.take() {
        Some(t) => t.f_add(&part)?,
        None => part,
    });
    Ok(())
}

/// Per-column score `mean_r |W_rj| * ||X_j||` of a `[out, in]` weight; without
/// activation statistics the norm factor is 1 (the magnitude metric).
fn column_scores(weight: &Tensor, input_sq: Option<&Tensor>) -> Result<Vec<f64>> {
    let magnitude = weight.f_to_kind(Kind::Double)?.f_abs()?.f_mean_dim(0, false, Kind::Double)?;
    let scores = match input_sq {
        Some(sq) => magnitude.f_mul(&sq.f_sqrt()?)?,
        None => magnitude,
    };
    Ok(Vec::<f64>::try_from(&scores)?)
}

fn write_layer_metrics(
    model: &Llama,
    space: &UnitSpace,
    layer: usize,
    stats: &LayerStatistics,
    metrics: &mut [f64],
) -> Result<()> {
    let decoder = &model.layers[layer];
    let mut head_mean = 0.0;
    let mut channel_mean = 0.0;
    if let Some(attn) = &decoder.self_attn {
        let columns = column_scores(&attn.o_proj.weight, stats.o_proj_input.as_ref())?;
        let head_dim = attn.head_dim as usize;
        let group_size = (attn.num_heads / attn.num_key_value_heads) as usize;
        let per_group: Vec<f64> = columns
            .chunks(head_dim * group_size)
            .map(|group| group.iter().sum::<f64>() / group_size as f64)
            .collect();
        head_mean = per_group.iter().sum::<f64>() / per_group.len().max(1) as f64;
        write_group(space, UnitKind::Head, layer, &per_group, metrics);
    }
    if let Some(mlp) = &decoder.mlp {
        let columns = column_scores(&mlp.down_proj.weight, stats.down_proj_input.as_ref())?;
        channel_mean = columns.iter().sum::<f64>() / columns.len().max(1) as f64;
        write_group(space, UnitKind::Channel, layer, &columns, metrics);
    }
    let (attention_block, mlp_block) = if stats.layer_input > 0.0 {
        (
            (stats.attention_output / stats.layer_input).sqrt(),
            (stats.mlp_output / stats.layer_input).sqrt(),
        )
    } else {
        (head_mean, channel_mean)
    };
    write_group(space, UnitKind::AttentionBlock, layer, &[attention_block], metrics);
    write_group(space, UnitKind::MlpBlock, layer, &[mlp_block], metrics);
    Ok(())
}

fn write_group(space: &UnitSpace, kind: UnitKind, layer: usize, values: &[f64], metrics: &mut [f64]) {
    if let Some(g) = space.group(kind, layer) {
        for (i, v) in values.iter().take(g.len).enumerate() {
            metrics[g.offset + i] = *v;
        }
    }
}

/// One layer's per-layer top masks for heads and channels, as `[1, units]`
/// rows; block units are not applied while propagating calibration data.
struct LayerTopMasks {
    heads: Option<Tensor>,
    channels: Option<Tensor>,
}

impl LayerTopMasks {
    fn expand_rows(&self, rows: i64) -> Result<LayerMasks> {
        let expand = |m: &Option<Tensor>| -> Result<Option<Tensor>> {
            match m {
                Some(t) => Ok(Some(t.f_expand([rows, t.size()[1]], false)?)),
                None => Ok(None),
            }
        };
        Ok(LayerMasks {
            heads: expand(&self.heads)?,
            channels: expand(&self.channels)?,
            ..LayerMasks::default()
        })
    }
}

fn layer_top_masks(
    model: &Llama,
    space: &UnitSpace,
    layer: usize,
    metrics: &[f64],
    keep_ratio: f64,
) -> Result<LayerTopMasks> {
    let full = per_group_top_mask(space, metrics, keep_ratio);
    let pick = |kind: UnitKind| -> Result<Option<Tensor>> {
        match space.group(kind, layer) {
            Some(g) if g.len > 0 => {
                let row = Tensor::from_slice(&full[g.offset..g.offset + g.len])
                    .f_to_kind(model.kind())?
                    .f_to_device(model.device())?;
                Ok(Some(row.f_unsqueeze(0)?))
            }
            _ => Ok(None),
        }
    };
    Ok(LayerTopMasks {
        heads: pick(UnitKind::Head)?,
        channels: pick(UnitKind::Channel)?,
    })
}
