//! Mapping of importance metrics to keep probabilities and to masks.

use crate::units::{UnitKind, UnitSpace};

/// Standard deviations below this count as zero spread, so a group whose
/// metrics are all equal maps to the keep ratio instead of dividing by ~0.
const MIN_STD: f64 = 1e-12;

/// Maps metrics to keep probabilities per group ("sigmap"): z-score within
/// the group, sigmoid, shift so the group mean equals `keep_ratio`, clamp to
/// [0, 1].
///
/// Block units form one-unit groups, so the block groups of each kind are
/// mapped together across layers.
pub fn sigmap(space: &UnitSpace, metrics: &[f64], keep_ratio: f64) -> Vec<f64> {
    let mut probabilities = vec![keep_ratio; metrics.len()];
    for columns in mapping_sets(space) {
        let values: Vec<f64> = columns.iter().map(|&i| metrics[i]).collect();
        for (&i, p) in columns.iter().zip(sigmap_values(&values, keep_ratio)) {
            probabilities[i] = p;
        }
    }
    probabilities
}

fn sigmap_values(values: &[f64], keep_ratio: f64) -> Vec<f64> {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    let squashed: Vec<f64> = values
        .iter()
        .map(|v| {
            let z = if std > MIN_STD { (v - mean) / std } else { 0.0 };
            1.0 / (1.0 + (-z).exp())
        })
        .collect();
    let shift = keep_ratio - squashed.iter().sum::<f64>() / n;
    squashed
        .into_iter()
        .map(|p| (p + shift).clamp(0.0, 1.0))
        .collect()
}

/// Builds the mask that keeps the top `round(keep_ratio * len)` units of
/// every mapping set by metric (the per-layer mask of Wanda-sp and FLAP's
/// uniform allocation). Ties keep the lower column first.
pub fn per_group_top_mask(space: &UnitSpace, metrics: &[f64], keep_ratio: f64) -> Vec<f32> {
    let mut mask = vec![0.0f32; metrics.len()];
    for columns in mapping_sets(space) {
        let keep = (keep_ratio * columns.len() as f64).round() as usize;
        let mut order = columns.clone();
        order.sort_by(|&a, &b| metrics[b].total_cmp(&metrics[a]).then(a.cmp(&b)));
        for &i in order.iter().take(keep) {
            mask[i] = 1.0;
        }
    }
    mask
}

/// The sets of mask columns that are ranked together: each head or channel
/// group on its own, and all block groups of one kind together.
fn mapping_sets(space: &UnitSpace) -> Vec<Vec<usize>> {
    let mut sets = Vec::new();
    let mut blocks: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for g in space.groups() {
        let columns = (g.offset..g.offset + g.len).collect::<Vec<_>>();
        match g.kind {
            UnitKind::Head | UnitKind::Channel => {
                if !columns.is_empty() {
                    sets.push(columns)
                }
            }
            UnitKind::AttentionBlock => blocks[0].extend(columns),
            UnitKind::MlpBlock => blocks[1].extend(columns),
        }
    }
    sets.extend(blocks.into_iter().filter(|b| !b.is_empty()));
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn two_layer_space() -> UnitSpace {
        let mut space = UnitSpace::new();
        space.push(UnitKind::Channel, 0, 4, 3);
        space.push(UnitKind::Channel, 1, 4, 3);
        space
    }

    #[test]
    fn sigmap_group_means_equal_keep_ratio() {
        let space = two_layer_space();
        let metrics = [1.0, 2.0, 3.0, 4.0, 10.0, 10.5, 11.0, 40.0];
        let p = sigmap(&space, &metrics, 0.6);
        assert_abs_diff_eq!(p[..4].iter().sum::<f64>() / 4.0, 0.6, epsilon = 1e-12);
        assert_abs_diff_eq!(p[4..].iter().sum::<f64>() / 4.0, 0.6, epsilon = 1e-12);
        assert!(p[0] < p[1] && p[1] < p[2] && p[2] < p[3]);
    }

    #[test]
    fn sigmap_constant_metrics_give_keep_ratio() {
        let space = two_layer_space();
        let p = sigmap(&space, &[5.0; 8], 0.3);
        for v in p {
            assert_abs_diff_eq!(v, 0.3, epsilon = 1e-12);
        }
    }

    #[test]
    fn top_mask_keeps_best_per_group() {
        let space = two_layer_space();
        let metrics = [4.0, 1.0, 3.0, 2.0, 0.0, 9.0, 9.0, 1.0];
        let mask = per_group_top_mask(&space, &metrics, 0.5);
        assert_eq!(mask, vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    }
}
