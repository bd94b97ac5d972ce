//! The output folder: compact model, tokenizer, report and chart.

use anyhow::{Context, Result};
use pgprune::eval::Perplexity;
use pgprune::export::{kept_per_layer, median, write_kept_chart, OutputDir, ParamCounts, PerplexitySummary, Report};
use pgprune::models::llama::{save, save::named_tensors, Llama};
use pgprune::pruner::Counters;
use pgprune::UnitSpace;
use tch::Tensor;
use tokenizers::Tokenizer;

use crate::args::Args;

/// Measurements of a run, for the report.
pub struct Summary {
    pub dense: Perplexity,
    pub init: Perplexity,
    pub init_policy: Perplexity,
    pub final_: Perplexity,
    pub final_mask: Tensor,
    pub step_seconds: Vec<f64>,
    pub counters: Counters,
    pub wall_seconds: f64,
}

/// Opens the output folder early, so that an existing folder is reported
/// before any work is done.
pub fn create_output(args: &Args) -> Result<OutputDir> {
    match OutputDir::create(&args.out, args.overwrite) {
        Err(e @ pgprune::Error::OutputExists { .. }) => Err(anyhow::Error::new(e).context(format!(
            "invalid --out {}: pass --overwrite to replace it, or choose another folder",
            args.out.display()
        ))),
        other => Ok(other.with_context(|| format!("creating the output folder {}", args.out.display()))?),
    }
}

/// Parameters of `model`, counting tied embeddings once.
pub fn num_parameters(model: &Llama) -> u64 {
    named_tensors(model).iter().map(|(_, t)| t.numel() as u64).sum()
}

pub fn write(
    args: &Args,
    output: OutputDir,
    dense_model: &Llama,
    compacted: &Llama,
    space: &UnitSpace,
    tokenizer: &Tokenizer,
    summary: Summary,
) -> Result<()> {
    let kept = kept_per_layer(space, &summary.final_mask)?;
    let report = Report {
        sparsity: args.sparsity,
        ppl: PerplexitySummary {
            dense: summary.dense.ppl,
            init: summary.init.ppl,
            init_policy: Some(summary.init_policy.ppl),
            final_: summary.final_.ppl,
        },
        eval_tokens: summary.final_.tokens,
        eval_seq_len: args.eval_seq_len,
        params: ParamCounts {
            before: num_parameters(dense_model),
            after: num_parameters(compacted),
        },
        kept: kept.clone(),
        forward_passes: summary.counters.steps * args.k as u64,
        wall_seconds: summary.wall_seconds,
        step_seconds: median(&summary.step_seconds),
        non_finite_losses: summary.counters.excluded_losses,
        skipped_steps: summary.counters.skipped_steps,
        settings: settings_json(args),
    };

    save(compacted, output.staging_dir()).context("saving the compact model")?;
    tokenizer
        .save(output.path("tokenizer.json")?, false)
        .map_err(|e| anyhow::anyhow!("saving tokenizer.json: {e}"))?;
    output.write_json("report.json", &report)?;
    let caption = format!("Units kept per layer at sparsity {}", args.sparsity);
    write_kept_chart(output.path("kept_per_layer.svg")?, &kept, &caption)?;
    let target = output.commit()?;

    println!(
        "{}",
        serde_json::json!({
            "out": target.display().to_string(),
            "sparsity": args.sparsity,
            "ppl": { "dense": report.ppl.dense, "init": report.ppl.init, "init_policy": summary.init_policy.ppl, "final": report.ppl.final_ },
            "params": { "before": report.params.before, "after": report.params.after },
            "step_seconds": report.step_seconds,
            "wall_seconds": report.wall_seconds,
        })
    );
    Ok(())
}

fn settings_json(args: &Args) -> serde_json::Value {
    serde_json::json!({
        "model": args.model.display().to_string(),
        "calib": args.calib.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "eval": args.eval.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "calib_format": args.calib_format.to_string(),
        "eval_format": args.eval_format.to_string(),
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "k": args.k,
        "lr": args.lr,
        "schedule": format!("{:?}", args.schedule()),
        "optimizer": format!("{:?}", args.optimizer()),
        "estimator": args.estimator.to_string(),
        "baseline_window": args.baseline_window,
        "penalty": args.penalty,
        "init": format!("{:?}", args.init()),
        "init_samples": args.init_samples,
        "granularity": args.granularity,
        "budget": format!("{:?}", args.budget()),
        "eval_seq_len": args.eval_seq_len,
        "eval_max_tokens": args.eval_max_tokens,
        "eval_batch": args.eval_batch,
        "seed": args.seed,
        "dtype": args.dtype.to_string(),
        "device": args.device,
        "threads": args.threads,
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
    })
}
