//! Snapshots: every listable API resource of every group (custom resources included),
//! listed concurrently, as metadata only, and normalised to what matters for leftovers.
//!
//! **Discovery** ([`served`]) reads the aggregated endpoint where the server has it
//! (1.26+ as beta) and otherwise walks every group version. Every resource of every
//! served version is considered, and each `(group, resource)` is listed once: at the
//! group's preferred version when served there, otherwise at its most stable served
//! version, so a kind served only at a non-preferred version (a CRD at `v1alpha1` in a
//! group whose preferred version is `v1`) is listed too. Subresources never are.
//! kube's own `Discovery` would not do: `recommended_resources` returns the preferred
//! version's resources only, `run_aggregated` drops the `Stale` freshness of a group
//! version, and `run` fails as a whole on the first group version it cannot read.
//! Here a stale or failing group version, and an APIService that is not available, is
//! a [`DiscoveryError`] in the snapshot: a finding, not silence.
//!
//! **Lists** ask for `PartialObjectMetadataList` pages of [`PAGE`] objects, following
//! `continue` tokens with [`crate::pager`] (which recovers from an expired token):
//! object bodies (Secret data included) are never fetched. A type whose server cannot answer with metadata (406/415, or an answer that does not
//! decode) falls back, for that type only, to a paged full list, of which only the
//! metadata is kept. A type that cannot be listed is recorded in
//! [`Snapshot::unlistable`]; every type that was listed is in [`Snapshot::listed`], so
//! the orphan rule ([`crate::ownership`]) can tell "owner kind listed and the uid
//! absent" from "owner kind not listed". Noise (Events, Leases) is left out by
//! [`Noise`], a visible list.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResourceList, ObjectMeta};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};

use crate::pager;

pub use preflight_core::snapshot::*;

/// Objects per list page.
pub const PAGE: u32 = pager::PAGE;

/// Discovery of every group with kube's client (the aggregated endpoint where the
/// server has it, else the per-group walk), for callers that resolve kinds. Snapshots
/// use [`served`], which also reports what could not be discovered.
pub async fn discover(client: &kube::Client) -> Result<Discovery, kube::Error> {
    match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) if d.has_group("") => Ok(d),
        _ => Discovery::new(client.clone()).run().await,
    }
}

/// A resource type the server serves, at the version to list it at.
#[derive(Clone, Debug)]
pub struct ServedType {
    pub resource: ApiResource,
    pub caps: ApiCapabilities,
    /// Every version it is served at, the chosen one first.
    pub served_versions: Vec<String>,
}

/// What discovery found: each `(group, resource)` once, and what it could not read.
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub types: Vec<ServedType>,
    pub errors: Vec<DiscoveryError>,
}

/// One group version as discovered.
struct GroupVersion {
    version: String,
    /// `false` when aggregated discovery marked it `Stale`.
    fresh: bool,
    resources: Vec<(ApiResource, ApiCapabilities)>,
}

/// One group: its versions, the preferred one first.
struct Group {
    versions: Vec<GroupVersion>,
}

/// Every resource type the server serves, each `(group, resource)` once: at the
/// group's preferred version when it is served there, otherwise at its most stable
/// served version (fresh versions before stale ones). Errors only when the server
/// cannot be read at all.
pub async fn served(client: &kube::Client) -> Result<Served, kube::Error> {
    let (groups, mut errors) = match aggregated(client).await {
        Some(found) => found,
        None => walk(client).await?,
    };
    let mut out = Served {
        types: choose(groups),
        errors: Vec::new(),
    };
    // An APIService that is not available: its group version may be missing from
    // discovery altogether (aggregated discovery leaves out what it never reached).
    errors.extend(unavailable_apiservices(client).await);
    // One finding per group version, with every reason found for it.
    let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in errors {
        let reasons = merged.entry(e.group_version).or_default();
        if !reasons.contains(&e.error) {
            reasons.push(e.error);
        }
    }
    out.errors = merged
        .into_iter()
        .map(|(group_version, reasons)| DiscoveryError {
            group_version,
            error: reasons.join("; "),
        })
        .collect();
    Ok(out)
}

