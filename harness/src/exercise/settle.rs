//! Waiting for the cascade to finish after a delete, with a deadline: until no object
//! in the namespace has lost its owner and nothing has changed for a quiet period
//! (or, while orphans remain, for a longer one: the garbage collector retries with
//! back-off). Polling, never a fixed sleep; the time it took is recorded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::snapshot::{self, Noise, SnapshotScope};

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
            if last.as_ref() != Some(&state) {
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
