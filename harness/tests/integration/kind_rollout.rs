//! The whole AKS upgrade rehearsed on one multi-node kind cluster: a control plane and
//! three workers of one pool at the source version, the control plane upgraded in place
//! to the target, then the pool rolled as AKS does (`--max-surge 2`,
//! `--undrainable-node-behavior cordon`): surge nodes joined at the target, each old
//! node cordoned and drained through the Eviction API, drained nodes reimaged (removed,
//! a target node joined in their place), undrainable ones quarantined.
//!
//! The workloads are charts of the failure classes platform teams report, each placed
//! on one node so every node's record shows one cause:
//! * worker 1: a fail-closed webhook on Pod CREATE whose only backend runs there, a
//!   workload its webhook guards, and a Pod whose node affinity names worker 1: the
//!   drain finishes, and none of them comes back: the webhook's backend and its
//!   guarded workload are refused (a deadlock, named), the affine Pod is not scheduled
//!   (the scheduler's event says why);
//! * worker 2: a Deployment of 3 with a budget of `minAvailable: 3`: the drain is
//!   blocked by the budget (its readings are the evidence) and the node quarantined;
//! * worker 3: a Pod in a namespace whose evictions a fail-closed webhook refuses: the
//!   drain is refused at once, naming the webhook; quarantined;
//! * anywhere: a Deployment of 3 with `maxUnavailable: 1`: its evicted Pods come back
//!   Ready on the new nodes.
//!
//! One cluster for all of it: creating it and upgrading its control plane are the
//! expensive parts.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use preflight::cluster::{KindCluster, KindConfig, NodeSpec, kind};
use preflight::components::{self, kind_image};
use preflight::drain::{self, BlockedBy, DrainOptions, DrainOutcome};
use preflight::progress::Progress;
use preflight::rollout::{self, Clients, RollOptions};
use preflight_core::rollout::{MaxSurge, NotBackCause, Prediction, Undrainable};

use crate::common;
use crate::drain::create;
use crate::kind_provider::{ONE_AT_A_TIME, docker_available, preflight_containers};

const POOL: &str = "nodepool1";

fn deployment(name: &str, replicas: i32, extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": name, "image": kind_image::WORKLOAD_IMAGE,
            "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}
    })
}

/// Pods of `ns` Running and Ready on `node` (any node: `None`).
async fn ready_pods(client: &kube::Client, ns: &str, node: Option<&str>) -> usize {
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .iter()
        .filter(|p| node.is_none() || p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == node)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

async fn wait_ready(client: &kube::Client, ns: &str, node: Option<&str>, want: usize) {
    let end = Instant::now() + Duration::from_secs(120);
    while ready_pods(client, ns, node).await < want {
        assert!(
            Instant::now() < end,
            "{ns}: {want} Pods Ready on {node:?} within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates `docs` in `ns` with every worker but `node` cordoned, so their Pods land on
/// `node`, and waits until `ready` of them are Ready there.
async fn place_on(
    client: &kube::Client,
    workers: &[String],
    node: &str,
    ns: &str,
    docs: Vec<serde_json::Value>,
    ready: usize,
) {
    preflight::smoke::ensure_namespace_labelled(client, ns, "kind-rollout")
        .await
        .unwrap();
    for w in workers.iter().filter(|w| *w != node) {
        drain::cordon(client, w).await.unwrap();
    }
    for d in docs {
        create(client, ns, d).await;
    }
    wait_ready(client, ns, Some(node), ready).await;
    for w in workers.iter().filter(|w| *w != node) {
        drain::uncordon(client, w).await.unwrap();
    }
}

/// A fail-closed validating webhook whose Service has no endpoints once its backend
/// is gone (or never had one).
fn fail_closed_webhook(
    name: &str,
    resource: &str,
    service_ns: &str,
    service: &str,
    namespaces: &[&str],
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 3,
            "clientConfig": {"service": {"namespace": service_ns, "name": service, "port": 443}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource]}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]}
        }]
    })
}