/// The types of `groups`, each `(group, resource)` once, at the chosen version.
fn choose(groups: Vec<Group>) -> Vec<ServedType> {
    let mut out = Vec::new();
    for g in groups {
        // Versions in the order to prefer them: the group's preferred first, then the
        // rest by stability (v1 > v1beta2 > v1beta1 > v1alpha1), fresh before stale.
        let preferred = g.versions.first().map(|v| v.version.clone());
        let mut order: Vec<&GroupVersion> = g.versions.iter().collect();
        order.sort_by_key(|v| {
            (
                !v.fresh,
                Some(&v.version) != preferred.as_ref(),
                std::cmp::Reverse(kube::core::Version::parse(&v.version).priority()),
            )
        });
        let mut by_resource: BTreeMap<&str, Vec<(&ApiResource, &ApiCapabilities)>> =
            BTreeMap::new();
        for v in &order {
            for (ar, caps) in &v.resources {
                if ar.plural.is_empty() || ar.plural.contains('/') {
                    continue;
                }
                by_resource.entry(&ar.plural).or_default().push((ar, caps));
            }
        }
        for (_, found) in by_resource {
            let (ar, caps) = found[0];
            let mut served_versions: Vec<String> = Vec::new();
            for (a, _) in &found {
                if !served_versions.contains(&a.version) {
                    served_versions.push(a.version.clone());
                }
            }
            out.push(ServedType {
                resource: ar.clone(),
                caps: caps.clone(),
                served_versions,
            });
        }
    }
    out
}

/// Aggregated discovery (`/api` and `/apis` as `APIGroupDiscoveryList`), or `None`
/// when the server does not answer in that form.
async fn aggregated(client: &kube::Client) -> Option<(Vec<Group>, Vec<DiscoveryError>)> {
    use kube::core::discovery::v2::{ACCEPT_AGGREGATED_DISCOVERY_V2, APIGroupDiscoveryList};
    let get = |path: &'static str| async move {
        let req = http::Request::get(path)
            .header(http::header::ACCEPT, ACCEPT_AGGREGATED_DISCOVERY_V2)
            .body(Vec::new())
            .ok()?;
        let value: serde_json::Value = client.request(req).await.ok()?;
        // A server without aggregated discovery answers with APIGroupList/APIVersions,
        // which would read as an empty APIGroupDiscoveryList.
        (value["kind"] == "APIGroupDiscoveryList")
            .then(|| serde_json::from_value::<APIGroupDiscoveryList>(value).ok())
            .flatten()
    };
    let (core, apis) = futures::join!(get("/api"), get("/apis"));
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for g in core?.items.into_iter().chain(apis?.items) {
        let name = g.metadata.and_then(|m| m.name).unwrap_or_default();
        let mut versions = Vec::new();
        for v in g.versions {
            let version = v.version.unwrap_or_default();
            let gv = group_version(&name, &version);
            let fresh = v.freshness.as_deref() != Some("Stale");
            if !fresh {
                errors.push(DiscoveryError {
                    group_version: gv.clone(),
                    error: "aggregated discovery marks this group version Stale: the API server could not refresh it (an unavailable APIService?); its resources may be missing or out of date".into(),
                });
            }
            let resources = v
                .resources
                .into_iter()
                .map(|r| {
                    let ar = ApiResource {
                        group: name.clone(),
                        version: version.clone(),
                        api_version: gv.clone(),
                        kind: r.response_kind.and_then(|k| k.kind).unwrap_or_default(),
                        plural: r.resource.unwrap_or_default(),
                    };
                    let caps = ApiCapabilities {
                        scope: if r.scope.as_deref() == Some("Namespaced") {
                            Scope::Namespaced
                        } else {
                            Scope::Cluster
                        },
                        subresources: Vec::new(),
                        operations: r.verbs,
                    };
                    (ar, caps)
                })
                .collect();
            versions.push(GroupVersion {
                version,
                fresh,
                resources,
            });
        }
        if !versions.is_empty() {
            groups.push(Group { versions });
        }
    }
    Some((groups, errors))
}

