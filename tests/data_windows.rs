//! Tokenised streams, calibration batches and evaluation windows, with a
//! small word-level tokenizer built in the test.

use std::str::FromStr;

use pgprune::data::{
    evaluation_windows, tokenize_documents, windows_from_tokens, CalibrationSampler, Document,
    DocumentSeparator, TokenizeOptions, DEFAULT_EVAL_SEQ_LEN,
};
use pgprune::Error;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};
use tokenizers::Tokenizer;

const WORDS: [&str; 8] = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"];
/// Ids 0 to 2 are special tokens, words start at 3.
const FIRST_WORD_ID: u32 = 3;
const BOS_ID: u32 = 1;
const EOS_ID: u32 = 2;

/// Builds a whitespace word-level tokenizer. With `with_bos`, a post-processor
/// puts `<s>` before every sequence when special tokens are requested.
fn word_tokenizer(with_bos: bool) -> Tokenizer {
    let mut vocab = vec![
        "\"[UNK]\": 0".to_string(),
        format!("\"<s>\": {BOS_ID}"),
        format!("\"</s>\": {EOS_ID}"),
    ];
    for (i, word) in WORDS.iter().enumerate() {
        vocab.push(format!("\"{word}\": {}", FIRST_WORD_ID + i as u32));
    }
    let post_processor = if with_bos {
        format!(
            r#"{{"type": "TemplateProcessing",
                "single": [{{"SpecialToken": {{"id": "<s>", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}],
                "pair": [{{"Sequence": {{"id": "A", "type_id": 0}}}}, {{"Sequence": {{"id": "B", "type_id": 1}}}}],
                "special_tokens": {{"<s>": {{"id": "<s>", "ids": [{BOS_ID}], "tokens": ["<s>"]}}}}}}"#
        )
    } else {
        "null".to_string()
    };
    let json = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
            "post_processor": {post_processor}, "decoder": null,
            "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "[UNK]"}}}}"#,
        vocab.join(", ")
    );
    Tokenizer::from_str(&json).expect("test tokenizer JSON")
}

fn id(word: &str) -> i64 {
    let index = WORDS
        .iter()
        .position(|w| *w == word)
        .expect("word in vocabulary");
    i64::from(FIRST_WORD_ID) + index as i64
}

fn to_vec(tensor: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(tensor.reshape([-1])).unwrap()
}

/// Builds the stream 0, 1, 2, ... so that a window's content reveals its start.
fn counting_stream(len: usize) -> Vec<i64> {
    (0..len as i64).collect()
}

#[test]
fn stream_joins_documents_with_separator_token() {
    let tokenizer = word_tokenizer(false);
    let options = TokenizeOptions {
        add_special_tokens: false,
        separator: DocumentSeparator::Token(EOS_ID),
    };
    let stream = tokenize_documents(&tokenizer, &["the cat sat", "a dog"], &options).unwrap();
    let eos = i64::from(EOS_ID);
    assert_eq!(
        stream,
        vec![id("the"), id("cat"), id("sat"), eos, id("a"), id("dog")]
    );
}

#[test]
fn stream_adds_special_tokens_only_when_asked() {
    let tokenizer = word_tokenizer(true);
    let plain = TokenizeOptions {
        add_special_tokens: false,
        separator: DocumentSeparator::Token(EOS_ID),
    };
    let with_bos = TokenizeOptions {
        add_special_tokens: true,
        ..plain.clone()
    };
    let docs = ["the cat", "a dog"];
    let plain_stream = tokenize_documents(&tokenizer, &docs, &plain).unwrap();
    let bos_stream = tokenize_documents(&tokenizer, &docs, &with_bos).unwrap();
    assert!(!plain_stream.contains(&i64::from(BOS_ID)));
    assert_eq!(bos_stream.len(), plain_stream.len() + docs.len());
    assert_eq!(bos_stream[0], i64::from(BOS_ID));
}

#[test]
fn stream_spans_encode_chunks() {
    // More documents than one encode chunk contains, so chunk joins are covered.
    let tokenizer = word_tokenizer(false);
    let docs: Vec<String> = (0..2500)
        .map(|i| WORDS[i % WORDS.len()].to_string())
        .collect();
    let options = TokenizeOptions {
        add_special_tokens: false,
        separator: DocumentSeparator::Token(EOS_ID),
    };
    let stream = tokenize_documents(&tokenizer, &docs, &options).unwrap();
    assert_eq!(stream.len(), 2 * docs.len() - 1);
    let separators = stream.iter().filter(|&&t| t == i64::from(EOS_ID)).count();
    assert_eq!(separators, docs.len() - 1);
    assert_eq!(stream[2 * 1500], id(WORDS[1500 % WORDS.len()]));
}

#[test]
fn default_separator_is_blank_line_text() {
    let options = TokenizeOptions::default();
    assert_eq!(options.separator, DocumentSeparator::Text("\n\n".into()));
    assert!(!options.add_special_tokens);
}

#[test]
fn sampler_batch_has_shape_and_contiguous_windows() {
    let (seq_len, batch) = (16, 4);
    let sampler = CalibrationSampler::new(counting_stream(100), seq_len, batch).unwrap();
    let ids = sampler.sample(&mut ChaCha8Rng::seed_from_u64(7));
    assert_eq!(ids.size(), vec![batch as i64, seq_len as i64]);
    assert_eq!(ids.kind(), Kind::Int64);
    for row in to_vec(&ids).chunks(seq_len) {
        let start = row[0];
        assert!((0..=100 - seq_len as i64).contains(&start), "start {start}");
        let expected: Vec<i64> = (start..start + seq_len as i64).collect();
        assert_eq!(row, expected.as_slice());
    }
}

