//! Times CPU kernels side by side:
//!
//! - the two attention kernels of `pgprune::models::llama::attend`,
//!   libtorch's fused kernel and explicit matmuls;
//! - the loss `pgprune::models::llama::loss::next_token_nll_sums`, which
//!   tiles the LM head rows, against whole-vocabulary logits;
//! - linear maps of SmolLM2's shapes as libtorch's matmul and as a 1x1
//!   convolution (see `pgprune::models::llama::matmul`), in f32 and bf16.
//!
//! Each attention call attends 1,024 query positions (batch = 1,024 / seq,
//! at least one) with 64-dimensional heads, for 9, 6 and 3 query heads over
//! 3, 2 and 1 KV groups (SmolLM2's shape with all, two thirds and one third of its
//! groups kept). Prints one line per case with the medians and the ratio
//! explicit / fused; below 1.0 the explicit form is faster.
//!
//! The loss runs on SmolLM2's shapes (a 49,152 x 576 LM head, batch 8 x
//! 128) with random values. The whole-vocabulary form computes the logits
//! of up to 2^25 values at a time in the model dtype, upcasts them to f32 and
//! takes the log-sum-exp minus the target logit.
//!
//!     cargo bench --bench kernels -- [--threads N] [--repeats N]

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use pgprune::export::median;
use pgprune::models::llama::attend::{attend, AttentionKernel, AttentionMask};
use pgprune::models::llama::loss::next_token_nll_sums;
use pgprune::models::llama::matmul::{convolution_linear, linear};
use tch::{Device, Kind, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Time attention, loss and matmul kernels on the CPU")]
struct Args {
    /// Intra-op threads for libtorch. Defaults to the number of CPUs.
    #[arg(long)]
    threads: Option<i32>,
    /// Timed calls per case; the median is reported.
    #[arg(long, default_value_t = 21)]
    repeats: usize,
    /// Sections to run, comma-separated: attention, loss, matmul.
    #[arg(long, default_value = "attention,loss,matmul", value_delimiter = ',')]
    only: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Query positions per call.
const POSITIONS: i64 = 1024;
const HEAD_DIM: i64 = 64;
const GROUP_SIZE: i64 = 3;

/// Returns the median seconds of `repeats` attention calls with `kernel`.
fn time_kernel(kernel: AttentionKernel, q: &Tensor, k: &Tensor, v: &Tensor, repeats: usize) -> Result<f64> {
    let (_rows, _heads, seq, _dim) = q.size4()?;
    let mask = AttentionMask::for_kernel(kernel, seq, None, GROUP_SIZE, q.kind(), Device::Cpu)?;
    time_median(repeats, || Ok(attend(q, k, v, &mask)?))
}

/// Returns the median seconds of `repeats` calls of `f`, after one warm-up call.
fn time_median(repeats: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    let _warm_up = f()?;
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        let _output = f()?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(median(&seconds))
}

/// Computes whole-vocabulary next-token NLL sums per row, for comparison with the
/// library's tiled loss: logits of at most 2^25 values at a time, from the
/// same matmul library as the tiled loss.
fn whole_vocabulary_nll_sums(lm_head: &Tensor, normed: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (rows, seq, hidden) = normed.size3()?;
    let positions = rows * (seq - 1);
    let inputs = normed.f_narrow(1, 0, seq - 1)?.f_reshape([positions, hidden])?;
    let targets = tokens.f_narrow(1, 1, seq - 1)?.f_reshape([positions, 1])?;
    let chunk = ((1i64 << 25) / lm_head.size()[0]).max(1);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < positions {
        let len = chunk.min(positions - start);
        let mut logits = linear(&inputs.f_narrow(0, start, len)?, lm_head, None)?.f_to_kind(Kind::Float)?;
        let target_logit = logits.f_gather(1, &targets.f_narrow(0, start, len)?, false)?;
        let max = logits.f_amax(&[-1i64][..], true)?;
        let sum = logits.f_sub_(&max)?.f_exp_()?.f_sum_dim_intlist(&[-1i64][..], true, Kind::Float)?;
        parts.push(sum.f_log()?.f_add(&max)?.f_sub(&target_logit)?);
        start += len;
    }
    let nll = Tensor::f_cat(&parts, 0)?.f_view([rows, seq - 1])?;
    Ok(nll.f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?)
}

/// Times the tiled and whole-vocabulary losses on SmolLM2's shapes.
fn time_losses(repeats: usize) -> Result<()> {
    const VOCAB: i64 = 49_152;
    const HIDDEN: i64 = 576;
    println!("\nloss, batch 8 x 128, LM head {VOCAB} x {HIDDEN}");
    println!("{:<5} {:>18} {:>10} {:>7}", "dtype", "whole-vocab ms", "tiled ms", "ratio");
    for (kind, name) in [(Kind::Float, "f32"), (Kind::BFloat16, "bf16")] {
        let options = (kind, Device::Cpu);
        let lm_head = Tensor::f_randn([VOCAB, HIDDEN], options)?.f_mul_scalar(0.05)?;
        let normed = Tensor::f_randn([8, 128, HIDDEN], options)?;
        let tokens = Tensor::f_randint(VOCAB, [8, 128], (Kind::Int64, Device::Cpu))?;
        let whole = time_median(repeats, || whole_vocabulary_nll_sums(&lm_head, &normed, &tokens))?;
        let tiled = time_median(repeats, || Ok(next_token_nll_sums(&lm_head, &normed, &tokens)?))?;
        println!("{name:<5} {:>18.1} {:>10.1} {:>7.2}", whole * 1e3, tiled * 1e3, tiled / whole);
    }
    Ok(())
}

/// Output and input widths of the matmuls timed by [`time_matmuls`]:
/// SmolLM2's `gate_proj`, half of it, `down_proj` with half its inputs,
/// one KV group of `q_proj`, and one tile of the LM head.
const MATMUL_SHAPES: [(i64, i64); 5] = [(1536, 576), (768, 576), (576, 768), (192, 576), (4096, 576)];

/// Times `x W^T` as libtorch's matmul and as a 1x1 convolution, in f32 and
/// bf16, for `W` of each of [`MATMUL_SHAPES`] and `x` of 8 to 1,024 rows,
/// and prints GFLOP/s.
fn time_matmuls(repeats: usize) -> Result<()> {
    println!("\nx [rows, in] by W^T [in, out], GFLOP/s");
    println!("{:<5} {:>5} {:>5} {:>5} {:>9} {:>12} {:>7}", "dtype", "rows", "in", "out", "matmul", "convolution", "ratio");
    for (kind, name) in [(Kind::Float, "f32"), (Kind::BFloat16, "bf16")] {
        for rows in [8i64, 32, 128, 512, 1024] {
            for (outputs, inputs) in MATMUL_SHAPES {
                let x = Tensor::f_randn([rows, inputs], (kind, Device::Cpu))?;
                let weight = Tensor::f_randn([outputs, inputs], (kind, Device::Cpu))?;
                let matmul = time_median(repeats, || Ok(x.f_linear::<Tensor>(&weight, None)?))?;
                let convolution = time_median(repeats, || Ok(convolution_linear(&x, &weight, None)?))?;
                let gflop = 2.0 * (rows * inputs * outputs) as f64 / 1e9;
                println!(
                    "{name:<5} {rows:>5} {inputs:>5} {outputs:>5} {:>9.1} {:>12.1} {:>7.2}",
                    gflop / matmul,
                    gflop / convolution,
                    convolution / matmul
                );
            }
        }
    }
    Ok(())
}

/// Times both attention kernels for 1 to 3 KV groups at 128 to 1,024 tokens.
fn time_attention(repeats: usize) -> Result<()> {
    println!("{POSITIONS} query positions per call, head_dim {HEAD_DIM}");
    println!("{:<5} {:>5} {:>6} {:>9} {:>10} {:>13} {:>7}", "dtype", "seq", "heads", "kv_heads", "fused ms", "explicit ms", "ratio");
    for (kind, name) in [(Kind::Float, "f32"), (Kind::BFloat16, "bf16")] {
        for seq in [128i64, 256, 512, 1024] {
            let rows = (POSITIONS / seq).max(1);
            for kv_heads in [3i64, 2, 1] {
                let heads = kv_heads * GROUP_SIZE;
                let options = (kind, Device::Cpu);
                let q = Tensor::f_randn([rows, heads, seq, HEAD_DIM], options)?;
                let k = Tensor::f_randn([rows, kv_heads, seq, HEAD_DIM], options)?;
                let v = Tensor::f_randn([rows, kv_heads, seq, HEAD_DIM], options)?;
                let fused = time_kernel(AttentionKernel::Fused, &q, &k, &v, repeats)?;
                let explicit = time_kernel(AttentionKernel::Explicit, &q, &k, &v, repeats)?;
                println!(
                    "{name:<5} {seq:>5} {heads:>6} {kv_heads:>9} {:>10.3} {:>13.3} {:>7.2}",
                    fused * 1e3,
                    explicit * 1e3,
                    explicit / fused
                );
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    pgprune::runtime::retain_freed_memory();
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads);
    }
    let _guard = tch::no_grad_guard();
    tch::manual_seed(0);
    println!("threads {}", tch::get_num_threads());
    for section in &args.only {
        match section.as_str() {
            "attention" => time_attention(args.repeats)?,
            "loss" => time_losses(args.repeats)?,
            "matmul" => time_matmuls(args.repeats)?,
            other => anyhow::bail!("unknown section '{other}': use attention, loss or matmul"),
        }
    }
    Ok(())
}
