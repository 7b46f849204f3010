//! A drain's records and the pure decisions on them: what each eviction was answered,
//! what a PodDisruptionBudget's status said, what kubectl does after an answer, and
//! what the drain comes to. The engine (`preflight_engine::drain`) talks to the API
//! and fills these; the report and the rollout's verdicts read them.

pub mod verdict;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// AKS's default drain timeout per node (`drainTimeoutInMinutes`, 30).
pub const AKS_DRAIN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Durations as seconds (a float) in records.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// A Pod by namespace, name and uid (the uid tells a re-created Pod of the same name
/// from the one evicted, as kubectl's `waitForDelete` does).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What keeps a Pod on the node, as far as the evidence settles it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BlockedBy {
    /// The budget answered 429 and its status, read again across the confirmation
    /// window, leaves no way for it to allow the eviction.
    Budget {
        name: String,
        namespace: String,
        /// The last reading (boxed: the variants stay small).
        status: Box<BudgetReading>,
        /// The readings that confirm it, oldest first.
        readings: Vec<BudgetReading>,
        /// The Eviction API's last 429 message and causes.
        answer: String,
    },
    /// An answer kubectl does not retry (a webhook on `pods/eviction` denying, a failed
    /// webhook call, a Pod under several budgets).
    Refused {
        code: u16,
        reason: String,
        message: String,
    },
    /// The evidence does not settle it: what was checked.
    Unknown { checked: Vec<String> },
}

/// How one Pod's eviction ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "kebab-case")]
pub enum PodEnd {
    /// Evicted and gone (or gone before the eviction).
    Gone,
    /// The early verdict: refused for good.
    Blocked { by: BlockedBy },
    /// kubectl's drain fails on this Pod at once.
    Failed { by: BlockedBy },
    /// Still there at the drain's deadline.
    TimedOut { by: BlockedBy },
    /// Stopped because another Pod settled the drain's outcome; where it was.
    Stopped { state: String },
}

/// One Pod's part of a drain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResult {
    pub pod: PodRef,
    #[serde(flatten)]
    pub end: PodEnd,
}

/// What the drain comes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum DrainOutcome {
    /// Every Pod the drain selected was evicted and is gone.
    Drained,
    /// The drain cannot finish; AKS would report it after `would_wait` (its timeout
    /// for a budget, since 429s are retried until then; at once for an answer kubectl
    /// does not retry).
    Blocked {
        pods: Vec<PodRef>,
        by: BlockedBy,
        #[serde(with = "secs")]
        would_wait: Duration,
    },
    /// The deadline passed with Pods left.
    TimedOut { pods: Vec<PodRef>, by: BlockedBy },
    /// kubectl's filters refuse to start (Pods without a controller, unreadable
    /// DaemonSets): nothing was evicted.
    Unevictable { pods: Vec<(PodRef, String)> },
}

/// The drain's outcome from its Pods' ends: a budget that blocks for good decides it
/// (AKS then waits its whole timeout); else an answer kubectl does not retry (the
/// drain fails at once); else the deadline.
pub fn outcome(pods: &[PodResult], timeout: Duration) -> DrainOutcome {
    let blocked: Vec<_> = pods
        .iter()
        .filter_map(|p| match &p.end {
            PodEnd::Blocked { by } => Some((p.pod.clone(), by.clone())),
            _ => None,
        })
        .collect();
    if let Some((_, by)) = blocked.first() {
        return DrainOutcome::Blocked {
            pods: blocked.iter().map(|(p, _)| p.clone()).collect(),
            by: by.clone(),
            would_wait: timeout,
        };
    }
    let failed: Vec<_> = pods
        .iter()
        .filter_map(|p| match &p.end {
            PodEnd::Failed { by } => Some((p.pod.clone(), by.clone())),
            _ => None,
        })
        .collect();
    if let Some((_, by)) = failed.first() {
        return DrainOutcome::Blocked {
            pods: failed.iter().map(|(p, _)| p.clone()).collect(),
            by: by.clone(),
            would_wait: Duration::ZERO,
        };
    }
    let late: Vec<_> = pods
        .iter()
        .filter_map(|p| match &p.end {
            PodEnd::TimedOut { by } => Some((p.pod.clone(), by.clone())),
            _ => None,
        })
        .collect();
    if let Some((_, by)) = late.first() {
        return DrainOutcome::TimedOut {
            pods: late.iter().map(|(p, _)| p.clone()).collect(),
            by: by.clone(),
        };
    }
    DrainOutcome::Drained
}

/// `corev1.NamespaceTerminatingCause`.
pub const NAMESPACE_TERMINATING_CAUSE: &str = "NamespaceTerminating";

/// A `Status` cause: its type (`reason` in JSON) and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: String,
    pub message: String,
}

