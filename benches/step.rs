//! Times one pruning step of SmolLM2-135M on the CPU: K masks scored by
//! `LlamaOracle::losses`, plus a dense forward and a stand-in policy update.
//!
//! The model comes from the GGUF file at `$PGPRUNE_MODEL`. Prints one JSON
//! object per dtype on stdout. `scripts/bench/step_vs_reference.sh` runs it
//! beside the PyTorch reference with the same settings.
//!
//! A step is `Pruner::step` with the reference settings (EMA baseline,
//! square-root denominator, SGD, per-kind budgets). The policy update is
//! that step's time minus the time of the oracle's forward passes.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use pgprune::models::llama::{set_linear_kernel, ForwardPath, Granularity, LinearKernel, LlamaOracle, MaskThreads};
use pgprune::models::loading::load_model;
use pgprune::export::median;
use pgprune::{BernoulliPolicy, BudgetKind, EmaReinforce, ForwardOracle, Pruner, PrunerSettings, UnitSpace};
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
    /// Kernels for f32 CPU linear maps, comma-separated: auto, matmul,
    /// convolution. Lists of several variants alternate (see `mask_threads`).
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    linear_kernel: Vec<String>,
    /// Thread layouts of the K sliced forwards, comma-separated: auto,
    /// sequential. With more than one entry here or in `linear_kernel`,
    /// repetitions alternate between the variants (a list of one entry
    /// applies to every variant), and the report adds each variant's
    /// medians. The main figures are the first variant's.
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    mask_threads: Vec<String>,
    /// Intra-op threads for libtorch; defaults to the number of CPUs.
    #[arg(long)]
    threads: Option<i32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Leave the C allocator's defaults, which return large freed blocks to
    /// the system, instead of calling `retain_freed_memory`.
    #[arg(long)]
    release_freed_memory: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Reads a memory field of `/proc/self/status` (`VmHWM`, `VmRSS`) in MiB,
/// if Linux reports it.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let prefix = format!("{field}:");
    let line = status.lines().find(|l| l.starts_with(&prefix))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Peak resident memory of this process in MiB (`VmHWM`), if Linux reports it.
fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM")
}

/// Resets the peak resident memory (`VmHWM`) to the current resident size,
/// so that a later [`peak_rss_mib`] covers only what runs after this call.
/// Returns whether Linux accepted the reset.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Returns the size in MiB of the model's weights as stored, from every named tensor.
fn weights_mib(model: &pgprune::models::llama::Llama) -> f64 {
    let bytes: usize = pgprune::models::llama::save::named_tensors(model)
        .iter()
        .map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes())
        .sum();
    bytes as f64 / (1024.0 * 1024.0)
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

/// Wraps the oracle to time its forward passes, so that the rest of a
/// pruner step (sampling, estimate, update, projection) can be timed on its own.
struct TimedOracle {
    /// One oracle per variant, all sharing the model's weights.
    variants: Vec<LlamaOracle>,
    current: Cell<usize>,
    forward_seconds: Cell<f64>,
}

impl ForwardOracle for TimedOracle {
    type Batch = Tensor;

    fn unit_space(&self) -> &UnitSpace {
        self.variants[0].unit_space()
    }

    fn losses(&self, batch: &Tensor, masks: &Tensor) -> pgprune::Result<Vec<f64>> {
        let start = Instant::now();
        let losses = self.variants[self.current.get()].losses(batch, masks);
        self.forward_seconds.set(start.elapsed().as_secs_f64());
        losses
    }
}

/// Learning rate of the timed pruner; its size does not change the timing.
const LEARNING_RATE: f64 = 0.2;

/// One configuration that the bench times: a linear kernel and a mask-thread mode.
#[derive(Debug, Clone, Copy)]
struct Variant {
    kernel: LinearKernel,
    mask_threads: MaskThreads,
}

impl Variant {
    fn label(&self) -> String {
        format!("{:?}/{:?}", self.kernel, self.mask_threads).to_lowercase()
    }
}

