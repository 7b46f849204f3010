//! The drain half of a node-pool upgrade on a real control plane (etcd, kube-apiserver,
//! kube-controller-manager with its disruption controller, which computes every
//! PodDisruptionBudget's status).
//!
//! A local control plane has no kube-scheduler and no kubelet, so the fixture plays
//! both, as narrowly as they act: it binds unscheduled Pods to the first Node that is
//! not cordoned (through the `pods/binding` subresource, as the scheduler does), marks
//! bound Pods Running and Ready (through the status subresource, as the kubelet
//! reports), and confirms the deletion of Pods being deleted (a delete with grace
//! period 0, as the kubelet sends once the containers stopped). The verdicts under
//! test come only from the API server's answers to the evictions and from the budget
//! statuses the disruption controller computed: the fixture never tells the drain what
//! a budget says.
//!
//! The drain runs at the target version: AKS upgrades the control plane first and
//! drains the node pools after.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use preflight::drain::{
    self, Answer, BlockedBy, DrainError, DrainOptions, DrainOutcome, PodDecision, PodEnd,
};

use crate::common;

const NODE_A: &str = "node-a";
const NODE_B: &str = "node-b";

async fn create_nodes(client: &kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in [NODE_A, NODE_B] {
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
}

/// Creates a namespaced object from JSON (any group, the core one included).
pub(crate) async fn create(client: &kube::Client, ns: &str, doc: serde_json::Value) {
    let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            doc["apiVersion"].as_str().unwrap().to_string(),
        ),
    };
    let ar = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        &group,
        &version,
        doc["kind"].as_str().unwrap(),
    ));
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(doc).unwrap(),
    )
    .await
    .unwrap();
}

/// A namespace with a ReplicaSet of `replicas` Pods labelled `app=web` (no `nodeName`:
/// the fixture's scheduler binds them) and a budget `web` with `budget` as its spec.
async fn workload(client: &kube::Client, ns: &str, replicas: i32, budget: serde_json::Value) {
    preflight::smoke::ensure_namespace_labelled(client, ns, "drain")
        .await
        .unwrap();
    create(client, ns, serde_json::json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.9"}]}}}
    }))
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
}

/// A Pod created on node A directly, with no controller; a static Pod's mirror (the
/// kubelet's `kubernetes.io/config.mirror` annotation) when `mirror`.
async fn bare_pod(client: &kube::Client, ns: &str, name: &str, mirror: bool) {
    let mut pod = serde_json::json!({"metadata": {"name": name, "labels": {"app": "other"}},
        "spec": {"nodeName": NODE_A, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}});
    if mirror {
        pod["metadata"]["annotations"] =
            serde_json::json!({drain::select::MIRROR_POD_ANNOTATION: "mirror"});
    }
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One pass of the stand-in scheduler and kubelet over `ns` (see the module's doc). A
/// bound Pod is reported Running at once and Ready `ready_after` later (`started`:
/// when each Pod, by uid, was reported Running), as containers take a while to start
/// and pass their readiness probe.
async fn play_scheduler_and_kubelet(
    client: &kube::Client,
    ns: &str,
    ready_after: Duration,
    started: &mut HashMap<String, Instant>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(pod_list) = pods.list(&ListParams::default()).await else {
        return;
    };
    for p in pod_list.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(uid) = p
            .metadata
            .deletion_timestamp
            .as_ref()
            .and(p.metadata.uid.clone())
        {
            // The kubelet: containers stopped, deletion confirmed.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let _ = pods.delete(&name, &dp).await;
        } else if node.is_none() {
            // The scheduler: the first Node not cordoned, in name order.
            let Ok(list) = nodes.list(&ListParams::default()).await else {
                return;
            };
            let mut open: Vec<String> = list
                .items
                .iter()
                .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            open.sort();
            if let Some(target) = open.first() {
                let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
                let _: Result<serde_json::Value, _> = pods
                    .create_subresource("binding", &name, &PostParams::default(), &binding)
                    .await;
            }
        } else if !ready(&p) {
            // The kubelet: the containers started, the Pod is Ready once its time came.
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let since = *started.entry(uid).or_insert_with(Instant::now);
            let is_ready = if since.elapsed() >= ready_after {
                "True"
            } else {
                "False"
            };
            let status = serde_json::json!({"status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": is_ready}]}});
            let _ = pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        }
    }
}

