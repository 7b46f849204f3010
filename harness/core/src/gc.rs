//! The controller manager's log lines about its garbage collector's start, which say
//! whether it collects.

/// What the controller manager logs when its garbage collector starts waiting for its
/// informers, and when they have synced: the last of the two says whether it runs.
pub const GC_WAITING: &str = "Waiting for caches to sync for garbage collector";
pub const GC_SYNCED: &str = "Caches are synced for garbage collector";
/// What it logs when its workers start: after its informers synced, or (from 1.32)
/// after its initial wait timed out with some still unsynced.
pub const GC_PROCEEDING: &str = "Proceeding to collect garbage";
