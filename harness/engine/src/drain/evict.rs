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

pub use preflight_core::drain::{
    Answer, Cause, Eviction, NAMESPACE_TERMINATING_CAUSE, Next, Retry, next_step,
};

use super::PodRef;

/// The [`Answer`] of one eviction call.
pub fn answer_of(result: Result<kube::core::Status, kube::Error>) -> Answer {
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

/// Sends one eviction for `pod` (kubectl's default DeleteOptions: the Pod's own grace
/// period), with no more than `timeout` for the answer.
pub async fn attempt(client: &kube::Client, pod: &PodRef, timeout: Duration) -> Answer {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    match tokio::time::timeout(timeout, api.evict(&pod.name, &EvictParams::default())).await {
        Ok(result) => answer_of(result),
        Err(_) => Answer::NoAnswer {
            error: format!("no answer within {timeout:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let a = answer_of(Err(kube::Error::Api(status.boxed())));
        assert_eq!(a.code(), Some(429));
        let Answer::Refused { reason, causes, .. } = &a else {
            panic!("{a:?}")
        };
        assert_eq!(reason, "TooManyRequests");
        assert_eq!(causes[0].kind, "DisruptionBudget");
    }
}
