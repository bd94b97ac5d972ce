//! The real Brown corpus read from `$PGPRUNE_BROWN` (set by
//! `source <(scripts/setup.sh --env)`).

use std::path::PathBuf;

use pgprune::data::{read_corpus, CorpusFormat};

/// Files of the Brown corpus: `ca01` to `cr09`.
const BROWN_FILES: usize = 500;

fn brown_dir() -> PathBuf {
    let dir = std::env::var_os("PGPRUNE_BROWN").expect(
        "PGPRUNE_BROWN is not set; run `source <(bash scripts/setup.sh --env)` \
         (after `scripts/setup.sh --corpus`) before the tests",
    );
    PathBuf::from(dir)
}

#[test]
fn brown_ca01_reads_as_clean_text() {
    let file = brown_dir().join("ca01");
    let docs = read_corpus(&file, CorpusFormat::Auto).unwrap();
    assert_eq!(docs.len(), 1);
    let text = &docs[0].text;
    let first_line = text.lines().next().unwrap();
    assert_eq!(
        first_line,
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent \
         primary election produced \"no evidence\" that any irregularities took place."
    );
    assert!(text.contains("\n\nThe jury further said in term-end presentments that"));
    assert!(!text.contains("/nn"), "a tag survived");
    assert!(!text.contains("``"), "an opening quote token survived");
    assert!(!text.contains(" ,"), "a space before a comma survived");
}

#[test]
fn brown_folder_reads_every_text_file() {
    let docs = read_corpus(&brown_dir(), CorpusFormat::Auto).unwrap();
    assert_eq!(docs.len(), BROWN_FILES);
    let first = docs.first().unwrap().source.file_name().unwrap().to_owned();
    let last = docs.last().unwrap().source.file_name().unwrap().to_owned();
    assert_eq!(first, "ca01");
    assert_eq!(last, "cr09");
    let tagged = docs
        .iter()
        .filter(|d| {
            d.text
                .split_whitespace()
                .any(|w| w.ends_with("/at") || w.ends_with("/nn"))
        })
        .count();
    assert_eq!(tagged, 0, "documents with tags left");
    let words: usize = docs.iter().map(|d| d.text.split_whitespace().count()).sum();
    // About 1.16 million tokens, of which punctuation attaches to words.
    assert!(words > 900_000, "only {words} words");
    assert!(words < 1_200_000, "{words} words");
}
