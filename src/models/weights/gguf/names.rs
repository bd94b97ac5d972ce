//! Mapping between llama.cpp tensor names and Hugging Face LLaMA names.

/// Per-block tensors: llama.cpp suffix after `blk.{i}.`, Hugging Face suffix
/// after `model.layers.{i}.`.
const BLOCK_NAMES: [(&str, &str); 9] = [
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
];

/// Tensors outside the blocks.
const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// Returns the Hugging Face name of llama.cpp tensor `name`, or `None` for a
/// tensor with no Hugging Face counterpart (such as `rope_freqs.weight`).
pub fn gguf_to_hf(name: &str) -> Option<String> {
    if let Some((_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == name) {
        return Some((*hf).to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, hf) = BLOCK_NAMES.iter().find(|(g, _)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Returns the llama.cpp name of Hugging Face tensor `name`, or `None` if the
/// name is not one of the mapped LLaMA tensors.
pub fn hf_to_gguf(name: &str) -> Option<String> {
    if let Some((g, _)) = GLOBAL_NAMES.iter().find(|(_, hf)| *hf == name) {
        return Some((*g).to_string());
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (g, _) = BLOCK_NAMES.iter().find(|(_, hf)| *hf == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// The RoPE row permutation that llama.cpp applied to a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePermutation {
    /// Rows of `attn_q`, permuted per query head.
    Query,
    /// Rows of `attn_k`, permuted per KV head.
    Key,
}

/// Returns the RoPE permutation that llama.cpp applied to tensor `gguf_name`.
pub fn rope_permutation(gguf_name: &str) -> Option<RopePermutation> {
    if gguf_name.ends_with(".attn_q.weight") {
        Some(RopePermutation::Query)
    } else if gguf_name.ends_with(".attn_k.weight") {
        Some(RopePermutation::Key)
    } else {
        None
    }
}

/// Reorders the rows of a `[rows, cols]` row-major matrix from llama.cpp's
/// interleaved RoPE layout to Hugging Face's rotate-half layout.
///
/// llama.cpp's converter stores, within each head, row `2 * i + p` where
/// Hugging Face has row `p * head_dim / 2 + i` (`p` in {0, 1}). This views
/// the stored rows as `[n_heads, head_dim / 2, 2]` and swaps the last two
/// axes. The caller checks that `rows` is a multiple of `2 * n_heads`.
pub fn unpermute_rope_rows(values: &[f32], rows: usize, cols: usize, n_heads: usize) -> Vec<f32> {
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; values.len()];
    for head in 0..n_heads {
        for i in 0..half {
            for p in 0..2 {
                let src = head * head_dim + 2 * i + p;
                let dst = head * head_dim + p * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let cases = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
            ("blk.12.ffn_down.weight", "model.layers.12.mlp.down_proj.weight"),
            ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
        ];
        for (gguf, hf) in cases {
            assert_eq!(gguf_to_hf(gguf).as_deref(), Some(hf));
            assert_eq!(hf_to_gguf(hf).as_deref(), Some(gguf));
        }
    }

    #[test]
    fn unknown_names_map_to_none() {
        assert_eq!(gguf_to_hf("rope_freqs.weight"), None);
        assert_eq!(gguf_to_hf("blk.x.attn_q.weight"), None);
        assert_eq!(hf_to_gguf("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // Two heads of head_dim 4, one column: the Hugging Face rows are
        // 0..8, and llama.cpp stores them per head as [h0 r0, h0 r2, h0 r1,
        // h0 r3, ...] (pairs (i, i + half) side by side).
        let stored = [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0];
        let restored = unpermute_rope_rows(&stored, 8, 1, 2);
        assert_eq!(restored, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    }
}