async fn create_cluster_scoped(client: &kube::Client, doc: serde_json::Value) {
    let ar = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
    ));
    let api: Api<kube::core::DynamicObject> = Api::all_with(client.clone(), &ar);
    let obj: kube::core::DynamicObject = serde_json::from_value(doc).unwrap();
    api.create(&Default::default(), &obj).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aks_upgrade_rehearsed_on_a_multi_node_kind_cluster() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let t0 = Instant::now();
    let source: components::Version = components::DEFAULT_SOURCE.parse().unwrap();
    let target: components::Version = components::DEFAULT_TARGET.parse().unwrap();
    let (kind_bin, source_image, target_image) = {
        let (s, t) = (source.clone(), target.clone());
        tokio::task::spawn_blocking(move || {
            let opts = components::Options::from_env(Progress::quiet());
            let kind = kind_image::ensure_kind(&opts).unwrap();
            let si = kind_image::ensure(&s, &opts).unwrap().image;
            let ti = kind_image::ensure(&t, &opts).unwrap().image;
            (kind, si, ti)
        })
        .await
        .unwrap()
    };
    let name = kind::cluster_name(&format!("kr{}", std::process::id()), "roll");
    let config = KindConfig {
        name: name.clone(),
        version: source.clone(),
        image: source_image,
        kind: kind_bin,
        helm: common::components(&source).helm,
        load_images: Vec::new(),
        keep: false,
        workers: vec![NodeSpec::pool(POOL); 3],
    };
    let mut cluster = KindCluster::start(config).await.unwrap();
    let created = t0.elapsed();
    let client = cluster.client();
    let workers = cluster.workers().to_vec();
    let [w1, w2, w3] = [&workers[0], &workers[1], &workers[2]];

    // Worker 1: the guard webhook's backend, a workload it guards, an affine Pod.
    place_on(
        &client,
        &workers,
        w1,
        "guard-system",
        vec![
            deployment("guard", 1, serde_json::json!({})),
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "guard"},
                "spec": {"selector": {"app": "guard"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        ],
        1,
    )
    .await;
    place_on(&client, &workers, w1, "guarded", vec![deployment("app", 2, serde_json::json!({}))], 2).await;
    let affinity = serde_json::json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [w1]}]}]}}}});
    place_on(&client, &workers, w1, "pinned", vec![deployment("affine", 1, affinity)], 1).await;
    // Worker 2: a budget that allows no disruption.
    place_on(
        &client,
        &workers,
        w2,
        "budget",
        vec![
            deployment("web", 3, serde_json::json!({})),
            serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
                "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}}),
        ],
        3,
    )
    .await;
    // Worker 3: a Pod whose evictions a webhook refuses.
    place_on(&client, &workers, w3, "noevict", vec![deployment("keep", 1, serde_json::json!({}))], 1).await;
    // Anywhere: a workload that tolerates one disruption at a time.
    preflight::smoke::ensure_namespace_labelled(&client, "rolling", "kind-rollout")
        .await
        .unwrap();
    create(&client, "rolling", deployment("api", 3, serde_json::json!({}))).await;
    create(
        &client,
        "rolling",
        serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "api"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}}}),
    )
    .await;
    wait_ready(&client, "rolling", None, 3).await;
    // The webhooks, once their workloads run.
    create_cluster_scoped(
        &client,
        fail_closed_webhook("pods.guard.corp", "pods", "guard-system", "guard", &["guard-system", "guarded"]),
    )
    .await;
    create_cluster_scoped(
        &client,
        fail_closed_webhook("evictions.noevict.corp", "pods/eviction", "noevict", "nobody", &["noevict"]),
    )
    .await;
    let placed = t0.elapsed();

    // The control plane first, in place.
    cluster
        .upgrade_control_plane(&target, &target_image_of(&target))
        .await
        .unwrap();
    let upgraded = t0.elapsed();

    let config =
        preflight::cluster::local::config_from_kubeconfig(&cluster.kubeconfig(), None, None)
            .await
            .unwrap();
    let clients = Clients {
        api: client.clone(),
        evictions: drain::client_without_retries(config).unwrap(),
    };
    let drain_timeout = Duration::from_secs(120);
    let opts = RollOptions {
        max_surge: MaxSurge::Count(2),
        undrainable: Undrainable::Cordon,
        drain: DrainOptions {
            timeout: drain_timeout,
            ..DrainOptions::default()
        },
        comeback: Duration::from_secs(45),
        ..RollOptions::new(source.to_string(), target.to_string())
    };
    let mut nodes = rollout::kind::KindNodes {
        cluster: &mut cluster,
        image: target_image_of(&target),
    };
    let record = rollout::roll(&mut nodes, &clients, &opts, &Progress::quiet())
        .await
        .unwrap();
    let rolled = t0.elapsed();
    println!("{}", serde_json::to_string_pretty(&record).unwrap());

    assert_eq!(record.pools.len(), 1, "{record:#?}");
    let pool = &record.pools[0];
    assert_eq!(pool.pool, POOL);
    assert_eq!(pool.nodes_before, workers);
    // Two surge nodes and one in worker 1's place, all at the target, as their
    // kubelets report.
    assert_eq!(pool.surge.len(), 3, "{:#?}", pool.surge);
    for s in &pool.surge {
        assert_eq!(s.error, None);
        assert_eq!(s.version, target.to_string(), "{s:?}");
    }
    let node = |n: &str| pool.nodes.iter().find(|r| r.node == n).unwrap_or_else(|| panic!("{n}: {pool:#?}"));

    // Worker 1 drains; what ran there does not come back, each for its own reason.
    let r1 = node(w1);
    assert_eq!(r1.drain.outcome, DrainOutcome::Drained, "{r1:#?}");
    assert!(r1.removed && !r1.quarantined);
    assert_eq!(r1.version, source.to_string());
    let cause = |ns: &str| {
        &r1.not_back
            .iter()
            .find(|b| b.namespace == ns)
            .unwrap_or_else(|| panic!("{ns} not back: {:#?}", r1.not_back))
            .cause
    };
    for ns in ["guard-system", "guarded"] {
        match cause(ns) {
            NotBackCause::CreateRefused { webhook, message, deadlock } => {
                assert_eq!(webhook.as_deref(), Some("pods.guard.corp"), "{message}");
                assert!(*deadlock, "{ns}: the webhook's own backend is not back: {message}");
            }
            c => panic!("{ns}: {c:?}"),
        }
    }
    match cause("pinned") {
        NotBackCause::Unschedulable { message, .. } => {
            assert!(message.contains("affinity"), "the scheduler's event: {message}")
        }
        c => panic!("pinned: {c:?}"),
    }
    assert!(
        r1.not_back.iter().all(|b| b.namespace != "rolling"),
        "{:#?}",
        r1.not_back
    );

    // Worker 2: the budget blocks, from its readings, long before the drain timeout.
    let r2 = node(w2);
    let DrainOutcome::Blocked { by: BlockedBy::Budget { name, namespace, status, .. }, would_wait, .. } =
        &r2.drain.outcome
    else {
        panic!("{r2:#?}")
    };
    assert_eq!((name.as_str(), namespace.as_str()), ("web", "budget"));
    assert_eq!(status.disruptions_allowed, 0);
    assert_eq!(*would_wait, drain_timeout);
    assert!(r2.drain.duration < drain_timeout / 2, "{:?}", r2.drain.duration);
    assert!(r2.quarantined && !r2.removed);

    // Worker 3: the eviction webhook refuses; kubectl's drain fails at once.
    let r3 = node(w3);
    let DrainOutcome::Blocked { by: BlockedBy::Refused { message, .. }, would_wait, .. } = &r3.drain.outcome
    else {
        panic!("{r3:#?}")
    };
    assert!(message.contains("evictions.noevict.corp"), "{message}");
    assert_eq!(*would_wait, Duration::ZERO);
    assert!(r3.quarantined);

    match &pool.prediction {
        Prediction::Quarantined { nodes, .. } => assert_eq!(nodes, &vec![w2.clone(), w3.clone()]),
        p => panic!("{p:?}"),
    }
    // The cluster agrees: the quarantined nodes are cordoned and labelled, worker 1 is
    // gone, the tolerant workload is Ready on the nodes left.
    let api: Api<Node> = Api::all(client.clone());
    for w in [w2, w3] {
        let n = api.get(w).await.unwrap();
        assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
        assert_eq!(
            n.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.azure.com/upgrade-status")).map(String::as_str),
            Some("Quarantined")
        );
    }
    assert!(api.get_opt(w1).await.unwrap().is_none());
    wait_ready(&client, "rolling", None, 3).await;

    drop(nodes);
    drop(cluster);
    let left: Vec<String> = preflight_containers()
        .into_iter()
        .filter(|c| c.starts_with(&name))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "kind nodes left behind (surge nodes too)");
    eprintln!(
        "timings: cluster {created:?}, placed {placed:?}, control plane {upgraded:?}, rolled {rolled:?}, total {:?}",
        t0.elapsed()
    );
}

fn target_image_of(v: &components::Version) -> String {
    kind::node_image(v, None)
}
