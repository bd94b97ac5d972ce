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

/// Slack added before flooring a unit budget, so that a product such as
/// 0.7 * 30 = 20.999... still counts as 21 units.
const BUDGET_FLOOR_SLACK: f64 = 1e-9;

/// Builds the per-layer mask of a metric (Wanda-sp's and FLAP's uniform
/// allocation): each mapping set keeps its top units by metric, and each unit
/// kind keeps `floor(keep_ratio * units)` in all, the count the final mask of
/// a per-kind budget keeps.
///
/// A set keeps `floor(keep_ratio * len)` units, and the units still owed to
/// the kind go one each to the sets with the largest remainder of
/// `keep_ratio * len`, then with the highest z-score of their next unit.
/// Ties within a set keep the lower column first.
pub fn per_group_top_mask(space: &UnitSpace, metrics: &[f64], keep_ratio: f64) -> Vec<f32> {
    let mut mask = vec![0.0f32; metrics.len()];
    for class in kind_classes(space) {
        let quotas = class_quotas(&class, metrics, keep_ratio);
        for (columns, keep) in class.iter().zip(quotas) {
            for &i in ranked(columns, metrics).iter().take(keep) {
                mask[i] = 1.0;
            }
        }
    }
    mask
}

/// `columns` sorted by descending metric, lower column first on ties.
fn ranked(columns: &[usize], metrics: &[f64]) -> Vec<usize> {
    let mut order = columns.to_vec();
    order.sort_by(|&a, &b| metrics[b].total_cmp(&metrics[a]).then(a.cmp(&b)));
    order
}

/// Units each set of one kind keeps, summing to the kind's budget.
fn class_quotas(class: &[Vec<usize>], metrics: &[f64], keep_ratio: f64) -> Vec<usize> {
    let total: usize = class.iter().map(Vec::len).sum();
    let target = (keep_ratio * total as f64 + BUDGET_FLOOR_SLACK).floor() as usize;
    let mut quotas: Vec<usize> = class
        .iter()
        .map(|c| ((keep_ratio * c.len() as f64 + BUDGET_FLOOR_SLACK).floor() as usize).min(c.len()))
        .collect();
    let owed = target.saturating_sub(quotas.iter().sum());

    // (remainder, z-score of the next unit, set index) for sets with room left.
    let mut candidates: Vec<(f64, f64, usize)> = class
        .iter()
        .enumerate()
        .filter(|(i, c)| quotas[*i] < c.len())
        .map(|(i, c)| {
            let exact = keep_ratio * c.len() as f64;
            let next = ranked(c, metrics)[quotas[i]];
            (exact - exact.floor(), z_score(c, metrics, metrics[next]), i)
        })
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
    for &(_, _, i) in candidates.iter().take(owed) {
        quotas[i] += 1;
    }
    quotas
}

fn z_score(columns: &[usize], metrics: &[f64], value: f64) -> f64 {
    let n = columns.len() as f64;
    let mean = columns.iter().map(|&i| metrics[i]).sum::<f64>() / n;
    let var = columns.iter().map(|&i| (metrics[i] - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    if std > MIN_STD {
        (value - mean) / std
    } else {
        0.0
    }
}

/// Mapping sets grouped by unit kind: heads, channels, attention blocks, MLP
/// blocks.
fn kind_classes(space: &UnitSpace) -> Vec<Vec<Vec<usize>>> {
    let mut classes = Vec::new();
    for kind in UnitKind::ALL {
        let sets: Vec<Vec<usize>> = mapping_sets(space)
            .into_iter()
            .filter(|set| space.groups().iter().any(|g| g.kind == kind && g.offset == set[0]))
            .collect();
        if !sets.is_empty() {
            classes.push(sets);
        }
    }
    classes
}

/// Returns the sets of mask columns that are ranked together. Each head or
/// channel group is a set, and all block groups of one kind form one set.
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
        assert!(p[0] < p[1]);
        assert!(p[1] < p[2]);
        assert!(p[2] < p[3]);
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
    fn top_mask_meets_kind_budget() {
        // Three heads per layer at keep 0.8: floor(2.4) = 2 each, and
        // floor(0.8 * 9) = 7 in all, so one layer keeps a third head: the
        // one whose third head has the highest z-score (layer 0: -0.71,
        // against -1.41 and -1.22).
        let mut space = UnitSpace::new();
        for layer in 0..3 {
            space.push(UnitKind::Head, layer, 3, 10);
        }
        let metrics = [3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 3.0, 2.0, 1.0];
        let mask = per_group_top_mask(&space, &metrics, 0.8);
        assert_eq!(mask.iter().sum::<f32>(), 7.0);
        assert_eq!(mask, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn top_mask_keeps_best_per_group() {
        let space = two_layer_space();
        let metrics = [4.0, 1.0, 3.0, 2.0, 0.0, 9.0, 9.0, 1.0];
        let mask = per_group_top_mask(&space, &metrics, 0.5);
        assert_eq!(mask, vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    }
}
