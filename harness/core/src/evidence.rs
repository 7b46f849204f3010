//! Evidence as values: what the cluster said, where it said it, and about which object.
//!
//! Evidence is read once, where it is produced (the control plane's logs, the audit
//! log, the webhook server's records, the dry-run probe, the snapshots), into an
//! [`Evidence`] that keeps its source, the object it concerns and the answer. The
//! verdict decides from those fields, never by parsing its own text; only the reports
//! render it to lines ([`std::fmt::Display`], the lines reports always had), and
//! `report.json` keeps the structured form beside them.
//!
//! An [`EvidenceLog`] keeps every piece of a run, indexed by the object it names, so a
//! run with hundreds of refused DELETEs still finds each object's own refusal and the
//! garbage collector's cluster-wide lines (informers waiting, failing to sync): cutting
//! happens where it is rendered, not where it is read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reason::Reason;
use crate::snapshot::ObjectRecord;

/// A control-plane component whose log is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    KubeApiserver,
    KubeControllerManager,
}

impl Component {
    /// The component's name (`kube-apiserver`), as its log lines are prefixed.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
        }
    }

    /// The component named `name`, if its log is one preflight reads.
    pub fn from_name(name: &str) -> Option<Component> {
        match name {
            "kube-apiserver" => Some(Component::KubeApiserver),
            "kube-controller-manager" => Some(Component::KubeControllerManager),
            _ => None,
        }
    }
}

/// The object a piece of evidence names, as its source names it: the garbage
/// collector's log by kind, the audit log, the probe and the webhook records by
/// resource (plural). Either is enough to tell objects of the same name apart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The plural resource, e.g. `pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// Whether this names `o`: the same namespace and name, and the same kind or
    /// resource wherever the source gave one.
    pub fn names(&self, o: &ObjectRecord) -> bool {
        let plural = o.resource.rsplit('/').next().unwrap_or_default();
        self.name == o.name
            && self.namespace == o.namespace
            && self.kind.as_deref().is_none_or(|k| k == o.kind)
            && self.resource.as_deref().is_none_or(|r| r == plural)
            && (self.kind.is_some() || self.resource.is_some())
    }

    /// `namespace/name` (an empty namespace for a cluster-scoped object), as lines say it.
    fn path(&self) -> String {
        format!("{}/{}", self.namespace.as_deref().unwrap_or(""), self.name)
    }

    /// The key of the object in an [`EvidenceLog`].
    fn key(&self) -> (String, String) {
        (
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }
}

/// One piece of evidence, from one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "source",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Evidence {
    /// The sample webhook server answered a real (not dry-run) DELETE of the object.
    WebhookRecord {
        object: ObjectRef,
        webhook: String,
        /// The answer as the record says it (`denied: no deletes today`).
        answer: String,
        latency_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_timeout_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// The garbage collector's `error syncing item` for the object: it could not delete it.
    GcCouldNotDelete { object: ObjectRef, error: String },
    /// A control-plane log line that names no object (webhook calls failing, the
    /// garbage collector's informers), as written (at most 400 characters).
    LogLine { component: Component, line: String },
    /// The audit log's record of a real DELETE of the object that the API server refused.
    AuditRefusal {
        object: ObjectRef,
        user: String,
        code: i64,
        message: String,
    },
    /// The verification probe: a dry-run DELETE of the object as the garbage
    /// collector, refused when the verdict was made.
    ProbeRefusal {
        object: ObjectRef,
        user: String,
        outcome: String,
        message: String,
    },
    /// The last of the garbage collector's informer-state lines since it started says
    /// it is still waiting for them.
    GcNeverSynced { line: String },
    /// A resource type the snapshot could not list.
    Unlistable { resource: String, error: String },
    /// What the snapshots show of the object or its owners (annotations, finalizers,
    /// owner references and what the garbage collector finds for them).
    Snapshot { text: String },
    /// The object stays because its owner `owner` (`Kind/name`) could not be deleted.
    OwnerBlocked {
        owner: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<Box<Evidence>>,
    },
    /// The object stays because its owner `owner` still exists and stays for `reason`.
    OwnerStays {
        owner: String,
        reason: Reason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<Box<Evidence>>,
    },
    /// What was looked at and explained nothing.
    Checked { text: String },
    /// A line of a report written before evidence had types.
    Text { text: String },
}

