//! Scrubbing a captured chart's files: what `values` redaction cannot reach.
//!
//! A chart kept as its rendered manifest (Helm does not store subcharts) holds the
//! Secrets the release created, values and all; any chart may hold a PEM key or
//! certificate literally, or base64-encoded. A twin is committed to a repository, so
//! these are removed: Secret `data`/`stringData` values in rendered manifests, PEM
//! blocks anywhere, and base64 text that starts like an encoded PEM block. Each
//! removal is listed in `capture.json`. Literal credentials a template spells out any
//! other way are not recognisable and stay (docs/twins.md says so).

use std::path::Path;

use serde_json::Value;

use super::capture::CaptureError;
use super::manifest::RedactionEntry;

use super::values::REDACTED;
use crate::yaml_stream::Document;
/// [`REDACTED`], base64-encoded: the replacement in a Secret's `data`.
const REDACTED_B64: &str = "UkVEQUNURUQ=";
/// `-----BEGIN` base64-encoded from the start of a text: how an encoded PEM file
/// (a Secret's `tls.crt`, a `caBundle`) begins.
const PEM_B64: &str = "LS0tLS1CRUdJTi";

/// Scrubs every file under `out/rel` in place; returns what was removed.
pub fn scrub_dir(out: &Path, rel: &Path) -> Result<Vec<RedactionEntry>, CaptureError> {
    let mut found = Vec::new();
    walk(out, rel, &mut found)?;
    Ok(found)
}

