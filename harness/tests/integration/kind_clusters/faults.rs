//! The fault matrix's cases that only a kind cluster has (`faults.rs` has the rest and
//! the helpers): a signal in the phases where a real kubelet matters, and a node
//! container that stops.

use std::process::Command;

use nix::sys::signal::Signal;

use super::{ONE_AT_A_TIME, docker_available, preflight_containers};
use crate::faults;

/// On kind: the phases where a real kubelet matters (the uninstall's cascade, the
/// settle), by the polite and the impolite signal. No container, kind cluster,
/// process or directory of the run may be left.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_at_uninstall_on_kind() {
    if docker_available() {
        let _serial = ONE_AT_A_TIME.lock().await;
        faults::signal_at_phase_on("uninstall", Signal::SIGINT, "kind").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_settle_on_kind() {
    if docker_available() {
        let _serial = ONE_AT_A_TIME.lock().await;
        faults::signal_at_phase_on("settle", Signal::SIGKILL, "kind").await;
    }
}

/// The target's kind node container stopped: named with its state.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_kind_node_is_named_and_the_other_run_still_reported() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    faults::target_dies_during_settle("kind node stopped", "kind", || {
        let nodes: Vec<String> = preflight_containers()
            .into_iter()
            .filter(|c| c.contains("target"))
            .collect();
        assert_eq!(nodes.len(), 1, "the target's node: {nodes:?}");
        // Its output (the container's name) is kept off the test's result line.
        let stopped = Command::new("docker")
            .args(["stop", "-t", "1", &nodes[0]])
            .output()
            .unwrap();
        assert!(stopped.status.success(), "{stopped:?}");
        format!("the kind node container {} is exited", nodes[0])
    })
    .await;
}
