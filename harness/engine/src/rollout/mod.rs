//! Rolls a cluster's node pools as AKS does after upgrading the control plane, and
//! records what the cluster answered ([`RolloutRecord`]).
//!
//! For each pool (nodes labelled `kubernetes.azure.com/agentpool`), AKS's surge
//! upgrade (docs/aks-upgrade.md): join `maxSurge` nodes at the target version; then
//! for each old node, cordon and drain it through the Eviction API within the drain
//! timeout; a drained node is reimaged at the target version (here: removed, and a
//! node of the same pool joined at the target in its place), and the roll goes on.
//! A node that cannot be drained fails the upgrade (`Schedule`, AKS's default) or is
//! quarantined (`Cordon`: cordoned, labelled, a surge node kept in its place) while
//! the pool goes on, until more nodes are blocked than surge nodes exist
//! (`--max-blocked-nodes`' default). At the end the surge nodes left over are drained
//! and removed, so the pool has its old size, all at the target.
//!
//! After each drain the roll waits (up to [`RollOptions::comeback`]) for the evicted
//! Pods' controllers to have their replicas Ready again ([`comeback`]), and records the
//! workloads that did not, with the cluster's reason.
//!
//! The node operations are the provider's ([`Nodes`]); the drains, the waits and every
//! verdict are the API's answers.

pub mod comeback;
pub mod kind;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use preflight_core::rollout::{
    MaxSurge, NodeDrain, NodeRoll, PoolRoll, Prediction, QUARANTINE_LABEL, QUARANTINE_VALUE,
    RolloutRecord, SurgeNode, Undrainable, predict,
};

use crate::cluster::kind::{
    AGENTPOOL_LABEL, AGENTPOOL_LABEL_SHORT, MAX_PODS_LABEL, NodeSize, NodeSpec, RESERVED_CPU_LABEL,
    RESERVED_MEMORY_LABEL, Taint, TaintEffect,
};
use crate::drain::{self, BlockedBy, DrainOptions, DrainOutcome};
use crate::errors::ClusterError;
use crate::progress::Progress;

/// Per API request of the roll's own reads and writes.
const REQUEST: Duration = Duration::from_secs(10);

