//! Waiting until the admission policies a release installed are in force.
//!
//! A ValidatingAdmissionPolicy is not enforced the moment it is stored: the API
//! server's policy source (`k8s.io/apiserver` `admission/plugin/policy/generic`,
//! `policy_source.go`) rebuilds its compiled policies on a one-second timer after its
//! informer sees a change, and publishes no signal when it has. In production a
//! platform's policies exist long before anyone uninstalls a release; a rehearsal
//! that uninstalls a second after installing would race that timer and report a
//! policy as not enforced when it is.
//!
//! So after an install or upgrade that created policies, the run waits for the one
//! thing the cluster does say (the controller manager's type-checking controller has
//! observed each policy's generation), then for two of the API server's refresh
//! periods. Both are bounded: a cluster without the status controller only costs the
//! deadline, and the verdicts still come from what the API server then answers.

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

/// The API server's policy refresh period (`policy_source.go`: `wait.Until(...,
/// 1*time.Second, ...)`), the same in every version that serves the API.
const REFRESH: Duration = Duration::from_secs(1);

/// How long the type-checking controller may take to observe a new policy.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(20);

/// The names of the ValidatingAdmissionPolicies in a release manifest.
pub fn validating_policies(manifest: &[serde_json::Value]) -> Vec<String> {
    manifest
        .iter()
        .filter(|o| {
            o["kind"] == "ValidatingAdmissionPolicy"
                && o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("admissionregistration.k8s.io/"))
        })
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Whether a policy's status says its current generation was observed.
fn observed(policy: &DynamicObject) -> bool {
    let generation = policy.metadata.generation.unwrap_or(0);
    let seen = policy.data["status"]["observedGeneration"]
        .as_i64()
        .unwrap_or(0);
    generation > 0 && seen >= generation
}

/// Waits (bounded) until the named policies are in force; returns how long it took.
pub async fn wait_in_force(client: &kube::Client, names: &[String]) -> Duration {
    let started = Instant::now();
    if names.is_empty() {
        return Duration::ZERO;
    }
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
        ),
        "validatingadmissionpolicies",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let deadline = started + OBSERVE_DEADLINE;
    let mut pending: Vec<&String> = names.iter().collect();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for name in pending {
            match api.get_opt(name).await {
                Ok(Some(p)) if observed(&p) => {}
                // Gone, or not served at this version: nothing to wait for.
                Ok(None) | Err(kube::Error::Api(_)) => {}
                _ => still.push(name),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(2 * REFRESH).await;
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admissionregistration_policies_are_named() {
        let manifest = vec![
            serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "guard"}}),
            serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "guard"}}),
            serde_json::json!({"apiVersion": "example.dev/v1",
                "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "other"}}),
        ];
        assert_eq!(validating_policies(&manifest), vec!["guard".to_string()]);
    }

    #[test]
    fn a_policy_is_observed_only_at_its_generation() {
        let mut p: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "guard", "generation": 2},
            "status": {"observedGeneration": 1}
        }))
        .unwrap();
        assert!(!observed(&p));
        p.data["status"]["observedGeneration"] = 2.into();
        assert!(observed(&p));
    }
}
