//! Corpus readers on small files written by the tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use pgprune::data::{corpus_files, detect_format, read_corpora, read_corpus, CorpusFormat};
use pgprune::Error;

const WIKI_RAW: &str =
    " \n = Robert Boulter = \n \n Robert Boulter is an English film @-@ and television actor . \n";
const BROWN: &str = "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ./.\n\n\n\tIt/pps did/dod n't/* ,/, however/rb ./.\nHe/pps left/vbd ./.\n";

fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip in memory");
    encoder.finish().expect("finish gzip")
}

fn texts(path: &Path, format: CorpusFormat) -> Vec<String> {
    read_corpus(path, format)
        .expect("read corpus")
        .into_iter()
        .map(|d| d.text)
        .collect()
}

fn format_reason(result: pgprune::Result<Vec<pgprune::data::Document>>) -> (PathBuf, String) {
    match result {
        Err(Error::Format { path, reason }) => (path, reason),
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn text_keeps_wikitext_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "wiki.test.raw", WIKI_RAW.as_bytes());
    let docs = texts(&file, CorpusFormat::Text);
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0], "");
    assert_eq!(docs[1], " = Robert Boulter = \n");
    assert_eq!(docs[2], "");
    assert!(
        docs[3].contains("film @-@ and"),
        "escapes must stay: {:?}",
        docs[3]
    );
}

#[test]
fn text_normalises_crlf_and_keeps_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "notes.txt", b"first\r\nsecond");
    assert_eq!(texts(&file, CorpusFormat::Text), vec!["first\n", "second"]);
}

#[test]
fn json_lines_reads_text_field() {
    let dir = tempfile::tempdir().unwrap();
    let body = "{\"text\": \"alpha beta\", \"url\": \"x\"}\n\n{\"text\": \"gamma\\ndelta\"}\n";
    let file = write(dir.path(), "shard.jsonl", body.as_bytes());
    let docs = read_corpus(&file, CorpusFormat::Auto).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].text, "alpha beta");
    assert_eq!(docs[1].text, "gamma\ndelta");
    assert_eq!(docs[1].source, file);
}

#[test]
fn json_lines_reads_gzip_shard() {
    let dir = tempfile::tempdir().unwrap();
    let body = "{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": \"three\"}\n";
    let file = write(dir.path(), "c4-train.00000-of-01024.json.gz", &gzip(body));
    assert_eq!(
        texts(&file, CorpusFormat::Auto),
        vec!["one", "two", "three"]
    );
}

#[test]
fn brown_strips_tags_and_detokenises() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ca01", BROWN.as_bytes());
    let docs = texts(&file, CorpusFormat::Brown);
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0],
        "The Fulton County said \"no evidence\".\n\nIt didn't, however.\nHe left."
    );
}

#[test]
fn auto_detects_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let brown = write(dir.path(), "ca01", BROWN.as_bytes());
    let wiki = write(dir.path(), "wiki.test.raw", WIKI_RAW.as_bytes());
    let slashes = write(
        dir.path(),
        "prose.txt",
        b"He and/or she went home and slept.\n",
    );
    let jsonl = write(dir.path(), "a.jsonl", b"{\"text\": \"x\"}\n");
    let gz = write(dir.path(), "b.gz", &gzip("{\"text\": \"x\"}\n"));
    assert_eq!(detect_format(&brown).unwrap(), CorpusFormat::Brown);
    assert_eq!(detect_format(&wiki).unwrap(), CorpusFormat::Text);
    assert_eq!(detect_format(&slashes).unwrap(), CorpusFormat::Text);
    assert_eq!(detect_format(&jsonl).unwrap(), CorpusFormat::JsonLines);
    assert_eq!(detect_format(&gz).unwrap(), CorpusFormat::JsonLines);
}

