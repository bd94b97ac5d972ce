//! Prunes a synthetic model whose optimal mask is known exactly, and reports
//! how close the policy-gradient loop gets.
//!
//! Units come in disjoint pairs. Removing unit i costs `cost[i]`, and
//! removing both units of a pair costs an extra `interaction[pair]`, so the
//! cheapest units are not always the best ones to remove. A dynamic program
//! over pairs finds the exact optimum for the budget.
//!
//!     cargo run --release --example toy -- --units 100 --sparsity 0.5

use std::cell::RefCell;

use anyhow::{ensure, Context, Result};
use clap::{Parser, ValueEnum};
use pgprune::estimator::{EmaReinforce, LeaveOneOut, PlainReinforce};
use pgprune::optim::{LrSchedule, OptimizerKind};
use pgprune::{
    BernoulliPolicy, BudgetKind, ForwardOracle, GradientEstimator, MaskPolicy, Pruner,
    PrunerSettings, UnitKind, UnitSpace,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tch::Tensor;

#[derive(Parser)]
#[command(about = "Policy-gradient pruning of a synthetic model with a known optimum")]
struct Args {
    /// Number of prunable units.
    #[arg(long, default_value_t = 100)]
    units: usize,
    /// Fraction of units to remove, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    sparsity: f64,
    /// Optimisation steps.
    #[arg(long, default_value_t = 5000)]
    steps: u64,
    /// Masks sampled per step (K).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Base learning rate of the cosine schedule.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, value_enum, default_value_t = Estimator::Ema)]
    estimator: Estimator,
    #[arg(long, value_enum, default_value_t = Optimizer::Adam)]
    optimizer: Optimizer,
    /// Standard deviation of the Gaussian noise added to every loss.
    #[arg(long, default_value_t = 0.01)]
    noise: f64,
    /// Seed of the problem and of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Optimizer {
    /// Plain SGD, as the reference uses; needs a learning rate of order 1
    /// here because the toy's gradients are of order 1/units.
    Sgd,
    /// Bias-corrected Adam.
    Adam,
}

#[derive(Clone, Copy, ValueEnum)]
enum Estimator {
    /// Leave-one-out baseline (unbiased).
    Rloo,
    /// The reference's EMA baseline with the square-root denominator.
    Ema,
    /// No baseline (unbiased, high variance).
    Plain,
}

/// The synthetic model: pair interactions plus per-unit costs, with noise.
struct PairOracle {
    space: UnitSpace,
    cost: Vec<f64>,
    interaction: Vec<f64>,
    noise: Normal<f64>,
    rng: RefCell<ChaCha8Rng>,
}

impl PairOracle {
    fn new(units: usize, noise: f64, seed: u64) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut space = UnitSpace::new();
        space.push(UnitKind::Channel, 0, units, 1);
        // Costs and interactions are scaled by 1/units so the loss stays O(1).
        let scale = 1.0 / units as f64;
        let cost = (0..units)
            .map(|_| scale * rng.random_range(0.1..1.0))
            .collect();
        let interaction = (0..units.div_ceil(2))
            .map(|_| scale * rng.random_range(0.0..1.0))
            .collect();
        Ok(Self {
            space,
            cost,
            interaction,
            noise: Normal::new(0.0, noise).context("noise must be finite and >= 0")?,
            rng: RefCell::new(rng),
        })
    }

    /// Noise-free loss of a mask (1.0 = keep).
    fn clean_loss(&self, mask: &[f32]) -> f64 {
        let removed = |i: usize| mask.get(i).is_some_and(|&m| m == 0.0);
        let mut loss = 1.0;
        for (i, c) in self.cost.iter().enumerate() {
            loss += if removed(i) { *c } else { 0.0 };
        }
        for (pair, b) in self.interaction.iter().enumerate() {
            loss += if removed(2 * pair) && removed(2 * pair + 1) {
                *b
            } else {
                0.0
            };
        }
        loss
    }

    /// Exact minimum loss when exactly `remove` units are removed, and a mask
    /// that reaches it: a dynamic program over pairs, each removing none, its
    /// cheaper unit, or both.
    fn optimum(&self, remove: usize) -> (f64, Vec<f32>) {
        let pairs: Vec<&[f64]> = self.cost.chunks(2).collect();
        // best[r]: minimum loss removing r units among the pairs seen so far;
        // choice[p][r]: how many units pair p removes in that optimum.
        let mut best = vec![f64::INFINITY; remove + 1];
        best[0] = 1.0;
        let mut choice = vec![vec![0_usize; remove + 1]; pairs.len()];
        for (p, chunk) in pairs.iter().enumerate() {
            let previous = best.clone();
            for r in 0..=remove {
                for count in 1..=chunk.len().min(r) {
                    let extra = self.removal_cost(p, chunk, count);
                    if previous[r - count] + extra < best[r] {
                        best[r] = previous[r - count] + extra;
                        choice[p][r] = count;
                    }
                }
            }
        }
        let mut mask = vec![1.0_f32; self.cost.len()];
        let mut r = remove;
        for p in (0..pairs.len()).rev() {
            let count = choice[p][r];
            let cheaper = if pairs[p].len() == 2 && pairs[p][1] < pairs[p][0] {
                1
            } else {
                0
            };
            match count {
                1 => mask[2 * p + cheaper] = 0.0,
                2 => {
                    mask[2 * p] = 0.0;
                    mask[2 * p + 1] = 0.0;
                }
                _ => {}
            }
            r -= count;
        }
        (best[remove], mask)
    }

    /// Extra loss of removing `count` units of pair `p` (the cheaper one first).
    fn removal_cost(&self, p: usize, chunk: &[f64], count: usize) -> f64 {
        match count {
            1 => chunk.iter().copied().fold(f64::INFINITY, f64::min),
            _ => chunk.iter().sum::<f64>() + self.interaction[p],
        }
    }
}