/// What a provider does to nodes for a roll: join one at the target version, remove
/// one. (kind: a node container from the target's node image, `kubeadm join`.)
pub trait Nodes {
    /// Joins a node of `spec`'s pool at the target version, named after `suffix`, and
    /// waits until it is Ready; its name.
    fn add_node(
        &mut self,
        spec: &NodeSpec,
        suffix: &str,
    ) -> impl Future<Output = Result<String, ClusterError>> + Send;
    /// Deletes the Node and its machine.
    fn remove_node(&mut self, node: &str) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// How the pools roll. The defaults are AKS's.
#[derive(Clone, Debug)]
pub struct RollOptions {
    pub from: String,
    pub to: String,
    pub max_surge: MaxSurge,
    pub undrainable: Undrainable,
    /// Each node's drain (its `timeout` is AKS's drain timeout).
    pub drain: DrainOptions,
    /// How long to wait after a drain for the evicted Pods to be back and Ready.
    pub comeback: Duration,
}

impl RollOptions {
    pub fn new(from: String, to: String) -> RollOptions {
        RollOptions {
            from,
            to,
            max_surge: MaxSurge::default(),
            undrainable: Undrainable::default(),
            drain: DrainOptions::default(),
            comeback: Duration::from_secs(120),
        }
    }
}

/// The worker nodes of each pool, by the AKS pool label, sorted by name (the order
/// they are drained in). Nodes without the label (the control plane) are not rolled.
pub async fn pools(client: &kube::Client) -> Result<BTreeMap<String, Vec<Node>>, ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = tokio::time::timeout(REQUEST, nodes.list(&ListParams::default()))
        .await
        .map_err(|_| ClusterError::Unsupported("listing the nodes: no answer within 10s".into()))?
        .map_err(|e| ClusterError::Unsupported(format!("listing the nodes: {e}")))?;
    let mut out: BTreeMap<String, Vec<Node>> = BTreeMap::new();
    for n in list.items {
        if let Some(pool) = n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(AGENTPOOL_LABEL))
            .cloned()
        {
            out.entry(pool).or_default().push(n);
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    Ok(out)
}

/// The spec a new node of `node`'s pool joins with, read from the Node: its pool, its
/// own labels (not those the kubelet and Kubernetes set, nor AKS's pool and quarantine
/// labels) and its taints (not those the node controller manages).
pub fn spec_of(node: &Node) -> NodeSpec {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let managed = |k: &str| {
        let domain = k.split_once('/').map(|(d, _)| d).unwrap_or("");
        ["kubernetes.io", "k8s.io"]
            .iter()
            .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
            || [
                AGENTPOOL_LABEL,
                AGENTPOOL_LABEL_SHORT,
                QUARANTINE_LABEL,
                RESERVED_CPU_LABEL,
                RESERVED_MEMORY_LABEL,
                MAX_PODS_LABEL,
            ]
            .contains(&k)
    };
    NodeSpec {
        size: NodeSize::from_labels(&labels),
        pool: labels.get(AGENTPOOL_LABEL).cloned().unwrap_or_default(),
        labels: labels
            .iter()
            .filter(|(k, _)| !managed(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        taints: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
            .filter_map(|t| {
                let effect = match t.effect.as_str() {
                    "NoSchedule" => TaintEffect::NoSchedule,
                    "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                    "NoExecute" => TaintEffect::NoExecute,
                    _ => return None,
                };
                Some(Taint {
                    key: t.key,
                    value: t.value.unwrap_or_default(),
                    effect,
                })
            })
            .collect(),
    }
}

/// The most workers a scenario's kind cluster may have (each is a node container).
pub const MAX_WORKERS: u32 = 10;

/// A taint as `az aks nodepool add --node-taints` takes it: `key=value:Effect` (or
/// `key:Effect`).
pub fn parse_taint(text: &str) -> Result<Taint, String> {
    let bad = || {
        format!(
            "taint `{text}`: expected key=value:Effect (Effect: NoSchedule, PreferNoSchedule or NoExecute)"
        )
    };
    let (kv, effect) = text.rsplit_once(':').ok_or_else(bad)?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        _ => return Err(bad()),
    };
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        return Err(bad());
    }
    Ok(Taint {
        key: key.into(),
        value: value.into(),
        effect,
    })
}

/// The kind workers of a scenario's node pools, in order, or what is wrong with them.
pub fn workers_of(pools: &[preflight_core::scenario::NodePool]) -> Result<Vec<NodeSpec>, String> {
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in pools.iter().enumerate() {
        if !names.insert(p.name.as_str()) {
            return Err(format!("nodes[{i}].name `{}` is used twice", p.name));
        }
        if p.count == 0 {
            return Err(format!("nodes[{i}].count: a pool has at least one node"));
        }
        let spec = NodeSpec {
            pool: p.name.clone(),
            labels: p.labels.clone(),
            taints: p
                .taints
                .iter()
                .map(|t| parse_taint(t))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("nodes[{i}].taints: {e}"))?,
            size: None,
        };
        if let Some(problem) = spec.problems().into_iter().next() {
            return Err(format!("nodes[{i}]: {problem}"));
        }
        out.extend(std::iter::repeat_n(spec, p.count as usize));
    }
    if out.len() > MAX_WORKERS as usize {
        return Err(format!(
            "nodes: {} workers in all, more than {MAX_WORKERS}: each is a node container on this machine (scale the pools down: the roll's verdicts do not need production's size)",
            out.len()
        ));
    }
    Ok(out)
}

/// The kubelet version a Node reports.
async fn kubelet_version(client: &kube::Client, node: &str) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    match tokio::time::timeout(REQUEST, nodes.get(node)).await {
        Ok(Ok(n)) => n
            .status
            .and_then(|s| s.node_info)
            .map(|i| i.kubelet_version)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Labels a node quarantined, as AKS's `Cordon` behaviour does (it stays cordoned).
async fn quarantine(client: &kube::Client, node: &str) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {QUARANTINE_LABEL: QUARANTINE_VALUE}}});
    match tokio::time::timeout(
        REQUEST,
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("labelling {node} quarantined: {e}")),
        Err(_) => Err(format!("labelling {node} quarantined: no answer")),
    }
}

/// The clients a roll uses: one for reads and writes, one for evictions that hands
/// every 429 back (see [`drain::client_without_retries`]).
pub struct Clients {
    pub api: kube::Client,
    pub evictions: kube::Client,
}