impl Evidence {
    /// The object the evidence names, if it names one.
    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            Evidence::WebhookRecord { object, .. }
            | Evidence::GcCouldNotDelete { object, .. }
            | Evidence::AuditRefusal { object, .. }
            | Evidence::ProbeRefusal { object, .. } => Some(object),
            _ => None,
        }
    }

    /// Its source, as `report.json` names it (`audit-refusal`).
    pub fn source(&self) -> &'static str {
        match self {
            Evidence::WebhookRecord { .. } => "webhook-record",
            Evidence::GcCouldNotDelete { .. } => "gc-could-not-delete",
            Evidence::LogLine { .. } => "log-line",
            Evidence::AuditRefusal { .. } => "audit-refusal",
            Evidence::ProbeRefusal { .. } => "probe-refusal",
            Evidence::GcNeverSynced { .. } => "gc-never-synced",
            Evidence::Unlistable { .. } => "unlistable",
            Evidence::Snapshot { .. } => "snapshot",
            Evidence::OwnerBlocked { .. } => "owner-blocked",
            Evidence::OwnerStays { .. } => "owner-stays",
            Evidence::Checked { .. } => "checked",
            Evidence::Text { .. } => "text",
        }
    }

    /// The same evidence with every text `f` maps (the reports' redaction).
    pub fn map_text(&self, f: &dyn Fn(&str) -> String) -> Evidence {
        let mut e = self.clone();
        match &mut e {
            Evidence::WebhookRecord { answer, .. } => *answer = f(answer),
            Evidence::GcCouldNotDelete { error, .. } => *error = f(error),
            Evidence::LogLine { line, .. } | Evidence::GcNeverSynced { line } => *line = f(line),
            Evidence::AuditRefusal { message, .. } | Evidence::ProbeRefusal { message, .. } => {
                *message = f(message)
            }
            Evidence::Unlistable { error, .. } => *error = f(error),
            Evidence::Snapshot { text } | Evidence::Checked { text } | Evidence::Text { text } => {
                *text = f(text)
            }
            Evidence::OwnerBlocked { why, .. } | Evidence::OwnerStays { why, .. } => {
                if let Some(w) = why {
                    **w = w.map_text(f);
                }
            }
        }
        e
    }
}

/// The lines reports have always shown.
impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = |w: &Option<Box<Evidence>>| w.as_ref().map(|w| w.to_string()).unwrap_or_default();
        match self {
            Evidence::WebhookRecord {
                webhook,
                answer,
                latency_ms,
                caller_timeout_ms,
                user,
                ..
            } => write!(
                f,
                "webhook {webhook} answered {answer} ({latency_ms} ms, the caller waits {}) to {}'s DELETE",
                caller_timeout_ms.map_or("an unknown time".to_string(), |t| format!("{t} ms")),
                user.as_deref().unwrap_or("an unknown user")
            ),
            Evidence::GcCouldNotDelete { object, error } => write!(
                f,
                "kube-controller-manager: garbage collector could not delete {} {}: {error}",
                object.kind.as_deref().unwrap_or("object"),
                object.path()
            ),
            Evidence::LogLine { component, line } => write!(f, "{}: {line}", component.as_str()),
            Evidence::AuditRefusal {
                object,
                user,
                code,
                message,
            } => write!(
                f,
                "kube-apiserver audit: {user} DELETE {} {}: {code} {message}",
                object.resource.as_deref().unwrap_or("?"),
                object.path()
            ),
            Evidence::ProbeRefusal {
                object,
                user,
                outcome,
                message,
            } => write!(
                f,
                "kube-apiserver probe: {user} DELETE {} {}: {outcome} {message}",
                object.resource.as_deref().unwrap_or("?"),
                object.path()
            ),
            Evidence::GcNeverSynced { line } => write!(
                f,
                "the garbage collector never synced its informers after its last start: kube-controller-manager: {line}"
            ),
            Evidence::Unlistable { resource, error } => {
                write!(f, "{resource} cannot be listed: {error}")
            }
            Evidence::Snapshot { text } | Evidence::Text { text } => f.write_str(text),
            Evidence::OwnerBlocked { owner, why: w } => {
                write!(f, "its owner {owner} could not be deleted: {}", why(w))
            }
            Evidence::OwnerStays {
                owner,
                reason,
                why: w,
            } => write!(
                f,
                "its owner {owner} still exists and stays ({}): {}",
                reason.as_str(),
                why(w)
            ),
            Evidence::Checked { text } => write!(f, "checked: {text}"),
        }
    }
}

/// Reads a list of evidence that may be typed (this version) or lines (a `runs.json`
/// written before evidence had types, kept as [`Evidence::Text`]).
pub fn typed_or_lines<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Evidence>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Line(String),
        Typed(Evidence),
    }
    Ok(Vec::<Wire>::deserialize(d)?
        .into_iter()
        .map(|w| match w {
            Wire::Line(text) => Evidence::Text { text },
            Wire::Typed(e) => e,
        })
        .collect())
}

/// Every piece of evidence a run read from the control plane, in the order read,
/// indexed by the object each names. Nothing is cut: a run with hundreds of refused
/// DELETEs keeps each object's own and every cluster-wide line.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct EvidenceLog {
    all: Vec<Evidence>,
    #[serde(skip)]
    by_object: BTreeMap<(String, String), Vec<usize>>,
}

