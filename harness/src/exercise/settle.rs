//! Waiting for the cascade to finish after a delete, with a deadline. On local control
//! planes the evidence ends it: no object in the namespace without its owners, no
//! deletion under way, and the controller manager's garbage-collector work queues
//! empty (its `/metrics`). Elsewhere, or while objects without owners stay (the
//! collector retries them with back-off), it ends after a quiet period. Polling, never
//! a fixed sleep; the time it took and what ended it are recorded, and a time-out is a
//! finding (see `policy`).
//!
//! An object whose deletion is under way and not yet due (a Pod in its grace period,
//! stopped by a real kubelet on kind) is not settled: its `deletionTimestamp` is when
//! the deletion is due, and settling waits until then plus [`DELETION_MARGIN`] before
//! it may count the object as left behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::snapshot::{self, Noise, SnapshotScope};

/// How long past its due time a deletion may take (the kubelet reporting the
/// container's end, the API server removing the object) before it counts as stuck.
pub const DELETION_MARGIN: Duration = Duration::from_secs(10);

/// Whether an object's deletion (`deletionTimestamp`, RFC 3339) is still under way at
/// `now`: not yet due plus [`DELETION_MARGIN`].
pub fn deletion_in_progress(deletion_timestamp: Option<&str>, now: time::OffsetDateTime) -> bool {
    let Some(ts) = deletion_timestamp else {
        return false;
    };
    match time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339) {
        Ok(due) => now < due + DELETION_MARGIN,
        Err(_) => false,
    }
}

/// What ended a settle.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SettledBy {
    /// The controller manager's garbage collector reported empty work queues while no
    /// object was left without its owners and no deletion was under way.
    GarbageCollectorIdle,
    /// Nothing changed for the quiet period (no garbage-collector metrics here, or
    /// objects without owners stayed: the collector retries them with back-off).
    Quiet,
    /// The deadline passed while things were still changing.
    TimedOut,
    /// The deadline passed with objects left without their owners while the garbage
    /// collector, by the controller manager's log, was still waiting for its informers
    /// and so collecting nothing: what it left is what it would leave.
    GarbageCollectorWaiting,
}

/// How a settle ended.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SettleReport {
    pub duration_ms: u64,
    /// The deadline passed while things were still changing.
    pub timed_out: bool,
    pub settled_by: SettledBy,
    /// Objects whose owner was gone when settling ended.
    pub orphans: usize,
    /// Snapshots that failed while settling (the last error, if any, is kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub snapshot_errors: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub use crate::cluster::metrics::{GcMetrics, GcQueues};

/// Waits in `namespace` until settled or `deadline`. With `gc` (local control planes)
/// it ends as soon as the evidence says so: no deletion under way, no object left
/// without its owners, and the garbage collector's queues empty on two reads in a row.
/// Otherwise, or while objects without owners stay, it ends after a quiet period.
///
/// `gc_log` reads the controller manager's log. While objects without owners stay and
/// it says the garbage collector has not started collecting since its last start (it
/// waits for its informers: for ever up to 1.31, 30 s from 1.32), quiet is not
/// settled: settling waits for it, up to `deadline`.
pub async fn settle(
    client: &kube::Client,
    namespace: &str,
    noise: &Noise,
    deadline: Duration,
    gc: Option<&GcMetrics>,
    gc_log: &(dyn Fn() -> Option<String> + Send + Sync),
) -> SettleReport {
    let started = Instant::now();
    let scope = SnapshotScope {
        namespace: Some(namespace.to_string()),
        noise: noise.clone(),
    };
    let http = crate::cluster::metrics::loopback_http().ok();
    let mut last: Option<BTreeSet<String>> = None;
    let mut last_change = Instant::now();
    let mut orphan_count = 0;
    let mut idle_reads = 0;
    let mut gc_waiting = false;
    let mut snapshot_errors = 0;
    let mut last_error = None;
    let report = |by: SettledBy, orphans, errors, last_error| SettleReport {
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out: by == SettledBy::TimedOut,
        settled_by: by,
        orphans,
        snapshot_errors: errors,
        last_error,
    };
    loop {
        match snapshot::take(client, &scope).await {
            Ok(snap) => {
                let state: BTreeSet<String> = snap
                    .objects
                    .iter()
                    .map(|o| format!("{}:{}", o.uid, o.deletion_timestamp.is_some()))
                    .collect();
                orphan_count = crate::ownership::orphans(&snap).len();
                let now = time::OffsetDateTime::now_utc();
                let terminating = snap
                    .objects
                    .iter()
                    .any(|o| deletion_in_progress(o.deletion_timestamp.as_deref(), now));
                if last.as_ref() != Some(&state) || terminating {
                    last = Some(state);
                    last_change = Instant::now();
                }
                let gc_idle = match (gc, &http) {
                    (Some(gc), Some(http)) if orphan_count == 0 && !terminating => {
                        gc.queues(http).await.map(|q| q.idle())
                    }
                    _ => None,
                };
                idle_reads = if gc_idle == Some(true) {
                    idle_reads + 1
                } else {
                    0
                };
                if idle_reads >= 2 {
                    return report(
                        SettledBy::GarbageCollectorIdle,
                        orphan_count,
                        snapshot_errors,
                        last_error,
                    );
                }
                let quiet = if orphan_count == 0 {
                    Duration::from_secs(2)
                } else {
                    Duration::from_secs(6)
                };
                gc_waiting = false;
                if last_change.elapsed() >= quiet {
                    gc_waiting = orphan_count > 0
                        && gc_log().and_then(|l| crate::cluster::metrics::gc_collecting(&l))
                            == Some(false);
                    if !gc_waiting {
                        return report(SettledBy::Quiet, orphan_count, snapshot_errors, last_error);
                    }
                    // Read the log again in a second, not on every poll.
                    tokio::time::sleep(Duration::from_millis(750)).await;
                }
            }
            Err(e) => {
                snapshot_errors += 1;
                last_error = Some(e.to_string());
            }
        }
        if started.elapsed() >= deadline {
            return report(
                if gc_waiting {
                    SettledBy::GarbageCollectorWaiting
                } else {
                    SettledBy::TimedOut
                },
                orphan_count,
                snapshot_errors,
                last_error,
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_is_in_progress_until_due_plus_margin() {
        let now = time::macros::datetime!(2026-11-30 02:00:00 UTC);
        assert!(!deletion_in_progress(None, now));
        // A Pod deleted with a 30 s grace period 5 s ago: due in 25 s.
        assert!(deletion_in_progress(Some("2026-11-30T02:00:25Z"), now));
        // Due 5 s ago: within the margin.
        assert!(deletion_in_progress(Some("2026-11-30T01:59:55Z"), now));
        // Due 11 s ago: past the margin, so stuck (a finalizer, a kubelet that is gone).
        assert!(!deletion_in_progress(Some("2026-11-30T01:59:49Z"), now));
        assert!(!deletion_in_progress(Some("not a time"), now));
    }
}
