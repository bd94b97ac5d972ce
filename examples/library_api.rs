//! The library API without the command line: load a model, build a
//! `Pruner` from a `BernoulliPolicy`, a `LlamaOracle`, an estimator and
//! `PrunerSettings`, run it, and save the compact model. `docs/guide.md`
//! shows this code.
//!
//!     cargo run --release --example library_api -- MODEL TEXT OUT

use std::path::PathBuf;

use anyhow::{Context, Result};
use pgprune::data::{read_corpora, tokenize_documents, CalibrationSampler, CorpusFormat, TokenizeOptions};
use pgprune::models::llama::{compact, save, Granularity, LlamaOracle};
use pgprune::models::load_model;
use pgprune::{BernoulliPolicy, BudgetKind, EmaReinforce, ForwardOracle, MaskPolicy, Pruner, PrunerSettings};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let usage = "usage: library_api MODEL TEXT OUT";
    let (model_path, text_path, out) = match (args.next(), args.next(), args.next()) {
        (Some(m), Some(t), Some(o)) => (m, t, o),
        _ => anyhow::bail!(usage),
    };
    let (seq_len, batch, steps, keep_ratio) = (16, 2, 5, 0.7);

    // A model folder or .gguf file, with its tokenizer.
    let loaded = load_model(&model_path, Kind::Float, Device::Cpu)?;
    let documents = read_corpora(&[text_path], CorpusFormat::Auto)?;
    let tokens = tokenize_documents(&loaded.tokenizer, &documents, &TokenizeOptions::default())?;
    let sampler = CalibrationSampler::new(tokens, seq_len, batch)?;

    // Prune heads (KV groups) and MLP channels, keeping 70% of each kind.
    let oracle = LlamaOracle::new(loaded.model, Granularity::new(true, true, false)?);
    let space = oracle.unit_space().clone();
    let budgets = space.budgets(BudgetKind::PerKind, keep_ratio)?;
    let policy = BernoulliPolicy::constant(&space, budgets, keep_ratio)?;
    let estimator = EmaReinforce::reference();
    let settings = PrunerSettings::reference(steps, 0.05, 0);
    let mut pruner = Pruner::new(policy, oracle, estimator, settings)?;

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for _ in 0..steps {
        let outcome = pruner.step(&sampler.sample(&mut rng))?;
        eprintln!("step {}: mean loss {:?}", pruner.counters().steps, outcome.mean_loss);
    }

    let mask = pruner.policy().final_mask()?; // [num_units], 1.0 = keep
    let (_, oracle, _) = pruner.into_parts();
    let small = compact(oracle.model(), &space, &mask)?;
    save(&small, &out).with_context(|| format!("saving to {}", out.display()))?;
    loaded
        .tokenizer
        .save(out.join("tokenizer.json"), false)
        .map_err(|e| anyhow::anyhow!("saving tokenizer.json: {e}"))?;
    println!("saved {}", out.display());
    Ok(())
}
