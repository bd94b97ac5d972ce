//! Exact projection onto weighted budgets: feasibility, optimality, edge
//! cases and rejected budgets.

use approx::assert_relative_eq;
use pgprune::{project_onto_budget, Budget, Error};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rounding allowance of f64 sums over up to 1e5 terms of order 1.
const SUM_TOLERANCE: f64 = 1e-9;

fn budget(units: Vec<i64>, weights: Option<Vec<f64>>, capacity: f64) -> Budget {
    Budget {
        name: "test".into(),
        units,
        weights,
        capacity,
    }
}

fn weighted_sum(s: &[f64], w: &[f64]) -> f64 {
    s.iter().zip(w).map(|(a, b)| a * b).sum()
}

/// Draws a random problem: points partly outside [0, 1], optional weights in
/// [0.5, 3), a capacity between 0 and the total weight.
fn random_case(rng: &mut ChaCha8Rng, n: usize, weighted: bool) -> (Vec<f64>, Vec<f64>, f64) {
    let y: Vec<f64> = (0..n).map(|_| rng.random_range(-0.5..1.5)).collect();
    let w: Vec<f64> = (0..n)
        .map(|_| {
            if weighted {
                rng.random_range(0.5..3.0)
            } else {
                1.0
            }
        })
        .collect();
    let capacity = rng.random_range(0.0..1.0) * w.iter().sum::<f64>();
    (y, w, capacity)
}

fn project(y: &[f64], w: &[f64], capacity: f64, weighted: bool) -> (Vec<f64>, f64) {
    let mut s = y.to_vec();
    let units = (0..y.len() as i64).collect();
    let b = budget(units, weighted.then(|| w.to_vec()), capacity);
    let v = project_onto_budget(&mut s, &b).expect("valid budget");
    (s, v)
}

#[test]
fn projection_satisfies_kkt_conditions() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for case in 0..200 {
        let n = [1, 2, 5, 40, 20_000][case % 5];
        let weighted = case % 2 == 1;
        let (y, w, capacity) = random_case(&mut rng, n, weighted);
        let (s, v) = project(&y, &w, capacity, weighted);
        assert!(v >= 0.0, "case {case}: multiplier {v} < 0");
        for i in 0..n {
            assert!(
                (0.0..=1.0).contains(&s[i]),
                "case {case}: s[{i}] = {}",
                s[i]
            );
            assert_eq!(
                s[i],
                (y[i] - v * w[i]).clamp(0.0, 1.0),
                "case {case} unit {i}"
            );
        }
        let total = weighted_sum(&s, &w);
        assert!(
            total <= capacity + SUM_TOLERANCE * n as f64,
            "case {case}: {total} > {capacity}"
        );
        if v > 0.0 {
            // Complementary slackness: a positive multiplier means the bound is tight.
            assert_relative_eq!(total, capacity, epsilon = SUM_TOLERANCE * n as f64);
        }
    }
}

#[test]
fn projection_is_idempotent() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for case in 0..50 {
        let weighted = case % 2 == 0;
        let (y, w, capacity) = random_case(&mut rng, 300, weighted);
        let (once, _) = project(&y, &w, capacity, weighted);
        let (twice, _) = project(&once, &w, capacity, weighted);
        for (a, b) in once.iter().zip(&twice) {
            assert_relative_eq!(a, b, epsilon = 1e-12);
        }
    }
}

/// For the projection p of y onto a convex set, (y - p) . (z - p) <= 0 for
/// every feasible z. Checked against random feasible points.
#[test]
fn projection_satisfies_variational_inequality() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for case in 0..100 {
        let weighted = case % 2 == 0;
        let (y, w, capacity) = random_case(&mut rng, 6, weighted);
        let (p, _) = project(&y, &w, capacity, weighted);
        for _ in 0..200 {
            let mut z: Vec<f64> = (0..6).map(|_| rng.random_range(0.0..1.0)).collect();
            let total = weighted_sum(&z, &w);
            if total > capacity {
                z.iter_mut().for_each(|zi| *zi *= capacity / total);
            }
            let inner: f64 = (0..6).map(|i| (y[i] - p[i]) * (z[i] - p[i])).sum();
            assert!(inner <= 1e-12, "case {case}: inner product {inner} > 0");
        }
    }
}

