//! Which Pods a drain evicts: kubectl's drain filters, with the flags an AKS node-pool
//! upgrade drains with (`--ignore-daemonsets --delete-emptydir-data`).
//!
//! Matched line by line against `k8s.io/kubectl/pkg/drain/filters.go` (`makeFilters`:
//! `skipDeletedFilter`, `daemonSetFilter`, `mirrorPodFilter`, `localStorageFilter`,
//! `unreplicatedFilter`, applied in that order, the first filter that does not delete
//! ending the chain) and `pkg/drain/drain.go` (`GetPodsForDeletion`: every Pod with
//! `spec.nodeName=<node>` in every namespace; any filter error fails the whole drain
//! before a single eviction). Read at kubernetes/kubectl
//! dee3483a3d6a64c07fdf746caf80af446dee99ac.
//!
//! Two consequences of matching kubectl exactly, which a reader might not expect:
//! * finished Pods (`Succeeded`, `Failed`) are *evicted*, not skipped: every filter
//!   says "any finished pod can be removed", including DaemonSet-owned ones (the
//!   Eviction API then deletes them without consulting a budget);
//! * a Pod without a controller fails the drain (`--force` is off), as a DaemonSet
//!   Pod whose DaemonSet cannot be read does.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;

pub use preflight_core::drain::{
    DAEMONSET_WARNING, Flags, LOCAL_STORAGE_WARNING, PodDecision, UNMANAGED_FATAL,
    UNMANAGED_WARNING,
};

use super::{DrainError, PodRef, call};

/// kubectl's `corev1.MirrorPodAnnotationKey`: static Pods the kubelet mirrors into the
/// API; deleting the mirror does nothing to the static Pod, so drain skips them.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What a DaemonSet-owned Pod's filter learned from reading its DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonSetLookup {
    Exists,
    NotFound(String),
    Failed(String),
}

/// The Pods on a node, sorted by what a drain does with them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Selection {
    #[serde(skip)]
    pub evict: Vec<Pod>,
    /// Every Pod on the node with its decision (the evidence of the choice).
    pub decisions: Vec<(PodRef, PodDecision)>,
}

impl Selection {
    /// The Pods that fail the drain (kubectl's `cannot delete`), with why.
    pub fn refused(&self) -> Vec<(PodRef, String)> {
        self.decisions
            .iter()
            .filter_map(|(p, d)| match d {
                PodDecision::Refuse { why } => Some((p.clone(), why.clone())),
                _ => None,
            })
            .collect()
    }
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The Pod's controller reference (`metav1.GetControllerOf`).
fn controller(
    pod: &Pod,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// The name of the DaemonSet a Pod's filter must read, if any: a Pod whose controller
/// is an `apps/v1` DaemonSet (filters.go `isControllerRefDaemonSet`) and that has not
/// finished.
pub fn daemonset_to_check(pod: &Pod) -> Option<&str> {
    let c = controller(pod)?;
    (c.kind == "DaemonSet" && c.api_version == "apps/v1" && !finished(pod)).then_some(&c.name)
}

/// kubectl's filter chain for one Pod (`filterPods` over `makeFilters`), with
/// `--ignore-daemonsets --delete-emptydir-data` and `SkipWaitForDeleteTimeoutSeconds`
/// 0 (so `skipDeletedFilter` never skips). `daemonset` is the answer to reading
/// [`daemonset_to_check`]'s DaemonSet (`None` where there is none to read).
pub fn decide(pod: &Pod, daemonset: Option<&DaemonSetLookup>, flags: Flags) -> PodDecision {
    let mut warning = None;
    // daemonSetFilter
    if daemonset_to_check(pod).is_some() {
        match daemonset {
            Some(DaemonSetLookup::Exists) => {
                return PodDecision::Skip {
                    why: DAEMONSET_WARNING.into(),
                };
            }
            Some(DaemonSetLookup::NotFound(e)) if flags.force => warning = Some(e.clone()),
            Some(DaemonSetLookup::NotFound(e) | DaemonSetLookup::Failed(e)) => {
                return PodDecision::Refuse { why: e.clone() };
            }
            None => {
                return PodDecision::Refuse {
                    why: "its DaemonSet was not read".into(),
                };
            }
        }
    }
    // mirrorPodFilter
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
    {
        return PodDecision::Skip {
            why: "mirror Pod".into(),
        };
    }
    // localStorageFilter (--delete-emptydir-data: a warning, still deleted)
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    if empty_dir && !finished(pod) {
        warning = Some(LOCAL_STORAGE_WARNING.into());
    }
    // unreplicatedFilter
    if !finished(pod) && controller(pod).is_none() {
        if !flags.force {
            return PodDecision::Refuse {
                why: UNMANAGED_FATAL.into(),
            };
        }
        warning = Some(UNMANAGED_WARNING.into());
    }
    PodDecision::Evict { warning }
}

/// Every Pod bound to `node` with what a drain does with it, read as kubectl reads
/// them: one list of all namespaces with `spec.nodeName=<node>`, then a read of each
/// running DaemonSet Pod's DaemonSet.
pub async fn select(
    client: &kube::Client,
    node: &str,
    flags: Flags,
    timeout: Duration,
) -> Result<Selection, DrainError> {
    let pods: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let list = call(timeout, "list the node's Pods", pods.list(&lp)).await?;
    let mut selection = Selection::default();
    for pod in list.items {
        let lookup = match daemonset_to_check(&pod) {
            None => None,
            Some(name) => {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
                Some(match tokio::time::timeout(timeout, api.get(name)).await {
                    Ok(Ok(_)) => DaemonSetLookup::Exists,
                    Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                        DaemonSetLookup::NotFound(s.message.clone())
                    }
                    Ok(Err(e)) => DaemonSetLookup::Failed(e.to_string()),
                    Err(_) => DaemonSetLookup::Failed(format!(
                        "reading DaemonSet {ns}/{name}: no answer within {timeout:?}"
                    )),
                })
            }
        };
        let decision = decide(&pod, lookup.as_ref(), flags);
        selection
            .decisions
            .push((super::pod_ref(&pod), decision.clone()));
        if matches!(decision, PodDecision::Evict { .. }) {
            selection.evict.push(pod);
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        let mut base = serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}, "status": {"phase": "Running"}});
        merge(&mut base, json);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn owned_by(kind: &str, api_version: &str) -> serde_json::Value {
        serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": "owner", "uid": "u", "controller": true}]}})
    }

