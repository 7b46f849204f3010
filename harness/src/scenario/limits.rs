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

/// The parser's message for a limit of [`options`] that was hit, in words a scenario
/// author acts on (the parser's own names its internal counters); `None` for any other
/// message.
pub(crate) fn explain(message: &str) -> Option<String> {
    let what = if let Some(breach) = message.strip_prefix("budget breached: ") {
        let name = breach.split([' ', '{']).next().unwrap_or_default();
        match name {
            "Depth" => format!("nested more than {MAX_DEPTH} levels deep"),
            "Aliases"
            | "Anchors"
            | "AliasAnchorRatio"
            | "RecordedAnchorEvents"
            | "RecordedAnchorBytes"
            | "MergeKeys" => format!(
                "its aliases expand to more than {MAX_EXPANDED_EVENTS} nodes, or it has too many anchors, aliases or merge keys (an alias bomb)"
            ),
            "Documents" => "more than one YAML document".to_string(),
            "InputBytes" | "ScalarBytes" | "CommentBytes" => {
                format!("more than {MAX_FILE_BYTES} bytes of text")
            }
            _ => format!("too many YAML nodes ({})", breach.trim()),
        }
    } else if message.starts_with("alias replay") {
        format!(
            "its aliases expand to more than {MAX_EXPANDED_EVENTS} nodes or nest more than {MAX_DEPTH} deep (an alias bomb)"
        )
    } else if message.starts_with("recursion limit exceeded") {
        format!("nested more than {MAX_DEPTH} levels deep")
    } else {
        return None;
    };
    Some(format!(
        "refused: {what}; scenario and values files are kept small so that reading one is cheap"
    ))
}
