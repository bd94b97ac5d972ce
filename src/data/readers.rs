//! Corpus readers: plain text, JSON Lines (optionally gzip-compressed) and the
//! tagged Brown corpus, from single files or whole folders.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use super::brown;
use crate::error::{Error, Result};

/// File names (compared case-insensitively) that a folder scan skips because
/// they describe a corpus rather than belong to it: the Brown distribution
/// ships `README`, `CONTENTS`, `cats.txt`, `categories.pickle` and an npm
/// `package.json` beside its 500 text files.
pub const SKIPPED_FILE_NAMES: [&str; 9] = [
    "readme",
    "contents",
    "license",
    "licence",
    "copying",
    "cats.txt",
    "categories.pickle",
    "package.json",
    "package-lock.json",
];

/// File name stems (the part before the first `.`, case-insensitively) that a
/// folder scan skips, so that `README.md` or `LICENSE.txt` are skipped too.
const SKIPPED_STEMS: [&str; 5] = ["readme", "contents", "license", "licence", "copying"];

/// Number of non-empty lines that [`CorpusFormat::Auto`] inspects to tell
/// Brown's `word/tag` format from plain text.
const SNIFF_LINES: usize = 20;

/// Fraction of whitespace-separated tokens in the sniffed lines that must
/// look like `word/tag` for a file to be read as Brown. Plain English rarely
/// has even one slash per ten words, and every Brown token has one.
const BROWN_MIN_TAGGED_FRACTION: f64 = 0.9;

/// File format of a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorpusFormat {
    /// Chosen per file: `.jsonl`, `.json`, `.json.gz` and `.gz` files are
    /// JSON Lines, files whose first lines are mostly `word/tag` tokens are
    /// Brown, and all others are plain text.
    #[default]
    Auto,
    /// Plain text such as WikiText-2's `wiki.test.raw`. Every line is one
    /// document, kept as Hugging Face's `wikitext` loader keeps it: a line
    /// with text keeps its trailing `"\n"`, and a whitespace-only line becomes
    /// the empty string. WikiText's ` @-@ `, ` @,@ ` and ` @.@ ` escapes are
    /// left as they are, as the published pruning baselines leave them.
    Text,
    /// One JSON object per line with a string field `text`, as in C4 shards.
    /// Files ending in `.gz` are gunzipped first.
    JsonLines,
    /// The tagged Brown corpus: one sentence per line, tokens `word/tag`,
    /// paragraphs separated by blank lines. Every file becomes one document
    /// of detokenised sentences, one per line, with a blank line between
    /// paragraphs.
    Brown,
}

impl CorpusFormat {
    /// The formats' names as [`FromStr`] accepts them.
    pub const NAMES: [&'static str; 4] = ["auto", "text", "jsonl", "brown"];
}

impl fmt::Display for CorpusFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            CorpusFormat::Auto => "auto",
            CorpusFormat::Text => "text",
            CorpusFormat::JsonLines => "jsonl",
            CorpusFormat::Brown => "brown",
        };
        f.write_str(name)
    }
}

impl FromStr for CorpusFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(CorpusFormat::Auto),
            "text" | "txt" | "raw" => Ok(CorpusFormat::Text),
            "jsonl" | "json" | "json-lines" | "json_lines" => Ok(CorpusFormat::JsonLines),
            "brown" => Ok(CorpusFormat::Brown),
            _ => Err(Error::invalid(
                "corpus format",
                s,
                format!("expected one of {}", Self::NAMES.join(", ")),
            )),
        }
    }
}

/// One document of a corpus and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub text: String,
    pub source: PathBuf,
}

impl AsRef<str> for Document {
    /// Lets documents go straight to the tokenising functions.
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Reads every document under `paths` in order. See [`read_corpus`].
pub fn read_corpora<P: AsRef<Path>>(paths: &[P], format: CorpusFormat) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for path in paths {
        documents.extend(read_corpus(path.as_ref(), format)?);
    }
    Ok(documents)
}

/// Reads the documents of a corpus file, or of every corpus file in a folder
/// (see [`corpus_files`]), in `format`.
///
/// Errors: a missing path or unreadable file is [`Error::Io`]; text that is
/// not UTF-8, invalid JSON (naming file and line), a missing `text` field and
/// corrupt or truncated gzip data are [`Error::Format`].
pub fn read_corpus(path: &Path, format: CorpusFormat) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for file in corpus_files(path)? {
        let file_format = match format {
            CorpusFormat::Auto => detect_format(&file)?,
            other => other,
        };
        let before = documents.len();
        match file_format {
            CorpusFormat::Text | CorpusFormat::Auto => read_text(&file, &mut documents)?,
            CorpusFormat::JsonLines => read_json_lines(&file, &mut documents)?,
            CorpusFormat::Brown => documents.push(Document {
                text: brown::detokenize_file(&read_to_string(&file)?),
                source: file.clone(),
            }),
        }
        tracing::debug!(
            file = %file.display(),
            format = %file_format,
            documents = documents.len() - before,
            "read corpus file"
        );
    }
    Ok(documents)
}