/// Runs [`play_scheduler_and_kubelet`] every 200 ms until the flag is cleared.
fn agents(
    client: &kube::Client,
    ns: &str,
    ready_after: Duration,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let run = Arc::new(AtomicBool::new(true));
    let (client, ns, flag) = (client.clone(), ns.to_string(), run.clone());
    let handle = tokio::spawn(async move {
        let mut started = HashMap::new();
        while flag.load(Ordering::SeqCst) {
            play_scheduler_and_kubelet(&client, &ns, ready_after, &mut started).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (run, handle)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Pods of `ns` on `node`: how many, and how many Running, Ready and not being
/// deleted.
pub(crate) async fn on_node(client: &kube::Client, ns: &str, node: &str) -> (usize, usize) {
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .unwrap();
    let healthy = list
        .items
        .iter()
        .filter(|p| running(p) && ready(p) && p.metadata.deletion_timestamp.is_none())
        .count();
    (list.items.len(), healthy)
}

/// Waits (30 s at most) until the disruption controller has processed budget `web`
/// and counts `healthy` of `expected` Pods healthy; returns its status.
pub(crate) async fn budget_settled(
    client: &kube::Client,
    ns: &str,
    expected: i32,
    healthy: i32,
) -> serde_json::Value {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let pdb = pdbs.get("web").await.unwrap();
        let s = pdb.status.clone().unwrap_or_default();
        if s.observed_generation >= pdb.metadata.generation
            && s.expected_pods == expected
            && s.current_healthy == healthy
        {
            return serde_json::to_value(s).unwrap();
        }
        assert!(
            Instant::now() < end,
            "the disruption controller did not settle budget web in {ns}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client for the drain that hands 429s back (see
/// [`drain::client_without_retries`]).
async fn drain_client(cluster: &preflight::cluster::LocalCluster) -> kube::Client {
    let config =
        preflight::cluster::local::config_from_kubeconfig(cluster.kubeconfig(), None, None)
            .await
            .unwrap();
    drain::client_without_retries(config).unwrap()
}

/// Three Ready Pods of `ns` on node A, placed by the stand-in scheduler and kubelet.
async fn three_ready_on_a(client: &kube::Client, ns: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    let mut started = HashMap::new();
    loop {
        play_scheduler_and_kubelet(client, ns, Duration::ZERO, &mut started).await;
        if on_node(client, ns, NODE_A).await == (3, 3) {
            return;
        }
        assert!(Instant::now() < end, "three Ready Pods on {NODE_A}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A drained node whose budget allowed one disruption at a time: every Pod that was
/// there (`before`, by uid) gone after exactly one admitted eviction, and the concurrent
/// evictions refused 429 by `budget` and retried (shared with the drain on kind).
pub(crate) fn assert_drained_one_at_a_time(
    report: &preflight::drain::DrainReport,
    before: &[String],
    budget: &str,
) {
    assert_eq!(report.pods.len(), 3);
    for p in &report.pods {
        assert!(before.contains(&p.pod.uid), "{p:?}");
        assert_eq!(p.end, PodEnd::Gone, "{p:?}");
        let admitted = report
            .evictions
            .iter()
            .filter(|e| e.pod == p.pod && matches!(e.answer, Answer::Evicted { .. }))
            .count();
        assert_eq!(admitted, 1, "one admitted eviction for {}", p.pod);
    }
    let refused: Vec<_> = report
        .evictions
        .iter()
        .filter(|e| e.answer.code() == Some(429))
        .collect();
    assert!(refused.len() >= 2, "{:?}", report.evictions);
    let named = format!("The disruption budget {budget}");
    assert!(
        refused
            .iter()
            .all(|e| causes_of(&e.answer).iter().any(|c| c.starts_with(&named)))
    );
}

/// The messages of a refusal's causes (the budget's name is in them).
pub(crate) fn causes_of(a: &Answer) -> Vec<String> {
    match a {
        Answer::Refused { causes, .. } => causes.iter().map(|c| c.message.clone()).collect(),
        _ => vec![],
    }
}

/// (a) `minAvailable` equal to the replicas (3 of 3): AKS would retry the 429s for its
/// whole 30-minute drain timeout and fail the upgrade; the drain says so within the
/// confirmation window, with the budget's status as the disruption controller computed
/// it.
#[tokio::test(flavor = "multi_thread")]
async fn blocked_by_a_budget_that_allows_no_disruption() {
    let version = &common::versions()[1];
    let cluster = common::cluster("drain", version).await;
    let client = cluster.client();
    create_nodes(&client).await;
    workload(
        &client,
        "blocked",
        3,
        serde_json::json!({"minAvailable": 3}),
    )
    .await;
    three_ready_on_a(&client, "blocked").await;
    // A static Pod's mirror on node A: the drain leaves it (the kubelet owns it).
    bare_pod(&client, "blocked", "static-web-node-a", true).await;
    let status = budget_settled(&client, "blocked", 3, 3).await;
    assert_eq!(status["disruptionsAllowed"], 0, "{status}");

    let started = Instant::now();
    let report = drain::drain(
        &drain_client(&cluster).await,
        NODE_A,
        &DrainOptions::default(),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());

    assert!(took < Duration::from_secs(30), "verdict took {took:?}");
    assert!(report.cordoned);
    let DrainOutcome::Blocked {
        pods,
        by:
            BlockedBy::Budget {
                name,
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
    assert_eq!((name.as_str(), namespace.as_str()), ("web", "blocked"));
    assert_eq!(*would_wait, drain::AKS_DRAIN_TIMEOUT);
    assert!(!pods.is_empty());
    assert_eq!(
        (
            status.expected_pods,
            status.current_healthy,
            status.desired_healthy,
            status.disruptions_allowed
        ),
        (3, 3, 3, 0)
    );
    assert!(status.observed_generation >= status.generation);
    assert!(status.could_become_healthy.is_empty() && status.disrupted_pods.is_empty());
    assert!(readings.len() >= 2);
    let held = readings.last().unwrap().elapsed_ms - readings[0].elapsed_ms;
    assert!(held >= 5_000, "confirmed over {held} ms");
    assert!(
        answer.contains("needs 3 healthy pods and has 3 currently"),
        "{answer}"
    );
    // Every Pod was tried, one at least twice (the confirmation), and every answer
    // was the budget's 429, naming it. (Pods still waiting to retry when one Pod
    // settled the verdict were stopped: `Stopped`.)
    for p in &report.pods {
        assert!(report.evictions.iter().any(|e| e.pod == p.pod), "{p:?}");
    }
    assert!(
        report.evictions.len() > report.pods.len(),
        "{:?}",
        report.evictions
    );
    for e in &report.evictions {
        assert_eq!(e.answer.code(), Some(429), "{e:?}");
        assert!(
            causes_of(&e.answer)
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
    // Nothing was evicted: the three Pods still run on the cordoned node, beside the
    // mirror Pod the filters skipped.
    let mirror = report
        .selection
        .decisions
        .iter()
        .find(|(p, _)| p.name == "static-web-node-a")
        .expect("the mirror Pod was listed");
    assert!(matches!(mirror.1, PodDecision::Skip { .. }), "{mirror:?}");
    assert!(
        report
            .evictions
            .iter()
            .all(|e| e.pod.name != "static-web-node-a")
    );
    assert_eq!(report.pods.len(), 3);
    assert_eq!(on_node(&client, "blocked", NODE_A).await.0, 4);
    let node = Api::<Node>::all(client.clone()).get(NODE_A).await.unwrap();
    assert_eq!(node.spec.unwrap().unschedulable, Some(true));
    assert!(drain::uncordon(&client, NODE_A).await.unwrap());
    cluster.stop();
}

/// (b) `maxUnavailable: 1` of 3 replicas: the first eviction is admitted and the
/// others answered 429 until the ReplicaSet's replacement is Ready elsewhere (here the
/// fixture's scheduler and kubelet put it on node B; on a cluster with no scheduler or
/// kubelet it would stay Pending and the drain would wait, which the verdict must not
/// call blocked); the drain then goes on one Pod at a time until node A is empty.
#[tokio::test(flavor = "multi_thread")]
async fn drains_when_the_budget_allows_one_at_a_time() {
    let version = &common::versions()[1];
    let cluster = common::cluster("drain", version).await;
    let client = cluster.client();
    create_nodes(&client).await;
    workload(
        &client,
        "flows",
        3,
        serde_json::json!({"maxUnavailable": 1}),
    )
    .await;
    three_ready_on_a(&client, "flows").await;
    let status = budget_settled(&client, "flows", 3, 3).await;
    assert_eq!(status["disruptionsAllowed"], 1, "{status}");
    let before: Vec<String> = Api::<Pod>::namespaced(client.clone(), "flows")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();

    // Replacements become Ready 2 s after they start: the first eviction is admitted,
    // the concurrent ones are refused until then.
    let (run, agents) = agents(&client, "flows", Duration::from_secs(2));
    let opts = DrainOptions {
        // Far above what this takes (about two retry delays), far below AKS's.
        timeout: Duration::from_secs(40),
        ..DrainOptions::default()
    };
    let started = Instant::now();
    let report = drain::drain(&drain_client(&cluster).await, NODE_A, &opts)
        .await
        .unwrap();
    let took = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    // The last replacement becomes Ready `ready_after` after the drain ended.
    let end = Instant::now() + Duration::from_secs(15);
    while on_node(&client, "flows", NODE_B).await != (3, 3) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.store(false, Ordering::SeqCst);
    agents.await.unwrap();

    assert_eq!(report.outcome, DrainOutcome::Drained, "after {took:?}");
    assert_drained_one_at_a_time(&report, &before, "web");
    assert!(!report.budget_readings.is_empty());
    // Node A is empty; the replacements run on node B and the budget is whole again.
    assert_eq!(on_node(&client, "flows", NODE_A).await, (0, 0));
    assert_eq!(on_node(&client, "flows", NODE_B).await, (3, 3));
    let status = budget_settled(&client, "flows", 3, 3).await;
    assert_eq!(status["disruptionsAllowed"], 1, "{status}");
    cluster.stop();
}

/// (c) A fail-closed webhook on `pods/eviction` that cannot be reached (its Service
/// gone, as when its own Pods were evicted): the API server answers 500 `failed
/// calling webhook`, which kubectl does not retry, so the drain fails at once; the
/// budget (which would allow one disruption) never decides anything.
#[tokio::test(flavor = "multi_thread")]
async fn refused_by_an_unreachable_webhook_on_evictions() {
    let version = &common::versions()[1];
    let cluster = common::cluster("drain", version).await;
    let client = cluster.client();
    create_nodes(&client).await;
    workload(
        &client,
        "refused",
        3,
        serde_json::json!({"maxUnavailable": 1}),
    )
    .await;
    three_ready_on_a(&client, "refused").await;
    budget_settled(&client, "refused", 3, 3).await;
    let vwcs: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &common::ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    );
    let config = serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "eviction-guard"},
        "webhooks": [{"name": "eviction-guard.drain.preflight.dev", "clientConfig": {"url": "https://127.0.0.1:9/evict"},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/eviction"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "refused"}}}]});
    vwcs.create(
        &PostParams::default(),
        &serde_json::from_value(config).unwrap(),
    )
    .await
    .unwrap();
    // The API server takes the registration up within a moment: wait until a
    // server-side dry run of an eviction (nothing evicted) is refused.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "refused");
    let some_pod = pods.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let dry = kube::api::EvictParams {
        post_options: PostParams {
            dry_run: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let drain_client = drain_client(&cluster).await;
    let probe: Api<Pod> = Api::namespaced(drain_client.clone(), "refused");
    let end = Instant::now() + Duration::from_secs(15);
    while probe.evict(&some_pod, &dry).await.is_ok() {
        assert!(Instant::now() < end, "the webhook never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started = Instant::now();
    let report = drain::drain(&drain_client, NODE_A, &DrainOptions::default())
        .await
        .unwrap();
    let took = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());

    assert!(took < Duration::from_secs(10), "took {took:?}");
    let DrainOutcome::Blocked {
        by: BlockedBy::Refused { code, message, .. },
        would_wait,
        ..
    } = &report.outcome
    else {
        panic!("expected Blocked by a refusal: {:?}", report.outcome);
    };
    assert_eq!(*code, 500);
    assert!(
        message.contains("failed calling webhook")
            && message.contains("eviction-guard.drain.preflight.dev"),
        "{message}"
    );
    assert_eq!(*would_wait, Duration::ZERO);
    // No retries (kubectl fails at once on anything but 429) and no budget consulted.
    assert!(
        report
            .evictions
            .iter()
            .all(|e| e.attempt == 1 && e.answer.code() == Some(500))
    );
    assert!(report.budget_readings.is_empty());
    assert_eq!(on_node(&client, "refused", NODE_A).await, (3, 3));
    cluster.stop();
}

/// (d) A Pod that declares no controller on the node: `kubectl drain` without
/// `--force` refuses the node before any eviction (`cannot delete Pods that declare no
/// controller`), and so does the drain.
#[tokio::test(flavor = "multi_thread")]
async fn unevictable_when_a_pod_declares_no_controller() {
    let version = &common::versions()[1];
    let cluster = common::cluster("drain", version).await;
    let client = cluster.client();
    create_nodes(&client).await;
    preflight::smoke::ensure_namespace_labelled(&client, "bare", "drain")
        .await
        .unwrap();
    bare_pod(&client, "bare", "lonely", false).await;

    let drain_client = drain_client(&cluster).await;
    let err = drain::pods_to_evict(&drain_client, NODE_A)
        .await
        .unwrap_err();
    assert!(matches!(err, DrainError::Unevictable { .. }), "{err}");
    let report = drain::drain(&drain_client, NODE_A, &DrainOptions::default())
        .await
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let DrainOutcome::Unevictable { pods } = &report.outcome else {
        panic!("expected Unevictable: {:?}", report.outcome);
    };
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].0.name, "lonely");
    assert_eq!(pods[0].1, drain::select::UNMANAGED_FATAL);
    assert!(report.evictions.is_empty());
    assert_eq!(on_node(&client, "bare", NODE_A).await.0, 1);
    cluster.stop();
}

/// (e) The same budget as (b), but nothing plays the scheduler or the kubelet during the
/// drain: the evicted Pod is never confirmed deleted and its replacement stays Pending
/// on no node. A kubelet and a scheduler would make the replacement Ready and the drain
/// would go on; here nothing will, but the API cannot tell that a Pending Pod will stay
/// Pending, so the verdict must not call the budget blocked early: the drain waits out
/// its (short) timeout with the budget as the last refusal and the replacement as what
/// could still change it.
#[tokio::test(flavor = "multi_thread")]
async fn waits_out_the_timeout_while_a_replacement_could_still_become_ready() {
    let version = &common::versions()[1];
    let cluster = common::cluster("drain", version).await;
    let client = cluster.client();
    create_nodes(&client).await;
    workload(
        &client,
        "waits",
        3,
        serde_json::json!({"maxUnavailable": 1}),
    )
    .await;
    three_ready_on_a(&client, "waits").await;
    budget_settled(&client, "waits", 3, 3).await;

    let opts = DrainOptions {
        timeout: Duration::from_secs(12),
        ..DrainOptions::default()
    };
    let report = drain::drain(&drain_client(&cluster).await, NODE_A, &opts)
        .await
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());

    let DrainOutcome::TimedOut { pods, .. } = &report.outcome else {
        panic!("expected TimedOut: {:?}", report.outcome);
    };
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(report.duration >= Duration::from_secs(12));
    // One eviction admitted; its Pod is still there, being deleted.
    let admitted: Vec<_> = report
        .evictions
        .iter()
        .filter(|e| matches!(e.answer, Answer::Evicted { .. }))
        .collect();
    assert_eq!(admitted.len(), 1, "{:?}", report.evictions);
    // The others were refused by the budget until the deadline, and its last reading
    // names the Pending replacement as what could still change it.
    let budget_ends: Vec<_> = report
        .pods
        .iter()
        .filter_map(|p| match &p.end {
            PodEnd::TimedOut {
                by: BlockedBy::Budget { status, .. },
            } => Some(status.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(budget_ends.len(), 2, "{:?}", report.pods);
    for status in &budget_ends {
        assert_eq!(status.disruptions_allowed, 0);
        assert!(drain::verdict::could_change(status).is_some(), "{status:?}");
    }
    assert!(
        report
            .budget_readings
            .iter()
            .any(|r| !r.could_become_healthy.is_empty()),
        "{:?}",
        report.budget_readings
    );
    // The evicted Pod waited on the kubelet that never came.
    let evicted = &admitted[0].pod;
    let end = &report.pods.iter().find(|p| &p.pod == evicted).unwrap().end;
    assert!(
        matches!(end, PodEnd::TimedOut { by: BlockedBy::Unknown { checked } }
            if checked[0].contains("kubelet confirms the deletion")),
        "{end:?}"
    );
    assert!(
        report.evictions.iter().all(|e| {
            matches!(e.answer, Answer::Evicted { .. }) || e.answer.code() == Some(429)
        })
    );
    cluster.stop();
}
