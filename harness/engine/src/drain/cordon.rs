//! Cordoning: `spec.unschedulable` on the Node, as `kubectl cordon` / `uncordon` and
//! the first step of an AKS node upgrade set it, so no new Pod is scheduled there
//! while the node is drained.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use super::{DrainError, REQUEST_TIMEOUT, call};

/// Sets `spec.unschedulable` to `unschedulable`; returns whether it changed.
pub(super) async fn set(
    client: &kube::Client,
    node: &str,
    unschedulable: bool,
    timeout: Duration,
) -> Result<bool, DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = call(timeout, &format!("read Node {node}"), nodes.get(node)).await?;
    let was = current
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if was == unschedulable {
        return Ok(false);
    }
    let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
    call(
        timeout,
        &format!("set spec.unschedulable={unschedulable} on Node {node}"),
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await?;
    Ok(true)
}

/// Marks `node` unschedulable; `Ok(false)` when it already was.
pub async fn cordon(client: &kube::Client, node: &str) -> Result<bool, DrainError> {
    set(client, node, true, REQUEST_TIMEOUT).await
}

/// Marks `node` schedulable again; `Ok(false)` when it already was.
pub async fn uncordon(client: &kube::Client, node: &str) -> Result<bool, DrainError> {
    set(client, node, false, REQUEST_TIMEOUT).await
}
