//! The LLaMA family (LLaMA 1/2/3/3.1, Vicuna, Mistral): configuration,
//! masked batched forward, the loss oracle, compaction and saving.

pub mod attend;
pub mod attention;
pub mod compact;
pub mod config;
pub mod kept;
pub mod layer;
pub mod linear;
pub mod loss;
pub mod matmul;
pub mod mask_threads;
pub mod masks;
pub mod mlp;
pub mod model;
pub mod oracle;
pub mod rope;
pub mod save;

pub use compact::compact;
pub use config::{HfLlamaConfig, LayerSizes, LlamaConfig, RopeScaling};
pub use kept::{kept_units, ForwardPath, KeptUnits, SLICE_BELOW_KEEP_FRACTION};
pub use layer::{DecoderLayer, LayerMasks, LayerTaps};
pub use mask_threads::MaskThreads;
pub use masks::{layer_masks, Granularity};
pub use matmul::{linear_kernel, set_linear_kernel, LinearKernel};
pub use model::Llama;
pub use oracle::LlamaOracle;
pub use save::save;
