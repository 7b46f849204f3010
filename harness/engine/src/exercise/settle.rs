//! Waiting for the cascade to finish after a delete, with a deadline. On clusters
//! preflight runs the evidence ends it: no object in the namespace without its owners,
//! no deletion under way, and the controller manager's garbage-collector work queues
//! empty (its `/metrics`: on loopback for local control planes, inside the node for
//! kind). On a shared cluster, or while objects without owners stay (the
//! collector retries them with back-off), it ends after a quiet period. Polling, never
//! a fixed sleep; the time it took and what ended it are recorded, and a time-out is a
//! finding (see `policy`).
//!
//! While objects without owners stay and the controller manager's log says its garbage
//! collector is still waiting for its informers, quiet is not settled. How long that
//! wait lasts depends on the version ([`GcInitialSync`]): up to 1.31 it lasts until
//! every informer synced. Its periodic sync waits for them as long as its sync period,
//! 30 s from the controller manager's start, then logs that they failed to sync; from
//! that line on the collector will collect nothing, and settling ends on that evidence
//! instead of waiting out its deadline ([`gc_wait_is_final`]). From 1.32 the collector
//! starts anyway 30 s after the controller manager's start, and settling waits for it.
//!
//! An object whose deletion is under way and not yet due (a Pod in its grace period,
//! stopped by a real kubelet on kind) is not settled: its `deletionTimestamp` is when
//! the deletion is due, and settling waits until then plus [`DELETION_MARGIN`] before
//! it may count the object as left behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::snapshot::{self, Noise, SnapshotScope};

pub use preflight_core::settle::{SettleReport, SettledBy};

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

pub use crate::cluster::metrics::{GcMetrics, GcQueues};

/// How long a version's garbage collector waits for its informers to sync after the
/// controller manager starts before it collects anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcInitialSync {
    /// Up to 1.31: until every informer synced, however long (kubernetes#101078).
    Forever,
    /// From 1.32: this long, then it collects what it can (kubernetes#125796).
    Within(Duration),
}

impl GcInitialSync {
    /// The rule of the controller manager at `version`.
    pub fn of(version: &crate::components::Version) -> GcInitialSync {
        if (version.major, version.minor) <= (1, 31) {
            GcInitialSync::Forever
        } else {
            GcInitialSync::Within(Duration::from_secs(30))
        }
    }
}

/// What the garbage collector logs when its informers failed to sync within its
/// periodic sync's wait (as long as its sync period, 30 s, counted from the
/// controller manager's start): its own statement that an informer does not sync.
pub const GC_SYNC_TIMED_OUT: &str = "timed out waiting for dependency graph builder sync";

/// Whether the garbage collector's wait for its informers cannot end on its own: this
/// version waits for ever (`initial_sync`), and the controller manager's `log` shows,
/// for the process that runs now (klog's pid), a collector that is waiting, has never
/// proceeded to collect, and has said itself that its informers failed to sync
/// ([`GC_SYNC_TIMED_OUT`]). Its waiting alone is every start-up's first second; its
/// own time-out, 30 s after its start, is the stall kubernetes#101078 describes.
pub fn gc_wait_is_final(initial_sync: Option<GcInitialSync>, log: &str) -> bool {
    use crate::cluster::metrics::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};
    if initial_sync != Some(GcInitialSync::Forever) {
        return false;
    }
    let Some(last) = log
        .lines()
        .rev()
        .find(|l| l.contains(GC_WAITING) || l.contains(GC_SYNCED) || l.contains(GC_PROCEEDING))
    else {
        return false;
    };
    let Some(pid) = klog_pid(last).filter(|_| last.contains(GC_WAITING)) else {
        return false;
    };
    let (mut proceeded, mut timed_out) = (false, false);
    for l in log.lines().filter(|l| klog_pid(l) == Some(pid)) {
        proceeded |= l.contains(GC_PROCEEDING);
        timed_out |= l.contains(GC_SYNC_TIMED_OUT);
    }
    timed_out && !proceeded
}

