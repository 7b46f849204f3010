//! Standing in for the kubelet where a lifecycle needs one: local clusters run no
//! kubelet, so a Job's Pod would never finish and Helm would wait forever for a hook
//! Job. This driver marks Pods owned by a Job as `Succeeded` (exit code 0), which is
//! what a kubelet would report for a container that ran to completion; the real Job
//! controller then completes the Job, and Helm's hook logic proceeds as in production.
//! Nothing else is simulated: other Pods stay `Pending`.
//!
//! The driver runs as background tasks owned by a [`JobPodDriver`], which aborts them
//! when it is dropped: a run that fails or returns early must not leave a task
//! patching Pods of a cluster that is being torn down (or of the next run's cluster
//! on a reused port), so stopping it cannot depend on reaching the success path.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

/// The running stand-in: one task per namespace, aborted when this is dropped (on
/// every path, an error's `?` included), not only when a run reaches its end.
#[must_use = "dropping the driver stops it at once"]
#[derive(Debug, Default)]
pub struct JobPodDriver {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl JobPodDriver {
    /// Completes Job Pods in each of `namespaces` until the driver is dropped.
    pub fn start(client: &kube::Client, namespaces: impl IntoIterator<Item = String>) -> Self {
        Self::spawn(
            namespaces
                .into_iter()
                .map(|ns| complete_job_pods(client.clone(), ns)),
        )
    }

    /// A driver that runs nothing (a cluster with a kubelet needs no stand-in).
    pub fn none() -> Self {
        Self::default()
    }

    /// Runs `tasks` under the driver's ownership.
    fn spawn<F>(tasks: impl IntoIterator<Item = F>) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        Self {
            tasks: tasks.into_iter().map(tokio::spawn).collect(),
        }
    }

    /// Stops the stand-in now (what dropping it does; this says so where it matters).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for JobPodDriver {
    fn drop(&mut self) {
        // A dropped JoinHandle detaches its task; aborting is what stops it.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs until aborted, completing Job Pods in `namespace`.
async fn complete_job_pods(client: kube::Client, namespace: String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that runs until it is stopped; `alive` closes when it is.
    fn forever() -> (
        impl std::future::Future<Output = ()> + Send + 'static,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        let (keep, alive) = tokio::sync::oneshot::channel::<()>();
        (
            async move {
                let _keep = keep;
                std::future::pending::<()>().await;
            },
            alive,
        )
    }

    #[tokio::test]
    async fn a_dropped_driver_stops_its_tasks_where_a_dropped_handle_does_not() {
        // What the code did before: a JoinHandle dropped on an error path (`?`)
        // detaches the task, which goes on running.
        let (task, mut alive) = forever();
        drop(tokio::spawn(task));
        tokio::task::yield_now().await;
        assert!(matches!(
            alive.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ));

        // The driver: dropped (any path), its tasks end; `alive` resolves as closed.
        let (a, alive_a) = forever();
        let (b, alive_b) = forever();
        let driver = JobPodDriver::spawn([
            Box::pin(a) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
            Box::pin(b),
        ]);
        let early_return = || -> Result<(), ()> {
            let _driver = driver;
            Err(())
        };
        assert!(early_return().is_err());
        assert!(alive_a.await.is_err(), "task a still runs");
        assert!(alive_b.await.is_err(), "task b still runs");
    }
}
