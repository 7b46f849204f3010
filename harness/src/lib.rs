//! preflight: tells a platform team, before a Kubernetes upgrade, whether their Helm
//! releases still install and delete cleanly on the new version.
//!
//! The data flow is one straight line, and the modules are named after its stages:
//!
//! ```text
//! scenario -> components -> cluster -> exercise -> snapshot -> verdict -> report
//! ```
//!
//! * [`components`]: the Kubernetes binaries of a version (built from the upstream Go
//!   modules or downloaded with checksums) in a per-user cache.
//! * [`cluster`]: real control planes (etcd, kube-apiserver, kube-controller-manager)
//!   as guarded child processes on loopback.
//! * [`progress`]: what a long step shows while it runs (spinner on a terminal, plain
//!   lines in CI).
//! * [`twin`]: a live cluster's Helm releases and admission surface captured (reads
//!   only) into a directory that is replayed on source and target (`preflight capture`).

pub mod accept;
pub mod aks;
pub mod api_error;
pub mod audit;
pub mod behaviour;
pub mod chart_source;
pub mod child_groups;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod compare;
pub mod components;
pub mod drain;
pub mod errors;
pub mod evidence;
pub mod exercise;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod helm;
pub mod namespace;
pub mod ownership;
pub mod pager;
pub mod pki;
pub mod policy;
pub mod progress;
pub mod reason;
pub mod redact;
pub mod refusal;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod smoke;
pub mod snapshot;
pub mod snapshot_diff;
pub mod twin;
pub mod verdict;
pub mod webhook;
pub mod yaml_stream;

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
