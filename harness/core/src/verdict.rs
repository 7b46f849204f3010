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

use crate::evidence::{Component, Evidence, ObjectRef};
use crate::ownership::{self, Collection, OwnerLink};
use crate::record::Outcome;
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
    /// Its uid: what its dependents' owner links name (empty in records written
    /// before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    pub reason: Reason,
    /// The chain of owners, nearest first, each with what the garbage collector would
    /// find for it (serialised as `ReplicaSet/web-5d4 (gone)`, `Deployment/web (gone)`).
    pub owner_chain: Vec<OwnerLink>,
    /// Every piece of evidence for the reason, typed; reports render and cut it.
    /// Records written before evidence had types hold lines ([`Evidence::Text`]).
    #[serde(deserialize_with = "crate::evidence::typed_or_lines")]
    pub evidence: Vec<Evidence>,
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

    /// Its key among a run's objects: namespace and uid (names repeat across
    /// namespaces, uids do not).
    fn key(&self) -> (Option<String>, String) {
        (self.namespace.clone(), self.uid.clone())
    }
}

const NAMESPACE_INFRASTRUCTURE: &[(&str, &str)] = &[
    ("ServiceAccount", "default"),
    ("ConfigMap", "kube-root-ca.crt"),
];

/// A run that rolls node pools and leaves its releases installed (the twin's
/// rehearsal, a scenario that installs, upgrades and rolls) has nothing left behind: no
/// uninstall ran, so what its releases made is there by design. The roll's own verdict
/// is its record's ([`crate::rollout`]).
fn rolls_with_releases_installed(outcome: &Outcome) -> bool {
    use crate::scenario::{HelmAction, HelmDryRun};
    if !outcome.steps.iter().any(|s| s.rollout.is_some()) {
        return false;
    }
    let mut last: BTreeMap<&str, HelmAction> = BTreeMap::new();
    for call in outcome
        .steps
        .iter()
        .filter_map(|s| s.helm.as_ref()?.step.as_ref())
        .filter(|c| c.dry_run == HelmDryRun::None)
    {
        last.insert(&call.release, call.action);
    }
    !last.is_empty() && last.values().all(|a| *a != HelmAction::Uninstall)
}

/// Cluster-scoped kinds a node makes by joining.
const NODE_INFRASTRUCTURE: [&str; 3] = ["Node", "CSINode", "CertificateSigningRequest"];

/// The leftovers of one run.
pub fn leftovers(outcome: &Outcome) -> Vec<Leftover> {
    if rolls_with_releases_installed(outcome) {
        return Vec::new();
    }
    let before: BTreeSet<&str> = outcome
        .before
        .objects
        .iter()
        .map(|o| o.uid.as_str())
        .collect();
    let index = ownership::Index::new(&outcome.after);
    let cluster = ClusterEvidence::of(outcome);
    let mut out: Vec<Leftover> = outcome
        .after
        .objects
        .iter()
        .filter(|o| !before.contains(o.uid.as_str()) && made_by_run(outcome, o))
        .map(|o| {
            let claim = provisioned_for(o, &outcome.after);
            let (reason, evidence) = cause(outcome, &index, &cluster, o, claim.as_deref());
            Leftover {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                namespace: o.namespace.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                reason,
                owner_chain: ownership::chain(o, &index, &outcome.seen),
                evidence,
                claim,
            }
        })
        .collect();
    inherit_blocked_owners(&mut out);
    inherit_staying_owners(&mut out);
    out
}

