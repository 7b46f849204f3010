//! Snapshots: every listable API resource of every group (custom resources included),
//! listed concurrently and normalised to what matters for leftovers.
//!
//! Discovery uses the aggregated endpoint where the server has it (1.26+ as beta,
//! which kube's `run_aggregated` asks for) and falls back to the per-group walk. A
//! resource type that cannot be listed (a broken conversion webhook or APIService) is
//! recorded in [`Snapshot::unlistable`], a finding rather than an error that ends the
//! run. Noise (Events, Leases) is left out by [`Noise`], a visible list.

use std::collections::BTreeMap;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use serde::{Deserialize, Serialize};

/// Resource types a snapshot leaves out, as `group/resource` (`core` for the core
/// group). Nothing that can be a leftover belongs here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Noise(pub Vec<String>);

impl Default for Noise {
    fn default() -> Self {
        Noise(
            [
                "core/events",
                "events.k8s.io/events",
                "coordination.k8s.io/leases",
                "core/componentstatuses",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        )
    }
}

impl Noise {
    fn contains(&self, ar: &ApiResource) -> bool {
        let group = if ar.group.is_empty() {
            "core"
        } else {
            ar.group.as_str()
        };
        self.0
            .iter()
            .any(|n| *n == format!("{group}/{}", ar.plural))
    }
}

/// An owner reference, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

/// One object, normalised.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRecord {
    pub api_version: String,
    pub kind: String,
    /// `group/resource` (`core/pods`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Owner>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Helm's annotations (`meta.helm.sh/*`, `helm.sh/*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub helm_annotations: BTreeMap<String, String>,
}

impl ObjectRecord {
    /// `Kind/name` or `Kind/namespace/name`, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// A resource type that could not be listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Unlistable {
    pub resource: String,
    pub api_version: String,
    pub error: String,
}

/// Everything listable at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub objects: Vec<ObjectRecord>,
    pub unlistable: Vec<Unlistable>,
    /// How many resource types were listed.
    pub types: usize,
}

impl Snapshot {
    pub fn by_uid(&self) -> BTreeMap<&str, &ObjectRecord> {
        self.objects.iter().map(|o| (o.uid.as_str(), o)).collect()
    }
}

/// Which part of the cluster to list.
#[derive(Clone, Debug, Default)]
pub struct SnapshotScope {
    /// Only this namespace's objects (cluster-scoped types are skipped).
    pub namespace: Option<String>,
    pub noise: Noise,
}

/// Discovery of every group: the aggregated endpoint where the server has it, else the
/// per-group walk.
pub async fn discover(client: &kube::Client) -> Result<Discovery, kube::Error> {
    match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => Ok(d),
        Err(_) => Discovery::new(client.clone()).run().await,
    }
}

/// The listable resource types of the cluster, at their preferred versions.
pub async fn listable(
    client: &kube::Client,
    noise: &Noise,
) -> Result<Vec<(ApiResource, ApiCapabilities)>, kube::Error> {
    Ok(discover(client)
        .await?
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| caps.supports_operation(verbs::LIST) && !noise.contains(ar))
        .collect())
}