fn walk(out: &Path, rel: &Path, found: &mut Vec<RedactionEntry>) -> Result<(), CaptureError> {
    let dir = out.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|source| CaptureError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries.flatten() {
        let rel_path = rel.join(entry.file_name());
        let path = entry.path();
        if path.is_dir() {
            walk(out, &rel_path, found)?;
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // binary files are kept as they are
        };
        let rendered = rel_path.components().any(|c| c.as_os_str() == "rendered");
        let (scrubbed, reasons) = scrub_text(&text, rendered);
        if !reasons.is_empty() {
            std::fs::write(&path, scrubbed).map_err(|source| CaptureError::Io {
                path: path.clone(),
                source,
            })?;
            for (where_, reason) in reasons {
                found.push(RedactionEntry {
                    file: rel_path.display().to_string(),
                    path: where_,
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// The text with credentials removed, and `(where, why)` for each removal.
pub fn scrub_text(text: &str, rendered_manifest: bool) -> (String, Vec<(String, String)>) {
    let mut reasons = Vec::new();
    let mut text = text.to_string();
    if rendered_manifest {
        text = scrub_secrets(&text, &mut reasons);
    }
    let text = scrub_pem(&text, &mut reasons);
    (text, reasons)
}

/// What replaces a rendered document that could not be read: a YAML comment, which
/// Helm skips as an empty document.
pub const REMOVED_DOCUMENT: &str = "# removed by preflight capture: this document could not be parsed, so it could not be checked for credentials (see capture.json)\n";

/// Why a document was removed whole (listed in `capture.json`).
const UNPARSABLE: &str =
    "a rendered document that could not be parsed, removed whole: it could hold a Secret's values";

/// Secret objects of a rendered manifest keep their keys, not their values. Scrubbing
/// fails closed: a document that cannot be parsed (or written back) cannot be checked
/// for a Secret, so it is replaced by [`REMOVED_DOCUMENT`] rather than kept as it was.
fn scrub_secrets(text: &str, reasons: &mut Vec<(String, String)>) -> String {
    let docs = crate::yaml_stream::documents(text);
    let mut changed = false;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let (kept, removed) = scrub_document(doc);
        changed |= !removed.is_empty();
        reasons.extend(removed);
        out.push(kept);
    }
    if changed {
        out.join("---\n")
    } else {
        text.to_string()
    }
}

/// One document of a rendered manifest, scrubbed; with what was removed.
fn scrub_document(doc: Document<'_>) -> (String, Vec<(String, String)>) {
    let n = doc.index + 1;
    let removed_whole = || {
        (
            REMOVED_DOCUMENT.to_string(),
            vec![(format!("document {n}"), UNPARSABLE.to_string())],
        )
    };
    let Ok(mut v) = doc.parsed else {
        return removed_whole();
    };
    let text = with_line_end(doc.text);
    if v.get("kind").and_then(Value::as_str) != Some("Secret") {
        return (text, Vec::new());
    }
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let mut reasons = Vec::new();
    for (field, replacement) in [("data", REDACTED_B64), ("stringData", REDACTED)] {
        match v.get_mut(field) {
            Some(Value::Object(map)) => {
                for (k, val) in map.iter_mut() {
                    *val = Value::String(replacement.into());
                    reasons.push((
                        format!("Secret/{name} {field}.{k}"),
                        "a Secret's value".into(),
                    ));
                }
            }
            None | Some(Value::Null) => {}
            // Not a mapping: nothing to keep the keys of, and it is still a Secret's.
            Some(other) => {
                *other = Value::Object(Default::default());
                reasons.push((
                    format!("Secret/{name} {field}"),
                    "a Secret's values (not a mapping), removed whole".into(),
                ));
            }
        }
    }
    if reasons.is_empty() {
        return (text, reasons);
    }
    match serde_saphyr::to_string(&v) {
        Ok(text) => (text, reasons),
        Err(_) => removed_whole(),
    }
}

/// A document's text ending with a line end, as it is joined back with `---` lines.
fn with_line_end(text: &str) -> String {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// PEM blocks, plain or base64-encoded, wherever they are.
fn scrub_pem(text: &str, reasons: &mut Vec<(String, String)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_block = false;
    for (n, line) in text.lines().enumerate() {
        if let Some(start) = line.find("-----BEGIN ") {
            reasons.push((format!("line {}", n + 1), "PEM block".into()));
            out.push_str(&line[..start]);
            out.push_str(REDACTED);
            // A block that ends on its own line (`\n` escaped in a one-line string).
            in_block = !line[start..].contains("-----END ");
            out.push('\n');
            continue;
        }
        if in_block {
            if line.contains("-----END ") {
                in_block = false;
            }
            continue;
        }
        let mut l = line.to_string();
        while let Some(start) = l.find(PEM_B64) {
            let end = l[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
                .map_or(l.len(), |e| start + e);
            l.replace_range(start..end, REDACTED_B64);
            reasons.push((format!("line {}", n + 1), "base64-encoded PEM block".into()));
        }
        out.push_str(&l);
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_secrets_keep_keys_not_values() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: visible\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\nstringData:\n  token: abc123\n";
        let (out, reasons) = scrub_text(text, true);
        assert!(!out.contains("aHVudGVyMg=="), "{out}");
        assert!(!out.contains("abc123"), "{out}");
        assert!(out.contains("visible"), "{out}");
        assert!(out.contains("password"), "{out}");
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        // Not a rendered manifest: templates are left to the values redaction.
        let (same, none) = scrub_text(text, false);
        assert_eq!(same, text);
        assert!(none.is_empty());
    }

    #[test]
    fn an_unparsable_rendered_document_is_removed_not_kept() {
        // A Secret whose document does not parse (an unclosed flow sequence): it
        // cannot be checked, so it goes whole; the readable ConfigMap stays.
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: visible\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\n  broken: [unclosed\n";
        let (out, reasons) = scrub_text(text, true);
        assert!(!out.contains("aHVudGVyMg=="), "{out}");
        assert!(out.contains("visible"), "{out}");
        assert!(out.contains(REMOVED_DOCUMENT), "{out}");
        assert_eq!(
            reasons,
            vec![("document 2".to_string(), UNPARSABLE.to_string())]
        );

        // Through the directory walk: the file is rewritten and capture.json's entry
        // names the file, the document and the reason.
        let out_dir = tempfile::tempdir().unwrap();
        let rel = Path::new("releases/ns/r/chart");
        let file = out_dir.path().join(rel).join("rendered/manifest.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        let found = scrub_dir(out_dir.path(), rel).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, "releases/ns/r/chart/rendered/manifest.yaml");
        assert_eq!(found[0].path, "document 2");
        assert_eq!(found[0].reason, UNPARSABLE);
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(!written.contains("aHVudGVyMg=="), "{written}");
    }

    #[test]
    fn documents_split_at_markers_with_comments_and_end_markers() {
        // `--- # comment` and `...` separate documents too: the Secret after them is
        // scrubbed by its keys, and the documents around it stay readable.
        let text = "# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n...\n--- # Source: c/templates/secret.yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\n---\n# Source: c/templates/empty.yaml\n---\nkind: [unclosed\n";
        let (out, reasons) = scrub_text(text, true);
        assert!(!out.contains("aHVudGVyMg=="), "{out}");
        assert!(!out.contains("unclosed"), "{out}");
        assert_eq!(
            reasons,
            vec![
                (
                    "Secret/db data.password".to_string(),
                    "a Secret's value".to_string()
                ),
                ("document 3".to_string(), UNPARSABLE.to_string()),
            ]
        );
        let docs: Vec<_> = crate::yaml_stream::documents(&out)
            .into_iter()
            .map(|d| d.parsed.map(|v| v["kind"].clone()).ok())
            .collect();
        // The unparsable document's stub is a comment: Helm and the splitter skip it.
        assert!(out.contains(REMOVED_DOCUMENT), "{out}");
        assert_eq!(docs, [Some("ConfigMap".into()), Some("Secret".into())]);
    }

    #[test]
    fn a_secret_whose_data_is_not_a_mapping_loses_it() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData: hunter2\n";
        let (out, reasons) = scrub_text(text, true);
        assert!(!out.contains("hunter2"), "{out}");
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert_eq!(reasons[0].0, "Secret/db stringData");
    }

    #[test]
    fn pem_blocks_go_plain_and_encoded() {
        let key = "tls.key: |\n  -----BEGIN PRIVATE KEY-----\n  MIIEvQIBADANBg\n  -----END PRIVATE KEY-----\nnext: kept\n";
        let (out, reasons) = scrub_text(key, false);
        assert_eq!(out, "tls.key: |\n  REDACTED\nnext: kept\n");
        assert_eq!(reasons.len(), 1);
        let encoded = format!("ca: {PEM_B64}BDRVJUSUZJQ0FURS0tLS0t\nother: x\n");
        let (out, reasons) = scrub_text(&encoded, false);
        assert_eq!(out, format!("ca: {REDACTED_B64}\nother: x\n"));
        assert_eq!(reasons[0].1, "base64-encoded PEM block");
    }
}
