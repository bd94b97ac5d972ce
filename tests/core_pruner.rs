//! The pruning loop: convergence on a separable oracle, exclusion of
//! non-finite losses, observers, and bit-identical checkpoint resume.

use std::sync::{Arc, Mutex};

use pgprune::estimator::{EmaReinforce, LeaveOneOut, ScoreDenominator};
use pgprune::optim::{LrSchedule, OptimizerKind};
use pgprune::pruner::Counters;
use pgprune::{
    BernoulliPolicy, BudgetKind, Error, ForwardOracle, MaskPolicy, Observer, Pruner,
    PrunerSettings, StepOutcome, UnitKind, UnitSpace,
};
use tch::Tensor;

/// Loss = sum of the costs of removed units, plus a batch-dependent offset.
/// Masks whose first unit is removed while `poison` is set give NaN.
struct CostOracle {
    space: UnitSpace,
    costs: Vec<f64>,
    poison: Option<f64>,
}

impl CostOracle {
    fn new(costs: Vec<f64>) -> Self {
        let mut space = UnitSpace::new();
        space.push(UnitKind::Channel, 0, costs.len(), 1);
        Self {
            space,
            costs,
            poison: None,
        }
    }
}

impl ForwardOracle for CostOracle {
    type Batch = f64;

    fn unit_space(&self) -> &UnitSpace {
        &self.space
    }

    fn losses(&self, offset: &f64, masks: &Tensor) -> pgprune::Result<Vec<f64>> {
        let rows: Vec<Vec<f32>> = Vec::try_from(masks)?;
        Ok(rows
            .iter()
            .map(|m| {
                if let (Some(value), 0.0) = (self.poison, m[0]) {
                    return value;
                }
                let removed: f64 = m
                    .iter()
                    .zip(&self.costs)
                    .map(|(&k, c)| (1.0 - k as f64) * c)
                    .sum();
                offset + removed
            })
            .collect())
    }
}

fn costs() -> Vec<f64> {
    (0..10).map(|i| 0.05 + 0.1 * i as f64).collect()
}

fn settings(steps: u64, optimizer: OptimizerKind) -> PrunerSettings {
    PrunerSettings {
        steps,
        samples_per_step: 4,
        learning_rate: 0.05,
        schedule: LrSchedule::Cosine,
        optimizer,
        seed: 7,
    }
}

fn policy(oracle: &CostOracle) -> BernoulliPolicy {
    let budgets = oracle
        .space
        .budgets(BudgetKind::PerKind, 0.5)
        .expect("budgets");
    BernoulliPolicy::constant(&oracle.space, budgets, 0.5).expect("policy")
}

fn batches(n: usize) -> Vec<f64> {
    (0..n).map(|i| 2.0 + 0.01 * (i % 7) as f64).collect()
}

