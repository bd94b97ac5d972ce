//! Conversion of a GGUF-embedded vocabulary to a `tokenizers::Tokenizer`.
//!
//! The result follows what transformers 4.57.1 builds for a GGUF file of
//! architecture `llama` (`GGUFLlamaConverter` in
//! `transformers/integrations/ggml.py`): a BPE model over the GGUF tokens
//! with byte fallback, every CONTROL token registered as a special token,
//! and
//! - for `tokenizer.ggml.model = gpt2`: GPT-2 byte-level pre-tokenization
//!   and decoding;
//! - for `tokenizer.ggml.model = llama` (SentencePiece): spaces replaced by
//!   `▁` with a `▁` prepended, and merges taken from the file or, when it
//!   has none, derived from the token scores.
//!
//! One difference: BOS is prepended only when `tokenizer.ggml.add_bos_token`
//! is true (as llama.cpp does), while transformers' GGUF loader prepends it
//! regardless.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, Tokenizer};

use super::{bool_key, number_array, string_array, token_id};
use crate::error::{Error, Result};
use crate::models::weights::gguf::{GgufFile, MetadataValue};

/// SentencePiece's word-boundary marker, U+2581.
const SPIECE_UNDERLINE: &str = "\u{2581}";
/// `tokenizer.ggml.token_type` value of a control token (BOS, EOS, chat
/// markers), llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`.
const TOKEN_TYPE_CONTROL: i64 = 3;

/// The vocabulary kinds of `tokenizer.ggml.model` that this module converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TokenizerModel {
    /// Byte-level BPE as in GPT-2 (`gpt2`).
    BytePairGpt2,
    /// SentencePiece BPE with byte fallback (`llama`).
    SentencePiece,
}

pub(super) fn tokenizer_model(file: &GgufFile) -> Result<TokenizerModel> {
    let model = file.get("tokenizer.ggml.model").and_then(MetadataValue::as_str);
    match model {
        Some("gpt2") => Ok(TokenizerModel::BytePairGpt2),
        Some("llama") => Ok(TokenizerModel::SentencePiece),
        other => Err(Error::Tokenizer(format!(
            "{}: tokenizer.ggml.model = {other:?} is not supported; expected \"gpt2\" or \"llama\"",
            file.path().display()
        ))),
    }
}

/// Returns whether BOS is prepended: `tokenizer.ggml.add_bos_token`, else llama.cpp's
/// default for the vocabulary kind (true for SentencePiece, false for GPT-2).
pub(super) fn adds_bos(file: &GgufFile, model: TokenizerModel) -> bool {
    bool_key(file, "tokenizer.ggml.add_bos_token")
        .unwrap_or(model == TokenizerModel::SentencePiece)
}