/// Brute force over a grid of feasible points in two dimensions: no grid
/// point is closer than the projection by more than the grid's resolution.
#[test]
fn projection_beats_grid_search() {
    const STEPS: usize = 400;
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for case in 0..20 {
        let weighted = case % 2 == 0;
        let (y, w, capacity) = random_case(&mut rng, 2, weighted);
        let (p, _) = project(&y, &w, capacity, weighted);
        let dist = |a: f64, b: f64| (a - y[0]).powi(2) + (b - y[1]).powi(2);
        let mut best = f64::INFINITY;
        for i in 0..=STEPS {
            for j in 0..=STEPS {
                let (a, b) = (i as f64 / STEPS as f64, j as f64 / STEPS as f64);
                if w[0] * a + w[1] * b <= capacity {
                    best = best.min(dist(a, b));
                }
            }
        }
        assert!(
            dist(p[0], p[1]) <= best + 1e-12,
            "case {case}: grid point closer"
        );
        // The nearest grid point lies within one cell diagonal of the optimum.
        let cell = 2.0_f64.sqrt() / STEPS as f64;
        assert!(best.sqrt() <= dist(p[0], p[1]).sqrt() + cell, "case {case}");
    }
}

#[test]
fn exact_zeros_and_ones_within_budget_stay() {
    let y = vec![0.0, 1.0, 1.0, 0.0, 0.5];
    let (s, v) = project(&y, &[1.0; 5], 2.5, false);
    assert_eq!(v, 0.0);
    assert_eq!(s, y);
}

#[test]
fn ones_over_budget_share_the_cut() {
    let (s, v) = project(&[1.0, 1.0, 1.0, 0.0], &[1.0; 4], 2.0, false);
    assert_relative_eq!(v, 1.0 / 3.0, epsilon = 1e-15);
    for value in &s[..3] {
        assert_relative_eq!(*value, 2.0 / 3.0, epsilon = 1e-15);
    }
    assert_eq!(s[3], 0.0);
}

#[test]
fn weighted_projection_matches_hand_solution() {
    // clamp(1 - v) + 2 clamp(1 - 2v) = 1 gives v = 0.4, s = (0.6, 0.2).
    let (s, v) = project(&[1.0, 1.0], &[1.0, 2.0], 1.0, true);
    assert_relative_eq!(v, 0.4, epsilon = 1e-15);
    assert_relative_eq!(s[0], 0.6, epsilon = 1e-15);
    assert_relative_eq!(s[1], 0.2, epsilon = 1e-15);
}

#[test]
fn zero_weight_units_are_only_clamped() {
    let mut s = vec![1.4, 1.0, -0.2];
    let b = budget(vec![0, 1, 2], Some(vec![0.0, 1.0, 0.0]), 0.5);
    project_onto_budget(&mut s, &b).expect("valid budget");
    assert_eq!(s, vec![1.0, 0.5, 0.0]);
}

#[test]
fn units_outside_the_budget_are_untouched() {
    let mut s = vec![0.9, 1.7, 0.9, -3.0];
    let b = budget(vec![0, 2], None, 1.0);
    project_onto_budget(&mut s, &b).expect("valid budget");
    assert_relative_eq!(s[0], 0.5, epsilon = 1e-15);
    assert_relative_eq!(s[2], 0.5, epsilon = 1e-15);
    assert_eq!(s[1], 1.7);
    assert_eq!(s[3], -3.0);
}

#[test]
fn tied_breakpoints_in_a_large_budget() {
    // 50,000 equal values keep the bisection from separating breakpoints.
    let n = 50_000;
    let (s, v) = project(&vec![0.7; n], &vec![1.0; n], 0.5 * n as f64, false);
    assert_relative_eq!(v, 0.2, epsilon = 1e-12);
    assert!(s.iter().all(|x| (x - 0.5).abs() < 1e-12));
}

#[test]
fn infeasible_budgets_are_rejected() {
    let cases = [
        budget(vec![0, 1], None, -1.0),
        budget(vec![0, 1], None, f64::NAN),
        budget(vec![0, 1], None, f64::INFINITY),
    ];
    for b in cases {
        let err = project_onto_budget(&mut [0.5, 0.5], &b).expect_err("infeasible");
        assert!(matches!(err, Error::InfeasibleBudget { .. }), "{err}");
    }
    for bad in [-1.0, f64::NAN] {
        let b = budget(vec![0, 1], Some(vec![1.0, bad]), 1.0);
        let err = project_onto_budget(&mut [0.5, 0.5], &b).expect_err("bad weight");
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    name: "budget weight",
                    ..
                }
            ),
            "{err}"
        );
    }
    let out_of_range = budget(vec![0, 5], None, 1.0);
    let err = project_onto_budget(&mut [0.5, 0.5], &out_of_range).expect_err("bad index");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[test]
fn nan_probability_is_rejected() {
    let b = budget(vec![0, 1], None, 1.0);
    let err = project_onto_budget(&mut [f64::NAN, 0.5], &b).expect_err("NaN input");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}