/// Rolls every pool; stops at the first pool AKS would fail in (the upgrade stops
/// there), as AKS does.
pub async fn roll<N: Nodes>(
    nodes: &mut N,
    clients: &Clients,
    opts: &RollOptions,
    progress: &Progress,
) -> Result<RolloutRecord, ClusterError> {
    let mut record = RolloutRecord {
        from: opts.from.clone(),
        to: opts.to.clone(),
        max_surge: opts.max_surge,
        drain_timeout: opts.drain.timeout,
        undrainable: opts.undrainable,
        pools: Vec::new(),
    };
    for (pool, members) in pools(&clients.api).await? {
        let roll = roll_pool(nodes, clients, opts, progress, &pool, &members).await;
        let stop = matches!(
            roll.prediction,
            Prediction::Fails { .. } | Prediction::SurgeFailed { .. }
        );
        record.pools.push(roll);
        if stop {
            break;
        }
    }
    Ok(record)
}

/// One pool's surge, drains, reimages and the surge's removal.
async fn roll_pool<N: Nodes>(
    nodes: &mut N,
    clients: &Clients,
    opts: &RollOptions,
    progress: &Progress,
    pool: &str,
    members: &[Node],
) -> PoolRoll {
    let spec = spec_of(&members[0]);
    let mut roll = PoolRoll {
        pool: pool.into(),
        nodes_before: members
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect(),
        surge: Vec::new(),
        nodes: Vec::new(),
        prediction: Prediction::Succeeds,
    };
    let surge = opts.max_surge.nodes(members.len());
    let mut joined = 0;
    let mut buffers = Vec::new();
    for _ in 0..surge {
        let node = join(nodes, clients, progress, &spec, &mut joined).await;
        let failed = node.error.is_some();
        if !failed {
            buffers.push(node.node.clone());
        }
        roll.surge.push(node);
        if failed {
            roll.prediction = predict(
                &roll.nodes,
                &roll.surge,
                opts.drain.timeout,
                opts.undrainable,
            );
            return roll;
        }
    }
    let mut blocked = 0;
    let mut too_many = None;
    for old in roll.nodes_before.clone() {
        let mut n = drain_node(clients, opts, progress, &old).await;
        if n.undrainable() {
            match opts.undrainable {
                Undrainable::Schedule => {
                    roll.nodes.push(n);
                    break;
                }
                Undrainable::Cordon => {
                    blocked += 1;
                    match quarantine(&clients.api, &old).await {
                        Ok(()) => n.quarantined = true,
                        Err(e) => n.error = Some(e),
                    }
                    roll.nodes.push(n);
                    // A surge node stays in the quarantined node's place.
                    buffers.pop();
                    if blocked > surge {
                        // AKS's `--max-blocked-nodes` defaults to the surge count.
                        too_many = Some(old.clone());
                        break;
                    }
                    continue;
                }
            }
        }
        // Reimaged at the target: here, removed and a node of the pool joined.
        match nodes.remove_node(&old).await {
            Ok(()) => n.removed = true,
            Err(e) => n.error = Some(format!("removing {old}: {e}")),
        }
        roll.nodes.push(n);
        let new = join(nodes, clients, progress, &spec, &mut joined).await;
        let failed = new.error.is_some();
        roll.surge.push(new);
        if failed {
            break;
        }
    }
    if !roll
        .nodes
        .iter()
        .any(|n| n.undrainable() && opts.undrainable == Undrainable::Schedule)
    {
        // The surge nodes left over go, drained first.
        for b in buffers {
            let mut n = drain_node(clients, opts, progress, &b).await;
            if !n.undrainable() {
                match nodes.remove_node(&b).await {
                    Ok(()) => n.removed = true,
                    Err(e) => n.error = Some(format!("removing {b}: {e}")),
                }
            }
            roll.nodes.push(n);
        }
    }
    roll.prediction = match too_many {
        Some(node) => Prediction::Fails {
            cause: format!(
                "{blocked} nodes could not be drained, more than the {surge} surge node(s) AKS keeps for quarantined nodes (--max-blocked-nodes defaults to the surge)"
            ),
            node,
            after: Duration::ZERO,
        },
        None => predict(
            &roll.nodes,
            &roll.surge,
            opts.drain.timeout,
            opts.undrainable,
        ),
    };
    roll
}

/// Joins one node of the pool at the target version.
async fn join<N: Nodes>(
    nodes: &mut N,
    clients: &Clients,
    progress: &Progress,
    spec: &NodeSpec,
    joined: &mut usize,
) -> SurgeNode {
    *joined += 1;
    let suffix = format!("{}-{}", spec.pool, joined);
    let step = progress.step(format!(
        "joining node {suffix} to pool {} at the target",
        spec.pool
    ));
    let start = Instant::now();
    match nodes.add_node(spec, &suffix).await {
        Ok(node) => {
            step.done("");
            SurgeNode {
                version: kubelet_version(&clients.api, &node).await,
                node,
                took: start.elapsed(),
                error: None,
            }
        }
        Err(e) => {
            step.fail("");
            SurgeNode {
                node: suffix,
                version: String::new(),
                took: start.elapsed(),
                error: Some(e.to_string()),
            }
        }
    }
}

