//! Node pools as captured: what an upgrade's node rollout will surge, cordon and drain.
//!
//! Nodes are grouped into pools by AKS's agent-pool label (`kubernetes.azure.com/agentpool`,
//! or the older `agentpool`), else by the node-pool labels other providers set, else
//! into one pool named after the node's instance type or `default`. Per pool the
//! capture keeps what decides whether the same Pods fit and the same do not: the
//! count, the labels every node of the pool shares, the taints, the smallest
//! allocatable, the kubelet versions and OS; and on AKS the pool's name and mode
//! (system or user) from the node labels.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Labels that name a node's pool, in the order they are trusted.
const POOL_LABELS: [&str; 4] = [
    "kubernetes.azure.com/agentpool",
    "agentpool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
];

/// AKS's label for a pool's mode (`system` or `user`).
const AKS_MODE_LABEL: &str = "kubernetes.azure.com/mode";

/// Labels that differ per node by nature and say nothing of the pool.
const PER_NODE_LABELS: [&str; 3] = [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// One node pool.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePool {
    pub name: String,
    /// Which label named the pool (`kubernetes.azure.com/agentpool`), or how the pool
    /// was formed without one.
    pub named_by: String,
    pub count: usize,
    /// AKS: `system` or `user` (from `kubernetes.azure.com/mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Labels every node of the pool carries with the same value.
    pub labels: BTreeMap<String, String>,
    /// Taints every node of the pool carries (`key=value:Effect`).
    pub taints: Vec<String>,
    /// The smallest allocatable of the pool's nodes, per resource (as quantities).
    pub allocatable: BTreeMap<String, String>,
    pub kubelet_versions: Vec<String>,
    pub os: Vec<String>,
    /// Nodes cordoned when captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unschedulable: Vec<String>,
    /// Zones the pool's nodes are in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
}

/// The pool a node belongs to, and what named it.
fn pool_of(labels: &BTreeMap<String, String>) -> (String, String) {
    for l in POOL_LABELS {
        if let Some(v) = labels.get(l) {
            return (v.clone(), l.to_string());
        }
    }
    match labels.get("node.kubernetes.io/instance-type") {
        Some(t) => (t.clone(), "no pool label: grouped by instance type".into()),
        None => ("default".into(), "no pool label: one pool".into()),
    }
}

/// Groups `nodes` into pools (sorted by name).
pub fn pools(nodes: &[Node]) -> Vec<NodePool> {
    let mut by_pool: BTreeMap<String, (String, Vec<&Node>)> = BTreeMap::new();
    for n in nodes {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let (pool, by) = pool_of(&labels);
        by_pool
            .entry(pool)
            .or_insert_with(|| (by, Vec::new()))
            .1
            .push(n);
    }
    by_pool
        .into_iter()
        .map(|(name, (named_by, nodes))| pool(name, named_by, &nodes))
        .collect()
}

fn pool(name: String, named_by: String, nodes: &[&Node]) -> NodePool {
    let labels_of = |n: &Node| n.metadata.labels.clone().unwrap_or_default();
    let mut shared: BTreeMap<String, String> =
        nodes.first().map(|n| labels_of(n)).unwrap_or_default();
    for n in nodes {
        let l = labels_of(n);
        shared.retain(|k, v| l.get(k) == Some(v));
    }
    shared.retain(|k, _| !PER_NODE_LABELS.contains(&k.as_str()));
    let taints_of = |n: &Node| -> BTreeSet<String> {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            // Conditions the node lifecycle controller sets (not-ready, unreachable,
            // pressure) are the node's state now, not the pool's configuration.
            .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
            .map(|t| match t.value {
                Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
                _ => format!("{}:{}", t.key, t.effect),
            })
            .collect()
    };
    let mut taints = nodes.first().map(|n| taints_of(n)).unwrap_or_default();
    for n in nodes {
        let t = taints_of(n);
        taints.retain(|x| t.contains(x));
    }
    let mut kubelet = BTreeSet::new();
    let mut os = BTreeSet::new();
    let mut zones = BTreeSet::new();
    let mut unschedulable = Vec::new();
    let mut allocatable: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for n in nodes {
        let node_name = n.metadata.name.clone().unwrap_or_default();
        if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            unschedulable.push(node_name);
        }
        if let Some(z) = labels_of(n).get("topology.kubernetes.io/zone") {
            zones.insert(z.clone());
        }
        let Some(status) = &n.status else { continue };
        if let Some(info) = status
            .node_info
            .as_ref()
            .filter(|i| !i.kubelet_version.is_empty())
        {
            kubelet.insert(info.kubelet_version.clone());
            os.insert(format!("{} ({})", info.os_image, info.operating_system));
        }
        for (res, q) in status.allocatable.clone().unwrap_or_default() {
            let v = quantity(&q.0);
            let e = allocatable
                .entry(res)
                .or_insert((f64::INFINITY, String::new()));
            if v < e.0 {
                *e = (v, q.0);
            }
        }
    }
    NodePool {
        mode: shared.get(AKS_MODE_LABEL).cloned(),
        name,
        named_by,
        count: nodes.len(),
        labels: shared,
        taints: taints.into_iter().collect(),
        allocatable: allocatable.into_iter().map(|(k, (_, q))| (k, q)).collect(),
        kubelet_versions: kubelet.into_iter().collect(),
        os: os.into_iter().collect(),
        unschedulable,
        zones: zones.into_iter().collect(),
    }
}