/// Whether `o` (created during the run) is the run's: in its namespaces or
/// cluster-scoped, and not preflight's own or the control plane's bookkeeping.
fn made_by_run(outcome: &Outcome, o: &ObjectRecord) -> bool {
    let label = |k: &str| o.labels.get(k).map(String::as_str);
    if label("app.kubernetes.io/managed-by") == Some("preflight")
        // The aggregator registers a local APIService per served CRD version: control
        // plane bookkeeping that follows the CRD, not something the release made.
        || o.labels.contains_key("kube-aggregator.kubernetes.io/automanaged")
        // Default RBAC that a newer apiserver bootstraps after an in-place upgrade.
        || label("kubernetes.io/bootstrapping") == Some("rbac-defaults")
    {
        return false;
    }
    // A node joining (a surge node of a roll) registers its Node, its CSINode and its
    // kubelet's certificate requests: the cluster's own objects, not a release's.
    if o.namespace.is_none() && NODE_INFRASTRUCTURE.contains(&o.kind.as_str()) {
        return false;
    }
    match o.namespace.as_deref() {
        // Only what this run made: its namespaces, or cluster-scoped objects.
        Some(ns) if !outcome.works_in(ns) => false,
        Some(_) => !NAMESPACE_INFRASTRUCTURE
            .iter()
            .any(|(k, n)| o.kind == *k && o.name == *n),
        None => true,
    }
}

/// What the whole cluster says, the same for every leftover of a run.
struct ClusterEvidence {
    /// "The garbage collector stalled", only where the controller manager's own log
    /// shows it (empty otherwise), with the types that could not be listed.
    stalled: Vec<Evidence>,
    /// Types the snapshot after the run could not list.
    unlistable: Vec<Evidence>,
}

