//! Text corpora and the token windows cut from them.
//!
//! [`read_corpus`] reads documents from plain text, JSON Lines (optionally
//! gzip-compressed) or the tagged Brown corpus. [`tokenize_documents`] turns
//! documents into one token stream, [`CalibrationSampler`] draws random
//! calibration batches from it, and [`evaluation_windows`] builds the
//! non-overlapping windows that perplexity is measured on.

mod brown;
mod readers;
mod tokens;
mod windows;

pub use readers::{
    corpus_files, detect_format, read_corpora, read_corpus, CorpusFormat, Document,
    SKIPPED_FILE_NAMES,
};
pub use tokens::{tokenize_documents, tokenize_text, DocumentSeparator, TokenizeOptions};
pub use windows::{
    evaluation_windows, windows_from_tokens, CalibrationSampler, EvaluationWindows,
    DEFAULT_EVAL_SEQ_LEN,
};