/// Looks up each of `names`, given to `flag`, in `choices`.
fn parse_choices<T: Copy>(flag: &str, names: &[String], choices: &[(&str, T)]) -> Result<Vec<T>> {
    names
        .iter()
        .map(|name| match choices.iter().find(|(known, _)| known == name) {
            Some(&(_, value)) => Ok(value),
            None => {
                let known: Vec<&str> = choices.iter().map(|(known, _)| *known).collect();
                anyhow::bail!("invalid {flag} '{name}': use one of {}", known.join(", "))
            }
        })
        .collect()
}

/// Parses `--linear-kernel` and `--mask-threads` into variants; a list of
/// one entry applies to every variant.
fn variants(args: &Args) -> Result<Vec<Variant>> {
    let kernel_choices = [("auto", LinearKernel::Auto), ("matmul", LinearKernel::Matmul), ("convolution", LinearKernel::Convolution)];
    let kernels = parse_choices("--linear-kernel", &args.linear_kernel, &kernel_choices)?;
    let mode_choices = [("auto", MaskThreads::Auto), ("sequential", MaskThreads::Sequential)];
    let modes = parse_choices("--mask-threads", &args.mask_threads, &mode_choices)?;
    let count = kernels.len().max(modes.len());
    let pick = |len: usize, i: usize| if len == 1 { 0 } else { i };
    anyhow::ensure!(
        [kernels.len(), modes.len()].iter().all(|&n| n == 1 || n == count),
        "--linear-kernel and --mask-threads need the same number of entries, or one"
    );
    Ok((0..count)
        .map(|i| Variant {
            kernel: kernels[pick(kernels.len(), i)],
            mask_threads: modes[pick(modes.len(), i)],
        })
        .collect())
}