impl ClusterEvidence {
    /// "The garbage collector stalled" only where the controller manager's own log
    /// shows it: its garbage collector waiting for informers that never synced after
    /// its last start, or its informers failing on a named type. An unlistable type
    /// alone is a correlation, recorded as what was checked. Every such line of the
    /// run is looked at (none cut); repeats (the same text at another time) count once.
    fn of(outcome: &Outcome) -> ClusterEvidence {
        use crate::gc::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};
        let kcm: Vec<&str> = outcome
            .log_evidence
            .cluster_wide()
            .filter_map(|e| match e {
                Evidence::LogLine {
                    component: Component::KubeControllerManager,
                    line,
                } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        let unsynced = kcm
            .iter()
            .rfind(|l| l.contains(GC_WAITING) || l.contains(GC_SYNCED) || l.contains(GC_PROCEEDING))
            .filter(|l| l.contains(GC_WAITING))
            .map(|l| Evidence::GcNeverSynced {
                line: l.to_string(),
            });
        let stall_line = |l: &str| {
            l.contains("conversion webhook")
                || l.contains("timed out waiting for dependency graph builder")
                || l.contains("failed to sync")
        };
        let mut distinct = BTreeSet::new();
        let failing = outcome
            .log_evidence
            .iter()
            .filter(|e| match e {
                Evidence::LogLine {
                    component: Component::KubeControllerManager,
                    line,
                } => stall_line(line),
                Evidence::GcCouldNotDelete { error, .. } => {
                    crate::api_error::says_conversion_webhook_failed(error)
                }
                _ => false,
            })
            // The same failure on many objects (every Widget's dependents) counts once.
            .filter(|e| {
                distinct.insert(match e {
                    Evidence::GcCouldNotDelete { error, .. } => error.clone(),
                    e => without_klog_header(&e.to_string()),
                })
            })
            .cloned();
        let gc_log: Vec<Evidence> = unsynced.into_iter().chain(failing).collect();
        let unlistable: Vec<Evidence> = outcome
            .after
            .unlistable
            .iter()
            .map(|u| Evidence::Unlistable {
                resource: u.resource.clone(),
                error: u.error.clone(),
            })
            .collect();
        let stalled = if gc_log.is_empty() {
            Vec::new()
        } else {
            gc_log
                .into_iter()
                .chain(unlistable.iter().cloned())
                .collect()
        };
        ClusterEvidence {
            stalled,
            unlistable,
        }
    }
}

/// A log line without klog's header (`E1203 07:00:00.000000   42 file.go:360] `), so
/// the same message at another time is recognised as a repeat.
fn without_klog_header(line: &str) -> String {
    let body = line.split_once(": ").map_or(line, |(_, b)| b);
    let klog = body.as_bytes().first().is_some_and(|c| b"IWEF".contains(c))
        && body.as_bytes().get(1).is_some_and(u8::is_ascii_digit);
    match body.split_once("] ") {
        Some((_, rest)) if klog => rest.to_string(),
        _ => body.to_string(),
    }
}

/// The refused DELETEs of exactly `o`: the webhook server's records and the control
/// plane's (the garbage collector's errors naming a webhook, the audit log, the probe).
fn refusals_of(outcome: &Outcome, o: &ObjectRecord) -> Vec<Evidence> {
    let plural = o.resource.rsplit('/').next().unwrap_or_default();
    let records = outcome
        .webhook_requests
        .iter()
        .filter(|r| webhook_refused_delete_of(r, o))
        .map(|r| Evidence::WebhookRecord {
            object: ObjectRef {
                kind: Some(o.kind.clone()),
                resource: Some(plural.to_string()),
                namespace: o.namespace.clone(),
                name: o.name.clone(),
            },
            webhook: r.webhook.clone(),
            answer: r.answer.to_string(),
            latency_ms: r.latency_ms,
            caller_timeout_ms: r.caller_timeout_ms,
            user: r.user.clone(),
        });
    let logged = outcome
        .log_evidence
        .about(o)
        .filter(|e| match e {
            Evidence::GcCouldNotDelete { error, .. } => {
                crate::api_error::says_webhook_call_failed(error)
            }
            Evidence::AuditRefusal { .. } | Evidence::ProbeRefusal { .. } => true,
            _ => false,
        })
        .cloned();
    records.chain(logged).collect()
}

/// Why `o` stays when it stays on purpose or by design: kept by policy, a
/// StatefulSet's claim, a volume of a claim that exists, a CRD from `crds/`.
fn kept(o: &ObjectRecord, claim: Option<&str>) -> Option<(Reason, Evidence)> {
    let said = |t: &str| Evidence::Snapshot {
        text: t.to_string(),
    };
    if o.helm_annotations
        .get("helm.sh/resource-policy")
        .map(String::as_str)
        == Some("keep")
    {
        Some((
            Reason::KeptByPolicy,
            said("annotated helm.sh/resource-policy: keep"),
        ))
    } else if o.kind == "PersistentVolumeClaim"
        && o.labels.contains_key("app.kubernetes.io/instance")
        && o.owners.is_empty()
    {
        Some((
            Reason::KeptByDesign,
            said("a StatefulSet's volumeClaimTemplates PVC: Kubernetes keeps it by design"),
        ))
    } else if let Some(claim) = claim {
        Some((
            Reason::KeptByDesign,
            said(&format!(
                "dynamically provisioned for PersistentVolumeClaim {claim}, which still exists: the volume stays with its claim"
            )),
        ))
    } else if o.kind == "CustomResourceDefinition"
        && !o.helm_annotations.contains_key("meta.helm.sh/release-name")
    {
        Some((
            Reason::KeptByDesign,
            said("installed from the chart's crds/: Helm never deletes those"),
        ))
    } else {
        None
    }
}

/// Why `o` stayed, with the evidence: the first cause the cluster's evidence
/// settles, else "not deleted" with what was checked.
fn cause(
    outcome: &Outcome,
    index: &ownership::Index<'_>,
    cluster: &ClusterEvidence,
    o: &ObjectRecord,
    claim: Option<&str>,
) -> (Reason, Vec<Evidence>) {
    if let Some((reason, e)) = kept(o, claim) {
        return (reason, vec![e]);
    }
    let refusals = refusals_of(outcome, o);
    if !refusals.is_empty() {
        return (Reason::WebhookBlockedDelete, refusals);
    }
    if o.deletion_timestamp.is_some() && !o.finalizers.is_empty() {
        let text = format!(
            "deletion pending on finalizers: {}",
            o.finalizers.join(", ")
        );
        return (
            Reason::BlockedByFinalizer,
            vec![Evidence::Snapshot { text }],
        );
    }
    // The garbage collector's rule: it should have collected this object (every
    // owner absent), or the owners that keep it stay for that reason themselves.
    if let Some(gone) = index.stays_for_gone_owner(o) {
        if !cluster.stalled.is_empty() {
            return (Reason::GarbageCollectorStalled, cluster.stalled.clone());
        }
        let mut evidence: Vec<Evidence> = gone
            .into_iter()
            .map(|text| Evidence::Snapshot { text })
            .collect();
        evidence.extend(cluster.unlistable.iter().map(|u| Evidence::Checked {
            text: format!(
                "{u}; no controller-manager log line shows the garbage collector stalled on it"
            ),
        }));
        return (Reason::OwnerGone, evidence);
    }
    if let Some(hook) = o.helm_annotations.get("helm.sh/hook") {
        let text = format!("Helm hook ({hook}) without a delete policy that removed it");
        return (Reason::HookLeftover, vec![Evidence::Snapshot { text }]);
    }
    // What the ownership check found, when it could not say "owner gone": an owner not
    // checked, or one the garbage collector can never resolve.
    let judgement = index.judge(o);
    let mut checked: Vec<Evidence> = match judgement.collection {
        Collection::Unknown | Collection::NotCollectable => judgement
            .evidence()
            .into_iter()
            .map(|text| Evidence::Snapshot { text })
            .collect(),
        _ => Vec::new(),
    };
    // Cause unknown: say what was looked at and found nothing.
    checked.push(Evidence::Checked {
        text: format!(
            "{} webhook request records (no refused DELETE of it), the audit log and control-plane logs ({} lines about webhooks and the garbage collector; none names it), its finalizers ({}), its deletion ({})",
            outcome.webhook_requests.len(),
            outcome.log_evidence.len(),
            if o.finalizers.is_empty() { "none".to_string() } else { o.finalizers.join(", ") },
            if o.deletion_timestamp.is_some() { "requested" } else { "never requested" },
        ),
    });
    (Reason::NotDeleted, checked)
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
/// stays: they share its cause. Owners are matched by namespace and uid, never by
/// `Kind/name` (a twin's releases repeat names across namespaces).
fn inherit_blocked_owners(leftovers: &mut [Leftover]) {
    let blocked: BTreeMap<(Option<String>, String), Option<Evidence>> = leftovers
        .iter()
        .filter(|l| l.reason == Reason::WebhookBlockedDelete && !l.uid.is_empty())
        .map(|l| (l.key(), l.evidence.first().cloned()))
        .collect();
    for l in leftovers.iter_mut() {
        if !matches!(l.reason, Reason::OwnerGone | Reason::NotDeleted) {
            continue;
        }
        if let Some((owner, why)) = l
            .owner_chain
            .iter()
            .find_map(|c| blocked.get(&c.object_key()).map(|w| (c.key(), w.clone())))
        {
            l.reason = Reason::WebhookBlockedDelete;
            l.evidence.insert(
                0,
                Evidence::OwnerBlocked {
                    owner,
                    why: why.map(Box::new),
                },
            );
        }
    }
}

/// Dependents whose owner is still there because it stays itself (kept on purpose or
/// by design, held by a finalizer, a hook): the garbage collector keeps a dependent
/// while any owner exists, so they stay for their owner's reason, nearest owner first.
/// Owners are matched by namespace and uid.
fn inherit_staying_owners(leftovers: &mut [Leftover]) {
    let staying: BTreeMap<(Option<String>, String), (Reason, Option<Evidence>)> = leftovers
        .iter()
        .filter(|l| l.reason != Reason::NotDeleted && !l.uid.is_empty())
        .map(|l| (l.key(), (l.reason, l.evidence.first().cloned())))
        .collect();
    for l in leftovers.iter_mut() {
        if l.reason != Reason::NotDeleted {
            continue;
        }
        if let Some((owner, (reason, why))) = l
            .owner_chain
            .iter()
            .filter(|c| !c.gone())
            .find_map(|c| staying.get(&c.object_key()).map(|r| (c.key(), r.clone())))
        {
            l.reason = reason;
            l.evidence
                .retain(|e| !matches!(e, Evidence::Checked { .. }));
            l.evidence.insert(
                0,
                Evidence::OwnerStays {
                    owner,
                    reason,
                    why: why.map(Box::new),
                },
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
