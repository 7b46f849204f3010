//! `preflight merge-reports`: the shards of one run as one report, judged again.

use std::path::PathBuf;

use super::run::{load_gate, write_reports};
use super::{Progress, default_report_dir, report};

pub(super) fn merge_reports(
    dirs: &[PathBuf],
    report_dir: Option<PathBuf>,
    accept: Option<PathBuf>,
    baseline: Option<PathBuf>,
    progress: &Progress,
) -> anyhow::Result<i32> {
    let gate = load_gate(
        accept.as_deref(),
        baseline.as_deref(),
        crate::accept::BaselineFor::Run,
    )?;
    let merged = report::shard::merge(dirs)?;
    progress.println(format!(
        "merged {} shard{} ({} runs)",
        dirs.len(),
        if dirs.len() == 1 { "" } else { "s" },
        merged.records.len()
    ));
    let dir = report_dir.unwrap_or_else(|| default_report_dir("", "-merged"));
    write_reports(&merged, &dir, &[], gate.as_ref())
}
