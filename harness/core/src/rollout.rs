//! The node half of an AKS upgrade, as rehearsed: each pool rolled node by node (surge
//! nodes at the target version joined, each old node cordoned and drained through the
//! Eviction API, then removed), with every drain's evidence, the Pods that did not come
//! back Ready and why, and what AKS would make of each pool.
//!
//! AKS rolls a pool by adding `maxSurge` nodes at the new version, then cordoning and
//! draining the old nodes one at a time within the drain timeout (30 min by default),
//! reimaging or removing each. A node that cannot be drained fails the upgrade
//! (`--undrainable-node-behavior Schedule`, the default) or is quarantined and left
//! cordoned while the pool goes on (`Cordon`). See `docs/rehearsal.md`.
//!
//! Everything here is a record of what the cluster answered; [`predict`] turns a pool's
//! node records into AKS's outcome and nothing else.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drain::{BudgetReading, DrainOutcome, Eviction, PodDecision, PodRef, PodResult, secs};

/// AKS's `--undrainable-node-behavior`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Undrainable {
    /// The upgrade fails at the first node that cannot be drained (AKS's default).
    #[default]
    Schedule,
    /// The node is quarantined (cordoned, labelled) and the pool goes on.
    Cordon,
}

impl FromStr for Undrainable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "schedule" => Ok(Undrainable::Schedule),
            "cordon" => Ok(Undrainable::Cordon),
            _ => Err(format!(
                "`{s}` is not an undrainable-node behaviour: use schedule (AKS's default: the upgrade fails) or cordon (the node is quarantined)"
            )),
        }
    }
}

impl fmt::Display for Undrainable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Undrainable::Schedule => "schedule",
            Undrainable::Cordon => "cordon",
        })
    }
}

/// The label AKS puts on a quarantined node (`Cordon` behaviour).
pub const QUARANTINE_LABEL: &str = "kubernetes.azure.com/upgrade-status";
pub const QUARANTINE_VALUE: &str = "Quarantined";

/// AKS's `--max-surge`: a node count or a percentage of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaxSurge {
    Count(u32),
    Percent(u32),
}

impl Default for MaxSurge {
    /// AKS's default: 10 %.
    fn default() -> Self {
        MaxSurge::Percent(10)
    }
}

impl MaxSurge {
    /// Surge nodes for a pool of `pool_size` nodes: a percentage rounds up, as AKS
    /// does, and a pool always gets at least one (AKS's `maxSurge` cannot be 0 while
    /// `maxUnavailable` is 0, its default); never more than the pool.
    pub fn nodes(self, pool_size: usize) -> usize {
        let n = match self {
            MaxSurge::Count(n) => n as usize,
            MaxSurge::Percent(p) => (pool_size * p as usize).div_ceil(100),
        };
        n.clamp(1, pool_size.max(1))
    }
}

impl FromStr for MaxSurge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not a max surge: use a node count (1) or a percentage (33%)");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MaxSurge::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok(MaxSurge::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for MaxSurge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxSurge::Count(n) => write!(f, "{n}"),
            MaxSurge::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The rehearsal of every pool's roll: one step's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// The version the old nodes ran and the one the surge nodes run.
    pub from: String,
    pub to: String,
    pub max_surge: MaxSurge,
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    pub undrainable: Undrainable,
    pub pools: Vec<PoolRoll>,
}

impl RolloutRecord {
    /// Whether AKS would fail the upgrade in some pool.
    pub fn fails(&self) -> bool {
        self.pools
            .iter()
            .any(|p| matches!(p.prediction, Prediction::Fails { .. }))
    }
}

/// One pool's roll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRoll {
    pub pool: String,
    /// The pool's nodes before the roll, in the order they are drained.
    pub nodes_before: Vec<String>,
    pub surge: Vec<SurgeNode>,
    /// Every old node the roll reached, in order.
    pub nodes: Vec<NodeRoll>,
    pub prediction: Prediction,
}

