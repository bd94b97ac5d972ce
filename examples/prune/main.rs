//! The main job: prune a LLaMA-family model on real text by policy gradient.
//!
//!     cargo run --release --example prune -- --model PATH --calib PATH... \
//!         --eval PATH... --sparsity 0.3 --out DIR
//!
//! The job loads the model and the text and measures the dense perplexity.
//! It initialises the keep probabilities (Wanda-sp by default) and measures
//! the initial mask. Then it optimises the probabilities by policy gradient,
//! compacts the model by the final mask and measures it. Last, it writes the
//! compact model, `report.json` and `kept_per_layer.svg` into the output
//! folder atomically.

mod args;
mod inputs;
mod optimise;
mod outputs;

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use pgprune::init::initialise;
use pgprune::models::llama::{compact, LlamaOracle};
use pgprune::runtime::{parse_device, retain_freed_memory, trim_freed_memory};
use pgprune::ForwardOracle;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use args::Args;

/// Added to the seed for the generator of initialisation choices, so that
/// it is independent of the mask sampler seeded with the seed itself.
const INIT_SEED_OFFSET: u64 = 0x1417;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    args.validate()?;
    if !args.release_freed_memory {
        let retained = retain_freed_memory();
        tracing::debug!(retained, "allocator set to keep freed memory");
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    run(&args)
}

fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let device = parse_device(&args.device)?;
    let granularity = args.granularity()?;
    let checkpoint = optimise::checkpoint_path(args);
    if args.resume && !checkpoint.is_file() {
        anyhow::bail!(
            "--resume: no checkpoint at {}; it is written next to --out every --checkpoint-every steps, \
             so resume with the same --out, or run without --resume to start over",
            checkpoint.display()
        );
    }
    let output = outputs::create_output(args)?;

    let inputs = inputs::load(args, device)?;
    let oracle = LlamaOracle::new(inputs.model, granularity);
    let space = oracle.unit_space().clone();
    let keep_ratio = 1.0 - args.sparsity;

    let dense = inputs::perplexity(&oracle, &inputs.eval_windows, None, args.eval_batch)?;
    eprintln!("dense perplexity: {:.3} over {} tokens", dense.ppl, dense.tokens);

    let mut init_rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(INIT_SEED_OFFSET));
    let init = initialise(
        args.init(),
        oracle.model(),
        &space,
        &inputs.init_sequences,
        keep_ratio,
        args.batch as i64,
        &mut init_rng,
    )?;
    let init_mask = Tensor::from_slice(&init.mask);
    let init_ppl = inputs::perplexity(&oracle, &inputs.eval_windows, Some(&init_mask), args.eval_batch)?;
    eprintln!("{:?} initial mask perplexity: {:.3}", args.init(), init_ppl.ppl);

    // Loading and the initial evaluations are done: hand their buffers back
    // before the pruning steps settle on their own working set.
    trim_freed_memory();
    let init_policy_mask = optimise::initial_policy_mask(args, &space, &init.probabilities)?;
    let init_policy = inputs::perplexity(&oracle, &inputs.eval_windows, Some(&init_policy_mask), args.eval_batch)?;
    eprintln!("initial keep probabilities, top units per budget: perplexity {:.3}", init_policy.ppl);

    let Some(run) = optimise::optimise(args, oracle, &space, &init.probabilities, &inputs.sampler)? else {
        return Ok(());
    };
    // The compact model is measured directly; tests/prune_roundtrip.rs checks
    // that it equals the masked model.
    let compacted = compact(run.oracle.model(), &space, &run.final_mask)?;
    let final_ppl = inputs::perplexity_dense(&compacted, &inputs.eval_windows, args.eval_batch)?;
    eprintln!("policy-gradient mask, compact model perplexity: {:.3}", final_ppl.ppl);

    let summary = outputs::Summary {
        dense,
        init: init_ppl,
        init_policy,
        final_: final_ppl,
        final_mask: run.final_mask,
        step_seconds: run.step_seconds,
        counters: run.counters,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    outputs::write(args, output, run.oracle.model(), &compacted, &space, &inputs.tokenizer, summary)
}