pub use preflight_core::sizing::quantity;
use preflight_core::sizing::{Resources, Scale};

/// The pools as the twin file writes them.
pub fn to_value(pools: &[NodePool]) -> Value {
    serde_json::to_value(pools).unwrap_or(Value::Array(Vec::new()))
}

/// The captured pools as `nodes` kind workers for a rehearsal: each pool keeps at
/// least one node and the rest are shared out in proportion to the captured counts
/// (largest remainder first), with the pool's name, its shared labels (those a kubelet
/// may register with: not in the `kubernetes.io` and `k8s.io` namespaces) and its
/// taints. A pool name AKS would not accept (another provider's) becomes a valid one.
pub fn kind_workers(
    pools: &[NodePool],
    nodes: usize,
    sizes: &[Option<crate::cluster::NodeSize>],
) -> Result<Vec<crate::cluster::NodeSpec>, String> {
    if pools.is_empty() {
        return Err(
            "the twin has no node pools (captured before nodes were recorded?): capture it again"
                .into(),
        );
    }
    if nodes < pools.len() {
        return Err(format!(
            "--nodes {nodes}: the twin has {} pools, and each needs at least one node",
            pools.len()
        ));
    }
    let total: usize = pools.iter().map(|p| p.count.max(1)).sum();
    let spare = nodes - pools.len();
    let mut counts: Vec<(usize, usize, usize)> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let share = spare * p.count.max(1);
            (i, 1 + share / total, share % total)
        })
        .collect();
    let mut left = nodes - counts.iter().map(|c| c.1).sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(counts[i].2));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        counts[i].1 += 1;
        left -= 1;
    }
    let mut out = Vec::new();
    for (i, count, _) in counts {
        let p = &pools[i];
        let spec = crate::cluster::NodeSpec {
            pool: aks_pool_name(&p.name),
            labels: p
                .labels
                .iter()
                .filter(|(k, _)| {
                    let domain = k.split_once('/').map(|(d, _)| d).unwrap_or("");
                    !["kubernetes.io", "k8s.io"]
                        .iter()
                        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
                        && !POOL_LABELS.contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            taints: p
                .taints
                .iter()
                .map(|t| crate::rollout::parse_taint(t))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("pool {}: {e}", p.name))?,
            size: sizes.get(i).copied().flatten(),
        };
        if let Some(problem) = spec.problems().into_iter().next() {
            return Err(format!("pool {}: {problem}", p.name));
        }
        out.extend(std::iter::repeat_n(spec, count));
    }
    Ok(out)
}

/// The factor that fits every pool's captured allocatable in one kind node of
/// `capacity` (see [`preflight_core::sizing`]), and each pool's node size under it, in
/// the pools' order: `None` for a pool captured without a CPU and memory allocatable.
pub fn sizes(
    pools: &[NodePool],
    capacity: Resources,
) -> (Scale, Vec<Option<crate::cluster::NodeSize>>) {
    let captured: Vec<Option<Resources>> = pools
        .iter()
        .map(|p| {
            let cpu = p.allocatable.get("cpu").map(|q| quantity(q) * 1000.0)?;
            let memory = p.allocatable.get("memory").map(|q| quantity(q))?;
            (cpu >= 1.0 && memory >= 1.0).then_some(Resources {
                cpu_millis: cpu as u64,
                memory_bytes: memory as u64,
            })
        })
        .collect();
    let scale = Scale::to_fit(
        &captured.iter().flatten().copied().collect::<Vec<_>>(),
        capacity,
    );
    let sizes = pools
        .iter()
        .zip(&captured)
        .map(|(p, c)| {
            c.map(|c| crate::cluster::NodeSize {
                reserved: scale.reserved(c, capacity),
                // A kind node's Pod range is a /24.
                max_pods: p
                    .allocatable
                    .get("pods")
                    .map(|q| (quantity(q) as u32).clamp(1, 250)),
            })
        })
        .collect();
    (scale, sizes)
}

