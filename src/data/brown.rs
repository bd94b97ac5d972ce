//! Plain text from the tagged Brown corpus.
//!
//! A Brown file writes one sentence per (usually tab-indented) line, every
//! token as `word/tag`, with blank lines between paragraphs. Tags can contain
//! `-`, `$`, `+` and `*`, and words can contain `/`, so a tag is whatever
//! follows the last `/`. Double quotes are written as the tokens ``` `` ```
//! (opening) and `''` (closing).

/// Characters a Brown tag is made of: lower-case letters, `-`, `$`, `+`,
/// `*`, and punctuation tags such as `.`, `,`, `(`, `''` and ``` `` ```.
fn is_tag_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "-$+*.,:;()'`".contains(c)
}

/// Checks whether `token` has the `word/tag` shape of a Brown token.
pub(crate) fn looks_tagged(token: &str) -> bool {
    match token.rsplit_once('/') {
        Some((word, tag)) => !word.is_empty() && !tag.is_empty() && tag.chars().all(is_tag_char),
        None => false,
    }
}

/// Words written without a space before them.
const ATTACH_LEFT: [&str; 19] = [
    ",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'re", "'ve", "'ll", "'d", "'m", "n't",
    "...", "''",
];

/// Words written without a space after them.
const ATTACH_RIGHT: [&str; 4] = ["(", "[", "{", "``"];

/// Converts a whole Brown file into plain text: one detokenised sentence per
/// line and a blank line between paragraphs.
pub(crate) fn detokenize_file(contents: &str) -> String {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    let mut in_paragraph = false;
    for line in contents.lines() {
        let sentence = detokenize_sentence(line);
        if sentence.is_empty() {
            in_paragraph = false;
            continue;
        }
        if !in_paragraph {
            paragraphs.push(Vec::new());
            in_paragraph = true;
        }
        if let Some(paragraph) = paragraphs.last_mut() {
            paragraph.push(sentence);
        }
    }
    paragraphs
        .iter()
        .map(|sentences| sentences.join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Strips the tags of one line of `word/tag` tokens and joins the words with
/// English spacing: no space before closing punctuation and clitics such as
/// `n't`, none after opening brackets and quotes. Tokens without a `/` are
/// kept whole.
pub(crate) fn detokenize_sentence(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut attach_next = false;
    // A lone `'` is ambiguous, so quotes of that kind alternate between
    // opening and closing within a sentence.
    let mut single_quote_open = false;
    for token in line.split_whitespace() {
        let word = token.rsplit_once('/').map_or(token, |(word, _tag)| word);
        if word.is_empty() {
            continue;
        }
        let lower = word.to_ascii_lowercase();
        let (attach_left, attach_right) = if word == "'" {
            single_quote_open = !single_quote_open;
            (!single_quote_open, single_quote_open)
        } else {
            (
                ATTACH_LEFT.contains(&lower.as_str()),
                ATTACH_RIGHT.contains(&word),
            )
        };
        if !out.is_empty() && !attach_next && !attach_left {
            out.push(' ');
        }
        out.push_str(match word {
            "``" | "''" => "\"",
            other => other,
        });
        attach_next = attach_right;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_strips_tags_after_last_slash() {
        let text = detokenize_sentence("\t1/2/cd cup/nn of/in Atlanta's/np$ wine/nn-tl ./.");
        assert_eq!(text, "1/2 cup of Atlanta's wine.");
    }

    #[test]
    fn sentence_spaces_quotes_and_punctuation() {
        let line =
            "He/pps said/vbd ,/, ``/`` no/at (/( sir/nn )/) ''/'' !/. It/pps is/bez n't/* ./.";
        assert_eq!(
            detokenize_sentence(line),
            "He said, \"no (sir)\"! It isn't."
        );
    }

    #[test]
    fn sentence_alternates_single_quotes() {
        let line = "a/at '/' word/nn '/' here/rb";
        assert_eq!(detokenize_sentence(line), "a 'word' here");
    }

    #[test]
    fn file_keeps_lines_and_paragraphs() {
        let contents = "\n\n\tA/at b/nn ./.\nC/np d/nn ./.\n\n\n\tE/at f/nn ./.\n";
        assert_eq!(detokenize_file(contents), "A b.\nC d.\n\nE f.");
    }

    #[test]
    fn tagged_shape_detection() {
        assert!(looks_tagged("County/nn-tl"));
        assert!(looks_tagged("Atlanta's/np$"));
        assert!(looks_tagged("``/``"));
        assert!(!looks_tagged("plain"));
        assert!(!looks_tagged("http://Example"));
    }
}
