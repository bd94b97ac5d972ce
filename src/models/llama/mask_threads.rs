//! Sliced forwards of several masks on concurrent threads.
//!
//! On the CPU, libtorch splits each operation over its intra-op threads.
//! Scoring K masks as independent forwards, each on its own thread with
//! fewer intra-op threads, avoids most of the waits between those threads.
//! On the 2-core AMD EPYC test machine (SmolLM2, batch 8 x 128, K = 2), in
//! step-bench runs alternating the two modes (`--mask-threads
//! auto,sequential`), a bf16 step took 0.876 and 0.954 of its sequential
//! time, and an f32 step 0.932 and 0.933. (Before single-thread f32 linear
//! maps could run on oneDNN, see [`matmul`](super::matmul), the f32 step
//! took 0.953 and 1.042.)

use tch::{Device, Kind, Tensor};

use super::kept::KeptUnits;
use super::loss::next_token_nll_sums;
use super::model::Llama;
use crate::error::{Error, Result};

/// The thread layout of the sliced forwards in one
/// [`LlamaOracle`](super::LlamaOracle) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskThreads {
    /// On the CPU, with at least two libtorch threads and two masks:
    /// `min(K, threads)` worker threads, each running its share of the masks
    /// with `threads / workers` libtorch threads. Otherwise one mask after
    /// another.
    #[default]
    Auto,
    /// One mask after another, each with all of libtorch's threads.
    Sequential,
}

impl MaskThreads {
    /// Returns the number of worker threads for `masks` masks on `device`
    /// when libtorch uses `threads` threads; 1 means no workers.
    pub fn workers(self, masks: usize, threads: i32, device: Device) -> usize {
        match self {
            MaskThreads::Auto if device == Device::Cpu => masks.min(threads.max(1) as usize).max(1),
            _ => 1,
        }
    }
}

/// Returns the mean next-token loss of `tokens` `[batch, seq]` under one
/// mask's kept units, from its sliced forward of the embeddings `hidden`.
pub(super) fn sliced_mask_loss(model: &Llama, hidden: &Tensor, tokens: &Tensor, kept: &[KeptUnits], slice_below: f64) -> Result<f64> {
    let (batch_size, seq) = tokens.size2()?;
    let normed = model.final_hidden_kept(hidden, kept, slice_below)?;
    let total = next_token_nll_sums(&model.lm_head, &normed, tokens)?.f_sum(Kind::Double)?;
    Ok(total.double_value(&[]) / (batch_size * (seq - 1)) as f64)
}

/// Computes [`sliced_mask_loss`] for every mask of `kept` on `workers`
/// threads. Worker `w` takes masks `w`, `w + workers`, and so on. Each worker
/// sets its own libtorch thread count, and this thread's count is set back
/// to `threads` afterwards, because libtorch also stores the last count
/// set as the default for new threads.
pub(super) fn concurrent_mask_losses(
    model: &Llama,
    hidden: &Tensor,
    tokens: &Tensor,
    kept: &[Vec<KeptUnits>],
    slice_below: f64,
    workers: usize,
    threads: i32,
) -> Result<Vec<f64>> {
    let per_worker = (threads / workers as i32).max(1);
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                // Handles that share storage, so that each thread owns what it reads.
                let model = model.shallow_clone();
                let hidden = hidden.shallow_clone();
                let tokens = tokens.shallow_clone();
                let share: Vec<(usize, Vec<KeptUnits>)> =
                    kept.iter().enumerate().skip(w).step_by(workers).map(|(i, k)| (i, k.clone())).collect();
                scope.spawn(move || -> Result<Vec<(usize, f64)>> {
                    tch::set_num_threads(per_worker);
                    let _guard = tch::no_grad_guard();
                    share
                        .iter()
                        .map(|(i, k)| Ok((*i, sliced_mask_loss(&model, &hidden, &tokens, k, slice_below)?)))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    // NOTE: after this, the next f32 policy update on this thread took 1.4 to
    // 23 ms in step-bench runs, against 0.8 to 1.3 ms without workers. Setting
    // the count from a helper thread instead did not help. The cause is not known.
    tch::set_num_threads(threads);

    let mut losses = vec![f64::NAN; kept.len()];
    for outcome in outcomes {
        let part = outcome.map_err(|panic| Error::WorkerPanic {
            reason: panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string()),
        })??;
        for (i, loss) in part {
            losses[i] = loss;
        }
    }
    Ok(losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_by_threads_and_device() {
        assert_eq!(MaskThreads::Auto.workers(2, 2, Device::Cpu), 2);
        assert_eq!(MaskThreads::Auto.workers(4, 2, Device::Cpu), 2);
        assert_eq!(MaskThreads::Auto.workers(2, 16, Device::Cpu), 2);
        assert_eq!(MaskThreads::Auto.workers(1, 2, Device::Cpu), 1);
        assert_eq!(MaskThreads::Auto.workers(2, 1, Device::Cpu), 1);
        assert_eq!(MaskThreads::Auto.workers(2, 2, Device::Cuda(0)), 1);
        assert_eq!(MaskThreads::Sequential.workers(4, 4, Device::Cpu), 1);
    }
}
