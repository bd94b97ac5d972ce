//! The deterministic mask kept after optimisation.

use crate::units::Budget;

/// Relative slack on a capacity when deciding whether a unit still fits.
/// Capacities are products such as `keep_ratio * total` and may round to
/// just below a whole number (0.7 * 10 = 6.999...). The slack is far above
/// that rounding and far below any unit's weight.
const CAPACITY_RELATIVE_SLACK: f64 = 1e-9;

/// Sets `mask[u] = 0.0` for the units of `budget` that the final mask drops.
///
/// Units are visited by descending probability, ties broken by lower index
/// first, and kept while the running weighted sum stays within the
/// capacity. The walk stops at the first unit that does not fit, so a unit
/// is never kept over one with a higher probability. With unit weights this
/// keeps exactly `floor(capacity)` units.
pub(crate) fn drop_outside_capacity(probs: &[f64], budget: &Budget, mask: &mut [f32]) {
    let mut order: Vec<usize> = (0..budget.units.len()).collect();
    let prob_of = |j: usize| probs[budget.units[j] as usize];
    order.sort_by(|&a, &b| {
        prob_of(b)
            .total_cmp(&prob_of(a))
            .then(budget.units[a].cmp(&budget.units[b]))
    });
    let limit = budget.capacity + CAPACITY_RELATIVE_SLACK * budget.capacity.max(1.0);
    let mut used = 0.0;
    let mut full = false;
    for j in order {
        let weight = budget.weights.as_ref().map_or(1.0, |w| w[j]);
        if !full && used + weight <= limit {
            used += weight;
        } else {
            full = true;
            mask[budget.units[j] as usize] = 0.0;
        }
    }
}
