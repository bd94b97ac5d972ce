//! The model as a [`ForwardOracle`]: K masks scored in one batched forward.

use tch::{Kind, Tensor};

use super::masks::{layer_masks, Granularity};
use super::model::Llama;
use crate::error::{Error, Result};
use crate::oracle::ForwardOracle;
use crate::units::UnitSpace;

/// Maximum number of f32 logits materialised at once (2^26, 256 MiB). Rows of
/// the batched forward go through the LM head in chunks below this size.
const MAX_LOGIT_ELEMENTS: i64 = 1 << 26;

/// A model plus the units it exposes to a pruning loop.
pub struct LlamaOracle {
    model: Llama,
    granularity: Granularity,
    space: UnitSpace,
}

impl LlamaOracle {
    pub fn new(model: Llama, granularity: Granularity) -> Self {
        let space = granularity.unit_space(&model);
        Self { model, granularity, space }
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
        let k = masks.size().first().copied().unwrap_or(0);
        let (normed, batch_size) = self.masked_hidden(batch, masks)?;
        let rows = k * batch_size;
        let vocab = self.model.config.vocab_size;
        let targets = batch
            .f_to_device(self.model.device())?
            .f_narrow(1, 1, seq - 1)?
            .f_repeat([k, 1])?; // [rows, seq - 1]

        let chunk = (MAX_LOGIT_ELEMENTS / ((seq - 1) * vocab)).max(1);
        let mut sums = Vec::new();
        let mut start = 0;
        while start < rows {
            let len = chunk.min(rows - start);
            let h = normed.f_narrow(0, start, len)?.f_narrow(1, 0, seq - 1)?;
            let log_probs = self.model.lm_head_logits(&h)?.f_log_softmax(-1, Kind::Float)?; // [len, seq - 1, vocab]
            let t = targets.f_narrow(0, start, len)?.f_unsqueeze(-1)?;
            let nll = log_probs.f_gather(-1, &t, false)?.f_neg()?.f_sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)?; // [len]
            sums.push(nll);
            start += len;
        }

        let per_row = Tensor::f_cat(&sums, 0)?; // [rows]
        let per_mask = per_row
            .f_view([k, batch_size])?
            .f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?
            .f_div_scalar((batch_size * (seq - 1)) as f64)?
            .f_to_device(tch::Device::Cpu)?;
        Ok(Vec::<f64>::try_from(&per_mask)?)
    }
}
