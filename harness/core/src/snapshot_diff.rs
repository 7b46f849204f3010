//! `preflight diff`: what changed between two saved snapshots, with objects newly left
//! without their owners judged by the garbage collector's rule (`ownership`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ownership::orphans;
use crate::snapshot::{ObjectRecord, Snapshot};

/// What changed between two snapshots.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDiff {
    pub appeared: Vec<String>,
    pub disappeared: Vec<String>,
    pub newly_orphaned: Vec<String>,
    pub newly_stuck: Vec<String>,
    pub newly_unlistable: Vec<String>,
}

impl SnapshotDiff {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (title, items) in [
            ("newly orphaned (owner gone)", &self.newly_orphaned),
            ("newly stuck in deletion", &self.newly_stuck),
            ("newly unlistable resource types", &self.newly_unlistable),
            ("appeared", &self.appeared),
            ("disappeared", &self.disappeared),
        ] {
            out.push_str(&format!("{title}: {}\n", items.len()));
            for i in items {
                out.push_str(&format!("  {i}\n"));
            }
        }
        out
    }
}

fn orphan_uids(s: &Snapshot) -> BTreeMap<&str, &ObjectRecord> {
    orphans(s)
        .into_iter()
        .map(|(o, _)| (o.uid.as_str(), o))
        .collect()
}

/// Compares `before` and `after` (objects by uid).
pub fn diff(before: &Snapshot, after: &Snapshot) -> SnapshotDiff {
    let (b, a) = (before.by_uid(), after.by_uid());
    let (ob, oa) = (orphan_uids(before), orphan_uids(after));
    let stuck = |m: &BTreeMap<&str, &ObjectRecord>, uid: &str| {
        m.get(uid).is_some_and(|o| o.deletion_timestamp.is_some())
    };
    let unl_b: std::collections::BTreeSet<&str> = before
        .unlistable
        .iter()
        .map(|u| u.resource.as_str())
        .collect();
    SnapshotDiff {
        appeared: a
            .iter()
            .filter(|(u, _)| !b.contains_key(*u))
            .map(|(_, o)| o.display())
            .collect(),
        disappeared: b
            .iter()
            .filter(|(u, _)| !a.contains_key(*u))
            .map(|(_, o)| o.display())
            .collect(),
        newly_orphaned: oa
            .iter()
            .filter(|(u, _)| !ob.contains_key(*u))
            .map(|(_, o)| o.display())
            .collect(),
        newly_stuck: a
            .iter()
            .filter(|(u, o)| o.deletion_timestamp.is_some() && !stuck(&b, u))
            .map(|(_, o)| o.display())
            .collect(),
        newly_unlistable: after
            .unlistable
            .iter()
            .filter(|u| !unl_b.contains(u.resource.as_str()))
            .map(|u| u.resource.clone())
            .collect(),
    }
}
