//! Command-line arguments of the `prune` example.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use pgprune::data::CorpusFormat;
use pgprune::estimator::EstimatorChoice;
use pgprune::init::InitMethod;
use pgprune::models::llama::Granularity;
use pgprune::optim::{LrSchedule, OptimizerKind};
use pgprune::runtime::DType;
use pgprune::BudgetKind;

#[derive(Parser, Debug, Clone)]
// Negative numbers parse as values, so `--sparsity -0.1` reaches validation
// and gets a message about the range, not "unexpected argument '-0'".
#[command(allow_negative_numbers = true)]
#[command(about = "Prune a LLaMA-family model structurally by policy gradient over keep probabilities")]
pub struct Args {
    /// Hugging Face model folder or .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration text: files or folders.
    #[arg(long, num_args = 1.., required = true)]
    pub calib: Vec<PathBuf>,
    /// Held-out evaluation text: files or folders, disjoint from --calib.
    #[arg(long, num_args = 1.., required = true)]
    pub eval: Vec<PathBuf>,
    /// Fraction of each budget's units to remove, in [0, 1).
    #[arg(long)]
    pub sparsity: f64,
    /// Output folder for the compact model, report.json and the chart.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists and is not empty.
    #[arg(long)]
    pub overwrite: bool,

    /// Policy-gradient steps.
    #[arg(long, default_value_t = 400)]
    pub steps: u64,
    /// Calibration sequences per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per calibration sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Masks sampled per step (K); they run in one batched forward.
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    /// Base learning rate of the keep probabilities.
    #[arg(long, default_value_t = 0.2)]
    pub lr: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub schedule: ScheduleArg,
    /// Warm-up steps of --schedule warmup-cosine.
    #[arg(long, default_value_t = 10)]
    pub warmup_steps: u64,
    /// Optimiser of the keep probabilities.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    pub optimizer: OptimizerArg,
    /// Gradient estimator: ema (the reference's), ema-exact, rloo or none.
    #[arg(long, default_value = "ema")]
    pub estimator: EstimatorChoice,
    /// Window of the EMA baseline (its weight is 1 / window).
    #[arg(long, default_value_t = 5.0)]
    pub baseline_window: f64,
    /// Strength of the penalty that pushes probabilities to 0 or 1 (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub penalty: f64,

    /// Initial keep probabilities.
    #[arg(long, value_enum, default_value_t = InitArg::WandaSp)]
    pub init: InitArg,
    /// Calibration sequences for the Wanda-sp statistics.
    #[arg(long, default_value_t = 64)]
    pub init_samples: usize,
    /// Units to prune: heads, channels, blocks, comma-separated.
    #[arg(long, default_value = "heads,channels")]
    pub granularity: String,
    /// per-kind: each unit kind loses exactly --sparsity of its units (the
    /// reference); global: one budget weighted by parameter count.
    #[arg(long, value_enum, default_value_t = BudgetArg::PerKind)]
    pub budget: BudgetArg,

    /// Format of the calibration files: auto, text, jsonl or brown.
    #[arg(long, default_value = "auto")]
    pub calib_format: CorpusFormat,
    /// Format of the evaluation files: auto, text, jsonl or brown.
    #[arg(long, default_value = "auto")]
    pub eval_format: CorpusFormat,
    /// Tokens per evaluation window (128 as LLM-Pruner and FLAP report).
    #[arg(long, default_value_t = 128)]
    pub eval_seq_len: usize,
    /// Evaluate on at most this many tokens of --eval.
    #[arg(long, default_value_t = 16384)]
    pub eval_max_tokens: usize,
    /// Windows per evaluation forward pass.
    #[arg(long, default_value_t = 8)]
    pub eval_batch: usize,

    /// Seed of every random choice (masks, calibration windows).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight and activation type: f32, bf16 or f16.
    #[arg(long, default_value = "bf16")]
    pub dtype: DType,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Let the C allocator return freed memory to the system as usual,
    /// instead of keeping it for the next forward pass (which is faster).
    #[arg(long)]
    pub release_freed_memory: bool,
    /// Write a checkpoint every N steps (0 = never) to OUT.checkpoint.json.
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: u64,
    /// Continue from OUT.checkpoint.json, written by an interrupted run with
    /// the same settings.
    #[arg(long)]
    pub resume: bool,
    /// Testing aid: stop after this many steps in total and keep the
    /// checkpoint without writing --out, as an interrupted run would.
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Cosine,
    WarmupCosine,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adam,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitArg {
    WandaSp,
    Magnitude,
    Constant,
    Random,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BudgetArg {
    PerKind,
    Global,
}

impl Args {
    pub fn schedule(&self) -> LrSchedule {
        match self.schedule {
            ScheduleArg::Constant => LrSchedule::Constant,
            ScheduleArg::Cosine => LrSchedule::Cosine,
            ScheduleArg::WarmupCosine => LrSchedule::WarmupCosine {
                warmup_steps: self.warmup_steps,
            },
        }
    }

    pub fn optimizer(&self) -> OptimizerKind {
        match self.optimizer {
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Adam => OptimizerKind::adam(),
        }
    }

    pub fn init(&self) -> InitMethod {
        match self.init {
            InitArg::WandaSp => InitMethod::WandaSp,
            InitArg::Magnitude => InitMethod::Magnitude,
            InitArg::Constant => InitMethod::Constant,
            InitArg::Random => InitMethod::Random,
        }
    }

    pub fn budget(&self) -> BudgetKind {
        match self.budget {
            BudgetArg::PerKind => BudgetKind::PerKind,
            BudgetArg::Global => BudgetKind::Global,
        }
    }

    /// Parses `--granularity`, rejecting unknown names.
    pub fn granularity(&self) -> anyhow::Result<Granularity> {
        let (mut heads, mut channels, mut blocks) = (false, false, false);
        for name in self.granularity.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "heads" => heads = true,
                "channels" => channels = true,
                "blocks" => blocks = true,
                other => anyhow::bail!(
                    "invalid --granularity entry '{other}': use heads, channels or blocks, comma-separated"
                ),
            }
        }
        if !(heads || channels || blocks) {
            anyhow::bail!(
                "invalid --granularity '{}': name at least one of heads, channels or blocks, comma-separated",
                self.granularity
            );
        }
        Ok(Granularity::new(heads, channels, blocks)?)
    }

    /// Checks the numeric settings that no library type validates.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..1.0).contains(&self.sparsity) {
            anyhow::bail!(
                "invalid --sparsity {}: use a fraction in [0, 1), for example 0.3 to remove 30% of the units",
                self.sparsity
            );
        }
        for (name, value) in [
            ("--batch", self.batch),
            ("--seq-len", self.seq_len),
            ("--k", self.k),
            ("--init-samples", self.init_samples),
            ("--eval-seq-len", self.eval_seq_len),
            ("--eval-batch", self.eval_batch),
        ] {
            if value == 0 {
                anyhow::bail!("invalid {name} 0: use a positive integer");
            }
        }
        if self.steps == 0 {
            anyhow::bail!("invalid --steps 0: run at least one step");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            anyhow::bail!("invalid --lr {}: use a finite learning rate above 0, for example 0.2", self.lr);
        }
        if self.seq_len < 2 || self.eval_seq_len < 2 {
            anyhow::bail!("invalid sequence length: --seq-len and --eval-seq-len need at least 2 tokens");
        }
        Ok(())
    }
}