impl ForwardOracle for PairOracle {
    type Batch = ();

    fn unit_space(&self) -> &UnitSpace {
        &self.space
    }

    fn losses(&self, _batch: &(), masks: &Tensor) -> pgprune::Result<Vec<f64>> {
        let rows: Vec<Vec<f32>> = Vec::try_from(masks)?;
        let mut rng = self.rng.borrow_mut();
        Ok(rows
            .iter()
            .map(|m| self.clean_loss(m) + self.noise.sample(&mut *rng))
            .collect())
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    ensure!(
        args.units >= 2,
        "--units must be at least 2, got {}",
        args.units
    );
    match args.estimator {
        Estimator::Rloo => run(&args, LeaveOneOut),
        Estimator::Ema => run(&args, EmaReinforce::reference()),
        Estimator::Plain => run(&args, PlainReinforce),
    }
}

fn run<E: GradientEstimator>(args: &Args, estimator: E) -> Result<()> {
    let oracle = PairOracle::new(args.units, args.noise, args.seed)?;
    let keep_ratio = 1.0 - args.sparsity;
    let budgets = oracle.space.budgets(BudgetKind::PerKind, keep_ratio)?;
    let policy = BernoulliPolicy::constant(&oracle.space, budgets, keep_ratio)?;
    let settings = PrunerSettings {
        steps: args.steps,
        samples_per_step: args.samples,
        learning_rate: args.lr,
        schedule: LrSchedule::Cosine,
        optimizer: match args.optimizer {
            Optimizer::Sgd => OptimizerKind::Sgd,
            Optimizer::Adam => OptimizerKind::adam(),
        },
        seed: args.seed,
    };
    let mut pruner = Pruner::new(policy, oracle, estimator, settings)?;
    let batches = vec![(); args.steps as usize];
    let totals = pruner.run(&batches)?;
    report(&pruner, totals.steps)
}

fn report<E: GradientEstimator>(
    pruner: &Pruner<BernoulliPolicy, PairOracle, E>,
    steps: u64,
) -> Result<()> {
    let oracle = pruner.oracle();
    let mask: Vec<f32> = Vec::try_from(&pruner.policy().final_mask()?)?;
    let removed = mask.iter().filter(|&&m| m == 0.0).count();
    let found = oracle.clean_loss(&mask);
    let (optimum, best_mask) = oracle.optimum(removed);
    let dense = oracle.clean_loss(&vec![1.0; mask.len()]);
    let shared = mask
        .iter()
        .zip(&best_mask)
        .filter(|(a, b)| **a == 0.0 && **b == 0.0)
        .count();
    println!("steps {steps}, units {}, removed {removed}", mask.len());
    println!("dense loss           {dense:.6}");
    println!(
        "optimal loss         {:.6}  (check {:.6})",
        optimum,
        oracle.clean_loss(&best_mask)
    );
    println!("found loss           {found:.6}");
    println!(
        "cheapest-units loss  {:.6}",
        oracle.clean_loss(&cheapest_units(&oracle.cost, removed))
    );
    let excess = 100.0 * (found - optimum) / (optimum - dense).max(f64::MIN_POSITIVE);
    println!("excess over optimum  {excess:.2}% of the optimal removal cost");
    println!("overlap              {shared} of {removed} removed units match the optimum");
    Ok(())
}

/// Builds a mask that removes the `remove` units of lowest cost, ignoring
/// interactions: the baseline a one-shot importance metric would give.
fn cheapest_units(cost: &[f64], remove: usize) -> Vec<f32> {
    let mut order: Vec<usize> = (0..cost.len()).collect();
    order.sort_by(|&a, &b| cost[a].total_cmp(&cost[b]));
    let mut mask = vec![1.0_f32; cost.len()];
    for &i in order.iter().take(remove) {
        mask[i] = 0.0;
    }
    mask
}
