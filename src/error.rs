//! The crate's error type.

use std::path::PathBuf;

/// Errors returned by pgprune. Each variant carries the offending value and,
/// where one exists, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A user-facing setting is outside its valid range.
    #[error("invalid {name} = {value}: {expected}")]
    InvalidArgument {
        name: &'static str,
        value: String,
        expected: String,
    },

    /// A budget cannot be met by any keep probabilities in [0, 1].
    #[error("infeasible budget '{budget}': target {target} is outside [0, {max}]; choose a keep ratio in [0, 1]")]
    InfeasibleBudget {
        budget: String,
        target: f64,
        max: f64,
    },

    /// Two shapes that must agree do not.
    #[error("shape mismatch for {what}: expected {expected:?}, found {found:?}")]
    Shape {
        what: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },

    /// A model configuration field is missing or invalid.
    #[error("invalid model config field '{field}' = {value}: {reason}")]
    Config {
        field: String,
        value: String,
        reason: String,
    },

    /// A tensor that the model needs is absent from its files.
    #[error("tensor '{name}' not found in {file}")]
    MissingTensor { name: String, file: PathBuf },

    /// A tensor has a shape other than the config implies.
    #[error("tensor '{name}' in {file} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        file: PathBuf,
        expected: Vec<i64>,
        found: Vec<i64>,
    },

    /// A file is truncated, corrupt or in an unsupported format.
    #[error("cannot read {path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// Too little text to do what was requested.
    #[error("corpus too small: found {found} tokens, need at least {needed}; {hint}")]
    Corpus {
        found: usize,
        needed: usize,
        hint: String,
    },

    /// A checkpoint does not match the run that tries to resume from it.
    #[error("checkpoint {path} does not match this run: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    /// Every sampled loss of a step was NaN or infinite.
    #[error("step {step}: all {count} losses were NaN or infinite")]
    NoFiniteLoss { step: u64, count: usize },

    /// An I/O operation on a path failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An error from libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),

    /// A JSON document could not be parsed or written.
    #[error("JSON error in {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },

    /// The tokenizer failed to load or to encode text.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// An output folder already has files in it and overwriting was not
    /// allowed.
    #[error("output folder {path} already exists and is not empty; choose another folder or allow overwriting it (the `overwrite` option)")]
    OutputExists { path: PathBuf },

    /// A thread that ran forward passes panicked, stopped or failed to start.
    #[error("a forward worker thread failed: {reason}; set MaskThreads::Sequential on the oracle to run the masks on the calling thread")]
    WorkerPanic { reason: String },

    /// Drawing a chart failed.
    #[error("cannot draw chart: {reason}")]
    Chart { reason: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::InvalidArgument`].
    pub fn invalid(name: &'static str, value: impl ToString, expected: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