/// Drains one node and waits for what it evicted to come back.
async fn drain_node(
    clients: &Clients,
    opts: &RollOptions,
    progress: &Progress,
    node: &str,
) -> NodeRoll {
    let version = kubelet_version(&clients.api, node).await;
    let before = comeback::ready_before(&clients.api, node).await;
    let step = progress.step(format!("draining {node}"));
    let report = drain::drain(&clients.evictions, node, &opts.drain).await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            step.fail("");
            return NodeRoll {
                node: node.into(),
                version,
                drain: NodeDrain {
                    duration: Duration::ZERO,
                    cordoned: false,
                    decisions: Vec::new(),
                    evictions: Vec::new(),
                    budget_readings: Vec::new(),
                    pods: Vec::new(),
                    outcome: DrainOutcome::TimedOut {
                        pods: Vec::new(),
                        by: BlockedBy::Unknown {
                            checked: vec![format!("the drain could not start: {e}")],
                        },
                    },
                },
                quarantined: false,
                removed: false,
                not_back: Vec::new(),
                waited: Duration::ZERO,
                error: Some(e.to_string()),
            };
        }
    };
    step.done(format!("{:.1} s", report.duration.as_secs_f64()));
    let evicted: Vec<_> = report
        .selection
        .evict
        .iter()
        .filter(|p| {
            let r = drain::pod_ref(p);
            report
                .pods
                .iter()
                .any(|x| x.pod == r && matches!(x.end, drain::PodEnd::Gone))
        })
        .cloned()
        .collect();
    let (not_back, waited) = if evicted.is_empty() {
        (Vec::new(), Duration::ZERO)
    } else {
        let step = progress.step(format!(
            "waiting for the Pods evicted from {node} to be Ready"
        ));
        let r = comeback::wait(&clients.api, &evicted, &before, opts.comeback).await;
        step.done("");
        r
    };
    NodeRoll {
        node: node.into(),
        version,
        drain: NodeDrain {
            duration: report.duration,
            cordoned: report.cordoned,
            decisions: report.selection.decisions,
            evictions: report.evictions,
            budget_readings: report.budget_readings,
            pods: report.pods,
            outcome: report.outcome,
        },
        quarantined: false,
        removed: false,
        not_back,
        waited,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_become_workers_and_bad_ones_are_named() {
        let pool = |name: &str, count: u32, taints: &[&str]| preflight_core::scenario::NodePool {
            name: name.into(),
            count,
            labels: BTreeMap::new(),
            taints: taints.iter().map(|t| t.to_string()).collect(),
        };
        let w = workers_of(&[
            pool("system", 1, &[]),
            pool("user", 2, &["sku=gpu:NoSchedule"]),
        ])
        .unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[2].taints[0].key, "sku");
        assert_eq!(parse_taint("dedicated:NoExecute").unwrap().value, "");
        for (pools, says) in [
            (vec![pool("a", 1, &["x=y:Sometimes"])], "nodes[0].taints"),
            (vec![pool("a", 1, &[]), pool("a", 1, &[])], "used twice"),
            (vec![pool("Bad_Name", 1, &[])], "pool name"),
            (vec![pool("a", 0, &[])], "at least one"),
            (vec![pool("a", 11, &[])], "more than 10"),
        ] {
            let e = workers_of(&pools).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_new_node_joins_with_the_pools_own_labels_and_taints() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w1", "labels": {
                "kubernetes.azure.com/agentpool": "gpu",
                "agentpool": "gpu",
                "kubernetes.io/hostname": "w1",
                "node-role.kubernetes.io/worker": "",
                "team": "ml",
                "kubernetes.azure.com/upgrade-status": "Quarantined"
            }},
            "spec": {"taints": [
                {"key": "sku", "value": "gpu", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
            ]}
        }))
        .unwrap();
        let spec = spec_of(&node);
        assert_eq!(spec.pool, "gpu");
        assert_eq!(
            spec.labels,
            BTreeMap::from([("team".to_string(), "ml".to_string())])
        );
        assert_eq!(
            spec.taints,
            vec![Taint {
                key: "sku".into(),
                value: "gpu".into(),
                effect: TaintEffect::NoSchedule
            }]
        );
    }
}
