//! Fixed-length token windows: random calibration batches and the
//! non-overlapping evaluation blocks of the perplexity protocol.

use rand::Rng;
use tch::Tensor;
use tokenizers::Tokenizer;

use super::tokens::tokenize_text;
use crate::error::{Error, Result};

/// Window length of the evaluation protocol that LLM-Pruner, FLAP and the
/// policy-gradient pruning paper report WikiText-2 perplexity with. Many
/// other papers use 2048, so results must state the length.
pub const DEFAULT_EVAL_SEQ_LEN: usize = 128;

/// Shortest window that predicts at least one token.
const MIN_SEQ_LEN: usize = 2;

fn check_seq_len(seq_len: usize) -> Result<()> {
    if seq_len < MIN_SEQ_LEN {
        return Err(Error::invalid(
            "sequence length",
            seq_len,
            format!("must be at least {MIN_SEQ_LEN} so that a window predicts a token"),
        ));
    }
    Ok(())
}

/// Draws calibration batches: `batch_size` windows of `seq_len` consecutive
/// tokens, each starting at a uniformly random position of a token stream
/// (see [`super::tokenize_documents`] for how documents are joined). Windows
/// may overlap and may span document boundaries.
#[derive(Debug, Clone)]
pub struct CalibrationSampler {
    tokens: Vec<i64>,
    seq_len: usize,
    batch_size: usize,
}

impl CalibrationSampler {
    /// Creates a sampler over `tokens`.
    ///
    /// Returns [`Error::Corpus`] if the stream is shorter than one window and
    /// [`Error::InvalidArgument`] for a zero batch size or a window shorter
    /// than two tokens.
    pub fn new(tokens: Vec<i64>, seq_len: usize, batch_size: usize) -> Result<Self> {
        check_seq_len(seq_len)?;
        if batch_size == 0 {
            return Err(Error::invalid(
                "batch size",
                batch_size,
                "must be at least 1",
            ));
        }
        if tokens.len() < seq_len {
            return Err(Error::Corpus {
                found: tokens.len(),
                needed: seq_len,
                hint: "add calibration text or shorten the sequence length".into(),
            });
        }
        Ok(Self {
            tokens,
            seq_len,
            batch_size,
        })
    }

    /// Draws one batch, an `i64` tensor of shape `[batch_size, seq_len]`.
    /// The same RNG state always gives the same batch.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Tensor {
        self.sample_windows(self.batch_size, rng)
    }

    /// Draws `count` windows as an `i64` tensor `[count, seq_len]`, for
    /// callers that need a batch size other than the sampler's.
    pub fn sample_windows<R: Rng + ?Sized>(&self, count: usize, rng: &mut R) -> Tensor {
        let last_start = self.tokens.len() - self.seq_len;
        let mut ids = Vec::with_capacity(count * self.seq_len);
        for _ in 0..count {
            let start = rng.random_range(0..=last_start);
            ids.extend_from_slice(&self.tokens[start..start + self.seq_len]);
        }
        // [count, seq]
        Tensor::from_slice(&ids).view([count as i64, self.seq_len as i64])
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Length of the token stream windows are drawn from.
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// Non-overlapping evaluation windows cut from one token stream.
#[derive(Debug)]
pub struct EvaluationWindows {
    /// Token ids, `i64` of shape `[num_windows, seq_len]`.
    pub ids: Tensor,
    pub seq_len: usize,
    /// Tokens in the stream before any cap.
    pub total_tokens: usize,
    /// Tokens left out after the `max_tokens` cap.
    pub capped_tokens: usize,
    /// Tokens after the last whole window, left out because a shorter window
    /// would weigh its tokens differently.
    pub dropped_tail_tokens: usize,
}

impl EvaluationWindows {
    pub fn num_windows(&self) -> usize {
        self.ids.size().first().map_or(0, |&n| n as usize)
    }

    /// Tokens inside the windows.
    pub fn used_tokens(&self) -> usize {
        self.num_windows() * self.seq_len
    }
}

/// Builds the evaluation windows of the WikiText-2 perplexity protocol:
/// joins the documents with `"\n\n"`, encodes the result once, optionally
/// keeps only the first `max_tokens` tokens, and cuts the stream into
/// non-overlapping windows of `seq_len` tokens, dropping the incomplete tail.
///
/// With [`super::CorpusFormat::Text`] documents (one per raw line) this is
/// the join over the lines of `wiki.test.raw` that LLM-Pruner and FLAP
/// perform. `add_special_tokens` adds the tokenizer's special tokens once, at
/// the start of the stream, as those scripts' Hugging Face call does.
pub fn evaluation_windows<S: AsRef<str>>(
    tokenizer: &Tokenizer,
    documents: &[S],
    seq_len: usize,
    max_tokens: Option<usize>,
    add_special_tokens: bool,
) -> Result<EvaluationWindows> {
    check_seq_len(seq_len)?;
    let joined = documents
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join("\n\n");
    // NOTE: the whole text is encoded even when `max_tokens` keeps a prefix,
    // because encoding a cut text could change the last tokens before the cap.
    let tokens = tokenize_text(tokenizer, &joined, add_special_tokens)?;
    windows_from_tokens(&tokens, seq_len, max_tokens)
}

/// Cuts a token stream into evaluation windows; see [`evaluation_windows`].
///
/// Returns [`Error::Corpus`] when fewer than `seq_len` tokens are available
/// and [`Error::InvalidArgument`] when `max_tokens` is below `seq_len`.
pub fn windows_from_tokens(
    tokens: &[i64],
    seq_len: usize,
    max_tokens: Option<usize>,
) -> Result<EvaluationWindows> {
    check_seq_len(seq_len)?;
    if let Some(cap) = max_tokens {
        if cap < seq_len {
            return Err(Error::invalid(
                "max evaluation tokens",
                cap,
                format!("must be at least the sequence length {seq_len}"),
            ));
        }
    }

    let total_tokens = tokens.len();
    let available = max_tokens.map_or(total_tokens, |cap| cap.min(total_tokens));
    if available < seq_len {
        return Err(Error::Corpus {
            found: available,
            needed: seq_len,
            hint: "add evaluation text or shorten the sequence length".into(),
        });
    }

    let num_windows = available / seq_len;
    let used = num_windows * seq_len;
    let dropped_tail_tokens = available - used;
    if dropped_tail_tokens > 0 {
        tracing::info!(
            dropped_tail_tokens,
            seq_len,
            "dropped the tokens after the last whole evaluation window"
        );
    }
    // [windows, seq]
    let ids = Tensor::from_slice(&tokens[..used]).view([num_windows as i64, seq_len as i64]);
    Ok(EvaluationWindows {
        ids,
        seq_len,
        total_tokens,
        capped_tokens: total_tokens - available,
        dropped_tail_tokens,
    })
}
