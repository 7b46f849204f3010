//! Verdicts: what a run left behind, and why.
//!
//! A leftover is an object that the scenario created (directly, by a hook, or by a
//! controller on its behalf: anything whose uid was not in the snapshot before the
//! first step) and that still exists after the cascade settled. preflight's own
//! objects (labelled `app.kubernetes.io/managed-by: preflight`) and what the control
//! plane puts in every namespace (`ServiceAccount/default`, `ConfigMap/kube-root-ca.crt`)
//! are not leftovers.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::exercise::Outcome;
use crate::ownership::{self, Collection, OwnerLink};
use crate::snapshot::ObjectRecord;

pub use crate::reason::Reason;

/// One object left behind.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Leftover {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub reason: Reason,
    /// The chain of owners, nearest first, each with what the garbage collector would
    /// find for it (serialised as `ReplicaSet/web-5d4 (gone)`, `Deployment/web (gone)`).
    pub owner_chain: Vec<OwnerLink>,
    pub evidence: Vec<String>,
    /// For a dynamically provisioned PersistentVolume (named `pvc-<claim uid>`): the
    /// claim it was provisioned for, which names it the same way on every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

impl Leftover {
    /// A name that is the same on every run: generated names are replaced by the
    /// ownership path to the first owner with a stable name, e.g. `Pod of ReplicaSet
    /// of Deployment web` (the release name is the same on every version).
    pub fn normalized(&self) -> String {
        if let Some(claim) = &self.claim {
            return format!("{} of PersistentVolumeClaim {claim}", self.kind);
        }
        if self.owner_chain.is_empty() {
            return format!("{} {}", self.kind, self.name);
        }
        let mut parts = vec![self.kind.clone()];
        for (i, owner) in self.owner_chain.iter().enumerate() {
            if i + 1 == self.owner_chain.len() {
                parts.push(format!("{} {}", owner.kind, owner.name));
            } else {
                parts.push(owner.kind.clone());
            }
        }
        parts.join(" of ")
    }
}

const NAMESPACE_INFRASTRUCTURE: &[(&str, &str)] = &[
    ("ServiceAccount", "default"),
    ("ConfigMap", "kube-root-ca.crt"),
];

