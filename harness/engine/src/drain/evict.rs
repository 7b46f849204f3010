//! One eviction attempt through the Eviction API (`POST .../pods/<name>/eviction`,
//! `policy/v1`), its answer kept as a record, and what kubectl does next with that
//! answer.
//!
//! kubectl's `evictPods` (`k8s.io/kubectl/pkg/drain/drain.go`) decides on the error of
//! each attempt: none -> wait for the Pod to be deleted; NotFound -> the Pod is gone;
//! TooManyRequests (429) -> retry after `EvictErrorRetryDelay` (5 s in `kubectl
//! drain`); Forbidden with cause `NamespaceTerminating` -> wait for deletion if the
//! Pod is already being deleted, else retry; anything else -> the drain fails at once.
//! [`next_step`] is that decision, so the loop around it retries exactly what kubectl
//! retries.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};
use serde::Serialize;

use super::PodRef;

/// `corev1.NamespaceTerminatingCause`.
pub const NAMESPACE_TERMINATING_CAUSE: &str = "NamespaceTerminating";

/// A `Status` cause: its type (`reason` in JSON) and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub kind: String,
    pub message: String,
}

/// What the API server answered to one eviction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    pub fn from_result(result: Result<kube::core::Status, kube::Error>) -> Answer {
        match result {
            Ok(s) => Answer::Evicted {
                status: match s.status {
                    Some(kube::core::response::StatusSummary::Success) => "Success".into(),
                    Some(kube::core::response::StatusSummary::Failure) => "Failure".into(),
                    None => String::new(),
                },
            },
            Err(kube::Error::Api(s)) => Answer::Refused {
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
                causes: s
                    .details
                    .as_ref()
                    .map(|d| {
                        d.causes
                            .iter()
                            .map(|c| Cause {
                                kind: c.reason.clone(),
                                message: c.message.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            Err(e) => Answer::NoAnswer {
                error: e.to_string(),
            },
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self {
            Answer::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn has_cause(&self, kind: &str) -> bool {
        matches!(self, Answer::Refused { causes, .. } if causes.iter().any(|c| c.kind == kind))
    }
}

/// One eviction attempt and its answer: the evidence a verdict rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

/// Sends one eviction for `pod` (kubectl's default DeleteOptions: the Pod's own grace
/// period), with no more than `timeout` for the answer.
pub async fn attempt(client: &kube::Client, pod: &PodRef, timeout: Duration) -> Answer {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    match tokio::time::timeout(timeout, api.evict(&pod.name, &EvictParams::default())).await {
        Ok(result) => Answer::from_result(result),
        Err(_) => Answer::NoAnswer {
            error: format!("no answer within {timeout:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16, causes: &[&str]) -> Answer {
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
        assert_eq!(next_step(&refused(404, &[]), false), Next::Gone);
        assert_eq!(
            next_step(&refused(429, &["DisruptionBudget"]), false),
            Next::Retry(Retry::TooManyRequests)
        );
        assert_eq!(
            next_step(&refused(403, &[NAMESPACE_TERMINATING_CAUSE]), false),
            Next::Retry(Retry::NamespaceTerminating)
        );
        assert_eq!(
            next_step(&refused(403, &[NAMESPACE_TERMINATING_CAUSE]), true),
            Next::WaitForDeletion
        );
        // A webhook's denial, a failed webhook call, several budgets (500), a
        // negative budget (403): the drain fails at once.
        for code in [400, 403, 500, 503] {
            assert_eq!(next_step(&refused(code, &[]), false), Next::Fail, "{code}");
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
    fn an_api_error_keeps_code_reason_message_and_causes() {
        // The Status the Eviction API sends (eviction.go, `checkAndDecrement`).
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 429, "reason": "TooManyRequests",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 3 healthy pods and has 3 currently"}]}
        }))
        .unwrap();
        let a = Answer::from_result(Err(kube::Error::Api(status.boxed())));
        assert_eq!(a.code(), Some(429));
        let Answer::Refused { reason, causes, .. } = &a else {
            panic!("{a:?}")
        };
        assert_eq!(reason, "TooManyRequests");
        assert_eq!(causes[0].kind, "DisruptionBudget");
    }
}