/// The process id in a klog header (`I1203 12:07:30.930132   14664 file.go:1] ...`),
/// which tells one run of the controller manager from an earlier one in the same log.
fn klog_pid(line: &str) -> Option<&str> {
    let mut fields = line.split_whitespace();
    let level = fields.next()?;
    let klog = level.len() == 5
        && level.starts_with(['I', 'W', 'E', 'F'])
        && level[1..].bytes().all(|b| b.is_ascii_digit());
    let _time = fields.next()?;
    let pid = fields.next()?;
    (klog && pid.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
}

/// Waits in `namespace` until settled or `deadline`. With `gc` (local control planes)
/// it ends as soon as the evidence says so: no deletion under way, no object left
/// without its owners, and the garbage collector's queues empty on two reads in a row.
/// Otherwise, or while objects without owners stay, it ends after a quiet period.
///
/// `gc_log` reads the controller manager's log. While objects without owners stay and
/// it says the garbage collector has not started collecting since its last start (it
/// waits for its informers: for ever up to 1.31, 30 s from 1.32), quiet is not
/// settled: settling waits for it, up to `deadline`, unless `initial_sync` (the
/// cluster's version's rule, where known) and the evidence say the wait cannot end
/// ([`gc_wait_is_final`]).
pub async fn settle<'a>(
    client: &kube::Client,
    namespace: &str,
    noise: &Noise,
    deadline: Duration,
    gc: Option<&GcMetrics>,
    gc_log: &(dyn Fn() -> BoxFuture<'a, Option<String>> + Send + Sync),
    initial_sync: Option<GcInitialSync>,
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
                // One idle read of the queues: the second (the evidence) is next; a
                // slow read (a kind node's, through `docker exec`) must not lose to
                // the quiet period.
                if last_change.elapsed() >= quiet && idle_reads == 0 {
                    let log = if orphan_count > 0 {
                        gc_log().await
                    } else {
                        None
                    };
                    gc_waiting = log
                        .as_deref()
                        .and_then(crate::cluster::metrics::gc_collecting)
                        == Some(false);
                    if !gc_waiting {
                        return report(SettledBy::Quiet, orphan_count, snapshot_errors, last_error);
                    }
                    if gc_wait_is_final(initial_sync, log.as_deref().unwrap_or("")) {
                        return report(
                            SettledBy::GarbageCollectorWaiting,
                            orphan_count,
                            snapshot_errors,
                            last_error,
                        );
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

    const OLD_SYNCED: &str =
        "I1203 12:07:05.6 14064 shared_informer.go:318] Caches are synced for garbage collector";
    const WAITING: &str = "I1203 12:07:31.0 14664 shared_informer.go:311] Waiting for caches to sync for garbage collector";
    const TIMED_OUT: &str = "E1203 12:08:01.0 14664 garbagecollector.go:277] timed out waiting for dependency graph builder sync during GC sync (attempt 1)";
    const PROCEEDING: &str = "I1203 12:07:32.0 14664 garbagecollector.go:166] All resource monitors have synced. Proceeding to collect garbage";

    #[test]
    fn the_collector_waits_for_ever_up_to_1_31_and_30_s_from_1_32() {
        let v = |minor| crate::components::Version::new(1, minor, 0);
        assert_eq!(GcInitialSync::of(&v(29)), GcInitialSync::Forever);
        assert_eq!(GcInitialSync::of(&v(31)), GcInitialSync::Forever);
        assert_eq!(
            GcInitialSync::of(&v(32)),
            GcInitialSync::Within(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_wait_is_final_once_the_collector_says_its_informers_failed_to_sync() {
        let forever = Some(GcInitialSync::Forever);
        // The restarted controller manager (pid 14664) after the one that synced.
        let stalled = format!("{OLD_SYNCED}\n{WAITING}\n{TIMED_OUT}\n{WAITING}\n");
        assert!(gc_wait_is_final(forever, &stalled));
        // Still inside its first 30 s: waiting, which every start-up does for a moment.
        let waiting = format!("{OLD_SYNCED}\n{WAITING}\n");
        assert!(!gc_wait_is_final(forever, &waiting));
        // From 1.32 the collector starts anyway: wait for it.
        let within = Some(GcInitialSync::Within(Duration::from_secs(30)));
        assert!(!gc_wait_is_final(within, &stalled));
        // The version unknown: no rule assumed.
        assert!(!gc_wait_is_final(None, &stalled));
        // An earlier controller manager's time-out says nothing of this one's.
        let earlier = format!("{TIMED_OUT}\n{}\n", WAITING.replace("14664", "20001"));
        assert!(!gc_wait_is_final(forever, &earlier));
        // This one collected before a later sync timed out: it collects.
        let collecting = format!("{WAITING}\n{PROCEEDING}\n{TIMED_OUT}\n{WAITING}\n");
        assert!(!gc_wait_is_final(forever, &collecting));
        assert!(!gc_wait_is_final(forever, ""));
    }

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
