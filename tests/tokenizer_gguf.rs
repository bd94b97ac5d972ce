//! Tokenizers converted from GGUF vocabularies against transformers'
//! conversion (scripts/fixtures/make_tokenizer_fixture.py).

use std::path::PathBuf;

use pgprune::models::weights::gguf::GgufFile;
use pgprune::tokenizer::{self, SpecialTokenIds};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn ids_of(value: &Value) -> Vec<u32> {
    serde_json::from_value(value.clone()).expect("id list")
}

fn open_smollm2() -> GgufFile {
    let path = std::env::var("PGPRUNE_MODEL").unwrap_or_else(|_| {
        panic!("PGPRUNE_MODEL is not set; run `scripts/setup.sh --model` and `source <(scripts/setup.sh --env)`")
    });
    GgufFile::open(path).expect("open SmolLM2 GGUF")
}

#[test]
fn smollm2_ids_match_transformers() {
    let model = open_smollm2();
    let tokenizer = tokenizer::from_gguf(&model).expect("tokenizer");
    let fixture = read_json("smollm2_tokens.json");
    let passage = fixture["passage"].as_str().expect("passage");
    let want = ids_of(&fixture["ids_without_special_tokens"]);

    // The file sets add_bos_token = false, so both encodings agree.
    let with_special = tokenizer.encode(passage, true).expect("encode");
    let without_special = tokenizer.encode(passage, false).expect("encode");
    assert_eq!(without_special.get_ids(), &want[..]);
    assert_eq!(with_special.get_ids(), &want[..]);

    // transformers' GGUF loader prepends BOS regardless of add_bos_token.
    let transformers_ids = ids_of(&fixture["ids"]);
    assert_eq!(transformers_ids[0], 1);
    assert_eq!(&transformers_ids[1..], &want[..]);
}

#[test]
fn smollm2_decode_round_trip() {
    let model = open_smollm2();
    let tokenizer = tokenizer::from_gguf(&model).expect("tokenizer");
    let fixture = read_json("smollm2_tokens.json");
    let passage = fixture["passage"].as_str().expect("passage");
    let ids = tokenizer.encode(passage, false).expect("encode").get_ids().to_vec();
    let decoded = tokenizer.decode(&ids, false).expect("decode");
    assert_eq!(decoded, passage);
}

#[test]
fn smollm2_special_tokens() {
    let model = open_smollm2();
    let ids = tokenizer::special_token_ids(&model).expect("special ids");
    assert_eq!(
        ids,
        SpecialTokenIds {
            bos: Some(1),
            eos: Some(2),
            add_bos: false
        }
    );
    let tokenizer = tokenizer::from_gguf(&model).expect("tokenizer");
    assert_eq!(tokenizer.get_vocab_size(true), 49152);
    // Control tokens are matched whole, never split into BPE pieces.
    let encoding = tokenizer.encode("<|im_start|>user", false).expect("encode");
    assert_eq!(encoding.get_ids()[0], 1);
    assert_eq!(tokenizer.id_to_token(2).as_deref(), Some("<|im_end|>"));
}

/// A SentencePiece vocabulary without merges: merges derived from scores,
/// byte fallback, `▁` prefix and BOS, against transformers.
#[test]
fn sentencepiece_ids_match_transformers() {
    let file = GgufFile::open(fixture("spm_vocab.gguf")).expect("open");
    let tokenizer = tokenizer::from_gguf(&file).expect("tokenizer");
    let cases = read_json("spm_tokens.json");
    for case in cases.as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let want = ids_of(&case["ids"]);
        let encoding = tokenizer.encode(text, true).expect("encode");
        assert_eq!(encoding.get_ids(), &want[..], "ids of {text:?}");
        let decoded = tokenizer.decode(encoding.get_ids(), true).expect("decode");
        assert_eq!(decoded, case["decoded"].as_str().expect("decoded"), "decode of {text:?}");
    }
    let ids = tokenizer::special_token_ids(&file).expect("special ids");
    assert_eq!(ids.bos, Some(1));
    assert_eq!(ids.eos, Some(2));
    assert!(ids.add_bos);
}

#[test]
fn gguf_without_vocabulary_rejected() {
    let file = GgufFile::open(fixture("types.gguf")).expect("open");
    let result = tokenizer::from_gguf(&file);
    assert!(matches!(result, Err(pgprune::Error::Tokenizer(_))), "{result:?}");
}

#[test]
fn load_tokenizer_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = open_smollm2();
    let tokenizer = tokenizer::from_gguf(&model).expect("tokenizer");
    let path = dir.path().join("tokenizer.json");
    tokenizer.save(&path, false).expect("save");
    let loaded = tokenizer::load(&path).expect("load");
    let text = "Loaded from tokenizer.json, 123 ids.";
    let want = tokenizer.encode(text, false).expect("encode");
    let got = loaded.encode(text, false).expect("encode");
    assert_eq!(got.get_ids(), want.get_ids());
}

#[test]
fn load_missing_tokenizer_json() {
    let result = tokenizer::load("/nonexistent/tokenizer.json");
    assert!(matches!(result, Err(pgprune::Error::Tokenizer(_))), "{result:?}");
}