    const NO_FORCE: Flags = Flags { force: false };

    #[test]
    fn replicaset_pods_are_evicted() {
        let p = pod(owned_by("ReplicaSet", "apps/v1"));
        assert_eq!(daemonset_to_check(&p), None);
        assert_eq!(
            decide(&p, None, NO_FORCE),
            PodDecision::Evict { warning: None }
        );
    }

    #[test]
    fn running_daemonset_pods_are_skipped_and_need_their_daemonset_read() {
        let p = pod(owned_by("DaemonSet", "apps/v1"));
        assert_eq!(daemonset_to_check(&p), Some("owner"));
        assert_eq!(
            decide(&p, Some(&DaemonSetLookup::Exists), NO_FORCE),
            PodDecision::Skip {
                why: DAEMONSET_WARNING.into()
            }
        );
        // An orphan fails the drain without --force, is deleted with it.
        let gone = DaemonSetLookup::NotFound("daemonsets.apps \"owner\" not found".into());
        assert!(matches!(
            decide(&p, Some(&gone), NO_FORCE),
            PodDecision::Refuse { .. }
        ));
        assert!(matches!(
            decide(&p, Some(&gone), Flags { force: true }),
            PodDecision::Evict { warning: Some(_) }
        ));
    }

    #[test]
    fn a_daemonset_of_another_api_version_is_not_a_daemonset_to_kubectl() {
        let p = pod(owned_by("DaemonSet", "extensions/v1beta1"));
        assert_eq!(daemonset_to_check(&p), None);
        assert_eq!(
            decide(&p, None, NO_FORCE),
            PodDecision::Evict { warning: None }
        );
    }

    #[test]
    fn finished_pods_are_evicted_even_of_a_daemonset_or_without_a_controller() {
        for phase in ["Succeeded", "Failed"] {
            let mut ds = pod(owned_by("DaemonSet", "apps/v1"));
            ds.status.as_mut().unwrap().phase = Some(phase.into());
            assert_eq!(daemonset_to_check(&ds), None);
            assert_eq!(
                decide(&ds, None, NO_FORCE),
                PodDecision::Evict { warning: None }
            );
            let bare = pod(serde_json::json!({"status": {"phase": phase}}));
            assert_eq!(
                decide(&bare, None, NO_FORCE),
                PodDecision::Evict { warning: None }
            );
        }
    }

    #[test]
    fn mirror_pods_are_skipped() {
        let p = pod(serde_json::json!({"metadata": {"annotations": {MIRROR_POD_ANNOTATION: "x"}}}));
        assert_eq!(
            decide(&p, None, NO_FORCE),
            PodDecision::Skip {
                why: "mirror Pod".into()
            }
        );
    }

    #[test]
    fn emptydir_pods_are_evicted_with_kubectls_warning() {
        let mut p = pod(owned_by("ReplicaSet", "apps/v1"));
        p.spec.as_mut().unwrap().volumes = Some(vec![
            serde_json::from_value(serde_json::json!({"name": "scratch", "emptyDir": {}})).unwrap(),
        ]);
        assert_eq!(
            decide(&p, None, NO_FORCE),
            PodDecision::Evict {
                warning: Some(LOCAL_STORAGE_WARNING.into())
            }
        );
    }

    #[test]
    fn pods_without_a_controller_fail_the_drain_unless_forced() {
        let p = pod(serde_json::json!({}));
        assert_eq!(
            decide(&p, None, NO_FORCE),
            PodDecision::Refuse {
                why: UNMANAGED_FATAL.into()
            }
        );
        assert_eq!(
            decide(&p, None, Flags { force: true }),
            PodDecision::Evict {
                warning: Some(UNMANAGED_WARNING.into())
            }
        );
    }
}