#[test]
fn folder_mixes_formats_and_skips_metadata() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca01", BROWN.as_bytes());
    write(dir.path(), "b.jsonl", b"{\"text\": \"from jsonl\"}\n");
    write(
        dir.path(),
        "c.json.gz",
        &gzip("{\"text\": \"from gzip\"}\n"),
    );
    write(dir.path(), "a.txt", b"plain line\n");
    for skipped in [
        "README",
        "CONTENTS",
        "cats.txt",
        "package.json",
        ".hidden",
        "LICENSE.md",
    ] {
        write(dir.path(), skipped, b"{not a corpus");
    }
    std::fs::create_dir(dir.path().join("nested")).unwrap();

    let files = corpus_files(dir.path()).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["a.txt", "b.jsonl", "c.json.gz", "ca01"]);

    let docs = texts(dir.path(), CorpusFormat::Auto);
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0], "plain line\n");
    assert_eq!(docs[1], "from jsonl");
    assert_eq!(docs[2], "from gzip");
    assert!(docs[3].starts_with("The Fulton County said"));
}

#[test]
fn several_paths_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "z.jsonl", b"{\"text\": \"first\"}\n");
    let second = write(dir.path(), "a.jsonl", b"{\"text\": \"second\"}\n");
    let docs = read_corpora(&[first, second], CorpusFormat::JsonLines).unwrap();
    let texts: Vec<_> = docs.into_iter().map(|d| d.text).collect();
    assert_eq!(texts, vec!["first", "second"]);
}

#[test]
fn missing_path_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.jsonl");
    match read_corpus(&missing, CorpusFormat::Auto) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn invalid_json_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let body = "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": oops}\n";
    let file = write(dir.path(), "bad.jsonl", body.as_bytes());
    let (path, reason) = format_reason(read_corpus(&file, CorpusFormat::JsonLines));
    assert_eq!(path, file);
    assert!(reason.starts_with("line 3:"), "{reason}");
    assert!(reason.contains("invalid JSON"), "{reason}");
}

#[test]
fn missing_text_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.jsonl",
        b"{\"text\": \"ok\"}\n{\"body\": \"no\"}\n",
    );
    let (path, reason) = format_reason(read_corpus(&file, CorpusFormat::JsonLines));
    assert_eq!(path, file);
    assert!(reason.starts_with("line 2:"), "{reason}");
    assert!(reason.contains("missing field \"text\""), "{reason}");
}

#[test]
fn non_string_text_field_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.jsonl", b"{\"text\": 42}\n");
    let (_, reason) = format_reason(read_corpus(&file, CorpusFormat::JsonLines));
    assert!(reason.contains("must be a string, found 42"), "{reason}");
}

#[test]
fn corrupt_gzip_is_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.json.gz", b"this is not gzip data at all");
    let (path, reason) = format_reason(read_corpus(&file, CorpusFormat::Auto));
    assert_eq!(path, file);
    assert!(reason.contains("gzip"), "{reason}");
}

#[test]
fn truncated_gzip_is_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = (0..200)
        .map(|i| format!("{{\"text\": \"line {i}\"}}\n"))
        .collect();
    let compressed = gzip(&body);
    let cut = &compressed[..compressed.len() / 2];
    let file = write(dir.path(), "cut.json.gz", cut);
    let (path, reason) = format_reason(read_corpus(&file, CorpusFormat::Auto));
    assert_eq!(path, file);
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn non_utf8_text_is_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "latin1.txt", b"caf\xe9\n");
    let (path, reason) = format_reason(read_corpus(&file, CorpusFormat::Text));
    assert_eq!(path, file);
    assert!(reason.contains("UTF-8"), "{reason}");
}

#[test]
fn folder_without_corpus_files_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "README", b"about");
    let (path, reason) = format_reason(read_corpus(dir.path(), CorpusFormat::Auto));
    assert_eq!(path, dir.path());
    assert!(reason.contains("no corpus files"), "{reason}");
}

#[test]
fn format_names_parse() {
    assert_eq!(
        "jsonl".parse::<CorpusFormat>().unwrap(),
        CorpusFormat::JsonLines
    );
    assert_eq!(
        "Brown".parse::<CorpusFormat>().unwrap(),
        CorpusFormat::Brown
    );
    assert_eq!("text".parse::<CorpusFormat>().unwrap(), CorpusFormat::Text);
    assert_eq!("auto".parse::<CorpusFormat>().unwrap(), CorpusFormat::Auto);
    let error = "parquet".parse::<CorpusFormat>().unwrap_err().to_string();
    assert!(error.contains("parquet"), "{error}");
    assert!(error.contains("jsonl"), "{error}");
}
