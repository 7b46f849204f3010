//! The garbage-collection smoke check: the smallest lifecycle that shows whether
//! cascade deletion works on a cluster.
//!
//! A Deployment is created; the deployment and replicaset controllers give it a
//! ReplicaSet and Pods; the Deployment is deleted in the background (as Helm does);
//! then the garbage collector must remove the ReplicaSet and the Pods before a
//! deadline. What is still there at the deadline is reported, never hidden.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use serde::Serialize;

/// The outcome of one smoke check.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SmokeOutcome {
    pub replicasets_created: usize,
    pub pods_created: usize,
    /// `kind/name` of every dependent still present at the deadline.
    pub leftovers: Vec<String>,
    pub cascade_seconds: Option<f64>,
}

impl SmokeOutcome {
    pub fn clean(&self) -> bool {
        self.leftovers.is_empty()
    }
}

/// A Deployment named `name` with `replicas` Pods of a placeholder image (no kubelet
/// pulls it: local clusters schedule nothing).
pub fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/preflight/pause:1"}]}
            }
        }
    }))
    .expect("static deployment")
}

/// Creates a namespace labelled as preflight's (idempotent).
pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    ensure_namespace_labelled(client, name, "none").await
}

/// Creates a namespace labelled as preflight's and with the run's id (idempotent).
pub async fn ensure_namespace_labelled(
    client: &Client,
    name: &str,
    run_id: &str,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "preflight", "preflight.dev/run": run_id}}
    }))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a namespace (absent is fine).
pub async fn delete_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Polls `f` every 200 ms until it returns `Some`, or `None` at the deadline.
pub async fn poll<T, F, Fut>(deadline: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ReplicaSets and Pods carrying `app=<name>`.
pub async fn dependents(
    client: &Client,
    ns: &str,
    app: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let lp = ListParams::default().labels(&format!("app={app}"));
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let names = |items: Vec<Option<String>>| items.into_iter().flatten().collect::<Vec<_>>();
    Ok((
        names(
            rs.list(&lp)
                .await?
                .items
                .into_iter()
                .map(|o| o.metadata.name)
                .collect(),
        ),
        names(
            pods.list(&lp)
                .await?
                .items
                .into_iter()
                .map(|o| o.metadata.name)
                .collect(),
        ),
    ))
}

/// Runs the check in `namespace`: create, wait for dependents, delete, wait for the
/// cascade (at most `deadline` for each wait).
pub async fn run(
    client: &Client,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> anyhow::Result<SmokeOutcome> {
    ensure_namespace(client, namespace).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    deployments
        .create(&PostParams::default(), &deployment(name, 2))
        .await?;
    let created = poll(deadline, || async {
        let (rs, pods) = dependents(client, namespace, name).await.ok()?;
        (!rs.is_empty() && pods.len() >= 2).then_some((rs.len(), pods.len()))
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the controllers did not create a ReplicaSet and 2 Pods for Deployment {namespace}/{name} within {deadline:?}"))?;

    let started = Instant::now();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    deployments.delete(name, &dp).await?;
    let gone = poll(deadline, || async {
        let (rs, pods) = dependents(client, namespace, name).await.ok()?;
        (rs.is_empty() && pods.is_empty()).then_some(())
    })
    .await;
    let (rs, pods) = dependents(client, namespace, name).await?;
    let leftovers = rs
        .into_iter()
        .map(|n| format!("ReplicaSet/{n}"))
        .chain(pods.into_iter().map(|n| format!("Pod/{n}")))
        .collect();
    Ok(SmokeOutcome {
        replicasets_created: created.0,
        pods_created: created.1,
        leftovers,
        cascade_seconds: gone.map(|_| started.elapsed().as_secs_f64()),
    })
}
