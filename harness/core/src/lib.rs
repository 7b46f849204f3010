//! preflight's core: the records a run produces and the pure logic that judges and
//! renders them. Nothing here does I/O: no cluster client, no async runtime, no
//! network, no child processes, no files. The engine (the `preflight` crate) runs
//! clusters, Helm and webhooks and fills these records; everything that decides on
//! them (leftovers, orphans, evidence, comparisons, verdicts) takes them as values,
//! so it is tested without a cluster and cannot reach one.

pub mod api_error;
pub mod behaviour;
pub mod evidence;
pub mod ownership;
pub mod reason;
pub mod redact;
pub mod refusal;
pub mod snapshot;
pub mod snapshot_diff;
pub mod yaml_stream;