/// What the API server answered to one eviction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    /// Admitted: the Pod is being deleted. `status` is the returned `Status`'s.
    Evicted { status: String },
    /// An error `Status`: its HTTP code, reason, message and causes.
    Refused {
        code: u16,
        reason: String,
        message: String,
        causes: Vec<Cause>,
    },
    /// No `Status` came back: a transport error or no answer within the timeout.
    NoAnswer { error: String },
}

impl Answer {
    pub fn code(&self) -> Option<u16> {
        match self {
            Answer::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn has_cause(&self, kind: &str) -> bool {
        matches!(self, Answer::Refused { causes, .. } if causes.iter().any(|c| c.kind == kind))
    }
}

/// One eviction attempt and its answer: the evidence a verdict rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    pub pod: PodRef,
    /// 1 for the first attempt on this Pod.
    pub attempt: u32,
    /// When the answer came (RFC 3339) and how long after the drain started.
    pub at: String,
    pub elapsed_ms: u64,
    #[serde(flatten)]
    pub answer: Answer,
}

/// Why kubectl tries an eviction again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// 429: a PodDisruptionBudget (or the budget's status still being computed).
    TooManyRequests,
    /// 403 `NamespaceTerminating` on a Pod not yet being deleted.
    NamespaceTerminating,
}

/// What kubectl's `evictPods` does after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    WaitForDeletion,
    Gone,
    Retry(Retry),
    /// The drain fails with this answer.
    Fail,
}

/// kubectl's decision after one eviction answer (`pod_deleting`: the Pod as last read
/// has a `deletionTimestamp`).
pub fn next_step(answer: &Answer, pod_deleting: bool) -> Next {
    match answer {
        Answer::Evicted { .. } => Next::WaitForDeletion,
        Answer::Refused { code: 404, .. } => Next::Gone,
        Answer::Refused { code: 429, .. } => Next::Retry(Retry::TooManyRequests),
        a @ Answer::Refused { code: 403, .. } if a.has_cause(NAMESPACE_TERMINATING_CAUSE) => {
            if pod_deleting {
                Next::WaitForDeletion
            } else {
                Next::Retry(Retry::NamespaceTerminating)
            }
        }
        _ => Next::Fail,
    }
}

/// `policyv1.DisruptionBudgetCause`: the `type` (`reason` in JSON) of the cause the
/// Eviction API attaches to a 429 that a budget caused.
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// One reading of a budget's status (and of the Pods its selector matches).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetReading {
    pub name: String,
    pub namespace: String,
    /// When it was read (RFC 3339) and how long after the drain started.
    pub at: String,
    pub elapsed_ms: u64,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub expected_pods: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub disruptions_allowed: i32,
    /// `status.disruptedPods`: evictions the API server admitted that the controller
    /// has not yet seen completed.
    pub disrupted_pods: Vec<String>,
    /// `status.conditions`, as `Type=Status (Reason): message`.
    pub conditions: Vec<String>,
    /// How many Pods the budget's selector matches in its namespace, listed from the
    /// API with the selector at this reading.
    pub selector_pods: usize,
    /// Of those, the ones that could still become healthy: not Ready, not finished,
    /// not being deleted (Pending, or Running without Ready yet).
    pub could_become_healthy: Vec<String>,
}

/// The budget names a 429 from the Eviction API names in its causes: `The disruption
/// budget <name> needs ...`, `... <name> is still being processed by the server.`,
/// `... <name> does not allow evicting pods currently ...` (all in eviction.go).
pub fn names_in_causes<'a>(causes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut names = Vec::new();
    for (kind, message) in causes {
        if kind != DISRUPTION_BUDGET_CAUSE {
            continue;
        }
        if let Some(name) = message
            .strip_prefix("The disruption budget ")
            .and_then(|rest| rest.split_whitespace().next())
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// kubectl's messages (filters.go `daemonSetWarning`, `localStorageWarning`,
/// `unmanagedFatal`, `unmanagedWarning`), kept verbatim so a report reads like kubectl.
pub const DAEMONSET_WARNING: &str = "ignoring DaemonSet-managed Pods";
pub const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
pub const UNMANAGED_FATAL: &str = "Pods that declare no controller (use --force to override)";
pub const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";

/// What a drain does with one Pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum PodDecision {
    /// Evicted; `warning` is kubectl's warning for it, if any.
    Evict { warning: Option<String> },
    /// Left on the node (a mirror Pod, a running DaemonSet Pod).
    Skip { why: String },
    /// Fails the drain before any eviction (kubectl's `cannot delete ...`).
    Refuse { why: String },
}