#[test]
fn sampler_repeats_per_seed() {
    let sampler = CalibrationSampler::new(counting_stream(10_000), 32, 8).unwrap();
    let first = to_vec(&sampler.sample(&mut ChaCha8Rng::seed_from_u64(42)));
    let again = to_vec(&sampler.sample(&mut ChaCha8Rng::seed_from_u64(42)));
    let other = to_vec(&sampler.sample(&mut ChaCha8Rng::seed_from_u64(43)));
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn sampler_successive_batches_differ() {
    let sampler = CalibrationSampler::new(counting_stream(10_000), 32, 8).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let first = to_vec(&sampler.sample(&mut rng));
    let second = to_vec(&sampler.sample(&mut rng));
    assert_ne!(first, second);
}

#[test]
fn sampler_reaches_both_ends() {
    // A stream one token longer than a window has two start positions, and 64
    // draws miss one of them with probability 2^-63.
    let sampler = CalibrationSampler::new(counting_stream(9), 8, 64).unwrap();
    let starts: Vec<i64> = to_vec(&sampler.sample(&mut ChaCha8Rng::seed_from_u64(1)))
        .chunks(8)
        .map(|row| row[0])
        .collect();
    assert!(starts.contains(&0));
    assert!(starts.contains(&1));
}

#[test]
fn sampler_rejects_short_corpus() {
    match CalibrationSampler::new(counting_stream(10), 128, 8) {
        Err(Error::Corpus {
            found,
            needed,
            hint,
        }) => {
            assert_eq!(found, 10);
            assert_eq!(needed, 128);
            assert!(!hint.is_empty());
        }
        other => panic!("expected a corpus error, got {other:?}"),
    }
}

#[test]
fn sampler_rejects_zero_batch() {
    let result = CalibrationSampler::new(counting_stream(100), 8, 0);
    assert!(matches!(result, Err(Error::InvalidArgument { .. })));
}

#[test]
fn windows_count_and_drop_tail() {
    let windows = windows_from_tokens(&counting_stream(1000), DEFAULT_EVAL_SEQ_LEN, None).unwrap();
    assert_eq!(windows.num_windows(), 7);
    assert_eq!(windows.ids.size(), vec![7, 128]);
    assert_eq!(windows.dropped_tail_tokens, 1000 - 7 * 128);
    assert_eq!(windows.used_tokens(), 7 * 128);
    assert_eq!(windows.total_tokens, 1000);
    assert_eq!(windows.capped_tokens, 0);
    let ids = to_vec(&windows.ids);
    assert_eq!(ids[128], 128, "second window starts where the first ends");
}

#[test]
fn windows_respect_token_cap() {
    let windows = windows_from_tokens(&counting_stream(1000), 100, Some(350)).unwrap();
    assert_eq!(windows.num_windows(), 3);
    assert_eq!(windows.capped_tokens, 650);
    assert_eq!(windows.dropped_tail_tokens, 50);
}

#[test]
fn windows_exact_multiple_drop_nothing() {
    let windows = windows_from_tokens(&counting_stream(256), 128, None).unwrap();
    assert_eq!(windows.num_windows(), 2);
    assert_eq!(windows.dropped_tail_tokens, 0);
}

#[test]
fn windows_reject_short_corpus() {
    match windows_from_tokens(&counting_stream(100), 128, None) {
        Err(Error::Corpus { found, needed, .. }) => {
            assert_eq!(found, 100);
            assert_eq!(needed, 128);
        }
        other => panic!("expected a corpus error, got {other:?}"),
    }
}

#[test]
fn windows_reject_empty_corpus() {
    let tokenizer = word_tokenizer(false);
    let empty: [&str; 0] = [];
    match evaluation_windows(&tokenizer, &empty, 4, None, false) {
        Err(Error::Corpus { found, needed, .. }) => {
            assert_eq!(found, 0);
            assert_eq!(needed, 4);
        }
        other => panic!("expected a corpus error, got {other:?}"),
    }
}

#[test]
fn windows_reject_bad_lengths() {
    let one = windows_from_tokens(&counting_stream(100), 1, None);
    assert!(matches!(one, Err(Error::InvalidArgument { .. })));
    let small_cap = windows_from_tokens(&counting_stream(100), 10, Some(5));
    assert!(matches!(small_cap, Err(Error::InvalidArgument { .. })));
}

#[test]
fn evaluation_encodes_joined_text_once() {
    let tokenizer = word_tokenizer(true);
    let docs = ["the cat sat", "", "on the mat", "a dog ran"];
    let windows = evaluation_windows(&tokenizer, &docs, 4, None, true).unwrap();
    // <s> + 9 words = 10 tokens: two windows of 4, a tail of 2.
    assert_eq!(windows.total_tokens, 10);
    assert_eq!(windows.num_windows(), 2);
    assert_eq!(windows.dropped_tail_tokens, 2);
    let ids = to_vec(&windows.ids);
    let expected = vec![
        i64::from(BOS_ID),
        id("the"),
        id("cat"),
        id("sat"),
        id("on"),
        id("the"),
        id("mat"),
        id("a"),
    ];
    assert_eq!(ids, expected);
}

#[test]
fn documents_tokenise_directly() {
    let tokenizer = word_tokenizer(false);
    let docs = vec![
        Document {
            text: "the cat".into(),
            source: "a.txt".into(),
        },
        Document {
            text: "sat".into(),
            source: "a.txt".into(),
        },
    ];
    let options = TokenizeOptions {
        add_special_tokens: false,
        separator: DocumentSeparator::Token(EOS_ID),
    };
    let stream = tokenize_documents(&tokenizer, &docs, &options).unwrap();
    assert_eq!(
        stream,
        vec![id("the"), id("cat"), i64::from(EOS_ID), id("sat")]
    );
}