/// The per-group walk: `/api`, `/apis`, then every group version's resource list. A
/// group version that fails is a [`DiscoveryError`]; the walk goes on.
async fn walk(client: &kube::Client) -> Result<(Vec<Group>, Vec<DiscoveryError>), kube::Error> {
    let core = client.list_core_api_versions().await?;
    let apis = client.list_api_groups().await?;
    // (group, versions with the preferred first)
    let mut wanted: Vec<(String, Vec<String>)> = vec![(String::new(), core.versions)];
    for g in apis.groups {
        let preferred = g.preferred_version.map(|p| p.version);
        let mut versions: Vec<String> = g.versions.into_iter().map(|v| v.version).collect();
        if let Some(p) = preferred {
            versions.sort_by_key(|v| *v != p);
        }
        wanted.push((g.name, versions));
    }
    let lookups: Vec<(String, String)> = wanted
        .iter()
        .flat_map(|(g, vs)| vs.iter().map(move |v| (g.clone(), v.clone())))
        .collect();
    let answers: BTreeMap<(String, String), Result<APIResourceList, kube::Error>> =
        futures::stream::iter(lookups.into_iter().map(|(g, v)| async move {
            let answer = if g.is_empty() {
                client.list_core_api_resources(&v).await
            } else {
                client
                    .list_api_group_resources(&group_version(&g, &v))
                    .await
            };
            ((g, v), answer)
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut answers = answers;
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for (name, versions) in wanted {
        let mut found = Vec::new();
        for version in versions {
            match answers.remove(&(name.clone(), version.clone())) {
                Some(Ok(list)) => found.push(GroupVersion {
                    resources: parse_resource_list(&name, &version, &list),
                    version,
                    fresh: true,
                }),
                Some(Err(e)) => errors.push(DiscoveryError {
                    group_version: group_version(&name, &version),
                    error: e.to_string(),
                }),
                None => {}
            }
        }
        if !found.is_empty() {
            groups.push(Group { versions: found });
        }
    }
    Ok((groups, errors))
}

/// The resources (not subresources) of a legacy `APIResourceList`.
fn parse_resource_list(
    group: &str,
    version: &str,
    list: &APIResourceList,
) -> Vec<(ApiResource, ApiCapabilities)> {
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| {
            let ar = ApiResource {
                group: r.group.clone().unwrap_or_else(|| group.to_string()),
                version: r.version.clone().unwrap_or_else(|| version.to_string()),
                api_version: group_version(group, version),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            };
            let caps = ApiCapabilities {
                scope: if r.namespaced {
                    Scope::Namespaced
                } else {
                    Scope::Cluster
                },
                subresources: Vec::new(),
                operations: r.verbs.clone(),
            };
            (ar, caps)
        })
        .collect()
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// APIServices whose `Available` condition is not `True`, as discovery errors.
async fn unavailable_apiservices(client: &kube::Client) -> Vec<DiscoveryError> {
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    let api: Api<APIService> = Api::all(client.clone());
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            let available = s
                .status
                .as_ref()
                .and_then(|st| st.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Available"));
            if available.is_some_and(|c| c.status == "True") {
                return None;
            }
            let why = available.map_or("no Available condition yet".to_string(), |c| {
                format!(
                    "{}: {}",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                )
            });
            Some(DiscoveryError {
                group_version: group_version(
                    spec.group.as_deref().unwrap_or_default(),
                    spec.version.as_deref().unwrap_or_default(),
                ),
                error: format!(
                    "APIService {} is not available: {why}",
                    s.metadata.name.unwrap_or_default()
                ),
            })
        })
        .collect()
}

/// The types a snapshot of `scope` lists: listable, not noise, namespaced only when
/// the scope is a namespace.
fn wanted_types(served: Vec<ServedType>, scope: &SnapshotScope) -> Vec<ServedType> {
    served
        .into_iter()
        .filter(|t| {
            t.caps.supports_operation(verbs::LIST)
                && !scope.noise.contains(&t.resource.group, &t.resource.plural)
                && (scope.namespace.is_none() || t.caps.scope == Scope::Namespaced)
        })
        .collect()
}

/// Takes a snapshot, listing in pages of [`PAGE`].
pub async fn take(client: &kube::Client, scope: &SnapshotScope) -> Result<Snapshot, kube::Error> {
    take_paged(client, scope, PAGE).await
}

/// How one type was listed.
enum Listing {
    Metadata(Vec<ObjectMeta>),
    /// The server could not answer with metadata: whole objects, metadata kept.
    Full(Vec<ObjectMeta>),
}

/// Takes a snapshot, listing in pages of `page` objects.
pub async fn take_paged(
    client: &kube::Client,
    scope: &SnapshotScope,
    page: u32,
) -> Result<Snapshot, kube::Error> {
    let served = served(client).await?;
    let types = wanted_types(served.types, scope);
    let count = types.len();
    let results: Vec<_> = futures::stream::iter(types.into_iter().map(|t| {
        let client = client.clone();
        let ns = scope.namespace.clone();
        async move {
            let api: Api<DynamicObject> = match (&ns, &t.caps.scope) {
                (Some(ns), Scope::Namespaced) => Api::namespaced_with(client, ns, &t.resource),
                _ => Api::all_with(client, &t.resource),
            };
            let listing = match list_metadata(&api, page).await {
                Ok(items) => Ok(Listing::Metadata(items)),
                Err(e) if metadata_unsupported(&e) => {
                    list_full(&api, page).await.map(Listing::Full)
                }
                Err(e) => Err(e),
            };
            (t, listing)
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    let mut snap = Snapshot {
        types: count,
        namespace: scope.namespace.clone(),
        discovery_errors: served.errors,
        ..Default::default()
    };
    for (t, result) in results {
        let ar = &t.resource;
        let resource = format!(
            "{}/{}",
            if ar.group.is_empty() {
                "core"
            } else {
                &ar.group
            },
            ar.plural
        );
        let (items, full) = match result {
            Ok(Listing::Metadata(items)) => (items, false),
            Ok(Listing::Full(items)) => (items, true),
            Err(e) => {
                snap.unlistable.push(Unlistable {
                    resource,
                    api_version: ar.api_version.clone(),
                    status: match &e {
                        kube::Error::Api(status) => Some(status.code),
                        _ => None,
                    },
                    error: e.to_string(),
                });
                continue;
            }
        };
        snap.listed.push(ListedType {
            group: ar.group.clone(),
            version: ar.version.clone(),
            kind: ar.kind.clone(),
            resource: ar.plural.clone(),
            namespaced: t.caps.scope == Scope::Namespaced,
            served_versions: t.served_versions.clone(),
            full_objects: full,
        });
        snap.objects
            .extend(items.into_iter().map(|m| normalise(ar, &resource, m)));
    }
    snap.objects
        .sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    snap.unlistable.sort_by(|a, b| a.resource.cmp(&b.resource));
    snap.listed.sort();
    Ok(snap)
}

/// Whether a metadata-only list failed because the server cannot answer that way.
fn metadata_unsupported(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 406 || s.code == 415,
        kube::Error::SerdeError(_) => true,
        _ => false,
    }
}

async fn list_metadata(
    api: &Api<DynamicObject>,
    page: u32,
) -> Result<Vec<ObjectMeta>, kube::Error> {
    let items = pager::list_all_metadata(api, &ListParams::default(), page).await?;
    Ok(items.into_iter().map(|o| o.metadata).collect())
}

async fn list_full(api: &Api<DynamicObject>, page: u32) -> Result<Vec<ObjectMeta>, kube::Error> {
    pager::pages(&ListParams::default(), page, |lp| async move {
        let list = api.list(&lp).await?;
        // Only the metadata is kept: bodies (Secret data) are dropped here.
        Ok((
            list.items.into_iter().map(|o| o.metadata).collect(),
            list.metadata.continue_,
        ))
    })
    .await
}

fn normalise(ar: &ApiResource, resource: &str, m: ObjectMeta) -> ObjectRecord {
    let annotations = m.annotations.unwrap_or_default();
    ObjectRecord {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        resource: resource.to_string(),
        namespace: m.namespace,
        name: m.name.unwrap_or_default(),
        uid: m.uid.unwrap_or_default(),
        resource_version: m.resource_version.unwrap_or_default(),
        owners: m
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|r| Owner {
                api_version: r.api_version,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_401_and_403_are_refusals_to_the_credentials() {
        let u = |status| Unlistable {
            resource: "example.com/widgets".into(),
            api_version: "example.com/v1".into(),
            // The text would say "forbidden" either way: the status decides.
            error: "widgets.example.com is forbidden".into(),
            status,
        };
        assert!(u(Some(403)).denied());
        assert!(u(Some(401)).denied());
        assert!(!u(Some(500)).denied());
        assert!(!u(Some(404)).denied());
        assert!(!u(None).denied());
        // A snapshot written before the status was kept reads back without one.
        let old: Unlistable = serde_json::from_str(
            r#"{"resource":"core/pods","apiVersion":"v1","error":"forbidden"}"#,
        )
        .unwrap();
        assert_eq!(old.status, None);
    }

    fn res(group: &str, version: &str, kind: &str, plural: &str) -> (ApiResource, ApiCapabilities) {
        (
            ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: group_version(group, version),
                kind: kind.into(),
                plural: plural.into(),
            },
            ApiCapabilities {
                scope: Scope::Namespaced,
                subresources: vec![],
                operations: vec!["list".into()],
            },
        )
    }

    fn gv(
        version: &str,
        fresh: bool,
        resources: Vec<(ApiResource, ApiCapabilities)>,
    ) -> GroupVersion {
        GroupVersion {
            version: version.into(),
            fresh,
            resources,
        }
    }

    fn chosen(groups: Vec<Group>) -> Vec<(String, String, Vec<String>)> {
        let mut out: Vec<_> = choose(groups)
            .into_iter()
            .map(|t| (t.resource.plural, t.resource.version, t.served_versions))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_resource_once_at_the_preferred_version_else_the_most_stable() {
        let g = "x.example.com";
        let groups = vec![Group {
            versions: vec![
                gv("v1", true, vec![res(g, "v1", "Widget", "widgets")]),
                gv(
                    "v1alpha1",
                    true,
                    vec![
                        res(g, "v1alpha1", "Widget", "widgets"),
                        res(g, "v1alpha1", "Gadget", "gadgets"),
                        res(g, "v1alpha1", "Gadget", "gadgets/status"),
                    ],
                ),
                gv(
                    "v1beta1",
                    true,
                    vec![
                        res(g, "v1beta1", "Gadget", "gadgets"),
                        res(g, "v1beta1", "Thing", "things"),
                    ],
                ),
                gv(
                    "v2alpha1",
                    true,
                    vec![res(g, "v2alpha1", "Thing", "things")],
                ),
            ],
        }];
        assert_eq!(
            chosen(groups),
            [
                (
                    "gadgets".to_string(),
                    "v1beta1".to_string(),
                    vec!["v1beta1".to_string(), "v1alpha1".to_string()]
                ),
                (
                    "things".to_string(),
                    "v1beta1".to_string(),
                    vec!["v1beta1".to_string(), "v2alpha1".to_string()]
                ),
                (
                    "widgets".to_string(),
                    "v1".to_string(),
                    vec!["v1".to_string(), "v1alpha1".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn a_fresh_version_is_preferred_to_a_stale_one() {
        let g = "metrics.example.com";
        let groups = vec![Group {
            versions: vec![
                gv("v1", false, vec![res(g, "v1", "Metric", "metrics")]),
                gv(
                    "v1beta1",
                    true,
                    vec![res(g, "v1beta1", "Metric", "metrics")],
                ),
            ],
        }];
        assert_eq!(chosen(groups)[0].1, "v1beta1");
    }

    #[test]
    fn old_snapshot_json_still_reads() {
        let old = r#"{"objects":[{"apiVersion":"apps/v1","kind":"ReplicaSet","resource":"apps/replicasets","namespace":"a","name":"r","uid":"u","owners":[{"kind":"Deployment","name":"d","uid":"x","controller":true}]}],"unlistable":[],"types":3}"#;
        let s: Snapshot = serde_json::from_str(old).unwrap();
        assert!(s.listed.is_empty() && s.discovery_errors.is_empty());
        assert_eq!(s.objects[0].owners[0].api_version, "");
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["listed"], serde_json::json!([]));
    }

    #[test]
    fn legacy_resource_lists_skip_subresources() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["list"]},
                {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": ["list"]}
            ]
        }))
        .unwrap();
        let parsed = parse_resource_list("", "v1", &list);
        let names: Vec<_> = parsed
            .iter()
            .map(|(a, c)| (a.plural.as_str(), a.api_version.as_str(), c.scope.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("pods", "v1", Scope::Namespaced),
                ("nodes", "v1", Scope::Cluster)
            ]
        );
    }
}