/// Takes a snapshot.
pub async fn take(client: &kube::Client, scope: &SnapshotScope) -> Result<Snapshot, kube::Error> {
    let types = listable(client, &scope.noise).await?;
    let types: Vec<_> = types
        .into_iter()
        .filter(|(_, caps)| scope.namespace.is_none() || caps.scope == Scope::Namespaced)
        .collect();
    let count = types.len();
    let results: Vec<_> = futures::stream::iter(types.into_iter().map(|(ar, caps)| {
        let client = client.clone();
        let ns = scope.namespace.clone();
        async move {
            let api: Api<DynamicObject> = match (&ns, caps.scope) {
                (Some(ns), Scope::Namespaced) => Api::namespaced_with(client, ns, &ar),
                _ => Api::all_with(client, &ar),
            };
            (ar, api.list(&ListParams::default()).await)
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    let mut snap = Snapshot {
        types: count,
        ..Default::default()
    };
    for (ar, result) in results {
        let resource = format!(
            "{}/{}",
            if ar.group.is_empty() {
                "core"
            } else {
                &ar.group
            },
            ar.plural
        );
        match result {
            Ok(list) => snap
                .objects
                .extend(list.items.into_iter().map(|o| normalise(&ar, &resource, o))),
            Err(e) => snap.unlistable.push(Unlistable {
                resource,
                api_version: ar.api_version.clone(),
                error: e.to_string(),
            }),
        }
    }
    snap.objects
        .sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    snap.unlistable.sort_by(|a, b| a.resource.cmp(&b.resource));
    Ok(snap)
}

fn normalise(ar: &ApiResource, resource: &str, o: DynamicObject) -> ObjectRecord {
    let m = o.metadata;
    let annotations = m.annotations.unwrap_or_default();
    ObjectRecord {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        resource: resource.to_string(),
        namespace: m.namespace,
        name: m.name.unwrap_or_default(),
        uid: m.uid.unwrap_or_default(),
        owners: m
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|r| Owner {
                kind: r.kind,
                name: r.name,
                uid: r.uid,
                controller: r.controller.unwrap_or(false),
            })
            .collect(),
        finalizers: m.finalizers.unwrap_or_default(),
        deletion_timestamp: m.deletion_timestamp.map(|t| t.0.to_string()),
        labels: m.labels.unwrap_or_default().into_iter().collect(),
        helm_annotations: annotations
            .into_iter()
            .filter(|(k, _)| k.starts_with("meta.helm.sh/") || k.starts_with("helm.sh/"))
            .collect(),
    }
}

/// What changed between two snapshots.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDiff {
    pub appeared: Vec<String>,
    pub disappeared: Vec<String>,
    pub newly_orphaned: Vec<String>,
    pub newly_stuck: Vec<String>,
    pub newly_unlistable: Vec<String>,
}

impl SnapshotDiff {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (title, items) in [
            ("newly orphaned (owner gone)", &self.newly_orphaned),
            ("newly stuck in deletion", &self.newly_stuck),
            ("newly unlistable resource types", &self.newly_unlistable),
            ("appeared", &self.appeared),
            ("disappeared", &self.disappeared),
        ] {
            out.push_str(&format!("{title}: {}\n", items.len()));
            for i in items {
                out.push_str(&format!("  {i}\n"));
            }
        }
        out
    }
}

/// Owner kinds whose absence from a snapshot means no such owner exists, even when
/// the snapshot holds no object of that kind.
const BUILT_IN_OWNER_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Pod",
    "Service",
];

/// Each object of `snap` whose owner is gone, with those owners. An owner is judged only
/// when its kind is listed (present in the snapshot, or a built-in owner kind): a
/// namespaced snapshot cannot see cluster-scoped owners.
pub fn orphans(snap: &Snapshot) -> Vec<(&ObjectRecord, Vec<&Owner>)> {
    let uids: std::collections::BTreeSet<&str> =
        snap.objects.iter().map(|o| o.uid.as_str()).collect();
    let mut kinds: std::collections::BTreeSet<&str> =
        snap.objects.iter().map(|o| o.kind.as_str()).collect();
    kinds.extend(BUILT_IN_OWNER_KINDS);
    snap.objects
        .iter()
        .filter_map(|o| {
            let gone: Vec<&Owner> = o
                .owners
                .iter()
                .filter(|r| kinds.contains(r.kind.as_str()) && !uids.contains(r.uid.as_str()))
                .collect();
            (!gone.is_empty()).then_some((o, gone))
        })
        .collect()
}

fn orphan_uids(s: &Snapshot) -> BTreeMap<&str, &ObjectRecord> {
    orphans(s)
        .into_iter()
        .map(|(o, _)| (o.uid.as_str(), o))
        .collect()
}

/// Compares `before` and `after` (objects by uid).
pub fn diff(before: &Snapshot, after: &Snapshot) -> SnapshotDiff {
    let (b, a) = (before.by_uid(), after.by_uid());
    let (ob, oa) = (orphan_uids(before), orphan_uids(after));
    let stuck = |m: &BTreeMap<&str, &ObjectRecord>, uid: &str| {
        m.get(uid).is_some_and(|o| o.deletion_timestamp.is_some())
    };
    let unl_b: std::collections::BTreeSet<&str> = before
        .unlistable
        .iter()
        .map(|u| u.resource.as_str())
        .collect();
    SnapshotDiff {
        appeared: a
            .iter()
            .filter(|(u, _)| !b.contains_key(*u))
            .map(|(_, o)| o.display())
            .collect(),
        disappeared: b
            .iter()
            .filter(|(u, _)| !a.contains_key(*u))
            .map(|(_, o)| o.display())
            .collect(),
        newly_orphaned: oa
            .iter()
            .filter(|(u, _)| !ob.contains_key(*u))
            .map(|(_, o)| o.display())
            .collect(),
        newly_stuck: a
            .iter()
            .filter(|(u, o)| o.deletion_timestamp.is_some() && !stuck(&b, u))
            .map(|(_, o)| o.display())
            .collect(),
        newly_unlistable: after
            .unlistable
            .iter()
            .filter(|u| !unl_b.contains(u.resource.as_str()))
            .map(|u| u.resource.clone())
            .collect(),
    }
}