/// The leftovers of one run.
pub fn leftovers(outcome: &Outcome) -> Vec<Leftover> {
    let before: BTreeSet<&str> = outcome
        .before
        .objects
        .iter()
        .map(|o| o.uid.as_str())
        .collect();
    let index = ownership::Index::new(&outcome.after);
    // "The garbage collector stalled" only where the controller manager's own log shows
    // it: its garbage collector waiting for informers that never synced after its last
    // start, or its informers failing on a named type. An unlistable type alone is a
    // correlation, recorded as what was checked.
    use crate::exercise::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};
    let kcm = |l: &&String| l.starts_with("kube-controller-manager:");
    let unsynced = outcome
        .log_evidence
        .iter()
        .filter(kcm)
        .rfind(|l| l.contains(GC_WAITING) || l.contains(GC_SYNCED) || l.contains(GC_PROCEEDING))
        .filter(|l| l.contains(GC_WAITING))
        .map(|l| {
            format!("the garbage collector never synced its informers after its last start: {l}")
        });
    let gc_log: Vec<String> = unsynced
        .into_iter()
        .chain(
            outcome
                .log_evidence
                .iter()
                .filter(kcm)
                .filter(|l| {
                    l.contains("conversion webhook")
                        || l.contains("timed out waiting for dependency graph builder")
                        || l.contains("failed to sync")
                })
                .take(3)
                .cloned(),
        )
        .collect();
    let unlistable: Vec<String> = outcome
        .after
        .unlistable
        .iter()
        .map(|u| format!("{} cannot be listed: {}", u.resource, u.error))
        .collect();
    let stalled: Vec<String> = if gc_log.is_empty() {
        Vec::new()
    } else {
        gc_log
            .into_iter()
            .chain(unlistable.iter().cloned())
            .collect()
    };
    let mut out = Vec::new();
    for o in &outcome.after.objects {
        if before.contains(o.uid.as_str()) {
            continue;
        }
        if o.labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("preflight")
        {
            continue;
        }
        // The aggregator registers a local APIService per served CRD version: control
        // plane bookkeeping that follows the CRD, not something the release made.
        if o.labels
            .contains_key("kube-aggregator.kubernetes.io/automanaged")
        {
            continue;
        }
        // Default RBAC that a newer apiserver bootstraps after an in-place upgrade.
        if o.labels
            .get("kubernetes.io/bootstrapping")
            .map(String::as_str)
            == Some("rbac-defaults")
        {
            continue;
        }
        if o.namespace
            .as_deref()
            .is_some_and(|ns| outcome.works_in(ns))
            && NAMESPACE_INFRASTRUCTURE
                .iter()
                .any(|(k, n)| o.kind == *k && o.name == *n)
        {
            continue;
        }
        // Only what this run made: its namespace, or cluster-scoped objects.
        if o.namespace.as_ref().is_some_and(|ns| !outcome.works_in(ns)) {
            continue;
        }
        let owner_chain = ownership::chain(o, &index, &outcome.seen);
        let claim = provisioned_for(o, &outcome.after);
        // The garbage collector's rule: it should have collected this object (every
        // owner absent), or the owners that keep it stay for that reason themselves.
        let judgement = index.judge(o);
        let gone_owner = index.stays_for_gone_owner(o);
        let owner_gone = gone_owner.is_some();
        let deletes: Vec<String> = outcome
            .webhook_requests
            .iter()
            .filter(|r| webhook_refused_delete_of(r, o))
            .map(|r| {
                format!(
                    "webhook {} answered {} ({} ms, the caller waits {}) to {}'s DELETE",
                    r.webhook,
                    r.answer,
                    r.latency_ms,
                    r.caller_timeout_ms
                        .map_or("an unknown time".to_string(), |t| format!("{t} ms")),
                    r.user.as_deref().unwrap_or("an unknown user")
                )
            })
            .take(3)
            .collect();
        let ns_name = format!("{}/{}:", o.namespace.clone().unwrap_or_default(), o.name);
        let plural = o.resource.rsplit('/').next().unwrap_or_default();
        let logged: Vec<String> = outcome
            .log_evidence
            .iter()
            .filter(|l| {
                (l.contains("failed calling webhook")
                    && l.contains(&format!("{} {ns_name}", o.kind)))
                    || ((l.starts_with("kube-apiserver audit:")
                        || l.starts_with("kube-apiserver probe:"))
                        && l.contains(&format!(" DELETE {plural} {ns_name}")))
            })
            .take(2)
            .cloned()
            .collect();
        let (reason, evidence) = if o
            .helm_annotations
            .get("helm.sh/resource-policy")
            .map(String::as_str)
            == Some("keep")
        {
            (
                Reason::KeptByPolicy,
                vec!["annotated helm.sh/resource-policy: keep".to_string()],
            )
        } else if o.kind == "PersistentVolumeClaim"
            && o.labels.contains_key("app.kubernetes.io/instance")
            && o.owners.is_empty()
        {
            (
                Reason::KeptByDesign,
                vec![
                    "a StatefulSet's volumeClaimTemplates PVC: Kubernetes keeps it by design"
                        .to_string(),
                ],
            )
        } else if let Some(claim) = &claim {
            (
                Reason::KeptByDesign,
                vec![format!(
                    "dynamically provisioned for PersistentVolumeClaim {claim}, which still exists: the volume stays with its claim"
                )],
            )
        } else if o.kind == "CustomResourceDefinition"
            && !o.helm_annotations.contains_key("meta.helm.sh/release-name")
        {
            (
                Reason::KeptByDesign,
                vec!["installed from the chart's crds/: Helm never deletes those".to_string()],
            )
        } else if !deletes.is_empty() || !logged.is_empty() {
            (
                Reason::WebhookBlockedDelete,
                deletes.into_iter().chain(logged).collect(),
            )
        } else if o.deletion_timestamp.is_some() && !o.finalizers.is_empty() {
            (
                Reason::BlockedByFinalizer,
                vec![format!(
                    "deletion pending on finalizers: {}",
                    o.finalizers.join(", ")
                )],
            )
        } else if owner_gone && !stalled.is_empty() {
            (Reason::GarbageCollectorStalled, stalled.clone())
        } else if owner_gone {
            let mut evidence = gone_owner.clone().unwrap_or_default();
            evidence.extend(unlistable.iter().map(|u| {
                format!("checked: {u}; no controller-manager log line shows the garbage collector stalled on it")
            }));
            (Reason::OwnerGone, evidence)
        } else if o.helm_annotations.contains_key("helm.sh/hook") {
            (
                Reason::HookLeftover,
                vec![format!(
                    "Helm hook ({}) without a delete policy that removed it",
                    o.helm_annotations["helm.sh/hook"]
                )],
            )
        } else {
            // What the ownership check found, when it could not say "owner gone": an
            // owner not checked, or one the garbage collector can never resolve.
            let mut checked = match judgement.collection {
                Collection::Unknown | Collection::NotCollectable => judgement.evidence(),
                _ => Vec::new(),
            };
            // Cause unknown: say what was looked at and found nothing.
            checked.push(format!(
                "checked: {} webhook request records (no refused DELETE of it), the audit log and control-plane logs ({} lines about webhooks and the garbage collector; none names it), its finalizers ({}), its deletion ({})",
                outcome.webhook_requests.len(),
                outcome.log_evidence.len(),
                if o.finalizers.is_empty() { "none".to_string() } else { o.finalizers.join(", ") },
                if o.deletion_timestamp.is_some() { "requested" } else { "never requested" },
            ));
            (Reason::NotDeleted, checked)
        };
        out.push(Leftover {
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            reason,
            owner_chain,
            evidence,
            claim,
        });
    }
    inherit_blocked_owners(&mut out);
    inherit_staying_owners(&mut out);
    out
}

