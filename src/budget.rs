//! Euclidean projection of keep probabilities onto a budget.
//!
//! The feasible set of one budget is `{s in [0,1]^n : sum_i w_i s_i <= C}`,
//! an upper bound: probabilities already within the budget are only clamped
//! to [0, 1], never pushed up to fill it. By the KKT conditions the projection
//! of `y` is `s_i = clamp(y_i - v * w_i, 0, 1)` with the smallest `v >= 0`
//! that meets the bound. The weighted sum `f(v)` is continuous, piecewise
//! linear and non-increasing in `v`, with two breakpoints per unit:
//! `(y_i - 1) / w_i`, where the unit leaves 1, and `y_i / w_i`, where it
//! reaches 0. [`project_onto_budget`] finds `v` exactly: bisection passes
//! narrow a bracket until few breakpoints remain inside it, and those are
//! sorted and swept. Only rounding separates the result from the exact
//! projection.

use crate::error::{Error, Result};
use crate::units::Budget;

/// Bisection passes stop once the bracket contains at most this many
/// breakpoints. Sorting a few thousand values costs less than one more pass
/// over a budget of hundreds of thousands of units.
const SORT_BREAKPOINTS_AT_MOST: usize = 4096;

/// Cap on bisection passes. After 64 halvings an `f64` bracket cannot shrink
/// further, so breakpoints still inside are ties; the sweep handles them.
const MAX_BISECTION_PASSES: usize = 64;

/// Checks that some probabilities in [0, 1] meet the budget and that its
/// weights and unit indices are valid. The error names the bad value.
pub fn validate_budget(budget: &Budget, num_units: usize) -> Result<()> {
    if !budget.capacity.is_finite() || budget.capacity < 0.0 {
        return Err(Error::InfeasibleBudget {
            budget: budget.name.clone(),
            target: budget.capacity,
            max: budget_total(budget),
        });
    }
    if let Some(weights) = &budget.weights {
        if weights.len() != budget.units.len() {
            return Err(Error::Shape {
                what: format!("weights of budget '{}'", budget.name),
                expected: vec![budget.units.len() as i64],
                found: vec![weights.len() as i64],
            });
        }
        if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::invalid(
                "budget weight",
                bad,
                format!(
                    "every weight of budget '{}' must be finite and >= 0",
                    budget.name
                ),
            ));
        }
    }
    if let Some(bad) = budget
        .units
        .iter()
        .find(|&&u| u < 0 || u as usize >= num_units)
    {
        return Err(Error::invalid(
            "budget unit index",
            bad,
            format!(
                "budget '{}' must index units in [0, {num_units})",
                budget.name
            ),
        ));
    }
    Ok(())
}

/// Total weight of a budget's units, the capacity at keep ratio 1.
fn budget_total(budget: &Budget) -> f64 {
    match &budget.weights {
        Some(w) => w.iter().sum(),
        None => budget.units.len() as f64,
    }
}

/// Projects `probs` in place onto `budget`, touching only the budget's units.
///
/// Entries outside [0, 1] are allowed on input (an optimiser step may leave
/// them there) and are clamped. Returns the multiplier `v` (0 when the budget
/// was already met).
pub fn project_onto_budget(probs: &mut [f64], budget: &Budget) -> Result<f64> {
    validate_budget(budget, probs.len())?;
    let units: Vec<usize> = budget.units.iter().map(|&u| u as usize).collect();
    let y: Vec<f64> = units.iter().map(|&u| probs[u]).collect();
    let ones;
    let w: &[f64] = match &budget.weights {
        Some(w) => w,
        None => {
            ones = vec![1.0; y.len()];
            &ones
        }
    };
    if let Some(bad) = y.iter().find(|v| v.is_nan()) {
        return Err(Error::invalid(
            "keep probability",
            bad,
            "a finite value; the gradient or learning rate produced NaN",
        ));
    }
    let v = solve_multiplier(&y, w, budget.capacity);
    for ((&u, &yi), &wi) in units.iter().zip(&y).zip(w) {
        probs[u] = (yi - v * wi).clamp(0.0, 1.0);
    }
    Ok(v)
}

/// Weighted sum `f(v) = sum_i w_i clamp(y_i - v w_i, 0, 1)`.
fn weighted_sum(y: &[f64], w: &[f64], v: f64) -> f64 {
    y.iter()
        .zip(w)
        .map(|(&yi, &wi)| wi * (yi - v * wi).clamp(0.0, 1.0))
        .sum()
}

