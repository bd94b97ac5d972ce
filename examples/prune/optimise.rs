//! The policy-gradient loop with a progress bar, checkpoints and resume.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pgprune::data::CalibrationSampler;
use pgprune::estimator::AnyEstimator;
use pgprune::models::llama::LlamaOracle;
use pgprune::policy::{BernoulliPolicy, MaskPolicy};
use pgprune::pruner::Counters;
use pgprune::{Pruner, PrunerSettings, UnitSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::args::Args;

/// Mixed into the seed for the calibration batch of each step, so batches
/// are a function of (seed, step) and a resumed run gets the same ones.
const BATCH_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

pub struct RunResult {
    pub oracle: LlamaOracle,
    pub final_mask: Tensor,
    /// Wall time of every step this process ran, in seconds.
    pub step_seconds: Vec<f64>,
    pub counters: Counters,
}

/// Path of the checkpoint that belongs to the output folder `out`.
pub fn checkpoint_path(args: &Args) -> PathBuf {
    let mut name = args.out.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoint.json");
    args.out.with_file_name(name)
}

/// Runs the policy-gradient loop to `--steps`, or returns `None` when
/// `--stop-after` ends it earlier, with a checkpoint written.
pub fn optimise(
    args: &Args,
    oracle: LlamaOracle,
    space: &UnitSpace,
    initial: &[f64],
    sampler: &CalibrationSampler,
) -> Result<Option<RunResult>> {
    let policy = initial_policy(args, space, initial)?;
    let estimator = args.estimator.build(args.baseline_window, args.penalty)?;
    let settings = PrunerSettings {
        steps: args.steps,
        samples_per_step: args.k,
        learning_rate: args.lr,
        schedule: args.schedule(),
        optimizer: args.optimizer(),
        seed: args.seed,
    };
    let mut pruner = Pruner::new(policy, oracle, estimator, settings)?;
    let checkpoint = checkpoint_path(args);
    if args.resume {
        pruner
            .resume_from(&checkpoint)
            .with_context(|| format!("resuming from {}", checkpoint.display()))?;
        eprintln!("resumed at step {} from {}", pruner.counters().steps, checkpoint.display());
    }

    let last_step = args.stop_after.map_or(args.steps, |n| n.min(args.steps));
    let bar = progress_bar(args.steps, pruner.counters().steps);
    let mut step_seconds = Vec::new();
    while pruner.counters().steps < last_step {
        let step = pruner.counters().steps;
        let mut batch_rng = ChaCha8Rng::seed_from_u64(args.seed ^ step.wrapping_mul(BATCH_SEED_MIX));
        let batch = sampler.sample(&mut batch_rng).to_device(pruner.oracle().model().device());

        let start = Instant::now();
        let outcome = pruner.step(&batch)?;
        step_seconds.push(start.elapsed().as_secs_f64());

        bar.set_position(step + 1);
        bar.set_message(progress_message(&outcome.mean_loss, pruner.estimator(), outcome.totals));
        let done = pruner.counters().steps;
        if args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < args.steps {
            pruner.save_checkpoint(&checkpoint)?;
        }
    }
    bar.finish();
    if pruner.counters().steps < args.steps {
        pruner.save_checkpoint(&checkpoint)?;
        eprintln!(
            "stopped after step {} of {} (--stop-after); continue with --resume from {}",
            pruner.counters().steps,
            args.steps,
            checkpoint.display()
        );
        return Ok(None);
    }

    let counters = pruner.counters();
    let policy = pruner.policy();
    let final_mask = policy.final_mask()?;
    let oracle = into_oracle(pruner);
    if checkpoint.exists() {
        std::fs::remove_file(&checkpoint).ok();
    }
    Ok(Some(RunResult {
        oracle,
        final_mask,
        step_seconds,
        counters,
    }))
}

/// Builds the policy from the initial probabilities, projected onto the budgets.
fn initial_policy(args: &Args, space: &UnitSpace, initial: &[f64]) -> Result<BernoulliPolicy> {
    let budgets = space.budgets(args.budget(), 1.0 - args.sparsity)?;
    let mut policy = BernoulliPolicy::new(space, budgets, initial)?;
    policy.project()?;
    Ok(policy)
}

/// Returns the final mask of the initial policy, before any step.
pub fn initial_policy_mask(args: &Args, space: &UnitSpace, initial: &[f64]) -> Result<Tensor> {
    Ok(initial_policy(args, space, initial)?.final_mask()?)
}

fn into_oracle(pruner: Pruner<BernoulliPolicy, LlamaOracle, AnyEstimator>) -> LlamaOracle {
    pruner.into_parts().1
}

fn progress_bar(steps: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("step {pos}/{len} [{elapsed_precise} < {eta_precise}] {wide_bar} {msg}")
            .expect("the progress template is valid"),
    );
    bar.set_position(done);
    bar
}

fn progress_message(mean_loss: &Option<f64>, estimator: &AnyEstimator, totals: Counters) -> String {
    let loss = mean_loss.map_or("skipped".to_string(), |l| format!("{l:.4}"));
    let baseline = estimator.baseline().map_or("-".to_string(), |b| format!("{b:.4}"));
    let mut message = format!("loss {loss} baseline {baseline}");
    if totals.excluded_losses > 0 {
        message.push_str(&format!(" non-finite {}", totals.excluded_losses));
    }
    message
}