/// A surge node joined at the target version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurgeNode {
    pub node: String,
    /// The kubelet's version as the Node reports it (`status.nodeInfo.kubeletVersion`).
    pub version: String,
    /// From the join's start to the node Ready.
    #[serde(with = "secs")]
    pub took: Duration,
    /// Why the node could not join (AKS fails the upgrade when it cannot surge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One old node: its drain, what happened to it, and the Pods that did not come back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRoll {
    pub node: String,
    /// The kubelet's version before the roll.
    pub version: String,
    pub drain: NodeDrain,
    /// Left cordoned and labelled `kubernetes.azure.com/upgrade-status=Quarantined`.
    pub quarantined: bool,
    /// Deleted from the cluster after its drain (AKS removes or reimages it).
    pub removed: bool,
    /// Workloads whose evicted Pods were not back and Ready within the wait.
    pub not_back: Vec<NotBack>,
    /// How long the roll waited for the evicted Pods to come back.
    #[serde(with = "secs")]
    pub waited: Duration,
    /// An error that ended this node's roll (the API did not answer, a node could not
    /// be removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NodeRoll {
    /// Whether the drain could not finish (blocked, timed out, or refused to start).
    pub fn undrainable(&self) -> bool {
        !matches!(self.drain.outcome, DrainOutcome::Drained)
    }
}

/// One node's drain as the Eviction API answered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDrain {
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Whether the drain cordoned the node.
    pub cordoned: bool,
    /// Every Pod on the node and what kubectl's filters decided for it.
    pub decisions: Vec<(PodRef, PodDecision)>,
    /// Every eviction attempt and its answer, in time order.
    pub evictions: Vec<Eviction>,
    pub budget_readings: Vec<BudgetReading>,
    pub pods: Vec<PodResult>,
    pub outcome: DrainOutcome,
}

/// A workload whose Pods, evicted from a node, were not all back and Ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotBack {
    pub namespace: String,
    /// The evicted Pods' controller, `Kind/name` (a ReplicaSet's Deployment where it
    /// has one).
    pub owner: String,
    /// The Pods evicted from the node.
    pub evicted: Vec<String>,
    /// Ready replicas over desired, as the controller's status said last.
    pub ready: i32,
    pub desired: i32,
    pub cause: NotBackCause,
}

/// Why replacement Pods are not Ready, from the cluster's own records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NotBackCause {
    /// The scheduler's `FailedScheduling` events on the pending Pods.
    Unschedulable { pods: Vec<String>, message: String },
    /// The controller's `FailedCreate` events: the API refused the replacement Pods
    /// (an admission webhook, a quota). `webhook` is the webhook the message names.
    CreateRefused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhook: Option<String>,
        message: String,
        /// The refusing webhook's own backend is among the workloads not back: nothing
        /// it matches can be created until it runs again, and it cannot run again.
        #[serde(default)]
        deadlock: bool,
    },
    /// Pods exist but are not Ready: their conditions.
    NotReady {
        pods: Vec<String>,
        conditions: Vec<String>,
    },
    /// The evidence does not settle it: what was checked.
    Unknown { checked: Vec<String> },
}

impl fmt::Display for NotBackCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotBackCause::Unschedulable { pods, message } => {
                write!(f, "not scheduled ({}): {message}", pods.join(", "))
            }
            NotBackCause::CreateRefused {
                webhook,
                message,
                deadlock,
            } => {
                if *deadlock {
                    write!(
                        f,
                        "deadlock: webhook {} refuses the Pods and its own backend is not back: {message}",
                        webhook.as_deref().unwrap_or("(unnamed)")
                    )
                } else {
                    write!(f, "Pod creation refused: {message}")
                }
            }
            NotBackCause::NotReady { pods, conditions } => {
                write!(
                    f,
                    "not Ready ({}): {}",
                    pods.join(", "),
                    conditions.join("; ")
                )
            }
            NotBackCause::Unknown { checked } => write!(f, "unknown: {}", checked.join("; ")),
        }
    }
}

/// What AKS would make of a pool's roll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Prediction {
    /// Every node drained and came back.
    Succeeds,
    /// The upgrade fails at `node`, after `after` (AKS's drain timeout for a budget
    /// that never allows the eviction; at once for a refusal kubectl does not retry).
    Fails {
        node: String,
        cause: String,
        #[serde(with = "secs")]
        after: Duration,
    },
    /// Undrainable nodes were quarantined (`Cordon`); the rest of the pool rolled.
    Quarantined {
        nodes: Vec<String>,
        causes: Vec<String>,
    },
    /// The pool rolled, but workloads did not come back Ready on the new nodes: AKS
    /// reports success and the workloads are down.
    Degraded { causes: Vec<String> },
    /// The surge could not be created: AKS fails before draining anything.
    SurgeFailed { error: String },
}