#[test]
fn pruner_finds_optimal_mask() {
    let oracle = CostOracle::new(costs());
    let policy = policy(&oracle);
    let mut pruner = Pruner::new(
        policy,
        oracle,
        LeaveOneOut,
        settings(600, OptimizerKind::Sgd),
    )
    .expect("pruner");
    let totals = pruner.run(&batches(600)).expect("run");
    assert_eq!(totals.steps, 600);
    let mask: Vec<f32> = Vec::try_from(&pruner.policy().final_mask().expect("mask")).expect("1-d");
    // The five costliest units are the last five.
    assert_eq!(mask, vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
}

#[derive(Default)]
struct Record {
    steps: usize,
    skips: usize,
}

struct Recorder(Arc<Mutex<Record>>);

impl Observer for Recorder {
    fn on_step(&mut self, _outcome: &StepOutcome) {
        self.0.lock().expect("lock").steps += 1;
    }

    fn on_skip(&mut self, _outcome: &StepOutcome) {
        self.0.lock().expect("lock").skips += 1;
    }
}

#[test]
fn non_finite_losses_are_excluded_and_counted() {
    let mut oracle = CostOracle::new(costs());
    oracle.poison = Some(f64::NAN);
    let policy = policy(&oracle);
    let mut pruner = Pruner::new(
        policy,
        oracle,
        LeaveOneOut,
        settings(50, OptimizerKind::Sgd),
    )
    .expect("pruner");
    let record = Arc::new(Mutex::new(Record::default()));
    pruner.add_observer(Box::new(Recorder(record.clone())));
    let mut excluded = 0;
    for batch in batches(50) {
        let outcome = pruner.step(&batch).expect("step");
        let nan = outcome.losses.iter().filter(|l| l.is_nan()).count();
        assert_eq!(outcome.excluded, nan);
        assert_eq!(outcome.skipped, nan == outcome.losses.len());
        excluded += nan as u64;
    }
    let totals = pruner.counters();
    let record = record.lock().expect("lock");
    assert!(excluded > 0, "the poisoned unit was never removed");
    assert_eq!(totals.excluded_losses, excluded);
    assert_eq!(record.steps + record.skips, 50);
    assert_eq!(record.skips as u64, totals.skipped_steps);
}

#[test]
fn all_infinite_losses_skip_the_step() {
    let mut oracle = CostOracle::new(vec![1.0, 1.0]);
    oracle.poison = Some(f64::INFINITY);
    let mut space = UnitSpace::new();
    space.push(UnitKind::Channel, 0, 2, 1);
    // Unit 0 is never kept, so every loss is infinite.
    let policy = BernoulliPolicy::new(&space, vec![], &[0.0, 0.5]).expect("policy");
    let mut pruner =
        Pruner::new(policy, oracle, LeaveOneOut, settings(5, OptimizerKind::Sgd)).expect("pruner");
    let before = pruner.policy().probabilities().copy();
    let outcome = pruner.step(&1.0).expect("skipped step is not an error");
    assert!(outcome.skipped);
    assert_eq!(outcome.mean_loss, None);
    assert_eq!(
        pruner.counters(),
        Counters {
            steps: 1,
            excluded_losses: 4,
            skipped_steps: 1
        }
    );
    assert!(pruner.policy().probabilities().equal(&before));
}

type EmaPruner = Pruner<BernoulliPolicy, CostOracle, EmaReinforce>;

fn ema_pruner(steps: u64) -> EmaPruner {
    let oracle = CostOracle::new(costs());
    let estimator = EmaReinforce::new(5.0, ScoreDenominator::ReferenceSqrt).expect("estimator");
    Pruner::new(
        policy(&oracle),
        oracle,
        estimator,
        settings(steps, OptimizerKind::adam()),
    )
    .expect("pruner")
}

#[test]
fn resume_is_bit_identical() {
    let data = batches(40);
    let mut straight = ema_pruner(40);
    straight.run(&data).expect("run");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("run.json");
    let mut first = ema_pruner(40);
    first.run(&data[..20]).expect("first half");
    first.save_checkpoint(&path).expect("save");
    let mut resumed = ema_pruner(40);
    resumed.resume_from(&path).expect("resume");
    resumed.run(&data[20..]).expect("second half");

    assert!(resumed
        .policy()
        .probabilities()
        .equal(straight.policy().probabilities()));
    assert_eq!(resumed.counters(), straight.counters());
    assert_eq!(
        resumed.estimator().baseline(),
        straight.estimator().baseline()
    );
}

#[test]
fn resume_rejects_other_settings_or_units() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("run.json");
    let mut pruner = ema_pruner(40);
    pruner.run(&batches(3)).expect("run");
    pruner.save_checkpoint(&path).expect("save");

    let err = ema_pruner(41).resume_from(&path).expect_err("other steps");
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");

    let oracle = CostOracle::new(vec![1.0; 4]);
    let estimator = EmaReinforce::new(5.0, ScoreDenominator::ReferenceSqrt).expect("estimator");
    let mut small = Pruner::new(
        policy(&oracle),
        oracle,
        estimator,
        settings(40, OptimizerKind::adam()),
    )
    .expect("pruner");
    let err = small.resume_from(&path).expect_err("other unit count");
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
}

#[test]
fn constructor_validates_settings_and_units() {
    let oracle = CostOracle::new(costs());
    let bad = PrunerSettings {
        learning_rate: f64::NAN,
        ..settings(10, OptimizerKind::Sgd)
    };
    let err = Pruner::new(policy(&oracle), oracle, LeaveOneOut, bad)
        .err()
        .expect("bad rate");
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "learning rate",
                ..
            }
        ),
        "{err}"
    );

    let oracle = CostOracle::new(costs());
    let other = CostOracle::new(vec![1.0; 3]);
    let err = Pruner::new(
        policy(&other),
        oracle,
        LeaveOneOut,
        settings(10, OptimizerKind::Sgd),
    )
    .err()
    .expect("unit mismatch");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}
