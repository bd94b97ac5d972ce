//! One policy step without the model: sample K masks, estimate the gradient
//! from given losses, take an SGD step and project onto the budgets. Swept
//! over the unit spaces of real models and K = 2, 4, 8; throughput is in
//! units per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgprune::estimator::EmaReinforce;
use pgprune::optim::{Optimizer, OptimizerKind};
use pgprune::{BernoulliPolicy, BudgetKind, GradientEstimator, MaskPolicy, UnitKind, UnitSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// (name, layers, head units per layer, channel units per layer), taken
/// from each model's config: KV heads and MLP intermediate size.
const MODELS: [(&str, usize, usize, usize); 4] = [
    ("SmolLM2-135M", 30, 3, 1_536),
    ("LLaMA-2-7B", 32, 32, 11_008),
    ("LLaMA-3-8B", 32, 8, 14_336),
    ("LLaMA-2-70B", 80, 8, 28_672),
];
const SAMPLE_COUNTS: [usize; 3] = [2, 4, 8];
/// The reference's keep ratio for 50% sparsity and its LLaMA-2-7B learning rate.
const KEEP_RATIO: f64 = 0.5;
const LEARNING_RATE: f64 = 2e-3;

fn unit_space(layers: usize, heads: usize, channels: usize) -> UnitSpace {
    let mut space = UnitSpace::new();
    for layer in 0..layers {
        space.push(UnitKind::Head, layer, heads, 1);
        space.push(UnitKind::Channel, layer, channels, 1);
    }
    space
}

fn policy_step(c: &mut Criterion) {
    // The step is memory-bound. With libtorch's default of one thread per
    // core, its few parallel tensor operations stalled for milliseconds
    // whenever another process used a core, so the bench runs one thread.
    tch::set_num_threads(1);
    for (name, layers, heads, channels) in MODELS {
        let space = unit_space(layers, heads, channels);
        let mut group = c.benchmark_group(format!("policy_step/{name}"));
        group.throughput(Throughput::Elements(space.num_units() as u64));
        group.sample_size(10);
        for k in SAMPLE_COUNTS {
            let budgets = space
                .budgets(BudgetKind::PerKind, KEEP_RATIO)
                .expect("budgets");
            let mut policy =
                BernoulliPolicy::constant(&space, budgets, KEEP_RATIO).expect("policy");
            let mut estimator = EmaReinforce::reference();
            let mut optimizer = Optimizer::new(OptimizerKind::Sgd).expect("optimizer");
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let losses: Vec<f64> = (0..k).map(|i| 2.0 + 0.1 * i as f64).collect();
            group.bench_function(BenchmarkId::from_parameter(format!("K={k}")), |b| {
                b.iter(|| {
                    let _no_grad = tch::no_grad_guard();
                    let masks = policy.sample(k, &mut rng).expect("sample");
                    let grad = estimator
                        .estimate(policy.probabilities(), &masks, &losses)
                        .expect("estimate");
                    let delta = optimizer.update(&grad, LEARNING_RATE).expect("update");
                    policy.apply_update(&delta).expect("apply");
                    policy.project().expect("project");
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, policy_step);
criterion_main!(benches);
