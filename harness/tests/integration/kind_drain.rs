//! The drain on real kubelets: one kind cluster of a control plane and two workers of
//! one pool (as an AKS node pool's nodes), from preflight's offline node image at the
//! target version (AKS drains the node pools after upgrading the control plane).
//!
//! Unlike `drain.rs`, nothing plays the scheduler or the kubelet: kube-scheduler places
//! the Pods, the workers' kubelets start them (from the workload image preloaded in
//! the node image: nothing is pulled) and report them Ready, and confirm their deletion
//! once the containers stopped. The cases share the one cluster (creating it is the
//! expensive part) and run in sequence in one test, so the cluster is deleted when the
//! test ends, however it ends.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use preflight::cluster::{KindCluster, KindConfig, NodeSpec, kind};
use preflight::components::{self, kind_image};
use preflight::drain::{self, BlockedBy, DrainOptions, DrainOutcome, PodEnd};
use preflight::progress::Progress;

use crate::common;
use crate::drain::{budget_settled, create, on_node};
use crate::kind_provider::{ONE_AT_A_TIME, docker_available, preflight_containers};

/// The pool both workers belong to; the workload selects it.
const POOL: &str = "nodepool1";

/// Polls `on_node` until it reads `want`, within `limit`.
async fn wait_on_node(
    client: &kube::Client,
    ns: &str,
    node: &str,
    want: (usize, usize),
    limit: Duration,
) {
    let end = Instant::now() + limit;
    loop {
        let now = on_node(client, ns, node).await;
        if now == want {
            return;
        }
        if Instant::now() >= end {
            let pods = Api::<Pod>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .unwrap();
            let seen: Vec<String> = pods
                .items
                .iter()
                .map(|p| {
                    format!(
                        "{} on {:?}: {:?}",
                        p.metadata.name.as_deref().unwrap_or("?"),
                        p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        p.status.as_ref().map(|s| (&s.phase, &s.conditions))
                    )
                })
                .collect();
            panic!("{ns} on {node}: {now:?}, not {want:?} within {limit:?}: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `nodeSelector` of the pool's nodes, by the label AKS gives them.
fn pool_selector() -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(kind::AGENTPOOL_LABEL.into(), POOL.into());
    serde_json::Value::Object(m)
}

/// Namespace `ns` with a Deployment `web` of 3 replicas on the pool's nodes (the
/// workload image preloaded in the node image, never pulled; a 1 s grace period so
/// deletions are quick) and a budget `web` with `budget` as its spec, placed while
/// `other` is cordoned so all three land on `node`; returns once the three are Running
/// and Ready there and the disruption controller has counted them.
async fn workload_on(
    client: &kube::Client,
    ns: &str,
    node: &str,
    other: &str,
    budget: serde_json::Value,
) -> serde_json::Value {
    preflight::smoke::ensure_namespace_labelled(client, ns, "kind-drain")
        .await
        .unwrap();
    drain::cordon(client, other).await.unwrap();
    create(
        client,
        ns,
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "nodeSelector": pool_selector(),
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "web", "image": kind_image::WORKLOAD_IMAGE,
                            "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}}
        }),
    )
    .await;
    let mut spec = budget;
    spec["selector"] = serde_json::json!({"matchLabels": {"app": "web"}});
    create(
        client,
        ns,
        serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"}, "spec": spec}),
    )
    .await;
    wait_on_node(client, ns, node, (3, 3), Duration::from_secs(90)).await;
    drain::uncordon(client, other).await.unwrap();
    budget_settled(client, ns, 3, 3).await
}

fn unschedulable(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_on_a_multi_node_kind_cluster() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let t0 = Instant::now();
    let version: components::Version = components::DEFAULT_TARGET.parse().unwrap();
    let (kind_bin, image) = {
        let version = version.clone();
        tokio::task::spawn_blocking(move || {
            let opts = components::Options::from_env(Progress::quiet());
            let kind = kind_image::ensure_kind(&opts).unwrap();
            let image = kind_image::ensure(&version, &opts).unwrap().image;
            (kind, image)
        })
        .await
        .unwrap()
    };
    let name = kind::cluster_name(&format!("kd{}", std::process::id()), "drain");
    let config = KindConfig {
        name: name.clone(),
        version: version.clone(),
        image,
        kind: kind_bin,
        helm: common::components(&version).helm,
        load_images: Vec::new(),
        keep: false,
        workers: vec![NodeSpec::pool(POOL), NodeSpec::pool(POOL)],
    };
    let cluster = KindCluster::start(config).await.unwrap();
    let created = t0.elapsed();
    eprintln!("kind cluster {name} (1 control plane + 2 workers) ready after {created:?}");
    let client = cluster.client();
    let [a, b] = cluster.workers() else {
        panic!("two workers: {:?}", cluster.workers());
    };
    let (a, b) = (a.clone(), b.clone());

    // Every node is Ready; the workers carry their pool's labels from the join.
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut names: Vec<String> = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, [cluster.node(), a.clone(), b.clone()]);
    for n in &nodes.items {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let worker = n.metadata.name.as_deref() != Some(cluster.node().as_str());
        assert_eq!(
            labels.get(kind::AGENTPOOL_LABEL).map(String::as_str),
            worker.then_some(POOL),
            "{:?}",
            n.metadata
        );
    }
    let config =
        preflight::cluster::local::config_from_kubeconfig(&cluster.kubeconfig(), None, None)
            .await
            .unwrap();
    let drain_client = drain::client_without_retries(config).unwrap();

    // (a) minAvailable 3 of 3 replicas: AKS retries the budget's 429s for its whole
    // drain timeout and fails the upgrade; the verdict comes from the budget's readings
    // long before the (short) timeout.
    let t = Instant::now();
    let status = workload_on(
        &client,
        "blocked",
        &a,
        &b,
        serde_json::json!({"minAvailable": 3}),
    )
    .await;
    assert_eq!(status["disruptionsAllowed"], 0, "{status}");
    let placed = t.elapsed();
    let timeout = Duration::from_secs(60);
    let opts = DrainOptions {
        timeout,
        ..DrainOptions::default()
    };
    let started = Instant::now();
    let report = drain::drain(&drain_client, &a, &opts).await.unwrap();
    let took = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    eprintln!("(a) workload placed in {placed:?}; drain verdict after {took:?}");
    assert!(took < Duration::from_secs(30), "verdict took {took:?}");
    assert!(report.cordoned);
    let DrainOutcome::Blocked {
        pods,
        by:
            BlockedBy::Budget {
                name: budget,
                namespace,
                status,
                readings,
                answer,
            },
        would_wait,
    } = &report.outcome
    else {
        panic!("expected Blocked by the budget: {:?}", report.outcome);
    };
    assert_eq!((budget.as_str(), namespace.as_str()), ("web", "blocked"));
    assert_eq!(*would_wait, timeout);
    assert!(!pods.is_empty());
    assert_eq!(
        (
            status.expected_pods,
            status.current_healthy,
            status.desired_healthy,
            status.disruptions_allowed,
            status.selector_pods
        ),
        (3, 3, 3, 0, 3)
    );
    assert!(status.observed_generation >= status.generation);
    assert!(status.could_become_healthy.is_empty() && status.disrupted_pods.is_empty());
    assert!(readings.len() >= 2);
    let held = readings.last().unwrap().elapsed_ms - readings[0].elapsed_ms;
    assert!(
        held >= opts.confirm_window.as_millis() as u64,
        "confirmed over {held} ms"
    );
    assert!(
        answer.contains("needs 3 healthy pods and has 3 currently"),
        "{answer}"
    );
    assert_eq!(report.pods.len(), 3);
    for e in &report.evictions {
        assert_eq!(e.answer.code(), Some(429), "{e:?}");
        assert!(
            crate::drain::causes_of(&e.answer)
                .iter()
                .any(|c| c.starts_with("The disruption budget web")),
            "{e:?}"
        );
    }
    for p in &report.pods {
        assert!(
            matches!(p.end, PodEnd::Blocked { .. } | PodEnd::Stopped { .. }),
            "{p:?}"
        );
    }
    // Nothing was evicted: the three still run on the cordoned worker A; the kind
    // DaemonSets' Pods there (kube-proxy, the CNI) were left to their controller.
    assert_eq!(on_node(&client, "blocked", &a).await, (3, 3));
    assert_eq!(on_node(&client, "blocked", &b).await, (0, 0));
    assert!(
        report
            .selection
            .decisions
            .iter()
            .any(|(p, _)| p.namespace == "kube-system"),
        "the node's DaemonSet Pods were listed and skipped: {:?}",
        report.selection.decisions
    );
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(unschedulable(&nodes.get(&a).await.unwrap()));
    let blocked_total = t.elapsed();

    // Between the cases: the blocked workload goes, worker A is schedulable again.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete("blocked", &DeleteParams::default())
        .await
        .unwrap();
    assert!(drain::uncordon(&client, &a).await.unwrap());
    // Its Pods are gone before the next drain of A (which would evict them too: kubectl's
    // drain selects Pods being deleted and waits for them).
    wait_on_node(&client, "blocked", &a, (0, 0), Duration::from_secs(60)).await;

    // (b) maxUnavailable 1: the drain evicts one Pod at a time (the others answered
    // 429 until the replacement is Ready); the real scheduler puts the replacements on
    // worker B (A is cordoned) and its kubelet runs them.
    let t = Instant::now();
    let status = workload_on(
        &client,
        "flows",
        &a,
        &b,
        serde_json::json!({"maxUnavailable": 1}),
    )
    .await;
    assert_eq!(status["disruptionsAllowed"], 1, "{status}");
    let placed = t.elapsed();
    let before: Vec<String> = Api::<Pod>::namespaced(client.clone(), "flows")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let started = Instant::now();
    let report = drain::drain(&drain_client, &a, &opts).await.unwrap();
    let took = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    eprintln!("(b) workload placed in {placed:?}; drained after {took:?}");
    assert_eq!(report.outcome, DrainOutcome::Drained, "after {took:?}");
    assert!(took < timeout, "{took:?}");
    crate::drain::assert_drained_one_at_a_time(&report, &before, "web");
    // Worker A is empty of the workload; three new Pods run and are Ready on worker B,
    // placed by kube-scheduler and started by B's kubelet.
    assert_eq!(on_node(&client, "flows", &a).await.0, 0);
    wait_on_node(&client, "flows", &b, (3, 3), Duration::from_secs(60)).await;
    let after = Api::<Pod>::namespaced(client.clone(), "flows")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(after.items.len(), 3);
    for p in &after.items {
        assert!(
            !before.contains(p.metadata.uid.as_ref().unwrap()),
            "a new Pod: {:?}",
            p.metadata.name
        );
    }
    let status = budget_settled(&client, "flows", 3, 3).await;
    assert_eq!(status["disruptionsAllowed"], 1, "{status}");
    assert!(unschedulable(&nodes.get(&a).await.unwrap()));
    let flows_total = t.elapsed();

    drop(cluster);
    let left: Vec<String> = preflight_containers()
        .into_iter()
        .filter(|c| c.starts_with(&name))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "kind nodes left behind");
    eprintln!(
        "timings: cluster {created:?}, (a) {blocked_total:?}, (b) {flows_total:?}, total with deletion {:?}",
        t0.elapsed()
    );
}
