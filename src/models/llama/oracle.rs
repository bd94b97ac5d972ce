//! The model as a [`ForwardOracle`]: K masks scored by forward passes,
//! either sliced to each mask's kept units or batched with masks multiplied in.

use std::sync::Mutex;

use tch::{Kind, Tensor};

use super::kept::{kept_units, ForwardPath, KeptUnits, SLICE_BELOW_KEEP_FRACTION};
use super::loss::next_token_nll;
use super::mask_threads::{sliced_mask_loss, MaskThreads, MaskWorkers};
use super::masks::{layer_masks, Granularity};
use super::model::Llama;
use crate::error::{Error, Result};
use crate::oracle::ForwardOracle;
use crate::units::UnitSpace;

/// A model plus the units it exposes to a pruning loop.
pub struct LlamaOracle {
    model: Llama,
    granularity: Granularity,
    space: UnitSpace,
    path: ForwardPath,
    mask_threads: MaskThreads,
    /// Worker threads, started by the first call that runs masks on them.
    workers: Mutex<Option<MaskWorkers>>,
}

impl LlamaOracle {
    /// Wraps `model`, exposing the units of `granularity`; losses use
    /// [`ForwardPath::Auto`].
    pub fn new(model: Llama, granularity: Granularity) -> Self {
        let space = granularity.unit_space(&model);
        Self {
            model,
            granularity,
            space,
            path: ForwardPath::Auto,
            mask_threads: MaskThreads::Auto,
            workers: Mutex::new(None),
        }
    }

    /// Sets how the sliced forwards of one call share the CPU threads.
    pub fn with_mask_threads(mut self, mask_threads: MaskThreads) -> Self {
        self.mask_threads = mask_threads;
        self
    }

    pub fn mask_threads(&self) -> MaskThreads {
        self.mask_threads
    }

    /// Sets how [`ForwardOracle::losses`] evaluates masks.
    pub fn with_forward_path(mut self, path: ForwardPath) -> Self {
        self.path = path;
        self
    }

    pub fn forward_path(&self) -> ForwardPath {
        self.path
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }

    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Returns the model, dropping the unit space.
    pub fn into_model(self) -> Llama {
        self.model
    }

    /// Computes logits `[K * batch, seq, vocab]` of `tokens` `[batch, seq]`
    /// under `masks` `[K, num_units]`; row `k * batch + b` uses mask `k`.
    pub fn masked_logits(&self, tokens: &Tensor, masks: &Tensor) -> Result<Tensor> {
        let (normed, _batch) = self.masked_hidden(tokens, masks)?;
        self.model.lm_head_logits(&normed)
    }

    /// Computes the next-token losses `[K * batch, seq - 1]` (f32, nats) of
    /// `tokens` `[batch, seq]` under `masks` `[K, num_units]`, with the rows
    /// ordered as in [`LlamaOracle::masked_logits`] but without its logits.
    pub fn masked_next_token_nll(&self, tokens: &Tensor, masks: &Tensor) -> Result<Tensor> {
        let (normed, _batch) = self.masked_hidden(tokens, masks)?;
        let k = masks.size()[0];
        let targets = tokens.f_repeat([k, 1])?;
        next_token_nll(&self.model.lm_head, &normed, &targets)
    }

    fn masked_hidden(&self, tokens: &Tensor, masks: &Tensor) -> Result<(Tensor, i64)> {
        let (batch, _seq) = tokens.size2().map_err(|_| Error::Shape {
            what: "token batch (expected [batch, seq])".to_string(),
            expected: vec![-1, -1],
            found: tokens.size(),
        })?;
        let per_layer = layer_masks(&self.model, &self.space, masks, batch)?;
        let k = masks.size()[0];
        let repeated = tokens.f_repeat([k, 1])?; // [K * batch, seq]
        let hidden = self.model.embed(&repeated)?;
        Ok((self.model.final_hidden(&hidden, Some(&per_layer))?, batch))
    }
}

impl ForwardOracle for LlamaOracle {
    type Batch = Tensor;

    fn unit_space(&self) -> &UnitSpace {
        &self.space
    }

    fn losses(&self, batch: &Tensor, masks: &Tensor) -> Result<Vec<f64>> {
        let (_b, seq) = batch.size2().map_err(|_| Error::Shape {
            what: "token batch (expected [batch, seq])".to_string(),
            expected: vec![-1, -1],
            found: batch.size(),
        })?;
        if seq < 2 {
            return Err(Error::invalid("sequence length", seq, "need at least 2 tokens to predict a next token"));
        }

        let _guard = tch::no_grad_guard();
        match self.path {
            ForwardPath::Masked => self.masked_losses(batch, masks),
            ForwardPath::Auto => match kept_units(&self.model, &self.space, masks)? {
                Some(kept) => self.sliced_losses(batch, &kept, SLICE_BELOW_KEEP_FRACTION),
                None => self.masked_losses(batch, masks),
            },
            ForwardPath::Sliced => match kept_units(&self.model, &self.space, masks)? {
                // Every kept fraction is below infinity, so every masked block is sliced.
                Some(kept) => self.sliced_losses(batch, &kept, f64::INFINITY),
                None => Err(Error::invalid(
                    "masks",
                    "entries other than 0.0 and 1.0",
                    "the sliced forward path needs binary masks; use ForwardPath::Masked or Auto",
                )),
            },
        }
    }
}

impl LlamaOracle {
    /// Mean losses of K masks from one forward over `K * batch` rows.
    fn masked_losses(&self, batch: &Tensor, masks: &Tensor) -> Result<Vec<f64>> {
        let k = masks.size().first().copied().unwrap_or(0);
        let (batch_size, seq) = batch.size2()?;
        let per_row = self.masked_next_token_nll(batch, masks)?.f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?; // [K * batch]
        let per_mask = per_row
            .f_view([k, batch_size])?
            .f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?
            .f_div_scalar((batch_size * (seq - 1)) as f64)?
            .f_to_device(tch::Device::Cpu)?;
        Ok(Vec::<f64>::try_from(&per_mask)?)
    }

    /// Mean losses of K binary masks from one forward per mask, each block
    /// sliced to its kept units when its kept fraction is below `slice_below`.
    /// Masks run on worker threads as [`MaskThreads`] decides.
    fn sliced_losses(&self, batch: &Tensor, kept: &[Vec<KeptUnits>], slice_below: f64) -> Result<Vec<f64>> {
        let tokens = batch.f_to_device(self.model.device())?;
        let hidden = self.model.embed(&tokens)?; // [batch, seq, hidden]
        let threads = tch::get_num_threads();
        let workers = self.mask_threads.workers(kept.len(), threads, self.model.device());
        if workers > 1 {
            // A poisoned lock only means that an earlier call panicked, so the slot is still usable.
            let mut slot = self.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let pool = match slot.take().filter(|w| w.fits(workers, threads)) {
                Some(pool) => slot.insert(pool),
                None => slot.insert(MaskWorkers::start(&self.model, workers, threads)?),
            };
            return pool.losses(&hidden, &tokens, kept, slice_below);
        }
        kept.iter()
            .map(|mask_kept| sliced_mask_loss(&self.model, &hidden, &tokens, mask_kept, slice_below))
            .collect()
    }
}