/// A pool name as AKS accepts it: lowercase letters and digits, starting with a
/// letter, at most 12 characters.
fn aks_pool_name(name: &str) -> String {
    let mut n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if !n.starts_with(|c: char| c.is_ascii_lowercase()) {
        n.insert(0, 'p');
    }
    n.truncate(12);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value, cpu: &str, unschedulable: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints, "unschedulable": unschedulable},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "nodeInfo": {
                    "kubeletVersion": "v1.29.15", "osImage": "Ubuntu 22.04.5 LTS",
                    "operatingSystem": "linux", "architecture": "amd64",
                    "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "",
                    "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                },
            },
        }))
        .unwrap()
    }

    #[test]
    fn nodes_are_grouped_by_aks_agent_pool_with_shared_labels_and_the_least_allocatable() {
        let sys = serde_json::json!({"kubernetes.azure.com/agentpool": "system", "kubernetes.azure.com/mode": "system", "kubernetes.io/hostname": "a"});
        let user = |host: &str, zone: &str| serde_json::json!({"kubernetes.azure.com/agentpool": "apps", "kubernetes.azure.com/mode": "user", "kubernetes.io/hostname": host, "topology.kubernetes.io/zone": zone, "team": "web"});
        let taint = serde_json::json!([
            {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
        ]);
        let nodes = vec![
            node("aks-system-0", sys, taint, "1900m", false),
            node("aks-apps-0", user("b", "1"), Value::Null, "3860m", false),
            node("aks-apps-1", user("c", "2"), Value::Null, "3800m", true),
        ];
        let got = pools(&nodes);
        assert_eq!(got.len(), 2);
        let apps = &got[0];
        assert_eq!((apps.name.as_str(), apps.count), ("apps", 2));
        assert_eq!(apps.mode.as_deref(), Some("user"));
        assert_eq!(apps.named_by, "kubernetes.azure.com/agentpool");
        assert_eq!(apps.labels.get("team").map(String::as_str), Some("web"));
        assert!(!apps.labels.contains_key("kubernetes.io/hostname"));
        assert_eq!(apps.allocatable["cpu"], "3800m");
        assert_eq!(apps.unschedulable, ["aks-apps-1"]);
        assert_eq!(apps.zones, ["1", "2"]);
        let system = &got[1];
        assert_eq!(system.taints, ["CriticalAddonsOnly=true:NoSchedule"]);
        assert_eq!(system.kubelet_versions, ["v1.29.15"]);
        assert_eq!(system.os, ["Ubuntu 22.04.5 LTS (linux)"]);
    }

    #[test]
    fn quantities_compare_across_suffixes() {
        assert!(quantity("3800m") < quantity("4"));
        assert!(quantity("1Gi") > quantity("1G"));
        assert_eq!(quantity("110"), 110.0);
    }

    #[test]
    fn pools_are_scaled_to_the_rehearsals_nodes() {
        let pool = |name: &str, count: usize, taints: &[&str]| NodePool {
            name: name.into(),
            count,
            labels: BTreeMap::from([
                ("team".to_string(), "shop".to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                (
                    "kubernetes.azure.com/agentpool".to_string(),
                    name.to_string(),
                ),
            ]),
            taints: taints.iter().map(|t| t.to_string()).collect(),
            ..NodePool::default()
        };
        let pools = [
            pool("system", 3, &["CriticalAddonsOnly=true:NoSchedule"]),
            pool("user", 30, &[]),
            pool("default-pool", 1, &[]),
        ];
        let w = kind_workers(&pools, 5, &[]).unwrap();
        let names: Vec<&str> = w.iter().map(|s| s.pool.as_str()).collect();
        assert_eq!(names, ["system", "user", "user", "user", "defaultpool"]);
        assert_eq!(w[0].taints.len(), 1);
        assert_eq!(
            w[1].labels,
            BTreeMap::from([("team".to_string(), "shop".to_string())])
        );
        assert!(
            kind_workers(&pools, 2, &[])
                .unwrap_err()
                .contains("3 pools")
        );
        assert!(kind_workers(&[], 3, &[]).is_err());
        assert!(
            kind_workers(&[pool("x", 1, &["bad"])], 1, &[])
                .unwrap_err()
                .contains("pool x")
        );
    }

    #[test]
    fn pools_larger_than_a_kind_node_are_scaled_down_alike() {
        let sized = |name: &str, cpu: &str, memory: &str| NodePool {
            name: name.into(),
            count: 1,
            allocatable: BTreeMap::from([
                ("cpu".to_string(), cpu.to_string()),
                ("memory".to_string(), memory.to_string()),
                ("pods".to_string(), "30".to_string()),
            ]),
            ..NodePool::default()
        };
        let machine = Resources {
            cpu_millis: 2000,
            memory_bytes: 24 << 30,
        };
        let pools = [
            sized("system", "1900m", "5Gi"),
            sized("user", "7820m", "28Gi"),
            NodePool {
                name: "bare".into(),
                count: 1,
                ..NodePool::default()
            },
        ];
        let (scale, sizes) = sizes(&pools, machine);
        assert!(scale.cpu < 0.25 && scale.memory < 1.0, "{scale:?}");
        let (system, user) = (sizes[0].unwrap(), sizes[1].unwrap());
        // The larger pool's node keeps more of the kind node.
        assert!(system.reserved.cpu_millis > user.reserved.cpu_millis);
        assert_eq!(user.max_pods, Some(30));
        assert!(sizes[2].is_none(), "captured without an allocatable");
        let w = kind_workers(&pools, 3, &sizes).unwrap();
        assert_eq!(w[1].size, Some(user));
        assert!(w[2].size.is_none());
    }
}