impl EvidenceLog {
    /// Adds `e`, indexed by the object it names.
    pub fn push(&mut self, e: Evidence) {
        if let Some(o) = e.object() {
            self.by_object
                .entry(o.key())
                .or_default()
                .push(self.all.len());
        }
        self.all.push(e);
    }

    /// Everything, in the order read.
    pub fn iter(&self) -> impl Iterator<Item = &Evidence> {
        self.all.iter()
    }

    /// How many pieces there are.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The evidence that names `o`, in the order read.
    pub fn about<'a>(&'a self, o: &'a ObjectRecord) -> impl Iterator<Item = &'a Evidence> + 'a {
        let key = (o.namespace.clone().unwrap_or_default(), o.name.clone());
        self.by_object
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&i| &self.all[i])
            .filter(move |e| e.object().is_some_and(|r| r.names(o)))
    }

    /// The lines that name no object (webhook call failures, the garbage collector's
    /// informers), in the order read.
    pub fn cluster_wide(&self) -> impl Iterator<Item = &Evidence> {
        self.all.iter().filter(|e| e.object().is_none())
    }

    /// Applies `f` to every piece (tests that make evidence hostile).
    pub fn map(&mut self, f: impl Fn(&Evidence) -> Evidence) {
        let all = std::mem::take(&mut self.all);
        self.by_object.clear();
        for e in &all {
            self.push(f(e));
        }
    }
}

impl Extend<Evidence> for EvidenceLog {
    fn extend<T: IntoIterator<Item = Evidence>>(&mut self, iter: T) {
        for e in iter {
            self.push(e);
        }
    }
}

impl FromIterator<Evidence> for EvidenceLog {
    fn from_iter<T: IntoIterator<Item = Evidence>>(iter: T) -> Self {
        let mut log = EvidenceLog::default();
        log.extend(iter);
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_typed_or_as_the_lines_older_runs_wrote() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "typed_or_lines")]
            evidence: Vec<Evidence>,
        }
        let typed = Evidence::AuditRefusal {
            object: ObjectRef {
                kind: None,
                resource: Some("pods".into()),
                namespace: Some("pf-a".into()),
                name: "web-1".into(),
            },
            user: "gc".into(),
            code: 500,
            message: "failed calling webhook".into(),
        };
        let text = serde_json::json!({
            "evidence": ["an old line", serde_json::to_value(&typed).unwrap()]
        })
        .to_string();
        let read: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(
            read.evidence,
            [
                Evidence::Text {
                    text: "an old line".into()
                },
                typed.clone()
            ]
        );
        assert_eq!(read.evidence[0].to_string(), "an old line");
        assert_eq!(
            typed.to_string(),
            "kube-apiserver audit: gc DELETE pods pf-a/web-1: 500 failed calling webhook"
        );
    }

    #[test]
    fn an_object_is_found_by_namespace_name_and_kind_or_resource() {
        let pod = |ns: &str, name: &str| ObjectRecord {
            api_version: "v1".into(),
            kind: "Pod".into(),
            resource: "core/pods".into(),
            namespace: Some(ns.into()),
            name: name.into(),
            uid: "u".into(),
            resource_version: String::new(),
            owners: Vec::new(),
            finalizers: Vec::new(),
            deletion_timestamp: None,
            labels: Default::default(),
            helm_annotations: Default::default(),
        };
        let refused =
            |kind: Option<&str>, resource: Option<&str>, ns: &str| Evidence::GcCouldNotDelete {
                object: ObjectRef {
                    kind: kind.map(String::from),
                    resource: resource.map(String::from),
                    namespace: Some(ns.into()),
                    name: "web".into(),
                },
                error: "refused".into(),
            };
        let log: EvidenceLog = [
            refused(Some("Pod"), None, "pf-a"),
            refused(None, Some("pods"), "pf-a"),
            refused(Some("ReplicaSet"), None, "pf-a"),
            refused(None, Some("replicasets"), "pf-a"),
            refused(Some("Pod"), None, "pf-b"),
            refused(None, None, "pf-a"),
            Evidence::LogLine {
                component: Component::KubeControllerManager,
                line: "Waiting for caches to sync for garbage collector".into(),
            },
        ]
        .into_iter()
        .collect();
        assert_eq!(log.len(), 7);
        assert_eq!(log.about(&pod("pf-a", "web")).count(), 2);
        assert_eq!(log.about(&pod("pf-b", "web")).count(), 1);
        assert_eq!(log.about(&pod("pf-a", "other")).count(), 0);
        assert_eq!(log.cluster_wide().count(), 1);
    }
}
