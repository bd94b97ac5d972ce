//! Model adapters: weight readers and the LLaMA-family architecture.

pub mod llama;
pub mod weights;
