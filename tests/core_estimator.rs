//! Gradient estimators against the exact gradient of a small oracle,
//! obtained by enumerating all 2^n masks.

use approx::assert_relative_eq;
use pgprune::estimator::{EmaReinforce, LeaveOneOut, PlainReinforce, ScoreDenominator};
use pgprune::estimator::{GradientEstimator, WithPenalty, SQRT_DENOMINATOR_EPS};
use pgprune::{BernoulliPolicy, MaskPolicy, UnitKind, UnitSpace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

const UNITS: usize = 6;
/// Allowed deviation of a sample mean from its expectation, in standard
/// errors: a two-sided normal tail of 5 sigma has probability 6e-7 per unit.
const STANDARD_ERRORS: f64 = 5.0;

/// A deterministic loss with unit costs and pairwise interactions.
struct Oracle {
    cost: Vec<f64>,
    pair: Vec<Vec<f64>>,
}

impl Oracle {
    fn new(rng: &mut ChaCha8Rng) -> Self {
        let cost = (0..UNITS).map(|_| rng.random_range(0.0..2.0)).collect();
        let pair = (0..UNITS)
            .map(|_| (0..UNITS).map(|_| rng.random_range(-0.5..0.5)).collect())
            .collect();
        Self { cost, pair }
    }

    fn loss(&self, mask: &[f32]) -> f64 {
        let removed: Vec<f64> = mask.iter().map(|&m| 1.0 - m as f64).collect();
        let mut loss = 3.0;
        for i in 0..UNITS {
            loss += self.cost[i] * removed[i];
            for j in i + 1..UNITS {
                loss += self.pair[i][j] * removed[i] * removed[j];
            }
        }
        loss
    }

    /// d E[L] / d s_i = sum over masks of L(m) d p(m) / d s_i.
    fn exact_gradient(&self, s: &[f64]) -> Vec<f64> {
        let mut grad = vec![0.0; UNITS];
        for bits in 0..1_u32 << UNITS {
            let mask: Vec<f32> = (0..UNITS).map(|i| ((bits >> i) & 1) as f32).collect();
            let loss = self.loss(&mask);
            for (i, g) in grad.iter_mut().enumerate() {
                let mut dp = if mask[i] == 1.0 { 1.0 } else { -1.0 };
                for (j, &m) in mask.iter().enumerate().filter(|(j, _)| *j != i) {
                    dp *= if m == 1.0 { s[j] } else { 1.0 - s[j] };
                }
                *g += loss * dp;
            }
        }
        grad
    }
}

fn space() -> UnitSpace {
    let mut space = UnitSpace::new();
    space.push(UnitKind::Channel, 0, UNITS, 1);
    space
}

/// Averages `draws` estimates with K masks each and checks every unit
/// against the exact gradient within a tolerance from the sample spread.
fn check_unbiased<E: GradientEstimator>(mut make: impl FnMut() -> E, k: usize, seed: u64) {
    const DRAWS: usize = 4000;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let oracle = Oracle::new(&mut rng);
    let s: Vec<f64> = (0..UNITS).map(|_| rng.random_range(0.2..0.8)).collect();
    let policy = BernoulliPolicy::new(&space(), vec![], &s).expect("valid policy");
    let mut sum = [0.0; UNITS];
    let mut sum_sq = [0.0; UNITS];
    for _ in 0..DRAWS {
        let masks = policy.sample(k, &mut rng).expect("sample");
        let rows: Vec<Vec<f32>> = Vec::try_from(&masks).expect("2-d masks");
        let losses: Vec<f64> = rows.iter().map(|m| oracle.loss(m)).collect();
        let mut estimator = make();
        let g = estimator
            .estimate(policy.probabilities(), &masks, &losses)
            .expect("estimate");
        let g: Vec<f64> = Vec::try_from(&g).expect("1-d gradient");
        for i in 0..UNITS {
            sum[i] += g[i];
            sum_sq[i] += g[i] * g[i];
        }
    }
    let exact = oracle.exact_gradient(&s);
    for i in 0..UNITS {
        let mean = sum[i] / DRAWS as f64;
        let variance = (sum_sq[i] / DRAWS as f64 - mean * mean).max(0.0);
        let standard_error = (variance / DRAWS as f64).sqrt();
        let gap = (mean - exact[i]).abs();
        assert!(
            gap <= STANDARD_ERRORS * standard_error + 1e-12,
            "unit {i}: mean {mean} vs exact {}, standard error {standard_error}",
            exact[i]
        );
    }
}

#[test]
fn leave_one_out_is_unbiased() {
    check_unbiased(|| LeaveOneOut, 4, 21);
    check_unbiased(|| LeaveOneOut, 2, 22);
}

#[test]
fn plain_reinforce_is_unbiased() {
    check_unbiased(|| PlainReinforce, 2, 23);
    check_unbiased(|| PlainReinforce, 1, 24);
}

/// Shows that the check can fail: the square-root denominator rescales each
/// unit's gradient, so its mean misses the exact gradient by many standard
/// errors.
#[test]
#[should_panic(expected = "standard error")]
fn sqrt_denominator_is_biased() {
    check_unbiased(
        || EmaReinforce::new(1.0, ScoreDenominator::ReferenceSqrt).expect("valid window"),
        4,
        25,
    );
}

fn fixed_inputs() -> (Tensor, Tensor, Vec<f64>) {
    let probs = Tensor::from_slice(&[0.5_f64, 0.2, 0.9]);
    let masks = Tensor::from_slice(&[1.0_f32, 0.0, 1.0, 0.0, 1.0, 1.0]).view([2, 3]);
    (probs, masks, vec![2.0, 3.0])
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t).expect("1-d tensor")
}

