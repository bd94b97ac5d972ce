//! The Bernoulli policy (validation, sampling, score, projection, final
//! mask, state) and the optimisers and schedules that move it.

use approx::assert_relative_eq;
use pgprune::optim::{LrSchedule, Optimizer, OptimizerKind};
use pgprune::{BernoulliPolicy, Budget, BudgetKind, Error, MaskPolicy, UnitKind, UnitSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

fn space(heads: usize, channels: usize) -> UnitSpace {
    let mut space = UnitSpace::new();
    space.push(UnitKind::Head, 0, heads, 4);
    space.push(UnitKind::Channel, 0, channels, 3);
    space
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t).expect("1-d tensor")
}

#[test]
fn constructor_rejects_bad_probabilities() {
    let space = space(2, 3);
    for bad in [f64::NAN, -0.1, 1.5] {
        let init = vec![0.5, 0.5, bad, 0.5, 0.5];
        let err = BernoulliPolicy::new(&space, vec![], &init).expect_err("bad probability");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }
    let err = BernoulliPolicy::new(&space, vec![], &[0.5; 4]).expect_err("short");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn constructor_rejects_overlapping_budgets() {
    let space = space(2, 3);
    let overlap = |name: &str| Budget {
        name: name.into(),
        units: vec![1, 2],
        weights: None,
        capacity: 1.0,
    };
    let err = BernoulliPolicy::constant(&space, vec![overlap("a"), overlap("b")], 0.5)
        .expect_err("overlap");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[test]
fn sample_frequencies_match_probabilities() {
    const K: usize = 20_000;
    let space = space(0, 5);
    let s = [0.0, 0.1, 0.5, 0.93, 1.0];
    let policy = BernoulliPolicy::new(&space, vec![], &s).expect("valid policy");
    let masks = policy
        .sample(K, &mut ChaCha8Rng::seed_from_u64(31))
        .expect("sample");
    assert_eq!(masks.size(), vec![K as i64, 5]);
    assert_eq!(masks.kind(), tch::Kind::Float);
    let freq = to_vec(&masks.mean_dim(0, false, tch::Kind::Double));
    assert_eq!(freq[0], 0.0);
    assert_eq!(freq[4], 1.0);
    for i in 1..4 {
        // Five binomial standard errors.
        let tolerance = 5.0 * (s[i] * (1.0 - s[i]) / K as f64).sqrt();
        assert!(
            (freq[i] - s[i]).abs() <= tolerance,
            "unit {i}: {} vs {}",
            freq[i],
            s[i]
        );
    }
}

#[test]
fn sampling_is_reproducible_from_seed() {
    let policy = BernoulliPolicy::constant(&space(3, 40), vec![], 0.5).expect("valid");
    let a = policy
        .sample(4, &mut ChaCha8Rng::seed_from_u64(5))
        .expect("sample");
    let b = policy
        .sample(4, &mut ChaCha8Rng::seed_from_u64(5))
        .expect("sample");
    let c = policy
        .sample(4, &mut ChaCha8Rng::seed_from_u64(6))
        .expect("sample");
    assert!(a.equal(&b));
    assert!(!a.equal(&c));
}

#[test]
fn score_is_exact_and_zero_at_boundaries() {
    let policy = BernoulliPolicy::new(&space(0, 3), vec![], &[0.25, 0.0, 1.0]).expect("valid");
    let masks = Tensor::from_slice(&[1.0_f32, 0.0, 1.0, 0.0, 0.0, 1.0]).view([2, 3]);
    let score: Vec<Vec<f64>> = Vec::try_from(&policy.score(&masks).expect("score")).expect("2-d");
    assert_relative_eq!(score[0][0], 0.75 / 0.1875, epsilon = 1e-12);
    assert_relative_eq!(score[1][0], -0.25 / 0.1875, epsilon = 1e-12);
    for row in &score {
        assert_eq!(row[1], 0.0);
        assert_eq!(row[2], 0.0);
    }
}

#[test]
fn projection_meets_every_budget() {
    let space = space(4, 12);
    let budgets = space.budgets(BudgetKind::PerKind, 0.5).expect("budgets");
    let mut policy = BernoulliPolicy::constant(&space, budgets, 0.5).expect("valid");
    let delta: Vec<f64> = (0..16).map(|i| 0.1 * (i % 5) as f64 - 0.05).collect();
    policy
        .apply_update(&Tensor::from_slice(&delta))
        .expect("update");
    policy.project().expect("project");
    let s = to_vec(policy.probabilities());
    assert!(s.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(s[..4].iter().sum::<f64>() <= 2.0 + 1e-12);
    assert!(s[4..].iter().sum::<f64>() <= 6.0 + 1e-12);
}

#[test]
fn final_mask_ties_keep_lower_index() {
    let space = space(0, 6);
    let budgets = space.budgets(BudgetKind::PerKind, 0.5).expect("budgets");
    let init = [0.2, 0.9, 0.5, 0.5, 0.1, 0.5];
    let policy = BernoulliPolicy::new(&space, budgets, &init).expect("valid");
    let mask: Vec<f32> = Vec::try_from(&policy.final_mask().expect("mask")).expect("1-d");
    assert_eq!(mask, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
}

#[test]
fn final_mask_weighted_stops_at_first_misfit() {
    let space = space(0, 4);
    let budget = Budget {
        name: "weighted".into(),
        units: vec![0, 1, 2, 3],
        weights: Some(vec![2.0, 3.0, 1.0, 1.0]),
        capacity: 4.0,
    };
    let policy = BernoulliPolicy::new(&space, vec![budget], &[0.9, 0.8, 0.7, 0.6]).expect("valid");
    let mask: Vec<f32> = Vec::try_from(&policy.final_mask().expect("mask")).expect("1-d");
    // Unit 0 fits (2), unit 1 would make 5 > 4, so the walk stops there.
    assert_eq!(mask, vec![1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn final_mask_floor_of_rounded_capacity() {
    // 0.29 * 100 rounds to 28.999999999999996; 29 units must still be kept.
    let space = space(0, 100);
    let budgets = space.budgets(BudgetKind::PerKind, 0.29).expect("budgets");
    assert!(budgets[0].capacity < 29.0);
    let policy = BernoulliPolicy::constant(&space, budgets, 0.29).expect("valid");
    let mask = policy.final_mask().expect("mask");
    assert_eq!(mask.sum(tch::Kind::Double).double_value(&[]), 29.0);
}

#[test]
fn state_round_trips_and_checks_budgets() {
    let space = space(2, 6);
    let budgets = space.budgets(BudgetKind::PerKind, 0.5).expect("budgets");
    let policy = BernoulliPolicy::constant(&space, budgets.clone(), 0.3).expect("valid");
    let json = serde_json::to_string(&policy.state().expect("state")).expect("json");
    let mut other = BernoulliPolicy::constant(&space, budgets, 0.9).expect("valid");
    other
        .restore(serde_json::from_str(&json).expect("parse"))
        .expect("restore");
    assert!(other.probabilities().equal(policy.probabilities()));
    let mut different = BernoulliPolicy::constant(&space, vec![], 0.9).expect("valid");
    let state = policy.state().expect("state");
    assert!(different.restore(state).is_err());
}

#[test]
fn schedules_match_closed_forms() {
    let base = 0.1;
    assert_eq!(LrSchedule::Constant.rate(base, 7, 10), base);
    assert_relative_eq!(LrSchedule::Cosine.rate(base, 0, 10), base);
    assert_relative_eq!(
        LrSchedule::Cosine.rate(base, 5, 10),
        base / 2.0,
        epsilon = 1e-15
    );
    assert_relative_eq!(LrSchedule::Cosine.rate(base, 10, 10), 0.0, epsilon = 1e-15);
    let warm = LrSchedule::WarmupCosine { warmup_steps: 4 };
    assert_relative_eq!(warm.rate(base, 0, 14), 0.025, epsilon = 1e-15);
    assert_relative_eq!(warm.rate(base, 3, 14), base, epsilon = 1e-15);
    assert_relative_eq!(warm.rate(base, 4, 14), base, epsilon = 1e-15);
    assert_relative_eq!(warm.rate(base, 9, 14), base / 2.0, epsilon = 1e-15);
}

#[test]
fn adam_steps_match_hand_computation() {
    let mut adam = Optimizer::new(OptimizerKind::adam()).expect("valid");
    let grad = Tensor::from_slice(&[0.5_f64, -2.0]);
    let first = to_vec(&adam.update(&grad, 0.1).expect("step"));
    // After one step m_hat = g and v_hat = g^2, so delta = -lr g / (|g| + eps).
    assert_relative_eq!(first[0], -0.1 * 0.5 / (0.5 + 1e-8), epsilon = 1e-15);
    assert_relative_eq!(first[1], 0.1 * 2.0 / (2.0 + 1e-8), epsilon = 1e-15);
    let second = to_vec(
        &adam
            .update(&Tensor::from_slice(&[1.0_f64, 0.0]), 0.1)
            .expect("step"),
    );
    let m = (0.9 * 0.1 * 0.5 + 0.1 * 1.0) / (1.0 - 0.81);
    let v = (0.999 * 0.001 * 0.25 + 0.001 * 1.0) / (1.0 - 0.999_f64.powi(2));
    assert_relative_eq!(second[0], -0.1 * m / (v.sqrt() + 1e-8), epsilon = 1e-12);
}

#[test]
fn sgd_step_and_invalid_adam() {
    let mut sgd = Optimizer::new(OptimizerKind::Sgd).expect("valid");
    let delta = to_vec(
        &sgd.update(&Tensor::from_slice(&[2.0_f64]), 0.01)
            .expect("step"),
    );
    assert_relative_eq!(delta[0], -0.02);
    let bad = OptimizerKind::Adam {
        beta1: 1.0,
        beta2: 0.999,
        eps: 1e-8,
    };
    assert!(Optimizer::new(bad).is_err());
}

#[test]
fn projection_clamps_unbudgeted_units() {
    let space = space(0, 3);
    let mut policy = BernoulliPolicy::constant(&space, vec![], 0.5).expect("valid");
    let delta = Tensor::from_slice(&[0.7_f64, -0.9, 0.1]);
    policy.apply_update(&delta).expect("update");
    policy.project().expect("project");
    let s = to_vec(policy.probabilities());
    assert_eq!(s[0], 1.0);
    assert_eq!(s[1], 0.0);
    assert_relative_eq!(s[2], 0.6, epsilon = 1e-15);
}

#[test]
fn projection_rejects_nan_parameters() {
    let space = space(0, 3);
    let mut policy = BernoulliPolicy::constant(&space, vec![], 0.5).expect("valid");
    let delta = Tensor::from_slice(&[0.0_f64, f64::NAN, 0.0]);
    policy.apply_update(&delta).expect("update");
    let err = policy.project().expect_err("NaN parameter");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}
