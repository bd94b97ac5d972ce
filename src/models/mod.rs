//! Model adapters: weight readers and the LLaMA-family architecture.

pub mod llama;
pub mod loading;
pub mod weights;

pub use loading::{load_model, LoadedModel};
