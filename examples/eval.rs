//! Measures the perplexity of a model on a text corpus by the protocol of
//! LLM-Pruner and FLAP. The documents are joined with blank lines, tokenised
//! once and cut into non-overlapping windows, and every next token counts.
//!
//!     cargo run --release --example eval -- --model PATH --text FILE --seq-len 128
//!
//! The last line of standard output is one JSON object with `ppl` and
//! `tokens` (the number of predicted tokens).

use std::path::PathBuf;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use pgprune::data::{evaluation_windows, read_corpora, CorpusFormat};
use pgprune::eval::perplexity_from_nll;
use pgprune::models::load_model;
use pgprune::runtime::{parse_device, retain_freed_memory, DType};

#[derive(Parser, Debug)]
#[command(about = "Perplexity of a model (Hugging Face folder or .gguf file) on text files")]
struct Args {
    /// Hugging Face model folder or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// Text files or folders to evaluate on.
    #[arg(long, num_args = 1.., required = true)]
    text: Vec<PathBuf>,
    /// Corpus format: auto, text, jsonl or brown.
    #[arg(long, default_value = "auto")]
    format: CorpusFormat,
    /// Tokens per evaluation window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Use at most this many tokens of the corpus.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Weight and activation type: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: DType,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Let the C allocator return freed memory to the system as usual,
    /// instead of keeping it for the next forward pass (which is faster).
    #[arg(long)]
    release_freed_memory: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if !args.release_freed_memory {
        retain_freed_memory();
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let device = parse_device(&args.device)?;
    let start = Instant::now();

    let loaded = load_model(&args.model, args.dtype.kind(), device)?;
    let documents = read_corpora(&args.text, args.format)?;
    let windows = evaluation_windows(&loaded.tokenizer, &documents, args.seq_len, args.max_tokens, false)?;
    let ids = windows.ids.to_device(device);
    let result = perplexity_from_nll(&ids, args.batch, |batch| loaded.model.next_token_nll(batch, None))?;

    let summary = serde_json::json!({
        "ppl": result.ppl,
        "tokens": result.tokens,
        "windows": result.windows,
        "mean_nll": result.mean_nll,
        "non_finite_tokens": result.non_finite_tokens,
        "seq_len": args.seq_len,
        "dtype": args.dtype.to_string(),
        "model": args.model.display().to_string(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    println!("{summary}");
    Ok(())
}