#[test]
fn ema_with_window_one_equals_leave_one_out() {
    let (probs, masks, losses) = fixed_inputs();
    let mut ema = EmaReinforce::new(1.0, ScoreDenominator::Exact).expect("valid window");
    let a = to_vec(&ema.estimate(&probs, &masks, &losses).expect("estimate"));
    let b = to_vec(
        &LeaveOneOut
            .estimate(&probs, &masks, &losses)
            .expect("estimate"),
    );
    for (x, y) in a.iter().zip(&b) {
        assert_relative_eq!(x, y, epsilon = 1e-12);
    }
}

#[test]
fn ema_baseline_updates_before_gradient() {
    let (probs, masks, losses) = fixed_inputs();
    let mut ema = EmaReinforce::new(5.0, ScoreDenominator::Exact).expect("valid window");
    let _ = ema.estimate(&probs, &masks, &losses).expect("first step");
    assert_eq!(ema.baseline(), Some(2.5));
    let g = to_vec(
        &ema.estimate(&probs, &masks, &[4.0, 6.0])
            .expect("second step"),
    );
    // b = 0.8 * 2.5 + 0.2 * 5 = 3; unit 0: (4 - 3)(1 - 0.5)/0.25 + (6 - 3)(0 - 0.5)/0.25
    assert_relative_eq!(ema.baseline().expect("set"), 3.0, epsilon = 1e-12);
    assert_relative_eq!(g[0], 2.0 - 6.0, epsilon = 1e-12);
    // unit 1: (1)(-0.2)/0.16 + (3)(0.8)/0.16
    assert_relative_eq!(g[1], (-0.2 + 2.4) / 0.16, epsilon = 1e-12);
}

#[test]
fn reference_denominator_matches_hand_value() {
    let (probs, masks, losses) = fixed_inputs();
    let mut ema = EmaReinforce::reference();
    let g = to_vec(&ema.estimate(&probs, &masks, &losses).expect("estimate"));
    // b = 2.5; unit 2: (-0.5)(0.1) + (0.5)(0.1), divided by sqrt(0.09 + eps)
    assert_relative_eq!(g[2], 0.0, epsilon = 1e-12);
    let d0 = (0.25 + SQRT_DENOMINATOR_EPS).sqrt();
    assert_relative_eq!(g[0], (-0.5 * 0.5 + 0.5 * -0.5) / d0, epsilon = 1e-12);
}

#[test]
fn boundary_probabilities_give_zero_gradient() {
    let probs = Tensor::from_slice(&[0.0_f64, 1.0]);
    let masks = Tensor::from_slice(&[0.0_f32, 1.0, 0.0, 1.0]).view([2, 2]);
    for g in [
        LeaveOneOut.estimate(&probs, &masks, &[1.0, 2.0]),
        PlainReinforce.estimate(&probs, &masks, &[1.0, 2.0]),
    ] {
        assert_eq!(to_vec(&g.expect("estimate")), vec![0.0, 0.0]);
    }
}

#[test]
fn leave_one_out_with_one_loss_is_zero() {
    let probs = Tensor::from_slice(&[0.5_f64, 0.5]);
    let masks = Tensor::from_slice(&[1.0_f32, 0.0]).view([1, 2]);
    let g = LeaveOneOut
        .estimate(&probs, &masks, &[7.0])
        .expect("estimate");
    assert_eq!(to_vec(&g), vec![0.0, 0.0]);
}

#[test]
fn penalty_adds_log_odds_push() {
    let probs = Tensor::from_slice(&[0.8_f64, 0.0]);
    let masks = Tensor::from_slice(&[1.0_f32, 0.0, 1.0, 0.0]).view([2, 2]);
    let mut penalised = WithPenalty::new(LeaveOneOut, 0.5).expect("valid strength");
    let g = to_vec(
        &penalised
            .estimate(&probs, &masks, &[1.0, 1.0])
            .expect("estimate"),
    );
    assert_relative_eq!(g[0], 0.5 * (0.2_f64.ln() - 0.8_f64.ln()), epsilon = 1e-12);
    assert!(g[1].is_finite(), "push at s = 0 is {}", g[1]);
    assert!(g[1] > 0.0, "push at s = 0 is {}", g[1]);
    assert!(WithPenalty::new(LeaveOneOut, f64::NAN).is_err());
}

#[test]
fn bad_inputs_are_rejected() {
    let (probs, masks, _) = fixed_inputs();
    assert!(LeaveOneOut.estimate(&probs, &masks, &[1.0]).is_err());
    assert!(LeaveOneOut
        .estimate(&probs, &masks, &[1.0, f64::NAN])
        .is_err());
    assert!(EmaReinforce::new(0.5, ScoreDenominator::Exact).is_err());
    assert!(EmaReinforce::new(f64::NAN, ScoreDenominator::Exact).is_err());
}
