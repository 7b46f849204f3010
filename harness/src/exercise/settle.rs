//! Waiting for the cascade to finish after a delete, with a deadline: until no object
//! in the namespace has lost its owner and nothing has changed for a quiet period
//! (or, while orphans remain, for a longer one: the garbage collector retries with
//! back-off). Polling, never a fixed sleep; the time it took is recorded.
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

/// How a settle ended.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SettleReport {
    pub duration_ms: u64,
    /// The deadline passed while things were still changing.
    pub timed_out: bool,
    /// Objects whose owner was gone when settling ended.
    pub orphans: usize,
}

/// Waits in `namespace` until settled or `deadline`.
pub async fn settle(
    client: &kube::Client,
    namespace: &str,
    noise: &Noise,
    deadline: Duration,
) -> SettleReport {
    let started = Instant::now();
    let scope = SnapshotScope {
        namespace: Some(namespace.to_string()),
        noise: noise.clone(),
    };
    let mut last: Option<BTreeSet<String>> = None;
    let mut last_change = Instant::now();
    let mut orphan_count = 0;
    loop {
        if let Ok(snap) = snapshot::take(client, &scope).await {
            let state: BTreeSet<String> = snap
                .objects
                .iter()
                .map(|o| format!("{}:{}", o.uid, o.deletion_timestamp.is_some()))
                .collect();
            orphan_count = snapshot::orphans(&snap).len();
            let now = time::OffsetDateTime::now_utc();
            let terminating = snap
                .objects
                .iter()
                .any(|o| deletion_in_progress(o.deletion_timestamp.as_deref(), now));
            if last.as_ref() != Some(&state) || terminating {
                last = Some(state);
                last_change = Instant::now();
            }
            let quiet = if orphan_count == 0 {
                Duration::from_secs(2)
            } else {
                Duration::from_secs(6)
            };
            if last_change.elapsed() >= quiet {
                return SettleReport {
                    duration_ms: started.elapsed().as_millis() as u64,
                    timed_out: false,
                    orphans: orphan_count,
                };
            }
        }
        if started.elapsed() >= deadline {
            return SettleReport {
                duration_ms: started.elapsed().as_millis() as u64,
                timed_out: true,
                orphans: orphan_count,
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
