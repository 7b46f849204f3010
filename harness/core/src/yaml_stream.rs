//! A multi-document YAML stream (a Helm manifest, a rendered chart) read one document
//! at a time, leniently: a document that does not parse is yielded with its error
//! instead of ending the stream, so that each caller decides what an unparsable
//! document means (Helm's manifest is refused, the kinds a capture lists skip it, the
//! scrubber removes it whole because it cannot be checked for credentials).
//!
//! Documents are separated where a line starts with the document marker `---` (alone,
//! or followed by a space and a comment or content: `--- # Source: x.yaml`) or is the
//! end marker `...`. Markers can only stand at the start of a line, so a `---` inside
//! an indented block scalar is text, as YAML reads it. Documents with no content (blank
//! or comment lines only) are not yielded: Helm writes them for templates that render
//! nothing.

use serde_json::Value;

/// One document of a stream.
#[derive(Debug)]
pub struct Document<'a> {
    /// Its position among the stream's non-empty documents (0 for the first).
    pub index: usize,
    /// The 1-based line of the stream its text starts on.
    pub line: usize,
    /// Its text, without the marker line (what follows `--- ` on that line is its
    /// first line).
    pub text: &'a str,
    /// The document parsed, or why it does not parse.
    pub parsed: Result<Value, serde_saphyr::Error>,
}

impl Document<'_> {
    /// The document as a value, or an error that names where it is.
    pub fn into_value(self) -> Result<Value, DocumentError> {
        let (index, line) = (self.index, self.line);
        self.parsed.map_err(|source| DocumentError {
            index,
            line,
            source: Box::new(source),
        })
    }
}

/// A document of a stream that is not YAML.
#[derive(Debug, thiserror::Error)]
#[error("YAML document {} (from line {line}) does not parse: {source}", index + 1)]
pub struct DocumentError {
    /// Its position among the stream's non-empty documents (0 for the first).
    pub index: usize,
    /// The 1-based line of the stream it starts on.
    pub line: usize,
    /// Boxed: the parser's error is large, and a `Result` carries it on every call.
    #[source]
    pub source: Box<serde_saphyr::Error>,
}

/// Every non-empty document of `text`, in order, each parsed on its own.
pub fn documents(text: &str) -> Vec<Document<'_>> {
    spans(text)
        .into_iter()
        .enumerate()
        .map(|(index, (line, text))| Document {
            index,
            line,
            text,
            parsed: serde_saphyr::from_str::<Value>(text),
        })
        .collect()
}

/// `(first line, text)` of every document with content.
fn spans(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    // The current document's first line (1-based) and the byte its text starts at.
    let (mut first_line, mut from) = (1, 0);
    let mut close = |first_line: usize, from: usize, to: usize| {
        let doc = &text[from..to];
        if has_content(doc) {
            out.push((first_line, doc));
        }
    };
    let mut offset = 0;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let next = offset + raw.len();
        if let Some(rest) = start_marker(line) {
            close(first_line, from, offset);
            // What follows the marker on its line (a suffix of it) opens the new document.
            (first_line, from) = if rest.is_empty() {
                (n + 2, next)
            } else {
                (n + 1, offset + line.len() - rest.len())
            };
        } else if line.trim_end() == "..." {
            close(first_line, from, offset);
            (first_line, from) = (n + 2, next);
        }
        offset = next;
    }
    close(first_line, from, text.len());
    out
}

/// What follows a document start marker on `line` (`None`: not a marker line).
fn start_marker(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("---")?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.starts_with([' ', '\t']).then(|| rest.trim_start())
}

/// Whether a document has anything but blank and comment lines.
fn has_content(doc: &str) -> bool {
    doc.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(usize, usize, String)> {
        documents(text)
            .into_iter()
            .map(|d| {
                let name = match &d.parsed {
                    Ok(v) => v["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                    Err(_) => "ERR".to_string(),
                };
                (d.index, d.line, name)
            })
            .collect()
    }

    #[test]
    fn separators_split_documents_and_number_their_lines() {
        let text = "metadata:\n  name: a\n---\nmetadata:\n  name: b\n---\nmetadata:\n  name: c\n";
        assert_eq!(
            names(text),
            [(0, 1, "a".into()), (1, 4, "b".into()), (2, 7, "c".into())]
        );
    }

    #[test]
    fn leading_marker_and_comment_after_the_marker() {
        let text = "---\n# Source: a.yaml\nmetadata:\n  name: a\n--- # Source: b.yaml\nmetadata:\n  name: b\n";
        assert_eq!(names(text), [(0, 2, "a".into()), (1, 5, "b".into())]);
        let docs = documents(text);
        assert!(
            docs[1].text.starts_with("# Source: b.yaml\n"),
            "{:?}",
            docs[1].text
        );
    }

    #[test]
    fn content_after_the_marker_is_the_documents() {
        let docs = documents("--- {metadata: {name: inline}}\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0].parsed.as_ref().unwrap()["metadata"]["name"],
            "inline"
        );
    }

    #[test]
    fn empty_and_comment_only_documents_are_skipped() {
        let text = "---\n---\n# Source: empty.yaml\n---\n\n   \n---\nmetadata:\n  name: b\n---\n";
        assert_eq!(names(text), [(0, 8, "b".into())]);
        assert!(documents("").is_empty());
        assert!(documents("# only a comment\n").is_empty());
    }

    #[test]
    fn end_markers_close_documents() {
        let text = "metadata:\n  name: a\n...\n---\nmetadata:\n  name: b\n...\n";
        assert_eq!(names(text), [(0, 1, "a".into()), (1, 5, "b".into())]);
        // A bare document may follow an end marker.
        let text = "metadata:\n  name: a\n...\nmetadata:\n  name: b\n";
        assert_eq!(names(text), [(0, 1, "a".into()), (1, 4, "b".into())]);
    }

    #[test]
    fn a_document_that_does_not_parse_is_yielded_with_its_error() {
        let text = "metadata:\n  name: a\n---\nkey: [unclosed\n---\nmetadata:\n  name: c\n";
        assert_eq!(
            names(text),
            [(0, 1, "a".into()), (1, 4, "ERR".into()), (2, 6, "c".into())]
        );
        let err = documents(text).remove(1).into_value().unwrap_err();
        assert_eq!((err.index, err.line), (1, 4));
        assert!(
            err.to_string()
                .starts_with("YAML document 2 (from line 4) does not parse: "),
            "{err}"
        );
    }

    #[test]
    fn markers_only_count_at_the_start_of_a_line() {
        let text = "data:\n  k: |\n    ---\n    x\n----not-a-marker: 1\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 1);
        let v = docs[0].parsed.as_ref().unwrap();
        assert_eq!(v["data"]["k"], "---\nx\n");
        assert_eq!(v["----not-a-marker"], 1);
    }

    #[test]
    fn crlf_line_ends_are_markers_too() {
        let text = "metadata:\r\n  name: a\r\n---\r\nmetadata:\r\n  name: b\r\n";
        assert_eq!(names(text), [(0, 1, "a".into()), (1, 4, "b".into())]);
    }
}