/// Lists the corpus files at `path`: the path itself if it is a file, or the
/// regular files directly inside it, sorted by name. A folder scan skips
/// hidden files (names starting with `.`), the names in
/// [`SKIPPED_FILE_NAMES`] and any file whose stem is `README`, `CONTENTS`,
/// `LICENSE`, `LICENCE` or `COPYING`. Sub-folders are not entered.
pub fn corpus_files(path: &Path) -> Result<Vec<PathBuf>> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let file = entry.path();
        let is_file = std::fs::metadata(&file)
            .map_err(|e| Error::io(&file, e))?
            .is_file();
        if is_file && !is_skipped(&entry.file_name().to_string_lossy()) {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: "the folder contains no corpus files (hidden files, README, CONTENTS, \
                     LICENSE, cats.txt and package.json are skipped)"
                .into(),
        });
    }
    Ok(files)
}

fn is_skipped(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = lower.split('.').next().unwrap_or_default();
    lower.starts_with('.')
        || SKIPPED_FILE_NAMES.contains(&lower.as_str())
        || SKIPPED_STEMS.contains(&stem)
}

/// Chooses the format of one file as [`CorpusFormat::Auto`] documents.
pub fn detect_format(file: &Path) -> Result<CorpusFormat> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if [".jsonl", ".json", ".gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Ok(CorpusFormat::JsonLines);
    }
    let reader = BufReader::new(File::open(file).map_err(|e| Error::io(file, e))?);
    let (mut tokens, mut tagged) = (0usize, 0usize);
    let mut lines_seen = 0;
    for line in reader.lines() {
        let line = line.map_err(|e| Error::io(file, e))?;
        if line.trim().is_empty() {
            continue;
        }
        for token in line.split_whitespace() {
            tokens += 1;
            tagged += usize::from(brown::looks_tagged(token));
        }
        lines_seen += 1;
        if lines_seen == SNIFF_LINES {
            break;
        }
    }
    let is_brown = tokens > 0 && tagged as f64 >= BROWN_MIN_TAGGED_FRACTION * tokens as f64;
    Ok(if is_brown {
        CorpusFormat::Brown
    } else {
        CorpusFormat::Text
    })
}

fn read_to_string(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    String::from_utf8(bytes).map_err(|e| Error::Format {
        path: file.to_path_buf(),
        reason: format!(
            "not valid UTF-8 at byte {}; convert the file to UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })
}

fn read_text(file: &Path, documents: &mut Vec<Document>) -> Result<()> {
    // Python's text mode, which the `wikitext` loader reads through, turns
    // "\r\n" into "\n"; doing the same keeps the documents identical.
    let text = read_to_string(file)?.replace("\r\n", "\n");
    for line in text.split_inclusive('\n') {
        let kept = if line.trim().is_empty() { "" } else { line };
        documents.push(Document {
            text: kept.to_string(),
            source: file.to_path_buf(),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct JsonLine {
    text: Option<serde_json::Value>,
}

fn read_json_lines(file: &Path, documents: &mut Vec<Document>) -> Result<()> {
    let opened = File::open(file).map_err(|e| Error::io(file, e))?;
    let is_gzip = file.extension().is_some_and(|ext| ext == "gz");
    let reader: Box<dyn Read> = if is_gzip {
        Box::new(MultiGzDecoder::new(opened))
    } else {
        Box::new(opened)
    };
    let format_error = |line_number: usize, reason: String| Error::Format {
        path: file.to_path_buf(),
        reason: format!("line {line_number}: {reason}"),
    };
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|e| {
            let what = match (is_gzip, e.kind()) {
                (true, _) => "corrupt or truncated gzip data, or text that is not UTF-8",
                (false, std::io::ErrorKind::InvalidData) => "text that is not UTF-8",
                (false, _) => "read failed",
            };
            format_error(line_number, format!("{what}: {e}"))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: JsonLine = serde_json::from_str(&line)
            .map_err(|e| format_error(line_number, format!("invalid JSON: {e}")))?;
        match parsed.text {
            Some(serde_json::Value::String(text)) => documents.push(Document {
                text,
                source: file.to_path_buf(),
            }),
            Some(other) => {
                return Err(format_error(
                    line_number,
                    format!("field \"text\" must be a string, found {other}"),
                ))
            }
            None => {
                return Err(format_error(
                    line_number,
                    "missing field \"text\"; every line must be an object with a string \"text\""
                        .into(),
                ))
            }
        }
    }
    Ok(())
}
