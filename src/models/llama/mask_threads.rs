//! Sliced forwards of several masks on concurrent threads.
//!
//! On the CPU, libtorch splits each operation over its intra-op threads.
//! Scoring K masks as independent forwards, each on its own thread with
//! fewer intra-op threads, avoids most of the waits between those threads.
//! On the 2-core AMD EPYC test machine (SmolLM2, batch 8 x 128, K = 2), in
//! step-bench runs alternating the two modes (`--mask-threads
//! auto,sequential`), a bf16 step took 0.876, 0.954 and 0.971 of its
//! sequential time. An f32 step took 0.932 and 0.933 in two runs, and 0.996
//! to 1.008 in three later ones, so in f32 the gain is within this machine's
//! noise. (Before single-thread f32 linear maps could run on oneDNN, see
//! [`matmul`](super::matmul), the f32 step took 0.953 and 1.042.)

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::JoinHandle;

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

/// One call's share of masks for one worker: `(index, kept units)` pairs.
type Share = Vec<(usize, Vec<KeptUnits>)>;

/// A request to a worker: score `share` on `hidden` and `tokens`.
struct Job {
    hidden: Tensor,
    tokens: Tensor,
    share: Share,
    slice_below: f64,
    reply: mpsc::Sender<(usize, Result<f64>)>,
}

/// Long-lived threads that run sliced forwards, each on a shallow clone of
/// the model with `threads / workers` libtorch threads.
///
/// They outlive each call, because setting libtorch's thread count, which
/// new threads must do, also empties oneDNN's per-thread convolution cache.
pub(super) struct MaskWorkers {
    /// The caller's libtorch thread count when the workers started.
    threads: i32,
    senders: Vec<mpsc::Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl MaskWorkers {
    /// Starts `workers` threads for a caller that uses `threads` libtorch
    /// threads, and sets this thread's count back to `threads` once they
    /// have set theirs.
    pub(super) fn start(model: &Llama, workers: usize, threads: i32) -> Result<Self> {
        let per_worker = (threads / workers as i32).max(1);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut pool = Self { threads, senders: Vec::with_capacity(workers), handles: Vec::with_capacity(workers) };
        let mut spawn_error = None;
        for w in 0..workers {
            let (tx, rx) = mpsc::channel::<Job>();
            let model = model.shallow_clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new().name(format!("pgprune-mask-{w}")).spawn(move || {
                // The first query runs libtorch's lazy per-thread set-up,
                // which would otherwise later reset the count set here.
                tch::get_num_threads();
                tch::set_num_threads(per_worker);
                let _ = ready.send(());
                // A worker that died before this point must close the channel.
                drop(ready);
                serve(&model, rx);
            });
            match spawned {
                Ok(handle) => {
                    pool.senders.push(tx);
                    pool.handles.push(handle);
                }
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        drop(ready_tx);

        // Wait for every started worker to set its count, even after a failed
        // start, so that this thread's reset of libtorch's default comes last.
        let all_ready = pool.handles.iter().all(|_| ready_rx.recv().is_ok());
        tch::set_num_threads(threads);
        if let Some(e) = spawn_error {
            return Err(Error::WorkerPanic { reason: format!("failed to start a worker thread: {e}") });
        }
        if !all_ready {
            return Err(Error::WorkerPanic { reason: "a worker thread stopped while starting".into() });
        }
        Ok(pool)
    }

    /// Returns whether these are `workers` running workers for a caller with `threads` threads.
    pub(super) fn fits(&self, workers: usize, threads: i32) -> bool {
        let alive = self.handles.iter().all(|h| !h.is_finished());
        alive && self.threads == threads && self.senders.len() == workers
    }

    /// Computes [`sliced_mask_loss`] for every mask of `kept`. Worker `w`
    /// takes masks `w`, `w + workers`, and so on.
    pub(super) fn losses(&self, hidden: &Tensor, tokens: &Tensor, kept: &[Vec<KeptUnits>], slice_below: f64) -> Result<Vec<f64>> {
        let workers = self.senders.len();
        let (reply, results) = mpsc::channel();
        for (w, sender) in self.senders.iter().enumerate() {
            let share: Share = kept.iter().enumerate().skip(w).step_by(workers).map(|(i, k)| (i, k.clone())).collect();
            let job = Job { hidden: hidden.shallow_clone(), tokens: tokens.shallow_clone(), share, slice_below, reply: reply.clone() };
            sender.send(job).map_err(|_| Error::WorkerPanic { reason: "a worker thread has stopped".into() })?;
        }
        drop(reply);
        let mut losses = vec![f64::NAN; kept.len()];
        for _ in 0..kept.len() {
            let (i, loss) = results.recv().map_err(|_| Error::WorkerPanic { reason: "a worker thread stopped before replying".into() })?;
            losses[i] = loss?;
        }
        Ok(losses)
    }
}

impl Drop for MaskWorkers {
    fn drop(&mut self) {
        self.senders.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for MaskWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskWorkers").field("threads", &self.threads).field("workers", &self.senders.len()).finish()
    }
}

/// Runs a worker's loop, which scores each job's masks until the sender is
/// dropped. A panic in one forward is sent back as [`Error::WorkerPanic`].
fn serve(model: &Llama, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        let _guard = tch::no_grad_guard();
        for (i, kept) in &job.share {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| sliced_mask_loss(model, &job.hidden, &job.tokens, kept, job.slice_below)));
            let loss = outcome.unwrap_or_else(|payload| {
                let reason = format!("panicked: {}", panic_message(payload.as_ref()));
                Err(Error::WorkerPanic { reason })
            });
            if job.reply.send((*i, loss)).is_err() {
                // The caller returned early after another mask's error.
                tracing::debug!(mask = i, "mask worker dropped a loss nobody waits for");
                break;
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
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
