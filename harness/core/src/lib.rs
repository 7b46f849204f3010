//! preflight's core: the records a run produces and the pure logic that judges and
//! renders them. Nothing here does I/O: no cluster client, no async runtime, no
//! network, no child processes, no files. The engine (the `preflight` crate) runs
//! clusters, Helm and webhooks and fills these records; everything that decides on
//! them (leftovers, orphans, evidence, comparisons, verdicts) takes them as values,
//! so it is tested without a cluster and cannot reach one.

pub mod accept;
pub mod api_error;
pub mod audit_report;
pub mod behaviour;
pub mod compare;
pub mod control_plane_log;
pub mod drain;
pub mod dry_run;
pub mod evidence;
pub mod gc;
pub mod helm;
pub mod images;
pub mod log_text;
pub mod ownership;
pub mod policy;
pub mod reason;
pub mod record;
pub mod redact;
pub mod refusal;
pub mod report;
pub mod rollout;
pub mod run;
pub mod scenario;
pub mod settle;
pub mod sizing;
pub mod snapshot;
pub mod snapshot_diff;
pub mod verdict;
pub mod webhook;
pub mod yaml_stream;

// The verdict at scale, with evidence read from log text as the engine reads it.
#[cfg(test)]
mod verdict_scale_tests;
