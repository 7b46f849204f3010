//! Standing in for the kubelet where a lifecycle needs one: local clusters run no
//! kubelet, so a Job's Pod would never finish and Helm would wait forever for a hook
//! Job. This driver marks Pods owned by a Job as `Succeeded` (exit code 0), which is
//! what a kubelet would report for a container that ran to completion; the real Job
//! controller then completes the Job, and Helm's hook logic proceeds as in production.
//! Nothing else is simulated: other Pods stay `Pending`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

/// Runs until aborted, completing Job Pods in `namespace`.
pub async fn complete_job_pods(client: kube::Client, namespace: String) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for pod in list.items {
                let owned_by_job = pod
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|refs| refs.iter().any(|r| r.kind == "Job"));
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                if !owned_by_job
                    || pod.metadata.deletion_timestamp.is_some()
                    || (phase != "Pending" && !phase.is_empty())
                {
                    continue;
                }
                let containers: Vec<_> = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default();
                let now = crate::now_rfc3339();
                let statuses: Vec<_> = containers
                    .iter()
                    .map(|name| json!({
                        "name": name, "image": "", "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
                    }))
                    .collect();
                let patch = json!({"status": {
                    "phase": "Succeeded",
                    "startTime": now,
                    "containerStatuses": statuses,
                    "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}]
                }});
                let name = pod.metadata.name.unwrap_or_default();
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