/// The kubectl drain flags that change the filters. AKS drains with
/// `--ignore-daemonsets --delete-emptydir-data`; both are fixed on here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// `--force`: evict Pods that declare no controller (and orphaned DaemonSet Pods).
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: name.into(),
            uid: name.into(),
        }
    }

    fn result(name: &str, end: PodEnd) -> PodResult {
        PodResult {
            pod: pod(name),
            end,
        }
    }

    fn refused() -> BlockedBy {
        BlockedBy::Refused {
            code: 400,
            reason: "BadRequest".into(),
            message: "admission webhook \"deny.example\" denied the request".into(),
        }
    }

    #[test]
    fn all_gone_is_drained() {
        assert_eq!(
            outcome(
                &[result("a", PodEnd::Gone), result("b", PodEnd::Gone)],
                AKS_DRAIN_TIMEOUT
            ),
            DrainOutcome::Drained
        );
        assert_eq!(outcome(&[], AKS_DRAIN_TIMEOUT), DrainOutcome::Drained);
    }

    #[test]
    fn a_budget_block_waits_the_timeout_and_a_refusal_fails_at_once() {
        let unknown = BlockedBy::Unknown { checked: vec![] };
        let blocked = outcome(
            &[
                result("a", PodEnd::Gone),
                result(
                    "b",
                    PodEnd::Blocked {
                        by: unknown.clone(),
                    },
                ),
                result("c", PodEnd::Failed { by: refused() }),
            ],
            AKS_DRAIN_TIMEOUT,
        );
        assert_eq!(
            blocked,
            DrainOutcome::Blocked {
                pods: vec![pod("b")],
                by: unknown,
                would_wait: AKS_DRAIN_TIMEOUT
            }
        );
        let failed = outcome(
            &[
                result(
                    "a",
                    PodEnd::Stopped {
                        state: "retrying".into(),
                    },
                ),
                result("c", PodEnd::Failed { by: refused() }),
            ],
            AKS_DRAIN_TIMEOUT,
        );
        assert_eq!(
            failed,
            DrainOutcome::Blocked {
                pods: vec![pod("c")],
                by: refused(),
                would_wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn pods_left_at_the_deadline_time_the_drain_out() {
        let by = BlockedBy::Unknown {
            checked: vec!["evicted; still present".into()],
        };
        assert_eq!(
            outcome(
                &[
                    result("a", PodEnd::Gone),
                    result("b", PodEnd::TimedOut { by: by.clone() })
                ],
                AKS_DRAIN_TIMEOUT
            ),
            DrainOutcome::TimedOut {
                pods: vec![pod("b")],
                by
            }
        );
    }

    #[test]
    fn the_report_serializes_durations_in_seconds() {
        let v = serde_json::to_value(DrainOutcome::Blocked {
            pods: vec![],
            by: refused(),
            would_wait: AKS_DRAIN_TIMEOUT,
        })
        .unwrap();
        assert_eq!(v["outcome"], "blocked");
        assert_eq!(v["would_wait"], 1800.0);
        assert_eq!(v["by"]["kind"], "refused");
    }

    fn answer_refused(code: u16, causes: &[&str]) -> Answer {
        Answer::Refused {
            code,
            reason: String::new(),
            message: String::new(),
            causes: causes
                .iter()
                .map(|k| Cause {
                    kind: (*k).into(),
                    message: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn kubectl_retries_only_429_and_a_terminating_namespace() {
        assert_eq!(
            next_step(
                &Answer::Evicted {
                    status: "Success".into()
                },
                false
            ),
            Next::WaitForDeletion
        );
        assert_eq!(next_step(&answer_refused(404, &[]), false), Next::Gone);
        assert_eq!(
            next_step(&answer_refused(429, &["DisruptionBudget"]), false),
            Next::Retry(Retry::TooManyRequests)
        );
        assert_eq!(
            next_step(&answer_refused(403, &[NAMESPACE_TERMINATING_CAUSE]), false),
            Next::Retry(Retry::NamespaceTerminating)
        );
        assert_eq!(
            next_step(&answer_refused(403, &[NAMESPACE_TERMINATING_CAUSE]), true),
            Next::WaitForDeletion
        );
        // A webhook's denial, a failed webhook call, several budgets (500), a
        // negative budget (403): the drain fails at once.
        for code in [400, 403, 500, 503] {
            assert_eq!(
                next_step(&answer_refused(code, &[]), false),
                Next::Fail,
                "{code}"
            );
        }
        assert_eq!(
            next_step(
                &Answer::NoAnswer {
                    error: "timeout".into()
                },
                false
            ),
            Next::Fail
        );
    }

    #[test]
    fn budget_names_come_from_the_eviction_apis_causes() {
        let causes = [
            (
                "DisruptionBudget",
                "The disruption budget web needs 3 healthy pods and has 3 currently",
            ),
            (
                "DisruptionBudget",
                "The disruption budget web is still being processed by the server.",
            ),
            ("FieldValueInvalid", "The disruption budget other needs"),
        ];
        assert_eq!(names_in_causes(causes), vec!["web".to_string()]);
        assert!(names_in_causes([("DisruptionBudget", "something else")]).is_empty());
    }
}
