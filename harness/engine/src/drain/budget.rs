//! A PodDisruptionBudget as the API reports it, read at one moment: the numbers the
//! Eviction API decides on and whether anything on the cluster could still change
//! them.
//!
//! The Eviction API (`pkg/registry/core/pod/storage/eviction.go`, `checkAndDecrement`)
//! answers 429 when the budget's `status.observedGeneration` is behind its
//! `metadata.generation` ("still being processed") or when `status.disruptionsAllowed`
//! is 0 ("needs N healthy pods and has M currently"); the disruption controller in
//! kube-controller-manager computes that status (`disruptionsAllowed = currentHealthy -
//! desiredHealthy`, floored at 0; a Pod is healthy when Ready and not being deleted).
//! So a reading keeps those fields verbatim, and beside them what could move
//! `currentHealthy`: Pods of the selector that are not Ready yet but could be, Pods the
//! budget expects that do not exist yet, evictions in flight (`disruptedPods`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};

pub use preflight_core::drain::{BudgetReading, DISRUPTION_BUDGET_CAUSE, names_in_causes};

use super::{DrainError, call};

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a Pod could still add to a budget's `currentHealthy`: it is not counted now
/// (not Ready) and nothing has ended it (not finished, not being deleted).
pub fn could_become_healthy(pod: &Pod) -> bool {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    pod.metadata.deletion_timestamp.is_none() && !finished && !ready(pod)
}

/// The reading of a budget object and the Pods its selector matched.
pub fn reading(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    at: String,
    elapsed: Duration,
) -> BudgetReading {
    let status = pdb.status.clone().unwrap_or_default();
    BudgetReading {
        name: pdb.metadata.name.clone().unwrap_or_default(),
        namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
        at,
        elapsed_ms: elapsed.as_millis() as u64,
        generation: pdb.metadata.generation,
        observed_generation: status.observed_generation,
        expected_pods: status.expected_pods,
        current_healthy: status.current_healthy,
        desired_healthy: status.desired_healthy,
        disruptions_allowed: status.disruptions_allowed,
        disrupted_pods: status
            .disrupted_pods
            .unwrap_or_default()
            .into_keys()
            .collect(),
        conditions: status
            .conditions
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{}={} ({}): {}", c.type_, c.status, c.reason, c.message))
            .collect(),
        selector_pods: pods.len(),
        could_become_healthy: pods
            .iter()
            .filter(|p| could_become_healthy(p))
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect(),
    }
}

/// The budget's selector, as kube's [`Selector`]. `None` for a budget without one
/// (the Eviction API skips such a budget).
fn selector(pdb: &PodDisruptionBudget) -> Option<Selector> {
    let s = pdb.spec.as_ref()?.selector.clone()?;
    Selector::try_from(s).ok()
}

/// Reads budget `namespace/name` and lists the Pods its selector matches.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    elapsed: Duration,
) -> Result<BudgetReading, DrainError> {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let pdb = call(
        timeout,
        &format!("read PodDisruptionBudget {namespace}/{name}"),
        pdbs.get(name),
    )
    .await?;
    let at = crate::now_rfc3339();
    let pods = match selector(&pdb) {
        Some(sel) => {
            let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let lp = ListParams::default().labels(&sel.to_string());
            call(
                timeout,
                &format!("list the Pods of PodDisruptionBudget {namespace}/{name}"),
                api.list(&lp),
            )
            .await?
            .items
        }
        None => Vec::new(),
    };
    Ok(reading(&pdb, &pods, at, elapsed))
}

/// The budgets in the Pod's namespace whose selector matches it (as the Eviction API
/// chooses them in `getPodDisruptionBudgets`: a Pod without labels has none; a budget
/// without a selector matches nothing). Recorded as what was checked when a 429 names
/// no budget; never the ground of a verdict.
pub async fn selecting(
    client: &kube::Client,
    pod: &Pod,
    timeout: Duration,
) -> Result<Vec<String>, DrainError> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.is_empty() {
        return Ok(Vec::new());
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let list = call(
        timeout,
        &format!("list the PodDisruptionBudgets of {ns}"),
        pdbs.list(&ListParams::default()),
    )
    .await?;
    Ok(list
        .items
        .iter()
        .filter(|p| selector(p).is_some_and(|s| s.matches(&labels)))
        .filter_map(|p| p.metadata.name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_keeps_the_status_and_what_could_become_healthy() {
        let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "generation": 1},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "expectedPods": 3, "currentHealthy": 2,
                "desiredHealthy": 3, "disruptionsAllowed": 0,
                "disruptedPods": {"web-a": "2026-01-01T00:00:00Z"}}
        }))
        .unwrap();
        let pod = |name: &str, phase: &str, ready: bool, deleting: bool| -> Pod {
            let mut p = serde_json::json!({"metadata": {"name": name},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
            if deleting {
                p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            serde_json::from_value(p).unwrap()
        };
        let pods = [
            pod("web-a", "Running", true, true),
            pod("web-b", "Running", true, false),
            pod("web-c", "Pending", false, false),
            pod("web-d", "Running", false, false),
            pod("web-e", "Failed", false, false),
        ];
        let r = reading(&pdb, &pods, "t".into(), Duration::from_millis(1500));
        assert_eq!(
            (
                r.current_healthy,
                r.desired_healthy,
                r.disruptions_allowed,
                r.expected_pods
            ),
            (2, 3, 0, 3)
        );
        assert_eq!(r.elapsed_ms, 1500);
        assert_eq!(r.disrupted_pods, vec!["web-a".to_string()]);
        assert_eq!(r.selector_pods, 5);
        assert_eq!(
            r.could_become_healthy,
            vec!["web-c".to_string(), "web-d".into()]
        );
    }
}
