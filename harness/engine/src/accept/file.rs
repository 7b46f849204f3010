//! Reading `--accept FILE` and `--baseline REPORT.json`, before any cluster starts:
//! a bad file stops the job with `file:line:column` and the field, never a gate that
//! silently accepts nothing (or everything).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use time::Date;

use super::{Entry, Matcher};
use crate::scenario::limits;

/// Why an accept file or a baseline could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcceptError {
    /// The accept file is unreadable, not YAML of the expected shape, or an entry is
    /// incomplete.
    #[error("{file}:{line}:{column}: {message}")]
    File {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    /// The baseline is unreadable or not a report of the same command.
    #[error("baseline {file}: {message}")]
    Baseline { file: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccept {
    accept: Vec<Spanned<FileEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    #[serde(rename = "match")]
    matcher: Spanned<Matcher>,
    reason: Spanned<String>,
    owner: Spanned<String>,
    expires: Spanned<String>,
}

/// An accept file, loaded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptFile {
    pub file: String,
    pub entries: Vec<Entry>,
}

/// Loads and checks an accept file (the scenario files' size cap and parser budgets).
pub fn load(path: &Path) -> Result<AcceptFile, AcceptError> {
    let file = path.display().to_string();
    let text = limits::read_capped(path).map_err(|message| AcceptError::File {
        file: file.clone(),
        line: 0,
        column: 0,
        message,
    })?;
    parse(&text, &file)
}

/// Parses accept-file text; `file` names it in errors and in the report.
pub fn parse(text: &str, file: &str) -> Result<AcceptFile, AcceptError> {
    let at = |loc: &Location, message: String| AcceptError::File {
        file: file.to_string(),
        line: loc.line(),
        column: loc.column(),
        message,
    };
    let raw: FileAccept =
        serde_saphyr::from_str_with_options(text, limits::options()).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let message = e.to_string();
            let message = without_position(message.lines().next().unwrap_or(&message));
            let message = limits::explain(&e).unwrap_or_else(|| message.to_string());
            AcceptError::File {
                file: file.to_string(),
                line,
                column,
                message,
            }
        })?;
    let mut entries = Vec::new();
    for (i, e) in raw.accept.into_iter().enumerate() {
        entries.push(entry(i, e, file).map_err(|(loc, m)| at(&loc, m))?);
    }
    Ok(AcceptFile {
        file: file.to_string(),
        entries,
    })
}

/// The parser's message without its own `error: line 4 column 5: ` prefix (the error
/// starts with `file:line:column`).
fn without_position(message: &str) -> &str {
    let text = message.trim_start_matches("error: ");
    text.strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(text, |(_, after)| after)
}

/// One entry checked: a matcher that names something, a reason and an owner that say
/// something, and an expiry that is a date.
fn entry(i: usize, e: Spanned<FileEntry>, file: &str) -> Result<Entry, (Location, String)> {
    let FileEntry {
        matcher,
        reason,
        owner,
        expires,
    } = e.value;
    if matcher.value == Matcher::default() {
        return Err((
            matcher.referenced,
            format!(
                "accept[{i}].match: give at least one of finding, scenario, kind, name, ownedBy, reason, check, text (an empty match would accept everything)"
            ),
        ));
    }
    for (field, v) in [("reason", &reason), ("owner", &owner)] {
        if v.value.trim().is_empty() {
            return Err((
                v.referenced,
                format!("accept[{i}].{field}: must not be empty (say why, and who accepted it)"),
            ));
        }
    }
    let date = parse_date(&expires.value).ok_or_else(|| {
        (
            expires.referenced,
            format!(
                "accept[{i}].expires `{}`: expected a date YYYY-MM-DD, e.g. 2027-03-31",
                expires.value
            ),
        )
    })?;
    Ok(Entry {
        at: format!("{file}:{}:{}", e.referenced.line(), e.referenced.column()),
        matcher: matcher.value,
        reason: reason.value.trim().to_string(),
        owner: owner.value.trim().to_string(),
        expires: date,
    })
}

/// `2027-03-31` as a date.
pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// The identities of every finding of a previous report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub file: String,
    pub identities: BTreeSet<String>,
}

/// Which command's report a baseline must be: the identities of `run` and `audit`
/// findings have nothing in common.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineFor {
    Run,
    Audit,
}

/// Loads a baseline: `report.json` or `runs.json` of `preflight run` (a twin's replay
/// too), or `audit.json` of `preflight audit`.
pub fn load_baseline(path: &Path, wanted: BaselineFor) -> Result<Baseline, AcceptError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AcceptError::Baseline {
        file: file.clone(),
        message: format!("cannot read it: {e}"),
    })?;
    parse_baseline(&text, &file, wanted)
}

/// Parses a baseline's text; `file` names it in errors.
pub fn parse_baseline(
    text: &str,
    file: &str,
    wanted: BaselineFor,
) -> Result<Baseline, AcceptError> {
    use super::AuditSubject;
    use crate::report::shard::ShardFiles;
    use crate::report::{self, shard};
    let fail = |message: String| AcceptError::Baseline {
        file: file.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let schema = value
        .get("schema")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let bad = |e: serde_json::Error| fail(format!("not a {schema} document: {e}"));
    let identities = match (schema.as_str(), wanted) {
        (report::SCHEMA, BaselineFor::Run) => {
            let mut r: report::Report = serde_json::from_value(value).map_err(bad)?;
            super::identities(&mut r)
        }
        (shard::SCHEMA, BaselineFor::Run) => {
            let runs: shard::ShardFile = serde_json::from_value(value).map_err(bad)?;
            super::identities(&mut runs.report())
        }
        (super::AUDIT_SCHEMA, BaselineFor::Audit) => {
            let r: crate::audit_report::AuditReport = serde_json::from_value(value).map_err(bad)?;
            r.findings
                .iter()
                .map(|f| super::Subject::audit(f).identity)
                .collect()
        }
        (_, BaselineFor::Run) => {
            return Err(fail(format!(
                "schema `{schema}`: expected a report.json ({}) or runs.json ({}) of `preflight run`",
                report::SCHEMA,
                shard::SCHEMA
            )));
        }
        (_, BaselineFor::Audit) => {
            return Err(fail(format!(
                "schema `{schema}`: expected an audit.json ({}) of `preflight audit`",
                super::AUDIT_SCHEMA
            )));
        }
    };
    Ok(Baseline {
        file: file.to_string(),
        identities,
    })
}
