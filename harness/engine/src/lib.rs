//! preflight's engine: everything that touches a cluster, a process or the network,
//! on top of `preflight-core`'s records and judgements.
//!
//! ```text
//! scenario -> components -> cluster -> exercise (the one engine) -> snapshot -> report files
//! ```
//!
//! * [`components`]: the Kubernetes binaries of a version (built from the upstream Go
//!   modules or downloaded with checksums) in a per-user cache.
//! * [`cluster`]: real control planes (etcd, kube-apiserver, kube-controller-manager)
//!   as guarded child processes on loopback, kind clusters, existing clusters.
//! * [`exercise`]: the one engine every run's plan goes through.
//! * [`runner`]: scenarios x versions, a task per run within a budget.
//! * [`progress`]: what a long step shows while it runs (spinner on a terminal, plain
//!   lines in CI).
//!
//! The twin, the audit and the command line are built on this crate (`preflight`);
//! nothing here knows them.

pub mod accept;
pub mod api_error;
pub mod chart_source;
pub mod child_groups;
pub mod cluster;
pub mod command;
pub mod components;
pub mod drain;
pub mod errors;
pub mod exercise;
pub mod failpoint;
pub mod helm;
pub mod namespace;
pub mod pager;
pub mod pki;
pub mod progress;
pub mod report;
pub mod rollout;
pub mod runner;
pub mod scenario;
pub mod smoke;
pub mod snapshot;
pub mod webhook;

// The records and the pure logic on them live in `preflight-core` (no I/O); their
// paths here are the ones the engine and its tests have always used.
pub use preflight_core::{
    audit_report, behaviour, compare, evidence, ownership, policy, reason, redact, refusal,
    snapshot_diff, verdict, yaml_stream,
};

pub use errors::{ClusterError, ComponentsError};

/// Selects the process-wide TLS crypto provider (ring, the same as kube's default).
/// Every entry point calls it before the first TLS connection; calling it again is a
/// no-op.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The current time, RFC 3339 (UTC), for records and reports.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