fn time_dtype(args: &Args, path: &Path, dtype: &str, retained: bool) -> Result<serde_json::Value> {
    let variants = variants(args)?;
    let kind = match dtype {
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        other => anyhow::bail!("unknown dtype '{other}': use f32 or bf16"),
    };
    let baseline = status_mib("VmRSS");
    let loaded = load_model(path, kind, Device::Cpu).with_context(|| format!("loading {}", path.display()))?;
    let vocab = loaded.model.config.vocab_size;
    let weights = weights_mib(&loaded.model);
    // Peak memory from here on covers the forwards and steps, not loading.
    let load_peak = peak_rss_mib();
    pgprune::runtime::trim_freed_memory();
    let after_load = status_mib("VmRSS");
    let step_peak_measured = reset_peak_rss();
    let path_choice = match args.path.as_str() {
        "auto" => ForwardPath::Auto,
        "masked" => ForwardPath::Masked,
        "sliced" => ForwardPath::Sliced,
        other => anyhow::bail!("unknown path '{other}': use auto, masked or sliced"),
    };
    let granularity = Granularity::new(true, true, false)?;
    let timed = TimedOracle {
        variants: variants
            .iter()
            .map(|v| {
                LlamaOracle::new(loaded.model.shallow_clone(), granularity)
                    .with_forward_path(path_choice)
                    .with_mask_threads(v.mask_threads)
            })
            .collect(),
        current: Cell::new(0),
        forward_seconds: Cell::new(0.0),
    };
    let num_units = timed.unit_space().num_units();
    tch::manual_seed(args.seed as i64);
    let tokens = Tensor::randint(vocab, [args.batch, args.seq_len], (Kind::Int64, Device::Cpu));
    let dense_mask = Tensor::ones([1, num_units as i64], (Kind::Float, Device::Cpu));
    // dense[v] and step[v] hold the timings of variants[v].
    let mut dense = vec![Vec::new(); variants.len()];
    for repeat in 0..=args.repeats {
        for (c, variant) in variants.iter().enumerate() {
            set_linear_kernel(variant.kernel);
            timed.current.set(c);
            let start = Instant::now();
            timed.losses(&tokens, &dense_mask)?;
            if repeat > 0 {
                // Repetition 0 is a warm-up.
                dense[c].push(start.elapsed().as_secs_f64());
            }
        }
    }

    let space = timed.unit_space().clone();
    let budgets = space.budgets(BudgetKind::PerKind, 1.0 - args.sparsity)?;
    let policy = BernoulliPolicy::constant(&space, budgets, 1.0 - args.sparsity)?;
    let total_steps = (args.repeats as u64 + 1) * variants.len() as u64;
    let settings = PrunerSettings::reference(total_steps, LEARNING_RATE, args.seed);
    let mut pruner = Pruner::new(policy, timed, EmaReinforce::reference(), settings)?;

    let mut step = vec![Vec::new(); variants.len()];
    let mut step_cpu = Vec::new();
    let mut update = Vec::new();
    let mut losses_seen = Vec::new();
    for repeat in 0..=args.repeats {
        for (c, variant) in variants.iter().enumerate() {
            set_linear_kernel(variant.kernel);
            pruner.oracle().current.set(c);
            let cpu_start = process_cpu_seconds().unwrap_or(f64::NAN);
            let start = Instant::now();
            let outcome = pruner.step(&tokens)?;
            let total = start.elapsed().as_secs_f64();
            if repeat > 0 {
                step[c].push(total);
                if c == 0 {
                    step_cpu.push(process_cpu_seconds().unwrap_or(f64::NAN) - cpu_start);
                    update.push(total - pruner.oracle().forward_seconds.get());
                    losses_seen.extend(outcome.losses);
                }
            }
        }
    }
    let by_variant: serde_json::Map<String, serde_json::Value> = variants
        .iter()
        .zip(step.iter().zip(&dense))
        .map(|(v, (s, d))| (v.label(), serde_json::json!({"step_seconds": median(s), "dense_forward_seconds": median(d)})))
        .collect();

    let step_median = median(&step[0]);
    let dense_median = median(&dense[0]);
    let update_median = median(&update);
    Ok(serde_json::json!({
        "implementation": "pgprune",
        "retain_freed_memory": retained,
        "dtype": dtype,
        "path": args.path,
        "variant": variants[0].label(),
        "medians_by_variant": by_variant,
        "threads": tch::get_num_threads(),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "k": args.k,
        "sparsity": args.sparsity,
        "repeats": args.repeats,
        "step_seconds": step_median,
        "step_cpu_seconds": median(&step_cpu),
        "dense_forward_seconds": dense_median,
        "dense_tokens_per_second": (args.batch * args.seq_len) as f64 / dense_median,
        "policy_update_seconds": update_median,
        "policy_update_share": update_median / step_median,
        "policy_update_max_seconds": update.iter().copied().fold(0.0, f64::max),
        "mean_loss": losses_seen.iter().sum::<f64>() / losses_seen.len() as f64,
        "peak_rss_mib": load_peak.zip(peak_rss_mib()).map(|(a, b)| a.max(b)),
        "weights_mib": weights,
        "rss_before_load_mib": baseline,
        "rss_after_load_mib": after_load,
        "peak_rss_after_load_mib": if step_peak_measured { peak_rss_mib() } else { None },
    }))
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    anyhow::ensure!((0.0..=1.0).contains(&args.sparsity), "--sparsity {} must be in [0, 1]", args.sparsity);
    let retained = !args.release_freed_memory && pgprune::runtime::retain_freed_memory();
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads);
    }
    variants(&args)?;
    let path = match &args.model {
        Some(p) => p.clone(),
        None => PathBuf::from(std::env::var("PGPRUNE_MODEL").context("set $PGPRUNE_MODEL or pass --model")?),
    };
    for dtype in &args.dtype {
        let report = time_dtype(&args, &path, dtype, retained)?;
        println!("{report}");
    }
    Ok(())
}