/// Whether `r` is the sample webhook server refusing a real (not dry-run) DELETE of
/// exactly `o`: the same namespace, group, resource and name.
fn webhook_refused_delete_of(r: &crate::webhook::Record, o: &ObjectRecord) -> bool {
    let (group, plural) = o.resource.split_once('/').unwrap_or(("core", &o.resource));
    let mut parts = r.resource.splitn(3, '/');
    let (r_group, _version, r_plural) = (parts.next(), parts.next(), parts.next());
    r.operation == "DELETE"
        && !r.dry_run
        && r.refused()
        && r.name.as_deref() == Some(o.name.as_str())
        && r.namespace == o.namespace
        && r_group == Some(group)
        && r_plural == Some(plural)
}

/// For a PersistentVolume that a provisioner created for a claim (named `pvc-<claim
/// uid>`) whose claim still exists: the claim's name.
fn provisioned_for(o: &ObjectRecord, after: &crate::snapshot::Snapshot) -> Option<String> {
    if o.kind != "PersistentVolume" {
        return None;
    }
    let uid = o.name.strip_prefix("pvc-")?;
    after
        .objects
        .iter()
        .find(|c| c.kind == "PersistentVolumeClaim" && c.uid == uid)
        .map(|c| c.name.clone())
}

/// Dependents of an object whose DELETE a webhook blocked stay because their owner
/// stays: they share its cause.
fn inherit_blocked_owners(leftovers: &mut [Leftover]) {
    let blocked: BTreeMap<String, String> = leftovers
        .iter()
        .filter(|l| l.reason == Reason::WebhookBlockedDelete)
        .map(|l| {
            (
                format!("{}/{}", l.kind, l.name),
                l.evidence.first().cloned().unwrap_or_default(),
            )
        })
        .collect();
    for l in leftovers.iter_mut() {
        if !matches!(l.reason, Reason::OwnerGone | Reason::NotDeleted) {
            continue;
        }
        if let Some((owner, why)) = l
            .owner_chain
            .iter()
            .find_map(|c| blocked.get(&c.key()).map(|w| (c.key(), w.clone())))
        {
            l.reason = Reason::WebhookBlockedDelete;
            l.evidence
                .insert(0, format!("its owner {owner} could not be deleted: {why}"));
        }
    }
}

/// Dependents whose owner is still there because it stays itself (kept on purpose or
/// by design, held by a finalizer, a hook): the garbage collector keeps a dependent
/// while any owner exists, so they stay for their owner's reason, nearest owner first.
fn inherit_staying_owners(leftovers: &mut [Leftover]) {
    let staying: BTreeMap<String, (Reason, String)> = leftovers
        .iter()
        .filter(|l| l.reason != Reason::NotDeleted)
        .map(|l| {
            (
                format!("{}/{}", l.kind, l.name),
                (l.reason, l.evidence.first().cloned().unwrap_or_default()),
            )
        })
        .collect();
    for l in leftovers.iter_mut() {
        if l.reason != Reason::NotDeleted {
            continue;
        }
        if let Some((owner, (reason, why))) = l
            .owner_chain
            .iter()
            .filter(|c| !c.gone())
            .find_map(|c| staying.get(&c.key()).map(|r| (c.key(), r.clone())))
        {
            l.reason = reason;
            l.evidence.retain(|e| !e.starts_with("checked: "));
            l.evidence.insert(
                0,
                format!(
                    "its owner {owner} still exists and stays ({}): {why}",
                    reason.as_str()
                ),
            );
        }
    }
}

