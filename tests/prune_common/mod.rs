//! Helpers shared by the prune round-trip and command-line tests: a word
//! tokenizer that fits the fixture vocabularies, and text written with it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Unknown-word token of the word tokenizer; it takes the last id.
pub const UNKNOWN_TOKEN: &str = "[UNK]";

/// Folder of the tiny fixture model `name` (see `tests/llama_common`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(name)
}

/// Word `id` of the word tokenizer's vocabulary.
pub fn word(id: usize) -> String {
    format!("w{id}")
}

/// Builds a `tokenizer.json` whose vocabulary is `w0 .. w{vocab_size - 2}`
/// and [`UNKNOWN_TOKEN`], split on whitespace, so every id it produces is
/// below `vocab_size`.
pub fn word_tokenizer_json(vocab_size: usize) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for id in 0..vocab_size - 1 {
        vocab.insert(word(id), serde_json::json!(id));
    }
    vocab.insert(UNKNOWN_TOKEN.to_string(), serde_json::json!(vocab_size - 1));
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": { "type": "WhitespaceSplit" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": UNKNOWN_TOKEN }
    })
}

/// Writes [`word_tokenizer_json`] as `dir/tokenizer.json`.
pub fn write_word_tokenizer(dir: &Path, vocab_size: usize) {
    let json = serde_json::to_string(&word_tokenizer_json(vocab_size)).expect("tokenizer JSON serialises");
    std::fs::write(dir.join("tokenizer.json"), json).expect("tokenizer.json is written");
}

/// Text of `num_words` words drawn from the word tokenizer's vocabulary,
/// one line of 16 words per line, deterministic in `seed`.
pub fn word_text(num_words: usize, vocab_size: usize, seed: u64) -> String {
    const WORDS_PER_LINE: usize = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text = String::new();
    for i in 0..num_words {
        text.push_str(&word(rng.random_range(0..vocab_size - 1)));
        text.push(if (i + 1) % WORDS_PER_LINE == 0 { '\n' } else { ' ' });
    }
    text
}

/// Copies the fixture model `name` into `dest` (created) and adds a word
/// tokenizer sized to the fixture's `vocab_size`, making it a complete
/// Hugging Face model folder.
pub fn fixture_model_folder(name: &str, dest: &Path) -> usize {
    std::fs::create_dir_all(dest).expect("model folder is created");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(file), dest.join(file)).expect("fixture file copies");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join("config.json")).expect("config reads"))
            .expect("config parses");
    let vocab_size = config["vocab_size"].as_u64().expect("config has vocab_size") as usize;
    write_word_tokenizer(dest, vocab_size);
    vocab_size
}
