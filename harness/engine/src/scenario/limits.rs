//! What reading a scenario file (and a values file it names) may cost: a size cap
//! checked before the parser sees a byte, and the YAML parser's budgets, so that a
//! hostile or broken file (a "billion laughs" alias bomb, thousands of nested
//! brackets, a file of gigabytes) is refused quickly with a message naming the file
//! instead of exhausting the memory or the time of a shared CI machine.
//!
//! The bounds are far above any real scenario (the shipped ones are a few KiB, a few
//! hundred nodes, nesting depth under 10) and far below what hurts.

use std::io::Read;
use std::path::Path;

/// The largest scenario or values file read: 1 MiB. The shipped scenarios are under
/// 4 KiB; Helm values files of large umbrella charts are rarely over 100 KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The deepest nesting of mappings and sequences (the root counts as one). A scenario
/// uses about 6; chart values rarely go past 10.
pub const MAX_DEPTH: usize = 32;

/// At most this many nodes after alias expansion: a scenario has a few hundred, so an
/// alias bomb hits this long before it allocates anything worth measuring.
pub const MAX_EXPANDED_EVENTS: usize = 20_000;

/// The parser options every scenario and values file is read with.
pub(crate) fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
            max_events: 100_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_recorded_anchor_events: MAX_EXPANDED_EVENTS,
            max_recorded_anchor_bytes: MAX_FILE_BYTES,
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_documents: 1,
            max_nodes: 50_000,
            max_total_scalar_bytes: MAX_FILE_BYTES,
            max_merge_keys: 1_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_EXPANDED_EVENTS,
            max_replay_stack_depth: MAX_DEPTH,
            max_alias_expansions_per_anchor: 1_000,
        },
    }
}

/// Why `text` is too large to parse, if it is.
pub(crate) fn too_large(len: usize) -> Option<String> {
    (len > MAX_FILE_BYTES).then(|| {
        format!(
            "the file is {len} bytes; scenario and values files are read up to {MAX_FILE_BYTES} bytes (1 MiB)"
        )
    })
}

/// Reads a file of at most [`MAX_FILE_BYTES`] without reading more than one byte past
/// the cap (a huge file, or a device that never ends, is not read into memory).
pub(crate) fn read_capped(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is larger than {MAX_FILE_BYTES} bytes (1 MiB), the most a scenario or values file may be"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "cannot read: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// A limit of [`options`] (or of a twin file's reading options) that a parse hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Nesting deeper than the budget allows.
    Depth,
    /// Aliases expanding past the budget, or too many anchors, aliases or merge keys.
    AliasBomb,
    /// Alias replay past its limits (expansion or nesting).
    AliasReplay,
    /// More than one YAML document.
    Documents,
    /// More text than the budget allows.
    Bytes,
    /// Another budget (events, nodes): the parser's name for it.
    Other(String),
}

impl Limit {
    /// The limit a parse error is, if it is one (`None` for any other error), from the
    /// error's own variants: the parser's budget breach, its alias replay limits, and
    /// the scanner's recursion limit.
    pub fn of(e: &serde_saphyr::Error) -> Option<Limit> {
        use serde_saphyr::budget::BudgetBreach;
        use serde_saphyr::granit_parser::ErrorKind;
        use serde_saphyr::{Error, ExternalMessageSource};
        match e {
            Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => Limit::of(error),
            Error::Budget { breach, .. } => Some(match breach {
                BudgetBreach::Depth { .. } => Limit::Depth,
                BudgetBreach::Aliases { .. }
                | BudgetBreach::Anchors { .. }
                | BudgetBreach::AliasAnchorRatio { .. }
                | BudgetBreach::RecordedAnchorEvents { .. }
                | BudgetBreach::RecordedAnchorBytes { .. }
                | BudgetBreach::MergeKeys { .. } => Limit::AliasBomb,
                BudgetBreach::Documents { .. } => Limit::Documents,
                BudgetBreach::InputBytes { .. }
                | BudgetBreach::ScalarBytes { .. }
                | BudgetBreach::CommentBytes { .. } => Limit::Bytes,
                other => Limit::Other(format!("{other:?}")),
            }),
            Error::AliasReplayCounterOverflow { .. }
            | Error::AliasReplayLimitExceeded { .. }
            | Error::AliasExpansionLimitExceeded { .. }
            | Error::AliasReplayStackDepthExceeded { .. } => Some(Limit::AliasReplay),
            Error::ExternalMessage { source, .. } => match source.as_ref() {
                ExternalMessageSource::Parser(scan)
                    if *scan.kind() == ErrorKind::RecursionLimitExceeded =>
                {
                    Some(Limit::Depth)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// What was too much, in words a scenario author acts on (the parser's own names
    /// its internal counters).
    fn describe(&self) -> String {
        match self {
            Limit::Depth => format!("nested more than {MAX_DEPTH} levels deep"),
            Limit::AliasBomb => format!(
                "its aliases expand to more than {MAX_EXPANDED_EVENTS} nodes, or it has too many anchors, aliases or merge keys (an alias bomb)"
            ),
            Limit::AliasReplay => format!(
                "its aliases expand to more than {MAX_EXPANDED_EVENTS} nodes or nest more than {MAX_DEPTH} deep (an alias bomb)"
            ),
            Limit::Documents => "more than one YAML document".to_string(),
            Limit::Bytes => format!("more than {MAX_FILE_BYTES} bytes of text"),
            Limit::Other(name) => format!("too many YAML nodes ({name})"),
        }
    }
}

/// The message for a parse error that hit a limit of [`options`]; `None` for any other
/// error.
pub(crate) fn explain(e: &serde_saphyr::Error) -> Option<String> {
    Limit::of(e).map(|limit| {
        format!(
            "refused: {}; scenario and values files are kept small so that reading one is cheap",
            limit.describe()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str) -> Option<Limit> {
        let e = serde_saphyr::from_str_with_options::<serde_json::Value>(text, options())
            .expect_err("the text breaks a limit or is not YAML");
        Limit::of(&e)
    }

    #[test]
    fn limits_are_read_from_the_errors_variants() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 8),
            "]".repeat(MAX_DEPTH + 8)
        );
        assert_eq!(limit(&deep), Some(Limit::Depth));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(
            matches!(limit(&bomb), Some(Limit::AliasBomb | Limit::AliasReplay)),
            "{:?}",
            limit(&bomb)
        );
        // An error that is no limit is not explained as one.
        assert_eq!(limit("key: [unclosed\n"), None);
        assert_eq!(limit("a: 1\na: 2\n"), None);
    }
}
