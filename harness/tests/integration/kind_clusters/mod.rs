//! Tests on kind clusters (real kubelets, preflight's own offline node images, which
//! `ci/test.sh` builds first): the kind provider's verdicts and cleanup, its node
//! operations, the node-pool roll and the twin on kind, and the faults only a kind
//! cluster has.
//!
//! They are one module so they can run on their own: each needs most of this 2-core
//! machine, so they run one at a time, and `ci/test.sh` runs them (the filter
//! `kind_clusters::`, one test thread) beside the rest of the binary (`--skip
//! kind_clusters::`) instead of letting them hold the shared test threads while they
//! wait for each other.

use std::process::Command;

mod faults;
mod nodes;
mod provider;
mod rollout;

/// kind tests run one at a time: each needs most of the machine, and each checks that no
/// `preflight-*` container is left, which only holds while no other kind test runs.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether a Docker engine answers. CI must have one (`ci/test.sh` starts it).
pub(crate) fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have a Docker engine (ci/test.sh starts one with ci/docker-engine.sh)"
        );
        eprintln!("SKIPPED: no Docker engine answers; run `sudo ci/docker-engine.sh`");
    }
    ok
}

pub(crate) fn preflight_containers() -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with("preflight-") && !n.starts_with("preflight-node-build"))
        .map(str::to_string)
        .collect()
}