/// Builds a tokenizer from the vocabulary embedded in `file`.
///
/// Returns [`Error::Tokenizer`] if the file has no supported vocabulary and
/// [`Error::Format`] if its tokenizer metadata is malformed.
pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let model = tokenizer_model(file)?;
    let format_error = |reason: String| Error::Format {
        path: file.path().to_path_buf(),
        reason,
    };
    let tokens = string_array(file, "tokenizer.ggml.tokens")?
        .ok_or_else(|| format_error("tokenizer.ggml.tokens is missing".into()))?;
    let token_types = number_array(file, "tokenizer.ggml.token_type")?;
    if let Some(types) = &token_types {
        if types.len() != tokens.len() {
            return Err(format_error(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
    }
    let token_at = |key: &str| -> Result<Option<&str>> {
        match token_id(file, key)? {
            None => Ok(None),
            Some(id) => tokens.get(id as usize).copied().map(Some).ok_or_else(|| {
                format_error(format!("{key} = {id} is past the {} tokens", tokens.len()))
            }),
        }
    };
    let unk = token_at("tokenizer.ggml.unknown_token_id")?;
    let bos = token_at("tokenizer.ggml.bos_token_id")?;

    let merges = match string_array(file, "tokenizer.ggml.merges")? {
        Some(merges) => parse_merges(&merges).map_err(format_error)?,
        None if model == TokenizerModel::SentencePiece => {
            let scores = number_array(file, "tokenizer.ggml.scores")?.ok_or_else(|| {
                format_error("a llama vocabulary needs tokenizer.ggml.merges or tokenizer.ggml.scores".into())
            })?;
            merges_from_scores(&tokens, &scores).map_err(format_error)?
        }
        None => return Err(format_error("tokenizer.ggml.merges is missing".into())),
    };

    // Later duplicates win, as in the Python dict that transformers builds.
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    let bpe = builder
        .build()
        .map_err(|e| Error::Tokenizer(format!("failed to build the BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let special: Vec<AddedToken> = match &token_types {
        Some(types) => tokens
            .iter()
            .zip(types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL as f64)
            .map(|(token, _)| AddedToken::from(token.to_string(), true))
            .collect(),
        None => [unk, bos]
            .into_iter()
            .flatten()
            .map(|token| AddedToken::from(token.to_string(), true))
            .collect(),
    };
    tokenizer.add_special_tokens(&special);

    match model {
        TokenizerModel::BytePairGpt2 => configure_byte_level(file, &mut tokenizer),
        TokenizerModel::SentencePiece => configure_sentencepiece(file, &mut tokenizer)?,
    }

    if adds_bos(file, model) {
        let bos = bos.ok_or_else(|| {
            format_error("tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing".into())
        })?;
        let bos_id = vocab_id(&tokens, bos);
        let processor = TemplateProcessing::builder()
            .try_single(format!("{bos}:0 $A:0"))
            .and_then(|b| b.try_pair(format!("{bos}:0 $A:0 {bos}:1 $B:1")))
            .map_err(|e| Error::Tokenizer(format!("invalid BOS template: {e}")))?
            .special_tokens(vec![(bos.to_string(), bos_id)])
            .build()
            .map_err(|e| Error::Tokenizer(format!("invalid BOS template: {e}")))?;
        tokenizer.with_post_processor(Some(processor));
    }
    Ok(tokenizer)
}

fn vocab_id(tokens: &[&str], token: &str) -> u32 {
    // The last occurrence wins, matching the vocabulary map above.
    tokens.iter().rposition(|t| *t == token).unwrap_or(0) as u32
}

/// Byte-level BPE: GPT-2's pre-tokenizer regex and byte mapping. For the
/// `smollm` pre-tokenizer, llama.cpp (and SmolLM2's own tokenizer.json) also
/// splits every digit into its own piece first.
fn configure_byte_level(file: &GgufFile, tokenizer: &mut Tokenizer) {
    let byte_level = ByteLevel::new(false, false, true);
    let pre = file.get("tokenizer.ggml.pre").and_then(MetadataValue::as_str);
    if pre == Some("smollm") {
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            Digits::new(true).into(),
            byte_level.into(),
        ])));
    } else {
        // NOTE: other `tokenizer.ggml.pre` values (llama3, qwen2, deepseek,
        // ...) use their own split regexes in llama.cpp. They get GPT-2's
        // regex here, as in transformers' GGUF converter, which can split
        // some texts differently from llama.cpp.
        tokenizer.with_pre_tokenizer(Some(byte_level));
    }
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(true, true, true))));
}

/// SentencePiece: `▁` for spaces, an optional leading `▁`, byte fallback.
fn configure_sentencepiece(file: &GgufFile, tokenizer: &mut Tokenizer) -> Result<()> {
    let add_prefix_space = bool_key(file, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| Error::Tokenizer(format!("invalid replace pattern: {e}")))
    };
    let mut normalizers = Vec::new();
    if add_prefix_space {
        normalizers.push(Prepend::new(SPIECE_UNDERLINE.to_string()).into());
    }
    normalizers.push(replace(" ", SPIECE_UNDERLINE)?.into());
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));

    let mut decoders: Vec<DecoderWrapper> = vec![
        ByteFallback::new().into(),
        Fuse::new().into(),
        DecoderWrapper::Replace(replace(SPIECE_UNDERLINE, " ")?),
    ];
    if add_prefix_space {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(())
}

/// Splits GGUF merges (`"left right"`) into pairs.
fn parse_merges(merges: &[&str]) -> std::result::Result<Vec<(String, String)>, String> {
    merges
        .iter()
        .enumerate()
        .map(|(i, merge)| {
            merge
                .split_once(' ')
                .map(|(l, r)| (l.to_string(), r.to_string()))
                .ok_or_else(|| format!("tokenizer.ggml.merges[{i}] = {merge:?} has no space"))
        })
        .collect()
}

/// Derives BPE merges from SentencePiece scores, as transformers'
/// `GGUFTokenizerSkeleton` does: every split of a token into two tokens is a
/// merge ranked by the merged token's score (higher first), ties broken by
/// the scores of the two halves.
fn merges_from_scores(
    tokens: &[&str],
    scores: &[f64],
) -> std::result::Result<Vec<(String, String)>, String> {
    if scores.len() != tokens.len() {
        return Err(format!(
            "tokenizer.ggml.scores has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        ));
    }
    let score_of: HashMap<&str, f64> = tokens.iter().copied().zip(scores.iter().copied()).collect();
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &token in tokens {
        // A Python dict visits each distinct token once, with its last score.
        if !seen.insert(token) {
            continue;
        }
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| score_of.contains_key(l) && score_of.contains_key(r))
            .map(|(l, r)| (l, r, score_of[token]))
            .collect();
        local.sort_by(|a, b| {
            let key_a = (score_of[a.0], score_of[a.1]);
            let key_b = (score_of[b.0], score_of[b.1]);
            key_b.partial_cmp(&key_a).unwrap_or(std::cmp::Ordering::Equal)
        });
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    Ok(merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect())
}
