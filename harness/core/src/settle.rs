//! How a settle ended, as recorded (the engine's `exercise::settle` waits for the
//! cascade).

use serde::Serialize;

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
    /// Objects stayed without their owners while the garbage collector, by the
    /// controller manager's log, was still waiting for its informers and so collecting
    /// nothing: what it left is what it would leave. Either the deadline passed, or the
    /// wait cannot end (a version whose collector waits for every informer, and its own
    /// log line that they failed to sync).
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
