//! What a snapshot records: every listable object of a cluster at one moment,
//! normalised to what matters for leftovers, and what could not be listed. The engine
//! takes snapshots (its `snapshot` module lists them from an API server); everything
//! that judges them reads these types.

use std::collections::BTreeMap;

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
    /// Whether the resource `plural` of `group` (`""` for the core group) is left out.
    pub fn contains(&self, group: &str, plural: &str) -> bool {
        let group = if group.is_empty() { "core" } else { group };
        self.0.iter().any(|n| *n == format!("{group}/{plural}"))
    }
}

/// An owner reference, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The reference's `apiVersion` (empty in snapshots written before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

impl Owner {
    /// The owner's API group (`""` for the core group), from its `apiVersion`.
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }
}

/// The group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> `""`).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
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
    /// Changes with every write to the object: two snapshots with the same uids and
    /// resource versions saw no write in between.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
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

    /// Its API group (`""` for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }
}

/// A resource type that could not be listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Unlistable {
    pub resource: String,
    pub api_version: String,
    pub error: String,
    /// The HTTP status the API server refused the list with (`None`: no answer, or
    /// one that was not a Kubernetes `Status`): 401 and 403 mean the credentials may
    /// not list the type, not that it is broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl Unlistable {
    /// Whether the list was refused to these credentials (401 or 403) rather than
    /// failing.
    pub fn denied(&self) -> bool {
        self.status.is_some_and(crate::api_error::is_denial)
    }
}

/// A resource type that was listed (every page of it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ListedType {
    /// `""` for the core group.
    pub group: String,
    /// The version it was listed at.
    pub version: String,
    pub kind: String,
    /// The plural resource name (`pods`).
    pub resource: String,
    pub namespaced: bool,
    /// Every version the server serves this resource at, the listed one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served_versions: Vec<String>,
    /// Listed as whole objects (the server could not answer with metadata only); only
    /// their metadata was kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_objects: bool,
}

/// A group version whose discovery failed or is stale: its resources may be missing
/// from the snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryError {
    /// `group/version` (`v1` for the core group).
    pub group_version: String,
    pub error: String,
}

/// Everything listable at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub objects: Vec<ObjectRecord>,
    pub unlistable: Vec<Unlistable>,
    /// How many resource types were listed or tried.
    pub types: usize,
    /// The namespace the snapshot was limited to (`None`: the whole cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The resource types that were listed completely.
    #[serde(default)]
    pub listed: Vec<ListedType>,
    /// Group versions that discovery could not read, or marked stale.
    #[serde(default)]
    pub discovery_errors: Vec<DiscoveryError>,
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
