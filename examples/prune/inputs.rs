//! Model and text loading, and perplexity under a mask.

use anyhow::{Context, Result};
use pgprune::data::{
    evaluation_windows, read_corpora, tokenize_documents, CalibrationSampler, TokenizeOptions,
};
use pgprune::eval::{perplexity_from_nll, Perplexity};
use pgprune::models::llama::{Llama, LlamaOracle};
use pgprune::models::load_model;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::args::Args;

/// Added to the seed for the generator of the Wanda-sp calibration
/// sequences, so they differ from the policy-gradient batches.
const INIT_SEQUENCES_SEED_OFFSET: u64 = 0x5eed;

pub struct Inputs {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub sampler: CalibrationSampler,
    /// `[init_samples, seq_len]` calibration sequences for the initialisation.
    pub init_sequences: Tensor,
    /// `[windows, eval_seq_len]` held-out windows.
    pub eval_windows: Tensor,
}

pub fn load(args: &Args, device: Device) -> Result<Inputs> {
    let loaded = load_model(&args.model, args.dtype.kind(), device)
        .with_context(|| {
            format!(
                "loading --model {}: pass a Hugging Face model folder or a .gguf file",
                args.model.display()
            )
        })?;

    let calib_docs = read_corpora(&args.calib, args.calib_format)
        .with_context(|| format!("reading --calib {}", paths(&args.calib)))?;
    let calib_tokens = tokenize_documents(&loaded.tokenizer, &calib_docs, &TokenizeOptions::default())?;
    eprintln!("calibration: {} documents, {} tokens", calib_docs.len(), calib_tokens.len());
    let sampler = CalibrationSampler::new(calib_tokens, args.seq_len, args.batch).with_context(|| {
        format!("--calib {}: not enough text for --seq-len {}", paths(&args.calib), args.seq_len)
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(INIT_SEQUENCES_SEED_OFFSET));
    let init_sequences = sampler.sample_windows(args.init_samples, &mut rng).to_device(device);

    let eval_docs = read_corpora(&args.eval, args.eval_format)
        .with_context(|| format!("reading --eval {}", paths(&args.eval)))?;
    let windows = evaluation_windows(
        &loaded.tokenizer,
        &eval_docs,
        args.eval_seq_len,
        Some(args.eval_max_tokens),
        false,
    )
    .with_context(|| format!("--eval {}: not enough text for --eval-seq-len {}", paths(&args.eval), args.eval_seq_len))?;
    eprintln!(
        "evaluation: {} documents, {} windows of {} tokens",
        eval_docs.len(),
        windows.num_windows(),
        args.eval_seq_len
    );
    Ok(Inputs {
        model: loaded.model,
        tokenizer: loaded.tokenizer,
        sampler,
        init_sequences,
        eval_windows: windows.ids.to_device(device),
    })
}

/// Joins `paths` for messages.
fn paths(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
}

/// Perplexity of the oracle's model under `mask` `[num_units]` (dense when `None`).
pub fn perplexity(oracle: &LlamaOracle, windows: &Tensor, mask: Option<&Tensor>, batch: usize) -> Result<Perplexity> {
    let result = match mask {
        None => perplexity_from_nll(windows, batch, |ids| oracle.model().next_token_nll(ids, None))?,
        Some(m) => {
            let masks = m.to_kind(tch::Kind::Float).unsqueeze(0); // [1, num_units]
            perplexity_from_nll(windows, batch, |ids| oracle.masked_next_token_nll(ids, &masks))?
        }
    };
    Ok(result)
}

/// Perplexity of a model without masks.
pub fn perplexity_dense(model: &Llama, windows: &Tensor, batch: usize) -> Result<Perplexity> {
    Ok(perplexity_from_nll(windows, batch, |ids| model.next_token_nll(ids, None))?)
}
