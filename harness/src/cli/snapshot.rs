//! `preflight snapshot` and `preflight diff`: every API object of a cluster, and what
//! changed between two snapshots.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{EXIT_FINDINGS, EXIT_OK, KubeconfigArgs};

pub(super) async fn snapshot(out: &Path, target: &KubeconfigArgs) -> anyhow::Result<i32> {
    let client = target.client(None).await?;
    let snap = crate::snapshot::take(&client, &Default::default())
        .await
        .context("taking the snapshot")?;
    std::fs::write(out, serde_json::to_string_pretty(&snap)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} objects of {} resource types ({} not listable) written to {}",
        snap.objects.len(),
        snap.types,
        snap.unlistable.len(),
        out.display()
    );
    Ok(EXIT_OK)
}

/// Exit 1 when something became orphaned or stuck between the two.
pub(super) fn diff(before: &PathBuf, after: &PathBuf) -> anyhow::Result<i32> {
    let load = |p: &PathBuf| -> anyhow::Result<crate::snapshot::Snapshot> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a preflight snapshot", p.display()))
    };
    let d = crate::snapshot_diff::diff(&load(before)?, &load(after)?);
    print!("{}", d.render());
    Ok(if d.newly_orphaned.is_empty() && d.newly_stuck.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
