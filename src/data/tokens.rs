//! Turning documents into one token stream.

use std::borrow::Cow;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Documents encoded per `encode_batch` call. Encodings carry offsets and
/// masks besides the ids, several times the ids' size, so chunks bound the
/// memory held at once while still giving the tokenizer's thread pool
/// enough documents to share out.
const ENCODE_CHUNK_DOCUMENTS: usize = 1024;

/// Separator placed between two documents in a token stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentSeparator {
    /// The tokens of this text. It is encoded on its own, so merges across a
    /// document boundary can differ from encoding the joined text.
    Text(String),
    /// One token id, for example the tokenizer's end-of-sequence token.
    Token(u32),
}

impl Default for DocumentSeparator {
    /// Returns a blank line, `"\n\n"`, the separator of the evaluation protocol,
    /// which any tokenizer can encode without knowing its special tokens.
    fn default() -> Self {
        DocumentSeparator::Text("\n\n".to_string())
    }
}

/// Options for encoding documents into a token stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizeOptions {
    /// Whether the tokenizer's post-processor adds its special tokens (a BOS
    /// token, for example) to every document. Off by default.
    pub add_special_tokens: bool,
    pub separator: DocumentSeparator,
}

/// Encodes `documents` and concatenates their ids with `options.separator`
/// between consecutive documents.
///
/// Padding and truncation configured in the tokenizer are switched off for
/// this call, because either would change the stream silently.
pub fn tokenize_documents<S: AsRef<str>>(
    tokenizer: &Tokenizer,
    documents: &[S],
    options: &TokenizeOptions,
) -> Result<Vec<i64>> {
    let tokenizer = plain_tokenizer(tokenizer)?;
    let separator: Vec<i64> = match &options.separator {
        DocumentSeparator::Text(text) => encode_one(&tokenizer, text, false)?,
        DocumentSeparator::Token(id) => vec![i64::from(*id)],
    };
    let mut stream = Vec::new();
    for (chunk_index, chunk) in documents.chunks(ENCODE_CHUNK_DOCUMENTS).enumerate() {
        let inputs: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
        let encodings = tokenizer
            .encode_batch(inputs, options.add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("encoding documents failed: {e}")))?;
        for (index, encoding) in encodings.iter().enumerate() {
            if chunk_index > 0 || index > 0 {
                stream.extend_from_slice(&separator);
            }
            stream.extend(encoding.get_ids().iter().map(|&id| i64::from(id)));
        }
    }
    tracing::debug!(
        documents = documents.len(),
        tokens = stream.len(),
        "tokenised documents"
    );
    Ok(stream)
}

/// Encodes one text as a whole, with special tokens if asked.
pub fn tokenize_text(
    tokenizer: &Tokenizer,
    text: &str,
    add_special_tokens: bool,
) -> Result<Vec<i64>> {
    encode_one(&*plain_tokenizer(tokenizer)?, text, add_special_tokens)
}

fn encode_one(tokenizer: &Tokenizer, text: &str, add_special_tokens: bool) -> Result<Vec<i64>> {
    let encoding = tokenizer
        .encode(text, add_special_tokens)
        .map_err(|e| Error::Tokenizer(format!("encoding text failed: {e}")))?;
    Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
}

/// Returns the tokenizer without padding or truncation, cloned only when it
/// has either.
fn plain_tokenizer(tokenizer: &Tokenizer) -> Result<Cow<'_, Tokenizer>> {
    if tokenizer.get_padding().is_none() && tokenizer.get_truncation().is_none() {
        return Ok(Cow::Borrowed(tokenizer));
    }
    let mut plain = tokenizer.clone();
    plain.with_padding(None);
    plain
        .with_truncation(None)
        .map_err(|e| Error::Tokenizer(format!("cannot switch truncation off: {e}")))?;
    Ok(Cow::Owned(plain))
}