/// What AKS would make of a pool, in one line: `pool user: fails at node aks-user-1
/// after 1800 s: ...`.
pub fn headline(pool: &PoolRoll) -> String {
    let what = match &pool.prediction {
        Prediction::Succeeds => "rolls: every node drained and its Pods are back".to_string(),
        Prediction::Fails { node, cause, after } => {
            if after.is_zero() {
                format!("the upgrade fails at node {node} at once: {cause}")
            } else {
                format!(
                    "the upgrade fails at node {node} after the {} s drain timeout: {cause}",
                    after.as_secs()
                )
            }
        }
        Prediction::Quarantined { nodes, causes } => format!(
            "node(s) {} quarantined (left cordoned for you to clean up): {}",
            nodes.join(", "),
            causes.join("; ")
        ),
        Prediction::Degraded { causes } => {
            format!("rolls, but workloads are not back: {}", causes.join("; "))
        }
        Prediction::SurgeFailed { error } => {
            format!("the upgrade fails before any drain: a surge node could not join: {error}")
        }
    };
    format!("pool {}: {what}", pool.pool)
}

/// One sentence on why a drain could not finish.
pub fn drain_cause(outcome: &DrainOutcome) -> String {
    use crate::drain::BlockedBy;
    let by = |b: &BlockedBy| match b {
        BlockedBy::Budget {
            name,
            namespace,
            status,
            ..
        } => format!(
            "PodDisruptionBudget {namespace}/{name} allows {} disruptions ({} healthy, {} needed)",
            status.disruptions_allowed, status.current_healthy, status.desired_healthy
        ),
        BlockedBy::Refused {
            code,
            reason,
            message,
        } => format!("eviction refused ({code} {reason}): {message}"),
        BlockedBy::Unknown { checked } => format!("unknown: {}", checked.join("; ")),
    };
    match outcome {
        DrainOutcome::Drained => "drained".into(),
        DrainOutcome::Blocked { pods, by: b, .. } => format!(
            "{} (Pods {})",
            by(b),
            pods.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DrainOutcome::TimedOut { pods, by: b } => format!(
            "the drain timed out with Pods {} left: {}",
            pods.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            by(b)
        ),
        DrainOutcome::Unevictable { pods } => format!(
            "kubectl's drain refuses the node: {}",
            pods.iter()
                .map(|(p, why)| format!("{p}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// AKS's outcome for a pool, from its node records in order.
///
/// With `Schedule` the first undrainable node fails the upgrade: after the drain
/// timeout when AKS would keep retrying (a budget, or Pods still there at the
/// deadline), at once when kubectl's drain fails (a refusal it does not retry, Pods it
/// will not evict). With `Cordon` undrainable nodes are quarantined and the pool goes
/// on. Workloads not back make an otherwise successful roll `Degraded`.
pub fn predict(
    nodes: &[NodeRoll],
    surge: &[SurgeNode],
    timeout: Duration,
    behaviour: Undrainable,
) -> Prediction {
    if let Some(error) = surge.iter().find_map(|s| s.error.clone()) {
        return Prediction::SurgeFailed { error };
    }
    let mut quarantined = Vec::new();
    let mut causes = Vec::new();
    for n in nodes {
        if !n.undrainable() {
            continue;
        }
        let cause = drain_cause(&n.drain.outcome);
        match behaviour {
            Undrainable::Schedule => {
                let after = match &n.drain.outcome {
                    DrainOutcome::Blocked { would_wait, .. } => *would_wait,
                    DrainOutcome::TimedOut { .. } => timeout,
                    _ => Duration::ZERO,
                };
                return Prediction::Fails {
                    node: n.node.clone(),
                    cause,
                    after,
                };
            }
            Undrainable::Cordon => {
                quarantined.push(n.node.clone());
                causes.push(format!("{}: {cause}", n.node));
            }
        }
    }
    if !quarantined.is_empty() {
        return Prediction::Quarantined {
            nodes: quarantined,
            causes,
        };
    }
    let down: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.not_back.iter())
        .map(|b| format!("{}/{}: {}", b.namespace, b.owner, b.cause))
        .collect();
    if down.is_empty() {
        Prediction::Succeeds
    } else {
        Prediction::Degraded { causes: down }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{AKS_DRAIN_TIMEOUT, BlockedBy};

    fn node(name: &str, outcome: DrainOutcome) -> NodeRoll {
        NodeRoll {
            node: name.into(),
            version: "v1.29.15".into(),
            drain: NodeDrain {
                duration: Duration::from_secs(5),
                cordoned: true,
                decisions: vec![],
                evictions: vec![],
                budget_readings: vec![],
                pods: vec![],
                outcome,
            },
            quarantined: false,
            removed: false,
            not_back: vec![],
            waited: Duration::ZERO,
            error: None,
        }
    }

    fn blocked(wait: Duration) -> DrainOutcome {
        DrainOutcome::Blocked {
            pods: vec![PodRef {
                namespace: "shop".into(),
                name: "web-1".into(),
                uid: "u".into(),
            }],
            by: BlockedBy::Refused {
                code: 400,
                reason: "BadRequest".into(),
                message: "admission webhook \"no-evict\" denied the request".into(),
            },
            would_wait: wait,
        }
    }

    #[test]
    fn surge_rounds_up_and_stays_within_the_pool() {
        assert_eq!(MaxSurge::Percent(10).nodes(3), 1);
        assert_eq!(MaxSurge::Percent(33).nodes(3), 1);
        assert_eq!(MaxSurge::Percent(34).nodes(3), 2);
        assert_eq!(MaxSurge::Percent(100).nodes(3), 3);
        assert_eq!(MaxSurge::Count(5).nodes(3), 3);
        assert_eq!(MaxSurge::Count(1).nodes(0), 1);
        assert_eq!("33%".parse::<MaxSurge>(), Ok(MaxSurge::Percent(33)));
        assert_eq!("2".parse::<MaxSurge>(), Ok(MaxSurge::Count(2)));
        for bad in ["0", "0%", "101%", "x", "-1"] {
            assert!(bad.parse::<MaxSurge>().is_err(), "{bad}");
        }
        assert_eq!("Cordon".parse::<Undrainable>(), Ok(Undrainable::Cordon));
        assert!("drain".parse::<Undrainable>().is_err());
    }

    #[test]
    fn schedule_fails_at_the_first_undrainable_node_and_cordon_goes_on() {
        let nodes = [
            node("a", DrainOutcome::Drained),
            node("b", blocked(AKS_DRAIN_TIMEOUT)),
            node("c", blocked(Duration::ZERO)),
        ];
        match predict(&nodes, &[], AKS_DRAIN_TIMEOUT, Undrainable::Schedule) {
            Prediction::Fails { node, cause, after } => {
                assert_eq!(node, "b");
                assert_eq!(after, AKS_DRAIN_TIMEOUT);
                assert!(cause.contains("no-evict"), "{cause}");
            }
            p => panic!("{p:?}"),
        }
        match predict(&nodes, &[], AKS_DRAIN_TIMEOUT, Undrainable::Cordon) {
            Prediction::Quarantined { nodes, causes } => {
                assert_eq!(nodes, vec!["b".to_string(), "c".into()]);
                assert_eq!(causes.len(), 2);
            }
            p => panic!("{p:?}"),
        }
        let fine = [node("a", DrainOutcome::Drained)];
        assert_eq!(
            predict(&fine, &[], AKS_DRAIN_TIMEOUT, Undrainable::Schedule),
            Prediction::Succeeds
        );
    }

    #[test]
    fn pods_not_back_degrade_a_roll_and_a_failed_surge_fails_it() {
        let mut a = node("a", DrainOutcome::Drained);
        a.not_back.push(NotBack {
            namespace: "shop".into(),
            owner: "Deployment/web".into(),
            evicted: vec!["web-1".into()],
            ready: 0,
            desired: 1,
            cause: NotBackCause::Unschedulable {
                pods: vec!["web-2".into()],
                message: "0/3 nodes are available".into(),
            },
        });
        match predict(&[a], &[], AKS_DRAIN_TIMEOUT, Undrainable::Schedule) {
            Prediction::Degraded { causes } => {
                assert!(causes[0].contains("shop/Deployment/web"), "{causes:?}")
            }
            p => panic!("{p:?}"),
        }
        let surge = [SurgeNode {
            node: "s".into(),
            version: String::new(),
            took: Duration::ZERO,
            error: Some("kubeadm join failed".into()),
        }];
        assert!(matches!(
            predict(&[], &surge, AKS_DRAIN_TIMEOUT, Undrainable::Schedule),
            Prediction::SurgeFailed { .. }
        ));
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let r = RolloutRecord {
            from: "v1.29.15".into(),
            to: "v1.30.14".into(),
            max_surge: MaxSurge::Percent(10),
            drain_timeout: AKS_DRAIN_TIMEOUT,
            undrainable: Undrainable::Schedule,
            pools: vec![PoolRoll {
                pool: "nodepool1".into(),
                nodes_before: vec!["a".into()],
                surge: vec![],
                nodes: vec![node("a", blocked(AKS_DRAIN_TIMEOUT))],
                prediction: Prediction::Succeeds,
            }],
        };
        let text = serde_json::to_string(&r).unwrap();
        let back: RolloutRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert!(text.contains("\"drainTimeout\":1800.0"), "{text}");
    }
}
