//! Times one pruning step of SmolLM2-135M on the CPU: K masks scored by
//! `LlamaOracle::losses`, plus a dense forward and a stand-in policy update.
//!
//! The model comes from the GGUF file at `$PGPRUNE_MODEL`. Prints one JSON
//! object per dtype on stdout. `scripts/bench/step_vs_reference.sh` runs it
//! beside the PyTorch reference with the same settings.
//!
//! The policy update is a stand-in for the real pruning loop, which lives in
//! another module: it samples K Bernoulli masks over the unit space from the
//! keep probabilities with a seeded RNG, then takes one score-function
//! gradient step on the probabilities from the K losses.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use pgprune::models::llama::{ForwardPath, Granularity, LlamaOracle};
use pgprune::models::loading::load_model;
use pgprune::ForwardOracle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Time pruning steps of a GGUF model on the CPU")]
struct Args {
    /// GGUF model file; defaults to $PGPRUNE_MODEL.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Sequences per calibration batch.
    #[arg(long, default_value_t = 8)]
    batch: i64,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq_len: i64,
    /// Masks scored per step.
    #[arg(long, default_value_t = 2)]
    k: usize,
    /// Fraction of units each sampled mask removes, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    sparsity: f64,
    /// Dtypes to time, comma-separated: f32, bf16.
    #[arg(long, default_value = "f32,bf16", value_delimiter = ',')]
    dtype: Vec<String>,
    /// Timed repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Oracle forward path: auto, masked or sliced.
    #[arg(long, default_value = "auto")]
    path: String,
    /// Intra-op threads for libtorch; defaults to the number of CPUs.
    #[arg(long)]
    threads: Option<i32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Peak resident memory of this process in MiB (`VmHWM`), if Linux reports it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time of this process, all threads, in seconds, from `/proc/self/stat`.
/// Less disturbed than wall time when other processes share the cores.
fn process_cpu_seconds() -> Option<f64> {
    // Clock ticks per second of utime and stime; 100 on Linux x86-64
    // (sysconf(_SC_CLK_TCK)), read here without a libc binding.
    const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SECOND)
}

/// Stand-in for the policy: keep probabilities and a score-function update.
struct StandInPolicy {
    keep: Vec<f32>,
    rng: ChaCha8Rng,
}

/// Learning rate of the stand-in update; any small value, its size does not
/// change the timing.
const STAND_IN_LEARNING_RATE: f32 = 1e-3;

impl StandInPolicy {
    /// Draws `k` Bernoulli masks `[k, num_units]` from the keep probabilities.
    fn sample(&mut self, k: usize) -> Tensor {
        let n = self.keep.len();
        let mut values = Vec::with_capacity(k * n);
        for _ in 0..k {
            for &p in &self.keep {
                values.push(if self.rng.random::<f32>() < p { 1.0f32 } else { 0.0 });
            }
        }
        Tensor::from_slice(&values).view([k as i64, n as i64])
    }

    /// One REINFORCE step with the mean loss as baseline, then clipping to [0, 1].
    fn update(&mut self, masks: &[f32], losses: &[f64]) {
        let n = self.keep.len();
        let baseline = losses.iter().sum::<f64>() / losses.len() as f64;
        for (k, &loss) in losses.iter().enumerate() {
            let advantage = (loss - baseline) as f32 / losses.len() as f32;
            let row = &masks[k * n..(k + 1) * n];
            for (p, &m) in self.keep.iter_mut().zip(row) {
                let score = m - *p;
                *p = (*p - STAND_IN_LEARNING_RATE * advantage * score).clamp(0.0, 1.0);
            }
        }
    }
}

fn time_dtype(args: &Args, path: &PathBuf, dtype: &str) -> Result<serde_json::Value> {
    let kind = match dtype {
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        other => anyhow::bail!("unknown dtype '{other}': use f32 or bf16"),
    };
    let loaded = load_model(path, kind, Device::Cpu).with_context(|| format!("loading {}", path.display()))?;
    let vocab = loaded.model.config.vocab_size;
    let path_choice = match args.path.as_str() {
        "auto" => ForwardPath::Auto,
        "masked" => ForwardPath::Masked,
        "sliced" => ForwardPath::Sliced,
        other => anyhow::bail!("unknown path '{other}': use auto, masked or sliced"),
    };
    let oracle = LlamaOracle::new(loaded.model, Granularity::new(true, true, false)?).with_forward_path(path_choice);
    let num_units = oracle.unit_space().num_units();
    tch::manual_seed(args.seed as i64);
    let tokens = Tensor::randint(vocab, [args.batch, args.seq_len], (Kind::Int64, Device::Cpu));
    let mut policy = StandInPolicy {
        keep: vec![(1.0 - args.sparsity) as f32; num_units],
        rng: ChaCha8Rng::seed_from_u64(args.seed),
    };

    let dense_mask = Tensor::ones([1, num_units as i64], (Kind::Float, Device::Cpu));
    oracle.losses(&tokens, &dense_mask)?; // warm-up
    let mut dense = Vec::new();
    for _ in 0..args.repeats {
        let start = Instant::now();
        oracle.losses(&tokens, &dense_mask)?;
        dense.push(start.elapsed().as_secs_f64());
    }

    let mut step = Vec::new();
    let mut step_cpu = Vec::new();
    let mut update = Vec::new();
    let mut losses_seen = Vec::new();
    for repeat in 0..=args.repeats {
        let cpu_start = process_cpu_seconds().unwrap_or(f64::NAN);
        let start = Instant::now();
        let masks = policy.sample(args.k);
        let sampled = start.elapsed().as_secs_f64();
        let losses = oracle.losses(&tokens, &masks)?;
        let before_update = Instant::now();
        let flat = Vec::<f32>::try_from(&masks.view([-1]))?;
        policy.update(&flat, &losses);
        let updated = before_update.elapsed().as_secs_f64();
        let total = start.elapsed().as_secs_f64();
        if repeat > 0 {
            // Repetition 0 is a warm-up.
            step.push(total);
            step_cpu.push(process_cpu_seconds().unwrap_or(f64::NAN) - cpu_start);
            update.push(sampled + updated);
            losses_seen.extend(losses);
        }
    }

    let step_median = median(step);
    let dense_median = median(dense);
    let update_median = median(update);
    Ok(serde_json::json!({
        "implementation": "pgprune",
        "dtype": dtype,
        "path": args.path,
        "threads": tch::get_num_threads(),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "k": args.k,
        "sparsity": args.sparsity,
        "repeats": args.repeats,
        "step_seconds": step_median,
        "step_cpu_seconds": median(step_cpu),
        "dense_forward_seconds": dense_median,
        "dense_tokens_per_second": (args.batch * args.seq_len) as f64 / dense_median,
        "policy_update_seconds": update_median,
        "policy_update_share": update_median / step_median,
        "mean_loss": losses_seen.iter().sum::<f64>() / losses_seen.len() as f64,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    anyhow::ensure!((0.0..=1.0).contains(&args.sparsity), "--sparsity {} must be in [0, 1]", args.sparsity);
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads);
    }
    let path = match &args.model {
        Some(p) => p.clone(),
        None => PathBuf::from(std::env::var("PGPRUNE_MODEL").context("set $PGPRUNE_MODEL or pass --model")?),
    };
    for dtype in &args.dtype {
        let report = time_dtype(&args, &path, dtype)?;
        println!("{report}");
    }
    Ok(())
}
