//! One integration-test binary (nextest style), with a module per concern.
//!
//! Every test that needs a control plane starts real etcd, kube-apiserver and
//! kube-controller-manager binaries from the components cache (building them on
//! first use), at both pinned versions. Nothing here is skipped when binaries are
//! missing: `ci/test.sh` fills the cache before running the tests.

mod common;

mod accept;
mod audit;
mod bad_input;
mod capture;
mod chart_sources;
mod cli;
mod concurrency;
mod download;
mod drain;
mod faults;
mod gc;
mod kind_clusters;
mod lifecycle;
mod paths;
mod ports;
mod production;
mod replay;
mod report_run;
mod same_names;
mod scenario_files;
mod scenarios;
mod shared_cluster;
mod snapshots;
mod templates;
mod twin_now;
mod verdict_truth;
mod webhook_incident;
mod webhooks;