#[cfg(test)]
mod webhook_evidence_tests {
    use super::webhook_refused_delete_of;
    use crate::snapshot::ObjectRecord;
    use crate::webhook::{Answer, Record, WebhookKind};

    fn pod(ns: &str, name: &str) -> ObjectRecord {
        ObjectRecord {
            api_version: "v1".into(),
            kind: "Pod".into(),
            resource: "core/pods".into(),
            namespace: Some(ns.into()),
            name: name.into(),
            uid: "u1".into(),
            resource_version: String::new(),
            owners: Vec::new(),
            finalizers: Vec::new(),
            deletion_timestamp: None,
            labels: Default::default(),
            helm_annotations: Default::default(),
        }
    }

    fn delete(ns: &str, resource: &str, name: &str, answer: Answer) -> Record {
        Record {
            time: "2026-11-30T00:00:00Z".into(),
            webhook: "guard".into(),
            kind: WebhookKind::Validating,
            operation: "DELETE".into(),
            resource: resource.into(),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            user: Some("system:serviceaccount:kube-system:generic-garbage-collector".into()),
            dry_run: false,
            answer,
            latency_ms: 5,
            caller_timeout_ms: Some(2_000),
            caller_gave_up: false,
        }
    }

    #[test]
    fn only_a_real_refused_delete_of_the_same_object_is_evidence() {
        let o = pod("pf-a", "web-1");
        let denied = Answer::Denied {
            message: "no".into(),
        };
        let cases: Vec<(&str, Record, bool)> = vec![
            (
                "refused",
                delete("pf-a", "core/v1/pods", "web-1", denied.clone()),
                true,
            ),
            (
                "allowed",
                delete("pf-a", "core/v1/pods", "web-1", Answer::Allowed),
                false,
            ),
            (
                "other namespace",
                delete("pf-b", "core/v1/pods", "web-1", denied.clone()),
                false,
            ),
            (
                "other resource, same name",
                delete("pf-a", "apps/v1/replicasets", "web-1", denied.clone()),
                false,
            ),
            (
                "dry run",
                {
                    let mut r = delete("pf-a", "core/v1/pods", "web-1", denied.clone());
                    r.dry_run = true;
                    r
                },
                false,
            ),
            (
                "a create",
                {
                    let mut r = delete("pf-a", "core/v1/pods", "web-1", denied.clone());
                    r.operation = "CREATE".into();
                    r
                },
                false,
            ),
            (
                "delay the caller waited out",
                {
                    let mut r = delete(
                        "pf-a",
                        "core/v1/pods",
                        "web-1",
                        Answer::Delayed { seconds: 1 },
                    );
                    r.latency_ms = 1_000;
                    r
                },
                false,
            ),
            (
                "delay past the caller's timeout",
                {
                    let mut r = delete(
                        "pf-a",
                        "core/v1/pods",
                        "web-1",
                        Answer::Delayed { seconds: 5 },
                    );
                    r.latency_ms = 2_004;
                    r
                },
                true,
            ),
            (
                "delay the caller hung up on",
                {
                    let mut r = delete(
                        "pf-a",
                        "core/v1/pods",
                        "web-1",
                        Answer::Delayed { seconds: 5 },
                    );
                    r.latency_ms = 1_999;
                    r.caller_gave_up = true;
                    r
                },
                true,
            ),
            (
                "delay, caller's timeout unknown",
                {
                    let mut r = delete(
                        "pf-a",
                        "core/v1/pods",
                        "web-1",
                        Answer::Delayed { seconds: 5 },
                    );
                    r.latency_ms = 5_000;
                    r.caller_timeout_ms = None;
                    r
                },
                false,
            ),
        ];
        for (what, record, want) in cases {
            assert_eq!(webhook_refused_delete_of(&record, &o), want, "{what}");
        }
    }
}

#[cfg(test)]
mod scale_tests;