/// Breakpoints of every unit: where it leaves 1 and where it reaches 0.
/// Units of weight 0 never enter the sum and get `-inf` for both, which no
/// bracket above 0 contains.
struct Breakpoints {
    leaves_one: Vec<f64>,
    hits_zero: Vec<f64>,
}

impl Breakpoints {
    fn new(y: &[f64], w: &[f64]) -> Self {
        let point = |yi: f64, wi: f64| if wi > 0.0 { yi / wi } else { f64::NEG_INFINITY };
        Self {
            leaves_one: y
                .iter()
                .zip(w)
                .map(|(&yi, &wi)| point(yi - 1.0, wi))
                .collect(),
            hits_zero: y.iter().zip(w).map(|(&yi, &wi)| point(yi, wi)).collect(),
        }
    }
}

/// Returns the smallest `v >= 0` with `f(v) <= capacity`.
fn solve_multiplier(y: &[f64], w: &[f64], capacity: f64) -> f64 {
    if weighted_sum(y, w, 0.0) <= capacity {
        return 0.0;
    }
    let points = Breakpoints::new(y, w);
    // Invariant: f(lo) > capacity >= f(hi). At hi every weighted unit is 0.
    let mut lo = 0.0_f64;
    let mut hi = points.hits_zero.iter().copied().fold(0.0_f64, f64::max);
    let mut inside = 2 * y.len();
    for _ in 0..MAX_BISECTION_PASSES {
        let mid = 0.5 * (lo + hi);
        if inside <= SORT_BREAKPOINTS_AT_MOST || !(mid > lo && mid < hi) {
            break;
        }
        // One fused pass: f(mid) and the breakpoints on either side of mid.
        let mut sum = 0.0;
        let (mut left, mut right) = (0_usize, 0_usize);
        for i in 0..y.len() {
            sum += w[i] * (y[i] - mid * w[i]).clamp(0.0, 1.0);
            for b in [points.leaves_one[i], points.hits_zero[i]] {
                left += (b > lo && b < mid) as usize;
                right += (b > mid && b < hi) as usize;
            }
        }
        if sum > capacity {
            lo = mid;
            inside = right;
        } else {
            hi = mid;
            inside = left;
        }
    }
    sweep_bracket(y, w, &points, capacity, lo, hi)
}

/// Solves `f(v) = capacity` exactly inside `[lo, hi]` by sorting the
/// breakpoints there and walking the linear pieces between them.
fn sweep_bracket(
    y: &[f64],
    w: &[f64],
    points: &Breakpoints,
    capacity: f64,
    lo: f64,
    hi: f64,
) -> f64 {
    // Just above lo, f(v) = a - v * b: a sums the weights of units still at 1
    // and w_i y_i of the free ones, b sums w_i^2 of the free ones.
    let mut a = 0.0;
    let mut b = 0.0;
    // (breakpoint, unit, true when the unit leaves 1, false when it hits 0)
    let mut events: Vec<(f64, usize, bool)> = Vec::new();
    for i in 0..y.len() {
        let (leaves_one, hits_zero) = (points.leaves_one[i], points.hits_zero[i]);
        if leaves_one > lo {
            a += w[i];
        } else if hits_zero > lo {
            a += w[i] * y[i];
            b += w[i] * w[i];
        }
        if leaves_one > lo && leaves_one < hi {
            events.push((leaves_one, i, true));
        }
        if hits_zero > lo && hits_zero < hi {
            events.push((hits_zero, i, false));
        }
    }
    events.sort_unstable_by(|p, q| p.0.total_cmp(&q.0));
    let mut left = lo;
    for &(point, i, leaves_one) in &events {
        if let Some(v) = root_on_piece(a, b, capacity, left, point) {
            return v;
        }
        let (yi, wi) = (y[i], w[i]);
        if leaves_one {
            a += wi * yi - wi;
            b += wi * wi;
        } else {
            a -= wi * yi;
            b -= wi * wi;
        }
        left = point;
    }
    root_on_piece(a, b, capacity, left, hi).unwrap_or(hi)
}

/// Returns the root of `a - v b = capacity` if it lies in `[left, right]`.
fn root_on_piece(a: f64, b: f64, capacity: f64, left: f64, right: f64) -> Option<f64> {
    if a - left * b <= capacity {
        return Some(left);
    }
    if b <= 0.0 {
        return None;
    }
    let v = (a - capacity) / b;
    (v <= right).then(|| v.max(left))
}
